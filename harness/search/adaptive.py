"""adaptive-n's exact expected accuracy and expected cost from an existing pool, for every tau.

The `adaptive-n` strategy draws candidates in batches of b until a batch holds a candidate whose
score reaches tau, or n_max candidates are drawn (the last batch may be partial), and picks the
best candidate drawn (the first drawn among equal scores). It needs finished candidates only, so
its expectation over a uniformly random order of a prompt's m pooled candidates has a closed form,
like best-of-n's (`harness.scaling`), with no regeneration:

Let P be the candidates scoring >= tau (p of them), F the others (f = m - p), D_t the candidates
drawn after batch t (D_0 = 0) and beta_t = D_t - D_{t-1}. The search stops after batch t with j >= 1
passing candidates in it with probability

    Pr(t, j) = C(f, D_{t-1}) / C(m, D_{t-1})  x  C(p, j) C(f - D_{t-1}, beta_t - j) / C(m - D_{t-1}, beta_t)

(no passing candidate in the first D_{t-1}, then j in batch t: hypergeometric); it never stops
early with probability C(f, n_max) / C(m, n_max). Every passing candidate outscores every failing
one, so when it stops after batch t the pick is the best of the j passing ones, which are a
uniformly random j-subset of P: its expected correctness is best-of-j over P alone (ties shared,
which is what "first drawn among equal scores" averages to over random orders). When it never
stops it is best-of-n_max over F. So

    accuracy = sum_t sum_j Pr(t, j) bestof_P(j) + Pr(none) bestof_F(n_max)
    cost     = sum_t sum_j Pr(t, j) D_t        + Pr(none) n_max            (candidates drawn)

Tested against brute-force enumeration of every order (tests/test_search_adaptive.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import numpy as np

__all__ = ["adaptive_n_exact", "adaptive_n_prompt", "simulate_adaptive_n", "thresholds"]


def _outcomes(correct: Sequence[float] | np.ndarray) -> np.ndarray:
    """GenEval's 0/1 verdicts as booleans, a suite's real-valued scores (GenEval 2's Soft-TIFA GM) as floats:
    the expectations below are linear in them either way."""
    values = np.asarray(correct)
    return values.astype(bool) if values.dtype == bool else values.astype(np.float64)


def _best_of(scores: np.ndarray, correct: np.ndarray) -> np.ndarray:
    """[bestof(1), ..., bestof(k)] expected correctness of the best of a random j-subset (ties shared)."""
    from harness.scaling import curve

    if scores.size == 0:
        return np.zeros(0)
    return curve(scores[None, :], correct[None, :], list(range(1, scores.size + 1)))[:, 0]


def adaptive_n_prompt(scores: Sequence[float], correct: Sequence[bool], *, tau: float, batch: int,
                      n_max: int) -> tuple[float, float]:
    """(expected correctness, expected candidates drawn) of adaptive-n over random orders of one prompt's pool."""
    s = np.asarray(scores, dtype=np.float64)
    c = _outcomes(correct)
    m = s.size
    if not 1 <= n_max <= m:
        raise ValueError(f"n_max = {n_max} must be between 1 and the pool's {m} candidates")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    passing = s >= tau
    p, f = int(passing.sum()), int((~passing).sum())
    best_p = _best_of(s[passing], c[passing])
    best_f = _best_of(s[~passing], c[~passing])
    accuracy = cost = 0.0
    drawn = 0
    while drawn < n_max:
        size = min(batch, n_max - drawn)
        clean = comb(f, drawn) / comb(m, drawn)  # nothing passing among the first `drawn`
        if clean == 0:
            break  # a passing candidate was drawn by now in every order
        for j in range(1, min(p, size) + 1):
            prob = clean * comb(p, j) * comb(f - drawn, size - j) / comb(m - drawn, size)
            accuracy += prob * best_p[j - 1]
            cost += prob * (drawn + size)
        drawn += size
    none = comb(f, n_max) / comb(m, n_max)
    if none > 0:
        accuracy += none * best_f[n_max - 1]
        cost += none * n_max
    return float(accuracy), float(cost)


def thresholds(scores: np.ndarray, valid: np.ndarray | None = None) -> list[float]:
    """Every tau that behaves differently on a pool: each distinct score, and +inf (never satisfied)."""
    values = scores[valid] if valid is not None else scores.ravel()
    return [*sorted({float(v) for v in values}), float("inf")]


def adaptive_n_exact(scores: np.ndarray, correct: np.ndarray, taus: Sequence[float], *, batch: int, n_max: int,
                     valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per tau and prompt, the expected correctness and candidates drawn of adaptive-n: two (T, P) arrays.

    scores, correct: (P, m) as `harness.scaling` takes them; valid: (P, m) cells holding a candidate
    (a ragged pool). n_max must fit every prompt's pool.
    """
    scores = np.asarray(scores, dtype=np.float64)
    correct = _outcomes(correct)
    valid = np.ones(scores.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    accuracy = np.zeros((len(taus), scores.shape[0]))
    cost = np.zeros_like(accuracy)
    for p in range(scores.shape[0]):
        row = valid[p]
        for t, tau in enumerate(taus):
            accuracy[t, p], cost[t, p] = adaptive_n_prompt(scores[p, row], correct[p, row], tau=tau, batch=batch,
                                                           n_max=n_max)
    return accuracy, cost


def simulate_adaptive_n(order: Sequence[int], scores: Sequence[float], *, tau: float, batch: int,
                        n_max: int) -> tuple[int, int]:
    """(picked candidate, candidates drawn) of adaptive-n drawing the pool in `order`: what the live strategy
    does with that order of seeds (best drawn, first among ties)."""
    best: int | None = None
    drawn = 0
    while drawn < n_max:
        size = min(batch, n_max - drawn)
        chunk = list(order[drawn:drawn + size])
        for i in chunk:
            if best is None or scores[i] > scores[best]:
                best = i
        drawn += size
        if max(scores[i] for i in chunk) >= tau:
            break
    assert best is not None
    return best, drawn
