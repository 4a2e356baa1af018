"""`stepwise run`: generate a candidate pool, judge it with GenEval, score it with verifiers, store it all.

With `--strategy NAME` (a strategy with a prepare stage, e.g. `dpo`), the strategy first trains the
generator checkpoint (or finds it finished), the run generates with it, and the store records the
link between the run and the checkpoint (`harness.preparation`).

With `--strategy NAME --budget B` (a search strategy, e.g. `parm-prune`), the strategy makes one image
per GenEval sample while generating (`harness.search.runner`), at each budget given; a search
strategy with a prepare stage trains first and searches with the checkpoint.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from harness.commands.options import (
    THRESHOLD_FLAGS,
    options_from_flags,
    parse_pairs,
    parse_prompts,
    parse_verifier_params,
    threshold_options,
)

# Keys a TOML run spec may hold (the flags' names, with underscores); flags override them.
SPEC_KEYS = {
    "generator", "params", "suite", "per_task", "prompts", "pool", "verifiers", "verifier_params", "backend",
    "detector", "detector_config", "clip_arch", "clip_weights", "db", "out", "seed", "plugins", "batch_size",
    "device", "strategy", "strategy_params", "budget", "samples",
}
DEFAULTS: dict[str, Any] = {"suite": "geneval", "per_task": 100, "seed": 0, "backend": "mmdet",
                            "clip_arch": "ViT-L-14-quickgelu", "batch_size": 8}


def read_spec(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fp:
            spec = tomllib.load(fp)
    except OSError as err:
        raise click.ClickException(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise click.ClickException(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise click.ClickException(f"{path}: not valid TOML ({err})") from None
    except RecursionError:
        raise click.ClickException(f"{path}: not valid TOML (nested too deeply to read)") from None
    if not spec:
        raise click.ClickException(f"{path}: empty; a run spec gives at least generator and pool")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise click.ClickException(f"{path}: unknown key(s) {', '.join(unknown)}; "
                                   f"accepted: {', '.join(sorted(SPEC_KEYS))}")
    return spec


def merged(spec: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Spec values, then flags that were given on top; params tables merge key by key."""
    out = {**DEFAULTS, **spec}
    for key, value in flags.items():
        if value is None or value == () or value == {}:
            continue
        if key in ("params", "verifier_params", "strategy_params"):
            base = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dict(out.get(key, {})).items()}
            for k, v in value.items():
                base[k] = {**base.get(k, {}), **v} if isinstance(v, Mapping) else v
            out[key] = base
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def default_db(db: str | None, out: Path) -> str | None:
    """Under torchrun with no --db (and no $STEPWISE_DB), each rank writes OUT/stepwise-rank{R}.db."""
    if db or os.environ.get("STEPWISE_DB") or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return db
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    return f"sqlite:///{(out / f'stepwise-rank{rank}.db').resolve()}"


@click.command("run")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML run spec with the same fields (params and verifier_params as tables); flags override.")
@click.option("--generator", default=None, help="Generator plug-in name (see `stepwise list`).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Generator parameter. Repeatable.")
@click.option("--suite", default=None, help="Prompt suite [default: geneval].")
@click.option("--per-task", type=click.IntRange(min=0), default=None,
              help="Prompts per GenEval task after the 80 single objects [default: 100, GenEval's].")
@click.option("--prompts", "prompts_text", default=None, metavar="0..9,80",
              help="Work on these suite indices only (the run and its suite stay the same).")
@click.option("--pool", type=click.IntRange(min=1), default=None, help="Candidates per prompt (N_MAX).")
@click.option("--verifier", "verifiers", multiple=True, help="Verifier plug-in to score with. Repeatable.")
@click.option("--verifier-param", "verifier_params", multiple=True, metavar="V:KEY=VALUE",
              help="Parameter of verifier V. Repeatable.")
@click.option("--backend", type=click.Choice(["mmdet", "hf"]), default=None, help="GenEval detector [mmdet].")
@click.option("--detector", default=None, metavar="PATH|ID", help="Detector checkpoint (mmdet) or model (hf).")
@click.option("--detector-config", default=None, help="mmdet config file.")
@click.option("--clip-arch", default=None, help="open_clip architecture of the colour classifier.")
@click.option("--clip-weights", default=None, help="Local open_clip checkpoint.")
@click.option("--device", default=None, help="Device of the GenEval models [cuda if available].")
@threshold_options
@click.option("--db", default=None, help="SQLAlchemy URL of the store [$STEPWISE_DB or sqlite:///stepwise.db].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Run folder: images/<sha256>.png [stepwise-out].")
@click.option("--seed", type=int, default=None, help="Run seed; candidate seeds derive from it [0].")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Images per detector call [8].")
@click.option("--plugin", "plugins", multiple=True, metavar="PKG[==VER]",
              help="Allow (and require) this plug-in package. Repeatable.")
