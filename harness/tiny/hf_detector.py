"""A tiny, randomly initialised Mask2Former in the layout of facebook/mask2former-swin-small-coco-instance.

Same model class, same label names and same processor class as the real checkpoint, so the HF
backend loads it through exactly the code path it uses for the real one; only the sizes shrink.
"""

from __future__ import annotations

from pathlib import Path

# The 80 COCO instance classes as the real checkpoint's config.json names them (detectron2's
# thing_classes, i.e. the official COCO category names), in its label-id order. Kept literal
# here, not derived from the backend's alias table, so the tests compare two independent lists.
COCO_INSTANCE_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


def _tiny_config():  # -> transformers.Mask2FormerConfig (lazy import keeps this module light)
    from transformers import Mask2FormerConfig, SwinConfig

    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        mlp_ratio=2.0,
        drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    id2label = dict(enumerate(COCO_INSTANCE_LABELS))
    return Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        encoder_layers=1,
        # The decoder needs at least one layer per feature level it cycles through (3).
        decoder_layers=3,
        num_attention_heads=2,
        num_queries=20,
        id2label=id2label,
        label2id={name: i for i, name in id2label.items()},
    )


# Initialised as transformers does, the heads give every class ~1/81 and every mask logit ~0, so
# no score ever reaches GenEval's thresholds (0.3, 0.9). Scaling the two output layers spreads
# the class scores over (0, 1) and makes masks decisive, so both sides of every threshold and
# of the mask binarisation get exercised.
_HEAD_SCALE = 40.0
_HEADS = ("class_predictor", "model.transformer_module.decoder.mask_predictor.mask_embedder.2.0")


def _spread_outputs(model) -> None:  # model: Mask2FormerForUniversalSegmentation
    import torch

    with torch.no_grad():
        for name in _HEADS:
            layer = model.get_submodule(name)
            layer.weight.mul_(_HEAD_SCALE)
            layer.bias.mul_(_HEAD_SCALE)


def write_tiny_hf_detector(out_dir: Path, seed: int = 0) -> Path:
    """Write a tiny random Mask2Former and its image processor to `out_dir`; return `out_dir`.

    The processor resizes to a shortest edge of 64 (longest 128) so a forward pass on CPU takes
    milliseconds; the real checkpoint's processor is what decides the size for real runs.
    """
    import torch
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(_tiny_config()).eval()
    _spread_outputs(model)
    model.save_pretrained(out_dir)
    processor = Mask2FormerImageProcessor(
        size={"shortest_edge": 64, "longest_edge": 128},
        size_divisor=32,
        ignore_index=255,
    )
    processor.save_pretrained(out_dir)
    return out_dir
