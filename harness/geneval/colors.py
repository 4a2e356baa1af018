"""GenEval's colour check: zero-shot CLIP classification of detected objects into 10 colours.

Faithful to GenEval (`ImageCrops` + `color_classification` in evaluate_images.py, with
clip_benchmark 1.4.0's `zero_shot_classifier` / `run_classification`):

* crop: the image in RGB; with a mask, the pixels outside it replaced by #999; then
  `crop(box[:4])` (PIL rounds float coordinates half-to-even); then open_clip's val transform.
* text classifier per class name: for each colour, the 3 template texts encoded, each
  L2-normalised, averaged, L2-normalised again; stacked as columns.
* logits = (100 * normalised image features) @ classifier; the colour is the argmax.
* on CUDA everything runs under fp16 autocast, as GenEval did; on CPU in fp32.

The model must be `ViT-L-14-quickgelu` with the "openai" weights: GenEval's open_clip 2.20
built openai models with QuickGELU, whereas open_clip 3.x builds plain `ViT-L-14` with GELU,
which silently changes every logit.

Speed: GenEval ran one DataLoader per (image, class) with batches of 16. `classify` instead
takes every crop of a call at once, in batches of `batch_size`, and does one matmul per class
group; `classify_one_image_reference` keeps the reference loop for benchmarks and tests.

torch and open_clip are imported lazily: importing this module must stay cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from harness.devices import hub_offline, pick_device
from harness.geneval.classes import COLORS, color_prompts
from harness.hashing import file_sha256

if TYPE_CHECKING:
    import torch

DEFAULT_ARCH = "ViT-L-14-quickgelu"
OPENAI_TAG = "openai"
REFERENCE_BATCH_SIZE = 16  # GenEval's DataLoader batch size
BGCOLOR = "#999"  # GenEval's default `bgcolor` option: what replaces the pixels outside a mask
# open_clip's default file names inside an HF hub repo (open_clip.constants); the safetensors
# one is tried first, as open_clip's own download does.
_HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"
_HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"

Box = Sequence[float] | np.ndarray


# --------------------------------------------------------------------------------------------
# Crops


def _composite_and_crop(
    rgb: Image.Image, blank: Image.Image | None, box: Box, mask: np.ndarray | None
) -> Image.Image:
    """GenEval's `ImageCrops.__getitem__` on an already RGB image and its background image."""
    if mask is not None:
        if tuple(rgb.size[::-1]) != tuple(mask.shape):
            raise ValueError(f"mask shape {mask.shape} does not match image size {rgb.size[::-1]} (H, W)")
        assert blank is not None
        image = Image.composite(rgb, blank, Image.fromarray(mask))
    else:
        image = rgb
    # PIL's crop does map(int, map(round, box)): Python's round, i.e. half to even.
    return image.crop(tuple(box[:4]))


def _background(rgb: Image.Image, bgcolor: str) -> Image.Image:
    # "original" is GenEval's option to keep the real background (the mask then has no effect).
    if bgcolor == "original":
        return rgb.copy()
    return Image.new("RGB", rgb.size, color=bgcolor)


def crop_for_color(
    image: Image.Image, box: Box, mask: np.ndarray | None, bgcolor: str = BGCOLOR
) -> Image.Image:
    """The crop GenEval classifies: RGB, outside-of-mask pixels set to `bgcolor`, cropped to `box`.

    box: x1, y1, x2, y2 (extra entries such as a score are ignored), floats allowed.
    mask: (H, W) boolean (or uint8 alpha) array of the image's size, or None for no compositing.
    """
    rgb = image.convert("RGB")
    blank = _background(rgb, bgcolor) if mask is not None else None
    return _composite_and_crop(rgb, blank, box, mask)


@dataclass(frozen=True)
class ColorQuery:
    """One detected object to classify: its image, box (x1, y1, x2, y2), optional mask, class."""

    image: Image.Image
    box: Box
    mask: np.ndarray | None
    classname: str


# --------------------------------------------------------------------------------------------
# Offline resolution of the openai weights


@dataclass(frozen=True)
class _HubWeights:
    repo_id: str
    filenames: tuple[str, ...]  # in the order open_clip tries them


