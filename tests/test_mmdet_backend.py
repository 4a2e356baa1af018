"""The mmdet backend on a tiny, randomly initialised Mask2Former built from GenEval's own config.

Offline and CPU-only: the model comes from `harness.tiny.mmdet_detector` (seeded random
weights, written as mmengine writes checkpoints), never from a download.
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import torch_threads

from harness.geneval.classes import COCO_CLASSES
from harness.geneval.detections import ClassDetections

pytestmark = pytest.mark.mmdet

IMAGE_SHAPES = ((64, 64), (64, 96), (64, 64))


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from harness.tiny.mmdet_detector import write_tiny_mmdet

    return write_tiny_mmdet(tmp_path_factory.mktemp("tiny_mmdet"))


@pytest.fixture(scope="module")
def backend(tiny_files: tuple[Path, Path]):
    from harness.geneval.backends.mmdet_backend import MMDetBackend

    config, checkpoint = tiny_files
    return MMDetBackend(checkpoint, config=config, device="cpu")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in IMAGE_SHAPES]


@pytest.fixture(scope="module")
def batched(backend, images: list[np.ndarray]) -> list[dict[str, ClassDetections]]:
    return backend.detect(images)


def test_backend_satisfies_protocol(backend, tiny_files: tuple[Path, Path]) -> None:
    from harness.geneval.backends.base import DetectorBackend
    from harness.geneval.backends.mmdet_backend import MMDetBackend
    from harness.registry import backend_class

    assert backend_class("mmdet") is MMDetBackend
    assert isinstance(backend, DetectorBackend)
    assert backend.name == "mmdet"


def test_describe(backend, tiny_files: tuple[Path, Path]) -> None:
    import hashlib

    import mmdet

    config, checkpoint = tiny_files
    described = backend.describe()
    assert described["backend"] == "mmdet"
    assert described["config"] == config.name
    assert described["checkpoint"] == checkpoint.name
    assert described["checkpoint_sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert described["mmdet_version"] == mmdet.__version__
    assert described["device"] == "cpu"
    assert all(isinstance(v, str) for v in described.values())


def test_detect_batch_shapes_and_types(batched, images: list[np.ndarray]) -> None:
    assert len(batched) == len(images)
    for detections, image in zip(batched, images, strict=True):
        height, width = image.shape[:2]
        assert detections, "random weights still give max_per_image instances"
        assert set(detections) <= set(COCO_CLASSES)
        # max_per_image = 100 instances in all, grouped by class
        assert sum(len(d) for d in detections.values()) == 100
        for dets in detections.values():
            assert isinstance(dets, ClassDetections)
            assert dets.boxes.dtype == np.float32 and dets.boxes.shape == (len(dets), 4)
            assert dets.scores.dtype == np.float32
            assert np.all(dets.boxes[:, [0, 2]] >= 0) and np.all(dets.boxes[:, [0, 2]] <= width)
            assert np.all(dets.boxes[:, [1, 3]] >= 0) and np.all(dets.boxes[:, [1, 3]] <= height)
            assert dets.masks is not None
            assert dets.masks.dtype == np.bool_ and dets.masks.shape == (len(dets), height, width)


def test_batched_equals_one_by_one(backend, batched, images: list[np.ndarray]) -> None:
    # Close, not bitwise: the head's mask logits on CPU differ in the last bits with the batch size,
    # in mmdet's own forward as much as here (post-processing is bitwise mmdet's, tested below).
    for image, together in zip(images, batched, strict=True):
        (alone,) = backend.detect([image])
        assert list(alone) == list(together)
        for name, dets in together.items():
            np.testing.assert_allclose(dets.scores, alone[name].scores, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(dets.boxes, alone[name].boxes, atol=1e-4)
            np.testing.assert_array_equal(dets.masks, alone[name].masks)


# --------------------------------------------------------------------------- fast post-processing

# Sizes whose padded input, image and original shapes differ (crop and rescale both matter), one
# whose mask has a pixel count no SIMD width divides (sigmoid's scalar remainder falls inside it),
# and one whose original size sends the rescale through torch's channels-last kernel (H + W <= 128).
POSTPROCESS_SHAPES = ((64, 64), (80, 48), (256, 256), (61, 47))
INSTANCE_FIELDS = ("bboxes", "labels", "scores", "masks")




def _collated(backend, images: list[np.ndarray]) -> dict:
    from mmengine.dataset import pseudo_collate

    return pseudo_collate([backend.pipeline(dict(img=np.ascontiguousarray(image[..., ::-1]), img_id=i))
                           for i, image in enumerate(images)])


def _fast_and_mmdet(backend, images: list[np.ndarray]) -> tuple[list, list]:
    import torch

    from harness.geneval.backends.mmdet_postprocess import predict_instances

    with torch.no_grad():
        ours = predict_instances(backend.model, _collated(backend, images))
        theirs = [pred.pred_instances for pred in backend.model.test_step(_collated(backend, images))]
    return ours, theirs


def _assert_bitwise_equal(ours, theirs) -> None:
    import torch

    assert len(ours) == len(theirs)
    for got, want in zip(ours, theirs, strict=True):
        for field in INSTANCE_FIELDS:
            a, b = getattr(got, field), getattr(want, field)
            assert a.dtype == b.dtype and a.shape == b.shape, field
            assert torch.equal(a, b), field  # exact: same values, same instance order


@pytest.mark.parametrize("shape", POSTPROCESS_SHAPES)
def test_fast_postprocess_is_mmdets_bitwise(backend, shape: tuple[int, int]) -> None:
    import torch

    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    images = [rng.integers(0, 256, size=(*shape, 3), dtype=np.uint8) for _ in range(2)]
    ours, theirs = _fast_and_mmdet(backend, images)
    _assert_bitwise_equal(ours, theirs)
    num_queries = backend.model.panoptic_head.num_queries
    for instances in ours:
        # 100 (query, class) pairs from 8 queries: queries are selected for several classes, so
        # the per-query computation is shared between pairs, which is what is being tested.
        assert len(instances.scores) == 100 > num_queries
        distinct_masks = torch.unique(instances.masks.flatten(1), dim=0)
        assert len(distinct_masks) < len(instances.masks)
        assert instances.masks.any()  # non-empty masks: scores and boxes are not all trivial
        assert len(set(instances.scores.tolist())) > num_queries


def test_fast_postprocess_on_two_threads(backend) -> None:
    # Two threads split sigmoid's (pairs, H, W) tensor in chunks, each with a scalar remainder.
    image = np.random.default_rng(7).integers(0, 256, size=(61, 47, 3), dtype=np.uint8)
    with torch_threads(2):
        ours, theirs = _fast_and_mmdet(backend, [image])
    _assert_bitwise_equal(ours, theirs)


def test_fast_postprocess_without_sigmoid_probe(backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # Where the sigmoid formulas cannot be told apart, mmdet's layout is used verbatim.
    from harness.geneval.backends import mmdet_postprocess

    monkeypatch.setattr(mmdet_postprocess, "_scalar_sigmoid_positions", lambda numel: None)
    image = np.random.default_rng(8).integers(0, 256, size=(61, 47, 3), dtype=np.uint8)
    _assert_bitwise_equal(*_fast_and_mmdet(backend, [image]))


def test_backend_paths_give_identical_detections(backend, tiny_files, images: list[np.ndarray],
                                                 batched) -> None:
    from harness.geneval.backends.mmdet_backend import MMDetBackend

    assert backend.fast_postprocess
    config, checkpoint = tiny_files
    slow = MMDetBackend(checkpoint, config=config, device="cpu", fast_postprocess=False)
    assert not slow.fast_postprocess
    for got, want in zip(batched, slow.detect(images), strict=True):
        assert list(got) == list(want)
        for name, dets in got.items():
            np.testing.assert_array_equal(dets.scores, want[name].scores)
            np.testing.assert_array_equal(dets.boxes, want[name].boxes)
            np.testing.assert_array_equal(dets.masks, want[name].masks)


@pytest.mark.parametrize(("change", "message"), [
    ({"instance_on": False}, "instance_on"),
    ({"semantic_on": True}, "semantic_on"),
    ({"max_per_image": 0}, "max_per_image"),
    ({"max_per_image": 100.0}, "max_per_image"),
    ({"some_new_flag": 1}, "some_new_flag"),
])
def test_unsupported_test_cfg_is_refused(backend, monkeypatch: pytest.MonkeyPatch, change: dict,
                                         message: str) -> None:
    from mmengine.config import ConfigDict

    from harness.geneval.backends.mmdet_postprocess import (
        UnsupportedPostprocessError,
        check_fast_postprocess_supported,
    )

    fusion = backend.model.panoptic_fusion_head
    check_fast_postprocess_supported(backend.model)  # the config as it is passes
    monkeypatch.setattr(fusion, "test_cfg", ConfigDict({**fusion.test_cfg, **change}))
    with pytest.raises(UnsupportedPostprocessError, match=message):
        check_fast_postprocess_supported(backend.model)


def test_panoptic_only_flags_are_accepted(backend, monkeypatch: pytest.MonkeyPatch) -> None:
    # iou_thr, filter_low_score, object_mask_thr and panoptic_on change panoptic results only.
    from mmengine.config import ConfigDict

    from harness.geneval.backends.mmdet_postprocess import check_fast_postprocess_supported

    fusion = backend.model.panoptic_fusion_head
    changed = {"iou_thr": 0.5, "filter_low_score": False, "object_mask_thr": 0.1}
    monkeypatch.setattr(fusion, "test_cfg", ConfigDict({**fusion.test_cfg, **changed}))
    check_fast_postprocess_supported(backend.model)
    image = np.random.default_rng(9).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    _assert_bitwise_equal(*_fast_and_mmdet(backend, [image]))


def test_overridden_mmdet_code_is_refused(backend, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.geneval.backends.mmdet_postprocess import (
        UnsupportedPostprocessError,
        check_fast_postprocess_supported,
    )

    fusion = backend.model.panoptic_fusion_head
    subclass = type("PatchedFusionHead", (type(fusion),), {"instance_postprocess": lambda self, *a: None})
    monkeypatch.setattr(fusion, "__class__", subclass)
    with pytest.raises(UnsupportedPostprocessError, match=r"PatchedFusionHead\.instance_postprocess"):
        check_fast_postprocess_supported(backend.model)


def test_image_order_is_kept(backend, images: list[np.ndarray], batched) -> None:
    reordered = backend.detect([images[1], images[2], images[0]])
    for got, want in zip(reordered, [batched[1], batched[2], batched[0]], strict=True):
        assert list(got) == list(want)


def test_size_batches_groups_by_size_and_caps_length() -> None:
    from harness.geneval.backends.mmdet_backend import size_batches

    shapes = [(64, 64), (64, 96), (64, 64), (64, 64), (64, 96)]
    images = [np.zeros((h, w, 3), np.uint8) for h, w in shapes]
    assert size_batches(images, batch_size=2) == [[0, 2], [3], [1, 4]]


def test_rejects_non_rgb_uint8(backend) -> None:
    with pytest.raises(ValueError, match="uint8 RGB"):
        backend.detect([np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(ValueError, match="uint8 RGB"):
        backend.detect([np.zeros((8, 8), np.uint8)])


# --------------------------------------------------------------------------- safe loading


def _runner_like_checkpoint(path: Path, state_dict: dict, extra_meta: dict | None = None) -> None:
    """What mmengine's Runner writes: numpy scalars, a HistoryBuffer, a ConfigDict in meta."""
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import save_checkpoint

    buffer = HistoryBuffer()
    buffer.update(0.5)
    buffer.update(0.25)
    meta = {
        "epoch": np.int64(3),
        "lr": np.float64(1e-4),
        "loss_scale": np.float32(512.0),
        "flags": np.array([1, 0], dtype=np.uint8),
        "dtype": np.dtype("float32"),
        "log": buffer,
        "train_cfg": ConfigDict(type="IterBasedTrainLoop", max_iters=10, val=dict(interval=5)),
        **(extra_meta or {}),
    }
    save_checkpoint({"meta": meta, "state_dict": state_dict}, str(path))


