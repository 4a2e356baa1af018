"""Test doubles for the runner: a generator that draws shapes from the seed and a scripted verifier.

`register()` adds them to harness.registry by the registry API (no package install); under
torchrun the child processes call it through `python -m runner_plugins ...` (see `main`).
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.plugins import Cost, GenerationRequest, GenerationResult, VerifierScore, param

if TYPE_CHECKING:
    from PIL.Image import Image

PACKAGE = "stepwise-runner-tests"
CALLS: dict[str, int] = {"generate": 0, "score": 0}  # how often the runner called the plug-ins
FAIL_ON: set[str] = set()  # prompt texts the generator raises on (a simulated crash; not a param: same run id)


class ShapesGenerator:
    """Random rectangles and ellipses on a random background, all from the candidate's seed."""

    description: ClassVar[str] = "Shapes drawn from the seed (test double)."

    @dataclass(frozen=True)
    class Params:
        size: int = param(48, help="Image width and height.")
        steps: int = param(2, help="Step previews per candidate.")

    def __init__(self, params: Params) -> None:
        self.params = params

    def _draw(self, seed: int, upto: int | None = None) -> Image:
        from PIL import Image, ImageDraw

        rng = random.Random(seed)
        size = self.params.size
        image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
        draw = ImageDraw.Draw(image)
        shapes = [(rng.random() < 0.5, sorted(rng.sample(range(size), 2)), sorted(rng.sample(range(size), 2)),
                   tuple(rng.randrange(256) for _ in range(3))) for _ in range(3)]
        for ellipse, xs, ys, color in shapes[:upto]:
            box = (xs[0], ys[0], xs[1], ys[1])
            (draw.ellipse if ellipse else draw.rectangle)(box, fill=color)
        return image

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        CALLS["generate"] += 1
        out = []
        for request in requests:
            if request.prompt in FAIL_ON:
                raise RuntimeError(f"simulated crash on {request.prompt!r}")
            images = [self._draw(seed) for seed in request.seeds]
            steps = self.params.steps if request.previews else 0
            previews = [[self._draw(seed, upto=k) for k in range(steps)] for seed in request.seeds]
            out.append(GenerationResult(images, previews, Cost(forward_passes=len(request.seeds))))
        return out


class ScriptedVerifier:
    """Score = mean of one channel of the image (scripted: depends on pixels only); steps per preview."""

    description: ClassVar[str] = "Mean of one channel (test double)."
    needs_previews: ClassVar[bool] = True
    score_range: ClassVar[tuple[float, float]] = (0.0, 1.0)  # a mean of pixels / 255

    @dataclass(frozen=True)
    class Params:
        channel: int = param(0, help="RGB channel to average.")

    def __init__(self, params: Params) -> None:
        self.params = params

    def _mean(self, image: Image) -> float:
        import numpy as np

        return float(np.asarray(image.convert("RGB"))[..., self.params.channel].mean() / 255)

    @staticmethod
    def score_probability(score: float) -> float | None:
        """The mean channel value, in [0, 1], read as a probability (so pools of it have a reliability diagram)."""
        return score

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None) -> list[VerifierScore]:
        CALLS["score"] += 1
        assert previews is not None and len(previews) == len(images)
        return [VerifierScore(self._mean(im), tuple(self._mean(p) for p in steps), Cost(forward_passes=1),
                              details={"channel": self.params.channel, "steps": len(steps)})
                for im, steps in zip(images, previews, strict=True)]


class PlainVerifier(ScriptedVerifier):
    """The same, without previews (a second verifier added later)."""

    needs_previews: ClassVar[bool] = False

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None) -> list[VerifierScore]:
        CALLS["score"] += 1
        assert previews is None
        return [VerifierScore(self._mean(im)) for im in images]


def register() -> None:
    """Add the doubles to the registries (idempotent: the same target twice is a no-op)."""
    from harness import registry

    registry.generators.register("shapes", ShapesGenerator, package=PACKAGE, version="1.0")
    registry.verifiers.register("scripted", ScriptedVerifier, package=PACKAGE, version="1.0")
    registry.verifiers.register("plain", PlainVerifier, package=PACKAGE, version="1.0")


def register_isolated(monkeypatch: Any) -> None:
    """`register()` into copies of the registries' tables, which `monkeypatch` restores afterwards:
    other tests see no trace of the doubles."""
    from harness import registry

    for reg in (registry.generators, registry.verifiers):
        for table in ("_entries", "_names", "_loaded"):
            monkeypatch.setattr(reg, table, dict(getattr(reg, table)))
    register()
    CALLS.update(generate=0, score=0)
    FAIL_ON.clear()


def tiny_model_flags(tmp_path_factory: Any) -> list[str]:
    """`stepwise run` flags selecting the tiny hf detector and tiny CLIP (built into temporary folders)."""
    from harness.tiny.clip import write_tiny_clip
    from harness.tiny.hf_detector import write_tiny_hf_detector

    arch, weights = write_tiny_clip(tmp_path_factory.mktemp("clip"))
    detector = write_tiny_hf_detector(tmp_path_factory.mktemp("hf"))
    # A low threshold lets random-weight detections through, so colour checks run too.
    return ["--backend", "hf", "--detector", str(detector), "--clip-arch", arch, "--clip-weights", str(weights),
            "--threshold", "0.05"]


def main(argv: list[str]) -> None:
    """`python -m runner_plugins stepwise-args...`: the CLI with the doubles registered (torchrun workers)."""
    register()
    from harness.cli import main as cli

    cli.main(argv, prog_name="stepwise")


if __name__ == "__main__":
    main(sys.argv[1:])
