"""What searches write to and read from the results store (tables in `harness.store.models`).

    searches            one per (run, settings hash, budget): the strategy, its params, verifiers, samples
    search_picks        one per (search, prompt, sample): the image, its ledger, the strategy's details
    search_traces       one per pick: its JSON events and their sha256
    search_evaluations  one per (pick, evaluator backend, settings hash): the suite's verdict and score

Like `harness.store.data`: every function takes an open session and never commits; writes are
idempotent (the first row written wins), so a search killed at any moment resumes with one
transaction per prompt and nothing lost or duplicated.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.store.data import _insert_missing, _json_object, _table
from harness.store.models import (
    Candidate,
    Evaluation,
    Prompt,
    Run,
    Search,
    SearchEvaluation,
    SearchPick,
    SearchTrace,
)
from harness.store.types import content_hash, utcnow

__all__ = ["NewPick", "PickRow", "SearchSpec", "add_pick_evaluations", "add_picks", "find_search",
           "get_or_create_search", "picked_prompts", "read_picks", "reusable_verdicts", "run_searches", "trace_sha256"]

# Bumped when what a search's settings mean changes (e.g. how its seeds are derived).
SEARCH_PROTOCOL = 1


@dataclass(frozen=True)
class SearchSpec:
    """What names a search's settings; its budget is kept apart (several budgets, one settings hash)."""

    strategy: str
    package: str
    version: str
    params: Mapping[str, Any]  # canonical JSON values
    verifiers: Mapping[str, str]  # name -> settings hash
    samples: int
    budget: int
    total_steps: int
    reads_metadata: tuple[str, ...] = ()

    @property
    def settings_hash(self) -> str:
        return content_hash({"strategy": {"name": self.strategy, "package": self.package, "version": self.version},
                             "params": dict(self.params), "verifiers": dict(self.verifiers),
                             "samples": self.samples, "protocol": SEARCH_PROTOCOL})


@dataclass(frozen=True)
class NewPick:
    """One sample's pick, ready to store with its trace and (optionally) its verdict."""

    sample_index: int
    image_path: str
    image_sha256: str
    ledger: Mapping[str, Any]
    events: Sequence[Mapping[str, Any]]
    details: Mapping[str, Any] = field(default_factory=dict)
    prompt_text: str | None = None
    correct: bool | None = None  # the verdict, with reason/details/detections, when judged
    reason: str = ""
    verdict_details: Mapping[str, Any] = field(default_factory=dict)
    detections: Mapping[str, Any] | None = None
    score: float | None = None  # the suite's per-image figure (GenEval 2: Soft-TIFA GM); None: the correctness


