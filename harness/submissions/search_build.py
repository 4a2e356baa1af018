"""Build a search entry's folder from a stored search (what `stepwise submit RUN --search NAME` does).

The search is named by the run, the strategy, its budget and (when the run has several settings of
that strategy) a settings-hash prefix; the evaluator by the flags `stepwise curve --run` takes. The
folder holds submission.toml, export.jsonl (`harness.submissions.search_export`), traces.jsonl and,
with images, images/<sha256>.png for every pick and every image its trace names (the previews
the search saw).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.submissions.build import IMAGES_DIR, SubmitError, _kept_detections, evaluator_settings
from harness.submissions.export import ExportHeader
from harness.submissions.model import ImageRecord, SearchPickRecord
from harness.submissions.search_export import SearchHeader, search_header_json, search_record_json

__all__ = ["TRACES_NAME", "SearchRunExport", "choose_search", "read_search", "write_search_folder"]

TRACES_NAME = "traces.jsonl"


@dataclass(frozen=True)
class SearchRunExport:
    header: ExportHeader
    search: SearchHeader
    records: list[ImageRecord]
    picks: list[SearchPickRecord]
    events: list[list[Any]]  # per record, its trace's events
    image_paths: list[str]  # per record, the pick's PNG as the store has it (relative to the run folder)
    seen: dict[str, str]  # sha256 -> stored path of every other image the traces name (previews, candidates)
    resolution: int | None
    run_folder: Path | None = None  # where the run's images are now (harness.store.folders), when found
    folder_problem: str | None = None  # why it was not found (images cannot be shipped then)

    @property
    def prompt_rewriting(self) -> bool:
        """Some search generated from a rewritten prompt (its trace's start events say)."""
        from harness.search.trace import rewrote_prompt

        return any(rewrote_prompt(events, r.prompt) for r, events in zip(self.records, self.events, strict=True))


def choose_search(s: Any, run_id: str, strategy: str, budget: int | None, settings: str | None) -> Any:
    """The stored search of `run_id` by strategy, budget and settings prefix; SubmitError listing the
    candidates when none or several fit."""
    from harness.search.store import run_searches

    found = [x for x in run_searches(s, run_id) if x.strategy == strategy
             and (budget is None or x.budget == budget) and (settings is None or x.settings_hash.startswith(settings))]
    if len(found) == 1:
        return found[0]
    listed = ", ".join(f"{x.strategy} budget {x.budget} settings {x.settings_hash[:12]}…"
                       for x in run_searches(s, run_id))
    if not found:
        raise SubmitError(f"run {run_id[:12]}… has no search {strategy!r}" + (f" at budget {budget}" if budget else "")
                          + f"; it has: {listed or 'none'}")
    raise SubmitError(f"run {run_id[:12]}… has {len(found)} searches {strategy!r} that fit; choose one with --budget "
                      f"and --search-settings PREFIX (they are: {listed})")


def read_search(s: Any, run_id: str, search: Any, spec: Any, run_dir: Path | None = None,
                suite_params: Mapping[str, Any] | None = None) -> SearchRunExport:
    """A search's picks with their verdicts by `spec` (a GenEval 2 run's: by its Soft-TIFA settings, as
    `build.read_run` finds them), ledgers and traces; SubmitError unless whole.
    run_dir: the run's folder, when it is not where the store finds it (`harness.store.folders`)."""
    from sqlalchemy import func, select

    from harness import __version__
    from harness.search.store import read_picks
    from harness.store import Prompt, Run
    from harness.store.folders import RunFolderError, locate_run_folder
    from harness.submissions.build import soft_tifa_record, soft_tifa_settings, verdict_settings

    run = s.get(Run, run_id)
    if run is None:
        raise SubmitError(f"no run {run_id!r} in the store")
    suite, backend, key = verdict_settings(s, run_id, spec, suite_params)
    rows, events = read_picks(s, search.id, backend, key, with_events=True)
    if not rows:
        raise SubmitError(f"search {search.strategy} (budget {search.budget}) of run {run_id[:12]}… has no picks")
    unjudged = [r for r in rows if r.correct is None]
    if unjudged:
        raise SubmitError(f"search {search.strategy} (budget {search.budget}): {len(unjudged)} pick(s) have no verdict "
                          f"by {backend} with these evaluator settings ({key[:12]}…), the first prompt "
                          f"{unjudged[0].prompt_index:05d}; give the evaluator flags the run used")
    n_prompts = int(s.scalar(select(func.count()).select_from(Prompt).where(Prompt.suite_id == run.suite_id)) or 0)
    if suite == "geneval":
        floor = min(spec.options.threshold, spec.options.counting_threshold)
        records = [ImageRecord(prompt_index=r.prompt_index, tag=r.tag, prompt=r.prompt, sample_index=r.sample_index,
                               sha256=r.image_sha256, image=None, correct=bool(r.correct), reason=r.reason,
                               detections=_kept_detections(r.detections, floor), scores={}) for r in rows]
        settings = evaluator_settings(spec)
    else:
        records = [soft_tifa_record(prompt_index=r.prompt_index, tag=r.tag, prompt=r.prompt,
                                    sample_index=r.sample_index, sha256=r.image_sha256, correct=bool(r.correct),
                                    reason=r.reason, score=r.score, details=r.verdict_details) for r in rows]
        settings = soft_tifa_settings(rows[0].verdict_details, key)
    picks = [SearchPickRecord(r.prompt_index, r.sample_index, r.ledger, r.trace_sha256, r.prompt_text, r.details)
             for r in rows]
    traces = [events[r.pick_id] for r in rows]
    seen: dict[str, str] = {}  # every image the search saved is IMAGES_DIR/<sha256>.png of the run folder
    for r, trace in zip(rows, traces, strict=True):
        for sha in _named_images(trace):
            if sha != r.image_sha256:
                seen.setdefault(sha, f"{IMAGES_DIR}/{sha}.png")
    header = ExportHeader(
        run_id=run.id, suite=run.suite.name, suite_hash=run.suite.hash, prompts=n_prompts,
        generator={"name": run.generator, "package": run.generator_package, "version": run.generator_version,
                   "params": dict(run.params)},
        seed=int(run.seed), evaluator_backend=backend, evaluator_settings_hash=key,
        evaluator_settings=settings, verifiers=dict(search.verifiers), stepwise_version=__version__)
    head = SearchHeader(search.strategy, search.strategy_package, search.strategy_version, dict(search.params),
                        search.settings_hash, int(search.budget), int(search.samples), int(search.total_steps),
                        tuple(search.reads_metadata))
    resolution = run.params.get("resolution")
    try:
        folder, problem = locate_run_folder(s, run_id, run_dir), None
    except RunFolderError as err:
        folder, problem = None, str(err)
    return SearchRunExport(header, head, records, picks, traces, [r.image_path for r in rows], seen,
                           resolution if isinstance(resolution, int) and not isinstance(resolution, bool) else None,
                           folder, problem)


def _named_images(events: list[Any]) -> list[str]:
    """The image sha256s a trace names (previews, finished images, scored images), in order."""
    out: dict[str, None] = {}
    for event in events:
        if isinstance(event, Mapping):
            for key in ("images",):
                for sha in event.get(key) or ():
                    if isinstance(sha, str):
                        out[sha] = None
            if isinstance(event.get("image"), str):
                out[event["image"]] = None
    return list(out)


def write_search_folder(folder: Path, export: SearchRunExport, manifest_text: str, *, images: bool) -> None:
    """Write a fresh search entry folder: images/ (picks and the images the traces name, when `images`),
    export.jsonl, traces.jsonl, submission.toml. Each copied image is hashed on the way: a pick missing
    from the run folder, or changed since it was judged, is refused naming it."""
    from dataclasses import replace

    from harness.search.store import trace_sha256
    from harness.store.folders import ImageProblem, resolve_image
    from harness.submissions.build import EXPORT_NAME
    from harness.submissions.model import MANIFEST_NAME

    if images and export.run_folder is None:
        raise SubmitError(f"{export.folder_problem} (or submit with --no-images)")
    folder.mkdir(parents=True)
    records = export.records
    if images:
        assert export.run_folder is not None
        (folder / IMAGES_DIR).mkdir()
        shipped = []
        for record, source in zip(records, export.image_paths, strict=True):
            name = f"{IMAGES_DIR}/{record.sha256}.png"
            if not (folder / name).exists():
                where = f"prompt {record.prompt_index:05d} sample {record.sample_index}"
                try:
                    path = resolve_image(export.run_folder, source, record.sha256, where)
                except ImageProblem as err:
                    raise SubmitError(f"{err}; give the run folder that holds the judged images with --run-dir "
                                      "(or submit with --no-images)") from None
                (folder / name).write_bytes(path.read_bytes())
            shipped.append(replace(record, image=name))
        records = shipped
        for sha, source in sorted(export.seen.items()):
            target = folder / IMAGES_DIR / f"{sha}.png"
            if not target.exists():
                try:
                    target.write_bytes(resolve_image(export.run_folder, source, sha, "a preview").read_bytes())
                except ImageProblem:
                    continue  # a preview that is gone is not shown; the picks themselves are required
    for pick, events in zip(export.picks, export.events, strict=True):
        if trace_sha256(events) != pick.trace_sha256:
            raise SubmitError(f"prompt {pick.prompt_index:05d} sample {pick.sample_index}: the stored trace does not "
                              "hash to its recorded sha256 (the store changed?)")
    lines = [json.dumps(search_header_json(export.header, export.search, TRACES_NAME))]
    lines += [json.dumps(search_record_json(r, p)) for r, p in zip(records, export.picks, strict=True)]
    (folder / EXPORT_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    traces = [json.dumps({"prompt_index": p.prompt_index, "sample_index": p.sample_index, "sha256": p.trace_sha256,
                          "events": events}) for p, events in zip(export.picks, export.events, strict=True)]
    (folder / TRACES_NAME).write_text("\n".join(traces) + "\n", encoding="utf-8")
    (folder / MANIFEST_NAME).write_text(manifest_text, encoding="utf-8")
