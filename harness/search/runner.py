"""`stepwise run --strategy NAME --budget B`: a search strategy over the suite, judged and stored.

    config = RunConfig(generator="showo", params={...}, pool=1, verifiers=(), evaluator=spec, db=..., out=...)
    summary = run_search(config, SearchConfig("parm-prune", {}, budgets=(4, 8)))

For every prompt of this rank's shard and every budget, the strategy's `search` runs once per
GenEval sample (`samples`, 4 by default) with a fresh `SearchContext` (`harness.search.context`):
the metered stepping generator, the verifiers the strategy names (and the run's --verifier ones),
the sample's candidate seeds. Each pick is saved as OUT/images/<sha256>.png (previews the search
saw too), judged by the run's suite evaluator (GenEval's detector evaluator, or another suite's, e.g.
GenEval 2's Soft-TIFA, whose verdicts carry the per-image score; a verdict stored for the same image of the same
prompt, from a pool candidate or another search, is reused: the store is the cache), and a
prompt's picks, traces, ledgers and verdicts go into the store in ONE transaction. So a run killed
at any moment resumes at the first prompt without picks, and the rows are those of an
uninterrupted run: a sample's seeds depend only on (run seed, prompt index, sample), and a
strategy is deterministic given them. Under torchrun rank R takes the prompts with index % K == R.

The run row is the generator's (suite, generator, params, seed), the same a pool run of that
generator has: `stepwise curve --run RUN` shows the run's pool rows and its searches side by side.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.runner import RunError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from harness.runner import LoadedVerifier, RunConfig, Shard

__all__ = ["LoadedSearch", "NotSearch", "SampleSearch", "SearchConfig", "SearchSummary", "load_search_strategy",
           "run_search", "search_sample"]


class NotSearch(RunError):
    """The strategy has no `search`: it is a selection rule (or only trains, with `prepare`)."""


@dataclass(frozen=True)
class SearchConfig:
    strategy: str
    params: Mapping[str, Any] = field(default_factory=dict)
    budgets: Sequence[int] = ()
    samples: int = 4


@dataclass
class SearchSummary:
    run_id: str
    searches: list[tuple[int, str, int]] = field(default_factory=list)  # (search id, settings hash, budget)
    prompts: int = 0  # prompts of this shard
    written: int = 0  # (prompt, budget) pairs that needed work
    picks: int = 0
    judged: int = 0  # picks judged by the evaluator now
    reused: int = 0  # picks whose verdict was already stored (a pool candidate, another search)


@dataclass(frozen=True)
class LoadedSearch:
    """A search strategy built from its params, with what names it."""

    name: str
    cls: Any
    instance: Any
    canonical: dict[str, Any]  # its params as canonical JSON values
    provenance: dict[str, str]
    verifiers: tuple[str, ...]


def search_strategies() -> list[str]:
    """Registered strategies with `search` (those that fail to load are left out)."""
    from harness import registry
    from harness.plugins import is_search_strategy

    out = []
    for name in registry.strategies.names():
        try:
            if is_search_strategy(registry.strategies.get(name)):
                out.append(name)
        except registry.PluginError:
            continue
    return out


def load_search_strategy(name: str, values: Mapping[str, Any]) -> LoadedSearch:
    """Build search strategy `name` from `values`; RunError when it cannot be (NotSearch: no `search`)."""
    from harness import registry
    from harness.plugins import canonical_json, is_search_strategy
    from harness.runner import _plugin, instantiate

    try:
        found = registry.strategies.get(name)
    except registry.PluginError as err:
        raise RunError(str(err)) from None
    if not is_search_strategy(found):
        raise NotSearch(f"strategy {name!r} has no search(): it is not a search strategy; search strategies: "
                        f"{', '.join(search_strategies()) or 'none installed'}")
    cls, params, provenance = _plugin("strategy", name, values)
    instance = instantiate("strategy", name, cls, params)
    verifiers = tuple(getattr(instance, "verifiers", ()) or ())
    if not all(isinstance(v, str) and v for v in verifiers):
        raise RunError(f"strategy {name!r}: verifiers must be names, got {verifiers!r}")
    return LoadedSearch(provenance["name"], cls, instance, json.loads(canonical_json(params)), provenance, verifiers)


def check_budgets(budgets: Sequence[int]) -> list[int]:
    if not budgets:
        raise RunError("a search strategy needs --budget B (at most best-of-B's generator compute per sample)")
    bad = [b for b in budgets if not isinstance(b, int) or isinstance(b, bool) or b < 1]
    if bad:
        raise RunError(f"--budget must be an integer >= 1, got {bad[0]!r}")
    return sorted(set(budgets))


# ---------------------------------------------------------------------------------------------
# one sample


@dataclass
class _Pick:
    sample: int
    path: str
    sha256: str
    prompt_text: str | None
    ledger: dict[str, Any]
    events: list[dict[str, Any]]
    details: dict[str, Any]


@dataclass
class _Setup:
    """What every sample's search of one run shares."""

    config: RunConfig
    search: SearchConfig
    strategy: LoadedSearch
    verifiers: list[LoadedVerifier]
    images_dir: Path
    models: Any  # GenEval's Models, for a GenEval-judged suite (else None)
    generator: Callable[[], Any]
    suite_evaluator: Any = None  # another suite's evaluator (`harness.suites.SuiteEvaluator`), else None

    @property
    def evaluator_name(self) -> str:
        return str(self.suite_evaluator.name if self.suite_evaluator is not None else self.config.evaluator.backend)

    @property
    def evaluator_key(self) -> str:
        return str(self.suite_evaluator.key() if self.suite_evaluator is not None else self.config.evaluator.key())


