"""The verifier report of a judged pool: what `stepwise analyze`, `make demo` and the leaderboard's
Verifiers pages show, per verifier, per GenEval task and overall (the metrics: `harness.analysis.metrics`).

    report = analyze(pool, rng=np.random.default_rng(0), probabilities=score_probabilities(pool.scores))
    print(render_text(report)); json.dumps(analysis_json(report))

Per verifier and group (each task, then "overall"), against GenEval's verdicts:

    prompts, informative          prompts in the group; those with correct and incorrect candidates
    all_correct, all_incorrect    the prompts left out of the within-prompt AUROC (no pair to rank)
    within_auroc [interval]       mean of the informative prompts' within-prompt AUROC
    pooled_auroc [interval]       AUROC over all the group's candidates
    average_precision             over all the group's candidates (sklearn)
    miss_at_n, miss_prompts       share of the prompts with a correct candidate whose best-of-N pick
                                  (N = all candidates) is incorrect, and how many such prompts
    regret[n] [interval]          oracle minus verifier, exact best-of-n accuracy; a task's is the mean
                                  over its prompts and overall's the mean over tasks (GenEval's score)
    calibration                   reliability diagram and ECE of the probabilities the scores state
                                  (verifiers with `score_probability`: orm, prm, vqascore; parm's survivors)
    steps                         per step s of the step scores (prm, parm, any verifier run on
                                  previews): the within-prompt and pooled AUROC of the step-s score
                                  against the final verdict; the number of informative prompts
    parm                          for verifiers whose details hold PARM's decisions (clear_step,
                                  potential): clarity (ever judged clear) and potential (yes / no /
                                  other, clear paths only) against the final verdict, as counts

Between every two verifiers: the within-prompt Spearman correlation of their scores (mean over the
prompts where both vary) and their top-1 agreement at n = N (mean over prompts).

"overall" pools the group's prompts: means over all its prompts, AUROC/AP over all its candidates;
only regret follows GenEval's overall (mean over tasks), being a difference of GenEval scores.
Intervals: the stratified percentile bootstrap of `metrics.bootstrap_counts`, one set of resamples
for every verifier and statistic (paired), seeded by the caller.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.analysis import metrics
from harness.analysis.metrics import Reliability

if TYPE_CHECKING:
    from harness.pools import Pool

__all__ = ["Agreement", "Analysis", "GroupReport", "ParmDecisions", "StepCurve", "VerifierReport", "analysis_json",
           "analyze", "pool_from_records", "render_text", "score_probabilities", "with_stored_scores"]

OVERALL = "overall"
Interval = tuple[float, float]
Probability = Callable[[float], "float | None"]
GENEVAL_ORDER = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass(frozen=True)
class GroupReport:
    prompts: int
    informative: int
    all_correct: int
    all_incorrect: int
    within_auroc: float | None
    within_interval: Interval | None
    pooled_auroc: float | None
    pooled_interval: Interval | None
    average_precision: float | None
    miss_at_n: float | None
    miss_prompts: int
    regret: dict[int, float]
    regret_interval: dict[int, Interval]


@dataclass(frozen=True)
class StepCurve:
    steps: tuple[int, ...]  # step indices 0 .. S-1
    within: dict[str, tuple[float | None, ...]]  # group -> per step
    within_interval: dict[str, tuple[Interval | None, ...]]
    pooled: dict[str, tuple[float | None, ...]]
    informative: dict[str, tuple[int, ...]]


@dataclass(frozen=True)
class ParmDecisions:
    """Counts of paths by decision and final verdict (columns: correct, incorrect)."""

    clarity: dict[str, tuple[int, int]]  # "clear" / "never clear"
    potential: dict[str, tuple[int, int]]  # "yes" / "no" / "other" (clear paths)
    mean_clear_step: float | None  # over clear paths


@dataclass(frozen=True)
class VerifierReport:
    name: str
    groups: dict[str, GroupReport]
    calibration: dict[str, Reliability] | None  # None: the scores state no probability
    steps: StepCurve | None
    parm: dict[str, ParmDecisions] | None


@dataclass(frozen=True)
class Agreement:
    a: str
    b: str
    spearman: dict[str, float | None]
    spearman_prompts: dict[str, int]  # prompts where both verifiers' scores vary
    top1: dict[str, float]


@dataclass(frozen=True)
class Analysis:
    prompts: int
    candidates: int
    groups: tuple[str, ...]  # tasks in GenEval's order (others after, sorted), then "overall"
    ns: tuple[int, ...]
    n_boot: int
    seed: int | None
    level: float
    verifiers: dict[str, VerifierReport]
    agreement: tuple[Agreement, ...]


def _value(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _mean(values: np.ndarray) -> float | None:
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else None


def _groups(tags: Sequence[str]) -> dict[str, np.ndarray]:
    """{group: (P,) bool mask}: each task (GenEval's order, then others sorted), then every prompt."""
    tags_arr = np.asarray([str(t) for t in tags])
    present = set(tags_arr.tolist())
    order = [t for t in GENEVAL_ORDER if t in present] + sorted(present - set(GENEVAL_ORDER))
    out = {t: tags_arr == t for t in order}
    out[OVERALL] = np.ones(len(tags_arr), dtype=bool)
    return out


def _group_report(mask: np.ndarray, key: np.ndarray, pool: Pool, counts: np.ndarray, level: float,
                  regret: np.ndarray, regret_stats: dict[int, tuple[float, Interval | None]]) -> GroupReport:
    correct, valid = pool.correct[mask], pool.valid[mask]
    s = key[mask]
    auc, pairs = metrics.within_prompt_auroc(s, correct, valid)
    has_correct = (correct & valid).any(axis=1)
    has_incorrect = (~correct & valid).any(axis=1)
    miss = metrics.full_pool_miss(s, correct, valid)
    sub = counts[:, mask]
    return GroupReport(
        prompts=int(mask.sum()),
        informative=int((pairs > 0).sum()),
        all_correct=int((has_correct & ~has_incorrect).sum()),
        all_incorrect=int((~has_correct).sum()),
        within_auroc=_mean(auc),
        within_interval=metrics.weighted_mean_interval(auc, sub, level),
        pooled_auroc=_value(metrics.pooled_auroc(s, correct, valid)),
        pooled_interval=metrics.pooled_auroc_interval(s, correct, valid, sub, level),
        average_precision=_value(metrics.average_precision(s, correct, valid)),
        miss_at_n=_mean(miss),
        miss_prompts=int(has_correct.sum()),
        regret={n: value for n, (value, _) in regret_stats.items()},
        regret_interval={n: iv for n, (_, iv) in regret_stats.items() if iv is not None},
    )


def _regret_stats(regret: np.ndarray, groups: dict[str, np.ndarray], counts: np.ndarray, ns: Sequence[int],
                  level: float) -> dict[str, dict[int, tuple[float, Interval | None]]]:
    """{group: {n: (GenEval-style regret, interval)}}: task = mean over its prompts, overall = mean over tasks;
    the same per resample (counts-weighted means)."""
    tasks = [g for g in groups if g != OVERALL]
    task_value = {t: regret[:, groups[t]].mean(axis=1) for t in tasks}  # (K,)
    task_boot = {}
    for t in tasks:
        c = counts[:, groups[t]]
        task_boot[t] = (c @ regret[:, groups[t]].T) / c.sum(axis=1, keepdims=True)  # (B, K)
    out: dict[str, dict[int, tuple[float, Interval | None]]] = {}
    for t in tasks:
        out[t] = {n: (float(task_value[t][k]), metrics.percentile_interval(task_boot[t][:, k], level))
                  for k, n in enumerate(ns)}
    overall = np.mean([task_value[t] for t in tasks], axis=0)
    overall_boot = np.mean([task_boot[t] for t in tasks], axis=0)
    out[OVERALL] = {n: (float(overall[k]), metrics.percentile_interval(overall_boot[:, k], level))
                    for k, n in enumerate(ns)}
    return out


def stated_probabilities(key: np.ndarray, valid: np.ndarray, probability: Probability) -> np.ndarray:
    """(P, m) the probability each valid candidate's score states (NaN: none, or an invalid cell)."""
    stated = np.full(key.shape, np.nan)
    for p, k in zip(*np.nonzero(valid), strict=True):
        value = probability(float(key[p, k]))
        if value is not None:
            stated[p, k] = value
    return stated


def _calibration(name: str, key: np.ndarray, pool: Pool, groups: dict[str, np.ndarray], probability: Probability,
                 n_bins: int) -> dict[str, Reliability]:
    stated = stated_probabilities(key, pool.valid, probability)
    has = ~np.isnan(stated)
    outside = has & ((stated < 0) | (stated > 1))
    if outside.any():
        p, k = np.argwhere(outside)[0]
        raise ValueError(f"verifier {name!r}: the score {key[p, k]!r} of prompt {pool.prompt_ids[p]}, candidate {k} "
                         f"states a probability of {stated[p, k]!r}, outside [0, 1]; are these {name}'s scores?")
    return {g: metrics.reliability(stated[mask][has[mask]], pool.correct[mask][has[mask]], n_bins)
            for g, mask in groups.items()}


def _steps(steps: np.ndarray, pool: Pool, groups: dict[str, np.ndarray], counts: np.ndarray,
           level: float) -> StepCurve:
    within: dict[str, list[float | None]] = {g: [] for g in groups}
    within_iv: dict[str, list[Interval | None]] = {g: [] for g in groups}
    pooled: dict[str, list[float | None]] = {g: [] for g in groups}
    informative: dict[str, list[int]] = {g: [] for g in groups}
    for s in range(steps.shape[2]):
        at = steps[:, :, s]
        valid = pool.valid & ~np.isnan(at)
        auc, pairs = metrics.within_prompt_auroc(np.where(valid, at, 0.0), pool.correct, valid)
        for g, mask in groups.items():
            within[g].append(_mean(auc[mask]))
            within_iv[g].append(metrics.weighted_mean_interval(auc[mask], counts[:, mask], level))
            pooled[g].append(_value(metrics.pooled_auroc(np.where(valid, at, 0.0)[mask], pool.correct[mask],
                                                         valid[mask])))
            informative[g].append(int((pairs[mask] > 0).sum()))
    return StepCurve(tuple(range(steps.shape[2])), {g: tuple(v) for g, v in within.items()},
                     {g: tuple(v) for g, v in within_iv.items()}, {g: tuple(v) for g, v in pooled.items()},
                     {g: tuple(v) for g, v in informative.items()})


def _parm(details: list[list[dict[str, Any]]], pool: Pool,
          groups: dict[str, np.ndarray]) -> dict[str, ParmDecisions] | None:
    """PARM's decisions against the final verdict, when every candidate's details hold them."""
    flat = [(p, k, d) for p, row in enumerate(details) for k, d in enumerate(row)]
    if not flat or not all(isinstance(d, Mapping) and "clear_step" in d and "potential" in d for _, _, d in flat):
        return None
    out = {}
    for g, mask in groups.items():
        clarity = {"clear": [0, 0], "never clear": [0, 0]}
        potential = {"yes": [0, 0], "no": [0, 0], "other": [0, 0]}
        steps = []
        for p, k, d in flat:
            if not mask[p] or not pool.valid[p, k]:
                continue
            column = 0 if pool.correct[p, k] else 1
            if d["clear_step"] is None:
                clarity["never clear"][column] += 1
                continue
            clarity["clear"][column] += 1
            steps.append(float(d["clear_step"]))
            decision = d["potential"] if d["potential"] in ("yes", "no") else "other"
            potential[decision][column] += 1
        out[g] = ParmDecisions({k: (v[0], v[1]) for k, v in clarity.items()},
                               {k: (v[0], v[1]) for k, v in potential.items()},
                               sum(steps) / len(steps) if steps else None)
    return out


def _agreement(a: str, b: str, pool: Pool, groups: dict[str, np.ndarray]) -> Agreement:
    rho = metrics.spearman_within_prompts(pool.scores[a], pool.scores[b], pool.valid)
    top1 = metrics.top1_agreement(pool.scores[a], pool.scores[b], pool.valid)
    return Agreement(a, b, {g: _mean(rho[m]) for g, m in groups.items()},
                     {g: int((~np.isnan(rho[m])).sum()) for g, m in groups.items()},
                     {g: float(top1[m].mean()) for g, m in groups.items()})


def analyze(pool: Pool, *, rng: np.random.Generator, verifiers: Sequence[str] | None = None,
            probabilities: Mapping[str, Probability] | None = None, ns: Sequence[int] | None = None,
            n_boot: int = 1000, level: float = 0.95, n_bins: int = 10, seed: int | None = None) -> Analysis:
    """The report of `pool` (a `harness.pools.Pool`, optionally with step scores and details).

    verifiers: which score columns (default: all, in the pool's order). probabilities: {verifier:
    score -> stated probability or None} for the calibrated ones (`score_probabilities`). ns: the
    subset sizes of the regret curve (default 1 .. the smallest prompt's pool). rng: required (the
    bootstrap); `seed` is only recorded.
    """
    names = list(pool.scores) if verifiers is None else list(verifiers)
    missing = [v for v in names if v not in pool.scores]
    if missing:
        raise ValueError(f"the pool has no scores by {', '.join(missing)}; it has {', '.join(pool.scores)}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    smallest = int(pool.valid.sum(axis=1).min())
    ns = list(range(1, smallest + 1)) if ns is None else sorted(set(int(n) for n in ns))
    if not ns or ns[0] < 1 or ns[-1] > smallest:
        raise ValueError(f"regret needs 1 <= n <= {smallest} (the smallest prompt's candidates), got {ns}")
    groups = _groups(pool.tags)
    counts = metrics.bootstrap_counts(pool.tags, rng, n_boot)
    probabilities = probabilities or {}
    reports = {}
    for name in names:
        key = pool.scores[name]
        regret = metrics.regret(key, pool.correct, ns, pool.valid)
        stats = _regret_stats(regret, groups, counts, ns, level)
        steps = (pool.step_scores or {}).get(name)
        details = (pool.details or {}).get(name)
        reports[name] = VerifierReport(
            name=name,
            groups={g: _group_report(mask, key, pool, counts, level, regret, stats[g]) for g, mask in groups.items()},
            calibration=(_calibration(name, key, pool, groups, probabilities[name], n_bins)
                         if name in probabilities else None),
            steps=_steps(steps, pool, groups, counts, level) if steps is not None and steps.shape[2] else None,
            parm=_parm(details, pool, groups) if details is not None else None,
        )
    agreement = tuple(_agreement(a, b, pool, groups) for a, b in itertools.combinations(names, 2))
    return Analysis(prompts=len(pool.prompt_ids), candidates=int(pool.valid.sum()), groups=tuple(groups),
                    ns=tuple(ns), n_boot=int(n_boot), seed=seed, level=level, verifiers=reports, agreement=agreement)


# ---------------------------------------------------------------------------------------------
# inputs


def score_probabilities(names: Iterable[str]) -> dict[str, Probability]:
    """{verifier: its `score_probability`} for the registered verifiers that declare one (others, and
    names no plug-in has, e.g. a JSONL pool's own, are left out). Imports plug-in classes, builds none."""
    from harness import registry

    out: dict[str, Probability] = {}
    for name in names:
        try:
            cls = registry.verifiers.get(name)
        except registry.PluginError:
            continue
        function = getattr(cls, "score_probability", None)
        if callable(function):
            out[name] = function
    return out


def with_stored_scores(pool: Pool, prompt_scores: Sequence[Mapping[str, Sequence[Any]]]) -> Pool:
    """`pool` with the step scores and details of stored VerifierScores (`strategies.keys.store_scores`,
    per prompt in pool order, {verifier: one per candidate})."""
    from harness.pools import step_arrays

    width = pool.valid.shape[1]
    names = sorted({name for prompt in prompt_scores for name in prompt})
    steps = step_arrays([[{name: list(prompt[name][k].step_scores) for name in names if prompt[name][k].step_scores}
                          for k in range(len(prompt[names[0]]))] for prompt in prompt_scores], width) if names else None
    details = {name: [[dict(score.details) for score in prompt[name]] for prompt in prompt_scores] for name in names}
    return dataclasses.replace(pool, step_scores=steps, details=details or None)


def pool_from_records(records: Sequence[Any]) -> Pool:
    """A Pool from a reproduced entry's export records (`ImageRecord`s: prompt_index, tag, sample_index,
    correct, scores, step_scores), prompts in index order, candidates in sample order."""
    from harness.pools import Pool, step_arrays

    by_prompt: dict[int, list[Any]] = {}
    for record in sorted(records, key=lambda r: (r.prompt_index, r.sample_index)):
        by_prompt.setdefault(record.prompt_index, []).append(record)
    width = max(len(rows) for rows in by_prompt.values())
    shape = (len(by_prompt), width)
    names = sorted({name for r in records for name in r.scores})
    correct = np.zeros(shape, dtype=bool)
    valid = np.zeros(shape, dtype=bool)
    scores = {name: np.zeros(shape) for name in names}
    for p, rows in enumerate(by_prompt.values()):
        for k, record in enumerate(rows):
            correct[p, k], valid[p, k] = record.correct, True
            for name in names:
                scores[name][p, k] = record.scores[name]
    steps = step_arrays([[dict(getattr(r, "step_scores", {}) or {}) for r in rows] for rows in by_prompt.values()],
                        width)
    return Pool(prompt_ids=[f"{p:05d}" for p in by_prompt], tags=[rows[0].tag for rows in by_prompt.values()],
                correct=correct, valid=valid, scores=scores, step_scores=steps)


# ---------------------------------------------------------------------------------------------
# output


def _interval_json(iv: Interval | None) -> list[float] | None:
    return None if iv is None else [iv[0], iv[1]]


def _reliability_json(r: Reliability) -> dict[str, Any]:
    return {"edges": list(r.edges), "confidence": list(r.confidence), "accuracy": list(r.accuracy),
            "counts": list(r.counts), "n": r.n, "ece": r.ece}


def analysis_json(analysis: Analysis) -> dict[str, Any]:
    """The report as JSON-able data (what `stepwise analyze --json F` writes); None where undefined."""
    verifiers = {}
    for name, rep in analysis.verifiers.items():
        groups = {}
        for g, x in rep.groups.items():
            groups[g] = {
                "prompts": x.prompts, "informative_prompts": x.informative,
                "excluded_all_correct": x.all_correct, "excluded_all_incorrect": x.all_incorrect,
                "within_prompt_auroc": x.within_auroc,
                "within_prompt_auroc_interval": _interval_json(x.within_interval),
                "pooled_auroc": x.pooled_auroc, "pooled_auroc_interval": _interval_json(x.pooled_interval),
                "average_precision": x.average_precision,
                "miss_at_n": x.miss_at_n, "prompts_with_a_correct_candidate": x.miss_prompts,
                "regret": {str(n): v for n, v in x.regret.items()},
                "regret_interval": {str(n): _interval_json(v) for n, v in x.regret_interval.items()},
            }
        out: dict[str, Any] = {"groups": groups}
        out["calibration"] = (None if rep.calibration is None else
                              {g: _reliability_json(r) for g, r in rep.calibration.items()})
        out["steps"] = None if rep.steps is None else {
            "steps": list(rep.steps.steps),
            "within_prompt_auroc": {g: list(v) for g, v in rep.steps.within.items()},
            "within_prompt_auroc_interval": {g: [_interval_json(iv) for iv in v]
                                             for g, v in rep.steps.within_interval.items()},
            "pooled_auroc": {g: list(v) for g, v in rep.steps.pooled.items()},
            "informative_prompts": {g: list(v) for g, v in rep.steps.informative.items()},
        }
        out["parm"] = None if rep.parm is None else {
            g: {"columns": ["correct", "incorrect"], "clarity": {k: list(v) for k, v in d.clarity.items()},
                "potential": {k: list(v) for k, v in d.potential.items()}, "mean_clear_step": d.mean_clear_step}
            for g, d in rep.parm.items()}
        verifiers[name] = out
    return {
        "prompts": analysis.prompts, "candidates": analysis.candidates, "groups": list(analysis.groups),
        "n": list(analysis.ns), "bootstrap": analysis.n_boot, "seed": analysis.seed, "level": analysis.level,
        "verifiers": verifiers,
        "agreement": [{"a": x.a, "b": x.b, "spearman_within_prompts": x.spearman,
                       "spearman_prompts": x.spearman_prompts, "top1_at_n": x.top1} for x in analysis.agreement],
    }


def _f(value: float | None, width: int = 6) -> str:
    return f"{'—':>{width}}" if value is None else f"{value:>{width}.3f}"


def _iv(iv: Interval | None) -> str:
    return "" if iv is None else f"[{iv[0]:.2f}, {iv[1]:.2f}]"


def _shown_ns(ns: Sequence[int]) -> list[int]:
    """1, 2, 4, 8, ... and the largest n: the regret columns of the text table."""
    shown = [n for n in ns if n & (n - 1) == 0]
    return shown + ([ns[-1]] if ns[-1] not in shown else [])


def render_text(analysis: Analysis, label: str = "") -> str:
    """The report as text tables (what `stepwise analyze` prints)."""
    lines = [f"{label}{analysis.prompts} prompts, {analysis.candidates} candidates; intervals: {analysis.level:.0%} "
             f"stratified bootstrap over prompts ({analysis.n_boot} resamples)"]
    shown = _shown_ns(analysis.ns)
    for name, rep in analysis.verifiers.items():
        lines += ["", f"verifier {name}"]
        header = (f"  {'group':<14} {'prompts':>7} {'inform.':>7} {'excl ✓/✗':>9}  {'within-AUROC':<20} "
                  f"{'pooled-AUROC':<20} {'AP':>6} {'ECE':>6} {'miss@N':>6}"
                  + "".join(f" {'regret@' + str(n):>9}" for n in shown))
        lines += [header, "  " + "-" * (len(header) - 2)]
        for g, x in rep.groups.items():
            ece = rep.calibration[g].ece if rep.calibration is not None else None
            lines.append(f"  {g:<14} {x.prompts:>7} {x.informative:>7} {f'{x.all_correct}/{x.all_incorrect}':>9}  "
                         f"{_f(x.within_auroc)} {_iv(x.within_interval):<13} {_f(x.pooled_auroc)} "
                         f"{_iv(x.pooled_interval):<13} {_f(x.average_precision)} {_f(ece)} {_f(x.miss_at_n)}"
                         + "".join(f" {_f(x.regret[n], 9)}" for n in shown))
        if rep.calibration is not None:
            r = rep.calibration[OVERALL]
            bins = [f"{lo:.1f}-{hi:.1f}: n={c} stated {_f(conf, 4).strip()} held {_f(acc, 4).strip()}"
                    for lo, hi, c, conf, acc in zip(r.edges[:-1], r.edges[1:], r.counts, r.confidence, r.accuracy,
                                                    strict=True) if c]
            lines.append(f"  reliability (overall, {r.n} candidates with a stated probability): " + "; ".join(bins))
        if rep.steps is not None:
            values = " ".join(_f(v, 5).strip() for v in rep.steps.within[OVERALL])
            lines.append(f"  per-step within-prompt AUROC vs the final verdict (overall; steps "
                         f"{rep.steps.steps[0]}..{rep.steps.steps[-1]}): {values}")
        if rep.parm is not None:
            d = rep.parm[OVERALL]
            lines.append("  PARM decisions vs the final verdict (correct/incorrect): "
                         + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in d.clarity.items()) + "; potential "
                         + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in d.potential.items())
                         + (f"; mean clear step {d.mean_clear_step:.2f}" if d.mean_clear_step is not None else ""))
    if analysis.agreement:
        lines += ["", "agreement (overall): within-prompt Spearman (prompts where both vary), top-1 agreement at n=N"]
        for x in analysis.agreement:
            lines.append(f"  {x.a} vs {x.b}: Spearman {_f(x.spearman[OVERALL]).strip()} "
                         f"({x.spearman_prompts[OVERALL]} prompts), top-1 {_f(x.top1[OVERALL]).strip()}")
    lines += ["", "within-AUROC: P(a correct candidate outscores an incorrect one of the same prompt), ties half, "
                  "over informative prompts (excl: all-correct/all-incorrect prompts, left out); pooled: over all "
                  "candidates; miss@N: best-of-N picks wrong although a correct candidate exists; regret@n: oracle "
                  "minus verifier, exact best-of-n"]
    return "\n".join(lines)
