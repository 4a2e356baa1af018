"""`stepwise curve`: exact best-of-n scaling curves per verifier and per strategy, with intervals.

Every row of the table is a selection key per candidate: a verifier's score (best-of-n by that
verifier), a strategy's `select_key` over the stored scores of the verifiers it reads
(`strategies.keys`), or a reference point (`random`, `oracle`). All rows go through the same
exact computation (`harness.scaling`) and, for a store run, into the run's `results` table.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from harness.commands.options import stored_evaluator_options

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def parse_ns(text: str) -> list[int]:
    """'1..20', '1,2,4,8' or '4' -> sorted distinct positive ints."""
    values: set[int] = set()
    try:
        for part in text.split(","):
            if ".." in part:
                low, high = (int(x) for x in part.split("..", 1))
                values.update(range(low, high + 1))
            else:
                values.add(int(part))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use e.g. 1..20 or 1,2,4,8", param_hint="--n") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: n must be >= 1", param_hint="--n")
    return sorted(values)


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
    import numpy as np

    from harness.scaling import bootstrap_intervals, task_scores
    from harness.scaling import curve as scaling_curve
    from strategies.keys import jsonl_scores

    ns = parse_ns(ns_text)
    if (pool_path is None) == (run_id is None):
        raise click.UsageError("give exactly one of --from-jsonl POOL.jsonl and --run RUN_ID")
    if compare is None and (compare_ns or compare_json is not None):
        raise click.UsageError("--compare-n and --compare-json need --compare A B")
    links = run_links(run_id, store_flags["db"]) if run_id is not None else []
    for link in links:  # the checkpoint the run's generator loaded, and the strategy that trained it
        click.echo(f"run {link['run_id'][:12]}…: " + describe_link(link), err=True)
    searched = read_searches(run_id, store_flags, seed, n_boot) if run_id is not None else None
    if searched is not None and not searched.has_pool:
        if not searched.rows:
            raise click.ClickException(f"run {run_id[:12]}… has no candidates and no judged searches (by these "
                                       "evaluator settings: give the flags the run used)")
        show_searches(searched, {}, {}, None, as_json, plot, n_boot, seed)
        return
    strategies = load_strategies(strategy_names, strategy_params, store_flags["plugins"], links)
    verifier_rows = list(store_flags["verifiers"])
    read_by_strategies = tuple(dict.fromkeys(v for st in strategies for v in st.verifiers))
    if pool_path is None:
        wanted = tuple(dict.fromkeys([*verifier_rows, *read_by_strategies]))  # every verifier read, once
        stored = read_store_pool(run_id or "", **{**store_flags, "verifiers": wanted},
                                 strategy_verifiers=read_by_strategies)
        pool, prompt_scores = stored.pool, stored.prompt_scores
    else:
        stored = None
        pool = read_jsonl_pool(pool_path)
        if not strategies and not verifier_rows:
            verifier_rows = list(pool.scores)  # a pool file's verifiers are its rows, unless told otherwise
        missing = [v for v in [*verifier_rows, *read_by_strategies] if v not in pool.scores]
        if missing:
            raise click.ClickException(f"{pool_path}: no scores by {', '.join(dict.fromkeys(missing))}; "
                                       f"the pool has {', '.join(pool.scores)}")
        prompt_scores = jsonl_scores(pool, read_by_strategies)
    smallest = int(pool.sizes.min())
    largest = max([ns[-1], *compare_ns])
    if largest > smallest:
        prompt = pool.prompt_ids[int(pool.sizes.argmin())]
        raise click.ClickException(f"n = {largest} is larger than the pool of prompt {prompt!r} "
                                   f"({smallest} candidates); use --n up to {smallest}")
    rows = selection_rows(pool, verifier_rows, strategies, prompt_scores,
                          stored.verifier_settings_hashes if stored is not None else {})
    keys = {label: row.key for label, row in rows.items()}
    if compare is not None:
        unknown = [name for name in compare if name not in keys]
        if unknown:
            raise click.UsageError(f"--compare: no verifier {', '.join(map(repr, unknown))} in the pool; "
                                   f"available: {', '.join(keys)}")

    # (verifiers, len(ns), P): every curve at once; one bootstrap shares its resamples across them.
    per_prompt = np.stack([scaling_curve(key, pool.correct, ns, valid=pool.valid) for key in keys.values()])
    scores = task_scores(per_prompt, pool.tags)
    boot = bootstrap_intervals(per_prompt, pool.tags, np.random.default_rng(seed), n_boot=n_boot)
    low, high = boot["overall"]
    tags = [t for t in scores if t != "overall"]
    table: dict[str, dict[int, dict[str, float]]] = {}
    intervals: dict[str, dict[int, tuple[float, float]]] = {}
    for v, verifier in enumerate(keys):
        table[verifier] = {n: {"overall": float(scores["overall"][v, i]),
                               **{t: float(scores[t][v, i]) for t in tags}} for i, n in enumerate(ns)}
        intervals[verifier] = {n: (float(low[v, i]), float(high[v, i])) for i, n in enumerate(ns)}

    per_candidate = compute_per_candidate(pool, {label: row.scored_by for label, row in rows.items()})
    compute = ({v: {n: n * per_candidate[v] for n in ns} for v in keys} if per_candidate is not None else None)
    if compute_json is not None:
        if per_candidate is None:
            raise click.UsageError("--compute-json: the pool has no costs")
        write_json(compute_json, compute_document(pool, per_candidate, compute or {}))

    if stored is not None:
        tag_intervals = {v: {n: {t: [float(boot[t][0][k, i]), float(boot[t][1][k, i])] for t in tags}
                             for i, n in enumerate(ns)} for k, v in enumerate(keys)}
        record_results(stored, rows, table, intervals, tag_intervals, compute, n_boot, seed)

    adaptive = None
    if adaptive_verifier is not None:
        adaptive = adaptive_rows(pool, adaptive_verifier, adaptive_taus, adaptive_batch, adaptive_n_max or ns[-1],
                                 per_candidate, seed, n_boot)
    if as_json:
        data: dict[str, Any] = {v: {str(n): row for n, row in rows.items()} for v, rows in table.items()}
        if searched is not None and searched.rows:
            from harness.search.report import search_json

            data.update(search_json(searched.rows))
        if adaptive is not None:
            data.update(adaptive_json(adaptive_verifier or "", adaptive))
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(render_table(table, intervals, len(pool.prompt_ids), int(pool.valid.sum()), compute))
        if adaptive is not None:
            click.echo(render_adaptive(adaptive_verifier or "", adaptive, adaptive_batch, adaptive_n_max or ns[-1]))
    if searched is not None and searched.rows:
        show_searches(searched, table, intervals, compute, as_json, plot, n_boot, seed)
        plot = None  # drawn with the searches
    if compare is not None:
        a, b = compare
        at = sorted(set(compare_ns)) if compare_ns else ns
        results = compare_strategies(keys[a], keys[b], pool, at, np.random.default_rng(seed), n_boot)
        # With --json, stdout holds the JSON only: the comparison goes to stderr (and to --compare-json).
        click.echo(render_comparison(a, b, results), err=as_json)
        if compare_json is not None:
            write_json(compare_json, {"a": a, "b": b, "method": "paired stratified bootstrap over prompts",
                                      "bootstrap": n_boot, "seed": seed,
                                      "n": {str(n): r._asdict() for n, r in results.items()}})
    if plot is not None:
        write_plot(plot, table, intervals, compute)
        click.echo(f"plot written to {plot}", err=True)


class StorePool(NamedTuple):
    pool: Any
    db: str | None
    run_id: str
    backend: str
    evaluator_settings_hash: str
    verifier_settings_hashes: dict[str, str]
    prompt_scores: list[dict[str, list[Any]]]  # per prompt, {verifier: VerifierScores} (strategies.keys)


# Rows that are not "best of n by a verifier": their strategy, and what plays the verifier.
REFERENCE_ROWS = {"random": ("random", "none"), "oracle": ("oracle", "geneval")}


class LoadedStrategy(NamedTuple):
    name: str  # canonical registry name
    instance: Any  # the built plug-in (no model: strategies read stored scores)
    verifiers: tuple[str, ...]  # the verifiers its select_key reads
    about: dict[str, Any]  # recorded with its results: provenance and canonical params


class Row(NamedTuple):
    """One curve: a selection key per candidate, and what the results table records it as."""

    key: Any  # (P, m) floats, higher is better
    strategy: str
    verifier: str  # what plays the verifier: a name, names joined by "+", "none" or "geneval"
    scored_by: tuple[str, ...]  # verifiers whose seconds count in its compute
    settings_hash: str | None  # of the scores it reads
    about: dict[str, Any]  # more to record in the result's details


def parse_strategy_params(items: tuple[str, ...]) -> dict[str, dict[str, str]]:
    from harness.commands.options import parse_pairs

    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, pair = item.partition(":")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME:KEY=VALUE", param_hint="--strategy-param")
        out.setdefault(name, {}).update(parse_pairs((pair,), "--strategy-param"))
    return out


def run_links(run_id: str, db: str | None) -> list[dict[str, Any]]:
    """The run's recorded preparations (`harness.preparation`), as plain dicts; [] for an unknown run."""
    from harness.commands.stored import read_store
    from harness.store import run_preparations

    return read_store(db, lambda s: [
        {"run_id": x.run_id, "strategy": x.strategy, "settings_hash": x.settings_hash, "params": dict(x.params),
         "checkpoint": x.checkpoint, "checkpoint_sha256": x.checkpoint_sha256} for x in run_preparations(s, run_id)])