@click.option("--strategy", default=None, metavar="NAME",
              help="A strategy with a prepare stage (dpo, iterative-dpo): it trains the generator checkpoint "
                   "first (resumable; a finished one is reused), the run generates with it, the store links the two.")
@click.option("--strategy-param", "strategy_params", multiple=True, metavar="KEY=VALUE",
              help="Parameter of --strategy, e.g. pairs=data/dpo.jsonl. Repeatable.")
@click.option("--budget", "budget", multiple=True, type=click.IntRange(min=1), metavar="B",
              help="With a search strategy: at most best-of-B's generator compute per GenEval sample "
                   "(B x the generator's steps). Repeatable: one search per budget.")
@click.option("--samples", type=click.IntRange(min=1), default=None,
              help="With a search strategy: GenEval samples (picks) per prompt [4, GenEval's].")
def run_command(spec_path: Path | None, params: tuple[str, ...], verifier_params: tuple[str, ...],
                prompts_text: str | None, strategy_params: tuple[str, ...], **flags: Any) -> None:
    """Generate --pool candidates per prompt, judge each with GenEval, score each with every --verifier.

    Everything goes to the store; images go to OUT/images named by sha256. Re-running the
    same command continues where it stopped; raising --pool or adding a --verifier reuses
    all stored work. Under torchrun each rank takes the prompts with index % WORLD_SIZE == RANK.

    --strategy NAME runs a strategy's prepare stage first (DPO training: `dpo`, `iterative-dpo`)
    and generates with the checkpoint it makes; the store links the run to that checkpoint.
    Under torchrun the checkpoint must already be finished (prepare it in one process first).

    --strategy NAME --budget B runs a search strategy (parm-prune, step-beam, smc, adaptive-n,
    reflect): one image per GenEval sample (--samples, 4) made while generating, judged by GenEval
    and stored with its trace and compute ledger; --pool is not used. Resumable and sharded as pools.
    """
    thresholds = {k: flags.pop(k) for k in THRESHOLD_FLAGS}
    spec = read_spec(spec_path) if spec_path else {}
    given = {**flags, "params": parse_pairs(params, "--param"),
             "verifier_params": parse_verifier_params(verifier_params), "prompts": parse_prompts(prompts_text),
             "strategy_params": parse_pairs(strategy_params, "--strategy-param")}
    values = merged(spec, given)
    strategy, strategy_values = strategy_from(values)
    plugins = values.get("plugins") or None
    search = search_from(values, strategy, plugins)
    config = build_config(values, options_from_flags(**thresholds), need_pool=search is None)
    execute(config, plugins, strategy, strategy_values, search)


def budgets_of(values: Mapping[str, Any]) -> list[int]:
    """The budgets from --budget flags or a spec's `budget` (an integer or a list of them)."""
    raw = values.get("budget")
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in items):
        raise click.UsageError(f"`budget` must be an integer >= 1 or a list of them, got {raw!r}")
    return list(items)


def search_from(values: Mapping[str, Any], strategy: str | None, plugins: list[str] | None) -> Any:
    """A SearchConfig when `strategy` is a search strategy (then --budget is required), else None
    (then --budget and --samples are refused)."""
    import contextlib

    from harness import registry
    from harness.plugins import is_search_strategy
    from harness.search.runner import SearchConfig

    budgets = budgets_of(values)
    is_search = False
    if strategy is not None:
        try:
            with registry.configured(plugins) if plugins else contextlib.nullcontext():
                is_search = is_search_strategy(registry.strategies.get(strategy))
        except registry.PluginError as err:
            raise click.ClickException(str(err)) from None
    if not is_search:
        if budgets or values.get("samples") is not None:
            raise click.UsageError("--budget and --samples (or `budget` / `samples` in the spec) are for search "
                                   "strategies (--strategy parm-prune, step-beam, smc, adaptive-n, reflect)")
        return None
    if not budgets:
        raise click.UsageError(f"search strategy {strategy!r} needs --budget B (or `budget` in the --spec file): at "
                               "most best-of-B's generator compute per GenEval sample")
    samples = values.get("samples")
    if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool) or samples < 1):
        raise click.UsageError(f"`samples` must be an integer >= 1, got {samples!r}")
    assert strategy is not None
    return SearchConfig(strategy, dict(values.get("strategy_params") or {}), tuple(budgets),
                        int(samples) if samples is not None else 4)


