"""What a generator, a verifier and a strategy plug-in look like, and how their parameters are read.

Three narrow, batched interfaces (`typing.Protocol`, so a plug-in needs no stepwise base class):

    Generator.generate(requests)              -> one GenerationResult per request, same order
    Verifier.score(prompt, images, previews)  -> one VerifierScore per image, same order
    Strategy.select_key(scores)               -> one selection key per candidate (higher is better)

One optional extension: a verifier class that sets `needs_verdicts: ClassVar[bool] = True` is
called as `score(prompt, images, previews, verdicts=[...])`, with GenEval's verdict (`correct`)
of each image; the reference verifier `oracle` is one. Without the attribute nothing changes.

Another optional extension, for strategies: a strategy class that defines

    prepare(self, context: harness.preparation.PrepareContext) -> harness.preparation.Preparation

has a *prepare* stage (training) that makes a generator checkpoint: `stepwise run --strategy NAME`
calls it before the run, generates with the params it returns (e.g. `model=<checkpoint>`) and
records the link between the run and the checkpoint in the store (`harness.preparation`; the
built-in `dpo` and `iterative-dpo`, `strategies.alignment`). A strategy without it is a selection
rule only, applied with `stepwise curve --strategy NAME`.

And one for generators: a generator that also implements `start / advance / preview / fork /
keep / finish` (`SteppingGenerator`) supports *step control*, so a search strategy can drive it
while images are being made (prune, branch, resample). `supports_step_control(g)` tells. One that
also implements `start_mixed(request, mixes)` can start from given initial noise (noise search);
`supports_initial_noise(g)` tells.

Search strategies: a strategy class that defines

    search(self, problem: SearchProblem, ctx: harness.search.context.SearchContext) -> SearchResult

is a *search* strategy (`SearchStrategy`; `is_search_strategy(cls)` tells): `stepwise run --strategy
NAME --budget B` calls it once per GenEval sample with a context holding the stepping generator,
the run's verifiers and a compute ledger that the harness keeps (`harness.search`). A strategy with
only `select_key` stays a selection rule; `prepare` composes with both.

Fair protocol: a plug-in class (strategy, verifier or generator) that reads the benchmark's
structured metadata (task tag, include/exclude clauses) declares `reads_metadata: ClassVar[bool] =
True`; searches hand the metadata only to plug-ins that declare it (`SearchProblem.metadata`, a
verifier's `metadata=` keyword, `GenerationRequest.metadata`), record who did, and the leaderboard
marks such entries. `GenerationRequest.feedback` (`Feedback`: a previous image and a text about it)
is for generators that declare `accepts_feedback: ClassVar[bool] = True` (self-correcting models);
others never get one.

The harness owns everything around them: caching (keyed on plug-in id, canonical params, prompt
and seed), batching across prompts, storage and statistics. A plug-in is a *class*; the harness
builds it as `cls(params)` where `params` is an instance of the class's own `Params`, a frozen
dataclass whose fields say what can be set:

    @dataclass(frozen=True, kw_only=True)   # kw_only: required fields may follow defaulted ones
    class Params:
        model: str = param(help="Weights: a local folder or a hub id in the HF cache.")
        steps: int = param(50, help="Denoising steps.")
        guidance: float = param(7.5, help="Classifier-free guidance scale.")

`parse_params(Params, {"steps": "30"})` validates a run spec's or CLI's values against it and
`canonical_json(params)` is the stable text that goes into cache keys and run ids.

Nothing heavy is imported here (PIL only for type checking): the registry and `stepwise list`
import this module.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Union, runtime_checkable

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "Cost",
    "Feedback",
    "GenerationRequest",
    "GenerationResult",
    "Generator",
    "NoiseMix",
    "ParamInfo",
    "ParamsError",
    "SearchProblem",
    "SearchResult",
    "SearchStrategy",
    "SteppingGenerator",
    "Strategy",
    "Trajectories",
    "Verifier",
    "VerifierScore",
    "accepts_feedback",
    "canonical_json",
    "check_params_class",
    "is_search_strategy",
    "param",
    "params_schema",
    "parse_params",
    "reads_metadata",
    "supports_initial_noise",
    "supports_step_control",
]


# ---------------------------------------------------------------------------------------------
# data passed across the interfaces


@dataclass(frozen=True)
class Cost:
    """Compute spent on a call; adds up across calls (`a + b`). Report what you know, leave 0 otherwise."""

    forward_passes: int = 0  # network evaluations (NFE); one batched pass counts once
    tokens: int = 0  # tokens generated or read by autoregressive models
    seconds: float = 0.0  # wall-clock time of the call

    def __add__(self, other: Cost) -> Cost:
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(self.forward_passes + other.forward_passes, self.tokens + other.tokens,
                    self.seconds + other.seconds)


@dataclass(frozen=True)
class Feedback:
    """What a self-correcting generator may use to make its next attempt: its previous image and a
    judge's text about it (e.g. "no: the cat is missing its second ear")."""

    image: Image
    text: str


