"""The compute ledger and the trace of a search, kept by the harness around the plug-ins' calls.

A search strategy never writes its own compute: it calls the generator and the verifiers through
`MeteredGenerator` and `MeteredVerifier`, which count and time every call and record it in the
trace. Per GenEval sample:

    generator_nfe     candidate-steps: a row advanced one step is 1 (advance(rows, k): len(rows) x k;
                      finish: each row's remaining steps). Best-of-N costs N x total_steps.
    generator_passes  batched passes: one per step of an advance call, the most steps a row took in
                      a finish call (rows stepped together share a forward pass)
    generator_calls   start / advance / preview / fork / keep / finish calls
    previews          rows previewed (each a decoded image)
    generator_seconds wall-clock time inside the generator's methods
    verifiers         per verifier: calls, images given, forward passes and tokens (summed from the
                      `cost` the plug-in reports with each result), seconds measured around the calls
    seconds           the whole search of the sample, wall clock

The trace is a list of JSON events, in order. Every event has "event" and, for the generator's,
"traj" (which trajectories object, numbered from 0), "rows" (row indices at that moment) and "paths"
(stable path ids: "p0", "p1", ... a row keeps its path id when `keep` renumbers it; `fork` makes a
new path whose "parent" is the forked one):

    {"event": "start", "traj": 0, "rows": [0, 1], "paths": ["p0", "p1"], "seeds": [..], "prompt": "..",
     "feedback": false, "total_steps": 18}
    {"event": "advance", "traj": 0, "rows": [..], "paths": [..], "steps": 1, "to": [3, 3]}
    {"event": "preview", "traj": 0, "rows": [..], "paths": [..], "at": [3, 3], "images": ["<sha256>", ..]}
    {"event": "fork", "traj": 0, "rows": [2], "paths": ["p5"], "parent": "p2", "seed": 123, "at": 3}
    {"event": "keep", "traj": 0, "rows": [0, 1], "paths": ["p0", "p2"], "dropped": ["p1"]}
    {"event": "finish", "traj": 0, "rows": [..], "paths": [..], "steps": [15, 0], "images": [..]}
    {"event": "score", "verifier": "parm", "method": "clarity", "images": [..], "paths": [..],
     "at": [..], "results": [{...}, ..]}
    {"event": "note", "kind": "...", ...}        what the strategy adds with ctx.note(kind, ...)
    {"event": "pick", "image": "<sha256>", "path": "p3"}

Images are named by the sha256 of their PNG (saved in the run folder as pools save theirs), so a
trace can show the previews a strategy saw.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from harness.plugins import GenerationRequest

__all__ = ["BudgetExceeded", "Ledger", "MeteredGenerator", "MeteredVerifier", "Trace", "VerifierTally"]


class BudgetExceeded(RuntimeError):
    """A search asked for more generator compute than its budget allows."""


@dataclass
class VerifierTally:
    calls: int = 0
    images: int = 0
    forward_passes: int = 0
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class Ledger:
    """What one GenEval sample's search spent (see the module docstring)."""

    generator_nfe: int = 0
    generator_passes: int = 0
    generator_calls: int = 0
    previews: int = 0
    generator_seconds: float = 0.0
    verifiers: dict[str, VerifierTally] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def verifier_seconds(self) -> float:
        return sum(t.seconds for t in self.verifiers.values())

    @property
    def verifier_forward_passes(self) -> int:
        return sum(t.forward_passes for t in self.verifiers.values())

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "verifiers"}
        out["verifiers"] = {name: dataclasses.asdict(t) for name, t in sorted(self.verifiers.items())}
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Ledger:
        """A ledger from its JSON form; ValueError naming the field that is missing or not a number >= 0."""
        def number(value: Any, what: str, integer: bool) -> Any:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
            if not ok or (integer and int(value) != value):
                raise ValueError(f"ledger.{what} must be a{'n integer' if integer else ' number'} >= 0, got {value!r}")
            return int(value) if integer else float(value)

        if not isinstance(data, Mapping):
            raise ValueError("the ledger must be an object")
        counts = ("generator_nfe", "generator_passes", "generator_calls", "previews")
        missing = [k for k in (*counts, "generator_seconds", "seconds", "verifiers") if k not in data]
        if missing:
            raise ValueError(f"the ledger lacks {', '.join(missing)}")
        verifiers = data["verifiers"]
        if not isinstance(verifiers, Mapping):
            raise ValueError("ledger.verifiers must be an object")
        tallies = {}
        for name, tally in verifiers.items():
            if not isinstance(tally, Mapping):
                raise ValueError(f"ledger.verifiers.{name} must be an object")
            tallies[str(name)] = VerifierTally(
                *(number(tally.get(k), f"verifiers.{name}.{k}", True) for k in ("calls", "images", "forward_passes",
                                                                                 "tokens")),
                number(tally.get("seconds"), f"verifiers.{name}.seconds", False))
        return cls(*(number(data[k], k, True) for k in counts), number(data["generator_seconds"],
                                                                      "generator_seconds", False),
                   tallies, number(data["seconds"], "seconds", False))


