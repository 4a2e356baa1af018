"""What a runner writes and reads. Every function takes an open session and never commits.

The caller owns the transaction, one per prompt:

    with Session(engine) as s, s.begin():
        ids = add_candidates(s, run_id, prompt_id, candidates)       # sample index -> candidate id
        add_evaluations(s, "mmdet", spec.key(), verdicts)
        add_verifier_scores(s, "clip", clip_hash, scores)

Writes are idempotent: rows that already exist (same natural key) are skipped with
`INSERT ... ON CONFLICT DO NOTHING` (SQLite and PostgreSQL), so re-running after a crash,
or two workers writing the same prompt, neither fails nor duplicates; the first row
written wins. Rows are inserted in key order, so concurrent writers lock in one order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import Table, and_, delete, exists, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager

from harness.pools import Pool
from harness.store.models import Candidate, Evaluation, Preparation, Prompt, Result, Run, Suite, VerifierScore
from harness.store.types import canonical_json, content_hash, is_finite, utcnow

__all__ = [
    "NewCandidate",
    "NewEvaluation",
    "NewPreparation",
    "NewPrompt",
    "NewScore",
    "PreparationConflict",
    "RunSpec",
    "add_candidates",
    "add_evaluations",
    "add_preparation",
    "add_prompts",
    "add_result",
    "add_verifier_scores",
    "check_preparation",
    "get_or_create_run",
    "get_or_create_suite",
    "json_details",
    "judged_candidates",
    "missing_evaluations",
    "missing_scores",
    "pool_arrays",
    "replace_verifier_scores",
    "run_preparations",
    "stored_samples",
    "stored_verdicts",
]

_SHA256 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------------------------------
# what the runner hands in


@dataclass(frozen=True)
class NewPrompt:
    index: int
    tag: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """What decides a run's images; `run_id` is the sha256 of its canonical JSON.

    The pool size, the verifiers and the harness's code version are left out on purpose:
    raising N, adding a verifier or upgrading the harness extends the same run. `params`
    must be JSON values; write them the same way each time (1 and 1.0 hash differently).
    """

    suite_name: str
    suite_hash: str
    generator: str
    generator_package: str
    generator_version: str
    params: Mapping[str, Any]
    seed: int

    def canonical(self) -> dict[str, Any]:
        return {
            "suite": {"name": self.suite_name, "hash": self.suite_hash},
            "generator": {"name": self.generator, "package": self.generator_package,
                          "version": self.generator_version},
            "params": dict(self.params),
            "seed": self.seed,
        }

    @property
    def run_id(self) -> str:
        return content_hash(self.canonical())


@dataclass(frozen=True)
class NewCandidate:
    """One generated image of a prompt (see `models.Candidate` for the fields)."""

    sample_index: int
    image_path: str
    image_sha256: str
    step_previews: Sequence[str] = ()
    cost: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass(frozen=True)
class NewEvaluation:
    candidate_id: int
    correct: bool
    reason: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    detections: Mapping[str, Any] | None = None
    score: float | None = None  # the suite's per-image figure; None: GenEval's, 1.0 when correct else 0.0

    def stored_score(self) -> float:
        if self.score is None:
            return 1.0 if self.correct else 0.0
        if not is_finite(self.score) or self.score < 0:
            raise ValueError(f"candidate {self.candidate_id}: verdict score {self.score!r} is not a finite number >= 0")
        return float(self.score)


@dataclass(frozen=True)
class NewScore:
    candidate_id: int
    score: float
    step_scores: Sequence[float] = ()
    cost: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)  # JSON-able: what the score was made of


@dataclass(frozen=True)
class NewPreparation:
    """The link from a run to the checkpoint a strategy's prepare stage made (see `models.Preparation`)."""

    strategy: str
    settings_hash: str  # sha256 of the strategy's canonical params
    params: Mapping[str, Any]  # those params, as JSON values
    checkpoint: str
    checkpoint_sha256: str
    manifest: Mapping[str, Any] = field(default_factory=dict)