@dataclass(frozen=True)
class GenerationRequest:
    """Generate `len(seeds)` candidates for one prompt, candidate i from `seeds[i]`.

    The same (plug-in, params, prompt, seed) must give the same image: the harness caches on it.
    """

    prompt: str
    seeds: tuple[int, ...]  # one per candidate; distinct seeds give independent samples
    metadata: Mapping[str, Any] = field(default_factory=dict)  # the suite's record (tag, include, ...)
    previews: bool = False  # also return intermediate step previews (some verifier needs them)
    # Where the candidates sit in the suite: prompt i of the suite, sample k of its pool. Models
    # ignore these (the seeds carry the randomness); generators that *read* images made elsewhere
    # (`folder`) use them to find files. None / () when the caller has no suite position.
    prompt_index: int | None = None
    sample_indices: tuple[int, ...] = ()
    # A previous attempt and a judge's text about it, for generators that declare
    # `accepts_feedback = True` (searches such as `reflect` send it; pools never do).
    feedback: Feedback | None = None

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("a GenerationRequest needs at least one seed")
        bad = [s for s in self.seeds if not isinstance(s, int) or isinstance(s, bool)]
        if bad:
            raise ValueError(f"seeds must be integers, got {bad!r}")
        if self.sample_indices and len(self.sample_indices) != len(self.seeds):
            raise ValueError(f"{len(self.sample_indices)} sample indices for {len(self.seeds)} seeds")

    @property
    def n_candidates(self) -> int:
        return len(self.seeds)


@dataclass(frozen=True)
class GenerationResult:
    """The candidates of one request, in seed order."""

    images: list[Image]  # final images, one per seed
    previews: list[list[Image]]  # per candidate, the step previews in step order ([] each when not asked)
    cost: Cost = Cost()


@dataclass(frozen=True)
class VerifierScore:
    """A verifier's judgement of one candidate; higher is better."""

    score: float
    step_scores: tuple[float, ...] = ()  # per preview step (process / potential reward models)
    cost: Cost = Cost()
    # What the score was made of, stored with it (JSON-able): e.g. PARM's clear step, potential
    # decision and probabilities, or an ORM's P("no") and answer token.
    details: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# the three plug-in interfaces


@runtime_checkable
class Generator(Protocol):
    """A text-to-image model. Built as `cls(params)`; load weights in `__init__`, not at import."""

    Params: ClassVar[type]  # frozen dataclass of the generator's settings
    description: ClassVar[str]  # one line for `stepwise list`

    def __init__(self, params: Any) -> None:
        """`params` is an instance of `Params` (from `parse_params`)."""
        ...

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        """One result per request, same order; the plug-in may batch across requests as it likes."""
        ...


