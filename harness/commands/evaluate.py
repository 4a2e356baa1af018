"""`stepwise eval`: GenEval's evaluate_images.py, batched and cached."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness.commands.options import options_from_flags, threshold_options

if TYPE_CHECKING:
    from harness.geneval.evaluator import EvaluatorSpec


GENEVAL2_ONLY = ("prompts_path", "vqa_model", "dtype", "vqascore")
GENEVAL_ONLY = ("backend", "detector", "detector_config", "clip_arch", "clip_weights", "extra", "color_mode",
                "threshold", "counting_threshold", "max_objects", "max_overlap", "position_threshold")


@click.command("eval")
@click.argument("image_dir", type=click.Path(path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="results.jsonl to write (GenEval's keys, plus raw detections for `rescore`).")
@click.option("--backend", type=click.Choice(["mmdet", "hf"]), default="mmdet", show_default=True,
              help="Detector: mmdet = GenEval's own Mask2Former Swin-S (reference); "
                   "hf = transformers Mask2Former (different weights, different verdicts).")
@click.option("--detector", metavar="PATH|ID", default=None,
              help="mmdet: checkpoint .pth (required). hf: local folder or hub id in the HF cache "
                   "[default: facebook/mask2former-swin-small-coco-instance].")
@click.option("--detector-config", type=click.Path(dir_okay=False, exists=True), default=None,
              help="mmdet config file [default: mmdet's mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py].")
@click.option("--clip-arch", default="ViT-L-14-quickgelu", show_default=True,
              help="open_clip architecture of the colour classifier (GenEval: ViT-L-14, QuickGELU).")
@click.option("--clip-weights", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Local open_clip checkpoint [default: OpenAI ViT-L-14 weights from the HF cache].")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per detector call (their colour crops share one CLIP pass); geneval2: images whose "
                   "questions share one forward.")
@threshold_options
@click.option("--options", "extra", multiple=True, metavar="KEY=VALUE",
              help="GenEval-style option (threshold=0.3 ...); overrides the flags. Repeatable.")
@click.option("--colors", "color_mode", type=click.Choice(["needed", "all"]), default="needed",
              show_default=True,
              help="needed: classify only the colours the verdict uses (as GenEval). all: also store "
                   "the colour of every detection of a colour-clause class, for `rescore`.")
@click.option("--device", default=None, help="cuda, cuda:1, cpu ... [default: cuda if available].")
@click.option("--on-error", type=click.Choice(["fail", "skip"]), default="fail", show_default=True,
              help="On a bad image or metadata file: stop (keeping what was written), or skip it.")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Verdict cache [default: $STEPWISE_CACHE_DIR or ~/.cache/stepwise/verdicts.sqlite].")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the verdict cache.")
@click.option("--suite", type=click.Choice(["geneval", "geneval2"]), default="geneval", show_default=True,
              help="geneval2: GenEval 2 with Soft-TIFA (a VQA model); IMAGE_DIR may then also be the reference's "
                   "{prompt: image path} JSON.")
@click.option("--prompts", "prompts_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="geneval2: the suite folder of `stepwise prompts geneval2` (or its .jsonl). Needed for a "
                   "mapping; with a folder, each prompt folder's record is checked against it.")
@click.option("--vqa-model", default=None, metavar="PATH|ID",
              help="geneval2: the Qwen3-VL checkpoint, a local folder or hub id in the HF cache "
                   "[default: Qwen/Qwen3-VL-8B-Instruct, the reference's].")
@click.option("--dtype", type=click.Choice(["auto", "bfloat16", "float16", "float32"]), default="auto",
              show_default=True, help="geneval2: model dtype; auto = the checkpoint's (bfloat16), as the reference.")
@click.option("--vqascore/--no-vqascore", default=True, show_default=True,
              help="geneval2: also score VQAScore (one more question per image).")
def eval_command(image_dir: Path, out: Path, backend: str, detector: str | None,
                 detector_config: str | None, clip_arch: str, clip_weights: str | None,
                 batch_size: int, extra: tuple[str, ...], color_mode: str, device: str | None,
                 on_error: str, cache_path: Path | None, no_cache: bool, suite: str, prompts_path: Path | None,
                 vqa_model: str | None, dtype: str, vqascore: bool, **flags: float) -> None:
    """Evaluate the GenEval image folder IMAGE_DIR (NNNNN/metadata.jsonl, NNNNN/samples/NNNN.png).

    Writes one line per image with GenEval's keys (filename, tag, prompt, correct, reason,
    metadata, details) plus the raw detections, the backend and the settings hash.
    Results are written to OUT.partial as they come and renamed to OUT at the end; an
    interrupted run keeps OUT.partial, and re-running finishes from the verdict cache.

    With --suite geneval2, IMAGE_DIR holds GenEval 2 records (the same layout) or is the reference's
    prompt -> image path JSON (with --prompts); each line then holds the per-question Soft-TIFA
    probabilities, TIFA answers and VQAScore of one image (`stepwise summary` prints the figures).
    """
    from harness.geneval.evaluator import EvaluatorSpec

    foreign = _foreign_options(GENEVAL_ONLY if suite == "geneval2" else GENEVAL2_ONLY)
    if foreign:
        raise click.UsageError(f"{', '.join(foreign)}: not an option of --suite {suite}")
    if suite == "geneval2":
        from harness.geneval2.evaluator import DEFAULT_MODEL, SoftTifaSpec

        spec2 = SoftTifaSpec(model=vqa_model or DEFAULT_MODEL, dtype=dtype, device=device, vqascore=vqascore)
        run_eval_geneval2(image_dir, prompts_path, out, spec2, batch_size=batch_size, on_error=on_error,
                          cache_path=None if no_cache else cache_path, use_cache=not no_cache)
        return
    options = options_from_flags(extra=extra, **flags)  # type: ignore[arg-type]
    try:
        spec = EvaluatorSpec(backend=backend, detector=detector, detector_config=detector_config,
                             clip_arch=clip_arch, clip_weights=clip_weights, options=options,
                             color_mode=color_mode, device=device)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    run_eval(image_dir, out, spec, batch_size=batch_size, on_error=on_error,
             cache_path=None if no_cache else cache_path, use_cache=not no_cache)


def run_eval(image_dir: Path, out: Path, spec: EvaluatorSpec, batch_size: int, on_error: str,
             cache_path: Path | None, use_cache: bool) -> None:
    from tqdm import tqdm

    from harness.geneval.cache import VerdictCache, default_cache_path
    from harness.geneval.evaluator import ImageError, Models, evaluate_samples
    from harness.geneval.folder import scan_image_folder

    try:
        scan = scan_image_folder(image_dir)
    except (OSError, ValueError) as err:
        raise click.ClickException(str(err)) from None
    if scan.ignored:
        click.echo(f"note: ignoring {len(scan.ignored)} file(s) not named NNNN.png, e.g. "
                   f"{scan.ignored[0]}", err=True)
    if scan.problems:
        listing = "\n".join(f"  {p}" for p in scan.problems)
        if on_error == "fail":
            if len(scan.problems) == 1:  # one line, naming the file
                raise click.ClickException(f"{scan.problems[0]} (use --on-error skip to evaluate the rest)")
            raise click.ClickException(f"{len(scan.problems)} problem(s) in {image_dir}:\n{listing}\n"
                                       "(use --on-error skip to evaluate the rest)")
        click.echo(f"skipping {len(scan.problems)} prompt folder(s):\n{listing}", err=True)
    if not scan.samples:
        raise click.ClickException(f"{image_dir}: no images to evaluate")

    cache = VerdictCache(cache_path or default_cache_path()) if use_cache else None
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    n_written = n_correct = 0
    skipped: list[ImageError] = []
    started = time.perf_counter()
    try:
        with open(partial, "w", encoding="utf-8") as fp, \
                tqdm(total=len(scan.samples), unit="img", desc="eval", disable=None) as bar:
            records = evaluate_samples(scan.samples, spec, Models(spec), cache=cache,
                                       batch_size=batch_size, on_error=on_error, progress=bar)
            for item in records:
                if isinstance(item, ImageError):
                    skipped.append(item)
                    click.echo(f"skipped {item.message}", err=True)
                    continue
                fp.write(json.dumps(item) + "\n")
                n_written += 1
                n_correct += bool(item["correct"])
                if n_written % batch_size == 0:
                    fp.flush()
    except Exception as err:
        from harness.cli import user_error
        from harness.geneval.folder import ImageDecodeError

        # A bad image (it names itself) or the machine's error is the user's; anything else is a bug.
        message = str(err) if isinstance(err, ImageDecodeError | ValueError) else user_error(err)
        if message is None:
            raise
        raise click.ClickException(
            f"{message}; {n_written} result(s) kept in {partial}, re-running resumes from the cache (--on-error "
            "skip skips bad images)"
        ) from None
    finally:
        if cache is not None:
            cache.close()
    os.replace(partial, out)
    seconds = time.perf_counter() - started
    click.echo(f"{n_written} images judged ({n_correct} correct), {len(skipped)} skipped, "
               f"{seconds:.1f}s -> {out}", err=True)


def _foreign_options(names: tuple[str, ...]) -> list[str]:
    """The options among `names` that the user set (not left at their defaults), as --flag names."""
    ctx = click.get_current_context()
    found = []
    for param in ctx.command.params:
        if param.name in names and ctx.get_parameter_source(param.name) != click.core.ParameterSource.DEFAULT:
            found.append(param.opts[0])
    return found


def run_eval_geneval2(images: Path, prompts_path: Path | None, out: Path, spec: Any, batch_size: int, on_error: str,
                      cache_path: Path | None, use_cache: bool) -> None:
    from harness.geneval2.data import DataError, read_suite
    from harness.geneval2.evaluator import EvalError, write_results
    from harness.geneval2.inputs import InputError, scan_inputs

    try:
        suite = read_suite(prompts_path) if prompts_path is not None else None
        scan = scan_inputs(images, suite)
    except (DataError, InputError, OSError) as err:
        raise click.ClickException(str(err)) from None
    for note in scan.notes:
        click.echo(f"note: {note}", err=True)
    if scan.ignored:
        click.echo(f"note: ignoring {len(scan.ignored)} file(s) not named NNNN.png, e.g. {scan.ignored[0]}", err=True)
    if scan.problems:
        listing = "\n".join(f"  {p}" for p in scan.problems[:20])
        more = f"\n  ... and {len(scan.problems) - 20} more" if len(scan.problems) > 20 else ""
        if on_error == "fail":
            raise click.ClickException(f"{len(scan.problems)} problem(s) in {images}:\n{listing}{more}\n"
                                       "(use --on-error skip to evaluate the rest)")
        click.echo(f"skipping {len(scan.problems)} input(s):\n{listing}{more}", err=True)
    if not scan.images:
        raise click.ClickException(f"{images}: no images to evaluate")
    try:
        outcome = write_results(scan.images, out, spec, batch_size=batch_size, on_error=on_error,
                                cache_path=cache_path, use_cache=use_cache,
                                on_skip=lambda e: click.echo(f"skipped {e.message}", err=True))
    except EvalError as err:
        raise click.ClickException(str(err)) from None
    mean = "" if outcome.mean_soft_tifa_gm is None else f", mean Soft-TIFA GM {100 * outcome.mean_soft_tifa_gm:.2f}"
    click.echo(f"{outcome.written} images scored{mean}, {len(outcome.skipped)} skipped, {outcome.seconds:.1f}s "
               f"-> {out}", err=True)
