"""Test doubles for the runner: a generator that draws shapes from the seed and a scripted verifier.

For searches: `shapes-stepper` draws one shape per step (a generator with step control), the
`scripted-parm` / `scripted-orm` verifiers are the real PARM / ORM code on a scripted engine
(`harness.tiny.scripted_vlm`), and `peek` is a search strategy that reads the suite's metadata.
`STEPWISE_TEST_KILL_AT=<prompt>` makes `shapes-stepper` kill its own process (kill -9) when a
search starts on that prompt.

`register()` adds them to harness.registry by the registry API (no package install); under
torchrun the child processes call it through `python -m runner_plugins ...` (see `main`).
"""

from __future__ import annotations

import os
import random
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from harness.plugins import Cost, GenerationRequest, GenerationResult, SearchProblem, SearchResult, VerifierScore, param
from harness.verifiers.vlm import OutcomeVerifier, ParmParams, ParmVerifier, VlmParams

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


class StepperTrajectories:
    """Rows of `ShapesStepper`: a seed, a random stream, the shapes drawn so far."""

    def __init__(self, request: GenerationRequest) -> None:
        self.request = request
        self.seeds: list[int] = []
        self.rngs: list[random.Random] = []
        self.backgrounds: list[tuple[int, ...]] = []
        self.shapes: list[list[tuple[Any, ...]]] = []

    def __len__(self) -> int:
        return len(self.seeds)

    def seed(self, row: int) -> int:
        return self.seeds[row]

    def steps_done(self, row: int) -> int:
        return len(self.shapes[row])


def _copy_rng(rng: random.Random) -> random.Random:
    copy = random.Random()
    copy.setstate(rng.getstate())
    return copy


class ShapesStepper:
    """One shape per step, drawn from the row's own stream: a generator with step control (test double)."""

    description: ClassVar[str] = "Shapes drawn one per step from the seed (a stepping test double)."

    @dataclass(frozen=True)
    class Params:
        size: int = param(48, help="Image width and height.")
        steps: int = param(4, help="Steps (shapes) per image.")

    def __init__(self, params: Params) -> None:
        self.params = params
        self.total_steps = params.steps
        self.started: list[str] = []  # prompts of start() calls (tests read it)

    def _render(self, background: tuple[int, ...], shapes: list[tuple[Any, ...]]) -> Image:
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (self.params.size, self.params.size), background)
        draw = ImageDraw.Draw(image)
        for ellipse, xs, ys, color in shapes:
            (draw.ellipse if ellipse else draw.rectangle)((xs[0], ys[0], xs[1], ys[1]), fill=color)
        return image

    def start(self, request: GenerationRequest) -> StepperTrajectories:
        if request.prompt == os.environ.get("STEPWISE_TEST_KILL_AT"):
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9, in the middle of a search run
        self.started.append(request.prompt)
        traj = StepperTrajectories(request)
        for seed in request.seeds:
            rng = random.Random(seed)
            traj.seeds.append(int(seed))
            traj.backgrounds.append(tuple(rng.randrange(256) for _ in range(3)))
            traj.rngs.append(rng)
            traj.shapes.append([])
        return traj

    def advance(self, traj: StepperTrajectories, rows: Sequence[int], steps: int = 1) -> None:
        if len(set(rows)) != len(rows):
            raise ValueError(f"rows {list(rows)} name a row twice")
        for row in rows:
            if traj.steps_done(row) + steps > self.total_steps:
                raise ValueError(f"row {row} would pass the last step")
        size = self.params.size
        for row in rows:
            rng = traj.rngs[row]
            for _ in range(steps):
                xs, ys = sorted(rng.sample(range(size), 2)), sorted(rng.sample(range(size), 2))
                traj.shapes[row].append((rng.random() < 0.5, xs, ys, tuple(rng.randrange(256) for _ in range(3))))

    def preview(self, traj: StepperTrajectories, rows: Sequence[int]) -> list[Image]:
        if any(traj.steps_done(r) == 0 for r in rows):
            raise ValueError("a row at step 0 has no preview")
        return [self._render(traj.backgrounds[r], traj.shapes[r]) for r in rows]

    def fork(self, traj: StepperTrajectories, row: int, seed: int) -> int:
        traj.seeds.append(int(seed))
        traj.rngs.append(random.Random(seed))
        traj.backgrounds.append(traj.backgrounds[row])
        traj.shapes.append(list(traj.shapes[row]))
        return len(traj) - 1

    def keep(self, traj: StepperTrajectories, rows: Sequence[int]) -> None:
        seen: set[int] = set()
        rngs = []
        for r in rows:
            rngs.append(traj.rngs[r] if r not in seen else _copy_rng(traj.rngs[r]))
            seen.add(r)
        traj.seeds = [traj.seeds[r] for r in rows]
        traj.backgrounds = [traj.backgrounds[r] for r in rows]
        traj.shapes = [list(traj.shapes[r]) for r in rows]
        traj.rngs = rngs

    def finish(self, traj: StepperTrajectories, rows: Sequence[int]) -> list[Image]:
        for row in dict.fromkeys(rows):
            self.advance(traj, [row], self.total_steps - traj.steps_done(row))
        return [self._render(traj.backgrounds[r], traj.shapes[r]) for r in rows]

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for request in requests:
            traj = self.start(request)
            rows = list(range(len(traj)))
            previews: list[list[Image]] = [[] for _ in rows]
            for _ in range(self.total_steps):
                self.advance(traj, rows, 1)
                if request.previews:
                    for r, image in zip(rows, self.preview(traj, rows), strict=True):
                        previews[r].append(image)
            out.append(GenerationResult(self.finish(traj, rows), previews, Cost(forward_passes=self.total_steps)))
        return out