class Trajectories(Protocol):
    """A batch of partly generated images of ONE prompt, made and owned by a stepping generator.

    Rows are numbered 0..len(traj)-1; `fork` appends rows and `keep` renumbers them. What a row
    holds (tokens, KV cache, latents, scheduler state, its random stream) is the generator's
    business; the harness and search strategies only read what is declared here.
    """

    request: GenerationRequest  # the prompt (and its metadata) the trajectories were started for

    def __len__(self) -> int:
        """Rows alive now."""
        ...

    def seed(self, row: int) -> int:
        """The seed row `row` was started or last forked with."""
        ...

    def steps_done(self, row: int) -> int:
        """Steps row `row` has taken, 0 (just started) .. the generator's `total_steps` (complete)."""
        ...


@runtime_checkable
class SteppingGenerator(Generator, Protocol):
    """Optional extension of `Generator`: generation that a search strategy drives step by step.

    A generator that implements these methods (besides `generate`) supports *step control*; the
    harness checks with `supports_step_control(obj)` and refuses a search strategy on any other
    (e.g. `folder`, which only reads finished images). All methods work on a batch of rows at once
    (one batched forward pass per step for the rows given) and change `traj` in place.

    The invariant that lets pools and searches share one sampler: `start` then `advance` (any
    grouping of rows and steps) up to `total_steps`, or `finish`, with no `fork`, gives row i the
    very image `generate()` gives for seed `request.seeds[i]`; and a row's result never depends on
    the other rows of its batch. The harness, not the generator, counts the compute spent (it
    wraps these calls: candidate-steps advanced, batched calls, previews decoded, seconds).
    """

    total_steps: int  # steps from the start to a finished image (MaskGIT steps, image tokens, denoising steps)

    def start(self, request: GenerationRequest) -> Trajectories:
        """One row per seed of `request`, in seed order, each at step 0."""
        ...

    def advance(self, traj: Trajectories, rows: Sequence[int], steps: int = 1) -> None:
        """Take `steps` more steps on each of `rows` (batched). Past `total_steps` is a ValueError."""
        ...

    def preview(self, traj: Trajectories, rows: Sequence[int]) -> list[Image]:
        """The current guess of each row's final image, taking no step: MaskGIT's full prediction of
        the last step decoded, an autoregressive model's partial canvas, a diffusion model's x0
        prediction. A row at step 0 has none (ValueError). At `total_steps` it is the final image."""
        ...

    def fork(self, traj: Trajectories, row: int, seed: int) -> int:
        """Append a copy of row `row`'s state that draws fresh randomness from `seed` from here on;
        returns the new row's index. A generator whose remaining steps draw no randomness (a
        deterministic sampler) raises ValueError saying so: its fork would be a copy."""
        ...

    def keep(self, traj: Trajectories, rows: Sequence[int]) -> None:
        """Keep only `rows`, in that order: row j becomes old row `rows[j]`. Dropping a row prunes it
        (it takes no more steps); naming a row twice duplicates it, random stream included (use
        `fork` for a copy that continues differently)."""
        ...

    def finish(self, traj: Trajectories, rows: Sequence[int]) -> list[Image]:
        """Take each of `rows` to `total_steps` (the harness counts those steps) and return their
        final images, in `rows` order."""
        ...


def supports_step_control(generator: Any) -> bool:
    """Whether a generator (class or instance) implements the `SteppingGenerator` methods."""
    return all(callable(getattr(generator, name, None))
               for name in ("start", "advance", "preview", "fork", "keep", "finish"))


# One row's initial noise as a mix of the noises seeds draw: ((seed, weight), ...), i.e.
# sum(weight * noise(seed)). Weights whose squares sum to 1 over distinct seeds keep the mix a draw of
# the same Gaussian (the noises are independent), which is how noise search moves around a pivot.
NoiseMix = tuple[tuple[int, float], ...]


def supports_initial_noise(generator: Any) -> bool:
    """Whether a stepping generator can start rows from given initial noise (`start_mixed`).

    `start_mixed(request, mixes)` is `start(request)` except that row i's initial noise is `mixes[i]`
    (a `NoiseMix`) instead of its seed's draw; `request.seeds[i]` still seeds the row's later noise
    (stochastic samplers). The diffusers generator has it; Show-o and Janus (discrete tokens, no
    initial noise) do not."""
    return supports_step_control(generator) and callable(getattr(generator, "start_mixed", None))


