"""`stepwise convert-llava`: an lmms-lab LLaVA-NeXT checkpoint (the paper's ORM/PARM) to transformers' layout."""

from __future__ import annotations

from pathlib import Path

import click

from harness.verifiers.convert import DTYPES  # a light import: torch and transformers load in the callback


@click.command()
@click.argument("ckpt", type=click.Path(path_type=Path))
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--vision-config", default=None, metavar="PATH|ID",
              help="Config of the SigLIP vision tower: a JSON file, a folder with config.json, or a hub id in "
                   "the local HF cache. [built-in values when the checkpoint's mm_vision_tower is "
                   "google/siglip-so400m-patch14-384]")
@click.option("--dtype", type=click.Choice(DTYPES), default="keep", show_default=True,
              help="Dtype of the written weights (keep: the checkpoint's own, bfloat16 for the paper's).")
@click.option("--force", is_flag=True, help="Replace OUT if it is not empty.")
def convert_llava(ckpt: Path, out: Path, vision_config: str | None, dtype: str, force: bool) -> None:
    """Convert the LLaVA-NeXT checkpoint folder CKPT into a transformers checkpoint folder OUT.

    \b
    Where CKPT comes from: the paper's fine-tuned ORM and PARM (the Hugging Face repo
    ZiyuG/Image-Generation-CoT, trained with LLaVA-NeXT from lmms-lab/llava-onevision-qwen2-7b-ov)
    and lmms-lab/llava-onevision-* itself are stored in LLaVA-NeXT's own layout: a Qwen2
    config.json with mm_* fields (LlavaQwenForCausalLM), weights named after LLaVA's modules and
    a Qwen2 tokenizer. transformers cannot load that folder. Download it on a machine with
    internet (`hf download ZiyuG/Image-Generation-CoT`) and point CKPT at the model's folder.

    \b
    What OUT is: the same model as transformers' LlavaOnevisionForConditionalGeneration
    (weights renamed, nothing recomputed), its tokenizer with "<image>"/"<video>" added, Qwen2's
    chat template and the SigLIP/anyres image processor, loadable with
    AutoModelForImageTextToText and AutoProcessor. Use it as `--param model=OUT` of the orm,
    prm and parm verifiers, e.g.

    \b
      stepwise convert-llava ckpts/parm ckpts/parm-hf
      stepwise run ... --verifier parm --verifier-param parm:model=ckpts/parm-hf

    OUT is written as OUT.partial and renamed when complete; it also holds
    stepwise-conversion.json (source, vision config used, the lmms-lab settings). The whole
    checkpoint is held in memory while converting (about 16 GB for the 7B models in bfloat16).
    """
    from harness.verifiers.convert import ConversionError, convert_llava_checkpoint
    from harness.weights import MissingWeightsError

    try:
        written = convert_llava_checkpoint(ckpt, out, dtype=dtype, vision_config=vision_config, force=force)
    except (ConversionError, MissingWeightsError) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:  # disk full, permissions: name the file
        raise click.ClickException(f"{err.filename or out}: {err.strerror or err}") from None
    click.echo(f"wrote {written} (transformers LlavaOnevision; load with AutoModelForImageTextToText)")
