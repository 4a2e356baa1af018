"""The two reference points every verifier is compared with: `oracle` (the ceiling) and `random` (the floor).

* `oracle` scores a candidate 1.0 when GenEval judges it correct, else 0.0. Best-of-n with it
  picks a correct candidate whenever one of the n is, so its curve is what a perfect verifier
  reaches. It reads GenEval's verdicts through the optional `needs_verdicts` extension of the
  Verifier interface (see `harness.plugins.Verifier`).
* `random` scores a candidate with a uniform number in [0, 1) drawn from a hash of (seed,
  prompt, the image's pixels): reproducible, independent of which other images share the call
  and of their order, and independent of correctness. With random keys the best of n is a
  uniformly random candidate, so its expected best-of-n accuracy is the mean accuracy for every n
  (`stepwise curve`'s "random" row computes that expectation exactly; a stored `random` pool is one
  draw around it).

Neither runs a model; both report zero cost (the oracle's real cost is GenEval's evaluation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from harness.plugins import VerifierScore, param

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["OracleVerifier", "RandomVerifier", "pixel_digest", "uniform_score"]


class OracleVerifier:
    """GenEval's own verdict as the score: 1.0 correct, 0.0 not."""

    description: ClassVar[str] = "GenEval's own verdict (1 correct, 0 not): what a perfect verifier reaches."
    needs_previews: ClassVar[bool] = False
    needs_verdicts: ClassVar[bool] = True
    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)  # 1.0 correct, 0.0 not

    @dataclass(frozen=True)
    class Params:
        """No settings: the verdict comes from the run's evaluator."""

    def __init__(self, params: Params) -> None:
        self.params = params

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None,
              verdicts: Sequence[bool] | None = None) -> list[VerifierScore]:
        if verdicts is None:
            raise ValueError("the oracle verifier scores by GenEval's verdicts and was called without them: "
                             "call score(..., verdicts=[correct, ...]) (the runner does, since needs_verdicts is "
                             "True)")
        if len(verdicts) != len(images):
            raise ValueError(f"the oracle verifier got {len(verdicts)} verdicts for {len(images)} images")
        return [VerifierScore(1.0 if bool(correct) else 0.0) for correct in verdicts]


def pixel_digest(image: Image) -> bytes:
    """sha256 of an image's RGB pixels and size: its content, whatever file format it came from."""
    rgb = image.convert("RGB")
    digest = hashlib.sha256(f"{rgb.width}x{rgb.height}:".encode())
    digest.update(rgb.tobytes())
    return digest.digest()


def uniform_score(seed: int, prompt: str, image: Image) -> float:
    """A uniform number in [0, 1) that depends only on (seed, prompt, the image's pixels)."""
    digest = hashlib.sha256(f"stepwise-random:{seed}:{prompt}:".encode() + pixel_digest(image)).digest()
    # 53 bits: every value is an exact double, and 2**53 - 1 over 2**53 stays below 1.
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


class RandomVerifier:
    """A seeded uniform score per candidate, from (seed, prompt, image pixels)."""

    description: ClassVar[str] = "A seeded uniform score: the floor; its exact curve equals the mean accuracy."
    needs_previews: ClassVar[bool] = False
    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)  # uniform_score: [0, 1)

    @dataclass(frozen=True)
    class Params:
        seed: int = param(0, help="Seed of the scores; another seed gives an independent draw.")

    def __init__(self, params: Params) -> None:
        self.params = params

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None) -> list[VerifierScore]:
        return [VerifierScore(uniform_score(self.params.seed, prompt, image)) for image in images]