def trace_sha256(events: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of a trace's canonical JSON text (sorted keys, no spaces): what an export names it by."""
    text = json.dumps(list(events), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def get_or_create_search(s: Session, run_id: str, spec: SearchSpec) -> Search:
    """The search of (run, spec's settings, budget), created if absent."""
    if s.get(Run, run_id) is None:
        raise ValueError(f"no run {run_id!r} in the store")
    digest = spec.settings_hash
    row = {"run_id": run_id, "strategy": spec.strategy, "strategy_package": spec.package,
           "strategy_version": spec.version, "params": _json_object(spec.params, f"strategy {spec.strategy!r} params"),
           "verifiers": dict(spec.verifiers), "settings_hash": digest, "budget": int(spec.budget),
           "samples": int(spec.samples), "total_steps": int(spec.total_steps),
           "reads_metadata": sorted(spec.reads_metadata), "created_at": utcnow()}
    _insert_missing(s, _table(Search), [row], ("run_id", "settings_hash", "budget"))
    return s.scalars(select(Search).where(Search.run_id == run_id, Search.settings_hash == digest,
                                          Search.budget == int(spec.budget))).one()


def find_search(s: Session, run_id: str, settings_hash: str, budget: int) -> Search | None:
    return s.scalars(select(Search).where(Search.run_id == run_id, Search.settings_hash == settings_hash,
                                          Search.budget == int(budget))).first()


def run_searches(s: Session, run_id: str) -> list[Search]:
    """The searches stored for a run, by strategy, settings and budget."""
    return list(s.scalars(select(Search).where(Search.run_id == run_id)
                          .order_by(Search.strategy, Search.settings_hash, Search.budget)))


def picked_prompts(s: Session, search_id: int) -> set[int]:
    """Prompt ids with stored picks (a prompt's picks are written together: all its samples or none)."""
    return {int(p) for p in s.scalars(select(SearchPick.prompt_id).where(SearchPick.search_id == search_id))}


def reusable_verdicts(s: Session, prompt_id: int, shas: Sequence[str], backend: str,
                      settings_hash: str) -> dict[str, dict[str, Any]]:
    """{image sha256: verdict} already stored for these images of this prompt (its GenEval record is the
    same), by these evaluator settings: from pool candidates and from other searches' picks. A pick that
    is a pool candidate is then never judged twice."""
    wanted = sorted(set(shas))
    out: dict[str, dict[str, Any]] = {}
    if not wanted:
        return out
    pool = (select(Candidate.image_sha256, Evaluation.correct, Evaluation.reason, Evaluation.details,
                   Evaluation.detections, Evaluation.score)
            .join(Evaluation, Evaluation.candidate_id == Candidate.id)
            .where(Candidate.prompt_id == prompt_id, Candidate.image_sha256.in_(wanted),
                   Evaluation.backend == backend, Evaluation.settings_hash == settings_hash))
    picks = (select(SearchPick.image_sha256, SearchEvaluation.correct, SearchEvaluation.reason,
                    SearchEvaluation.details, SearchEvaluation.detections, SearchEvaluation.score)
             .join(SearchEvaluation, SearchEvaluation.pick_id == SearchPick.id)
             .where(SearchPick.prompt_id == prompt_id, SearchPick.image_sha256.in_(wanted),
                    SearchEvaluation.backend == backend, SearchEvaluation.settings_hash == settings_hash))
    for query in (pool, picks):
        for sha, correct, reason, details, detections, score in s.execute(query):
            out.setdefault(str(sha), {"correct": bool(correct), "reason": reason or "", "details": dict(details or {}),
                                      "detections": detections,
                                      "score": float(score) if score is not None else float(bool(correct))})
    return out


def add_picks(s: Session, search_id: int, prompt_id: int, picks: Sequence[NewPick], *,
              backend: str | None = None, settings_hash: str | None = None) -> dict[int, int]:
    """Store a prompt's picks with their traces (and verdicts by `backend`/`settings_hash` for those
    with one), skipping samples already stored; returns {sample index: pick id}."""
    samples = [p.sample_index for p in picks]
    if len(set(samples)) != len(samples):
        raise ValueError(f"sample indices repeat within one call for prompt {prompt_id}")
    now = utcnow()
    rows = []
    for p in picks:
        rows.append({"search_id": search_id, "prompt_id": prompt_id, "sample_index": p.sample_index,
                     "image_path": p.image_path, "image_sha256": p.image_sha256, "prompt_text": p.prompt_text,
                     "ledger": _json_object(p.ledger, "a pick's ledger"),
                     "details": _json_object(p.details, "a search strategy's details"), "created_at": now})
    _insert_missing(s, _table(SearchPick), rows, ("search_id", "prompt_id", "sample_index"))
    ids = {int(sample): int(pid) for sample, pid in s.execute(
        select(SearchPick.sample_index, SearchPick.id).where(
            SearchPick.search_id == search_id, SearchPick.prompt_id == prompt_id,
            SearchPick.sample_index.in_(samples)))} if samples else {}
    traces = []
    for p in picks:
        events = [_json_object(e, "a trace event") for e in p.events]
        traces.append({"pick_id": ids[p.sample_index], "sha256": trace_sha256(events), "events": events,
                       "created_at": now})
    _insert_missing(s, _table(SearchTrace), traces, ("pick_id",))
    judged = [p for p in picks if p.correct is not None]
    if judged:
        if backend is None or settings_hash is None:
            raise ValueError("verdicts need the evaluator's backend and settings hash")
        add_pick_evaluations(s, backend, settings_hash, [
            (ids[p.sample_index], bool(p.correct), p.reason, p.verdict_details, p.detections, p.score)
            for p in judged])
    return ids


def add_pick_evaluations(
    s: Session, backend: str, settings_hash: str,
    verdicts: Sequence[tuple[int, bool, str, Mapping[str, Any], Mapping[str, Any] | None, float | None]],
) -> int:
    """Store verdicts of picks: (pick id, correct, reason, details, detections, score); how many were new.
    A score of None is the correctness, 1.0 or 0.0, as a GenEval verdict's."""
    now = utcnow()
    rows = []
    for pid, correct, reason, details, detections, score in verdicts:
        score = score if score is not None else (1.0 if correct else 0.0)
        rows.append({"pick_id": pid, "backend": backend, "settings_hash": settings_hash, "correct": bool(correct),
                     "reason": reason, "details": dict(details),
                     "detections": None if detections is None else dict(detections), "score": float(score),
                     "created_at": now})
    return _insert_missing(s, _table(SearchEvaluation), rows, ("pick_id", "backend", "settings_hash"))


@dataclass(frozen=True)
class PickRow:
    """A stored pick with its prompt and its verdict by one evaluator (None: not judged by it)."""

    pick_id: int
    prompt_index: int
    tag: str
    prompt: str
    metadata: dict[str, Any]
    sample_index: int
    image_path: str
    image_sha256: str
    prompt_text: str | None
    ledger: dict[str, Any]
    details: dict[str, Any]
    trace_sha256: str
    correct: bool | None
    reason: str
    detections: dict[str, Any] | None
    score: float | None = None  # the verdict's per-image figure (GenEval: 1.0 or 0.0), None when not judged
    verdict_details: dict[str, Any] = field(default_factory=dict)  # the verdict's details (GenEval 2: its answers)


def read_picks(s: Session, search_id: int, backend: str, settings_hash: str, *,
               with_events: bool = False) -> tuple[list[PickRow], dict[int, list[Any]]]:
    """Every pick of a search in (prompt index, sample) order with its verdict by these settings, and
    (with_events) {pick id: trace events}."""
    from sqlalchemy import and_

    query = (select(SearchPick, Prompt.index, Prompt.tag, Prompt.text, Prompt.meta, SearchTrace.sha256,
                    SearchEvaluation.correct, SearchEvaluation.reason, SearchEvaluation.detections,
                    SearchEvaluation.score, SearchEvaluation.details)
             .join(Prompt, SearchPick.prompt_id == Prompt.id)
             .join(SearchTrace, SearchTrace.pick_id == SearchPick.id)
             .outerjoin(SearchEvaluation, and_(SearchEvaluation.pick_id == SearchPick.id,
                                               SearchEvaluation.backend == backend,
                                               SearchEvaluation.settings_hash == settings_hash))
             .where(SearchPick.search_id == search_id)
             .order_by(Prompt.index, SearchPick.sample_index))
    rows = []
    for pick, index, tag, text, meta, trace_sha, correct, reason, detections, score, verdict in s.execute(query):
        judged = correct is not None
        rows.append(PickRow(pick.id, int(index), tag, text, dict(meta), pick.sample_index, pick.image_path,
                            pick.image_sha256, pick.prompt_text, dict(pick.ledger), dict(pick.details), trace_sha,
                            bool(correct) if judged else None, reason or "", detections,
                            (float(score) if score is not None else float(bool(correct))) if judged else None,
                            dict(verdict or {})))
    events: dict[int, list[Any]] = {}
    if with_events and rows:
        ids = [r.pick_id for r in rows]
        for start in range(0, len(ids), 500):
            for pick_id, found in s.execute(select(SearchTrace.pick_id, SearchTrace.events)
                                            .where(SearchTrace.pick_id.in_(ids[start:start + 500]))):
                events[int(pick_id)] = list(found)
    return rows, events


def copy_searches(src: Session, dst: Session, prompt_map: Mapping[int, int]) -> dict[str, int]:
    """Copy every search, pick, trace and pick verdict of `src` into `dst` by natural keys (`stepwise
    merge`): searches by (run, settings hash, budget), picks by (search, prompt, sample), traces by pick,
    verdicts by (pick, backend, settings hash). `prompt_map`: source prompt id -> destination prompt id
    (the runs and prompts are copied first). Returns rows seen per table."""
    searches = list(src.scalars(select(Search).order_by(Search.id)))
    picks = list(src.scalars(select(SearchPick).order_by(SearchPick.id)))
    traces = {t.pick_id: t for t in src.scalars(select(SearchTrace))}
    verdicts = list(src.scalars(select(SearchEvaluation).order_by(SearchEvaluation.id)))
    search_map: dict[int, int] = {}
    for x in searches:
        spec = SearchSpec(x.strategy, x.strategy_package, x.strategy_version, x.params, x.verifiers, x.samples,
                          x.budget, x.total_steps, tuple(x.reads_metadata))
        if spec.settings_hash != x.settings_hash:
            raise ValueError(f"search {x.id} ({x.strategy}) does not hash to its settings hash; the source store "
                             "is inconsistent")
        search_map[x.id] = get_or_create_search(dst, x.run_id, spec).id
    groups: dict[tuple[int, int], list[SearchPick]] = {}
    for p in picks:
        groups.setdefault((p.search_id, p.prompt_id), []).append(p)
    pick_map: dict[int, int] = {}
    for (search_id, prompt_id), rows in groups.items():
        ids = add_picks(dst, search_map[search_id], prompt_map[prompt_id], [
            NewPick(p.sample_index, p.image_path, p.image_sha256, p.ledger, traces[p.id].events, p.details,
                    p.prompt_text) for p in rows])
        pick_map.update({p.id: ids[p.sample_index] for p in rows})
    by_settings: dict[tuple[str, str], list[Any]] = {}
    for v in verdicts:
        by_settings.setdefault((v.backend, v.settings_hash), []).append(
            (pick_map[v.pick_id], v.correct, v.reason, v.details, v.detections, v.score))
    for (backend, key), rows in by_settings.items():
        add_pick_evaluations(dst, backend, key, rows)
    return {"searches": len(searches), "picks": len(picks), "pick verdicts": len(verdicts)}
