"""GenEval's reference detector: Mask2Former Swin-S (COCO instance segmentation) through mmdet 3.x.

GenEval itself ran mmdet 2.x, `inference_detector(model, filepath)`, one image per call.
mmdet 3.x keeps the same network, test resize (1333x800, keep ratio), normalisation, padding
to a multiple of 32 and instance post-processing (`MaskFormerFusionHead.instance_postprocess`),
so its flat instances grouped per class are GenEval's per-class (k, 5) arrays and masks.

Two choices keep us close to 2.x where 3.x's defaults differ or cost time:
  * The image is resized as uint8, as 2.x's test pipeline did; 3.x's config loads it as
    float32 first, which changes resized pixel values by rounding (up to half a grey level).
  * Images are batched: the pipeline runs per image, then one forward pass per batch.
    Only images of the same size share a batch, so every image gets the padding it would get
    alone and the results equal one-by-one inference.

On CPU the instance post-processing is our own (`mmdet_postprocess.py`), not mmdet's: mmdet
upsamples every query's mask to the padded input and then the image size and scores, binarises
and boxes the mask once per selected (query, class) pair, up to max_per_image = 100 times;
we do that once per selected query. The results are bitwise mmdet's (see that function and
tests/test_mmdet_postprocess.py); `MMDetBackend(..., fast_postprocess=False)` runs mmdet's own.

Nothing heavy is imported at module import (no torch, no mmdet): the CLI must start instantly.
"""

from __future__ import annotations

import copy
import importlib.util
import pickle
from contextlib import AbstractContextManager, nullcontext
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from harness.devices import pick_device
from harness.geneval.backends.mmdet_postprocess import check_fast_postprocess_supported, predict_instances
from harness.geneval.classes import COCO_CLASSES
from harness.geneval.detections import ImageDetections, group_by_class
from harness.hashing import file_sha256

CONFIG_RELPATH = "configs/mask2former/mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py"
CHECKPOINT_NAME = "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco_20220504_001756-c9d0c4f2.pth"
CHECKPOINT_URL = (
    "https://download.openmmlab.com/mmdetection/v3.0/mask2former/"
    "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco/" + CHECKPOINT_NAME
)
INSTALL_HINT = (
    "run `make install` (or `pip install 'stepwise-bench[mmdet]'`). mmcv 2.1.0 must be built "
    "with its compiled ops (mmcv.ops) and has no PyPI wheel for this torch: `make install-mmdet` "
    "installs ../shared/wheels/mmcv-*.whl or builds mmcv from source (see README)"
)
DEFAULT_BATCH_SIZE = 8
# HistoryBuffer's statistics methods, pickled (protocol 2) as getattr(HistoryBuffer, name).
_HISTORY_BUFFER_STATISTICS = frozenset({"min", "max", "current", "mean"})


class MMDetNotInstalledError(ImportError):
    """mmdet, mmengine or mmcv (with compiled ops) cannot be imported."""


class MMDetCheckpointNotFoundError(FileNotFoundError):
    """The mmdet checkpoint (or config) file named for the detector does not exist."""


class MMDetCheckpointError(RuntimeError):
    """The checkpoint exists but cannot be loaded safely or does not fit the config."""


# --------------------------------------------------------------------------- environment


def mmdet_status() -> tuple[bool, str]:
    """Whether the mmdet backend can run here, and a one-line account of why (for `doctor`)."""
    try:
        versions = _import_mmdet()
    except MMDetNotInstalledError as exc:
        return False, str(exc)
    return True, ", ".join(f"{name} {version}" for name, version in versions.items()) + " (mmcv.ops ok)"


def _import_mmdet() -> dict[str, str]:
    """Import mmdet, mmengine and mmcv's compiled ops; their versions, or a clear error."""
    try:
        import mmcv
        import mmdet
        import mmengine
    except (ImportError, AssertionError, OSError) as exc:  # mmdet asserts a compatible mmcv
        raise MMDetNotInstalledError(f"the mmdet backend needs mmdet, mmengine and mmcv ({exc}): "
                                     + INSTALL_HINT) from exc
    try:
        # mmcv built without its C++/CUDA extension imports fine but fails here; Mask2Former
        # needs mmcv.ops (multi-scale deformable attention).
        import mmcv.ops
    except (ImportError, OSError) as exc:
        raise MMDetNotInstalledError(f"mmcv {mmcv.__version__} is installed without its compiled ops "
                                     f"({exc}): " + INSTALL_HINT) from exc
    return {"mmdet": mmdet.__version__, "mmengine": mmengine.__version__, "mmcv": mmcv.__version__}