def test_checkpoint_meta_loads_with_allowlist(tmp_path: Path) -> None:
    import torch
    from mmengine.config import ConfigDict
    from mmengine.logging import HistoryBuffer

    from harness.geneval.backends.mmdet_backend import load_checkpoint_safely

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "runner.pth"
    _runner_like_checkpoint(path, model.state_dict())
    # Plain weights_only loading refuses it: the allowlist is what makes it load.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    fresh = torch.nn.Linear(2, 2)
    checkpoint = load_checkpoint_safely(fresh, path)
    meta = checkpoint["meta"]
    assert meta["epoch"] == 3 and isinstance(meta["epoch"], np.int64)
    assert meta["loss_scale"] == np.float32(512.0)
    np.testing.assert_array_equal(meta["flags"], [1, 0])
    assert meta["dtype"] == np.dtype("float32")
    assert isinstance(meta["log"], HistoryBuffer) and meta["log"].mean() == pytest.approx(0.375)
    assert isinstance(meta["train_cfg"], ConfigDict) and meta["train_cfg"].val.interval == 5
    torch.testing.assert_close(fresh.weight, model.weight)
    # The allowlist is scoped to the load, not left behind globally.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_tiny_checkpoint_needs_the_allowlist(tiny_files: tuple[Path, Path]) -> None:
    import torch

    _, checkpoint = tiny_files
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(checkpoint)))
    assert "mmengine.logging.history_buffer.HistoryBuffer" in unsafe
    assert "builtins.getattr" in unsafe


