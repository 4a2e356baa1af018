"""Finding model weights on this machine (a local folder or the Hugging Face cache) and reading them.

Every plug-in that loads a checkpoint goes through `locate()`, so a missing checkpoint always
reads the same way: which files, where they were looked for, and the command that fetches them
on a connected machine. Nothing here downloads: stepwise runs offline and the HF cache is only
read from disk (`HF_HUB_OFFLINE` or not).

    spec = WeightsSpec("Show-o transformer", default_repo="showlab/show-o", files=("config.json",))
    folder = locate("showlab/show-o", spec)          # Path, or MissingWeightsError
    state = load_state_dict(weight_files(folder))     # {name: tensor}, safetensors or torch .bin
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.devices import hub_offline

if TYPE_CHECKING:
    import torch

__all__ = [
    "MissingWeightsError",
    "WeightsSpec",
    "load_state_dict",
    "locate",
    "looks_like_path",
    "model_folder",
    "state_fit_problems",
    "weight_files",
]

#: weight file names transformers/diffusers write, in the order we prefer them
WEIGHT_PATTERNS = ("model.safetensors", "model-*.safetensors", "diffusion_pytorch_model.safetensors",
                   "*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin", "diffusion_pytorch_model.bin")
WEIGHTS_DESCRIPTION = "weights (*.safetensors or pytorch_model*.bin)"


class MissingWeightsError(FileNotFoundError):
    """A checkpoint is not on this machine, or lacks files; the message says what to do."""


@dataclass(frozen=True)
class WeightsSpec:
    """What one checkpoint folder must hold."""

    what: str  # "Show-o transformer": how messages name it
    default_repo: str  # the hub id to fetch when the user named none
    files: tuple[str, ...] = ("config.json",)  # required files besides the weights
    weights: bool = True  # also needs weight files (False: a tokenizer or config only)


def looks_like_path(model: str | Path) -> bool:
    """A filesystem path rather than a hub id ("owner/name")."""
    text = str(model)
    return isinstance(model, Path) or text.startswith(("/", ".", "~")) or text.count("/") != 1


def _cached_snapshot(repo_id: str, probe: str) -> Path | None:
    """The HF-cache snapshot folder of `repo_id` holding `probe`, looked up on disk only."""
    from huggingface_hub import try_to_load_from_cache

    try:
        hit = try_to_load_from_cache(repo_id, probe)
    except ValueError:  # not a valid repo id
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def model_folder(model: str | Path, probe: str = "config.json") -> Path | None:
    """Where `model` is on this machine: the local folder, or the HF-cache snapshot of a hub id that
    holds `probe`; None when it is neither (a path that does not exist, or a repo not cached)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    if looks_like_path(model):
        return None
    return _cached_snapshot(str(model), probe)


def weight_files(directory: Path) -> list[Path]:
    """The weight files of a checkpoint folder: a sharded index's shards, else the first pattern that matches."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError, RecursionError) as err:
                raise MissingWeightsError(f"{index}: not a readable shard index ({err})") from None
            return [directory / shard for shard in shards]
    for pattern in WEIGHT_PATTERNS:
        found = sorted(directory.glob(pattern))
        if found:
            return found
    return []


def fetch_command(repo_id: str) -> str:
    return f"hf download {repo_id}"


def locate(model: str | Path, spec: WeightsSpec) -> Path:
    """The folder holding `model` (a local folder, or a hub id found in the HF cache) with all of `spec`'s files.

    Raises MissingWeightsError naming the missing files, where they were looked for and how to get them.
    """
    local = Path(model).expanduser()
    directory = model_folder(model, spec.files[0] if spec.files else "config.json")
    if local.is_dir():
        looked = f"the local folder {local}"
    elif looks_like_path(model):
        looked = f"the local folder {local} (it does not exist)"
    else:
        from huggingface_hub import constants

        looked = f"the Hugging Face cache ({constants.HF_HUB_CACHE}) for {model}"
    missing: list[str] = []
    if directory is None:
        missing = [*spec.files, *([WEIGHTS_DESCRIPTION] if spec.weights else [])]
    else:
        missing = [name for name in spec.files if not (directory / name).is_file()]
        if spec.weights and not weight_files(directory):
            missing.append(WEIGHTS_DESCRIPTION)
        if missing:
            looked = f"{directory}"
    if not missing:
        assert directory is not None
        return directory
    repo = str(model) if not looks_like_path(model) else spec.default_repo
    offline = " Offline mode is on (HF_HUB_OFFLINE), so nothing is downloaded." if hub_offline() else ""
    raise MissingWeightsError(
        f"{spec.what} checkpoint {str(model)!r} not found: missing {', '.join(missing)}; looked in {looked}."
        f"{offline} On a machine with internet run `{fetch_command(repo)}` (older huggingface_hub: "
        f"`huggingface-cli download {repo}`) and copy the cache (HF_HOME) here, or pass a local folder "
        f"holding {' and '.join([', '.join(spec.files), *(['the weights'] if spec.weights else [])])}."
    )


def load_state_dict(files: Sequence[Path], *, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    """All tensors of `files` in one dict. Torch pickles load with `weights_only=True` (no code runs)."""
    import torch

    state: dict[str, Any] = {}
    for path in files:
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                part = load_file(str(path), device=map_location)
            else:
                part = torch.load(path, map_location=map_location, weights_only=True)
                if isinstance(part, dict) and "state_dict" in part and isinstance(part["state_dict"], dict):
                    part = part["state_dict"]
        except Exception as err:  # corrupt or truncated files: say which one
            raise MissingWeightsError(f"{path}: could not read weights ({type(err).__name__}: {err})") from err
        if not isinstance(part, dict):
            raise MissingWeightsError(f"{path}: expected a dict of tensors, got {type(part).__name__}")
        state.update(part)
    return state


def state_fit_problems(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
                       shown: int = 10) -> list[str]:
    """How a checkpoint's tensors fail to fit a model's state dict exactly, one text per kind of
    problem ("missing keys (2): a, b"), at most `shown` names each; [] when they fit."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k}: checkpoint {tuple(state[k].shape)}, model {tuple(expected[k].shape)}"
                  for k in expected if k in state and state[k].shape != expected[k].shape]
    listed = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
    return [f"{label} ({len(items)}): {', '.join(items[:shown])}{', ...' if len(items) > shown else ''}"
            for label, items in listed if items]