def default_config_path() -> Path:
    """GenEval's detector config as shipped inside the installed mmdet package."""
    spec = importlib.util.find_spec("mmdet")
    if spec is None or spec.origin is None:
        raise MMDetNotInstalledError("the mmdet backend needs mmdet: " + INSTALL_HINT)
    package = Path(spec.origin).parent
    # A wheel ships configs under mmdet/.mim/; a source checkout keeps them beside the package.
    for candidate in (package / ".mim" / CONFIG_RELPATH, package.parent / CONFIG_RELPATH):
        if candidate.is_file():
            return candidate
    raise MMDetCheckpointNotFoundError(f"mmdet's config {CONFIG_RELPATH} is not in {package}; "
                                       "pass the config file explicitly")


# --------------------------------------------------------------------------- safe loading


def _numpy_multiarray() -> Any:
    try:
        from numpy._core import multiarray  # numpy >= 2 (and 1.26's forward-compat alias)
    except ImportError:  # pragma: no cover - older numpy
        from numpy.core import multiarray
    return multiarray


def _history_buffer_method(owner: Any, name: str) -> Any:
    """A `getattr` restricted to what a pickled HistoryBuffer needs.

    HistoryBuffer pickles its statistics methods, which protocol 2 writes as
    `builtins.getattr(HistoryBuffer, "mean")`. Allowing the real getattr would let a checkpoint
    reach any attribute of any allowed object, so this stand-in is registered under that name.
    """
    from mmengine.logging import HistoryBuffer

    if owner is HistoryBuffer and name in _HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({owner!r}, {name!r}); only "
                                 f"HistoryBuffer's statistics methods are allowed")


def checkpoint_safe_globals() -> list[Any]:
    """The globals an mmdet/mmengine checkpoint's `meta` and `message_hub` need, and no more.

    Weights are tensors (always allowed). Besides them, checkpoints written by mmengine's
    Runner hold numpy scalars and arrays (iteration counters, logged values), HistoryBuffers
    (logged scalars, which pickle bound statistics methods) and sometimes ConfigDicts.
    """
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer

    multiarray = _numpy_multiarray()
    allowed: list[Any] = [np.ndarray, np.dtype, HistoryBuffer, ConfigDict,
                          (_history_buffer_method, "builtins.getattr")]
    # numpy 1.x pickles name numpy.core.*, numpy 2.x numpy._core.*: same functions, both names.
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((multiarray._reconstruct, f"{module}._reconstruct"))
        allowed.append((multiarray.scalar, f"{module}.scalar"))
    # Unpickling a dtype sets its state on an instance of its DType class (numpy >= 1.25),
    # so those classes must be allowed too; bool, integer, float and complex types only.
    allowed.extend(dict.fromkeys(type(np.dtype(code)) for code in "?bhilqBHILQefdgFDG"))
    return allowed


def _safe_globals() -> AbstractContextManager:
    import torch

    if not hasattr(torch.serialization, "safe_globals"):  # torch < 2.5 loads with weights_only=False
        return nullcontext()
    return torch.serialization.safe_globals(checkpoint_safe_globals())