def _save(images_dir: Path) -> Callable[[Any], str]:
    from harness.runner import save_png

    def save(image: Any) -> str:
        return save_png(image, images_dir)[1]

    return save


def _checked(value: Any, what: str, where: str) -> Any:
    """`value` as the JSON it will read back as; RunError naming the strategy and sample otherwise."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as err:
        raise RunError(f"{where}: {what} is not JSON-able ({err})") from None


def _verdicts_of(setup: _Setup, metadata: dict[str, Any]) -> Callable[[list[Any]], list[bool]]:
    """GenEval's verdicts of images, for a verifier that needs them (the oracle), by the run's evaluator."""
    from harness.runner import Item, _evaluate, save_png
    from harness.runner import _judge as _judge_items

    def verdicts(images: list[Any]) -> list[bool]:
        items = []
        for k, image in enumerate(images):
            path, digest = save_png(image, setup.images_dir)
            items.append(Item(k, str(path), digest, []))
        if setup.suite_evaluator is not None:
            return [bool(v.correct) for _, v in _judge_items(setup.suite_evaluator, items, metadata,
                                                               setup.config.batch_size)]
        judged = _evaluate(setup.models, setup.config.evaluator, items, metadata, setup.config.batch_size)
        return [bool(v.correct) for _, _, v in judged]

    return verdicts


@dataclass
class SampleSearch:
    """One sample's search as `search_sample` returns it: the result, its ledger and its trace."""

    result: Any  # harness.plugins.SearchResult
    ledger: Any  # harness.search.ledger.Ledger
    events: list[dict[str, Any]]
    sha256: str  # of the picked image's PNG (saved in images_dir)


def search_sample(strategy: Any, generator: Any, verifiers: Sequence[LoadedVerifier], *, prompt: str,
                  prompt_index: int, sample: int, budget: int, run_seed: int, images_dir: Path,
                  metadata: Mapping[str, Any] | None = None, samples: int = 4,
                  verdicts_of: Callable[[list[Any]], list[bool]] | None = None) -> SampleSearch:
    """Run `strategy.search` for one GenEval sample, in a fresh context around already-built plug-ins.

    What `stepwise run --strategy` does per sample (the runner adds judging and storing); tests and
    benchmarks call it directly. metadata: the suite's record, handed only to plug-ins that declare
    `reads_metadata`. Raises BudgetExceeded past the budget, and what the plug-ins raise.
    """
    from harness.plugins import SearchProblem, SearchResult, reads_metadata
    from harness.search.context import SearchContext
    from harness.search.ledger import Ledger, MeteredGenerator, MeteredVerifier, Trace

    record = dict(metadata or {"prompt": prompt})
    images_dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger()
    trace = Trace(_save(images_dir))
    metered = MeteredGenerator(generator, ledger, trace, max_nfe=budget * int(generator.total_steps))
    meters = {v.name: MeteredVerifier(v.name, v.instance, ledger, trace, needs_previews=v.needs_previews,
                                      needs_verdicts=v.needs_verdicts,
                                      metadata=record if reads_metadata(v.instance) else None,
                                      verdicts_of=verdicts_of)
              for v in verifiers}
    ctx = SearchContext(generator=metered, verifiers=meters, ledger=ledger, trace=trace, budget=budget,
                        run_seed=run_seed, prompt_index=prompt_index, sample=sample, samples=samples)
    problem = SearchProblem(prompt, prompt_index, sample, budget, record if reads_metadata(strategy) else {})
    started = time.perf_counter()
    result = strategy.search(problem, ctx)
    ledger.seconds = time.perf_counter() - started
    if not isinstance(result, SearchResult):
        raise TypeError(f"search() returned {type(result).__name__}, not a harness.plugins.SearchResult")
    digest = trace.sha(result.image)
    trace.add("pick", image=digest, path=trace.where.get(digest, (None, None))[0])
    return SampleSearch(result, ledger, trace.events, digest)


