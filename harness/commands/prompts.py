"""`stepwise prompts`: write prompt suites."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def prompts() -> None:
    """Write prompt suites to a folder."""


@prompts.command("geneval")
@click.option("--seed", default=43, show_default=True, help="Seed of numpy's default_rng (GenEval: 43).")
@click.option("--per-task", default=100, show_default=True, type=click.IntRange(min=0),
              help="Prompts drawn per task other than single_object (always all 80 classes).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for evaluation_metadata.jsonl and generation_prompts.txt.")
def geneval(seed: int, per_task: int, out_dir: Path) -> None:
    """GenEval's suite, generated with GenEval's algorithm.

    With the defaults the two files are byte-identical to GenEval's published
    prompts/evaluation_metadata.jsonl (553 prompts) and prompts/generation_prompts.txt.
    """
    from collections import Counter

    from harness.prompts import geneval_suite, write_suite

    samples = geneval_suite(seed=seed, per_task=per_task)
    metadata_path, prompts_path = write_suite(samples, out_dir)
    counts = Counter(s["tag"] for s in samples)
    click.echo(f"wrote {len(samples)} prompts to {metadata_path} and {prompts_path}")
    click.echo("  " + ", ".join(f"{tag} {n}" for tag, n in counts.items()))


@prompts.command("geneval2")
@click.option("--from", "source", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Your copy of GenEval 2's geneval2_data.jsonl (CC BY-NC 4.0; not shipped with stepwise).")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for evaluation_metadata.jsonl, generation_prompts.txt and suite.json.")
def geneval2(source: Path, out_dir: Path) -> None:
    """GenEval 2's suite (800 prompts), from your copy of the data file.

    Every line is checked; the file's sha256 is compared with the published file's (another file is
    accepted with a warning) and recorded in suite.json. evaluation_metadata.jsonl holds the records
    in order, for the published file byte-identical to it.
    """
    from harness.geneval2.data import PUBLISHED_SHA256, DataError, read_data, write_suite

    try:
        suite = read_data(source)
        written = write_suite(suite, out_dir)
    except (DataError, OSError) as err:
        raise click.ClickException(str(err)) from None
    if not suite.published:
        click.echo(f"warning: {source}: sha256 {suite.sha256} is not the published file's ({PUBLISHED_SHA256}); "
                   f"accepted, and recorded in {out_dir / 'suite.json'}", err=True)
    click.echo(f"wrote {len(suite.records)} prompts ({suite.questions} questions) to {written[0]} and {written[1]}")
    click.echo("  skills: " + ", ".join(f"{skill} {n}" for skill, n in suite.skill_counts().items()))
    click.echo("  atom counts: " + ", ".join(f"{k}: {n}" for k, n in suite.atom_counts().items()))


@prompts.command("train")
@click.option("--per-task", required=True, type=click.IntRange(min=0),
              help="Prompts per GenEval task (fewer where a task runs out: single_object has only 80).")
@click.option("--seed", default=0, show_default=True, help="Seed of numpy's default_rng for the draws.")
@click.option("--exclude", "excludes", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Another evaluation_metadata.jsonl to stay disjoint from (GenEval's 553 prompts always are). "
                   "Repeatable.")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for evaluation_metadata.jsonl and generation_prompts.txt.")
def train(per_task: int, seed: int, excludes: tuple[Path, ...], out_dir: Path) -> None:
    """Training prompts: GenEval's templates and classes, none of them in an evaluation suite.

    A prompt is left out when its text, or what GenEval checks (tag, include and exclude
    clauses), equals that of a prompt in GenEval's suite (seed 43, 100 per task) or in an
    --exclude file. The files are in GenEval's format: `stepwise run --suite DIR/evaluation_metadata.jsonl`
    generates and judges a pool of them.
    """
    from collections import Counter

    from harness.prompts import TASK_SPACES, geneval_suite, overlapping, read_metadata, training_suite, write_suite

    exclude = geneval_suite()
    for path in excludes:
        try:
            exclude.extend(read_metadata(path))
        except ValueError as err:  # read_metadata names the file and line
            raise click.ClickException(str(err)) from None
    samples = training_suite(per_task=per_task, seed=seed, exclude=exclude)
    if overlapping(samples, exclude):  # guaranteed by construction; checked because it is the point
        raise click.ClickException("internal error: a training prompt overlaps an excluded one")
    metadata_path, prompts_path = write_suite(samples, out_dir)
    counts = Counter(s["tag"] for s in samples)
    click.echo(f"wrote {len(samples)} prompts to {metadata_path} and {prompts_path} "
               f"(disjoint from {len(exclude)} excluded prompts)")
    click.echo("  " + ", ".join(f"{space.tag} {counts[space.tag]}" for space in TASK_SPACES))
    for space in TASK_SPACES:
        if counts[space.tag] < per_task:
            click.echo(f"warning: {space.tag}: only {counts[space.tag]} of {per_task}; the task has "
                       f"{space.size} prompts and the rest overlap the excluded suites", err=True)