class PreparationConflict(ValueError):
    """A run's recorded checkpoint has other weights than the one now at its path."""


# ---------------------------------------------------------------------------------------------
# idempotent insert


def _insert_missing(s: Session, table: Table, rows: list[dict[str, Any]], key: Sequence[str]) -> int:
    """Insert the rows whose `key` columns match no existing row; returns how many were new."""
    if not rows:
        return 0
    rows = sorted(rows, key=lambda r: tuple(r[k] for k in key))  # one lock order for every writer
    name = s.get_bind().dialect.name
    if name in ("sqlite", "postgresql"):
        dialect_insert = sqlite.insert if name == "sqlite" else postgresql.insert
        stmt = dialect_insert(table).on_conflict_do_nothing(index_elements=list(key)).returning(table.c.id)
        # executemany with RETURNING: SQLAlchemy batches it as multi-row VALUES; only new rows return.
        return len(s.execute(stmt, rows).all())
    # Any other database: check, then insert under a savepoint; a duplicate from a concurrent
    # writer shows up as an IntegrityError on a row that now exists.
    inserted = 0
    for row in rows:
        match = and_(*(table.c[k] == row[k] for k in key))
        if s.execute(select(table.c.id).where(match)).first() is not None:
            continue
        try:
            with s.begin_nested():
                s.execute(insert(table), row)
            inserted += 1
        except IntegrityError:
            if s.execute(select(table.c.id).where(match)).first() is None:
                raise
    return inserted


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


# ---------------------------------------------------------------------------------------------
# suites, prompts, runs


def get_or_create_suite(s: Session, name: str, hash: str) -> Suite:
    """The suite (name, hash), created if absent. `hash` names the suite's exact contents."""
    if not name or not hash:
        raise ValueError("a suite needs a name and a content hash")
    _insert_missing(s, _table(Suite), [{"name": name, "hash": hash, "created_at": utcnow()}], ("name", "hash"))
    return s.scalars(select(Suite).where(Suite.name == name, Suite.hash == hash)).one()


def add_prompts(s: Session, suite_id: int, prompts: Sequence[NewPrompt]) -> list[int]:
    """Add a suite's prompts (skipping stored ones); returns their ids in the order given.

    A stored prompt at the same index with a different tag or text is an error: the suite's
    hash should have differed.
    """
    indices = [p.index for p in prompts]
    if len(set(indices)) != len(indices):
        raise ValueError("prompt indices repeat within one call")
    if any(i < 0 for i in indices):
        raise ValueError("prompt indices must be >= 0")
    rows = [{"suite_id": suite_id, "index": p.index, "tag": p.tag, "text": p.text, "metadata": dict(p.metadata)}
            for p in prompts]
    _insert_missing(s, _table(Prompt), rows, ("suite_id", "index"))
    stored: dict[int, Prompt] = {}
    for start in range(0, len(indices), 500):
        chunk = indices[start : start + 500]
        for prompt in s.scalars(select(Prompt).where(Prompt.suite_id == suite_id, Prompt.index.in_(chunk))):
            stored[prompt.index] = prompt
    for p in prompts:
        have = stored[p.index]
        if (have.tag, have.text) != (p.tag, p.text):
            raise ValueError(f"suite {suite_id} already has prompt {p.index} as {have.tag}: {have.text!r}, "
                             f"not {p.tag}: {p.text!r}; a changed suite needs a new suite hash")
    return [stored[i].id for i in indices]


