"""Device choice shared by every model: `cuda` when available, else `cpu`."""

from __future__ import annotations


def pick_device(requested: str | None = None) -> str:
    """Return `requested` if given, else "cuda" when torch sees a GPU, else "cpu"."""
    if requested:
        return requested
    import torch  # lazy: importing torch costs seconds and the CLI must start instantly

    return "cuda" if torch.cuda.is_available() else "cpu"


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)."""
    import os

    return any(
        os.environ.get(var, "").strip().lower() in {"1", "true", "yes", "on"}
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )
