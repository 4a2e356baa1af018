"""`stepwise leaderboard build|serve`: the static leaderboard site from `submissions/`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from harness.commands.options import recheck_options, recheck_plan


@click.group()
def leaderboard() -> None:
    """Build the static leaderboard site, or preview it on localhost."""


@leaderboard.command()
@click.option("--submissions", "submissions_dir", default="submissions", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="One folder per entry, each with a manifest.")
@click.option("--out", default="site", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="Site folder, replaced as a whole when the build succeeds.")
@click.option("--strict", is_flag=True, help="Exit 1 when any submission is invalid (it is skipped either way).")
@recheck_options
def build(submissions_dir: Path, out: Path, strict: bool, **flags: Any) -> None:
    """Validate every submission and write the static site (index, scaling, entries, compare, JSON).

    Reproduced entries are checked for consistency and re-checked with the recorded evaluator and
    verifiers on a random sample of their images (see `stepwise validate`); re-checked ones are
    ranked in the main table, the others shown apart, labelled "not re-checked".
    """
    import contextlib

    from harness import registry
    from harness.submissions.load import load_all
    from harness.submissions.verify import recheck_all
    from leaderboard.build import SiteError, build_site

    if not submissions_dir.is_dir():
        raise click.BadParameter(f"{submissions_dir} is not a folder", param_hint="--submissions")
    plan, plugins = recheck_plan(flags)
    with registry.configured(plugins) if plugins else contextlib.nullcontext():
        entries, load_problems = load_all(submissions_dir, geneval2_data=plan.geneval2_data)
        if plan.count != 0 and any(e.manifest.kind == "reproduced" for e in entries):
            click.echo(f"re-check seed {plan.seed} (--recheck-seed {plan.seed} repeats this draw)", err=True)
        entries, refused = recheck_all(entries, plan, log=lambda m: click.echo(m, err=True))
    load_problems += refused
    try:
        report = build_site(entries, out)
    except SiteError as error:
        raise click.ClickException(str(error)) from None
    problems = [str(p) for p in load_problems] + report.problems
    for problem in problems:
        click.echo(f"skipped: {problem}", err=True)
    click.echo(f"wrote {out}: {report.entries} entries, {report.pages} pages, {report.images} images"
               + (f"; {len(problems)} problems (above)" if problems else ""))
    if strict and problems:
        raise SystemExit(1)


@leaderboard.command()
@click.option("--out", default="site", show_default=True, type=click.Path(file_okay=False, path_type=Path),
              help="The built site folder.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
def serve(out: Path, port: int) -> None:
    """Preview the built site at http://127.0.0.1:PORT/ (localhost only; Ctrl-C stops)."""
    from leaderboard.serve import make_server

    if not (out / "index.html").is_file():
        raise click.ClickException(f"{out}/index.html not found; run `stepwise leaderboard build --out {out}` first")
    server = make_server(out, port)
    host, bound = server.server_address[:2]
    click.echo(f"serving {out} at http://{host}:{bound}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