def _openai_hub_weights(arch: str) -> _HubWeights:
    """Where open_clip would download `arch`'s "openai" weights from (its pretrained registry)."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(arch, OPENAI_TAG)
    hub = cfg.get("hf_hub", "")
    if not hub:
        raise ValueError(f"open_clip has no HF hub entry for {arch!r} with {OPENAI_TAG!r} weights")
    # open_clip's convention: "org/repo/" means the default file name, "org/repo/file" a given one.
    repo_id, filename = os.path.split(hub)
    if not filename:
        return _HubWeights(repo_id, (_HF_SAFE_WEIGHTS_NAME, _HF_WEIGHTS_NAME))
    stem, ext = os.path.splitext(filename)
    safe = (stem + ".safetensors",) if ext in (".bin", ".pth") else ()
    return _HubWeights(repo_id, (*safe, filename))


def _find_in_hf_cache(hub: _HubWeights, cache_dir: str | Path | None) -> Path | None:
    """The cached file, looked up on disk only: never a network call, whatever HF_HUB_OFFLINE says."""
    from huggingface_hub import try_to_load_from_cache

    for filename in hub.filenames:
        found = try_to_load_from_cache(hub.repo_id, filename, cache_dir=cache_dir)
        if isinstance(found, str) and os.path.isfile(found):
            return Path(found)
    return None


def _missing_weights_message(arch: str, hub: _HubWeights, cache_dir: str | Path | None) -> str:
    from huggingface_hub import constants

    where = cache_dir or constants.HF_HUB_CACHE
    offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
    return (
        f"The {OPENAI_TAG!r} weights for {arch} are not in the local Hugging Face cache ({where}){offline}; "
        f"this harness never downloads. Fetch one of {', '.join(hub.filenames)} from the hub repo "
        f"{hub.repo_id}, e.g. `hf download {hub.repo_id} {hub.filenames[0]}`, "
        "or pass a local open_clip checkpoint (`stepwise eval --clip-weights PATH`, or weights=PATH in Python)."
    )


def resolve_openai_weights(arch: str = DEFAULT_ARCH, cache_dir: str | Path | None = None) -> Path:
    """Path of the cached openai checkpoint for `arch`; FileNotFoundError saying what to fetch."""
    hub = _openai_hub_weights(arch)
    found = _find_in_hf_cache(hub, cache_dir)
    if found is None:
        raise FileNotFoundError(_missing_weights_message(arch, hub, cache_dir))
    return found


def _check_quick_gelu(arch: str) -> None:
    """Refuse an arch whose activation differs from the one the openai weights were trained with."""
    import open_clip

    model_cfg = open_clip.get_model_config(arch)
    if model_cfg is None:
        raise ValueError(f"unknown open_clip architecture {arch!r}")
    tag_cfg = open_clip.get_pretrained_cfg(arch, OPENAI_TAG)
    if not tag_cfg:
        raise ValueError(f"open_clip has no {OPENAI_TAG!r} weights for {arch!r}; pass weights=<checkpoint>")
    wanted = bool(tag_cfg.get("quick_gelu", False))
    if bool(model_cfg.get("quick_gelu", False)) != wanted:
        raise ValueError(
            f"{arch!r} builds {'GELU' if wanted else 'QuickGELU'} but the openai weights were trained "
            f"with {'QuickGELU' if wanted else 'GELU'}; use {DEFAULT_ARCH!r} "
            "(as GenEval's open_clip 2.20 did)"
        )


def clip_status(cache_dir: str | Path | None = None) -> tuple[bool, str]:
    """For `doctor`: does open_clip import, and are the openai ViT-L-14 weights cached? Loads no model."""
    try:
        import open_clip
    except Exception as exc:  # any import failure (missing package, broken torch) is the answer
        return False, f"open_clip does not import: {exc!r}"
    try:
        path = resolve_openai_weights(DEFAULT_ARCH, cache_dir)
    except (FileNotFoundError, ValueError, ImportError) as exc:
        return False, f"open_clip {open_clip.__version__}: {exc}"
    return True, f"open_clip {open_clip.__version__}; {DEFAULT_ARCH} {OPENAI_TAG} weights at {path}"


# --------------------------------------------------------------------------------------------
# The classifier


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ColorClassifier:
    """GenEval's zero-shot colour classifier around an open_clip model."""

    def __init__(
        self,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        device: str,
        batch_size: int = 64,
        amp: bool | None = None,
        workers: int = 2,
    ) -> None:
        """workers: threads preparing crops (0: the calling thread) while the model runs."""
        import torch

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.device = device
        self._device_type = torch.device(device).type
        self.amp = (self._device_type == "cuda") if amp is None else amp
        if self.amp and self._device_type != "cuda":
            raise ValueError("amp (fp16 autocast, as GenEval) needs a CUDA device")
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.workers = workers
        self._classifiers: dict[str, torch.Tensor] = {}
        # Filled in by `load`; a model handed in directly is described as such.
        self.arch = "custom"
        self.weights_label = "custom"
        self.weights_path: Path | None = None
        self._weights_sha256: str | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        arch: str = DEFAULT_ARCH,
        weights: str | Path | None = None,
        device: str | None = None,
        batch_size: int = 64,
        cache_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> ColorClassifier:
        """Build `arch` with local weights only.

        weights=None: open_clip's "openai" weights, taken from the local HF cache (`cache_dir`
        or the default one); a missing file raises FileNotFoundError naming the repo and file.
        weights=path: a local open_clip checkpoint. A `<arch>.json` model config next to it is
        registered when open_clip does not know `arch` (see harness.tiny.clip).
        """
        import open_clip

        device = pick_device(device)
        preprocess_overrides: dict[str, Any] = {}
        if weights is None:
            _check_quick_gelu(arch)
            path = resolve_openai_weights(arch, cache_dir)
            # open_clip merges a tag's preprocessing itself; loading by path must pass it on.
            tag_cfg = open_clip.get_pretrained_cfg(arch, OPENAI_TAG)
            preprocess_overrides = {
                f"image_{key}": tag_cfg[key]
                for key in ("mean", "std", "interpolation", "resize_mode")
                if key in tag_cfg
            }
            label = OPENAI_TAG
        else:
            path = Path(weights)
            if not path.is_file():
                raise FileNotFoundError(f"CLIP checkpoint not found: {path}")
            _register_sidecar_config(arch, path)
            label = str(path)
        # pretrained=<absolute file path>: never mistaken for a tag, so open_clip reads it and
        # never touches the network.
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch, pretrained=str(path.resolve()), device=device, precision="fp32", **preprocess_overrides
        )
        tokenizer = open_clip.get_tokenizer(arch)
        classifier = cls(model, preprocess, tokenizer, device, batch_size=batch_size, **kwargs)
        classifier.arch, classifier.weights_label, classifier.weights_path = arch, label, path
        return classifier

    def describe(self) -> dict[str, str]:
        """What identifies this classifier's outputs (part of cache keys and result records)."""
        import open_clip

        if self.weights_path is not None and self._weights_sha256 is None:
            self._weights_sha256 = file_sha256(self.weights_path)  # lazily: hashing 1.7 GB takes seconds
        return {
            "arch": self.arch,
            "weights": self.weights_label,
            "weights_sha256": self._weights_sha256 or "unknown",
            "open_clip": open_clip.__version__,
            "device": self.device,
            "amp": "fp16" if self.amp else "off",
        }

    # -- text side ---------------------------------------------------------------------------

    def _autocast(self) -> contextlib.AbstractContextManager:
        import torch

        if self.amp:
            return torch.autocast(device_type=self._device_type, dtype=torch.float16)
        return contextlib.nullcontext()

    def classifier_for(self, classname: str) -> torch.Tensor:
        """(embed_dim, 10) zero-shot colour classifier for `classname`, computed once per name."""
        cached = self._classifiers.get(classname)
        if cached is None:
            cached = self._classifiers[classname] = self._encode_classifier(classname)
        return cached

    def _encode_classifier(self, classname: str) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        columns = []
        # Same op sequence as clip_benchmark, inside the same autocast: same dtypes and values.
        with torch.no_grad(), self._autocast():
            for texts in color_prompts(classname):
                embeddings = self.model.encode_text(self.tokenizer(texts).to(self.device))
                column = F.normalize(embeddings, dim=-1).mean(dim=0)
                column /= column.norm()
                columns.append(column)
            return torch.stack(columns, dim=1)

    # -- image side --------------------------------------------------------------------------

    def _image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        with self._autocast():
            return F.normalize(self.model.encode_image(pixels.to(self.device)), dim=-1)

    def _logits(self, features: torch.Tensor, classifier: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            # (100 * f) @ W, in this order, as run_classification evaluates `100. * f @ W`.
            return (100.0 * features @ classifier).float().cpu()

    def _prepare(
        self, query: ColorQuery, images: dict[int, tuple[Image.Image, Image.Image | None]]
    ) -> torch.Tensor:
        rgb, blank = images[id(query.image)]
        return self.preprocess(_composite_and_crop(rgb, blank, query.box, query.mask))

    def _features_for(self, queries: Sequence[ColorQuery]) -> torch.Tensor:
        """Normalised image features of every query, in order, batch_size crops per forward pass."""
        import torch

        # Convert each distinct image once (as GenEval's dataset does once per image); the
        # background is only needed by images with a masked query.
        masked = {id(q.image) for q in queries if q.mask is not None}
        images: dict[int, tuple[Image.Image, Image.Image | None]] = {}
        for q in queries:
            if id(q.image) not in images:
                rgb = q.image.convert("RGB")
                images[id(q.image)] = (rgb, _background(rgb, BGCOLOR) if id(q.image) in masked else None)
        batches = list(_chunks(queries, self.batch_size))
        features = []
        with torch.no_grad(), _maybe_pool(self.workers) as pool:
            pending = _submit_batch(pool, self._prepare, batches[0], images)
            for index in range(len(batches)):
                crops = [f.result() if isinstance(f, Future) else f for f in pending]
                if index + 1 < len(batches):  # prepare the next batch while this one runs
                    pending = _submit_batch(pool, self._prepare, batches[index + 1], images)
                features.append(self._image_features(torch.stack(crops)))
        return torch.cat(features)

    def logits(self, queries: Sequence[ColorQuery]) -> torch.Tensor:
        """(len(queries), 10) float32 CPU logits over COLORS, in query order."""
        import torch

        if not queries:
            return torch.empty(0, len(COLORS))
        features = self._features_for(queries)
        groups: dict[str, list[int]] = {}
        for index, q in enumerate(queries):
            groups.setdefault(q.classname, []).append(index)
        out = torch.empty(len(queries), len(COLORS))
        with torch.no_grad():
            for classname, rows in groups.items():
                index = torch.tensor(rows)
                out[index] = self._logits(features[index.to(features.device)], self.classifier_for(classname))
        return out

    def classify(self, queries: list[ColorQuery]) -> list[str]:
        """GenEval colour name of each query, in query order."""
        if not queries:
            return []
        return [COLORS[i] for i in self.logits(queries).argmax(dim=1).tolist()]

    # -- reference path ----------------------------------------------------------------------

    def reference_logits(
        self,
        image: Image.Image,
        boxes_and_masks: Sequence[tuple[Box, np.ndarray | None]],
        classname: str,
        num_workers: int = 0,
    ) -> torch.Tensor:
        """GenEval's loop for one image and class: a DataLoader of 16 crops per batch."""
        import torch

        loader = torch.utils.data.DataLoader(
            _ReferenceCrops(image, list(boxes_and_masks), self.preprocess),
            batch_size=REFERENCE_BATCH_SIZE,
            num_workers=num_workers,
        )
        classifier = self.classifier_for(classname)
        pred = []
        with torch.no_grad():
            for pixels, _target in loader:
                pred.append(self._logits(self._image_features(pixels), classifier))
        return torch.cat(pred)

    def classify_one_image_reference(
        self,
        image: Image.Image,
        boxes_and_masks: Sequence[tuple[Box, np.ndarray | None]],
        classname: str,
        num_workers: int = 0,
    ) -> list[str]:
        """The reference (slow) path: same colours as `classify`, kept for benchmarks and tests."""
        if not boxes_and_masks:
            return []
        logits = self.reference_logits(image, boxes_and_masks, classname, num_workers)
        return [COLORS[i] for i in logits.argmax(dim=1).tolist()]


def _maybe_pool(workers: int) -> contextlib.AbstractContextManager[ThreadPoolExecutor | None]:
    return ThreadPoolExecutor(max_workers=workers) if workers > 0 else contextlib.nullcontext()


def _submit_batch(pool: ThreadPoolExecutor | None, fn: Any, batch: Sequence[ColorQuery], images: dict):
    if pool is None:
        return [fn(q, images) for q in batch]
    return [pool.submit(fn, q, images) for q in batch]


class _ReferenceCrops:
    """GenEval's ImageCrops dataset: RGB conversion and background made once per image.

    A plain map-style dataset (__len__ + __getitem__) is all DataLoader needs, so this module
    does not have to import torch to define it.
    """

    def __init__(self, image: Image.Image, objects: list[tuple[Box, np.ndarray | None]], preprocess: Any):
        self._image = image.convert("RGB")
        self._blank = _background(self._image, BGCOLOR)
        self._objects = objects
        self._preprocess = preprocess

    def __len__(self) -> int:
        return len(self._objects)

    def __getitem__(self, index: int):
        box, mask = self._objects[index]
        return self._preprocess(_composite_and_crop(self._image, self._blank, box, mask)), 0


def _register_sidecar_config(arch: str, weights: Path) -> None:
    """Make a custom arch saved as `<arch>.json` beside its checkpoint known to open_clip."""
    import open_clip

    sidecar = weights.parent / f"{arch}.json"
    if arch not in open_clip.list_models() and sidecar.is_file():
        open_clip.add_model_config(sidecar)
