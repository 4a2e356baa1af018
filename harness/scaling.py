"""Exact best-of-n statistics over a cached candidate pool, vectorised over prompts.

A pool holds, for each of P prompts, up to m generated candidates with a verifier key
(higher is better) and a GenEval verdict. "Best-of-n" draws a uniformly random n-subset of
a prompt's candidates and keeps the one with the highest key, ties broken uniformly at
random. Its expected accuracy has a closed form, like pass@k: with the m candidates sorted
best first, the one at rank r (0-based) is the subset's best with probability

    C(m-1-r, n-1) / C(m, n),

and a group of tied keys shares the sum of its ranks' probabilities evenly. So one pool,
one GenEval pass and one scoring pass per verifier give the whole curve n = 1..m with no
resampling noise and no regeneration per n.

Shapes: `keys`, `correct` and `valid` are (P, m). `valid` marks the candidates that exist
when prompts have fewer than m (a ragged pool); whatever invalid cells hold is ignored.

Task scores follow GenEval: the mean over each task's prompts, and "overall" is the
unweighted mean over tasks. Intervals come from a bootstrap that resamples prompts within
each task (so task sizes stay fixed), with a caller-supplied `np.random.Generator`.

>>> import numpy as np
>>> keys = np.array([[0.9, 0.5, 0.1]])
>>> correct = np.array([[False, True, True]])
>>> curve(keys, correct, [1, 2, 3]).round(4).ravel().tolist()
[0.6667, 0.3333, 0.0]
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "PairedResult",
    "bootstrap_intervals",
    "bootstrap_means",
    "curve",
    "expected_accuracy",
    "lexicographic_keys",
    "paired_comparison",
    "selection_probabilities",
    "task_scores",
]

# Resampled prompt indices held in memory at once by the bootstrap (~8 MiB of int64 per array).
_BOOT_ELEMENTS = 1 << 20


# ---------------------------------------------------------------------------------------------
# input validation (kept apart from the computation, as scipy's `_bootstrap_iv` does)


def _as_keys(keys: np.ndarray, name: str = "keys") -> np.ndarray:
    """A (P, m) float64 copy of a real-valued key array (bool and integer keys allowed)."""
    arr = np.asarray(keys)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (prompts, candidates), got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_) or np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real numbers, got dtype {arr.dtype}")
    # float64 throughout: negation (for a descending sort) needs a signed type, and bool keys
    # (the oracle: key = correct) must compare like numbers.
    return arr.astype(np.float64)


def _as_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """A bool array of `shape`; numeric input is accepted only if it holds 0 and 1 alone."""
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} like keys, got {arr.shape}")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number) or not np.isin(arr, (0, 1)).all():
            raise ValueError(f"{name} must be boolean (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def _as_outcome(outcome: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    """GenEval's bool verdicts, or a suite's real-valued per-candidate scores (finite, >= 0), as float64.

    The exact best-of-n expectation is linear in the outcome, so a real-valued score (GenEval 2's
    Soft-TIFA GM) goes through the same closed form as a 0/1 verdict.
    """
    arr = np.asarray(outcome)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.floating):
        return _as_mask(arr, shape, name).astype(np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape} like keys, got {arr.shape}")
    if not np.isfinite(arr).all() or (arr < 0).any():
        raise ValueError(f"{name} must be boolean (or 0/1), or finite real scores >= 0")
    return arr.astype(np.float64)


def _check_pool(keys: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated (keys float64 (P, m), valid bool (P, m), counts (P,) valid candidates per prompt)."""
    keys = _as_keys(keys)
    valid = np.ones(keys.shape, bool) if valid is None else _as_mask(valid, keys.shape, "valid")
    bad = np.isnan(keys) & valid
    if bad.any():
        p, c = np.argwhere(bad)[0]
        raise ValueError(f"keys has NaN at prompt {p}, candidate {c} (a valid cell); mark it invalid or score it")
    counts = valid.sum(axis=1)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(f"prompt {empty[0]} has no valid candidates")
    return keys, valid, counts


