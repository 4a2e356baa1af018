"""GenEval's detector, Mask2Former (Swin-S, COCO instance), run through Hugging Face transformers.

The model is the same network GenEval runs through mmdet; what must match is the instance
post-processing, which we re-implement after mmdet's `MaskFormerFusionHead.instance_postprocess`
rather than using transformers' `post_process_instance_segmentation` (that one keeps only
`num_queries` candidates, thresholds scores, scores masks at a fixed 384x384 and ignores padding).

Per image:
  1. class scores = softmax over the 80 classes + "no object", the last column dropped;
  2. the top `max_per_image` (query, class) pairs over all queries x classes;
  3. each kept query's mask logits upsampled to the padded input, the padding cropped off,
     upsampled to the original image size (bilinear, as mmdet), binarised at logit > 0;
  4. score = class score x mean sigmoid inside the binary mask; box = the mask's extent.

Nothing here imports torch or transformers at module import: the CLI must start instantly.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.devices import hub_offline, pick_device
from harness.geneval.classes import COCO_CLASSES
from harness.geneval.detections import ImageDetections, group_by_class
from harness.hashing import file_sha256
from harness.weights import WEIGHTS_DESCRIPTION, looks_like_path, model_folder, weight_files

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = "facebook/mask2former-swin-small-coco-instance"

# The checkpoint's label names are COCO's official category names (as detectron2 and the HF
# config spell them); GenEval renamed three of them. A label that is neither is an error at
# load time: a silent mismatch would make a class undetectable rather than fail.
HF_ALIASES: dict[str, str] = {
    "mouse": "computer mouse",
    "remote": "tv remote",
    "keyboard": "computer keyboard",
}

_DTYPES = {
    "auto": "float32", "fp32": "float32", "float32": "float32",
    "fp16": "float16", "float16": "float16", "bf16": "bfloat16", "bfloat16": "bfloat16",
}  # fmt: skip

class HFModelNotFoundError(FileNotFoundError):
    """The Mask2Former checkpoint is neither a local directory nor in the Hugging Face cache."""


# --------------------------------------------------------------------------- labels


def _normalise_label(name: str) -> str:
    return " ".join(name.strip().lower().replace("_", " ").replace("-", " ").split())


def geneval_name(label: str) -> str:
    """GenEval's name for a checkpoint label name; GenEval's own names are accepted as they are."""
    key = _normalise_label(label)
    name = HF_ALIASES.get(key, key)
    if name in COCO_CLASSES:
        return name
    raise ValueError(
        f"detector label {label!r} is not one of GenEval's 80 COCO classes (nor a known alias); "
        "the checkpoint must be a COCO *instance* model such as " + DEFAULT_MODEL
    )


def label_to_geneval_index(id2label: dict[int, str]) -> np.ndarray:
    """Model label id -> index into COCO_CLASSES, checked to be a one-to-one map."""
    ids = sorted(int(i) for i in id2label)
    if ids != list(range(len(ids))):
        raise ValueError(f"detector label ids are not 0..{len(ids) - 1}: {ids[:5]}...")
    names = [geneval_name(id2label[i]) for i in ids]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"several detector labels map to the same GenEval class: {dupes}")
    return np.array([COCO_CLASSES.index(n) for n in names], dtype=np.int64)


# --------------------------------------------------------------------------- post-processing


@dataclass(frozen=True)
class Instances:
    """Flat instance results of one image, in descending class-score order."""

    boxes: np.ndarray  # float32 (k, 4) x1, y1, x2, y2
    scores: np.ndarray  # float32 (k,) class score x mask score
    labels: np.ndarray  # int64 (k,) model label ids
    masks: np.ndarray  # bool (k, H, W)


def topk_queries(class_logits: torch.Tensor, max_per_image: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top (query, class) pairs: (class scores, label ids, query ids), best first.

    class_logits: (num_queries, num_classes + 1), the last column being "no object".
    mmdet takes `topk(sorted=False)`, whose order is unspecified; a stable descending sort
    gives the same set and a reproducible order (ties go to the lower query, then class).
    """
    import torch

    probs = torch.softmax(class_logits.float(), dim=-1)[:, :-1]
    num_classes = probs.shape[1]
    flat = probs.flatten()
    k = min(max_per_image, flat.numel())
    order = torch.sort(flat, descending=True, stable=True).indices[:k]
    return flat[order], order % num_classes, torch.div(order, num_classes, rounding_mode="floor")


