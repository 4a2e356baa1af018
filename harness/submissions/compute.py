"""Recompute a reproduced entry's numbers from its export: nothing typed is trusted.

Scores are GenEval's (task = mean over its prompts, overall = mean over tasks) of the exact
expected best-of-n accuracy (`harness.scaling.curve`: ties shared evenly), so they equal what
`stepwise curve --run` computes from the same pool. Intervals are the stratified percentile
bootstrap of `harness.scaling.bootstrap_intervals` with a fixed seed (0) and 1000 resamples,
so everyone who loads the entry gets the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from harness.submissions.export import Export
from harness.submissions.model import CurvePoint, System

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "REFERENCE_ROWS", "STRATEGIES", "Recomputed",
           "recompute", "selecting_key"]

BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0
# Rows added to every entry's curves, as `stepwise curve` adds them: no verifier, and GenEval
# itself as the verifier (the upper bound).
REFERENCE_ROWS = ("random", "oracle")
# The strategies whose selection can be recomputed from an export:
#   best-of-n: the best of n candidates by the one verifier in system.verifiers;
#   none: one sample, i.e. n = 1 and no verifier (GenEval's plain protocol: the mean over images).
STRATEGIES = ("best-of-n", "none")


@dataclass(frozen=True)
class Recomputed:
    scores: dict[str, float]  # TASKS present in the export + "overall", at n = system.n
    intervals: dict[str, tuple[float, float]]
    curves: dict[str, tuple[CurvePoint, ...]]
    prompt_correct: dict[int, float]  # prompt index -> expected correctness of the selection


def selecting_key(system: System) -> str:
    """Which curve row is the system's selection: its verifier, or "random" without one."""
    return system.verifiers[0] if system.strategy == "best-of-n" else "random"


def recompute(export: Export, system: System) -> Recomputed:
    """The entry's numbers from a checked export (every prompt with the same m >= system.n candidates).

    The suite's figures (`harness.submissions.suites`): GenEval's tasks and overall of the 0/1 verdicts;
    GenEval 2's atomicities and Soft-TIFA GM (the mean over prompts) of the per-image scores, whose
    oracle is the best score among the n. The headline figure is filed as "overall" either way."""
    from harness.scaling import curve
    from harness.submissions.suites import view
    from harness.suites import aggregate, intervals

    suite = view(export.header.suite)
    records = sorted(export.records, key=lambda r: (r.prompt_index, r.sample_index))
    prompts = sorted({r.prompt_index for r in records})
    m = len(records) // len(prompts)
    shape = (len(prompts), m)  # rows: prompts in suite order, as `pool_arrays` builds them
    if suite.name == "geneval":
        outcomes = np.array([r.correct for r in records], dtype=bool).reshape(shape)
    else:
        outcomes = np.array([r.outcome for r in records], dtype=np.float64).reshape(shape)
    tags = [records[p * m].tag for p in range(len(prompts))]
    keys = {name: np.array([r.scores[name] for r in records], dtype=np.float64).reshape(shape)
            for name in export.header.verifiers}
    keys.setdefault("random", np.zeros(shape))
    keys.setdefault("oracle", outcomes.astype(np.float64))
    ns = list(range(1, m + 1))

    per_prompt = np.stack([curve(key, outcomes, ns) for key in keys.values()])  # (V, m, P)
    scores = aggregate(per_prompt, tags, overall_mean=suite.overall_mean)
    boot = intervals(per_prompt, tags, np.random.default_rng(BOOTSTRAP_SEED), n_boot=BOOTSTRAP_RESAMPLES,
                     overall_mean=suite.overall_mean)
    names = [*suite.order([t for t in scores if t != "overall"]), "overall"]
    seconds = _seconds_per_candidate(export, list(keys), len(records))

    curves: dict[str, tuple[CurvePoint, ...]] = {}
    for v, name in enumerate(keys):
        curves[name] = tuple(
            CurvePoint(n=n, overall=float(scores["overall"][v, i]), low=float(boot["overall"][0][v, i]),
                       high=float(boot["overall"][1][v, i]),
                       tasks={t: float(scores[t][v, i]) for t in names if t != "overall"},
                       seconds=n * seconds[name] if seconds is not None else None)
            for i, n in enumerate(ns))

    v = list(keys).index(selecting_key(system))
    i = system.n - 1
    return Recomputed(
        scores={t: float(scores[t][v, i]) for t in names},
        intervals={t: (float(boot[t][0][v, i]), float(boot[t][1][v, i])) for t in names},
        curves=curves,
        prompt_correct={p: float(per_prompt[v, i, row]) for row, p in enumerate(prompts)},
    )


def _seconds_per_candidate(export: Export, names: Sequence[str], count: int) -> dict[str, float] | None:
    """Mean seconds per candidate of each row, as `stepwise curve` counts compute: generator plus the
    row's verifier; random and oracle count the generator only (the oracle is not a real cost)."""
    if export.costs is None:
        return None
    generator = sum(c.generator_seconds for c in export.costs) / count
    out = {}
    for name in names:
        if name in REFERENCE_ROWS:
            out[name] = generator
        else:
            out[name] = generator + sum(c.verifier_seconds[name] for c in export.costs) / count
    return out
