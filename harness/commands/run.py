"""`stepwise run`: generate a candidate pool, judge it with GenEval, score it with verifiers, store it all.

With `--strategy NAME` (a strategy with a prepare stage, e.g. `dpo`), the strategy first trains the
generator checkpoint (or finds it finished), the run generates with it, and the store records the
link between the run and the checkpoint (`harness.preparation`).

With `--strategy NAME --budget B` (a search strategy, e.g. `parm-prune`), the strategy makes one image
per GenEval sample while generating (`harness.search.runner`), at each budget given; a search
strategy with a prepare stage trains first and searches with the checkpoint.

Flags in; `harness.run_spec` merges them with the spec and builds the run; this prints.
"""

from __future__ import annotations

import contextlib
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


def mapped_errors() -> contextlib.AbstractContextManager[None]:
    """`harness.run_spec`'s errors as click's (`click_errors`)."""
    from harness.commands.options import click_errors
    from harness.run_spec import SpecError, SpecUsageError

    return click_errors(SpecError, SpecUsageError)


@click.command("run")
@click.option("--spec", "spec_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TOML run spec with the same fields (params and verifier_params as tables); flags override.")
@click.option("--generator", default=None, help="Generator plug-in name (see `stepwise list`).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Generator parameter. Repeatable.")
@click.option("--suite", default=None, help="Prompt suite [default: geneval]; `stepwise list suites` shows them.")
@click.option("--suite-param", "suite_params", multiple=True, metavar="KEY=VALUE",
              help="Parameter of the suite plug-in, e.g. geneval2's data=DIR and model=PATH. Repeatable.")
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
                prompts_text: str | None, strategy_params: tuple[str, ...], suite_params: tuple[str, ...],
                **flags: Any) -> None:
    """Generate --pool candidates per prompt, judge each with GenEval, score each with every --verifier.

    Everything goes to the store; images go to OUT/images named by sha256. Re-running the
    same command continues where it stopped; raising --pool or adding a --verifier reuses
    all stored work. Under torchrun each rank takes the prompts with index % WORLD_SIZE == RANK.

    --strategy NAME runs a strategy's prepare stage first (DPO training: `dpo`, `iterative-dpo`)
    and generates with the checkpoint it makes; the store links the run to that checkpoint.
    Under torchrun the checkpoint must already be finished (prepare it in one process first).

    --strategy NAME --budget B runs a search strategy (parm-prune, step-beam, smc, adaptive-n,
    reflect, noise-search): one image per GenEval sample (--samples, 4) made while generating, judged by GenEval
    and stored with its trace and compute ledger; --pool is not used. Resumable and sharded as pools.
    """
    from harness.run_spec import build_config, merged, read_spec, search_from, strategy_from

    thresholds = {k: flags.pop(k) for k in THRESHOLD_FLAGS}
    given = {**flags, "params": parse_pairs(params, "--param"),
             "verifier_params": parse_verifier_params(verifier_params), "prompts": parse_prompts(prompts_text),
             "strategy_params": parse_pairs(strategy_params, "--strategy-param"),
             "suite_params": parse_pairs(suite_params, "--suite-param")}
    with mapped_errors():
        spec = read_spec(spec_path) if spec_path else {}
        values = merged(spec, given)
        strategy, strategy_values = strategy_from(values)
        plugins = values.get("plugins") or None
        search = search_from(values, strategy, plugins)
        config = build_config(values, options_from_flags(**thresholds), need_pool=search is None)
    execute(config, plugins, strategy, strategy_values, search)


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