def load_checkpoint_safely(model: Any, checkpoint: Path) -> dict:
    """mmengine's `load_checkpoint` (strict) under torch's `weights_only` unpickler plus our allowlist."""
    from mmengine.runner import load_checkpoint

    with _safe_globals():
        try:
            # strict: a partial load (e.g. an mmdet 2.x checkpoint, whose decoder keys differ)
            # would leave layers randomly initialised and give silently meaningless verdicts.
            return load_checkpoint(model, str(checkpoint), map_location="cpu", strict=True)
        except pickle.UnpicklingError as exc:
            raise _unpickling_error(checkpoint, exc) from exc
        except RuntimeError as exc:
            if "do not match exactly" not in str(exc):  # mmengine's strict-mode mismatch report
                raise MMDetCheckpointError(f"cannot read {checkpoint} as a torch checkpoint: {exc}") from exc
            raise MMDetCheckpointError(
                f"{checkpoint} does not fit the config: {str(exc)[:2000]}\nThe mmdet backend needs "
                f"mmdet 3.x weights for the config, e.g. {CHECKPOINT_NAME} (GenEval's mmdet 2.x "
                "file mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco*.pth has other key names)"
            ) from exc


def _unpickling_error(checkpoint: Path, exc: Exception) -> MMDetCheckpointError:
    """Name the globals outside the allowlist, or say the file is not a checkpoint at all."""
    import torch

    try:  # called inside _safe_globals(): lists only what even our allowlist refuses
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint))
    except (ValueError, RuntimeError, pickle.UnpicklingError):
        unsafe = None  # not a torch.save zip file
    if unsafe is None:
        return MMDetCheckpointError(f"cannot read {checkpoint} as a torch checkpoint: {exc}")
    found = ", ".join(unsafe) if unsafe else str(exc)
    return MMDetCheckpointError(
        f"{checkpoint} holds objects that torch.load(weights_only=True) may not build: {found}. "
        "Only tensors, numpy values and mmengine's HistoryBuffer/ConfigDict are allowed; "
        "if you trust the file, re-save just its state_dict and meta of plain values"
    )


def _checkpoint_missing_message(checkpoint: Path) -> str:
    return (
        f"mmdet checkpoint not found: {checkpoint}\n"
        "The mmdet backend runs GenEval's detector, Mask2Former Swin-S COCO instance segmentation, "
        f"with mmdet 3.x weights: {CHECKPOINT_NAME}\n"
        f"Get it from {CHECKPOINT_URL}\n"
        "(stepwise never downloads it) and pass its path."
    )


# --------------------------------------------------------------------------- batching


def size_batches(images: list[np.ndarray], batch_size: int) -> list[list[int]]:
    """Indices of `images` split into batches of one image size each, at most `batch_size` long.

    Padding is per batch (to the largest image, then to a multiple of 32), so mixing sizes
    would change what a smaller image sees; grouping by size keeps one-by-one results.
    """
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, image in enumerate(images):
        by_size.setdefault((image.shape[0], image.shape[1]), []).append(index)
    return [indices[start:start + batch_size]
            for indices in by_size.values() for start in range(0, len(indices), batch_size)]


def _check_image(index: int, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 \
            or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"image {index}: expected a uint8 RGB array (H, W, 3), got {dtype} {shape}")


# --------------------------------------------------------------------------- instance post-processing
#
# --------------------------------------------------------------------------- backend