def masks_to_image(
    mask_logits: torch.Tensor,
    padded_hw: tuple[int, int],
    valid_hw: tuple[int, int],
    image_hw: tuple[int, int],
) -> torch.Tensor:
    """Mask logits (n, h, w) at the model's output stride -> (n, H, W) at the original image size.

    The model sees the image resized to `valid_hw` and zero-padded bottom/right to `padded_hw`,
    and predicts masks over the padded canvas. As mmdet does: upsample to the padded canvas,
    crop the valid region, upsample that to the original size (bilinear, align_corners=False).
    """
    import torch.nn.functional as F

    logits = mask_logits.float()[None]
    logits = F.interpolate(logits, size=padded_hw, mode="bilinear", align_corners=False)
    logits = logits[:, :, : valid_hw[0], : valid_hw[1]]
    return F.interpolate(logits, size=image_hw, mode="bilinear", align_corners=False)[0]


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight float32 boxes of boolean masks (k, H, W) as mmdet's `mask2bbox`.

    x1, y1 = first column / row with a pixel; x2, y2 = last column / row + 1 (exclusive end).
    Empty masks give a zero box, as in mmdet; callers drop them.
    """
    import torch

    k, height, width = masks.shape
    boxes = torch.zeros((k, 4), dtype=torch.float32, device=masks.device)
    cols = masks.any(dim=1)  # (k, W)
    rows = masks.any(dim=2)  # (k, H)
    present = cols.any(dim=1)
    if not bool(present.any()):
        return boxes
    # argmax of a bool/int row returns the first maximum: the first set pixel.
    x1 = cols.int().argmax(dim=1)
    y1 = rows.int().argmax(dim=1)
    x2 = width - cols.flip(1).int().argmax(dim=1)
    y2 = height - rows.flip(1).int().argmax(dim=1)
    stacked = torch.stack([x1, y1, x2, y2], dim=1).float()
    boxes[present] = stacked[present]
    return boxes


def instance_postprocess(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    max_per_image: int = 100,
    to_image: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Instances:
    """mmdet's Mask2Former instance post-processing for one image, minus empty masks.

    class_logits: (Q, C + 1). mask_logits: (Q, h, w), at the image size unless `to_image`
    maps the selected queries' logits there (resizing is per mask, so selecting first and
    resizing only the kept ones gives the same numbers with less memory).
    No score threshold: GenEval applies its own thresholds later.
    """
    cls_scores, labels, queries = topk_queries(class_logits, max_per_image)
    logits = mask_logits[queries].float()
    if to_image is not None:
        logits = to_image(logits)
    binary = logits > 0  # sigmoid > 0.5, decided on the logit as mmdet does
    binary_f = binary.float()
    area = binary_f.flatten(1).sum(1)
    mask_scores = (logits.sigmoid() * binary_f).flatten(1).sum(1) / (area + 1e-6)
    scores = cls_scores * mask_scores
    # An empty mask scores 0 in mmdet and can never pass a GenEval threshold (score > t).
    keep = area > 0
    binary, scores, labels = binary[keep], scores[keep], labels[keep]
    return Instances(
        boxes=masks_to_boxes(binary).cpu().numpy().astype(np.float32),
        scores=scores.cpu().numpy().astype(np.float32),
        labels=labels.cpu().numpy().astype(np.int64),
        masks=binary.cpu().numpy(),
    )


def _valid_hw(pixel_mask: torch.Tensor | None, padded_hw: tuple[int, int]) -> tuple[int, int]:
    """Height and width of the real (resized) image inside the padded canvas."""
    if pixel_mask is None:  # a processor without padding: the whole canvas is the image
        return padded_hw
    return int(pixel_mask.any(dim=1).sum()), int(pixel_mask.any(dim=0).sum())


# --------------------------------------------------------------------------- locating weights


def hf_status(model: str | Path = DEFAULT_MODEL) -> tuple[bool, str]:
    """Whether `model`'s config and weights are on this machine, without loading anything heavy."""
    directory = model_folder(model)
    if directory is None:
        return False, _not_found_message(model)
    missing = [name for name in ("config.json", "preprocessor_config.json") if not (directory / name).is_file()]
    if not weight_files(directory):
        missing.append(WEIGHTS_DESCRIPTION)
    if missing:
        return False, f"{model}: {directory} lacks {', '.join(missing)}"
    where = "local directory" if Path(model).expanduser().is_dir() else "Hugging Face cache"
    return True, f"{model}: found in {where} {directory}"


