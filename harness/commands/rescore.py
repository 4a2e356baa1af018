"""`stepwise rescore`: GenEval's verdict rules over stored detections, no model needed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from harness.commands.options import options_from_flags, threshold_options


@click.command()
@click.argument("detections", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write JSONL here (default: standard output).")
@threshold_options
@click.option("--options", "extra", multiple=True, metavar="KEY=VALUE",
              help="GenEval-style option (threshold, counting_threshold, max_objects, max_overlap, "
                   "position_threshold); overrides the flags. Repeatable.")
def rescore(detections: Path, out: Path | None, extra: tuple[str, ...], **flags: float) -> None:
    """Re-judge DETECTIONS.jsonl with other thresholds.

    \b
    Each input line:
      {"metadata": {...GenEval metadata...},
       "detections": {"cup": [{"box": [x1, y1, x2, y2], "score": 0.93, "color": "red"}]}}
    Raw detections: not yet thresholded or sorted. The results.jsonl written by
    `stepwise eval` is valid input. Output: one JSON line per input line, in order, with
    GenEval's keys (correct, reason, details, ...). '-' reads standard input.
    """
    from harness.geneval.rescore import RescoreInputError, rescore_lines

    options = options_from_flags(extra=extra, **flags)  # type: ignore[arg-type]
    source = "<stdin>" if str(detections) == "-" else str(detections)
    if out is not None and source != "<stdin>" and _same_file(detections, out):
        raise click.ClickException(f"-o {out}: that is the input file; write the re-scored results elsewhere "
                                   "(the input is left as it is)")
    try:
        lines = sys.stdin if source == "<stdin>" else open(detections, encoding="utf-8")
    except OSError as err:
        raise click.ClickException(f"{detections}: cannot read ({err.strerror})") from None
    # Judge everything before writing anything, so a bad line never leaves a half-written file.
    try:
        with lines:
            records = list(rescore_lines(lines, options, source))
    except RescoreInputError as err:
        raise click.ClickException(str(err)) from None
    except UnicodeDecodeError:
        raise click.ClickException(f"{source}: not UTF-8 text") from None
    if not records:
        raise click.ClickException(f"{source}: empty: no detections to re-score")
    text = "".join(json.dumps(r) + "\n" for r in records)
    if out is None:
        click.echo(text, nl=False)
    else:
        from harness.jsonl import write_atomic

        try:
            write_atomic(out, text)
        except OSError as err:
            raise click.ClickException(f"{err.filename or out}: cannot write ({err.strerror})") from None
        n_correct = sum(r["correct"] for r in records)
        click.echo(f"re-scored {len(records)} images ({n_correct} correct) -> {out}", err=True)


def _same_file(a: Path, b: Path) -> bool:
    """Whether `b` names the file `a` (also through another path or a link)."""
    try:
        return b.exists() and a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()
