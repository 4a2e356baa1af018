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