# ---------------------------------------------------------------------------------------------
# the trace


class Trace:
    """The events of one sample's search, and what is known about the images seen in it."""

    def __init__(self, save: Callable[[Image], str]) -> None:
        self.events: list[dict[str, Any]] = []
        self._save = save
        self._images: dict[int, tuple[Image, str]] = {}  # id(image) -> (image, sha256); keeps them alive
        self.where: dict[str, tuple[str, int]] = {}  # sha256 -> (path, step) where the generator made it
        self.trajs: list[Any] = []  # trajectories objects, by number
        self.paths: list[list[str]] = []  # per trajectories object, the path id of each row
        self._next_path = 0

    def add(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, **fields}
        self.events.append(record)
        return record

    def sha(self, image: Image, path: str | None = None, step: int | None = None) -> str:
        """The sha256 of an image's PNG (saved once); where it came from, when the generator made it."""
        known = self._images.get(id(image))
        if known is not None and known[0] is image:
            digest = known[1]
        else:
            digest = self._save(image)
            self._images[id(image)] = (image, digest)
        if path is not None and step is not None:
            self.where.setdefault(digest, (path, step))
        return digest

    def new_paths(self, count: int) -> list[str]:
        out = [f"p{self._next_path + i}" for i in range(count)]
        self._next_path += count
        return out

    def number(self, traj: Any) -> int:
        for i, known in enumerate(self.trajs):
            if known is traj:
                return i
        raise ValueError("these trajectories were not started through the search context's generator")


# ---------------------------------------------------------------------------------------------
# the generator