def get_or_create_run(s: Session, spec: RunSpec, code_version: str) -> Run:
    """The run of `spec` (id = `spec.run_id`), created if absent; its suite must be stored.

    code_version is recorded when the run is created and kept on later calls.
    """
    suite = s.scalars(select(Suite).where(Suite.name == spec.suite_name, Suite.hash == spec.suite_hash)).first()
    if suite is None:
        raise ValueError(f"suite {spec.suite_name!r} with hash {spec.suite_hash[:12]}… is not in the store; "
                         "add it with get_or_create_suite and add_prompts first")
    canonical = spec.canonical()
    canonical_json(canonical)  # refuses NaN and non-JSON params here, with the param in the message
    row = {
        "id": spec.run_id, "suite_id": suite.id, "generator": spec.generator,
        "generator_package": spec.generator_package, "generator_version": spec.generator_version,
        "params": dict(spec.params), "seed": spec.seed, "code_version": code_version, "spec": canonical,
        "created_at": utcnow(),
    }
    _insert_missing(s, _table(Run), [row], ("id",))
    return s.scalars(select(Run).where(Run.id == spec.run_id)).one()


# ---------------------------------------------------------------------------------------------
# candidates, verdicts, scores


def add_candidates(s: Session, run_id: str, prompt_id: int, candidates: Sequence[NewCandidate]) -> dict[int, int]:
    """Store a prompt's candidates, skipping sample indices already stored.

    Returns {sample index: candidate id} for every candidate given, new or already there
    (the stored row wins: its image is the one the verdicts and scores belong to).
    """
    samples = [c.sample_index for c in candidates]
    if len(set(samples)) != len(samples):
        raise ValueError(f"sample indices repeat within one call for prompt {prompt_id}")
    for c in candidates:
        if c.sample_index < 0:
            raise ValueError(f"sample index {c.sample_index} of prompt {prompt_id} is negative")
        if not _SHA256.fullmatch(c.image_sha256):
            raise ValueError(f"image_sha256 of prompt {prompt_id} sample {c.sample_index} must be 64 lowercase hex "
                             f"digits, got {c.image_sha256!r}")
    prompt_suite, run_suite = s.execute(select(
        select(Prompt.suite_id).where(Prompt.id == prompt_id).scalar_subquery(),
        select(Run.suite_id).where(Run.id == run_id).scalar_subquery(),
    )).one()
    if run_suite is None:
        raise ValueError(f"no run {run_id!r} in the store")
    if prompt_suite is None:
        raise ValueError(f"no prompt {prompt_id} in the store")
    if prompt_suite != run_suite:
        raise ValueError(f"prompt {prompt_id} is not in the suite of run {run_id[:12]}…")
    now = utcnow()
    rows = [{"run_id": run_id, "prompt_id": prompt_id, "sample_index": c.sample_index, "image_path": c.image_path,
             "image_sha256": c.image_sha256, "step_previews": list(c.step_previews), "cost": dict(c.cost),
             "seed": c.seed, "created_at": now} for c in candidates]
    _insert_missing(s, _table(Candidate), rows, ("run_id", "prompt_id", "sample_index"))
    if not samples:
        return {}
    found = s.execute(
        select(Candidate.sample_index, Candidate.id).where(
            Candidate.run_id == run_id, Candidate.prompt_id == prompt_id, Candidate.sample_index.in_(samples))
    ).all()
    return {int(sample): int(cid) for sample, cid in sorted(found)}


def stored_samples(s: Session, run_id: str) -> dict[int, set[int]]:
    """{prompt id: sample indices stored} for a run: what a resumed runner can skip."""
    out: dict[int, set[int]] = {}
    for prompt_id, sample in s.execute(
        select(Candidate.prompt_id, Candidate.sample_index).where(Candidate.run_id == run_id)
    ):
        out.setdefault(int(prompt_id), set()).add(int(sample))
    return out


def add_evaluations(s: Session, backend: str, settings_hash: str, evaluations: Sequence[NewEvaluation]) -> int:
    """Store verdicts by one evaluator (backend) + settings hash; returns how many were new."""
    _check_unique([e.candidate_id for e in evaluations], "evaluations")
    now = utcnow()
    rows = [{"candidate_id": e.candidate_id, "backend": backend, "settings_hash": settings_hash,
             "correct": bool(e.correct), "reason": e.reason, "details": dict(e.details),
             "detections": None if e.detections is None else dict(e.detections), "score": e.stored_score(),
             "created_at": now}
            for e in evaluations]
    return _insert_missing(s, _table(Evaluation), rows, ("candidate_id", "backend", "settings_hash"))


