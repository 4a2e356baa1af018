"""`stepwise summary`: GenEval's summary_scores.py, same figures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click


@click.command()
@click.argument("results", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as one JSON object.")
@click.option("--allow-mixed-backends", is_flag=True,
              help="Summarise results from different detector backends (GenEval 2: VQA models or settings) "
                   "together (not advised).")
def summary(results: Path, as_json: bool, allow_mixed_backends: bool) -> None:
    """Summarise RESULTS (a results.jsonl from `stepwise eval`, `rescore` or GenEval itself).

    Prints total images and prompts, % correct images and prompts, accuracy per task and
    the overall score (the mean over tasks), as GenEval's summary_scores.py does.
    For GenEval 2 results (`stepwise eval --suite geneval2`): Soft-TIFA GM and AM, TIFA, VQAScore,
    per skill and per atomicity, as GenEval 2's evaluation.py and soft_tifa_analysis.py do.
    '-' reads standard input.
    """
    from harness.geneval.summary import parse_results, summarize
    from harness.geneval2 import summary as geneval2

    name = "<stdin>" if str(results) == "-" else str(results)
    try:
        text = sys.stdin.read() if name == "<stdin>" else results.read_text(encoding="utf-8")
        if geneval2.is_results(text):
            _summary_geneval2(text, name, as_json, allow_mixed_backends)
            return
        records = parse_results(text.splitlines(), name)
        report = summarize(records)
    except OSError as err:
        raise click.ClickException(f"{results}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise click.ClickException(f"{name}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except ValueError as err:
        raise click.ClickException(str(err)) from None
    if len(report.backends) > 1 and not allow_mixed_backends:
        raise click.ClickException(
            f"{name} mixes detector backends ({', '.join(report.backends)}); their verdicts come from "
            "different weights. Summarise them separately, or pass --allow-mixed-backends."
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.to_text())
        if report.backends:
            click.echo(f"Detector backend: {', '.join(report.backends)}")


def _summary_geneval2(text: str, name: str, as_json: bool, allow_mixed: bool) -> None:
    from harness.geneval2.summary import evaluator_keys, parse_results, summarize

    records = parse_results(text.splitlines(), name)
    report = summarize(records)
    if len(evaluator_keys(records)) > 1 and not allow_mixed:
        raise click.ClickException(
            f"{name} mixes GenEval 2 evaluator settings ({'; '.join(report.models)}); their probabilities come from "
            "different models or settings. Summarise them separately, or pass --allow-mixed-backends."
        )
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.to_text())
        click.echo(f"VQA model: {', '.join(report.models)}")