def reads_metadata(plugin: Any) -> bool:
    """Whether a plug-in (class or instance) declares `reads_metadata = True` (the fair protocol)."""
    return getattr(plugin, "reads_metadata", False) is True


def accepts_feedback(generator: Any) -> bool:
    """Whether a generator (class or instance) declares `accepts_feedback = True`."""
    return getattr(generator, "accepts_feedback", False) is True


@runtime_checkable
class Verifier(Protocol):
    """A reward model scoring the candidates of one prompt. Built as `cls(params)`.

    Optional extension (not a Protocol member, so that plug-ins without it still conform): a
    class attribute `needs_verdicts: ClassVar[bool] = True` makes the harness call

        score(prompt, images, previews, verdicts=[correct_0, correct_1, ...])

    with `verdicts[i]` GenEval's verdict (bool `correct`) of `images[i]` by the run's evaluator:
    computed before scoring for new candidates, read from the store for candidates judged
    earlier. Such a verifier's scores are stored per evaluator settings (the evaluator's key is
    part of their settings hash). Reference points use it (`oracle`); a real reward model must not.

    Optional declaration: `score_range: ClassVar[tuple[float, float]]`, the inclusive bounds of
    `VerifierScore.score` (e.g. `(0.0, 1.0)` for a probability; PARM's encoding `(-50.0, 2.0)`).
    The leaderboard refuses an entry whose stored scores leave the declared range of their verifier
    (`harness.submissions.consistency`), so a forged export cannot rewrite a probability as 1e308.
    A verifier without it (a third-party plug-in written before it existed) is checked for finite
    scores only, and its entries' pages say that its range was not checked. Every built-in declares it.

    Two more optional extensions, by the same rule:

    * `reads_scores: ClassVar[bool] = True` with a static method `score_inputs(params) -> tuple[str,
      ...]` (the verifiers it combines): the harness scores those first (they must be verifiers of
      the same run) and calls `score(prompt, images, previews, scores={name: [score_0, ...]})`, on
      every candidate of a prompt at once, again whenever the prompt's pool grows (its scores may
      depend on the whole pool); its settings hash includes the inputs' hashes. `ensemble` is one.
    * `score_probability(score: float) -> float | None` (a static method): the probability that the
      candidate is correct (matches its prompt) which a stored score states, or None where the score
      states none. Declared by verifiers whose scores are, or hold, such a probability (`orm`,
      `prm`, `vqascore`: the score itself; `parm`: a survivor's ORM P("yes")); `stepwise analyze`
      measures their calibration from it. The inclusive bounds of `VerifierScore.score` are the
      separate `score_range` class attribute.
    """

    Params: ClassVar[type]
    description: ClassVar[str]
    needs_previews: ClassVar[bool]  # True: `score` gets step previews (process/potential reward models)

    def __init__(self, params: Any) -> None:
        """`params` is an instance of `Params` (from `parse_params`)."""
        ...

    def score(self, prompt: str, images: list[Image],
              previews: list[list[Image]] | None) -> list[VerifierScore]:
        """One score per image, same order. `previews[i]` are image i's step previews, or None
        when `needs_previews` is False."""
        ...


@runtime_checkable
class Strategy(Protocol):
    """A selection rule over a candidate pool: best-of-n keeps the candidate with the highest key.

    Built as `cls(params)`. Because selection is an argmax of a per-candidate key, the harness
    computes the exact expected accuracy for every n from one pool (see `harness.scaling`).

    Optional extension (not a Protocol member): `prepare(self, context) -> Preparation`, a stage
    that trains the generator before `stepwise run --strategy NAME` generates the pool with it
    (see the module docstring and `harness.preparation`).
    """

    Params: ClassVar[type]
    description: ClassVar[str]
    verifiers: tuple[str, ...]  # names of the verifiers whose scores `select_key` reads

    def __init__(self, params: Any) -> None:
        """`params` is an instance of `Params` (from `parse_params`)."""
        ...

    def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
        """Per-candidate keys for one prompt from `scores[verifier][candidate]`; ties are allowed."""
        ...


