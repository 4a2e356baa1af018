"""`stepwise curve`: exact best-of-n scaling curves per verifier, with intervals."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import click

from harness.commands.options import options_from_flags, threshold_options


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
@click.option("--verifier", "verifiers", multiple=True, help="With --run: a verifier whose scores to use. Repeatable.")
@click.option("--verifier-param", "verifier_params", multiple=True, metavar="V:KEY=VALUE",
              help="With --run: a parameter of verifier V, as given to `stepwise run`. Repeatable.")
@click.option("--pool", "max_samples", type=click.IntRange(min=1), default=None,
              help="With --run: use sample indices below this only [all stored].")
@click.option("--backend", type=click.Choice(["mmdet", "hf"]), default="mmdet", show_default=True,
              help="With --run: the GenEval detector whose verdicts to use.")
@click.option("--detector", default=None, metavar="PATH|ID", help="With --run: as given to `stepwise run`.")
@click.option("--detector-config", default=None, help="With --run: as given to `stepwise run`.")
@click.option("--clip-arch", default="ViT-L-14-quickgelu", show_default=True, help="With --run: as for `run`.")
@click.option("--clip-weights", default=None, help="With --run: as given to `stepwise run`.")
@click.option("--device", default=None, help="With --run: as given to `stepwise run`.")
@threshold_options
@click.option("--plugin", "plugins", multiple=True, metavar="PKG[==VER]", help="Allow this plug-in package.")
@click.option("--n", "ns_text", default="1..20", show_default=True, help="Subset sizes: 1..20 or 1,2,4,8.")
@click.option("--json", "as_json", is_flag=True,
              help='Print {"<verifier>": {"<n>": {"overall": ..., "<tag>": ...}}} instead of a table.')
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a plot of overall score vs n with 95% intervals (.png or .svg).")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100), default=2000, show_default=True,
              help="Bootstrap resamples over prompts for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
def curve(pool_path: Path | None, run_id: str | None, ns_text: str, as_json: bool, plot: Path | None,
          n_boot: int, seed: int, **store_flags: Any) -> None:
    """Expected GenEval score of best-of-n selection, for every verifier in a pool, every n.

    The pool comes from --from-jsonl, or from the store with --run (plus the evaluator
    settings and --verifier names the run used, to pick its verdicts and scores).
    For each prompt the score is the exact expectation over all n-subsets of its candidates
    of the correctness of the subset's best candidate (ties shared evenly): no resampling
    noise, no regeneration per n. Task scores are means over prompts; overall is the mean
    over tasks (GenEval's definition). Two reference rows are added: `random` (no verifier)
    and `oracle` (GenEval itself as the verifier: the upper bound).
    """
    import numpy as np

    from harness.scaling import bootstrap_intervals, task_scores
    from harness.scaling import curve as scaling_curve

    ns = parse_ns(ns_text)
    if (pool_path is None) == (run_id is None):
        raise click.UsageError("give exactly one of --from-jsonl POOL.jsonl and --run RUN_ID")
    pool = read_jsonl_pool(pool_path) if pool_path is not None else read_store_pool(run_id or "", **store_flags)
    smallest = int(pool.sizes.min())
    if ns[-1] > smallest:
        prompt = pool.prompt_ids[int(pool.sizes.argmin())]
        raise click.ClickException(f"n = {ns[-1]} is larger than the pool of prompt {prompt!r} "
                                   f"({smallest} candidates); use --n up to {smallest}")
    keys = dict(pool.scores)
    for name, key in (("random", np.zeros_like(pool.correct, dtype=float)),
                      ("oracle", pool.correct.astype(float))):
        keys.setdefault(name, key)

    # (verifiers, len(ns), P): every curve at once; one bootstrap shares its resamples across them.
    per_prompt = np.stack([scaling_curve(key, pool.correct, ns, valid=pool.valid) for key in keys.values()])
    scores = task_scores(per_prompt, pool.tags)
    low, high = bootstrap_intervals(per_prompt, pool.tags, np.random.default_rng(seed), n_boot=n_boot)["overall"]
    tags = [t for t in scores if t != "overall"]
    table: dict[str, dict[int, dict[str, float]]] = {}
    intervals: dict[str, dict[int, tuple[float, float]]] = {}
    for v, verifier in enumerate(keys):
        table[verifier] = {n: {"overall": float(scores["overall"][v, i]),
                               **{t: float(scores[t][v, i]) for t in tags}} for i, n in enumerate(ns)}
        intervals[verifier] = {n: (float(low[v, i]), float(high[v, i])) for i, n in enumerate(ns)}

    if as_json:
        click.echo(json.dumps({v: {str(n): row for n, row in rows.items()} for v, rows in table.items()}, indent=2))
    else:
        click.echo(render_table(table, intervals, len(pool.prompt_ids), int(pool.valid.sum())))
    if plot is not None:
        write_plot(plot, table, intervals)
        click.echo(f"plot written to {plot}", err=True)


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
                    **thresholds: Any) -> Any:
    """A run's pool from the store: verdicts by these evaluator settings, scores by these verifiers."""
    from sqlalchemy.orm import Session

    from harness import registry
    from harness.commands.run import parse_verifier_params
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.runner import RunError, load_verifiers
    from harness.store import StoreError, open_store, pool_arrays

    try:
        spec = EvaluatorSpec(backend=backend, detector=detector, detector_config=detector_config,
                             clip_arch=clip_arch, clip_weights=clip_weights,
                             options=options_from_flags(**thresholds), device=device)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    try:
        with registry.configured(plugins) if plugins else contextlib.nullcontext():
            # The same settings hashes `stepwise run` stored the scores under (the verifiers are built,
            # which for a real reward model loads it: the hash is of its package, version and params).
            keys = {v.name: v.settings_hash for v in load_verifiers(verifiers, parse_verifier_params(verifier_params))}
        engine = open_store(db, upgrade_schema=False)
    except (RunError, registry.PluginError, StoreError) as err:
        raise click.ClickException(str(err)) from None
    try:
        with Session(engine) as s:
            return pool_arrays(s, run_id, backend, spec.key(), keys, max_samples=max_samples)
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    finally:
        engine.dispose()


def render_table(table: dict[str, dict[int, dict[str, float]]],
                 intervals: dict[str, dict[int, tuple[float, float]]], n_prompts: int, n_candidates: int) -> str:
    first = next(iter(table.values()))
    tags = [t for t in next(iter(first.values())) if t != "overall"]
    header = (f"{'verifier':<14} {'n':>3}  {'overall':>7}  {'95% interval':<15}"
              + "".join(f" {t[:13]:>13}" for t in tags))
    lines = [f"{n_prompts} prompts, {n_candidates} candidates", header, "-" * len(header)]
    for verifier, rows in table.items():
        for n, row in rows.items():
            low, high = intervals[verifier][n]
            lines.append(f"{verifier:<14} {n:>3}  {row['overall']:>7.4f}  [{low:.4f}, {high:.4f}]"
                         + "".join(f" {row[t]:>13.4f}" for t in tags))
    return "\n".join(lines)


def write_plot(path: Path, table: dict[str, dict[int, dict[str, float]]],
               intervals: dict[str, dict[int, tuple[float, float]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for verifier, rows in table.items():
        ns = list(rows)
        overall = [rows[n]["overall"] for n in ns]
        low = [intervals[verifier][n][0] for n in ns]
        high = [intervals[verifier][n][1] for n in ns]
        style = "--" if verifier in ("random", "oracle") else "-"
        (line,) = ax.plot(ns, overall, style, marker="o", markersize=3, label=verifier)
        ax.fill_between(ns, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("n (candidates per selection)")
    ax.set_ylabel("GenEval overall (mean over tasks)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
