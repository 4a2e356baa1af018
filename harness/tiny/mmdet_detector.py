"""A tiny, randomly initialised Mask2Former built from GenEval's own mmdet config.

The real detector is Mask2Former Swin-S (COCO instance segmentation). We load that very
config with mmengine and shrink only the sizes (widths, depths, query and layer counts), so
the registry types, the test pipeline, the data preprocessor and the post-processing are the
real ones: `MMDetBackend` loads the result exactly like the released checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mmengine.config import Config

TINY_SEED = 0
CONFIG_NAME = "tiny_mask2former_swin.py"
CHECKPOINT_NAME = "tiny_mask2former_swin.pth"

# Swin stage widths are embed_dims * 2**stage; heads chosen so every head is 8 wide.
_EMBED_DIMS = 8
_FEAT_CHANNELS = 16
# Keeps the pipeline's Resize step in play without upscaling a 64 px test image to 800 px,
# which alone would cost seconds per image on CPU.
_TEST_SCALE = (128, 96)


def tiny_config(base_config: str | Path | None = None) -> Config:
    """GenEval's Mask2Former config, shrunk; 80 thing classes and max_per_image=100 are kept."""
    from mmengine.config import Config

    from harness.geneval.backends.mmdet_backend import default_config_path

    cfg = Config.fromfile(str(base_config or default_config_path()))
    _shrink_backbone(cfg)
    _shrink_head(cfg)
    cfg.model.test_cfg.max_per_image = 100
    _shrink_test_resize(cfg)
    return cfg


def _shrink_backbone(cfg: Config) -> None:
    backbone = cfg.model.backbone
    backbone.embed_dims = _EMBED_DIMS
    backbone.depths = [1, 1, 1, 1]
    backbone.num_heads = [1, 2, 4, 8]
    backbone.drop_path_rate = 0.0
    # No pretrained download: the weights come from our seeded init.
    backbone.init_cfg = None


def _shrink_head(cfg: Config) -> None:
    head = cfg.model.panoptic_head
    head.in_channels = [_EMBED_DIMS * 2**i for i in range(4)]
    head.feat_channels = _FEAT_CHANNELS
    head.out_channels = _FEAT_CHANNELS
    # 8 queries x 80 classes still leaves more than max_per_image=100 (query, class) pairs.
    head.num_queries = 8
    if (head.num_things_classes, head.num_stuff_classes) != (80, 0):
        raise ValueError("the base config must be a COCO instance model (80 things, 0 stuff)")

    pixel = head.pixel_decoder
    pixel.norm_cfg = dict(type="GN", num_groups=4)
    pixel.encoder.num_layers = 1
    pixel.encoder.layer_cfg.self_attn_cfg.update(embed_dims=_FEAT_CHANNELS, num_heads=2, num_points=2)
    pixel.encoder.layer_cfg.ffn_cfg.update(embed_dims=_FEAT_CHANNELS, feedforward_channels=2 * _FEAT_CHANNELS)
    pixel.positional_encoding.num_feats = _FEAT_CHANNELS // 2

    head.positional_encoding.num_feats = _FEAT_CHANNELS // 2
    decoder = head.transformer_decoder
    # One layer per feature level, as the real decoder cycles through the levels.
    decoder.num_layers = 3
    decoder.layer_cfg.self_attn_cfg.update(embed_dims=_FEAT_CHANNELS, num_heads=2)
    decoder.layer_cfg.cross_attn_cfg.update(embed_dims=_FEAT_CHANNELS, num_heads=2)
    decoder.layer_cfg.ffn_cfg.update(embed_dims=_FEAT_CHANNELS, feedforward_channels=2 * _FEAT_CHANNELS)


def _shrink_test_resize(cfg: Config) -> None:
    for step in cfg.test_dataloader.dataset.pipeline:
        if step["type"] == "Resize":
            step["scale"] = _TEST_SCALE


def write_tiny_mmdet(out_dir: Path, seed: int = TINY_SEED) -> tuple[Path, Path]:
    """Build the tiny model with seeded random weights; write its config and checkpoint.

    Returns (config_path, checkpoint_path). The checkpoint is laid out as mmengine's Runner
    writes one (meta, state_dict, message_hub), so loading it exercises the same
    `weights_only` allowlist as a real checkpoint does.
    """
    import torch
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope
    from mmengine.runner.checkpoint import save_checkpoint, weights_to_cpu

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = tiny_config()
    init_default_scope(cfg.get("default_scope", "mmdet"))
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    with _quiet_mmengine():
        model.init_weights()

    config_path = out_dir / CONFIG_NAME
    cfg.dump(str(config_path))
    checkpoint_path = out_dir / CHECKPOINT_NAME
    checkpoint = {
        "meta": _runner_meta(config_path.read_text(), seed),
        "state_dict": weights_to_cpu(model.state_dict()),
        "message_hub": _message_hub_state(),
    }
    save_checkpoint(checkpoint, str(checkpoint_path))
    return config_path, checkpoint_path


@contextmanager
def _quiet_mmengine() -> Iterator[None]:
    """Silence mmengine's per-parameter init report (hundreds of INFO lines) for one block."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _runner_meta(config_text: str, seed: int) -> dict:
    """The `meta` mmengine's Runner.save_checkpoint writes, with the numpy values real runs carry."""
    import mmdet
    import mmengine
    import numpy as np
    from mmdet.evaluation import get_classes
    from mmdet.visualization.palette import get_palette

    classes = tuple(get_classes("coco"))
    return {
        "cfg": config_text,
        "seed": seed,
        "experiment_name": "tiny_mask2former_swin",
        "time": time.strftime("%Y%m%d_%H%M%S", time.gmtime(0)),
        "mmengine_version": mmengine.__version__,
        "mmdet_version": mmdet.__version__,
        "epoch": 1,
        "iter": np.int64(1),
        "dataset_meta": {"classes": classes, "palette": get_palette("random", len(classes))},
    }


def _message_hub_state() -> dict:
    """A MessageHub state dict: HistoryBuffers (numpy arrays, bound statistics) and numpy scalars."""
    import numpy as np
    from mmengine.logging import MessageHub

    hub = MessageHub(name=f"tiny_mmdet_{id(object())}")
    hub.update_scalar("train/loss", 1.25)
    hub.update_scalar("train/lr", 1e-4)
    hub.update_info("iter", np.int64(1))
    hub.update_info("loss_scale", np.float32(1.0))
    return hub.state_dict()
