"""numpy 1.23's `argsort` (the default, unstable kind), replayed in Python.

GenEval sorts each class's detections with `np.argsort(scores)[::-1]`. With tied scores the
result depends on the sort algorithm, and numpy changed it after 1.24 (SIMD sorts whose tie
order also varies between CPUs). GenEval's environment pins numpy 1.23, so that is the order
its verdicts were computed with; `harness.geneval.rules` uses this module to get it on any numpy.
"""

from __future__ import annotations

import numpy as np


def _less(a: float, b: float) -> bool:
    # numpy's float order for sorting: NaNs after every number.
    return a < b or (b != b and a == a)


def _aheapsort(v: list[float], order: list[int], lo: int, n: int) -> None:
    """numpy's index heapsort of order[lo:lo + n] by v (1-based heap, as in numpy)."""

    def sift(i: int, tmp: int, n: int) -> None:
        j = 2 * i
        while j <= n:
            if j < n and _less(v[order[lo + j - 1]], v[order[lo + j]]):
                j += 1
            if not _less(v[tmp], v[order[lo + j - 1]]):
                break
            order[lo + i - 1] = order[lo + j - 1]
            i, j = j, 2 * j
        order[lo + i - 1] = tmp

    for top in range(n >> 1, 0, -1):
        sift(top, order[lo + top - 1], n)
    while n > 1:
        tmp = order[lo + n - 1]
        order[lo + n - 1] = order[lo]
        n -= 1
        sift(1, tmp, n)


def argsort_like_geneval(scores: np.ndarray) -> list[int]:
    """`np.argsort(scores)` as GenEval's numpy (1.23, its environment.yml pin) computes it.

    The default argsort is not stable, so the order of tied scores is an artefact of the
    algorithm: numpy <= 1.24 used a plain introsort, while later numpys dispatch to SIMD
    sorts (x86-simd-sort, Highway) whose tie order differs, and differs between CPUs. Tied
    scores decide which boxes the colour and position checks see, which survive the
    max_objects cap, and the order of `details`; so we replay numpy 1.23's introsort
    (median-of-3 quicksort, insertion sort below 16 elements, heapsort past depth
    2*floor(log2 n)) exactly. Without ties any correct sort gives the same answer.
    """
    values = [float(s) for s in np.asarray(scores, dtype=np.float32).reshape(-1)]
    num = len(values)
    if len(set(values)) == num and all(s == s for s in values):
        return np.argsort(np.asarray(values), kind="stable").tolist()
    v, order = values, list(range(num))
    lo, hi = 0, num - 1
    stack: list[tuple[int, int, int]] = []
    depth = 2 * (num.bit_length() - 1)
    while True:
        if depth < 0:
            _aheapsort(v, order, lo, hi - lo + 1)
        else:
            while hi - lo > 15:
                mid = lo + ((hi - lo) >> 1)
                if _less(v[order[mid]], v[order[lo]]):
                    order[mid], order[lo] = order[lo], order[mid]
                if _less(v[order[hi]], v[order[mid]]):
                    order[hi], order[mid] = order[mid], order[hi]
                if _less(v[order[mid]], v[order[lo]]):
                    order[mid], order[lo] = order[lo], order[mid]
                pivot = v[order[mid]]
                i, j = lo, hi - 1
                order[mid], order[j] = order[j], order[mid]
                while True:
                    i += 1
                    while _less(v[order[i]], pivot):
                        i += 1
                    j -= 1
                    while _less(pivot, v[order[j]]):
                        j -= 1
                    if i >= j:
                        break
                    order[i], order[j] = order[j], order[i]
                order[i], order[hi - 1] = order[hi - 1], order[i]
                depth -= 1
                # Keep sorting the smaller side; the larger one waits on the stack.
                if i - lo < hi - i:
                    stack.append((i + 1, hi, depth))
                    hi = i - 1
                else:
                    stack.append((lo, i - 1, depth))
                    lo = i + 1
            for i in range(lo + 1, hi + 1):
                moving = order[i]
                j = i
                while j > lo and _less(v[moving], v[order[j - 1]]):
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = moving
        if not stack:
            return order
        lo, hi, depth = stack.pop()