def _solve(setup: _Setup, index: int, metadata: dict[str, Any], sample: int, budget: int) -> _Pick:
    """One sample's search (`search_sample`), its problems as RunErrors naming the strategy and sample."""
    from harness.search.ledger import BudgetExceeded

    where = f"strategy {setup.strategy.name!r}, prompt {index:05d} sample {sample}, budget {budget}"
    try:
        done = search_sample(setup.strategy.instance, setup.generator(), setup.verifiers, prompt=metadata["prompt"],
                             prompt_index=index, sample=sample, budget=budget, run_seed=setup.config.seed,
                             images_dir=setup.images_dir, metadata=metadata, samples=setup.search.samples,
                             verdicts_of=_verdicts_of(setup, metadata))
    except BudgetExceeded as err:
        raise RunError(f"{where}: {err}") from None
    except (ValueError, TypeError) as err:  # a plug-in refused what the strategy asked (bad rows, ...)
        raise RunError(f"{where}: {err}") from err
    result = done.result
    if result.prompt is not None and not isinstance(result.prompt, str):
        raise RunError(f"{where}: SearchResult.prompt must be a string or None")
    events = _checked(done.events, "its trace (ctx.note fields)", where)
    details = _checked(dict(result.details), "SearchResult.details", where)
    return _Pick(sample, str((setup.images_dir / f"{done.sha256}.png").resolve()), done.sha256,
                 result.prompt if result.prompt != metadata["prompt"] else None, done.ledger.to_json(), events,
                 details)


def _judge(engine: Engine, setup: _Setup, prompt_id: int, metadata: dict[str, Any],
           picks: list[_Pick]) -> tuple[dict[str, dict[str, Any]], int, int]:
    """{sha256: verdict} of the picks: stored ones reused, the rest judged now; (verdicts, judged, reused)."""
    from sqlalchemy.orm import Session

    from harness.geneval.detections import detections_to_json
    from harness.runner import Item, _evaluate, _verdict_details
    from harness.runner import _judge as _judge_items
    from harness.search.store import reusable_verdicts

    shas = [p.sha256 for p in picks]
    with Session(engine) as s:
        known = reusable_verdicts(s, prompt_id, shas, setup.evaluator_name, setup.evaluator_key)
    todo = {p.sha256: p for p in picks if p.sha256 not in known}
    reused = sum(1 for p in picks if p.sha256 in known)
    items = [Item(k, p.path, p.sha256, []) for k, p in enumerate(todo.values())]
    if setup.suite_evaluator is not None:  # the pool's own judging: batched, each verdict checked
        for item, verdict in _judge_items(setup.suite_evaluator, items, metadata, setup.config.batch_size):
            known[item.sha256] = {"correct": bool(verdict.correct), "reason": verdict.reason,
                                  "details": _verdict_details(verdict, item), "detections": None,
                                  "score": float(verdict.score)}
        return known, len(picks) - reused, reused
    spec = setup.config.evaluator
    fresh = _evaluate(setup.models, spec, items, metadata, setup.config.batch_size) if items else []
    for item, detections, verdict in fresh:
        known[item.sha256] = {"correct": bool(verdict.correct), "reason": verdict.reason,
                              "details": dict(verdict.details), "detections": detections_to_json(detections),
                              "score": 1.0 if verdict.correct else 0.0}
    return known, len(picks) - reused, reused


# ---------------------------------------------------------------------------------------------
# the run


