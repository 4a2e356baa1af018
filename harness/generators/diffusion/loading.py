"""Finding a diffusers pipeline on this machine, checking it is one we support, and loading it.

A pipeline is a folder with `model_index.json` (its class and components) and one subfolder per
component, as `DiffusionPipeline.save_pretrained` writes it and as hub repos hold it: a local
folder, or a hub id found in the Hugging Face cache by the project's one locator
(`harness.weights.locate`). Nothing downloads. Each problem is one line: a folder that is not a
pipeline, a class we do not support (with the supported ones), components missing from the folder
(with the `hf download` command that fetches them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.devices import hub_offline
from harness.weights import MissingWeightsError, WeightsSpec, fetch_command, locate, looks_like_path, weight_files

if TYPE_CHECKING:
    import torch

__all__ = ["PIPELINE_WEIGHTS", "find_pipeline", "geometry", "load_pipeline", "resolve_dtype"]

# A placeholder repo for the fetch hint when the user named a local folder that is not there.
PIPELINE_WEIGHTS = WeightsSpec("diffusers pipeline", default_repo="OWNER/PIPELINE", files=("model_index.json",),
                               weights=False)
MODEL_COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
# Components the generator does not load (SD's safety checker and its image processor).
SKIPPED = ("safety_checker", "feature_extractor", "image_encoder")


def _read_index(folder: Path) -> dict[str, Any]:
    path = folder / "model_index.json"
    try:
        index = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable model_index.json ({err})") from None
    if not isinstance(index, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return index


def _component_problems(folder: Path, index: dict[str, Any]) -> list[str]:
    """What the components named in model_index.json lack in `folder` ([] when all are there)."""
    missing = []
    for name, value in index.items():
        if name.startswith("_") or name in SKIPPED or not isinstance(value, list) or value[:1] == [None]:
            continue
        sub = folder / name
        if not sub.is_dir() or not any(sub.iterdir()):
            missing.append(f"{name}/")
        elif name in MODEL_COMPONENTS:
            if not (sub / "config.json").is_file():
                missing.append(f"{name}/config.json")
            if not weight_files(sub):
                missing.append(f"{name}/ weights")
        elif name.startswith("scheduler") and not (sub / "scheduler_config.json").is_file():
            missing.append(f"{name}/scheduler_config.json")
    return missing


def find_pipeline(pipeline: str) -> tuple[Path, dict[str, Any]]:
    """(folder, model_index.json) of `pipeline`, a local folder or a hub id in the HF cache; the
    index's `_class_name` is a supported class.

    Raises ValueError (not a pipeline, unsupported class) or MissingWeightsError (not on this
    machine, or components missing), each one line saying what to do.
    """
    from harness.generators.diffusion.families import FAMILIES, supported_classes

    local = Path(pipeline).expanduser()
    if local.is_dir() and not (local / "model_index.json").is_file():
        single = ""
        config = local / "config.json"
        if config.is_file():
            try:
                single = f"; its config.json describes a single {json.loads(config.read_text())['_class_name']}"
            except (OSError, ValueError, KeyError, TypeError):
                pass
        raise ValueError(f"{local} is not a diffusers pipeline folder: it has no model_index.json{single}. Pass a "
                         "folder written by DiffusionPipeline.save_pretrained, or a hub id in the HF cache")
    folder = locate(pipeline, PIPELINE_WEIGHTS)
    index = _read_index(folder)
    name = index.get("_class_name")
    if name not in FAMILIES:
        raise ValueError(f"{folder} holds a {name or 'pipeline with no _class_name'}, which the diffusers "
                         f"generator does not support; supported: {supported_classes()}")
    missing = _component_problems(folder, index)
    if missing:
        repo = str(pipeline) if not looks_like_path(pipeline) else PIPELINE_WEIGHTS.default_repo
        offline = " Offline mode is on (HF_HUB_OFFLINE), so nothing is downloaded." if hub_offline() else ""
        raise MissingWeightsError(
            f"diffusers pipeline {pipeline!r} at {folder} is incomplete: missing {', '.join(missing)}.{offline} "
            f"On a machine with internet run `{fetch_command(repo)}` and copy the cache (HF_HOME) here, or pass a "
            "complete local folder.")
    return folder, index


def geometry(folder: Path) -> tuple[int, int] | None:
    """(VAE downsampling, denoiser patch size) from the component configs, as the pipelines compute
    the former (2 ** (VAE blocks - 1)); None when the configs do not say (then the check waits for the load)."""
    try:
        vae = json.loads((folder / "vae" / "config.json").read_text())
        blocks = vae.get("encoder_block_out_channels") or vae["block_out_channels"]  # AutoencoderDC, AutoencoderKL
        transformer = folder / "transformer" / "config.json"
        patch = json.loads(transformer.read_text()).get("patch_size", 1) if transformer.is_file() else 1
        return 2 ** (len(blocks) - 1), int(patch)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_dtype(name: str, device: str, cuda_default: str) -> torch.dtype:
    """The torch dtype for the `dtype` parameter: auto = the family's CUDA dtype on CUDA, float32 elsewhere."""
    import torch

    if name == "auto":
        name = cuda_default if device.startswith("cuda") else "float32"
    return getattr(torch, name)


def load_pipeline(folder: Path, class_name: str, *, dtype: torch.dtype, device: str, variant: str | None,
                  extra: dict[str, Any]) -> Any:
    """The pipeline of `folder` on `device`, loaded by diffusers offline (local_files_only)."""
    import diffusers

    cls = getattr(diffusers, class_name)
    kwargs = {**extra, **({"variant": variant} if variant else {})}
    try:
        pipe = cls.from_pretrained(folder, dtype=dtype, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"{folder}: diffusers could not load it as a {class_name} ({type(err).__name__}: "
                         f"{first})") from err
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
