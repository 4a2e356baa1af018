"""`stepwise validate`: check submission folders the way the leaderboard loads them."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("validate")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(paths: tuple[Path, ...]) -> None:
    """Check entry folders (submissions/X ...) or a root of them (submissions/).

    A folder with a submission.toml is an entry; any other folder is a root whose subfolders
    are entries. Manifests, exports and image hashes are checked and every reproduced score
    is recomputed. Prints each problem and exits 1 on any.
    """
    from harness.submissions.load import SubmissionError, load_all, load_entry
    from harness.submissions.model import MANIFEST_NAME, Entry, ValidationProblem

    entries: list[Entry] = []
    problems: list[ValidationProblem] = []
    for path in paths:
        if not path.exists() and not path.is_symlink():
            problems.append(ValidationProblem(path, "", "does not exist"))
        elif path.is_dir() and not path.is_symlink() and not (path / MANIFEST_NAME).exists():
            found, wrong = load_all(path)
            entries += found
            problems += wrong
        else:
            try:
                entries.append(load_entry(path))
            except SubmissionError as err:
                problems += err.problems
    for entry in entries:
        overall = entry.scores.get("overall")
        shown = f"overall {overall:.4f}" if overall is not None else "no overall"
        click.echo(f"ok  {entry.folder}  ({entry.manifest.kind}, {shown})")
    for problem in problems:
        click.echo(f"error  {problem}", err=True)
    bad = len({p.folder for p in problems})
    click.echo(f"{len(entries)} valid, {bad} invalid", err=True)
    if problems:
        raise SystemExit(1)