def describe_link(link: dict[str, Any]) -> str:
    from harness.preparation import describe

    return describe(link["strategy"], link["settings_hash"], link["checkpoint"], link["checkpoint_sha256"])


def recorded_params(cls: Any, name: str, given: dict[str, str], links: list[dict[str, Any]]) -> dict[str, Any]:
    """A strategy's params for a run it prepared: the recorded ones (the one setting that agrees with the
    given values, or the only one), with the given values on top; the given values alone otherwise."""
    from harness.plugins import ParamsError, parse_params

    rows = [x for x in links if x["strategy"] == name]
    if not rows:
        return given

    def agrees(recorded: dict[str, Any]) -> bool:
        try:
            return bool(parse_params(cls.Params, {**recorded, **given}) == parse_params(cls.Params, recorded))
        except ParamsError:
            return False

    pick = [x for x in rows if agrees(x["params"])] or rows
    if len(pick) > 1:
        differ = sorted({k for x in pick for k in x["params"] if x["params"][k] != pick[0]["params"].get(k)})
        raise click.UsageError(f"run {pick[0]['run_id'][:12]}… was prepared by strategy {name!r} with {len(pick)} "
                               f"settings (they differ in {', '.join(differ)}); choose one with "
                               f"--strategy-param {name}:KEY=VALUE")
    return {**pick[0]["params"], **given}


