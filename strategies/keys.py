"""A strategy's selection keys over a candidate pool: (P, m) arrays for `harness.scaling`, like a verifier's.

`stepwise curve --strategy NAME` builds the strategy (no model: strategies read stored scores),
gathers for every prompt the `VerifierScore`s of the verifiers it names (`strategy.verifiers`),
in the pool's candidate order, and calls `select_key` once per prompt:

    scores = store_scores(s, run_id, pool, {"parm": settings_hash})   # or jsonl_scores(pool, names)
    keys = strategy_keys("parm", strategy, scores, pool)                # (P, m), 0 where invalid

From the store a score comes back whole (score, step_scores, cost, details); a JSONL pool holds
the score only. Keys are one per candidate. A strategy that reads no verifier cannot tell its
candidates apart (it is given an empty mapping) and returns no keys: every candidate ties, and
ties are shared evenly, so its curve is the pool's mean accuracy.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.plugins import Cost, Strategy, VerifierScore
from harness.pools import Pool
from harness.store import Candidate, Prompt
from harness.store import VerifierScore as StoredScore

__all__ = ["PromptScores", "jsonl_scores", "store_scores", "strategy_keys"]

#: per prompt, in pool order: {verifier: one VerifierScore per candidate, in the pool's column order}
PromptScores = list[dict[str, list[VerifierScore]]]


def _cost(stored: Any) -> Cost:
    """A stored cost dict as `Cost`; keys a plug-in did not report count 0."""
    stored = stored if isinstance(stored, Mapping) else {}
    return Cost(int(stored.get("forward_passes") or 0), int(stored.get("tokens") or 0),
                float(stored.get("seconds") or 0.0))


def store_scores(s: Session, run_id: str, pool: Pool, verifiers: Mapping[str, str], *,
                 max_samples: int | None = None) -> PromptScores:
    """The stored scores of `verifiers` ({name: settings hash}) for every candidate of `pool`.

    `pool` is what `pool_arrays` read for the same run, verifiers and `max_samples` (complete:
    every candidate has a score from each verifier); its prompt i holds the prompt's candidates
    in sample-index order, packed left, which is the order the scores are read in here.
    """
    wanted = {int(prompt_id): p for p, prompt_id in enumerate(pool.prompt_ids)}
    out: PromptScores = [{} for _ in pool.prompt_ids]
    for name, settings_hash in verifiers.items():
        query = (
            select(Prompt.index, StoredScore.score, StoredScore.step_scores, StoredScore.cost, StoredScore.details)
            .select_from(StoredScore)
            .join(Candidate, StoredScore.candidate_id == Candidate.id)
            .join(Prompt, Candidate.prompt_id == Prompt.id)
            .where(Candidate.run_id == run_id, StoredScore.verifier == name,
                   StoredScore.settings_hash == settings_hash)
            .order_by(Prompt.index, Candidate.sample_index)
        )
        if max_samples is not None:
            query = query.where(Candidate.sample_index < max_samples)
        for p in range(len(out)):
            out[p][name] = []
        for index, score, step_scores, cost, details in s.execute(query):
            p = wanted.get(int(index))
            if p is not None:
                out[p][name].append(VerifierScore(float(score), tuple(step_scores or ()), _cost(cost),
                                                  dict(details or {})))
        for p, prompt_id in enumerate(pool.prompt_ids):
            if len(out[p][name]) != int(pool.sizes[p]):
                raise ValueError(f"run {run_id[:12]}…, prompt {prompt_id}: {len(out[p][name])} scores by {name}, "
                                 f"{int(pool.sizes[p])} candidates (was the store written to meanwhile?)")
    return out


def jsonl_scores(pool: Pool, verifiers: Sequence[str]) -> PromptScores:
    """The scores of `verifiers` in a JSONL pool, as VerifierScores (the score only: no steps, no details)."""
    missing = [name for name in verifiers if name not in pool.scores]
    if missing:
        raise ValueError(f"the pool has no scores by {', '.join(missing)}; it has {', '.join(pool.scores)}")
    return [{name: [VerifierScore(float(x)) for x in pool.scores[name][p, : int(size)]] for name in verifiers}
            for p, size in enumerate(pool.sizes)]


def strategy_keys(name: str, strategy: Strategy, scores: PromptScores, pool: Pool) -> np.ndarray:
    """(P, m) keys of `strategy` over `pool`, 0 in invalid cells; ValueError naming the strategy and
    prompt when it returns the wrong number of keys or a key that is not a finite number."""
    keys = np.zeros(pool.valid.shape, dtype=np.float64)
    reads_nothing = not tuple(strategy.verifiers)
    for p, prompt_scores in enumerate(scores):
        size = int(pool.sizes[p])
        values = list(strategy.select_key(prompt_scores))
        if not values and reads_nothing:
            continue  # no keys: every candidate ties (they are all 0)
        if len(values) != size:
            raise ValueError(f"strategy {name!r} gave {len(values)} keys for the {size} candidates of prompt "
                             f"{pool.prompt_ids[p]}")
        bad = [v for v in values if not (isinstance(v, numbers.Real) and math.isfinite(v))]
        if bad:
            raise ValueError(f"strategy {name!r} gave prompt {pool.prompt_ids[p]} keys that are not finite "
                             f"numbers: {bad[:3]!r}")
        keys[p, :size] = values
    return keys