def strategy_from(values: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(strategy name or None, its params) from the merged spec and flags."""
    strategy = values.get("strategy")
    params = values.get("strategy_params") or {}
    if not isinstance(params, Mapping):
        raise click.UsageError("`strategy_params` in the --spec file must be a table")
    if strategy is None and params:
        raise click.UsageError("--strategy-param (or `strategy_params`) needs --strategy (or `strategy`)")
    if strategy is not None and (not isinstance(strategy, str) or not strategy):
        raise click.UsageError(f"`strategy` must be a strategy name, got {strategy!r}")
    return strategy, dict(params)


def build_config(values: Mapping[str, Any], options: Any, *, need_pool: bool = True) -> Any:
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.runner import RunConfig

    for key in ("generator", "pool") if need_pool else ("generator",):
        if values.get(key) is None:
            raise click.UsageError(f"--{key} is required (or `{key}` in the --spec file)")
    try:
        evaluator = EvaluatorSpec(backend=values["backend"], detector=values.get("detector"),
                                  detector_config=values.get("detector_config"), clip_arch=values["clip_arch"],
                                  clip_weights=values.get("clip_weights"), options=options,
                                  device=values.get("device"))
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    out = Path(values.get("out") or "stepwise-out")
    return RunConfig(
        generator=values["generator"], evaluator=evaluator, pool=int(values.get("pool") or 1),
        params=dict(values.get("params") or {}), verifiers=tuple(values.get("verifiers") or ()),
        verifier_params={k: dict(v) for k, v in dict(values.get("verifier_params") or {}).items()},
        suite=values["suite"], per_task=int(values["per_task"]), prompts=parse_prompts(values.get("prompts")),
        seed=int(values["seed"]), db=default_db(values.get("db"), out), out=out,
        batch_size=int(values["batch_size"]),
    )


def execute(config: Any, plugins: list[str] | None, strategy: str | None = None,
            strategy_params: Mapping[str, Any] | None = None, search: Any = None) -> None:
    import contextlib

    from harness import registry
    from harness.preparation import NotPreparable, PrepareError, describe, has_prepare, run_prepared
    from harness.runner import RunError, Shard, process_group, run

    link = ""
    try:
        shard = Shard.from_env()
        with process_group(shard), registry.configured(plugins) if plugins else contextlib.nullcontext():
            if search is not None and not has_prepare(registry.strategies.get(search.strategy)):
                report_search(execute_search(config, search, shard), shard)
                return
            if strategy is None:
                summary = run(config, shard=shard)
            else:
                with_search = None if search is None else (
                    lambda cfg, shard, engine: execute_search(cfg, search, shard, engine))
                prepared = run_prepared(config, strategy, strategy_params or {}, shard=shard,
                                        log=lambda message: click.echo(message, err=True), run_with=with_search)
                if search is not None:
                    made = prepared.link
                    click.echo(describe(made.strategy, made.settings_hash, made.checkpoint, made.checkpoint_sha256),
                               err=True)
                    report_search(prepared.summary, shard)
                    return
                summary, config = prepared.summary, prepared.config
                made = prepared.link
                link = f"; {describe(made.strategy, made.settings_hash, made.checkpoint, made.checkpoint_sha256)}"
                link += "" if prepared.recorded else " (recorded before)"
    except NotPreparable as err:
        raise click.UsageError(str(err)) from None
    except PrepareError as err:
        raise click.ClickException(" ".join(str(err).split())) from None  # one line, naming the file
    except (RunError, registry.PluginError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"run {summary.run_id}: {summary.prompts} prompts, {summary.written} needed work; "
               f"{summary.generated} generated, {summary.evaluated} evaluated, {summary.scored} scores{link}",
               err=True)
    if shard.world_size > 1 and shard.rank == 0:
        click.echo(f"all {shard.world_size} ranks finished", err=True)
        if config.db.endswith(f"stepwise-rank{shard.rank}.db"):
            click.echo(f"combine the per-rank stores: stepwise merge {config.out}/stepwise-rank*.db --db URL",
                       err=True)
    click.echo(summary.run_id)


def execute_search(config: Any, search: Any, shard: Any, engine: Any = None) -> Any:
    from harness.search.runner import run_search

    return run_search(config, search, shard=shard, engine=engine)


def report_search(summary: Any, shard: Any) -> None:
    """What `stepwise run` prints after a search: one line per budget, then the run id on stdout."""
    for search_id, settings, budget in summary.searches:
        click.echo(f"search {search_id}: budget {budget}, settings {settings[:12]}…", err=True)
    click.echo(f"run {summary.run_id}: {summary.prompts} prompts, {summary.written} (prompt, budget) searches needed "
               f"work; {summary.picks} picks, {summary.judged} judged, {summary.reused} verdicts reused", err=True)
    if shard.world_size > 1 and shard.rank == 0:
        click.echo(f"all {shard.world_size} ranks finished", err=True)
    click.echo(summary.run_id)
