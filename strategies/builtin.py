"""The built-in strategies: selection rules that read a pool's stored verifier scores.

    baseline   the generator alone: nothing tells candidates apart, every candidate ties
    best-of-n  the candidate one verifier (Params.verifier) scores highest
    parm       PARM's selection, read from the `parm` verifier's scores and details
    oracle     GenEval's verdict, read from the `oracle` verifier: the ceiling
    random     a uniformly random candidate: every candidate ties, the floor

A strategy gives one key per candidate of a prompt; the harness keeps the best of a random
n-subset and shares ties evenly (`harness.scaling`), so the curve is exact for every n. A
strategy that reads no verifier cannot tell candidates apart and returns no keys: the harness
then ties every candidate, which scores exactly the pool's mean accuracy at every n (see
`strategies.keys`). Nothing here loads a model: strategies work on stored scores only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from harness.plugins import VerifierScore, param

__all__ = ["BaselineStrategy", "BestOfNStrategy", "OracleStrategy", "ParmStrategy", "RandomStrategy", "parm_key"]


class BaselineStrategy:
    """The generator alone: no verifier, so no candidate is preferred (every one ties)."""

    description: ClassVar[str] = ("The generator alone: one candidate per sample (any candidate: the curve is flat "
                                  "at the mean accuracy).")
    verifiers: tuple[str, ...] = ()

    @dataclass(frozen=True)
    class Params:
        """No settings."""

    def __init__(self, params: Params) -> None:
        self.params = params

    def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
        return []  # no keys: every candidate ties


class BestOfNStrategy:
    """Best-of-n: the key is one verifier's score."""

    description: ClassVar[str] = "Best-of-N: the candidate one verifier scores highest."

    @dataclass(frozen=True)
    class Params:
        verifier: str = param("orm", help="The verifier whose score is the key.")

    def __init__(self, params: Params) -> None:
        self.params = params
        self.verifiers = (params.verifier,)  # from the params, so an instance attribute

    def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
        return [s.score for s in scores[self.params.verifier]]


def parm_key(score: VerifierScore) -> float:
    """PARM's order as one number: survivors (potential "yes") first by ORM score, then the rest by
    lowest P("no"). Survivors get 1 + ORM score in [1, 2], the others -no_prob in [-50, 0].

    The `parm` verifier stores 1 + ORM score as a survivor's score (the ORM score is not in its
    details: a sampled answer that is neither yes nor no scores 0 whatever P("yes") was), and
    `survivor` and `no_prob` in its details. A score stored without details (stores older than
    schema 2) already encodes the order in its value.
    """
    details = score.details
    if "survivor" not in details:
        return score.score
    if details["survivor"]:
        return score.score  # 1 + ORM score, as the verifier stores it
    return -float(details["no_prob"])


class ParmStrategy:
    """PARM's selection: potential filter, ORM score among survivors, fallback to the lowest P("no")."""

    description: ClassVar[str] = ("PARM's selection: potential filter, ORM score among survivors, fallback to the "
                                  "lowest P(\"no\").")
    verifiers: tuple[str, ...] = ("parm",)

    @dataclass(frozen=True)
    class Params:
        """No settings: the `parm` verifier's parameters (its checkpoint) are given as for `stepwise run`."""

    def __init__(self, params: Params) -> None:
        self.params = params

    def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
        return [parm_key(s) for s in scores["parm"]]


class OracleStrategy:
    """GenEval itself as the selector: the key is the verdict (1 correct, 0 not), from the `oracle` verifier."""

    description: ClassVar[str] = "GenEval itself as the selector: the upper bound a perfect verifier reaches."
    verifiers: tuple[str, ...] = ("oracle",)

    @dataclass(frozen=True)
    class Params:
        """No settings: the verdicts are those of the evaluator settings the curve is computed with."""

    def __init__(self, params: Params) -> None:
        self.params = params

    def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
        return [s.score for s in scores["oracle"]]


class RandomStrategy(BaselineStrategy):
    """A uniformly random candidate. Every candidate ties, so the exact expectation over the random
    choice is computed (the pool's mean accuracy), not one draw of the stored `random` verifier.
    The same rule as the baseline's, under the name the curves' reference row has."""

    description: ClassVar[str] = "A uniformly random candidate: the floor (its curve is the mean accuracy)."
