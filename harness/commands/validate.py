"""`stepwise validate`: check submission folders the way the leaderboard loads them, and re-check them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from harness.commands.options import recheck_options, recheck_plan


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@recheck_options
@click.option("--require-recheck", is_flag=True,
              help="Exit 1 also when a reproduced entry could not be re-checked with the models (a maintainer's "
                   "check before merging).")
def validate(paths: tuple[Path, ...], require_recheck: bool, **flags: Any) -> None:
    """Check entry folders (submissions/X ...) or a root of them (submissions/).

    A folder with a submission.toml is an entry; any other folder is a root whose subfolders
    are entries. Manifests, exports and image hashes are checked, every reproduced export's
    verdicts, detections, images and scores are checked for consistency, every reproduced score
    is recomputed, and a random sample of each entry's images is re-judged and re-scored with the
    recorded evaluator and verifiers wherever they can be located (--models). Prints each problem
    and exits 1 on any.
    """
    import contextlib

    from harness import registry
    from harness.submissions.load import SubmissionError, load_all, load_entry
    from harness.submissions.model import MANIFEST_NAME, Entry, ValidationProblem
    from harness.submissions.verify import describe, recheck_all

    plan, plugins = recheck_plan(flags)
    entries: list[Entry] = []
    problems: list[ValidationProblem] = []
    with registry.configured(plugins) if plugins else contextlib.nullcontext():
        for path in paths:
            if not path.exists() and not path.is_symlink():
                problems.append(ValidationProblem(path, "", "does not exist"))
            elif path.is_dir() and not path.is_symlink() and not (path / MANIFEST_NAME).exists():
                found, wrong = load_all(path, geneval2_data=plan.geneval2_data)
                entries += found
                problems += wrong
            else:
                try:
                    entries.append(load_entry(path, geneval2_data=plan.geneval2_data))
                except SubmissionError as err:
                    problems += err.problems
        if plan.count != 0 and any(e.manifest.kind == "reproduced" for e in entries):
            click.echo(f"re-check seed {plan.seed} (--recheck-seed {plan.seed} repeats this draw)", err=True)
        entries, refused = recheck_all(entries, plan, log=lambda m: click.echo(m, err=True))
    problems += refused
    unverified = 0
    for entry in entries:
        overall = entry.scores.get("overall")
        shown = f"overall {overall:.4f}" if overall is not None else "no overall"
        checked = "" if entry.manifest.kind == "reported" else f"; {describe(entry.verification)}"
        unverified += entry.manifest.kind == "reproduced" and (
            entry.verification is None or entry.verification.level != "rechecked")
        click.echo(f"ok  {entry.folder}  ({entry.manifest.kind}, {shown}{checked})")
    for problem in problems:
        click.echo(f"error  {problem}", err=True)
    bad = len({p.folder for p in problems})
    click.echo(f"{len(entries)} valid, {bad} invalid" + (f", {unverified} not re-checked" if unverified else ""),
               err=True)
    if problems or (require_recheck and unverified):
        raise SystemExit(1)
