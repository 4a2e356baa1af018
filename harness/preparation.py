"""A strategy's prepare stage: training that makes the generator checkpoint a run then evaluates.

Most strategies are selection rules over a stored pool (`stepwise curve --strategy`). A strategy
class may also define the optional method (not a `Strategy` Protocol member, like a verifier's
`needs_verdicts`)

    prepare(self, context: PrepareContext) -> Preparation

which trains (DPO, iterative DPO: `strategies.alignment`) and returns the generator params to run
with, e.g. `{**context.params, "model": "<checkpoint>"}`. `stepwise run --strategy NAME` then:

1. builds the strategy from its params (`--strategy-param KEY=VALUE`, or a spec's `strategy_params`);
2. calls `prepare` with the run's generator, generator params, evaluator and seed, and a work
   folder (`work_folder`: OUT/prepare/NAME-HASH, unless the strategy's params name one). Training
   is resumable, and a finished checkpoint with the same settings is returned without training.
   Under torchrun (WORLD_SIZE > 1) `context.may_train` is False: a strategy must then find its
   checkpoint finished, or refuse (prepare first in one process);
3. hashes the checkpoint's content (`checkpoint_sha256`) and computes the run's id; when the store
   records that run with a checkpoint of other weights (retrained at the same path), it refuses
   before anything is written: the run's images came from the other weights;
4. records the link in the store's `preparations` table, with the run's row and before any of its
   candidates (so a run cut short cannot be resumed with other weights): run id, strategy, the
   sha256 of its canonical params, the params, checkpoint, checkpoint sha256 and the checkpoint's
   manifest. Re-running adds nothing (idempotent on run, strategy and settings hash);
5. runs as `stepwise run` does, with the returned params (the checkpoint is an ordinary `model`).

Params that only change selection (a best-of-n verifier), or that the work folder can grow to (a
round count), are listed in the class attribute `work_folder_ignores` and left out of the work
folder's name, so that settings differing only in them share one checkpoint, and so one run.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.runner import RunConfig, RunSummary, Shard
    from harness.store import NewPreparation

__all__ = [
    "NotPreparable",
    "Preparation",
    "PrepareContext",
    "PrepareError",
    "PreparedRun",
    "StrategyChoice",
    "checkpoint_sha256",
    "describe",
    "has_prepare",
    "load_strategy",
    "run_prepared",
    "work_folder",
]


class PrepareError(RuntimeError):
    """A prepare stage that cannot start or go on, with a one-line message meant for the user."""


class NotPreparable(PrepareError):
    """The strategy has no prepare stage: it is a selection rule, applied with `stepwise curve --strategy`."""


def _quiet(message: str) -> None:
    pass


@dataclass(frozen=True)
class PrepareContext:
    """What a prepare stage is told about the run it prepares for."""

    strategy: str  # the strategy's registry name
    generator: str  # the generator plug-in the run uses (and the strategy trains)
    params: Mapping[str, str]  # the generator's params as given (--param / the spec's [params])
    evaluator: EvaluatorSpec  # the run's GenEval evaluator (iterative DPO judges its own pools with it)
    seed: int  # the run's seed
    workdir: Path  # where to train unless the strategy's params say otherwise (see `work_folder`)
    log: Callable[[str], None] = _quiet  # progress lines for the user (stderr)
    may_train: bool = True  # False under torchrun: only a finished checkpoint may be used
    eval_batch_size: int = 8  # images per detector call, as the run's --batch-size


@dataclass(frozen=True)
class Preparation:
    """What a prepare stage made: the generator params to run with and the checkpoint behind them."""

    params: Mapping[str, str]  # the generator params of the run, e.g. {**context.params, "model": "<checkpoint>"}
    checkpoint: Path  # the folder the run's generator loads
    manifest: Mapping[str, Any]  # the checkpoint's stepwise-alignment.json
    kind: str  # what was made: "dpo", "iterative-dpo", ...
    reused: bool = False  # a finished checkpoint was found: nothing was trained by this call


def has_prepare(cls: Any) -> bool:
    """Whether a strategy class has the optional prepare stage."""
    return callable(getattr(cls, "prepare", None))


@dataclass(frozen=True)
class StrategyChoice:
    """A strategy built from its params, with the hashes that name its settings."""

    name: str  # canonical registry name
    instance: Any
    params: Any  # the parsed Params instance
    canonical: dict[str, Any]  # its canonical JSON, as a value
    settings_hash: str  # sha256 of `canonical_json(params)`


def load_strategy(name: str, values: Mapping[str, Any]) -> StrategyChoice:
    """Build strategy `name` from `values` (strings or TOML values), for `stepwise run`.

    PrepareError: unknown strategy, params that do not fit, a construction that fails;
    NotPreparable: a strategy without a prepare stage.
    """
    import json

    from harness import registry
    from harness.plugins import ParamsError, canonical_json, parse_params

    try:
        cls = registry.strategies.get(name)
        info = registry.strategies.info(name)
    except registry.PluginError as err:
        raise PrepareError(str(err)) from None
    if not has_prepare(cls):
        raise NotPreparable(
            f"strategy {info.name!r} has no prepare stage: it is a selection rule over a stored pool, applied with "
            f"`stepwise curve --run RUN_ID --strategy {info.name}`; `stepwise run --strategy` takes strategies "
            f"that train the generator first ({', '.join(preparable_strategies()) or 'none installed'})")
    try:
        params = parse_params(cls.Params, values, owner=f"strategy {info.name!r}")
    except ParamsError as err:
        raise PrepareError(str(err)) from None
    try:
        instance = cls(params)
    except (OSError, ValueError) as err:
        raise PrepareError(f"strategy {info.name!r}: {err}") from None
    text = canonical_json(params)
    return StrategyChoice(info.name, instance, params, json.loads(text), hashlib.sha256(text.encode()).hexdigest())


def preparable_strategies() -> list[str]:
    """Registered strategies with a prepare stage (those that fail to load are left out)."""
    from harness import registry

    out = []
    for name in registry.strategies.names():
        try:
            if has_prepare(registry.strategies.get(name)):
                out.append(name)
        except registry.PluginError:
            continue
    return out


def work_folder(out: Path, choice: StrategyChoice, generator: str, seed: int) -> Path:
    """OUT/prepare/NAME-HASH: HASH is 12 hex digits of the sha256 of what training depends on (the
    strategy's canonical params less its `work_folder_ignores`, the generator and the run seed)."""
    import json

    ignored = set(getattr(type(choice.instance), "work_folder_ignores", ()))
    training = {k: v for k, v in choice.canonical.items() if k not in ignored}
    text = json.dumps({"strategy": choice.name, "params": training, "generator": generator, "seed": seed},
                      sort_keys=True, separators=(",", ":"))
    return out / "prepare" / f"{choice.name}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def checkpoint_sha256(folder: Path) -> str:
    """The content hash of a checkpoint: sha256 over "<relative path>\\0<sha256 of its bytes>\\n" lines,
    sorted, of its config.json and its weight files (`harness.weights.weight_files`). Always read:
    a file's name never stands in for its content. PrepareError when the folder has no weights."""
    from harness.hashing import content_sha256
    from harness.weights import MissingWeightsError, weight_files

    if not folder.is_dir():
        raise PrepareError(f"{folder}: the prepared checkpoint is not a folder")
    try:
        files = weight_files(folder)
    except MissingWeightsError as err:
        raise PrepareError(str(err)) from None
    if not files:
        raise PrepareError(f"{folder}: the prepared checkpoint holds no weight files")
    if (folder / "config.json").is_file():
        files = [folder / "config.json", *files]
    lines = sorted(f"{path.relative_to(folder).as_posix()}\0{content_sha256(path)}\n" for path in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def describe(strategy: str, settings_hash: str, checkpoint: str, digest: str) -> str:
    """One line naming a run's prepared checkpoint (run's and curve's output)."""
    return (f"generator checkpoint {checkpoint} (sha256 {digest[:12]}…) prepared by strategy {strategy} "
            f"(settings {settings_hash[:12]}…)")


@dataclass
class PreparedRun:
    """What `run_prepared` did: the preparation, the run and the link recorded between them."""

    preparation: Preparation
    summary: RunSummary  # (or a search's SearchSummary, with run_with)
    link: NewPreparation
    recorded: bool  # the store's row is new (False: the same link was recorded before)
    config: RunConfig = field(repr=False)  # the run's configuration, with the prepared params


def _generator_params(params: Mapping[str, Any]) -> dict[str, str]:
    """The generator's params as strings (a spec's TOML may give numbers or booleans)."""
    def text(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        return value if isinstance(value, str) else str(value)

    return {k: text(v) for k, v in params.items()}


def run_prepared(config: RunConfig, strategy: str, values: Mapping[str, Any], *, shard: Shard | None = None,
                 log: Callable[[str], None] | None = None,
                 run_with: Callable[[RunConfig, Shard, Any], Any] | None = None) -> PreparedRun:
    """`stepwise run --strategy NAME`: prepare, run with the prepared params, record the link (module docstring).

    run_with(config, shard, engine): what runs with the prepared params instead of a pool run (a search
    strategy that also has a prepare stage: `harness.search.runner.run_search`); its result is the
    summary. PrepareError for what the user must fix (NotPreparable for a strategy without a prepare
    stage); RunError from the run itself.
    """
    from sqlalchemy.orm import Session

    from harness.runner import RunError, Shard, planned_run_id, register_run, run
    from harness.store import (
        NewPreparation,
        PreparationConflict,
        StoreError,
        add_preparation,
        check_preparation,
        open_store,
    )

    shard = shard or Shard.from_env()
    say = log or _quiet
    choice = load_strategy(strategy, values)
    context = PrepareContext(strategy=choice.name, generator=config.generator,
                             params=_generator_params(config.params), evaluator=config.evaluator, seed=config.seed,
                             workdir=work_folder(config.out, choice, config.generator, config.seed), log=say,
                             may_train=shard.world_size == 1, eval_batch_size=config.batch_size)
    try:
        preparation = choice.instance.prepare(context)
    except (OSError, ValueError) as err:  # missing files or weights, values the strategy refuses
        raise PrepareError(f"strategy {choice.name!r}: {err}") from err
    if not isinstance(preparation, Preparation):
        raise PrepareError(f"strategy {choice.name!r}: prepare() returned {type(preparation).__name__}, "
                           "not a harness.preparation.Preparation")
    run_config = dataclasses.replace(config, params=dict(preparation.params))
    checkpoint = str(preparation.checkpoint)
    digest = checkpoint_sha256(Path(preparation.checkpoint))
    run_id = planned_run_id(run_config)
    link = NewPreparation(choice.name, choice.settings_hash, choice.canonical, checkpoint, digest,
                          dict(preparation.manifest))
    try:
        engine = open_store(config.db)
    except StoreError as err:
        raise RunError(str(err)) from None
    try:
        try:
            with Session(engine) as s:  # before anything is written
                check_preparation(s, run_id, checkpoint, digest)
            # The link goes in before the first candidate: a run cut short and resumed after the
            # checkpoint was retrained at the same path is then refused, not silently mixed.
            if register_run(engine, run_config) != run_id:  # both use run_spec: a bug, not the user's
                raise RunError(f"the run was stored as another id than the planned {run_id}")
            with Session(engine) as s, s.begin():
                recorded = add_preparation(s, run_id, link)
        except PreparationConflict as err:  # (add_preparation: a concurrent writer recorded other weights)
            raise PrepareError(str(err)) from None
        if run_with is not None:
            summary = run_with(run_config, shard, engine)
        else:
            summary = run(run_config, shard=shard, engine=engine)
    finally:
        engine.dispose()
    return PreparedRun(preparation, summary, link, recorded, run_config)