def add_verifier_scores(s: Session, verifier: str, settings_hash: str, scores: Sequence[NewScore]) -> int:
    """Store one verifier's scores (finite numbers, JSON-able details); returns how many were new.

    Every score is checked before anything is written, so a bad one leaves the caller's
    transaction with none of them (the runner then stores nothing for that prompt).
    """
    _check_unique([x.candidate_id for x in scores], "verifier scores")
    details = []
    for x in scores:
        if not is_finite(x.score) or not all(is_finite(v) for v in x.step_scores):
            raise ValueError(f"verifier {verifier!r} gave candidate {x.candidate_id} a score that is not a finite "
                             f"number ({x.score!r}, steps {list(x.step_scores)!r})")
        details.append(json_details(verifier, x.details, f"candidate {x.candidate_id}"))
    now = utcnow()
    rows = [{"candidate_id": x.candidate_id, "verifier": verifier, "settings_hash": settings_hash,
             "score": float(x.score), "step_scores": [float(v) for v in x.step_scores], "cost": dict(x.cost),
             "details": d, "created_at": now} for x, d in zip(scores, details, strict=True)]
    return _insert_missing(s, _table(VerifierScore), rows, ("candidate_id", "verifier", "settings_hash"))


def replace_verifier_scores(s: Session, verifier: str, settings_hash: str, scores: Sequence[NewScore]) -> int:
    """Store one verifier's scores in place of any stored for the same candidates and settings: for
    verifiers whose scores depend on the prompt's whole pool (`ensemble`), rescored when it grows."""
    ids = [x.candidate_id for x in scores]
    if ids:
        s.execute(delete(VerifierScore).where(VerifierScore.candidate_id.in_(ids), VerifierScore.verifier == verifier,
                                              VerifierScore.settings_hash == settings_hash))
    return add_verifier_scores(s, verifier, settings_hash, scores)