@dataclass(frozen=True)
class SearchProblem:
    """One GenEval sample for a search strategy: make ONE image of `prompt` within `budget`.

    `budget` B allows at most the generator compute of best-of-B: B x `total_steps` candidate-steps
    (NFE) for this sample (`ctx.max_nfe`); each strategy says how it spends it (its paths, particles,
    rounds). `metadata` is the suite's record (tag, include, exclude) for a strategy that declares
    `reads_metadata = True`, and {} for every other.
    """

    prompt: str
    prompt_index: int  # position in the suite
    sample_index: int  # 0..samples-1: which of the prompt's GenEval images this is
    budget: int
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SearchResult:
    """A search's answer for one sample: the image, what it was made from, and what to record."""

    image: Image
    # The prompt the image was generated from, when a strategy rewrote it (None: the original).
    # GenEval judges the image against the original prompt's record either way.
    prompt: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)  # JSON-able, stored with the pick


@runtime_checkable
class SearchStrategy(Protocol):
    """A strategy that acts while images are made: drives a stepping generator and verifiers.

    Built as `cls(params)`. `search` is called once per GenEval sample (`SearchProblem`) with a
    `harness.search.context.SearchContext`: `ctx.generator` (a `SteppingGenerator`), `ctx.verifiers`
    (the run's verifiers by name, batched: `score(prompt, images, previews)` and any public method
    of the plug-in, e.g. PARM's `clarity` / `potential` / `outcome`), `ctx.seeds(k)` (the sample's
    candidate seeds, those of its pool candidates), `ctx.fresh_seed()` (for forks), `ctx.note(...)`
    (trace events) and `ctx.ledger` (the compute spent so far, kept by the harness). Optional class
    attributes: `reads_metadata` (see the module docstring).
    """

    Params: ClassVar[type]
    description: ClassVar[str]
    verifiers: tuple[str, ...]  # names of the verifiers `search` calls (the run loads them)

    def __init__(self, params: Any) -> None:
        """`params` is an instance of `Params` (from `parse_params`)."""
        ...

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        """One image for `problem`, within `problem.budget` (the harness refuses more compute)."""
        ...


def is_search_strategy(strategy: Any) -> bool:
    """Whether a strategy (class or instance) defines `search` (else it is a selection rule)."""
    return callable(getattr(strategy, "search", None))


# ---------------------------------------------------------------------------------------------
# parameters


def param(default: Any = dataclasses.MISSING, *, help: str) -> Any:
    """A `Params` field with a one-line help text (shown by `stepwise list --load`).

    Leave `default` out for a required parameter. Defaults must be immutable (use tuples).
    """
    return field(default=default, metadata={"help": help})


class ParamsError(ValueError):
    """Run-spec values that do not fit a plug-in's `Params`; `keys` names the offending ones."""

    def __init__(self, message: str, keys: Sequence[str]) -> None:
        super().__init__(message)
        self.keys = tuple(keys)


@dataclass(frozen=True)
class ParamInfo:
    name: str
    type: str
    default: Any  # dataclasses.MISSING when required
    help: str

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def check_params_class(params_cls: type) -> None:
    if not (isinstance(params_cls, type) and dataclasses.is_dataclass(params_cls)):
        raise TypeError(f"{params_cls!r} is not a dataclass; a plug-in's Params must be a frozen dataclass")
    if not params_cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        raise TypeError(f"{params_cls.__qualname__} must be a frozen dataclass (@dataclass(frozen=True))")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return tp.__name__
    return str(tp).replace("typing.", "")


def params_schema(params_cls: type) -> list[ParamInfo]:
    """The fields of a `Params` class, in declaration order."""
    check_params_class(params_cls)
    hints = typing.get_type_hints(params_cls)
    out = []
    for f in dataclasses.fields(params_cls):
        default = f.default
        if default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        out.append(ParamInfo(f.name, _type_name(hints[f.name]), default, str(f.metadata.get("help", ""))))
    return out


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_NONE = {"none", "null"}