def _check_ns(ns: Sequence[int] | np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The subset sizes as an int64 array, each within 1..m_p for every prompt p."""
    items = np.atleast_1d(np.asarray(ns, dtype=object)).ravel()
    try:
        # operator.index refuses floats (2.0 is more likely a bug than a size); bools pass it, so
        # they are refused by hand.
        values = [operator.index(n) for n in items if not isinstance(n, bool | np.bool_)]
    except TypeError as err:
        raise ValueError(f"subset sizes must be integers, got {ns!r}") from err
    if len(values) != items.size:
        raise ValueError(f"subset sizes must be integers, got {ns!r}")
    arr = np.asarray(values, dtype=np.int64)
    if arr.size == 0:
        raise ValueError("no subset sizes given")
    if (arr < 1).any():
        raise ValueError(f"subset size n={arr[arr < 1][0]} is below 1")
    if counts.size:
        too_big = np.flatnonzero(counts < arr.max())
        if too_big.size:
            p = too_big[0]
            raise ValueError(f"subset size n={arr.max()} exceeds the {counts[p]} valid candidates of prompt {p}")
    return arr


def _check_scores(per_prompt: np.ndarray, tags: Sequence[str], name: str = "per_prompt") -> np.ndarray:
    """A float64 (..., P) array with no NaN whose last axis matches `tags`."""
    arr = np.asarray(per_prompt, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[-1] != len(tags):
        raise ValueError(f"{name} must end in one entry per tag ({len(tags)}), got shape {arr.shape}")
    if arr.shape[-1] == 0:
        raise ValueError("no prompts to score")
    bad = np.isnan(arr)
    if bad.any():
        raise ValueError(f"{name} is NaN for prompt {np.argwhere(bad)[0][-1]}")
    return arr


def _check_boot(rng: np.random.Generator, n_boot: int, level: float) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (e.g. np.random.default_rng(0)), got {type(rng)}")
    if operator.index(n_boot) < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")


# ---------------------------------------------------------------------------------------------
# exact best-of-n


@dataclass(frozen=True)
class _Ranked:
    """A pool sorted best first per prompt, with its tie groups (independent of n).

    order: (P, m) column of each sorted position; valid candidates first, by key descending.
    group: (P*m,) id of each sorted position's tie group, unique across prompts; the invalid
           tail of a row is one group of its own (its rank weights are zero).
    sizes: (G,) members per group.
    counts: (P,) valid candidates per prompt (m_p).
    """

    order: np.ndarray
    group: np.ndarray
    sizes: np.ndarray
    counts: np.ndarray

    def group_mean(self, values: np.ndarray) -> np.ndarray:
        """(P, m) sorted values -> (P, m), each replaced by the mean over its tie group."""
        sums = np.bincount(self.group, weights=values.ravel(), minlength=self.sizes.size)
        return (sums / self.sizes)[self.group].reshape(values.shape)

    def unsort(self, sorted_values: np.ndarray) -> np.ndarray:
        """(P, m) values in sorted order -> the same values at their original columns."""
        out = np.empty_like(sorted_values)
        np.put_along_axis(out, self.order, sorted_values, axis=1)
        return out


def _rank(keys: np.ndarray, valid: np.ndarray, counts: np.ndarray) -> _Ranked:
    """Sort each prompt's candidates best first and find the groups of tied keys."""
    filled = np.where(valid, keys, 0.0)  # invalid cells may hold NaN; they sort last regardless
    # lexsort's last key is the primary one: valid before invalid, then key descending.
    order = np.lexsort((-filled, ~valid), axis=-1)
    skeys = np.take_along_axis(filled, order, axis=1)
    svalid = np.take_along_axis(valid, order, axis=1)
    new = np.ones(keys.shape, bool)
    # `!=` treats -0.0 and 0.0 as one key, as the sort does; validity changes split groups so an
    # invalid cell never joins (and dilutes) a valid tie group.
    new[:, 1:] = (skeys[:, 1:] != skeys[:, :-1]) | (svalid[:, 1:] != svalid[:, :-1])
    group = np.cumsum(new.ravel()) - 1  # column 0 always starts a group, so rows never merge
    sizes = np.bincount(group).astype(np.float64)
    return _Ranked(order=order, group=group, sizes=sizes, counts=counts)


def _rank_weights(counts: np.ndarray, ns: np.ndarray, width: int) -> np.ndarray:
    """P(rank r is the best of a random n-subset) = C(m_p-1-r, n-1) / C(m_p, n).

    counts: (P,) m_p; ns: (K,) subset sizes with 1 <= n <= m_p -> (K, P, width) float64.
    Ranks r >= m_p get exactly 0.

    Binomials like C(80, 20) ~ 3.5e18 are never formed: the recurrence
        w[0] = n / m,   w[r+1] = w[r] * (m - r - n) / (m - r - 1)
    multiplies ratios no larger than 1, so nothing overflows and the relative error stays
    below ~m machine epsilons (the weights sum to 1 within 1e-13 for m = 80).
    """
    m = counts.astype(np.float64)[None, :, None]  # (1, P, 1)
    n = ns.astype(np.float64)[:, None, None]  # (K, 1, 1)
    r = np.arange(max(width - 1, 0), dtype=np.float64)  # (width-1,)
    # Clipping at 0 makes every rank from m_p - n + 1 on exactly zero (the numerator reaches 0
    # there and stays 0); the denominator only reaches 0 past a zero numerator, so 1 is safe.
    ratio = np.maximum(m - r - n, 0.0) / np.maximum(m - r - 1.0, 1.0)
    head = np.broadcast_to(n / m, (ns.size, counts.size, 1))
    return np.concatenate([head, head * np.cumprod(ratio, axis=-1)], axis=-1)


def selection_probabilities(keys: np.ndarray, n: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Probability that each candidate is the one best-of-n selects.

    A uniformly random n-subset of prompt p's m_p valid candidates is drawn and its highest
    key kept, ties broken uniformly at random.

    keys: (P, m) real, higher is better; NaN is allowed only in invalid cells.
    n: subset size, 1 <= n <= m_p for every prompt.
    valid: (P, m) bool, default all True.
    Returns (P, m) float64; each row sums to 1, invalid cells are 0.

    >>> import numpy as np
    >>> selection_probabilities(np.array([[3.0, 1.0, 3.0, 2.0]]), 2).round(4).tolist()
    [[0.4167, 0.0, 0.4167, 0.1667]]
    """
    keys, valid, counts = _check_pool(keys, valid)
    ns = _check_ns([n], counts)
    ranked = _rank(keys, valid, counts)
    weights = _rank_weights(counts, ns, keys.shape[1])[0]
    return ranked.unsort(ranked.group_mean(weights))


def curve(
    keys: np.ndarray, correct: np.ndarray, ns: Sequence[int] | np.ndarray, valid: np.ndarray | None = None
) -> np.ndarray:
    """Expected best-of-n accuracy of every prompt for each subset size in `ns`.

    keys: (P, m) real, higher is better; NaN is allowed only in invalid cells.
    correct: (P, m) bool, the GenEval verdict of each candidate, or float: a suite's per-candidate
        score (finite, >= 0; GenEval 2's Soft-TIFA GM), whose expectation over the pick is returned.
    ns: (K,) subset sizes, each 1 <= n <= m_p for every prompt.
    valid: (P, m) bool, default all True.
    Returns (K, P) float64.

    The sort and the tie groups do not depend on n, so they are found once: averaging
    `correct` over each tie group turns the per-n work into a weighted sum over ranks.

    >>> import numpy as np
    >>> keys = np.array([[0.2, 0.2, 0.9], [0.5, 0.1, 0.3]])
    >>> correct = np.array([[True, True, False], [False, True, True]])
    >>> curve(keys, correct, [1, 3]).round(4).tolist()
    [[0.6667, 0.6667], [0.0, 0.0]]
    """
    keys, valid, counts = _check_pool(keys, valid)
    correct = _as_outcome(correct, keys.shape, "correct")
    ns = _check_ns(ns, counts)
    ranked = _rank(keys, valid, counts)
    scorrect = np.take_along_axis(np.where(valid, correct, 0.0), ranked.order, axis=1)
    # sum over groups of (group weight) x (group mean correct) == sum over ranks of
    # (rank weight) x (its group's mean correct): the tie-sharing moves onto `correct`.
    tied_correct = ranked.group_mean(scorrect)
    # The weights depend only on (m_p, n): build them once per distinct pool size (one size in a
    # full pool), not as a (K, P, m) table. einsum rather than `@`: these products are tiny, and
    # waking BLAS threads costs more than the arithmetic (~13 ms vs 0.5 ms on 2 shared cores).
    sizes, which = np.unique(counts, return_inverse=True)
    weights = _rank_weights(sizes, ns, keys.shape[1])  # (K, S, m)
    out = np.empty((ns.size, keys.shape[0]))
    for s in range(sizes.size):
        rows = np.flatnonzero(which == s)
        out[:, rows] = np.einsum("kr,pr->kp", weights[:, s], tied_correct[rows])
    return out


def expected_accuracy(keys: np.ndarray, correct: np.ndarray, n: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Expected best-of-n accuracy per prompt: sum of selection probability x correct.

    keys, correct, valid: (P, m) as in `curve`; n: one subset size. Returns (P,) float64.

    >>> import numpy as np
    >>> expected_accuracy(np.array([[1.0, 1.0, 0.0]]), np.array([[True, False, True]]), 2).tolist()
    [0.5]
    """
    return curve(keys, correct, [n], valid)[0]


def lexicographic_keys(*keys: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """One key whose argmax is the lexicographic argmax of several (first key most significant).

    PARM keeps the candidates with the best potential and then the best score among them;
    as a single key that selection is an ordinary best-of-n, so the closed form applies.

    keys: one or more (P, m) real arrays of one shape; NaN only in invalid cells.
    valid: (P, m) bool, default all True.
    Returns (P, m) float64 dense ranks 0, 1, 2, ... per prompt over its valid candidates
    (higher is better; equal only where every key ties); invalid cells are NaN.

    >>> import numpy as np
    >>> potential = np.array([[1, 1, 0, 1]])
    >>> score = np.array([[0.2, 0.7, 0.9, 0.2]])
    >>> lexicographic_keys(potential, score).tolist()
    [[1.0, 2.0, 0.0, 1.0]]
    """
    if not keys:
        raise ValueError("lexicographic_keys needs at least one key array")
    arrays = [_as_keys(k, f"keys[{i}]") for i, k in enumerate(keys)]
    shape = arrays[0].shape
    for i, arr in enumerate(arrays):
        if arr.shape != shape:
            raise ValueError(f"keys[{i}] has shape {arr.shape}, keys[0] has {shape}")
    valid = np.ones(shape, bool) if valid is None else _as_mask(valid, shape, "valid")
    for i, arr in enumerate(arrays):
        bad = np.isnan(arr) & valid
        if bad.any():
            p, c = np.argwhere(bad)[0]
            raise ValueError(f"keys[{i}] has NaN at prompt {p}, candidate {c} (a valid cell)")
    filled = [np.where(valid, arr, 0.0) for arr in arrays]
    # lexsort's last key is primary: validity (invalid sorts first, lowest), then keys[0], ...
    order = np.lexsort((*filled[::-1], valid), axis=-1)
    columns = [np.take_along_axis(a, order, axis=1) for a in (valid, *filled)]
    new = np.zeros(shape, bool)
    new[:, 0] = True
    for col in columns:
        new[:, 1:] |= col[:, 1:] != col[:, :-1]
    svalid = columns[0]
    # Count rank steps among valid cells only, so each prompt's ranks start at 0.
    dense = np.cumsum(new & svalid, axis=1) - 1.0
    dense[~svalid] = np.nan
    out = np.empty(shape)
    np.put_along_axis(out, order, dense, axis=1)
    return out


# ---------------------------------------------------------------------------------------------
# task scores and bootstrap intervals


@dataclass(frozen=True)
class _Strata:
    """Prompts grouped by tag (tags in order of first appearance).

    names: (T,) tag names; perm: (P,) prompt indices, grouped by tag;
    starts / sizes: (T,) where each tag's run begins in `perm` and how long it is.
    """

    names: list[str]
    perm: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray


def _strata(tags: Sequence[str]) -> _Strata:
    first: dict[str, int] = {}
    index = np.fromiter((first.setdefault(str(t), len(first)) for t in tags), dtype=np.int64, count=len(tags))
    sizes = np.bincount(index, minlength=len(first))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return _Strata(names=list(first), perm=np.argsort(index, kind="stable"), starts=starts, sizes=sizes)


def _tag_means(values: np.ndarray, strata: _Strata) -> np.ndarray:
    """(..., P) values in `strata.perm` order -> (..., T) mean per tag."""
    return np.add.reduceat(values, strata.starts, axis=-1) / strata.sizes


def task_scores(per_prompt: np.ndarray, tags: Sequence[str]) -> dict[str, float | np.ndarray]:
    """GenEval's scores: the mean over each tag's prompts, and "overall" = mean over tags.

    per_prompt: (..., P), e.g. (P,) from `expected_accuracy` or (K, P) from `curve`.
    tags: P task names; the result lists them in order of first appearance, then "overall".
    Values are floats for 1-D input, else (...) arrays.

    Over prompts with equally many images, a tag's mean over prompts equals GenEval's mean
    over images; "overall" weighs every task equally, whatever its size.

    >>> task_scores([1.0, 0.0, 0.5], ["counting", "colors", "colors"])
    {'counting': 1.0, 'colors': 0.25, 'overall': 0.625}
    """
    values = _check_scores(per_prompt, tags)
    strata = _strata(tags)
    means = _tag_means(values[..., strata.perm], strata)
    overall = means.mean(axis=-1)
    columns = [*np.moveaxis(means, -1, 0), overall]
    unwrap = float if values.ndim == 1 else np.asarray
    return {name: unwrap(col) for name, col in zip([*strata.names, "overall"], columns, strict=True)}


def _boot_tag_means(values: np.ndarray, strata: _Strata, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """(R, P) values -> (n_boot, R, T) tag means over prompts resampled with replacement per tag.

    All R rows share the same resamples (a paired bootstrap across rows, and one draw of
    random numbers for all of them). Resamples are drawn in batches of about `_BOOT_ELEMENTS`
    gathered values to bound memory; one draw of shape (b, P) per batch consumes the stream
    exactly like a single big draw, so the batch size does not change the result.
    """
    grouped = values[:, strata.perm]
    n_prompts = grouped.shape[1]
    col_size = np.repeat(strata.sizes, strata.sizes)  # (P,) size of each column's tag
    col_start = np.repeat(strata.starts, strata.sizes)
    batch = max(1, _BOOT_ELEMENTS // grouped.size)
    out = np.empty((n_boot, grouped.shape[0], strata.sizes.size))
    for lo in range(0, n_boot, batch):
        b = min(batch, n_boot - lo)
        picks = col_start + rng.integers(0, col_size, size=(b, n_prompts))
        out[lo : lo + b] = _tag_means(grouped[:, picks], strata).transpose(1, 0, 2)
    return out


def bootstrap_means(per_prompt: np.ndarray, tags: Sequence[str], rng: np.random.Generator,
                    n_boot: int = 2000) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(tag names, (n_boot, R, T) tag means of stratified resamples, (T,) prompts per tag) for
    (..., P) values flattened to R rows: what `bootstrap_intervals` draws, for callers that weigh
    the tags otherwise (`harness.suites.intervals`). Same resamples for the same rng state."""
    values = _check_scores(per_prompt, tags)
    _check_boot(rng, n_boot, 0.95)
    strata = _strata(tags)
    rows = values.reshape(-1, values.shape[-1])
    return strata.names, _boot_tag_means(rows, strata, rng, n_boot), strata.sizes.astype(np.float64)


def _percentiles(stats: np.ndarray, level: float) -> np.ndarray:
    """(B, ...) bootstrap statistics -> (2, ...) percentile interval at `level`."""
    return np.quantile(stats, [(1 - level) / 2, (1 + level) / 2], axis=0)


def bootstrap_intervals(
    per_prompt: np.ndarray,
    tags: Sequence[str],
    rng: np.random.Generator,
    n_boot: int = 2000,
    level: float = 0.95,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for every tag's score and the overall score.

    Prompts are resampled with replacement within each tag (stratified), so every resample
    has GenEval's task sizes and "overall" stays an unweighted mean over the same tasks.

    per_prompt: (P,) per-prompt accuracy, or (..., P) for several curves at once: every row
    then uses the same resamples, and each value of the result is a pair of (...) arrays.
    tags: P task names.
    rng: required, so every interval is reproducible from a seed the caller chose.
    Returns {tag: (low, high), ..., "overall": (low, high)}, tags in order of first appearance.

    >>> import numpy as np
    >>> ci = bootstrap_intervals([1.0, 0.0, 1.0, 1.0], ["a", "a", "b", "b"], np.random.default_rng(0), n_boot=200)
    >>> ci["b"], 0.5 <= ci["overall"][0] <= 0.75 <= ci["overall"][1] <= 1.0
    ((1.0, 1.0), True)
    """
    values = _check_scores(per_prompt, tags)
    _check_boot(rng, n_boot, level)
    strata = _strata(tags)
    rows = values.reshape(-1, values.shape[-1])
    means = _boot_tag_means(rows, strata, rng, n_boot)  # (B, R, T)
    stats = np.concatenate([means, means.mean(axis=-1, keepdims=True)], axis=-1)
    low, high = _percentiles(stats, level)  # (R, T + 1) each
    names = [*strata.names, "overall"]
    if values.ndim == 1:
        return {name: (float(low[0, i]), float(high[0, i])) for i, name in enumerate(names)}
    lead = values.shape[:-1]
    return {name: (low[:, i].reshape(lead), high[:, i].reshape(lead)) for i, name in enumerate(names)}


@dataclass(frozen=True)
class PairedResult:
    """overall(a) - overall(b) with its paired bootstrap interval and two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    tags: Sequence[str],
    rng: np.random.Generator,
    n_boot: int = 2000,
    level: float = 0.95,
) -> PairedResult:
    """Is overall(a) different from overall(b)? A paired, stratified bootstrap over prompts.

    Each resample takes the same prompts (within each tag) for a and b, so per-prompt
    difficulty cancels. The overall score is linear, so overall(a) - overall(b) is the
    overall score of a - b and only the difference is resampled.

    p-value: 2 x min(share of resampled differences <= 0, share >= 0), capped at 1, where a
    share counts (hits + 1) / (n_boot + 1) so it is never exactly 0 from a finite bootstrap
    (the smallest p is 2 / (n_boot + 1)). Differences within 1e-12 of 0 count on both sides,
    so identical inputs give p = 1 despite rounding.

    a, b: (P,) per-prompt accuracy of two strategies on the same prompts; tags: P names.
    rng: required. Returns `PairedResult(difference, low, high, p_value)`.

    >>> import numpy as np
    >>> same = np.array([0.5, 1.0, 0.0, 0.25])
    >>> paired_comparison(same, same, ["a", "a", "b", "b"], np.random.default_rng(0), n_boot=100)
    PairedResult(difference=0.0, low=0.0, high=0.0, p_value=1.0)
    """
    a_values = _check_scores(a, tags, "a")
    b_values = _check_scores(b, tags, "b")
    if a_values.ndim != 1 or b_values.ndim != 1:
        raise ValueError(f"a and b must be 1-D (prompts,), got shapes {a_values.shape} and {b_values.shape}")
    _check_boot(rng, n_boot, level)
    strata = _strata(tags)
    diff = a_values - b_values
    observed = float(_tag_means(diff[strata.perm], strata).mean())
    boot = _boot_tag_means(diff[None], strata, rng, n_boot)[:, 0].mean(axis=1)
    low, high = _percentiles(boot, level)
    # Tag means of exact ties can round to +-1e-17; treat those as zero, not as a side.
    tol = 1e-12
    below = (np.count_nonzero(boot <= tol) + 1) / (n_boot + 1)
    above = (np.count_nonzero(boot >= -tol) + 1) / (n_boot + 1)
    return PairedResult(
        difference=0.0 if abs(observed) <= tol else observed,
        low=float(low),
        high=float(high),
        p_value=min(1.0, 2 * min(below, above)),
    )