def _not_found_message(model: str | Path) -> str:
    from huggingface_hub import constants

    looked = (
        f"as a local directory ({Path(model).expanduser()})"
        if looks_like_path(model)
        else f"as a local directory and in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    )
    offline = " Offline mode is on (HF_HUB_OFFLINE), so nothing was downloaded." if hub_offline() else ""
    return (
        f"Mask2Former weights {str(model)!r} not found: looked {looked}.{offline} "
        f"To get them, on a machine with internet run `hf download {DEFAULT_MODEL}` "
        f"(older huggingface_hub: `huggingface-cli download {DEFAULT_MODEL}`) and copy the cache "
        "(HF_HOME) here, or pass a local directory holding config.json, preprocessor_config.json "
        "and the weights."
    )


def weights_fingerprint(files: list[Path]) -> str:
    """sha256 over the weight files' names and content hashes (in name order)."""
    digest = hashlib.sha256()
    for path in sorted(files, key=lambda p: p.name):
        digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- the backend


class HFMask2FormerBackend:
    """Mask2Former instance segmentation via transformers, post-processed as mmdet does."""

    name = "hf"

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        device: str | None = None,
        dtype: str = "auto",
        max_per_image: int = 100,
    ) -> None:
        import torch

        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(_DTYPES)}")
        self.model_ref = str(model)
        self.device = pick_device(device)
        # fp32 everywhere unless asked: half precision can move a score across a threshold.
        self.dtype_name = _DTYPES[dtype]
        self.max_per_image = max_per_image
        self.model, self.processor = _load(model)
        self.model.to(device=self.device, dtype=getattr(torch, self.dtype_name)).eval()
        self._label_map = label_to_geneval_index(dict(self.model.config.id2label))
        self._fingerprint: str | None = None

    # ---- identity

    def describe(self) -> dict[str, str]:
        import transformers

        return {
            "backend": self.name,
            "model": self.model_ref,
            "weights_sha256": self._weights_sha256(),
            "transformers": transformers.__version__,
            "dtype": self.dtype_name,
            "device": self.device,
            "max_per_image": str(self.max_per_image),
            "processor": _processor_summary(self.processor),
        }

    def _weights_sha256(self) -> str:
        # Hashing a few hundred MB takes a second: done once, on first use.
        if self._fingerprint is None:
            directory = model_folder(self.model_ref)
            files = weight_files(directory) if directory is not None else []
            self._fingerprint = weights_fingerprint(files) if files else "unknown"
        return self._fingerprint

    # ---- detection

    def detect(self, images: list[np.ndarray]) -> list[ImageDetections]:

        for image in images:
            _check_image(image)
        # Mask2Former ignores the pixel mask, so padding a smaller image up to a larger one in
        # the same forward pass changes its detections. One forward per distinct size keeps
        # every result identical to evaluating the image alone, as GenEval does.
        by_size: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            by_size.setdefault(image.shape, []).append(i)
        results: list[ImageDetections | None] = [None] * len(images)
        for indices in by_size.values():
            for i, detections in zip(indices, self._detect_same_size([images[i] for i in indices]), strict=True):
                results[i] = detections
        return results  # type: ignore[return-value]

    def _detect_same_size(self, images: list[np.ndarray]) -> list[ImageDetections]:
        import torch

        # The processor hands arrays to torch.from_numpy, which warns on read-only ones (decoded
        # images are shared, read-only buffers); np.require copies only those.
        writable = [np.require(image, requirements="W") for image in images]
        inputs = self.processor(images=writable, return_tensors="pt", input_data_format="channels_last")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.inference_mode():
            outputs = self.model(pixel_values=pixel_values)
        padded_hw = (int(pixel_values.shape[-2]), int(pixel_values.shape[-1]))
        pixel_mask = inputs.get("pixel_mask")
        results = []
        for i, image in enumerate(images):
            valid_hw = _valid_hw(None if pixel_mask is None else pixel_mask[i], padded_hw)
            image_hw = (int(image.shape[0]), int(image.shape[1]))
            instances = instance_postprocess(
                outputs.class_queries_logits[i],
                outputs.masks_queries_logits[i],
                self.max_per_image,
                to_image=lambda m, v=valid_hw, s=image_hw: masks_to_image(m, padded_hw, v, s),
            )
            results.append(self._group(instances))
        return results

    def _group(self, instances: Instances) -> ImageDetections:
        return group_by_class(
            instances.boxes,
            instances.scores,
            self._label_map[instances.labels],
            COCO_CLASSES,
            masks=instances.masks,
        )


def _load(model: str | Path) -> tuple[Any, Any]:
    """Model and processor, from a local directory or the HF cache (offline when asked)."""
    from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    if looks_like_path(model) and not Path(model).expanduser().is_dir():
        raise HFModelNotFoundError(_not_found_message(model))
    source = str(Path(model).expanduser()) if looks_like_path(model) else str(model)
    kwargs = {"local_files_only": True} if hub_offline() else {}
    try:
        net = Mask2FormerForUniversalSegmentation.from_pretrained(source, **kwargs)
        processor = Mask2FormerImageProcessor.from_pretrained(source, **kwargs)
    except OSError as exc:
        found, detail = hf_status(model)
        if found:
            raise  # present but unreadable: the original error says more than ours would
        raise HFModelNotFoundError(detail) from exc
    return net, processor


def _processor_summary(processor: Any) -> str:
    """The preprocessing settings that change detections (input size, divisor)."""
    size = processor.size
    fields = {key: getattr(size, key, None) for key in ("shortest_edge", "longest_edge", "height", "width")}
    parts = [f"{key}={value}" for key, value in fields.items() if value]
    parts.append(f"size_divisor={getattr(processor, 'size_divisor', None)}")
    return ",".join(parts)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", None)
        raise ValueError(f"expected a uint8 RGB array of shape (H, W, 3), got shape {shape} dtype {dtype}")


__all__ = [
    "DEFAULT_MODEL",
    "HF_ALIASES",
    "HFMask2FormerBackend",
    "HFModelNotFoundError",
    "Instances",
    "geneval_name",
    "hf_status",
    "instance_postprocess",
    "label_to_geneval_index",
    "masks_to_boxes",
    "masks_to_image",
    "topk_queries",
]
