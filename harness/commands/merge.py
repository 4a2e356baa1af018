"""`stepwise merge`: copy stores (e.g. the per-rank SQLite files of a torchrun run) into one.

Rows are matched by natural keys, never by ids (each source numbers its rows itself):
suites by (name, hash), prompts by (suite, index), runs by id, candidates by (run, prompt,
sample index), verdicts by (candidate, backend, settings hash), scores by (candidate,
verifier, settings hash), preparations (a run's link to the checkpoint a strategy trained) by
(run, strategy, settings hash), and searches with their picks, traces and pick verdicts by theirs
(`harness.search.store.copy_searches`). Writes go through the store's idempotent inserts, so merging
the same file twice, or files that overlap, adds nothing twice; two stores that link one run
to checkpoints with different weights are refused. Results are derived data and are not copied
(recompute them with `stepwise curve`). Each run's folder (image paths are relative to it) is
recorded as the source store finds it now.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import click


def source_url(source: str) -> str:
    """A SQLAlchemy URL as is; anything else is a SQLite file path."""
    if "://" in source:
        return source
    path = Path(source)
    if not path.is_file():
        raise click.ClickException(f"{source}: no such store file")
    return f"sqlite:///{path.resolve()}"


def merge_into(src: Any, dst: Any) -> dict[str, int]:
    """Copy every suite, prompt, run, candidate, verdict, score and preparation of engine `src` into `dst`.

    One transaction on `dst`: a failed merge leaves it as it was. Returns rows seen per table.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from harness.search.store import copy_searches
    from harness.store import (
        Candidate,
        Evaluation,
        NewCandidate,
        NewEvaluation,
        NewPreparation,
        NewPrompt,
        NewScore,
        Preparation,
        PreparationConflict,
        Prompt,
        Run,
        RunSpec,
        Suite,
        VerifierScore,
        add_candidates,
        add_evaluations,
        add_preparation,
        add_prompts,
        add_verifier_scores,
        get_or_create_run,
        get_or_create_suite,
    )
    from harness.store.folders import RunFolderError, locate_run_folder, record_run_folder

    with Session(src) as s:
        folders: dict[str, Any] = {}
        for run_id in s.scalars(select(Run.id)):
            try:  # where the source's run folder is now, as the source store finds it
                folders[run_id] = locate_run_folder(s, run_id)
            except RunFolderError:
                pass  # found by a later --run-dir / --out instead
        suites = list(s.scalars(select(Suite)))
        prompts = list(s.scalars(select(Prompt).order_by(Prompt.suite_id, Prompt.index)))
        runs = list(s.scalars(select(Run)))
        candidates = list(s.scalars(select(Candidate).order_by(Candidate.id)))
        evaluations = list(s.scalars(select(Evaluation).order_by(Evaluation.id)))
        scores = list(s.scalars(select(VerifierScore).order_by(VerifierScore.id)))
        preparations = list(s.scalars(select(Preparation).order_by(Preparation.id)))
        s.expunge_all()

    with Session(dst) as t, t.begin():
        suite_map = {x.id: (x.name, x.hash, get_or_create_suite(t, x.name, x.hash).id) for x in suites}
        by_suite: dict[int, list[Any]] = defaultdict(list)
        for p in prompts:
            by_suite[p.suite_id].append(p)
        prompt_map: dict[int, int] = {}
        for suite_id, rows in by_suite.items():
            ids = add_prompts(t, suite_map[suite_id][2], [NewPrompt(p.index, p.tag, p.text, p.meta) for p in rows])
            prompt_map.update({p.id: new for p, new in zip(rows, ids, strict=True)})
        for r in runs:
            name, hash_, _ = suite_map[r.suite_id]
            spec = RunSpec(name, hash_, r.generator, r.generator_package, r.generator_version, r.params, r.seed)
            if spec.run_id != r.id:
                raise click.ClickException(f"run {r.id[:12]}… does not hash to its id ({spec.run_id[:12]}…); "
                                           "the source store is inconsistent")
            get_or_create_run(t, spec, r.code_version)
            if r.id in folders:
                record_run_folder(t, r.id, folders[r.id])
        for p in preparations:
            try:
                add_preparation(t, p.run_id, NewPreparation(p.strategy, p.settings_hash, p.params, p.checkpoint,
                                                             p.checkpoint_sha256, p.manifest))
            except PreparationConflict as err:
                raise click.ClickException(f"the stores disagree: {err}") from None
        groups: dict[tuple[str, int], list[Any]] = defaultdict(list)
        for c in candidates:
            groups[(c.run_id, c.prompt_id)].append(c)
        cand_map: dict[int, int] = {}
        for (run_id, prompt_id), rows in groups.items():
            ids = add_candidates(t, run_id, prompt_map[prompt_id], [
                NewCandidate(c.sample_index, c.image_path, c.image_sha256, c.step_previews, c.cost, c.seed)
                for c in rows])
            cand_map.update({c.id: ids[c.sample_index] for c in rows})
        verdicts: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for e in evaluations:
            verdicts[(e.backend, e.settings_hash)].append(
                NewEvaluation(cand_map[e.candidate_id], e.correct, e.reason, e.details, e.detections, e.score))
        for (backend, key), rows in verdicts.items():
            add_evaluations(t, backend, key, rows)
        scored: dict[tuple[str, str], list[Any]] = defaultdict(list)
        for x in scores:
            scored[(x.verifier, x.settings_hash)].append(
                NewScore(cand_map[x.candidate_id], x.score, tuple(x.step_scores), x.cost, x.details))
        for (verifier, key), rows in scored.items():
            add_verifier_scores(t, verifier, key, rows)
        with Session(src) as s:
            try:
                searched = copy_searches(s, t, prompt_map)
            except ValueError as err:
                raise click.ClickException(str(err)) from None
    return {"suites": len(suites), "prompts": len(prompts), "runs": len(runs), "candidates": len(candidates),
            "evaluations": len(evaluations), "scores": len(scores), "preparations": len(preparations), **searched}


@click.command()
@click.argument("sources", nargs=-1, required=True)
@click.option("--db", required=True, help="SQLAlchemy URL of the store to merge into (created if empty).")
def merge(sources: tuple[str, ...], db: str) -> None:
    """Merge the stores SOURCES (SQLite files or URLs) into --db, by natural keys (idempotent)."""
    from harness.store import StoreError, open_store

    urls = [source_url(x) for x in sources]
    try:
        target = open_store(db)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    try:
        for source, url in zip(sources, urls, strict=True):
            try:
                engine = open_store(url, upgrade_schema=False)
            except StoreError as err:
                raise click.ClickException(f"{source}: {err}") from None
            try:
                counts = merge_into(engine, target)
            finally:
                engine.dispose()
            click.echo(f"{source}: " + ", ".join(f"{v} {k}" for k, v in counts.items()), err=True)
    finally:
        target.dispose()