def run_search(config: RunConfig, search: SearchConfig, *, shard: Shard | None = None, engine: Engine | None = None,
               log: Callable[[str], None] | None = None) -> SearchSummary:
    """Run `search` over this shard's prompts for every budget; returns what was done (module docstring)."""
    from sqlalchemy.orm import Session

    from harness.geneval.evaluator import Models
    from harness.plugins import reads_metadata, supports_step_control
    from harness.runner import (
        Bars,
        Shard,
        _plugin,
        instantiate,
        load_verifiers,
        prepare,
        selected,
        suite_evaluator,
        suite_samples,
    )
    from harness.search.store import (
        NewPick,
        SearchSpec,
        add_picks,
        find_search,
        get_or_create_search,
        picked_prompts,
    )
    from harness.store import StoreError, open_store
    from harness.store.folders import relative_image_path

    budgets = check_budgets(list(search.budgets))
    # GenEval's evaluator (the run's detector flags), or the suite's own (GenEval 2: Soft-TIFA), built lazily.
    other_evaluator = suite_evaluator(config) if config.evaluator is None else None
    evaluator_key = other_evaluator.key() if other_evaluator is not None else config.evaluator.key()
    if search.samples < 1:
        raise RunError(f"--samples must be >= 1, got {search.samples}")
    shard = shard or Shard.from_env()
    gen_cls, gen_params, provenance = _plugin("generator", config.generator, config.params)
    if not supports_step_control(gen_cls):
        raise RunError(f"generator {config.generator!r} cannot be driven step by step (it has no start / advance / "
                       "preview / fork / keep / finish), so search strategy "
                       f"{search.strategy!r} cannot run on it; use a pool (`stepwise run --pool N`) and a selection "
                       "strategy (`stepwise curve --strategy`) instead")
    strategy = load_search_strategy(search.strategy, search.params)
    names = tuple(dict.fromkeys([*strategy.verifiers, *config.verifiers]))
    verifiers = load_verifiers(names, config.verifier_params, evaluator_key)
    samples = suite_samples(config)
    indices = selected(config, len(samples), shard)
    reads = tuple([f"strategy:{strategy.name}"] if reads_metadata(strategy.cls) else []) + tuple(
        f"verifier:{v.name}" for v in verifiers if reads_metadata(v.instance)) + tuple(
        [f"generator:{config.generator}"] if reads_metadata(gen_cls) else [])
    built: list[Any] = []

    def generator() -> Any:  # built on first use: a run with nothing left to do loads no weights
        if not built:
            built.append(instantiate("generator", config.generator, gen_cls, gen_params))
        return built[0]

    own_engine = engine is None
    if engine is None:
        try:
            engine = open_store(config.db)
        except StoreError as err:
            raise RunError(str(err)) from None
    try:
        run_id, prompt_ids = prepare(engine, config, samples, provenance, gen_params)
        summary = SearchSummary(run_id, prompts=len(indices))
        todo: list[tuple[int, int, int]] = []  # (search id, budget, prompt index)
        with Session(engine) as s, s.begin():
            for budget in budgets:
                spec = SearchSpec(strategy.name, strategy.provenance["package"], strategy.provenance["version"],
                                  strategy.canonical, {v.name: v.settings_hash for v in verifiers}, search.samples,
                                  budget, 0, reads)
                row = find_search(s, run_id, spec.settings_hash, budget)
                if row is None:  # a new search: its row records the generator's steps per image
                    spec = dataclasses.replace(spec, total_steps=int(generator().total_steps))
                    row = get_or_create_search(s, run_id, spec)
                summary.searches.append((row.id, row.settings_hash, budget))
                done = picked_prompts(s, row.id)
                todo += [(row.id, budget, i) for i in indices if prompt_ids[i] not in done]
        summary.written = len(todo)
        images_dir = config.out / "images"
        images_dir.mkdir(parents=True, exist_ok=True)
        setup = _Setup(config, search, strategy, verifiers, images_dir,
                       Models(config.evaluator) if other_evaluator is None else None, generator, other_evaluator)
        bars = Bars({"search": len(todo)})
        try:
            for search_id, budget, index in todo:
                metadata = dict(samples[index])
                picks = [_solve(setup, index, metadata, k, budget) for k in range(search.samples)]
                verdicts, judged, reused = _judge(engine, setup, prompt_ids[index], metadata, picks)
                with Session(engine) as s, s.begin():  # one transaction per prompt (and budget)
                    add_picks(s, search_id, prompt_ids[index], [  # paths relative to the run folder, as pools'
                        NewPick(p.sample, relative_image_path(p.path, config.out), p.sha256, p.ledger, p.events,
                                p.details, p.prompt_text,
                                verdicts[p.sha256]["correct"], verdicts[p.sha256]["reason"],
                                verdicts[p.sha256]["details"], verdicts[p.sha256]["detections"],
                                verdicts[p.sha256]["score"]) for p in picks],
                              backend=setup.evaluator_name, settings_hash=evaluator_key)
                summary.picks += len(picks)
                summary.judged += judged
                summary.reused += reused
                bars.update("search", 1)
        finally:
            bars.close()
        return summary
    finally:
        if own_engine:
            engine.dispose()