class MeteredGenerator:
    """A stepping generator as a search sees it: the same methods, counted, timed and traced.

    `max_nfe` caps the candidate-steps (BudgetExceeded past it). A request's metadata reaches the
    generator only when its class declares `reads_metadata`, a feedback only when it declares
    `accepts_feedback` (`harness.plugins`).
    """

    def __init__(self, generator: Any, ledger: Ledger, trace: Trace, max_nfe: int,
                 on_metadata: Callable[[str], None] = lambda who: None) -> None:
        from harness.plugins import accepts_feedback, reads_metadata, supports_initial_noise

        self._generator = generator
        self._ledger = ledger
        self._trace = trace
        self.max_nfe = max_nfe
        self.total_steps = int(generator.total_steps)
        self.accepts_feedback = accepts_feedback(generator)
        self.reads_metadata = reads_metadata(generator)
        self.supports_initial_noise = supports_initial_noise(generator)
        self._on_metadata = on_metadata

    @contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self._ledger.generator_calls += 1
            self._ledger.generator_seconds += time.perf_counter() - started

    def _spend(self, nfe: int, passes: int, what: str) -> None:
        if self._ledger.generator_nfe + nfe > self.max_nfe:
            raise BudgetExceeded(f"{what} needs {nfe} more candidate-steps, past the budget: "
                                 f"{self._ledger.generator_nfe} of {self.max_nfe} spent")
        self._ledger.generator_nfe += nfe
        self._ledger.generator_passes += passes

    def _paths(self, traj: Any, rows: Sequence[int]) -> tuple[int, list[str]]:
        number = self._trace.number(traj)
        return number, [self._trace.paths[number][r] for r in rows]

    def start(self, request: GenerationRequest) -> Any:
        return self._start(request, self._generator.start)

    def _start(self, request: GenerationRequest, begin: Callable[[GenerationRequest], Any]) -> Any:
        import dataclasses as dc

        if request.metadata and not self.reads_metadata:
            request = dc.replace(request, metadata={})
        elif request.metadata:
            self._on_metadata("generator")
        if request.feedback is not None and not self.accepts_feedback:
            request = dc.replace(request, feedback=None)
        with self._timed():
            traj = begin(request)
        self._trace.trajs.append(traj)
        paths = self._trace.new_paths(len(traj))
        self._trace.paths.append(paths)
        self._trace.add("start", traj=len(self._trace.trajs) - 1, rows=list(range(len(traj))), paths=list(paths),
                        seeds=[int(s) for s in request.seeds], prompt=request.prompt,
                        feedback=request.feedback is not None, total_steps=self.total_steps)
        return traj

    def start_mixed(self, request: GenerationRequest, mixes: Sequence[Sequence[tuple[int, float]]]) -> Any:
        """`start` from given initial noise (`harness.plugins.supports_initial_noise`); the trace records
        each row's mix."""
        if not self.supports_initial_noise:
            raise ValueError(f"generator {type(self._generator).__name__} cannot start from given initial noise "
                                "(no `start_mixed`): noise search needs a diffusion or flow generator (diffusers)")
        traj = self._start(request, lambda r: self._generator.start_mixed(r, mixes))
        self._trace.add("noise", traj=len(self._trace.trajs) - 1,
                        mixes=[[[int(s), float(w)] for s, w in mix] for mix in mixes])
        return traj

    def advance(self, traj: Any, rows: Sequence[int], steps: int = 1) -> None:
        rows = [int(r) for r in rows]
        number, paths = self._paths(traj, rows)
        if rows and steps:
            self._spend(len(rows) * steps, steps, f"advance({len(rows)} rows, {steps} steps)")
        with self._timed():
            self._generator.advance(traj, rows, steps)
        self._trace.add("advance", traj=number, rows=rows, paths=paths, steps=int(steps),
                        to=[traj.steps_done(r) for r in rows])

    def preview(self, traj: Any, rows: Sequence[int]) -> list[Image]:
        rows = [int(r) for r in rows]
        number, paths = self._paths(traj, rows)
        with self._timed():
            images = self._generator.preview(traj, rows)
        self._ledger.previews += len(rows)
        at = [traj.steps_done(r) for r in rows]
        shas = [self._trace.sha(im, p, s) for im, p, s in zip(images, paths, at, strict=True)]
        self._trace.add("preview", traj=number, rows=rows, paths=paths, at=at, images=shas)
        return list(images)

    def fork(self, traj: Any, row: int, seed: int) -> int:
        number, (parent,) = self._paths(traj, [int(row)])
        with self._timed():
            new = int(self._generator.fork(traj, int(row), int(seed)))
        (path,) = self._trace.new_paths(1)
        self._trace.paths[number].append(path)
        self._trace.add("fork", traj=number, rows=[new], paths=[path], parent=parent, seed=int(seed),
                        at=traj.steps_done(new))
        return new

    def keep(self, traj: Any, rows: Sequence[int]) -> None:
        rows = [int(r) for r in rows]
        number, paths = self._paths(traj, rows)
        with self._timed():
            self._generator.keep(traj, rows)
        before = self._trace.paths[number]
        # A duplicated row becomes a new path (its copy may be advanced or dropped on its own).
        seen: set[str] = set()
        kept = []
        for path in paths:
            kept.append(path if path not in seen else self._trace.new_paths(1)[0])
            seen.add(path)
        self._trace.paths[number] = kept
        dropped = [p for p in before if p not in seen]
        copies = {new: old for new, old in zip(kept, paths, strict=True) if new != old}
        self._trace.add("keep", traj=number, rows=list(range(len(rows))), paths=kept, dropped=dropped,
                        copies=copies)

    def finish(self, traj: Any, rows: Sequence[int]) -> list[Image]:
        rows = [int(r) for r in rows]
        number, paths = self._paths(traj, rows)
        distinct = list(dict.fromkeys(rows))
        remaining = {r: self.total_steps - traj.steps_done(r) for r in distinct}
        if remaining:
            self._spend(sum(remaining.values()), max(remaining.values()), f"finish({len(distinct)} rows)")
        with self._timed():
            images = self._generator.finish(traj, rows)
        shas = [self._trace.sha(im, p, self.total_steps) for im, p in zip(images, paths, strict=True)]
        self._trace.add("finish", traj=number, rows=rows, paths=paths, steps=[remaining[r] for r in rows],
                        images=shas)
        return list(images)

    def request(self, prompt: str, seeds: Sequence[int], **fields: Any) -> GenerationRequest:
        from harness.plugins import GenerationRequest

        return GenerationRequest(prompt, tuple(int(s) for s in seeds), **fields)


