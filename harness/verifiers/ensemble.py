"""`ensemble`: a verifier made of other verifiers' scores of the same candidates (reward ensembles,
as T2I-R1, ReflectionFlow and FK steering combine reward models).

It runs no model: it reads the scores the run's other verifiers gave a prompt's candidates
(`reads_scores`, see `harness.plugins.Verifier`) and combines them within the prompt:

    rank    each verifier's scores become ranks among the prompt's candidates (ties share the mean
            rank), scaled to [0, 1] (lowest 0, highest 1; one candidate: 0.5); the score is their
            weighted mean (weights normalised to sum 1), so it lies in [0, 1]
    zscore  each verifier's scores become z-scores within the prompt ((s - mean) / std, population
            std; all equal: 0); the score is their weighted sum (weights as given)

Default weights are 1 each. Ranks and z-scores make verifiers on different scales (P("yes") in
[0, 1], PickScore around 20, HPS around 0.25) commensurable without calibration data.

The normalisation uses the prompt's whole pool (every candidate the run has for it). Best-of-n
then keeps the candidate with the highest ensemble score among the n drawn, and the exact
closed form of `harness.scaling` applies to that rule. (Normalising within each n-subset instead
would be another selector whose argmax changes with the subset, with no closed form.) Because a
candidate's score depends on its prompt's pool, the runner scores all of a prompt's candidates
again whenever one is added (`stepwise run --pool` raised) and replaces the stored ones.

Its scores are stored under a settings hash that includes the settings hashes of the verifiers it
combines, so the ensemble of other ORM settings is another ensemble.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.plugins import VerifierScore, param

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

__all__ = ["EnsembleParams", "EnsembleVerifier", "combine", "within_prompt_ranks", "within_prompt_z"]


def within_prompt_ranks(scores: np.ndarray) -> np.ndarray:
    """(V, m) scores -> (V, m) ranks among each row's m candidates scaled to [0, 1]; ties share their
    mean rank; a single candidate gets 0.5.

    >>> import numpy as np
    >>> within_prompt_ranks(np.array([[0.1, 0.9, 0.5, 0.5]])).tolist()
    [[0.0, 1.0, 0.5, 0.5]]
    """
    import numpy as np
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=np.float64)
    m = scores.shape[1]
    if m == 1:
        return np.full(scores.shape, 0.5)
    return (rankdata(scores, method="average", axis=1) - 1.0) / (m - 1.0)


def within_prompt_z(scores: np.ndarray) -> np.ndarray:
    """(V, m) scores -> (V, m) z-scores within each row (population std); a constant row gives 0.

    >>> import numpy as np
    >>> within_prompt_z(np.array([[1.0, 3.0], [2.0, 2.0]])).tolist()
    [[-1.0, 1.0], [0.0, 0.0]]
    """
    import numpy as np

    scores = np.asarray(scores, dtype=np.float64)
    centred = scores - scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    # Rows whose spread is rounding noise (equal scores) carry no ranking: 0, not noise / noise.
    flat = std <= 1e-12 * np.maximum(1.0, np.abs(scores).max(axis=1, keepdims=True))
    return np.where(flat, 0.0, centred / np.where(flat, 1.0, std))


def combine(method: str, scores: np.ndarray, weights: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(V, m) scores of V verifiers for one prompt's m candidates -> ((m,) ensemble score, (V, m) parts).

    `parts` are the per-verifier ranks or z-scores the score is made of.

    >>> import numpy as np
    >>> combine("rank", np.array([[0.2, 0.8], [0.9, 0.1]]), [3, 1])[0].tolist()
    [0.25, 0.75]
    """
    import numpy as np

    w = np.asarray(weights, dtype=np.float64)
    if method == "rank":
        parts = within_prompt_ranks(scores)
        return (w @ parts) / w.sum(), parts
    if method == "zscore":
        parts = within_prompt_z(scores)
        return w @ parts, parts
    raise ValueError(f"unknown ensemble method {method!r}: rank or zscore")


@dataclass(frozen=True, kw_only=True)
class EnsembleParams:
    verifiers: tuple[str, ...] = param(help="The verifiers to combine, e.g. orm,pickscore (each also a --verifier "
                                            "of the run, listed before the ensemble is scored).")
    method: Literal["rank", "zscore"] = param("rank", help="rank: weighted mean of within-prompt ranks in [0, 1]; "
                                                           "zscore: weighted sum of within-prompt z-scores.")
    weights: tuple[float, ...] = param((), help="One weight >= 0 per verifier, in order (default: 1 each).")


class EnsembleVerifier:
    """Combines other verifiers' scores of a prompt's candidates (rank average or z-score sum)."""

    Params: ClassVar[type] = EnsembleParams
    description: ClassVar[str] = ("Ensemble of other verifiers' scores within a prompt: weighted mean of ranks, or "
                                  "weighted sum of z-scores (no model of its own).")
    needs_previews: ClassVar[bool] = False
    reads_scores: ClassVar[bool] = True
    # rank gives [0, 1]; zscore is bounded only by the pool size (|z| <= sqrt(m - 1)), so the class
    # declares what holds for every setting.
    score_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)

    def __init__(self, params: EnsembleParams) -> None:
        self.params = params
        self.inputs = self.score_inputs(params)
        weights = params.weights or tuple(1.0 for _ in self.inputs)
        if len(weights) != len(self.inputs):
            raise ValueError(f"ensemble: {len(weights)} weights for {len(self.inputs)} verifiers "
                             f"({', '.join(self.inputs)})")
        if any(not math.isfinite(w) or w < 0 for w in weights) or not any(w > 0 for w in weights):
            raise ValueError(f"ensemble: weights must be finite, >= 0 and not all 0, got {list(weights)}")
        self.weights = tuple(float(w) for w in weights)

    @staticmethod
    def score_inputs(params: EnsembleParams) -> tuple[str, ...]:
        """The verifiers whose scores `score` reads, in order (checked: at least two, none twice)."""
        names = tuple(params.verifiers)
        if len(names) < 2:
            raise ValueError(f"ensemble: name at least two verifiers to combine, got {list(names)}")
        if len(set(names)) != len(names):
            raise ValueError(f"ensemble: a verifier is named twice in {list(names)}")
        if "ensemble" in names:
            raise ValueError("ensemble: an ensemble cannot combine itself")
        return names

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None,
              scores: Mapping[str, Sequence[float]] | None = None) -> list[VerifierScore]:
        import numpy as np

        if scores is None:
            raise ValueError("the ensemble verifier combines other verifiers' scores and was called without them: "
                             "call score(..., scores={verifier: [score, ...]}) (the runner does, since "
                             "reads_scores is True)")
        missing = [name for name in self.inputs if name not in scores]
        if missing:
            raise ValueError(f"ensemble: no scores by {', '.join(missing)} (it combines {', '.join(self.inputs)})")
        rows = [list(scores[name]) for name in self.inputs]
        bad = [name for name, row in zip(self.inputs, rows, strict=True) if len(row) != len(images)]
        if bad:
            raise ValueError(f"ensemble: {', '.join(bad)} gave a score count other than the {len(images)} images")
        if not images:
            return []
        matrix = np.asarray(rows, dtype=np.float64)
        if not np.isfinite(matrix).all():
            raise ValueError("ensemble: the scores to combine must be finite numbers")
        combined, parts = combine(self.params.method, matrix, self.weights)
        out = []
        for j, value in enumerate(combined.tolist()):
            details: dict[str, Any] = {"method": self.params.method,
                                       "parts": {name: float(parts[v, j]) for v, name in enumerate(self.inputs)}}
            out.append(VerifierScore(float(value), details=details))
        return out