def test_disallowed_class_still_fails(tmp_path: Path) -> None:
    import torch

    from harness.geneval.backends.mmdet_backend import MMDetCheckpointError, load_checkpoint_safely

    model = torch.nn.Linear(2, 2)
    path = tmp_path / "evil.pth"
    _runner_like_checkpoint(path, model.state_dict(), {"args": argparse.Namespace(x=1)})
    with pytest.raises(MMDetCheckpointError, match=r"argparse\.Namespace"):
        load_checkpoint_safely(torch.nn.Linear(2, 2), path)


class _GetattrGadget:
    """Pickles as getattr(HistoryBuffer, "update"): a method other than the statistics ones."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return getattr, (HistoryBuffer, "update")


def test_getattr_is_restricted_to_history_buffer_statistics(tmp_path: Path) -> None:
    import torch

    from harness.geneval.backends.mmdet_backend import MMDetCheckpointError, load_checkpoint_safely

    path = tmp_path / "gadget.pth"
    torch.save({"meta": {"x": _GetattrGadget()}, "state_dict": torch.nn.Linear(2, 2).state_dict()}, path)
    with pytest.raises(MMDetCheckpointError, match="statistics methods"):
        load_checkpoint_safely(torch.nn.Linear(2, 2), path)


def test_checkpoint_that_does_not_fit_the_config(tmp_path: Path, tiny_files: tuple[Path, Path]) -> None:
    import torch

    from harness.geneval.backends.mmdet_backend import MMDetBackend, MMDetCheckpointError

    config, _ = tiny_files
    path = tmp_path / "other.pth"
    torch.save({"state_dict": torch.nn.Linear(2, 2).state_dict()}, path)
    with pytest.raises(MMDetCheckpointError, match="does not fit the config"):
        MMDetBackend(path, config=config, device="cpu")


# --------------------------------------------------------------------------- errors and imports


def test_unreadable_checkpoint(tmp_path: Path) -> None:
    import torch

    from harness.geneval.backends.mmdet_backend import MMDetCheckpointError, load_checkpoint_safely

    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(MMDetCheckpointError, match="cannot read"):
        load_checkpoint_safely(torch.nn.Linear(2, 2), path)


def test_missing_checkpoint_message(tmp_path: Path) -> None:
    from harness.geneval.backends.mmdet_backend import CHECKPOINT_NAME, MMDetBackend

    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError) as info:
        MMDetBackend(missing)
    message = str(info.value)
    assert str(missing) in message
    assert CHECKPOINT_NAME in message
    assert "https://download.openmmlab.com/mmdetection/v3.0/mask2former/" in message


def test_default_config_is_genevals_model() -> None:
    from harness.geneval.backends.mmdet_backend import default_config_path

    path = default_config_path()
    assert path.is_file()
    assert path.name == "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco.py"


def test_mmdet_status_reports_versions() -> None:
    from harness.geneval.backends.mmdet_backend import mmdet_status

    ok, message = mmdet_status()
    assert ok, message
    assert "mmdet 3." in message and "mmcv 2." in message


def test_module_import_does_not_import_torch() -> None:
    code = (
        "import sys, harness.geneval.backends.mmdet_backend; "
        "heavy = [m for m in ('torch', 'mmdet', 'mmengine', 'mmcv') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