# ---------------------------------------------------------------------------------------------
# verifiers


def _summary(result: Any) -> Any:
    """What a trace keeps of one verifier result: JSON values only (scores, answers, details)."""
    from harness.plugins import Cost, VerifierScore

    if isinstance(result, VerifierScore):
        return {"score": result.score, **({"details": dict(result.details)} if result.details else {})}
    if dataclasses.is_dataclass(result) and not isinstance(result, type):
        return {f.name: _summary(getattr(result, f.name)) for f in dataclasses.fields(result)
                if not isinstance(getattr(result, f.name), Cost)}
    if isinstance(result, bool | int | str) or result is None:
        return result
    if isinstance(result, float):
        return result if math.isfinite(result) else None
    if isinstance(result, Mapping):
        return {str(k): _summary(v) for k, v in result.items()}
    if isinstance(result, list | tuple):
        return [_summary(v) for v in result]
    return repr(result)[:200]


class MeteredVerifier:
    """A verifier as a search sees it: `score(prompt, images, previews)` and every public method of the
    plug-in (e.g. PARM's `clarity`, `potential`, `outcome`; the ORM's `judge`), each call counted,
    timed and traced. A method's second argument is its list of images; results that carry a
    `cost` (`harness.plugins.Cost`) add their forward passes and tokens to the ledger.

    A verifier class that declares `reads_metadata` gets `metadata=` (the suite's record); one that
    declares `needs_verdicts` (the oracle) gets GenEval's verdicts of the images it scores,
    computed by the run's evaluator (`verdicts_of`).
    """

    def __init__(self, name: str, instance: Any, ledger: Ledger, trace: Trace, *, needs_previews: bool,
                 needs_verdicts: bool = False, metadata: Mapping[str, Any] | None = None,
                 verdicts_of: Callable[[list[Image]], list[bool]] | None = None) -> None:
        self.name = name
        self.needs_previews = needs_previews
        self.needs_verdicts = needs_verdicts
        self._instance = instance
        self._ledger = ledger
        self._trace = trace
        self._metadata = metadata  # given only to a verifier that declares reads_metadata
        self._verdicts_of = verdicts_of

    def score(self, prompt: str, images: list[Image], previews: list[list[Image]] | None = None) -> list[Any]:
        extra: dict[str, Any] = {}
        if self.needs_verdicts:
            if self._verdicts_of is None:
                raise RuntimeError(f"verifier {self.name!r} needs GenEval's verdicts, and none can be computed here")
            extra["verdicts"] = self._verdicts_of(list(images))
        if self._metadata is not None:
            extra["metadata"] = dict(self._metadata)
        previews = previews if self.needs_previews else None
        return self._call("score", self._instance.score, prompt, list(images), previews, **extra)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._instance, name)
        if not callable(target):
            return target

        def metered(prompt: str, images: list[Image], *args: Any, **kwargs: Any) -> Any:
            return self._call(name, target, prompt, list(images), *args, **kwargs)

        return metered

    def _call(self, method: str, target: Callable[..., Any], prompt: str, images: list[Image], *args: Any,
              **kwargs: Any) -> Any:
        tally = self._ledger.verifiers.setdefault(self.name, VerifierTally())
        started = time.perf_counter()
        try:
            results = target(prompt, images, *args, **kwargs)
        finally:
            tally.calls += 1
            tally.images += len(images)
            tally.seconds += time.perf_counter() - started
        for result in results if isinstance(results, list | tuple) else ():
            cost = getattr(result, "cost", None)
            if cost is not None and hasattr(cost, "forward_passes"):
                tally.forward_passes += int(cost.forward_passes)
                tally.tokens += int(cost.tokens)
        shas = [self._trace.sha(im) for im in images]
        where = [self._trace.where.get(sha) for sha in shas]
        self._trace.add("score", verifier=self.name, method=method, images=shas,
                        paths=[w[0] if w else None for w in where], at=[w[1] if w else None for w in where],
                        results=[_summary(r) for r in results] if isinstance(results, list | tuple) else [])
        return results
