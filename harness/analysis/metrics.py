"""Verifier diagnostics over a judged candidate pool, vectorised over prompts.

Arrays are shaped as in `harness.scaling`: (P, m) scores, GenEval verdicts (`correct`) and `valid`
(which cells hold a candidate; ragged pools). Scikit-learn computes what it has (`roc_auc_score`,
`average_precision_score`, `calibration_curve`); the rest is numpy, defined here:

* within-prompt AUROC of prompt p: over every pair (c, i) of a correct candidate c and an incorrect
  candidate i of p, the share with score(c) > score(i), ties counting half. It is the probability
  that the verifier ranks a correct candidate of a prompt above an incorrect one of the same prompt,
  the quantity best-of-n selection depends on (a verifier can separate prompts, easy from hard, and
  still be useless within one). Prompts whose candidates are all correct or all incorrect have no
  such pair: they carry no ranking information, their AUROC is undefined (NaN) and they are
  excluded (and counted) wherever it is averaged.
* pooled AUROC: the same pairwise probability over all candidates of all prompts (sklearn's
  `roc_auc_score`, ties half): a verifier that knows which prompts are hard scores well here.
* `weighted_auroc`: the pooled AUROC under per-candidate weights, for many weight vectors at once
  (the bootstrap): sum over (positive i, negative j) of w_i w_j ([s_i > s_j] + [s_i = s_j] / 2),
  divided by (sum of positive weights) x (sum of negative weights); equal to
  `roc_auc_score(..., sample_weight=w)` (tested).
* reliability: equal-width bins of the stated probability (sklearn's binning: `calibration_curve`
  with strategy "uniform"); per bin the mean stated probability, the share correct and the count;
  expected calibration error ECE = sum over bins of (count / N) x |share correct - mean stated|.
* within-prompt Spearman correlation of two verifiers: the Pearson correlation of their ranks (ties
  share the mean rank) over a prompt's candidates; undefined (NaN) when either is constant there.
* top-1 agreement at n = N: the probability that best-of-N by verifier a and by verifier b pick the
  same candidate of a prompt, each picking uniformly among its own top-scored tie group:
  |T_a & T_b| / (|T_a| |T_b|).
* miss at N: for a prompt with at least one correct candidate, the probability that best-of-N (all
  its candidates, ties shared) picks an incorrect one, i.e. 1 - its exact best-of-N accuracy;
  undefined (NaN) for a prompt with no correct candidate.
* regret at n: the oracle's exact best-of-n accuracy minus the verifier's, per prompt (both from
  `harness.scaling.curve`): the probability that a random n-subset holds a correct candidate and
  the verifier picks an incorrect one.

Bootstrap: `bootstrap_counts` draws prompts with replacement within each task (stratified, as
`harness.scaling.bootstrap_intervals` does), as a (B, P) matrix of how often each prompt is drawn;
every statistic is then recomputed on the same resamples (a mean over prompts becomes a weighted
mean, a pooled AUROC a weighted one), so intervals of different verifiers are paired. A resample in
which a statistic is undefined (no informative prompt drawn) is left out of its percentiles.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Reliability",
    "average_precision",
    "bootstrap_counts",
    "full_pool_miss",
    "percentile_interval",
    "pooled_auroc",
    "pooled_auroc_interval",
    "regret",
    "reliability",
    "spearman_within_prompts",
    "top1_agreement",
    "weighted_auroc",
    "weighted_mean_interval",
    "within_prompt_auroc",
]

_CHUNK = 1 << 22  # pair comparisons held in memory at once by within_prompt_auroc
_BATCH = 1 << 21  # weighted candidates held in memory at once by the pooled-AUROC bootstrap


def _check(scores: np.ndarray, correct: np.ndarray, valid: np.ndarray | None,
           name: str = "scores") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores float64, correct bool, valid bool), all (P, m); NaN scores count as invalid cells only when
    `valid` is None (step scores: a candidate without a score at that step)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2:
        raise ValueError(f"{name} must be 2-D (prompts, candidates), got shape {s.shape}")
    c = np.asarray(correct)
    if c.shape != s.shape:
        raise ValueError(f"correct must have shape {s.shape} like {name}, got {c.shape}")
    v = ~np.isnan(s) if valid is None else np.asarray(valid, dtype=bool)
    if v.shape != s.shape:
        raise ValueError(f"valid must have shape {s.shape} like {name}, got {v.shape}")
    bad = v & ~np.isfinite(s)
    if bad.any():
        p, k = np.argwhere(bad)[0]
        raise ValueError(f"{name} is not a finite number at prompt {p}, candidate {k} (a valid cell)")
    return s, c.astype(bool), v


def within_prompt_auroc(scores: np.ndarray, correct: np.ndarray,
                        valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-prompt AUROC of `scores` against `correct`, ties half (see the module docstring).

    scores: (P, m); correct: (P, m) bool; valid: (P, m) bool (default: the non-NaN cells).
    Returns (auroc (P,) float64, NaN where undefined; pairs (P,) int64 = correct x incorrect counts).

    >>> import numpy as np
    >>> auc, pairs = within_prompt_auroc(np.array([[0.9, 0.5, 0.5], [0.1, 0.2, 0.3]]),
    ...                                  np.array([[True, True, False], [True, True, True]]))
    >>> auc.tolist(), pairs.tolist()
    ([0.75, nan], [2, 0])
    """
    s, c, v = _check(scores, correct, valid)
    pos, neg = c & v, ~c & v
    pairs = pos.sum(axis=1).astype(np.int64) * neg.sum(axis=1)
    n_prompts, m = s.shape
    wins = np.zeros(n_prompts)
    step = max(1, _CHUNK // max(m * m, 1))
    for lo in range(0, n_prompts, step):
        a, b = s[lo:lo + step, :, None], s[lo:lo + step, None, :]
        mask = pos[lo:lo + step, :, None] & neg[lo:lo + step, None, :]
        # invalid cells may hold anything (NaN compares False); the mask leaves them out
        with np.errstate(invalid="ignore"):
            wins[lo:lo + step] = (((a > b) + 0.5 * (a == b)) * mask).sum(axis=(1, 2))
    auc = np.full(n_prompts, np.nan)
    has = pairs > 0
    auc[has] = wins[has] / pairs[has]
    return auc, pairs


def pooled_auroc(scores: np.ndarray, correct: np.ndarray, valid: np.ndarray | None = None) -> float:
    """AUROC over every valid candidate of every prompt (sklearn's `roc_auc_score`); NaN with one class."""
    from sklearn.metrics import roc_auc_score

    s, c, v = _check(scores, correct, valid)
    labels = c[v]
    if labels.all() or not labels.any():
        return float("nan")
    return float(roc_auc_score(labels, s[v]))


def weighted_auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of (N,) scores against (N,) bool labels under each row of (B, N) weights -> (B,), ties half.

    One sort for all rows: tied scores form contiguous groups, and a positive's pairs with the
    negatives below its group count fully, those inside it half. NaN where a row gives one class
    no weight.

    >>> import numpy as np
    >>> weighted_auroc(np.array([0.2, 0.8, 0.5]), np.array([False, True, False]), np.array([[1, 1, 1], [1, 1, 0]]))
    array([1., 1.])
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if s.ndim != 1 or y.shape != s.shape or w.shape[1:] != s.shape:
        raise ValueError(f"scores and labels must be (N,) and weights (B, N); got {s.shape}, {y.shape}, {w.shape}")
    if s.size == 0:
        return np.full(w.shape[0], np.nan)
    order = np.argsort(s, kind="stable")
    sorted_scores, sorted_labels = s[order], y[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ws = w[:, order]
    pos = np.add.reduceat(ws * sorted_labels, starts, axis=1)  # (B, G) positive weight per tie group
    neg = np.add.reduceat(ws * ~sorted_labels, starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each group
    wins = (pos * (below + 0.5 * neg)).sum(axis=1)
    total = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, wins / np.where(total > 0, total, 1.0), np.nan)


def average_precision(scores: np.ndarray, correct: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Average precision of ranking every valid candidate by score, correct as the positive class
    (sklearn's `average_precision_score`: tied scores enter at one threshold); NaN without positives."""
    from sklearn.metrics import average_precision_score

    s, c, v = _check(scores, correct, valid)
    labels = c[v]
    if not labels.any():
        return float("nan")
    return float(average_precision_score(labels, s[v]))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram: per equal-width bin of the stated probability, what was stated and what held."""

    edges: tuple[float, ...]  # n_bins + 1 bin edges, 0 .. 1
    confidence: tuple[float | None, ...]  # mean stated probability per bin (None: empty bin)
    accuracy: tuple[float | None, ...]  # share of its candidates GenEval judged correct (None: empty bin)
    counts: tuple[int, ...]
    ece: float | None  # expected calibration error; None without candidates

    @property
    def n(self) -> int:
        return sum(self.counts)


def reliability(probabilities: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> Reliability:
    """The reliability diagram and ECE of stated probabilities (N,) against verdicts (N,), `n_bins` bins.

    Bins and per-bin means are sklearn's `calibration_curve(strategy="uniform")`; the counts come
    from the same bin assignment (`searchsorted` on the inner edges), so ECE weighs each bin by its
    candidates.

    >>> import numpy as np
    >>> r = reliability(np.array([0.05, 0.15, 0.95, 0.95]), np.array([False, True, True, True]), n_bins=2)
    >>> r.counts, r.accuracy, r.ece
    ((2, 2), (0.5, 1.0), 0.0)
    """
    from sklearn.calibration import calibration_curve

    p = np.asarray(probabilities, dtype=np.float64).ravel()
    y = np.asarray(correct, dtype=bool).ravel()
    if p.shape != y.shape:
        raise ValueError(f"probabilities and correct differ in size: {p.shape} vs {y.shape}")
    if operator.index(n_bins) < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        raise ValueError("probabilities must lie in [0, 1]")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if p.size == 0:
        return Reliability(tuple(edges.tolist()), (None,) * n_bins, (None,) * n_bins, (0,) * n_bins, None)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=n_bins)
    accuracy, confidence = calibration_curve(y.astype(int), p, n_bins=n_bins, strategy="uniform", pos_label=1)
    filled = counts > 0
    conf = np.full(n_bins, np.nan)
    acc = np.full(n_bins, np.nan)
    conf[filled], acc[filled] = confidence, accuracy
    ece = float((counts[filled] / p.size * np.abs(acc[filled] - conf[filled])).sum())
    return Reliability(tuple(edges.tolist()), _optional(conf), _optional(acc), tuple(int(c) for c in counts), ece)


def _optional(values: np.ndarray) -> tuple[float | None, ...]:
    return tuple(None if np.isnan(x) else float(x) for x in values)


def _packed(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's valid cells moved to its front, in order; (values, counts per row)."""
    order = np.argsort(~valid, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1), valid.sum(axis=1)


def spearman_within_prompts(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(P,) Spearman correlation of two verifiers' scores over each prompt's candidates; NaN where either is
    constant (or the prompt has fewer than 2 candidates).

    >>> import numpy as np
    >>> spearman_within_prompts(np.array([[1.0, 2, 3], [1, 1, 1]]), np.array([[0.3, 0.1, 0.2], [1, 2, 3]])).tolist()
    [-0.5, nan]
    """
    from scipy.stats import rankdata

    sa, _, v = _check(a, np.zeros(np.shape(a), bool), valid, "a")
    sb = np.asarray(b, dtype=np.float64)
    if sb.shape != sa.shape:
        raise ValueError(f"b must have shape {sa.shape} like a, got {sb.shape}")
    pa, counts = _packed(sa, v)
    pb, _ = _packed(sb, v)
    out = np.full(sa.shape[0], np.nan)
    for k in np.unique(counts):
        rows = np.flatnonzero(counts == k)
        if k < 2:
            continue
        ra = rankdata(pa[rows, :k], axis=1)
        rb = rankdata(pb[rows, :k], axis=1)
        ra -= ra.mean(axis=1, keepdims=True)
        rb -= rb.mean(axis=1, keepdims=True)
        norm = np.sqrt((ra * ra).sum(axis=1) * (rb * rb).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[rows] = np.where(norm > 0, (ra * rb).sum(axis=1) / np.where(norm > 0, norm, 1.0), np.nan)
    return out


def _top_group(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(P, m) bool: the cells holding each prompt's highest valid score."""
    filled = np.where(valid, scores, -np.inf)
    return valid & (filled == filled.max(axis=1, keepdims=True))


def top1_agreement(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(P,) probability that best-of-N by `a` and by `b` pick the same candidate (ties broken uniformly).

    >>> import numpy as np
    >>> top1_agreement(np.array([[0.9, 0.9, 0.1]]), np.array([[0.5, 0.7, 0.7]])).tolist()
    [0.25]
    """
    sa, _, v = _check(a, np.zeros(np.shape(a), bool), valid, "a")
    sb = np.asarray(b, dtype=np.float64)
    top_a, top_b = _top_group(sa, v), _top_group(sb, v)
    return (top_a & top_b).sum(axis=1) / (top_a.sum(axis=1) * top_b.sum(axis=1))


def full_pool_miss(keys: np.ndarray, correct: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(P,) probability that best-of-N over all of a prompt's candidates picks an incorrect one, for prompts
    with a correct candidate (NaN for the others); ties shared.

    >>> import numpy as np
    >>> full_pool_miss(np.array([[0.9, 0.9, 0.1], [1, 2, 3]]), np.array([[True, False, True], [False] * 3])).tolist()
    [0.5, nan]
    """
    s, c, v = _check(keys, correct, valid, "keys")
    top = _top_group(s, v)
    picked_right = (top & c).sum(axis=1) / top.sum(axis=1)
    return np.where((c & v).any(axis=1), 1.0 - picked_right, np.nan)


def regret(keys: np.ndarray, correct: np.ndarray, ns: Sequence[int], valid: np.ndarray | None = None) -> np.ndarray:
    """(K, P) exact best-of-n accuracy of the oracle minus that of `keys`, for each n in `ns`.

    >>> import numpy as np
    >>> regret(np.array([[0.9, 0.5, 0.1]]), np.array([[False, True, True]]), [1, 2, 3]).round(4).tolist()
    [[0.0], [0.6667], [1.0]]
    """
    from harness.scaling import curve

    s, c, v = _check(keys, correct, valid, "keys")
    return curve(c.astype(np.float64), c, ns, v) - curve(s, c, ns, v)


# ---------------------------------------------------------------------------------------------
# the stratified bootstrap


def bootstrap_counts(tags: Sequence[str], rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """(n_boot, P) int64: how often each prompt is drawn in each resample, prompts drawn with replacement
    within their tag (each tag keeps its size)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)), got {type(rng)}")
    if operator.index(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    tags = [str(t) for t in tags]
    n_prompts = len(tags)
    counts = np.zeros((n_boot, n_prompts), dtype=np.int64)
    rows = np.arange(n_boot)[:, None] * n_prompts
    for tag in dict.fromkeys(tags):
        members = np.flatnonzero(np.asarray(tags) == tag)
        picks = members[rng.integers(0, members.size, size=(n_boot, members.size))]
        counts += np.bincount((rows + picks).ravel(), minlength=n_boot * n_prompts).reshape(n_boot, n_prompts)
    return counts


def percentile_interval(stats: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """The percentile interval of bootstrap statistics (NaN resamples left out); None when all are NaN."""
    kept = np.asarray(stats, dtype=np.float64)
    kept = kept[~np.isnan(kept)]
    if kept.size == 0:
        return None
    low, high = np.quantile(kept, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def weighted_mean_interval(values: np.ndarray, counts: np.ndarray, level: float = 0.95) -> tuple[float, float] | None:
    """Interval of the mean of the defined (non-NaN) per-prompt `values` (P,) over bootstrap `counts` (B, P):
    resample b's statistic is sum(counts_b x values) / sum(counts_b) over defined prompts."""
    x = np.asarray(values, dtype=np.float64)
    defined = ~np.isnan(x)
    weights = counts * defined
    total = weights.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        stats = np.where(total > 0, (weights * np.where(defined, x, 0.0)).sum(axis=1) / np.where(total > 0, total, 1),
                         np.nan)
    return percentile_interval(stats, level)


def pooled_auroc_interval(scores: np.ndarray, correct: np.ndarray, valid: np.ndarray, counts: np.ndarray,
                          level: float = 0.95) -> tuple[float, float] | None:
    """Interval of the pooled AUROC over bootstrap `counts` (B, P): each candidate weighs as often as its
    prompt is drawn. Resamples are processed in batches to bound memory."""
    s, c, v = _check(scores, correct, valid)
    prompt_of = np.nonzero(v)[0]
    flat_scores, flat_labels = s[v], c[v]
    batch = max(1, _BATCH // max(flat_scores.size, 1))
    stats = np.concatenate([weighted_auroc(flat_scores, flat_labels, counts[lo:lo + batch][:, prompt_of])
                            for lo in range(0, counts.shape[0], batch)])
    return percentile_interval(stats, level)