class MMDetBackend:
    """Mask2Former through mmdet 3.x; `detect` runs same-size images through it in batches."""

    name = "mmdet"

    def __init__(self, checkpoint: str | Path, config: str | Path | None = None,
                 device: str | None = None, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 fast_postprocess: bool = True) -> None:
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise MMDetCheckpointNotFoundError(_checkpoint_missing_message(self.checkpoint))
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._versions = _import_mmdet()
        self.config = Path(config) if config is not None else default_config_path()
        if not self.config.is_file():
            raise MMDetCheckpointNotFoundError(f"mmdet config not found: {self.config}")
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.cfg = self._load_config()
        self.model = self._build_model()
        self.pipeline = self._build_pipeline()
        # Bitwise equality with mmdet's post-processing is established for torch's CPU kernels
        # only; elsewhere mmdet's own post-processing runs.
        self.fast_postprocess = fast_postprocess and self.device.split(":")[0] == "cpu"
        if self.fast_postprocess:
            check_fast_postprocess_supported(self.model)

    def _load_config(self) -> Any:
        from mmengine.config import Config
        from mmengine.registry import init_default_scope

        cfg = Config.fromfile(str(self.config))
        # Registry names in the config ("Mask2Former", "Resize", ...) resolve in mmdet's scope.
        init_default_scope(cfg.get("default_scope", "mmdet"))
        # The checkpoint holds every weight: no pretrained backbone download at build time.
        cfg.model.backbone.init_cfg = None
        return cfg

    def _build_model(self) -> Any:
        from mmdet.registry import MODELS
        from mmengine.model.utils import revert_sync_batchnorm

        model = revert_sync_batchnorm(MODELS.build(self.cfg.model))
        load_checkpoint_safely(model, self.checkpoint)
        self._check_classes(model)
        return model.to(self.device).eval()

    @staticmethod
    def _check_classes(model: Any) -> None:
        # Labels are mapped to GenEval's names by index: the model must have COCO's 80 things.
        head = getattr(model, "panoptic_head", None) or getattr(model, "bbox_head", None)
        num_things = getattr(head, "num_things_classes", getattr(head, "num_classes", None))
        if num_things != len(COCO_CLASSES):
            raise MMDetCheckpointError(f"the detector has {num_things} object classes; GenEval's "
                                       f"label ids need the {len(COCO_CLASSES)} COCO classes")

    def _build_pipeline(self) -> Any:
        from mmcv.transforms import Compose
        from mmdet.utils import get_test_pipeline_cfg

        steps = [step for step in copy.deepcopy(get_test_pipeline_cfg(self.cfg))
                 if "Annotations" not in step["type"]]  # no ground truth at inference
        if "LoadImage" not in steps[0]["type"]:
            raise MMDetCheckpointError(f"the config's test pipeline starts with {steps[0]['type']}, "
                                       "not an image loader")
        # Arrays instead of files; uint8 so Resize rounds like mmdet 2.x's pipeline did.
        steps[0] = dict(type="mmdet.LoadImageFromNDArray", to_float32=False)
        return Compose(steps)

    @cached_property
    def checkpoint_sha256(self) -> str:
        return file_sha256(self.checkpoint)

    def describe(self) -> dict[str, str]:
        return {
            "backend": self.name,
            "config": self.config.name,
            "checkpoint": self.checkpoint.name,
            "checkpoint_sha256": self.checkpoint_sha256,
            "mmdet_version": self._versions["mmdet"],
            "device": self.device,
            "dtype": "float32",
        }

    def detect(self, images: list[np.ndarray]) -> list[ImageDetections]:
        for index, image in enumerate(images):
            _check_image(index, image)
        results: list[ImageDetections | None] = [None] * len(images)
        for batch in size_batches(images, self.batch_size):
            for index, detections in zip(batch, self._detect_batch([images[i] for i in batch]),
                                         strict=True):
                results[index] = detections
        return results  # type: ignore[return-value]  # every slot is filled above

    def _detect_batch(self, images: list[np.ndarray]) -> list[ImageDetections]:
        """One forward pass over same-size images."""
        import torch
        from mmengine.dataset import pseudo_collate

        # mmdet's pipeline expects BGR, as mmcv reads files (GenEval passed file paths).
        samples = [self.pipeline(dict(img=np.ascontiguousarray(image[..., ::-1]), img_id=i))
                   for i, image in enumerate(images)]
        with torch.no_grad():
            if self.fast_postprocess:
                instances = predict_instances(self.model, pseudo_collate(samples))
            else:
                instances = [pred.pred_instances for pred in self.model.test_step(pseudo_collate(samples))]
        return [_to_detections(inst, image.shape[:2]) for inst, image in zip(instances, images, strict=True)]


def _to_detections(instances: Any, image_hw: tuple[int, int]) -> ImageDetections:
    masks = instances.masks.cpu().numpy().astype(bool, copy=False)
    if masks.shape[1:] != tuple(image_hw):
        raise MMDetCheckpointError(f"masks of shape {masks.shape[1:]} for an image of {image_hw}")
    return group_by_class(
        boxes=instances.bboxes.cpu().numpy().astype(np.float32, copy=False),
        scores=instances.scores.cpu().numpy().astype(np.float32, copy=False),
        labels=instances.labels.cpu().numpy(),
        class_names=COCO_CLASSES,
        masks=masks,
    )