@dataclass(frozen=True, kw_only=True)
class ScriptedParmParams(ParmParams):
    model: str = param("scripted", help="Unused: the engine is scripted.")
    potential: float = param(0.5, help="Share of images whose potential answer is yes.")
    clear: float = param(0.35, help="Share of previews judged clear.")


class ScriptedParmVerifier(ParmVerifier):
    """The real PARM verifier code on the scripted engine (`harness.tiny.scripted_vlm`)."""

    Params: ClassVar[type] = ScriptedParmParams

    def __init__(self, params: ScriptedParmParams) -> None:
        from harness.tiny.scripted_vlm import ScriptedYesNoEngine

        super().__init__(params, engine=ScriptedYesNoEngine(clear=params.clear, potential=params.potential,
                                                            seed=params.seed))


@dataclass(frozen=True, kw_only=True)
class ScriptedOrmParams(VlmParams):
    model: str = param("scripted", help="Unused: the engine is scripted.")


class ScriptedOrmVerifier(OutcomeVerifier):
    """The real ORM verifier code (and its reflection judge) on the scripted engine."""

    Params: ClassVar[type] = ScriptedOrmParams

    def __init__(self, params: ScriptedOrmParams) -> None:
        from harness.tiny.scripted_vlm import ScriptedYesNoEngine

        super().__init__(params, engine=ScriptedYesNoEngine(seed=params.seed))


class PeekStrategy:
    """A search strategy that reads the suite's metadata (it declares it): the first candidate, its tag noted."""

    description: ClassVar[str] = "Reads the GenEval record (test double of the fair protocol)."
    reads_metadata: ClassVar[bool] = True
    verifiers: tuple[str, ...] = ()

    @dataclass(frozen=True)
    class Params:
        """No settings."""

    def __init__(self, params: Params) -> None:
        self.params = params

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        gen = ctx.generator
        traj = gen.start(gen.request(problem.prompt, ctx.seeds(1), metadata=problem.metadata))
        (image,) = gen.finish(traj, [0])
        ctx.note("peeked", tag=problem.metadata.get("tag"))
        return SearchResult(image, details={"tag": problem.metadata.get("tag")})


def register() -> None:
    """Add the doubles to the registries (idempotent: the same target twice is a no-op)."""
    from harness import registry

    registry.generators.register("shapes", ShapesGenerator, package=PACKAGE, version="1.0")
    registry.generators.register("shapes-stepper", ShapesStepper, package=PACKAGE, version="1.0")
    registry.verifiers.register("scripted", ScriptedVerifier, package=PACKAGE, version="1.0")
    registry.verifiers.register("plain", PlainVerifier, package=PACKAGE, version="1.0")
    registry.verifiers.register("scripted-parm", ScriptedParmVerifier, package=PACKAGE, version="1.0")
    registry.verifiers.register("scripted-orm", ScriptedOrmVerifier, package=PACKAGE, version="1.0")
    registry.strategies.register("peek", PeekStrategy, package=PACKAGE, version="1.0")


def register_isolated(monkeypatch: Any) -> None:
    """`register()` into copies of the registries' tables, which `monkeypatch` restores afterwards:
    other tests see no trace of the doubles."""
    from harness import registry

    for reg in (registry.generators, registry.verifiers, registry.strategies):
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
