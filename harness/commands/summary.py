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
              help="Summarise results from different detector backends together (not advised).")
def summary(results: Path, as_json: bool, allow_mixed_backends: bool) -> None:
    """Summarise RESULTS (a results.jsonl from `stepwise eval`, `rescore` or GenEval itself).

    Prints total images and prompts, % correct images and prompts, accuracy per task and
    the overall score (the mean over tasks), as GenEval's summary_scores.py does.
    '-' reads standard input.
    """
    from harness.geneval.summary import parse_results, summarize

    name = "<stdin>" if str(results) == "-" else str(results)
    try:
        text = sys.stdin.read() if name == "<stdin>" else results.read_text(encoding="utf-8")
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
