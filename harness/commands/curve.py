"""`stepwise curve`: exact best-of-n scaling curves per verifier and per strategy, with intervals.

Flags in, `harness.curves` computes, this prints: the rows (verifiers, strategies' keys, `random`,
`oracle`), the exact curves, compute, comparisons, searches and adaptive-n all live there.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness.commands.options import THRESHOLD_FLAGS, stored_evaluator_options, suite_param_option

if TYPE_CHECKING:
    from harness.curves import Searched


@click.command()
@click.option("--from-jsonl", "pool_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help='Pool made elsewhere, one candidate per line: {"prompt_id": ..., "tag": ..., '
                   '"correct": true, "scores": {"<verifier>": 0.9}}.')
@click.option("--run", "run_id", default=None,
              help="Read the pool of this run (the id `stepwise run` prints) from the store.")
@click.option("--db", default=None, help="Store URL for --run [$STEPWISE_DB or sqlite:///stepwise.db].")
@click.option("--verifier", "verifiers", multiple=True,
              help="A verifier whose scores make a row (with --run: read from the store). Repeatable. "
                   "[--from-jsonl: every verifier in the file, unless --strategy is given]")
@click.option("--verifier-param", "verifier_params", multiple=True, metavar="V:KEY=VALUE",
              help="With --run: a parameter of verifier V, as given to `stepwise run`. Repeatable.")
@click.option("--strategy", "strategy_names", multiple=True, metavar="NAME",
              help="Add a row for this strategy (see `stepwise strategies list`), from the stored scores of the "
                   "verifiers it reads (give their --verifier-param as for `stepwise run`). Repeatable.")
@click.option("--strategy-param", "strategy_params", multiple=True, metavar="NAME:KEY=VALUE",
              help="A parameter of strategy NAME, e.g. best-of-n:verifier=orm. Repeatable.")
@click.option("--pool", "max_samples", type=click.IntRange(min=1), default=None,
              help="With --run: use sample indices below this only [all stored].")
@stored_evaluator_options("With --run")
@suite_param_option
@click.option("--plugin", "plugins", multiple=True, metavar="PKG[==VER]", help="Allow this plug-in package.")
@click.option("--n", "ns_text", default="1..20", show_default=True, help="Subset sizes: 1..20 or 1,2,4,8.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"<verifier>": {"<n>": {"overall": ..., "<tag>": ...}}} instead of a table.')
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a plot of overall score vs n with 95% intervals (.png or .svg); with costs in the "
                   "pool, a second panel of score vs compute (seconds per prompt).")
@click.option("--compute-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With costs in the pool: write the compute per selection to this JSON file.")
@click.option("--compare", nargs=2, default=None, metavar="A B",
              help="Paired bootstrap of A vs B (rows: verifiers, strategies, random or oracle) on the same prompts: "
                   "difference in overall score, 95% interval and p-value at each n.")
@click.option("--compare-n", "compare_ns", multiple=True, type=click.IntRange(min=1), metavar="K",
              help="With --compare: compare at these n only [every --n]. Repeatable.")
@click.option("--compare-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --compare: also write the comparison to this JSON file.")
@click.option("--adaptive-n", "adaptive_verifier", default=None, metavar="VERIFIER",
              help="Add adaptive-n's exact expected accuracy and cost over random candidate orders of the pool, by "
                   "this verifier's scores, at each --adaptive-tau (no regeneration).")
@click.option("--adaptive-tau", "adaptive_taus", default=None, metavar="T1,T2,..",
              help="With --adaptive-n: thresholds [the scores' deciles, and inf].")
@click.option("--adaptive-batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --adaptive-n: candidates drawn per batch.")
@click.option("--adaptive-n-max", type=click.IntRange(min=1), default=None,
              help="With --adaptive-n: candidates at most [the largest --n].")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples over prompts for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
def curve(pool_path: Path | None, run_id: str | None, strategy_names: tuple[str, ...],
          strategy_params: tuple[str, ...], ns_text: str, as_json: bool, plot: Path | None,
          compute_json: Path | None, compare: tuple[str, str] | None, compare_ns: tuple[int, ...],
          compare_json: Path | None, adaptive_verifier: str | None, adaptive_taus: str | None, adaptive_batch: int,
          adaptive_n_max: int | None, n_boot: int, seed: int, **store_flags: Any) -> None:
    """Expected GenEval score of best-of-n selection, for every verifier or strategy, every n.

    The pool comes from --from-jsonl, or from the store with --run (plus the evaluator
    settings and --verifier names the run used, to pick its verdicts and scores).
    For each prompt the score is the exact expectation over all n-subsets of its candidates
    of the correctness of the subset's best candidate (ties shared evenly): no resampling
    noise, no regeneration per n. Task scores are means over prompts; overall is the mean
    over tasks (GenEval's definition). Two reference rows are added: `random` (no verifier)
    and `oracle` (GenEval itself as the verifier: the upper bound).

    A run made by `stepwise run --strategy NAME` (a strategy that trained the generator first, e.g.
    dpo) is linked to its checkpoint in the store: the link is shown (stderr), and --strategy NAME
    takes its parameters from it (--strategy-param values override, or choose among several).

    --strategy NAME adds a row for a strategy plug-in: its key per candidate, from the stored
    scores (with details) of the verifiers it reads, computed and recorded like a verifier's
    row (strategy NAME, verifier: the verifiers it reads, joined by "+"). The rows are then the
    --verifier names, the strategies, and the reference rows (a strategy named `random` or
    `oracle` takes that row's place); with --strategy and no --verifier, a JSONL pool's
    verifiers get no rows.

    When the pool knows what candidates cost, the table adds the expected compute per
    selection, in seconds per prompt: n x (mean generator seconds per candidate + mean
    seconds per candidate of the verifiers the row reads). `random` and `oracle` count the
    generator only (the oracle's cost is not a real one: it is the evaluator).

    --compare A B: a paired, stratified bootstrap over prompts of overall(A) - overall(B).

    Searches: a run searched by `stepwise run --strategy NAME --budget B` (parm-prune, step-beam, ...)
    gets one row per search and budget (n = B) after the pool's: GenEval score of its picks with the
    bootstrap interval, and the mean generator NFE and seconds per prompt from the harness's ledger;
    a best-of-n row costs n x total_steps NFE. A run with searches and no pool shows the searches only.
    --plot then draws score vs compute: NFE (and seconds, when the pool knows its costs), best-of-n as
    lines, searches as points with intervals.

    --adaptive-n VERIFIER adds adaptive-n's exact expected accuracy and expected candidates over random
    orders of the pool's candidates (`harness.search.adaptive`), one row per threshold tau.
    """
    from harness import curves as lib
    from harness.commands.options import parse_ns

    ns = parse_ns(ns_text)
    if (pool_path is None) == (run_id is None):
        raise click.UsageError("give exactly one of --from-jsonl POOL.jsonl and --run RUN_ID")
    if compare is None and (compare_ns or compare_json is not None):
        raise click.UsageError("--compare-n and --compare-json need --compare A B")
    with mapped_errors():
        links = lib.run_links(run_id, store_flags["db"]) if run_id is not None else []
        for link in links:  # the checkpoint the run's generator loaded, and the strategy that trained it
            click.echo(f"run {link['run_id'][:12]}…: " + lib.describe_link(link), err=True)
        searched = found = None
        if run_id is not None:  # searches' picks are judged by the run's suite evaluator, as its pool
            found = stored_suite(run_id, store_flags)
            searched = lib.read_searches(store_flags["db"], run_id, found.backend, found.key, seed, n_boot,
                                         overall_mean=found.overall_mean)
        if searched is not None and not searched.has_pool:
            if not searched.rows:
                raise click.ClickException(f"run {run_id[:12]}… has no candidates and no judged searches (by these "
                                           "evaluator settings: give the flags the run used)")
            show_searches(searched, {}, {}, None, as_json, plot, n_boot, seed)
            return
        strategies = lib.load_strategies(strategy_names, parse_strategy_params(strategy_params),
                                         store_flags["plugins"], links)
        verifier_rows = list(store_flags["verifiers"])
        read_by_strategies = tuple(dict.fromkeys(v for st in strategies for v in st.verifiers))
        if pool_path is None:
            wanted = tuple(dict.fromkeys([*verifier_rows, *read_by_strategies]))  # every verifier read, once
            stored = store_pool(run_id or "", store_flags, wanted, read_by_strategies, found)
            pool, prompt_scores = stored.pool, stored.prompt_scores
        else:
            stored = None
            pool = lib.read_jsonl_pool(pool_path)
            verifier_rows, prompt_scores = lib.jsonl_rows(pool, pool_path, verifier_rows, strategies)
        lib.check_ns(pool, ns, compare_ns)
        rows = lib.selection_rows(pool, verifier_rows, strategies, prompt_scores,
                                  stored.verifier_settings_hashes if stored is not None else {})
        if compare is not None:
            lib.check_compare(compare, rows)
        overall_mean = stored.overall_mean if stored is not None else "groups"  # a JSONL pool is GenEval's
        curves = lib.exact_curves(pool, rows, ns, seed=seed, n_boot=n_boot, overall_mean=overall_mean)
        table, intervals, compute = curves.table, curves.intervals, curves.compute
        if compute_json is not None:
            if curves.per_candidate is None:
                raise click.UsageError("--compute-json: the pool has no costs")
            lib.write_json(compute_json, lib.compute_document(pool, curves.per_candidate, compute or {}))
        if stored is not None:
            note = lib.record_results(stored, rows, table, intervals, curves.tag_intervals, compute, n_boot, seed)
            if note:
                click.echo(note, err=True)
        adaptive = None
        if adaptive_verifier is not None:
            adaptive = lib.adaptive_rows(pool, adaptive_verifier, adaptive_taus, adaptive_batch,
                                         adaptive_n_max or ns[-1], curves.per_candidate, seed, n_boot,
                                         overall_mean=overall_mean)
        if as_json:
            data: dict[str, Any] = lib.curves_json(curves)
            if searched is not None and searched.rows:
                from harness.search.report import search_json

                data.update(search_json(searched.rows))
            if adaptive is not None:
                data.update(lib.adaptive_json(adaptive_verifier or "", adaptive))
            click.echo(json.dumps(data, indent=2))
        else:
            if stored is not None and stored.overall != "overall":  # the suite's headline figure
                click.echo(f"overall: {stored.overall} (mean over "
                           f"{'prompts' if stored.overall_mean == 'prompts' else 'groups'})")
            click.echo(lib.render_table(table, intervals, len(pool.prompt_ids), int(pool.valid.sum()), compute))
            if adaptive is not None:
                click.echo(lib.render_adaptive(adaptive_verifier or "", adaptive, adaptive_batch,
                                               adaptive_n_max or ns[-1]))
        if searched is not None and searched.rows:
            show_searches(searched, table, intervals, compute, as_json, plot, n_boot, seed)
            plot = None  # drawn with the searches
        if compare is not None:
            import numpy as np

            a, b = compare
            at = sorted(set(compare_ns)) if compare_ns else ns
            results = lib.compare_strategies(rows[a].key, rows[b].key, pool, at, np.random.default_rng(seed), n_boot,
                                             overall_mean)
            # With --json, stdout holds the JSON only: the comparison goes to stderr (and to --compare-json).
            click.echo(lib.render_comparison(a, b, results), err=as_json)
            if compare_json is not None:
                lib.write_json(compare_json, lib.comparison_json(a, b, results, n_boot, seed))
        if plot is not None:
            lib.write_plot(plot, table, intervals, compute)
            click.echo(f"plot written to {plot}", err=True)


def store_pool(run_id: str, store_flags: dict[str, Any], verifiers: tuple[str, ...],
               strategy_verifiers: tuple[str, ...] = (), found: Any = None) -> Any:
    """A run's pool from the store (`harness.curves.read_store_pool`), with the verdicts of its suite's
    evaluator: by the GenEval flags for a GenEval-judged suite, else by --suite-param or the run's one
    evaluator (`harness.suite_store.resolve`); scores by the --verifier-param values the run used.
    Errors as one click line. Also `stepwise analyze`'s reader. found: `stored_suite`'s answer, when the
    caller has it already."""
    import contextlib

    from harness import curves as lib
    from harness import registry
    from harness.commands.options import parse_verifier_params
    from harness.runner import RunError, verifier_settings_hashes

    plugins = store_flags["plugins"]
    found = found or stored_suite(run_id, store_flags)
    try:
        with registry.configured(plugins) if plugins else contextlib.nullcontext():
            keys = verifier_settings_hashes(verifiers, parse_verifier_params(store_flags["verifier_params"]),
                                            evaluator_key=found.key)
    except (RunError, registry.PluginError) as err:
        raise click.ClickException(str(err)) from None
    with mapped_errors():
        return lib.read_store_pool(store_flags["db"], run_id, found.backend, found.key, keys,
                                   max_samples=store_flags["max_samples"], strategy_verifiers=strategy_verifiers,
                                   overall=found.overall, overall_mean=found.overall_mean)


def stored_suite(run_id: str, store_flags: dict[str, Any]) -> Any:
    """The run's suite and the verdicts to read (`harness.suite_store.resolve`): by the GenEval flags for a
    GenEval-judged suite, else by --suite-param or the run's one evaluator. Errors as one click line."""
    from harness import curves as lib
    from harness import suite_store
    from harness.commands.options import evaluator_from_flags, parse_pairs

    flags = {k: store_flags[k] for k in EVALUATOR_KEYS}
    suite_params = parse_pairs(tuple(store_flags.get("suite_params") or ()), "--suite-param")
    with mapped_errors():
        return lib.read_store(store_flags["db"], lambda s: suite_store.resolve(
            s, run_id, geneval_spec=lambda: evaluator_from_flags(flags), suite_params=suite_params,
            device=store_flags["device"]), (ValueError,))


# The flags of `stored_evaluator_options` that name the evaluator settings.
EVALUATOR_KEYS = ("backend", "detector", "detector_config", "clip_arch", "clip_weights", "device",
                  *THRESHOLD_FLAGS)


def mapped_errors() -> contextlib.AbstractContextManager[None]:
    """`harness.curves`'s errors as click's (`click_errors`)."""
    from harness.commands.options import click_errors
    from harness.curves import CurveError, CurveUsageError

    return click_errors(CurveError, CurveUsageError)


def parse_strategy_params(items: tuple[str, ...]) -> dict[str, dict[str, str]]:
    from harness.commands.options import parse_pairs

    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, pair = item.partition(":")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME:KEY=VALUE", param_hint="--strategy-param")
        out.setdefault(name, {}).update(parse_pairs((pair,), "--strategy-param"))
    return out



def show_searches(searched: Searched, table: dict[str, Any], intervals: dict[str, Any], compute: Any,
                  as_json: bool, plot: Path | None, n_boot: int, seed: int) -> None:
    """Print the search rows (JSON or table), record them in the run's results, draw the compute plot."""
    from harness.curves import record_searches
    from harness.search.report import render_search_table, search_json, write_compute_plot

    if not table:  # searches only: the whole output is theirs
        click.echo(json.dumps(search_json(searched.rows), indent=2) if as_json
                   else render_search_table(searched.rows).lstrip("\n"))
    elif not as_json:
        click.echo(render_search_table(searched.rows))
    record_searches(searched, n_boot, seed)
    if plot is not None:
        write_compute_plot(plot, table, intervals, compute, searched.rows)
        click.echo(f"plot written to {plot}", err=True)
