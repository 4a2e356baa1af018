"""`stepwise analyze`: how well each verifier judges a pool (AUROC, calibration, regret, agreement, steps).

Thin: reads the pool (a JSONL file, or a run from the store as `stepwise curve` does), calls
`harness.analysis.report.analyze`, prints the tables, writes the JSON and the plots.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from harness.commands.options import stored_evaluator_options, suite_param_option


@click.command()
@click.option("--from-jsonl", "pool_path", default=None, type=click.Path(dir_okay=False, path_type=Path),
              help='A pool in `stepwise curve`\'s format ({"prompt_id", "tag", "correct", "scores"}, optionally '
                   '"step_scores": {"<verifier>": [...]}).')
@click.option("--run", "run_id", default=None, help="Read the pool of this run from the store.")
@click.option("--db", default=None, help="Store URL for --run [$STEPWISE_DB or sqlite:///stepwise.db].")
@click.option("--verifier", "verifiers", multiple=True,
              help="A verifier to analyse (with --run: as given to `stepwise run`). Repeatable. "
                   "[--from-jsonl: every verifier in the file]")
@click.option("--verifier-param", "verifier_params", multiple=True, metavar="V:KEY=VALUE",
              help="With --run: a parameter of verifier V, as given to `stepwise run`. Repeatable.")
@click.option("--pool", "max_samples", type=click.IntRange(min=1), default=None,
              help="With --run: use sample indices below this only [all stored].")
@stored_evaluator_options("With --run")
@suite_param_option
@click.option("--plugin", "plugins", multiple=True, metavar="PKG[==VER]", help="Allow this plug-in package.")
@click.option("--n", "ns_text", default=None, help="Subset sizes of the regret curve: 1..20 or 1,2,4,8 "
                                                   "[1 .. the smallest prompt's pool].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the whole report to this JSON file.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write reliability diagrams, per-step AUROC and regret curves (SVG) into this folder.")
@click.option("--bins", "n_bins", type=click.IntRange(min=1, max=100), default=10, show_default=True,
              help="Equal-width bins of the reliability diagrams and ECE.")
@click.option("--bootstrap", "n_boot", type=click.IntRange(min=100), default=1000, show_default=True,
              help="Bootstrap resamples over prompts (stratified by task) for the 95% intervals.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--label", default="", help="A line printed above the report (e.g. which weights made the pool).")
def analyze(pool_path: Path | None, run_id: str | None, ns_text: str | None, json_path: Path | None,
            plot_dir: Path | None, n_bins: int, n_boot: int, seed: int, label: str, **store_flags: Any) -> None:
    """How well each verifier separates the candidates GenEval judges correct from the others.

    Per verifier, per GenEval task and overall: within-prompt AUROC (the probability that a correct
    candidate of a prompt outscores an incorrect one of the same prompt, ties half; prompts whose
    candidates are all correct or all incorrect are left out and counted), pooled AUROC, both with
    stratified bootstrap intervals, average precision; for verifiers whose score is a probability,
    ECE and a reliability diagram; regret vs the oracle at each n (exact) and the share of prompts
    where best-of-N picks an incorrect candidate although a correct one exists; within-prompt
    Spearman and top-1 agreement between verifiers; per-step AUROC of step scores against the final
    verdict; PARM's clarity and potential decisions against it. See README "Comparing verifiers".
    """
    import numpy as np

    from harness.analysis.report import analysis_json, render_text, score_probabilities, with_stored_scores
    from harness.analysis.report import analyze as analyze_pool
    from harness.commands.curve import mapped_errors, store_pool
    from harness.commands.options import parse_ns
    from harness.curves import read_jsonl_pool, write_json

    if (pool_path is None) == (run_id is None):
        raise click.UsageError("give exactly one of --from-jsonl POOL.jsonl and --run RUN_ID")
    verifiers = tuple(store_flags["verifiers"])
    if pool_path is not None:
        with mapped_errors():
            pool = read_jsonl_pool(pool_path)
        names = list(verifiers) or list(pool.scores)
        missing = [v for v in names if v not in pool.scores]
        if missing:
            raise click.ClickException(f"{pool_path}: no scores by {', '.join(missing)}; the pool has "
                                       f"{', '.join(pool.scores)}")
    else:
        if not verifiers:
            raise click.UsageError("--run needs the --verifier names (and --verifier-param values) the run used")
        stored = store_pool(run_id or "", store_flags, verifiers, verifiers)
        pool = with_stored_scores(stored.pool, stored.prompt_scores)
        names = list(verifiers)
    ns = parse_ns(ns_text) if ns_text else None
    try:
        report = analyze_pool(pool, rng=np.random.default_rng(seed), verifiers=names, ns=ns, n_boot=n_boot,
                              n_bins=n_bins, seed=seed, probabilities=score_probabilities(names))
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    click.echo(render_text(report, f"{label}\n" if label else ""))
    if json_path is not None:
        data = analysis_json(report)
        if label:
            data["label"] = label
        json.dumps(data, allow_nan=False)  # strict JSON: undefined values are null, never NaN
        with mapped_errors():
            write_json(json_path, data)
        click.echo(f"report written to {json_path}", err=True)
    if plot_dir is not None:
        from harness.analysis.plots import write_plots

        written = write_plots(report, plot_dir)
        click.echo(f"plots written to {plot_dir}: {', '.join(p.name for p in written)}", err=True)