def load_strategies(names: tuple[str, ...], param_items: tuple[str, ...],
                    plugins: tuple[str, ...], links: list[dict[str, Any]] | None = None) -> list[LoadedStrategy]:
    """Build each --strategy with its --strategy-param values (checked against its Params); for a
    strategy that prepared the run (`links`), its recorded params fill in what is not given."""
    from harness import registry
    from harness.plugins import ParamsError, canonical_json, parse_params

    params = parse_strategy_params(param_items)
    unknown = sorted(set(params) - set(names))
    if unknown:
        raise click.UsageError(f"--strategy-param for {', '.join(unknown)}, which is not a --strategy")
    if len(set(names)) != len(names):
        raise click.UsageError(f"a strategy is named twice: {', '.join(names)}")
    out = []
    try:
        with registry.configured(plugins) if plugins else contextlib.nullcontext():
            for name in names:
                cls = registry.strategies.get(name)
                info = registry.strategies.info(name)
                if not callable(getattr(cls, "select_key", None)):
                    raise click.UsageError(
                        f"strategy {info.name!r} is a search strategy (no select_key): it makes its own images, with "
                        f"`stepwise run --strategy {info.name} --budget B`, and `stepwise curve --run RUN` shows its "
                        "searches next to the pool's rows")
                values = recorded_params(cls, info.name, params.get(name, {}), links or [])
                parsed = parse_params(cls.Params, values, owner=f"strategy {info.name!r}")
                instance = cls(parsed)
                verifiers = tuple(instance.verifiers)
                if not all(isinstance(v, str) and v for v in verifiers):
                    raise click.ClickException(f"strategy {info.name!r}: verifiers must be names, got {verifiers!r}")
                about = {"strategy": {**info.provenance(), "params": json.loads(canonical_json(parsed))}}
                out.append(LoadedStrategy(info.name, instance, verifiers, about))
    except ParamsError as err:
        raise click.UsageError(str(err)) from None
    except (registry.PluginError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    return out


def selection_rows(pool: Any, verifiers: list[str], strategies: list[LoadedStrategy],
                   prompt_scores: list[dict[str, list[Any]]], hashes: dict[str, str]) -> dict[str, Row]:
    """The table's rows by label: the verifiers, the strategies, then `random` and `oracle` unless taken."""
    import numpy as np

    from harness.store import content_hash
    from strategies.keys import strategy_keys

    rows: dict[str, Row] = {}
    for name in verifiers:
        strategy, plays = REFERENCE_ROWS.get(name, ("best-of-n", name))
        scored_by = () if name in REFERENCE_ROWS else (name,)
        rows[name] = Row(pool.scores[name], strategy, plays, scored_by, hashes.get(name), {})
    for st in strategies:
        if st.name in rows:
            raise click.UsageError(f"strategy {st.name!r} and verifier {st.name!r} would both be row {st.name!r}: "
                                   "compute them in separate calls")
        try:
            key = strategy_keys(st.name, st.instance, prompt_scores, pool)
        except ValueError as err:
            raise click.ClickException(str(err)) from None
        own = {v: hashes[v] for v in st.verifiers if v in hashes}  # none for a JSONL pool
        # One hash names the scores a row was computed from: the verifier's own for one verifier (so a
        # best-of-n strategy row matches the verifier's row), a hash of them all for several.
        settings_hash = None
        if len(own) == 1:
            settings_hash = next(iter(own.values()))
        elif own:
            settings_hash = content_hash(own)
        scored_by = tuple(v for v in st.verifiers if v not in REFERENCE_ROWS)
        rows[st.name] = Row(key, st.name, "+".join(st.verifiers) or "none", scored_by, settings_hash,
                            {**st.about, "verifier_settings_hashes": own})
    for name, key in (("random", np.zeros_like(pool.correct, dtype=float)), ("oracle", pool.correct.astype(float))):
        if name not in rows:
            rows[name] = Row(key, *REFERENCE_ROWS[name], (), None, {})
    return rows


def record_results(stored: StorePool, rows: dict[str, Row], table: dict[str, dict[int, dict[str, float]]],
                   intervals: dict[str, dict[int, tuple[float, float]]],
                   tag_intervals: dict[str, dict[int, dict[str, list[float]]]],
                   compute: dict[str, dict[int, float]] | None, n_boot: int, seed: int) -> None:
    """Store every computed row in the run's `results`, in one transaction (newest rows win). On a store
    this process cannot write, say so and go on: the curves are computed and shown all the same."""
    from sqlalchemy.orm import Session

    from harness.store import StoreError, add_result, open_store
    from harness.store.engine import read_only_path

    try:
        engine = open_store(stored.db, upgrade_schema=False)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    if read_only_path(engine) is not None:
        click.echo(f"note: could not record the results in the store: store is read-only: {read_only_path(engine)}",
                   err=True)
        engine.dispose()
        return
    try:
        with Session(engine) as s, s.begin():
            for label, by_n in table.items():
                selection = rows[label]
                for n, row in by_n.items():
                    details: dict[str, Any] = {**selection.about, "intervals": tag_intervals[label][n],
                                               "bootstrap": n_boot, "seed": seed, "level": 0.95}
                    if compute is not None:
                        details["seconds_per_prompt"] = compute[label][n]
                    add_result(s, stored.run_id, strategy=selection.strategy, verifier=selection.verifier, n=n,
                               scores={t: v for t, v in row.items() if t != "overall"}, overall=row["overall"],
                               low=intervals[label][n][0], high=intervals[label][n][1],
                               evaluator=stored.backend, evaluator_settings_hash=stored.evaluator_settings_hash,
                               verifier_settings_hash=selection.settings_hash, details=details)
    finally:
        engine.dispose()


class Comparison(NamedTuple):
    difference: float  # overall(A) - overall(B)
    low: float
    high: float
    p_value: float


def compare_strategies(key_a: Any, key_b: Any, pool: Any, ns: list[int], rng: Any,
                       n_boot: int) -> dict[int, Comparison]:
    """{n: overall(A) - overall(B), 95% paired bootstrap interval and two-sided p-value}."""
    from harness.scaling import curve as scaling_curve
    from harness.scaling import paired_comparison

    per_a = scaling_curve(key_a, pool.correct, ns, valid=pool.valid)
    per_b = scaling_curve(key_b, pool.correct, ns, valid=pool.valid)
    out = {}
    for i, n in enumerate(ns):
        r = paired_comparison(per_a[i], per_b[i], pool.tags, rng, n_boot=n_boot)
        out[n] = Comparison(r.difference, r.low, r.high, r.p_value)
    return out


def render_comparison(a: str, b: str, results: dict[int, Comparison]) -> str:
    header = f"{'n':>3}  {'difference':>10}  {'95% interval':<17}  {'p-value':>7}"
    lines = ["", f"{a} vs {b}: overall({a}) - overall({b}), paired bootstrap over prompts", header,
             "-" * len(header)]
    for n, r in results.items():
        lines.append(f"{n:>3}  {r.difference:>+10.4f}  [{r.low:+.4f}, {r.high:+.4f}]  {r.p_value:>7.4f}")
    return "\n".join(lines)


def _per_candidate(pool: Any, values: Any) -> float:
    """Mean of a (P, m) cost array over the pool's real candidates (padding excluded)."""
    return float(values[pool.valid].mean())


def compute_per_candidate(pool: Any, scored_by: dict[str, tuple[str, ...]]) -> dict[str, float] | None:
    """Seconds per candidate of each row: generator + the verifiers it reads (None without costs)."""
    if pool.generator_seconds is None:
        return None
    generator = _per_candidate(pool, pool.generator_seconds)
    verifier_seconds = pool.verifier_seconds or {}
    return {label: generator + sum(_per_candidate(pool, verifier_seconds[v]) for v in names if v in verifier_seconds)
            for label, names in scored_by.items()}


def compute_document(pool: Any, per_candidate: dict[str, float],
                     compute: dict[str, dict[int, float]]) -> dict[str, Any]:
    passes = pool.generator_forward_passes
    return {
        "generator_seconds_per_candidate": _per_candidate(pool, pool.generator_seconds),
        "generator_forward_passes_per_candidate": _per_candidate(pool, passes) if passes is not None else None,
        "verifier_seconds_per_candidate": {v: _per_candidate(pool, x)
                                           for v, x in (pool.verifier_seconds or {}).items()},
        "seconds_per_candidate": per_candidate,
        "seconds_per_prompt": {v: {str(n): s for n, s in rows.items()} for v, rows in compute.items()},
        "note": "seconds_per_prompt = n x seconds_per_candidate; random and oracle count the generator only "
                "(the oracle is the evaluator, not a real cost)",
    }


def write_json(path: Path, data: Any) -> None:
    from harness.jsonl import write_atomic

    try:
        write_atomic(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise click.ClickException(f"{path}: cannot write ({err.strerror})") from None


def read_jsonl_pool(pool_path: Path) -> Any:
    from harness.pools import read_pool

    try:
        with open(pool_path, encoding="utf-8") as fp:
            return read_pool(fp, str(pool_path))
    except OSError as err:
        raise click.ClickException(f"{pool_path}: cannot read ({err.strerror})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise click.ClickException(str(err)) from None


def read_store_pool(run_id: str, db: str | None, verifiers: tuple[str, ...], verifier_params: tuple[str, ...],
                    max_samples: int | None, backend: str, detector: str | None, detector_config: str | None,
                    clip_arch: str, clip_weights: str | None, device: str | None, plugins: tuple[str, ...],
                    strategy_verifiers: tuple[str, ...] = (), **thresholds: Any) -> Any:
    """A run's pool from the store: verdicts by these evaluator settings, scores by these verifiers
    (those of `strategy_verifiers` also whole, with details, for strategies); with what names those
    settings, so that the computed results can be recorded against them."""
    from harness.commands.options import stored_settings
    from harness.commands.stored import read_store
    from harness.store import pool_arrays
    from strategies.keys import store_scores

    spec, keys = stored_settings(dict(backend=backend, detector=detector, detector_config=detector_config,
                                      clip_arch=clip_arch, clip_weights=clip_weights, device=device, **thresholds),
                                 verifiers, verifier_params, plugins)

    def read(s: Session) -> StorePool:
        pool = pool_arrays(s, run_id, backend, spec.key(), keys, max_samples=max_samples)
        prompt_scores = store_scores(s, run_id, pool, {v: keys[v] for v in strategy_verifiers},
                                     max_samples=max_samples)
        return StorePool(pool, db, run_id, backend, spec.key(), keys, prompt_scores)

    return read_store(db, read, (ValueError,))


def render_table(table: dict[str, dict[int, dict[str, float]]],
                 intervals: dict[str, dict[int, tuple[float, float]]], n_prompts: int, n_candidates: int,
                 compute: dict[str, dict[int, float]] | None = None) -> str:
    first = next(iter(table.values()))
    tags = [t for t in next(iter(first.values())) if t != "overall"]
    header = (f"{'verifier':<14} {'n':>3}  {'overall':>7}  {'95% interval':<15}"
              + (f" {'s/prompt':>10}" if compute is not None else "")
              + "".join(f" {t[:13]:>13}" for t in tags))
    lines = [f"{n_prompts} prompts, {n_candidates} candidates", header, "-" * len(header)]
    for verifier, rows in table.items():
        for n, row in rows.items():
            low, high = intervals[verifier][n]
            lines.append(f"{verifier:<14} {n:>3}  {row['overall']:>7.4f}  [{low:.4f}, {high:.4f}]"
                         + (f" {compute[verifier][n]:>10.4g}" if compute is not None else "")
                         + "".join(f" {row[t]:>13.4f}" for t in tags))
    if compute is not None:
        lines.append("s/prompt: expected seconds per selection = n x (generator + verifier seconds per "
                     "candidate); random and oracle count the generator only (the oracle is not a real cost)")
    return "\n".join(lines)


def write_plot(path: Path, table: dict[str, dict[int, dict[str, float]]],
               intervals: dict[str, dict[int, tuple[float, float]]],
               compute: dict[str, dict[int, float]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from harness.figures import save_figure

    # A log axis needs positive compute: a pool whose costs are all 0 gets the n panel only.
    if compute is not None and not all(s > 0 for rows in compute.values() for s in rows.values()):
        compute = None
    if compute is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        axes = [ax]
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), sharey=True)
    for verifier, rows in table.items():
        ns = list(rows)
        overall = [rows[n]["overall"] for n in ns]
        low = [intervals[verifier][n][0] for n in ns]
        high = [intervals[verifier][n][1] for n in ns]
        style = "--" if verifier in REFERENCE_ROWS else "-"
        xs_of = [ns] if compute is None else [ns, [compute[verifier][n] for n in ns]]
        for ax, xs in zip(axes, xs_of, strict=True):
            (line,) = ax.plot(xs, overall, style, marker="o", markersize=3, label=verifier)
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("n (candidates per selection)")
    axes[0].set_ylabel("GenEval overall (mean over tasks)")
    if compute is not None:
        axes[1].set_xscale("log")
        axes[1].set_xlabel("compute per prompt (seconds; generator + verifier)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)  # atomically: an interrupted plot leaves no half file


# ---------------------------------------------------------------------------------------------
# searches and adaptive-n


class Searched(NamedTuple):
    rows: list[Any]  # harness.search.report.SearchRow
    has_pool: bool  # the run has pool candidates (best-of-n rows)
    db: str | None
    run_id: str
    backend: str
    evaluator_settings_hash: str


def read_searches(run_id: str, store_flags: dict[str, Any], seed: int, n_boot: int) -> Searched:
    """The run's search rows by the curve's evaluator settings, and whether it has a pool."""
    from sqlalchemy import func, select

    from harness.commands.options import THRESHOLD_FLAGS, evaluator_from_flags
    from harness.commands.stored import read_store
    from harness.search.report import search_rows
    from harness.store import Candidate

    keys = ("backend", "detector", "detector_config", "clip_arch", "clip_weights", "device", *THRESHOLD_FLAGS)
    spec = evaluator_from_flags({k: store_flags[k] for k in keys})

    def read(s: Session) -> Searched:
        count = int(s.scalar(select(func.count()).select_from(Candidate).where(Candidate.run_id == run_id)) or 0)
        rows = search_rows(s, run_id, spec.backend, spec.key(), seed=seed, n_boot=n_boot)
        return Searched(rows, count > 0, store_flags["db"], run_id, spec.backend, spec.key())

    return read_store(store_flags["db"], read, (ValueError,))


def show_searches(searched: Searched, table: dict[str, Any], intervals: dict[str, Any], compute: Any,
                  as_json: bool, plot: Path | None, n_boot: int, seed: int) -> None:
    """Print the search rows (JSON or table), record them in the run's results, draw the compute plot."""
    from sqlalchemy.orm import Session

    from harness.search.report import record_search_results, render_search_table, search_json, write_compute_plot
    from harness.store import StoreError, open_store

    if not table:  # searches only: the whole output is theirs
        click.echo(json.dumps(search_json(searched.rows), indent=2) if as_json
                   else render_search_table(searched.rows).lstrip("\n"))
    elif not as_json:
        click.echo(render_search_table(searched.rows))
    try:
        engine = open_store(searched.db, upgrade_schema=False)
    except StoreError as err:
        raise click.ClickException(str(err)) from None
    try:
        with Session(engine) as s, s.begin():
            record_search_results(s, searched.run_id, searched.rows, searched.backend,
                                  searched.evaluator_settings_hash, n_boot, seed)
    finally:
        engine.dispose()
    if plot is not None:
        write_compute_plot(plot, table, intervals, compute, searched.rows)
        click.echo(f"plot written to {plot}", err=True)


class AdaptiveRow(NamedTuple):
    tau: float
    tasks: dict[str, float]
    low: float
    high: float
    candidates: float  # expected candidates drawn per prompt
    seconds: float | None  # expected seconds per prompt (candidates x generator + verifier seconds each)


def adaptive_rows(pool: Any, verifier: str, taus_text: str | None, batch: int, n_max: int,
                  per_candidate: dict[str, float] | None, seed: int, n_boot: int) -> list[AdaptiveRow]:
    """adaptive-n's exact rows over the pool (`harness.search.adaptive`), one per threshold."""
    import numpy as np

    from harness.scaling import bootstrap_intervals, task_scores
    from harness.search.adaptive import adaptive_n_exact

    if verifier not in pool.scores:
        raise click.UsageError(f"--adaptive-n: no scores by {verifier!r} in the pool (give it as --verifier); "
                               f"the pool has {', '.join(pool.scores) or 'none'}")
    if n_max > int(pool.sizes.min()):
        raise click.UsageError(f"--adaptive-n-max {n_max} is more than the smallest prompt's pool "
                               f"({int(pool.sizes.min())})")
    scores = pool.scores[verifier]
    if taus_text:
        try:
            taus = [float(t) for t in taus_text.split(",") if t.strip()]
        except ValueError:
            raise click.BadParameter(f"{taus_text!r}: numbers separated by commas",
                                     param_hint="--adaptive-tau") from None
    else:
        taus = [*sorted({float(np.quantile(scores[pool.valid], q)) for q in np.linspace(0, 1, 11)}), float("inf")]
    accuracy, cost = adaptive_n_exact(scores, pool.correct, taus, batch=batch, n_max=n_max, valid=pool.valid)
    boot = bootstrap_intervals(accuracy, pool.tags, np.random.default_rng(seed), n_boot=n_boot)
    found = task_scores(accuracy, pool.tags)
    each = per_candidate.get(verifier) if per_candidate else None
    out = []
    for t, tau in enumerate(taus):
        candidates = float(cost[t].mean())
        out.append(AdaptiveRow(tau, {k: float(v[t]) for k, v in found.items()}, float(boot["overall"][0][t]),
                               float(boot["overall"][1][t]), candidates,
                               candidates * each if each is not None else None))
    return out


def render_adaptive(verifier: str, rows: list[AdaptiveRow], batch: int, n_max: int) -> str:
    header = f"{'tau':>10}  {'overall':>7}  {'95% interval':<15} {'cand/prompt':>11} {'s/prompt':>9}"
    lines = ["", f"adaptive-n by {verifier} (batch {batch}, n_max {n_max}): exact over random candidate orders",
             header, "-" * len(header)]
    for r in rows:
        seconds = f"{r.seconds:>9.4g}" if r.seconds is not None else f"{'':>9}"
        lines.append(f"{r.tau:>10.4g}  {r.tasks['overall']:>7.4f}  [{r.low:.4f}, {r.high:.4f}] {r.candidates:>11.3f} "
                     f"{seconds}")
    return "\n".join(lines)


def adaptive_json(verifier: str, rows: list[AdaptiveRow]) -> dict[str, Any]:
    return {f"adaptive-n({verifier})": {repr(r.tau): {**r.tasks, "low": r.low, "high": r.high,
                                                      "candidates": r.candidates, "seconds": r.seconds}
                                        for r in rows}}
