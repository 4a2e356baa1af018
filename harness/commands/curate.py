"""`stepwise curate`: ranking data (ORM, DPO pairs, PARM) from a run's judged pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from harness.commands.options import evaluator_from_flags, stored_evaluator_options


@click.command("curate")
@click.option("--run", "run_id", required=True, help="The run whose candidates to curate (`stepwise run` prints it).")
@click.option("--db", default=None, help="Store URL [$STEPWISE_DB or sqlite:///stepwise.db].")
@click.option("-o", "--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write: orm.json, dpo.jsonl, parm.json, manifest.json.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the DPO pair draws (numpy default_rng([seed, prompt_index])).")
@click.option("--pool", "max_samples", type=click.IntRange(min=1), default=None,
              help="Use sample indices below this only [all stored].")
@click.option("--parm", "parm", type=click.Choice(["auto", "require", "skip"]), default="auto", show_default=True,
              help="PARM data from step previews: auto = when the run stored previews (else a warning), "
                   "require = fail without them, skip = never (loads no model).")
@click.option("--copy-images", is_flag=True,
              help="Copy every referenced image into OUT/images/<sha256>.png and point the records there.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Step previews per detector call.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the verdict cache when judging previews.")
@click.option("--force", is_flag=True, help="Replace an existing OUT.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The run's --out folder (images/<sha256>.png), when the store does not find it where it was.")
@stored_evaluator_options()
def curate(run_id: str, db: str | None, out: Path, seed: int, max_samples: int | None, parm: str,
           copy_images: bool, batch_size: int, no_cache: bool, force: bool, run_dir: Path | None,
           **evaluator_flags: Any) -> None:
    """Turn run RUN's candidates, labelled by GenEval, into ORM, DPO and PARM training data in OUT.

    The evaluator flags name the stored verdicts the way `stepwise curve --run` does; step previews
    (PARM data) are judged with the same evaluator. The formats are documented in harness/curation.py.
    """
    from harness.curation import CurationError, CurationOptions, evaluator_judge
    from harness.curation import curate as write_curation
    from harness.geneval.cache import default_cache_path
    from harness.submissions.build import evaluator_settings

    spec = evaluator_from_flags(evaluator_flags)
    pool = _read(db, run_id, spec, max_samples, run_dir)
    if parm != "skip" and not pool.has_previews:
        message = (f"run {run_id[:12]}… stored no step previews, so there is no PARM data; `stepwise run` stores "
                   "them when a verifier needs previews (prm, parm)")
        if parm == "require":
            raise click.ClickException(message)
        click.echo(f"warning: {message}; writing ORM and DPO data only", err=True)
    judge = None
    if parm != "skip":
        judge = evaluator_judge(spec, cache_path=None if no_cache else default_cache_path(), batch_size=batch_size)
    options = CurationOptions(seed=seed, copy_images=copy_images, max_samples=max_samples)
    try:
        manifest = write_curation(pool, out, options, judge=judge, evaluator_settings=evaluator_settings(spec),
                                  force=force)
    except CurationError as err:
        raise click.ClickException(str(err)) from None
    counts = manifest["counts"]
    click.echo(f"{out}: {counts['orm']} ORM records ({counts['yes']} yes, {counts['no']} no), {counts['dpo']} DPO "
               f"pairs ({counts['dpo_dropped_all_yes']} prompts all yes and {counts['dpo_dropped_all_no']} all no "
               "dropped)")
    if counts["parm"] is not None:
        click.echo("  PARM: " + ", ".join(f"{task} {n}" for task, n in counts["parm"].items()))


def _read(db: str | None, run_id: str, spec: Any, max_samples: int | None, run_dir: Path | None) -> Any:
    from harness.commands.stored import read_store
    from harness.curation import CurationError, read_pool

    return read_store(db, lambda s: read_pool(s, run_id, spec, max_samples=max_samples, run_dir=run_dir),
                      (CurationError,))