def json_details(verifier: str, details: Any, where: str) -> dict[str, Any]:
    """A score's `details` as the JSON value that will be read back (tuples become lists).

    Refuses, naming the verifier, what is not a mapping with string keys of JSON values
    (numpy scalars other than float64, objects, NaN and infinity: PostgreSQL's json rejects those).
    """
    if not isinstance(details, Mapping):
        raise ValueError(f"verifier {verifier!r} gave {where} details that are not a mapping: "
                         f"{type(details).__name__}")
    try:
        _check_keys(details)
        return dict(json.loads(json.dumps(dict(details), allow_nan=False)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"verifier {verifier!r} gave {where} details that are not JSON-able ({err}): "
                         f"{details!r:.200}") from None


def _json_object(value: Any, what: str) -> dict[str, Any]:
    """`value` (a mapping with string keys of JSON values) as it will read back; ValueError naming `what`."""
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not a mapping: {type(value).__name__}")
    try:
        _check_keys(value)
        return dict(json.loads(json.dumps(dict(value), allow_nan=False)))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not JSON-able ({err}): {value!r:.200}") from None


def _check_keys(value: Any) -> None:
    # json.dumps would silently turn int, float, bool and None keys into strings.
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"key {key!r} is not a string")
            _check_keys(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_keys(item)


def stored_verdicts(s: Session, candidate_ids: Sequence[int], backend: str, settings_hash: str) -> dict[int, bool]:
    """{candidate id: GenEval's `correct`} by (backend, settings hash), for those of `candidate_ids`
    that have such a verdict (verifiers that score by the verdict read it from here)."""
    ids = sorted(set(candidate_ids))
    out: dict[int, bool] = {}
    for start in range(0, len(ids), 500):  # bounded IN lists
        chunk = ids[start : start + 500]
        for cid, correct in s.execute(
            select(Evaluation.candidate_id, Evaluation.correct).where(
                Evaluation.candidate_id.in_(chunk), Evaluation.backend == backend,
                Evaluation.settings_hash == settings_hash)
        ):
            out[int(cid)] = bool(correct)
    return out


def judged_candidates(s: Session, run_id: str, backend: str, settings_hash: str,
                      max_samples: int | None = None) -> list[Any]:
    """Every candidate of a run with its prompt and its verdict under these evaluator settings, in
    (prompt index, sample index) order. Rows have: id, index, tag, text, meta, sample_index,
    image_sha256, image_path, step_previews, cost, correct, reason, detections, score, details.

    ValueError, with what to do, when the run is unknown, has no candidates, or a candidate has no
    verdict by these settings (the evaluator flags must be the ones the run used).
    """
    if s.get(Run, run_id) is None:
        raise ValueError(f"no run {run_id!r} in the store (`stepwise run` prints the id)")
    query = (select(Candidate.id, Prompt.index, Prompt.tag, Prompt.text, Prompt.meta, Candidate.sample_index,
                    Candidate.image_sha256, Candidate.image_path, Candidate.step_previews, Candidate.cost,
                    Evaluation.correct, Evaluation.reason, Evaluation.detections, Evaluation.score,
                    Evaluation.details)
             .select_from(Candidate).join(Prompt, Candidate.prompt_id == Prompt.id)
             .outerjoin(Evaluation, and_(Evaluation.candidate_id == Candidate.id,
                                         Evaluation.backend == backend, Evaluation.settings_hash == settings_hash))
             .where(Candidate.run_id == run_id).order_by(Prompt.index, Candidate.sample_index))
    if max_samples is not None:
        query = query.where(Candidate.sample_index < max_samples)
    rows = list(s.execute(query).all())
    if not rows:
        raise ValueError(f"run {run_id[:12]}… has no candidates")
    unjudged = [r for r in rows if r.correct is None]
    if unjudged:
        raise ValueError(f"run {run_id[:12]}…: {len(unjudged)} candidate(s) have no verdict by {backend} with these "
                         f"evaluator settings ({settings_hash[:12]}…), the first prompt {unjudged[0].index:05d}; give "
                         "the evaluator flags the run used (as for `stepwise curve --run`)")
    return rows


def _check_unique(ids: list[int], what: str) -> None:
    if len(set(ids)) != len(ids):
        raise ValueError(f"a candidate appears twice in one call of {what}")


def _run_candidates(run_id: str, max_samples: int | None) -> Any:
    query = (select(Candidate).join(Candidate.prompt).options(contains_eager(Candidate.prompt))
             .where(Candidate.run_id == run_id).order_by(Prompt.index, Candidate.sample_index))
    if max_samples is not None:
        query = query.where(Candidate.sample_index < max_samples)
    return query


def missing_evaluations(
    s: Session, run_id: str, backend: str, settings_hash: str, *, max_samples: int | None = None
) -> list[Candidate]:
    """The run's candidates with no verdict by (backend, settings hash), by prompt then sample.

    Each comes with its `prompt` loaded (tag, text, GenEval metadata). max_samples: only
    sample indices below it.
    """
    done = exists().where(Evaluation.candidate_id == Candidate.id, Evaluation.backend == backend,
                          Evaluation.settings_hash == settings_hash)
    return list(s.scalars(_run_candidates(run_id, max_samples).where(~done)))


def missing_scores(
    s: Session, run_id: str, verifier: str, settings_hash: str, *, max_samples: int | None = None
) -> list[Candidate]:
    """The run's candidates with no score by (verifier, settings hash), like `missing_evaluations`."""
    done = exists().where(VerifierScore.candidate_id == Candidate.id, VerifierScore.verifier == verifier,
                          VerifierScore.settings_hash == settings_hash)
    return list(s.scalars(_run_candidates(run_id, max_samples).where(~done)))


# ---------------------------------------------------------------------------------------------
# preparations: which checkpoint a run's generator loaded, and what made it


def run_preparations(s: Session, run_id: str) -> list[Preparation]:
    """The preparations recorded for a run, oldest first."""
    return list(s.scalars(select(Preparation).where(Preparation.run_id == run_id).order_by(Preparation.id)))


def check_preparation(s: Session, run_id: str, checkpoint: str, checkpoint_sha256: str) -> None:
    """`PreparationConflict` when the run records a checkpoint with other weights than `checkpoint_sha256`:
    the run's images came from those weights, not from the ones now at `checkpoint`."""
    for other in run_preparations(s, run_id):
        if other.checkpoint_sha256 != checkpoint_sha256:
            raise PreparationConflict(
                f"run {run_id[:12]}… generated its images with {other.checkpoint} when its weights had sha256 "
                f"{other.checkpoint_sha256[:12]}… (strategy {other.strategy}), but {checkpoint} now holds other "
                f"weights ({checkpoint_sha256[:12]}…); nothing was written. Write the new checkpoint elsewhere "
                "(the strategy's `out` parameter, or another --out)")


def add_preparation(s: Session, run_id: str, preparation: NewPreparation) -> bool:
    """Record that `run_id` generated with `preparation.checkpoint`; True when the row is new.

    Idempotent on (run, strategy, settings hash): the first row written wins. Raises
    `PreparationConflict` (writing nothing) when the run already records a checkpoint with
    other weights: the run's images came from those, not from the checkpoint now at that path.
    """
    if s.get(Run, run_id) is None:
        raise ValueError(f"no run {run_id!r} in the store")
    for value, what in ((preparation.settings_hash, "settings_hash"),
                        (preparation.checkpoint_sha256, "checkpoint_sha256")):
        if not _SHA256.fullmatch(value):
            raise ValueError(f"preparation {what} must be 64 lowercase hex digits, got {value!r}")
    check_preparation(s, run_id, preparation.checkpoint, preparation.checkpoint_sha256)
    params, manifest = (_json_object(value, f"strategy {preparation.strategy!r}: preparation {what}")
                        for value, what in ((preparation.params, "params"), (preparation.manifest, "manifest")))
    row = {"run_id": run_id, "strategy": preparation.strategy, "settings_hash": preparation.settings_hash,
           "params": params, "checkpoint": preparation.checkpoint,
           "checkpoint_sha256": preparation.checkpoint_sha256, "manifest": manifest, "created_at": utcnow()}
    return _insert_missing(s, _table(Preparation), [row], ("run_id", "strategy", "settings_hash")) == 1


# ---------------------------------------------------------------------------------------------
# results and pools


def add_result(
    s: Session,
    run_id: str,
    *,
    strategy: str,
    verifier: str,
    n: int,
    scores: Mapping[str, float],
    overall: float,
    low: float,
    high: float,
    evaluator: str,
    evaluator_settings_hash: str,
    verifier_settings_hash: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> Result:
    """Record one computed score (results are derived data: a new row each time, newest wins)."""
    for name, value in (("overall", overall), ("low", low), ("high", high), *scores.items()):
        if not is_finite(value):
            raise ValueError(f"result {name} must be a finite number, got {value!r}")
    result = Result(
        run_id=run_id, strategy=strategy, verifier=verifier, n=n, scores={k: float(v) for k, v in scores.items()},
        overall=float(overall), low=float(low), high=float(high), evaluator=evaluator,
        evaluator_settings_hash=evaluator_settings_hash, verifier_settings_hash=verifier_settings_hash,
        details=dict(details or {}),
    )
    s.add(result)
    s.flush()
    return result


def pool_arrays(
    s: Session,
    run_id: str,
    backend: str,
    settings_hash: str,
    verifiers: Mapping[str, str],
    *,
    max_samples: int | None = None,
    require_complete: bool = True,
) -> Pool:
    """A run's candidate pool as (P, m) arrays for `harness.scaling`, like `harness.pools.read_pool`.

    verifiers: {verifier name: settings hash}; `scores` is keyed by the names.
    max_samples: use sample indices below it only (a best-of-20 study on a pool of 80).
    require_complete: a candidate without a verdict by (backend, settings_hash) or without a
        score from every verifier is an error (True), or is left out (False).

    Returns `Pool(prompt_ids, tags, correct, valid, scores, outcome, ...)`: prompts in suite order, those
    with at least one usable candidate only, each named f"{index:05d}" (GenEval's folder
    name); each row holds its candidates by sample index, packed left; `valid` marks the
    cells that hold one (a ragged pool), `correct` is False and scores are 0 elsewhere.
    Compare `len(prompt_ids)` with the suite's size to see whether the run covers it all.
    Costs come from the stored cost JSON: `generator_seconds` (and `generator_forward_passes`,
    unless all 0, which plug-ins report when they do not know) from the candidates, and
    `verifier_seconds` from the scores, as the plug-in reported them; all None where any used
    row lacks a number.
    """
    if s.get(Run, run_id) is None:
        raise ValueError(f"no run {run_id!r} in the store")

    def _cost_values(costs: Sequence[Any], key: str) -> np.ndarray | None:
        """costs[i][key] as floats, or None if any cost lacks a finite number >= 0 there."""
        out = np.zeros(len(costs))
        for i, cost in enumerate(costs):
            value = cost.get(key) if isinstance(cost, Mapping) else None
            if not is_finite(value) or value < 0:
                return None
            out[i] = value
        return out

    query = (
        select(Prompt.index, Prompt.tag, Candidate.id, Candidate.sample_index, Evaluation.correct,
               Candidate.cost, Evaluation.score)
        .select_from(Candidate)
        .join(Prompt, Candidate.prompt_id == Prompt.id)
        .outerjoin(Evaluation, and_(Evaluation.candidate_id == Candidate.id, Evaluation.backend == backend,
                                    Evaluation.settings_hash == settings_hash))
        .where(Candidate.run_id == run_id)
        .order_by(Prompt.index, Candidate.sample_index)
    )
    if max_samples is not None:
        query = query.where(Candidate.sample_index < max_samples)
    rows = s.execute(query).all()
    if not rows:
        raise ValueError(f"run {run_id[:12]}… has no candidates" + (
            f" with sample index below {max_samples}" if max_samples is not None else ""))
    prompt_index = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    tag_of = {int(r[0]): str(r[1]) for r in rows}
    cand_id = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
    sample = np.fromiter((r[3] for r in rows), dtype=np.int64, count=len(rows))
    judged = np.fromiter((r[4] is not None for r in rows), dtype=bool, count=len(rows))
    correct = np.fromiter((bool(r[4]) for r in rows), dtype=bool, count=len(rows))
    # the verdict's score (migration 6 wrote 1.0 / 0.0 for GenEval's); a None never written reads as `correct`
    outcome = np.fromiter((float(r[6]) if r[6] is not None else float(bool(r[4])) for r in rows), dtype=np.float64,
                          count=len(rows))
    gen_seconds = _cost_values([r[5] for r in rows], "seconds")
    gen_passes = _cost_values([r[5] for r in rows], "forward_passes")

    usable = judged.copy()
    problems: list[str] = []
    if not judged.all():
        what = f"no verdict by {backend} ({settings_hash[:12]}…)"
        problems.append(_missing_text(what, ~judged, prompt_index, sample))
    order = np.argsort(cand_id)
    sorted_ids = cand_id[order]
    values: dict[str, np.ndarray] = {}
    seconds_of: dict[str, np.ndarray | None] = {}
    for name, verifier_hash in verifiers.items():
        found = s.execute(
            select(VerifierScore.candidate_id, VerifierScore.score, VerifierScore.cost)
            .join(Candidate, VerifierScore.candidate_id == Candidate.id)
            .where(Candidate.run_id == run_id, VerifierScore.verifier == name,
                   VerifierScore.settings_hash == verifier_hash)
        ).all()
        score = np.zeros(len(rows))
        scored = np.zeros(len(rows), dtype=bool)
        seconds: np.ndarray | None = np.zeros(len(rows))
        if found:
            ids = np.fromiter((f[0] for f in found), dtype=np.int64, count=len(found))
            pos = np.searchsorted(sorted_ids, ids)
            hit = (pos < len(sorted_ids)) & (sorted_ids[np.minimum(pos, len(sorted_ids) - 1)] == ids)
            at = order[pos[hit]]  # candidates outside max_samples are not in `rows`
            score[at] = np.fromiter((f[1] for f in found), dtype=np.float64, count=len(found))[hit]
            scored[at] = True
            found_seconds = _cost_values([f[2] for f in found], "seconds")
            if found_seconds is None:
                seconds = None
            else:
                seconds[at] = found_seconds[hit]  # type: ignore[index]
        seconds_of[name] = seconds
        if not scored.all():
            problems.append(_missing_text(f"no score by {name} ({verifier_hash[:12]}…)", ~scored, prompt_index, sample))
        usable &= scored
        values[name] = score
    if problems and require_complete:
        raise ValueError(f"run {run_id[:12]}…: " + "; ".join(problems)
                         + " (run the missing stages, or pass require_complete=False to leave them out)")
    if not usable.any():
        raise ValueError(f"run {run_id[:12]}…: no candidate has a verdict and every score")

    keep = np.flatnonzero(usable)
    prompts, start, counts = np.unique(prompt_index[keep], return_index=True, return_counts=True)
    row = np.repeat(np.arange(prompts.size), counts)
    col = np.arange(keep.size) - np.repeat(start, counts)
    shape = (prompts.size, int(counts.max()))
    valid = np.zeros(shape, dtype=bool)
    valid[row, col] = True
    correct_arr = np.zeros(shape, dtype=bool)
    correct_arr[row, col] = correct[keep]
    outcome_arr = np.zeros(shape)
    outcome_arr[row, col] = outcome[keep]
    score_arrs: dict[str, np.ndarray] = {}
    for name, score in values.items():
        arr = np.zeros(shape)
        arr[row, col] = score[keep]
        score_arrs[name] = arr

    def cells(values: np.ndarray | None) -> np.ndarray | None:
        if values is None:
            return None
        arr = np.zeros(shape)
        arr[row, col] = values[keep]
        return arr

    known = gen_seconds is not None and all(v is not None for v in seconds_of.values())
    passes = cells(gen_passes)
    return Pool(
        prompt_ids=[f"{int(p):05d}" for p in prompts],
        tags=[tag_of[int(p)] for p in prompts],
        correct=correct_arr,
        valid=valid,
        outcome=outcome_arr,
        scores=score_arrs,
        generator_seconds=cells(gen_seconds) if known else None,
        # 0 forward passes is what a plug-in reports when it does not know
        generator_forward_passes=passes if passes is not None and passes.any() else None,
        verifier_seconds={name: cells(v) for name, v in seconds_of.items()} if known else None,  # type: ignore[misc]
    )


def _missing_text(what: str, missing: np.ndarray, prompt_index: np.ndarray, sample: np.ndarray) -> str:
    first = int(np.flatnonzero(missing)[0])
    return (f"{int(missing.sum())} candidate(s) have {what}, the first prompt {int(prompt_index[first]):05d} "
            f"sample {int(sample[first])}")


def count_rows(s: Session, model: type[Any]) -> int:
    """Rows in a model's table (a diagnostic; used by tests and `stepwise` status output)."""
    return int(s.scalar(select(func.count()).select_from(_table(model))) or 0)
