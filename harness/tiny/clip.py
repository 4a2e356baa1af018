"""A tiny, randomly initialised open_clip model with the real ViT-L-14-quickgelu's structure.

Same classes (open_clip CLIP, QuickGELU, the standard 49408-token BPE tokenizer that ships
inside the open_clip package) and the same loading path as the real colour classifier:
`ColorClassifier.load(arch=name, weights=checkpoint)`. Only the sizes shrink, so it runs
about a thousand crops a second on one CPU core.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_CLIP_ARCH = "stepwise-tiny-clip-quickgelu"

# Shaped like ViT-L-14-quickgelu.json. vocab_size and context_length are CLIP's, so that
# open_clip.get_tokenizer(arch) returns the usual SimpleTokenizer, which works offline.
TINY_CLIP_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def register_tiny_clip(config_path: Path) -> None:
    """Make TINY_CLIP_ARCH known to open_clip, through its supported config registry."""
    import open_clip

    if TINY_CLIP_ARCH not in open_clip.list_models():
        # add_model_config takes a JSON file (named <arch>.json) or a directory of them.
        open_clip.add_model_config(config_path)


def write_tiny_clip(out_dir: Path, seed: int = 0) -> tuple[str, Path]:
    """Write `<arch>.json` and a seeded random checkpoint into `out_dir`; return (arch, checkpoint).

    The JSON lies beside the checkpoint so that `ColorClassifier.load` can register the arch
    in a process that did not call this function.
    """
    import open_clip
    import torch

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / f"{TINY_CLIP_ARCH}.json"
    config_path.write_text(json.dumps(TINY_CLIP_CONFIG, indent=2))
    register_tiny_clip(config_path)
    # fork_rng: seed the initialisation without disturbing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_CLIP_ARCH, pretrained=None, device="cpu")
    checkpoint = out_dir / f"{TINY_CLIP_ARCH}-seed{seed}.pt"
    torch.save(model.state_dict(), checkpoint)
    return TINY_CLIP_ARCH, checkpoint