def _convert(value: Any, tp: Any) -> Any:
    """`value` as type `tp`; strings (from the command line) are parsed, other values checked.

    Raises ValueError with a short reason.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if type(None) in args and (value is None or (isinstance(value, str) and value.strip().lower() in _NONE)):
            return None
        for arg in args:
            if arg is not type(None):
                try:
                    return _convert(value, arg)
                except ValueError:
                    pass
        raise ValueError(f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and not isinstance(choice, str) and value == str(choice)):
                return choice
        raise ValueError(f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin is tuple:
        items = [s.strip() for s in value.split(",") if s.strip()] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0]) for v in items)
        if args and len(args) != len(items):
            raise ValueError(f"expected {len(args)} items, got {len(items)}")
        return tuple(_convert(v, a) for v, a in zip(items, args or [Any] * len(items), strict=True))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError(f"expected a boolean (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ValueError(f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ValueError(f"expected a string, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ValueError(f"expected one of {', '.join(repr(m.value) for m in tp)}, got {value!r}") from None
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, str | PurePath):
            return tp(value)
        raise ValueError(f"expected a path, got {value!r}")
    raise ValueError(f"parameters of type {_type_name(tp)} are not supported")


def parse_params(params_cls: type, values: Mapping[str, Any], *, owner: str = "") -> Any:
    """Build `params_cls` from a run spec's or the command line's values, checking every key.

    Strings are parsed into the field's type (int, float, bool, str, Path, Enum, Literal,
    `X | None`, `tuple[X, ...]` as comma-separated text); other values must already have it.
    Raises ParamsError naming every unknown, missing or ill-typed key at once.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Params:
    ...     steps: int = param(50, help="Denoising steps.")
    >>> parse_params(Params, {"steps": "30"})
    Params(steps=30)
    """
    check_params_class(params_cls)
    where = f"{owner}: " if owner else ""
    hints = typing.get_type_hints(params_cls)
    fields = {f.name: f for f in dataclasses.fields(params_cls) if f.init}
    problems: list[str] = []
    bad_keys: list[str] = []
    unknown = sorted(set(values) - set(fields))
    for key in unknown:
        bad_keys.append(key)
        problems.append(f"unknown parameter {key!r}")
    if unknown:
        problems.append(f"accepted: {', '.join(fields) or '(none)'}")
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                bad_keys.append(name)
                problems.append(f"missing required parameter {name!r}")
            continue
        try:
            kwargs[name] = _convert(values[name], hints[name])
        except ValueError as err:
            bad_keys.append(name)
            problems.append(f"parameter {name!r}: {err}")
    if problems:
        raise ParamsError(where + "; ".join(problems), bad_keys)
    return params_cls(**kwargs)


def _jsonable(value: Any, path: str) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{path}: {value!r} has no canonical JSON form")
        return value
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, path)
    if isinstance(value, PurePath):
        return value.as_posix()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name), f"{path}.{f.name}") for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{path}: mapping keys must be strings")
        return {k: _jsonable(v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{path}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{path}: {type(value).__name__} has no canonical JSON form")


def canonical_json(params: Any) -> str:
    """The one JSON text of a `Params` instance: sorted keys, no spaces, tuples as lists.

    Equal params give equal text, so its sha256 can key caches and name runs. Types without an
    unambiguous JSON form (and NaN/inf) raise instead of being stringified.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Params:
    ...     steps: int = 50
    ...     seeds: tuple[int, ...] = (1, 2)
    >>> canonical_json(Params())
    '{"seeds":[1,2],"steps":50}'
    """
    if not (dataclasses.is_dataclass(params) and not isinstance(params, type)):
        raise TypeError(f"canonical_json expects a Params instance, got {type(params).__name__}")
    return json.dumps(_jsonable(params, type(params).__name__), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)
