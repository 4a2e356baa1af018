"""The transformers Mask2Former backend: loading, batching, mmdet-style post-processing, labels."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from harness.geneval.backends.base import DetectorBackend
from harness.geneval.backends.hf_backend import (
    DEFAULT_MODEL,
    HFMask2FormerBackend,
    HFModelNotFoundError,
    geneval_name,
    hf_status,
    instance_postprocess,
    label_to_geneval_index,
    masks_to_boxes,
    masks_to_image,
)
from harness.geneval.classes import COCO_CLASSES
from harness.tiny.hf_detector import COCO_INSTANCE_LABELS, write_tiny_hf_detector

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    return write_tiny_hf_detector(tmp_path_factory.mktemp("tiny-m2f"))


@pytest.fixture(scope="module")
def backend(tiny_dir: Path) -> HFMask2FormerBackend:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        return HFMask2FormerBackend(tiny_dir, device="cpu")


def _images(*shapes: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


# ----------------------------------------------------------------------------- loading


def test_tiny_model_loads_offline_from_local_dir(tiny_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    det = HFMask2FormerBackend(tiny_dir, device="cpu")
    assert isinstance(det, DetectorBackend)
    assert det.name == "hf"
    info = det.describe()
    assert all(isinstance(v, str) for v in info.values())
    assert info["backend"] == "hf" and info["model"] == str(tiny_dir)
    assert info["dtype"] == "float32" and info["device"] == "cpu"
    assert len(info["weights_sha256"]) == 64 and info["transformers"]
    assert det.describe() == info  # the fingerprint is computed once and reused
    assert hf_status(tiny_dir)[0]


def test_tiny_writer_is_deterministic(tiny_dir: Path, tmp_path: Path) -> None:
    again = write_tiny_hf_detector(tmp_path / "again", seed=0)
    status, where = hf_status(again)
    assert status, where
    from harness.geneval.backends.hf_backend import weights_fingerprint
    from harness.weights import weight_files

    assert weights_fingerprint(weight_files(again)) == weights_fingerprint(weight_files(tiny_dir))


def test_missing_model_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    local = tmp_path / "no-such-model"
    for model in (local, "stepwise-tests/no-such-mask2former"):
        found, detail = hf_status(model)
        assert not found
        with pytest.raises(HFModelNotFoundError) as err:
            HFMask2FormerBackend(model, device="cpu")
        message = str(err.value)
        assert str(model) in message
        assert f"huggingface-cli download {DEFAULT_MODEL}" in message
        assert "local directory" in message and "HF_HUB_OFFLINE" in message
        assert detail == message
    assert "Hugging Face cache" in message  # the repo-id case says where it looked


def test_unknown_label_is_an_error_at_load(tiny_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    bad = Path(shutil.copytree(tiny_dir, tmp_path / "bad"))
    config = json.loads((bad / "config.json").read_text())
    config["id2label"]["5"] = "wall"
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'wall'"):
        HFMask2FormerBackend(bad, device="cpu")


def test_module_import_does_not_pull_torch() -> None:
    code = (
        "import sys\n"
        "import harness.geneval.backends.hf_backend, harness.tiny.hf_detector\n"
        "from harness.registry import backend_class\n"
        "backend_class('hf')\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


# ----------------------------------------------------------------------------- labels


def test_checkpoint_labels_map_onto_geneval_names_exactly_once() -> None:
    names = [geneval_name(label) for label in COCO_INSTANCE_LABELS]
    assert sorted(names) == sorted(COCO_CLASSES)
    assert geneval_name("mouse") == "computer mouse"
    assert geneval_name("remote") == "tv remote"
    assert geneval_name("keyboard") == "computer keyboard"
    assert geneval_name("Dining_Table") == "dining table"
    with pytest.raises(ValueError, match="not one of GenEval's 80 COCO classes"):
        geneval_name("wall-other-merged")  # a panoptic stuff class
    # The real checkpoint's label order is COCO's, which is GenEval's: the map is the identity.
    index = label_to_geneval_index(dict(enumerate(COCO_INSTANCE_LABELS)))
    assert index.tolist() == list(range(80))


def test_duplicate_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="same GenEval class"):
        label_to_geneval_index({0: "mouse", 1: "computer mouse"})


# ----------------------------------------------------------------------------- detect


def test_detect_batch_of_different_sizes(backend: HFMask2FormerBackend) -> None:
    shapes = [(64, 64), (50, 90), (100, 40)]
    results = backend.detect(_images(*shapes))
    assert len(results) == len(shapes)
    assert sum(len(d) for dets in results for d in dets.values()) > 0
    for (h, w), dets in zip(shapes, results, strict=True):
        assert set(dets) <= set(COCO_CLASSES)
        assert sum(len(d) for d in dets.values()) <= backend.max_per_image
        for d in dets.values():
            assert d.boxes.dtype == np.float32 and d.scores.dtype == np.float32
            assert d.masks is not None and d.masks.dtype == bool and d.masks.shape == (len(d), h, w)
            assert d.masks.any(axis=(1, 2)).all(), "empty masks must be dropped"
            assert (d.boxes[:, 0] >= 0).all() and (d.boxes[:, 1] >= 0).all()
            assert (d.boxes[:, 2] <= w).all() and (d.boxes[:, 3] <= h).all()
            assert (d.boxes[:, 2] > d.boxes[:, 0]).all() and (d.boxes[:, 3] > d.boxes[:, 1]).all()
            assert ((d.scores >= 0) & (d.scores <= 1)).all()


def test_max_per_image_is_respected(backend: HFMask2FormerBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "max_per_image", 7)
    (dets,) = backend.detect(_images((64, 64)))
    assert 0 < sum(len(d) for d in dets.values()) <= 7


def _assert_batch_equals_one_by_one(backend: HFMask2FormerBackend, images: list[np.ndarray]) -> None:
    batched = backend.detect(images)
    single = [backend.detect([image])[0] for image in images]
    for a, b in zip(batched, single, strict=True):
        assert list(a) == list(b)
        for name in a:
            np.testing.assert_allclose(a[name].scores, b[name].scores, atol=1e-5)
            assert (a[name].boxes == b[name].boxes).all()
            assert (a[name].masks == b[name].masks).all()


def test_batch_equals_one_by_one_for_same_size(backend: HFMask2FormerBackend) -> None:
    _assert_batch_equals_one_by_one(backend, _images((64, 64), (64, 64), seed=1))


def test_mixed_sizes_equal_one_by_one(backend: HFMask2FormerBackend) -> None:
    # Mask2Former ignores the pixel mask: padded together, a small image would get other detections.
    _assert_batch_equals_one_by_one(backend, _images((64, 64), (50, 90), (64, 64), seed=2))


class _BrightnessModel:
    """Stands in for Mask2Former: query 0 is a sure 'dog' whose mask logits follow the brightness
    of the (normalised, padded) input at the model's output stride of 4; other queries are empty."""

    dtype = torch.float32

    def __call__(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        b, _, h, w = pixel_values.shape
        queries, dog = 3, COCO_INSTANCE_LABELS.index("dog")
        # Padding is 0 after normalisation, black is about -2, white about +2.
        bright = torch.nn.functional.avg_pool2d(pixel_values[:, :1], 4)[:, 0]
        masks = torch.full((b, queries, h // 4, w // 4), -10.0)
        masks[:, 0] = 4 * bright
        classes = torch.full((b, queries, 81), -10.0)
        classes[:, :, 80] = 10.0
        classes[:, 0, 80] = -10.0
        classes[:, 0, dog] = 10.0
        return SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks)


def test_resize_and_padding_are_undone(backend: HFMask2FormerBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    # The processor resizes (shortest edge 64, multiples of 32) and pads bottom/right to the
    # batch's largest: a 128x64 image stays as is, a 40x60 one becomes 64x96 and is padded to
    # 128x96. A white rectangle must come back where it is in each original image.
    monkeypatch.setattr(backend, "model", _BrightnessModel())
    monkeypatch.setattr(backend, "max_per_image", 1)
    rects = [(30, 90, 10, 40), (10, 30, 20, 50)]  # y1, y2, x1, x2 (exclusive ends)
    images = [np.zeros((128, 64, 3), np.uint8), np.zeros((40, 60, 3), np.uint8)]
    for image, (y1, y2, x1, x2) in zip(images, rects, strict=True):
        image[y1:y2, x1:x2] = 255
    for image, (y1, y2, x1, x2), dets in zip(images, rects, backend.detect(images), strict=True):
        assert list(dets) == ["dog"]
        np.testing.assert_allclose(dets["dog"].boxes[0], [x1, y1, x2, y2], atol=2)
        mask = dets["dog"].masks[0]
        assert mask.shape == image.shape[:2]
        assert mask[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2].all()
        assert mask.sum() <= (y2 - y1 + 4) * (x2 - x1 + 4)


def test_masks_to_image_crops_padding_before_resizing() -> None:
    # Low-res logits over a 32x64 canvas whose left 40 columns are the image: +5 there, -5 in the
    # padding. Cropped first, the whole 48x60 image is positive; resized uncropped it would not be.
    low = torch.full((1, 8, 16), -5.0)
    low[:, :, :10] = 5.0
    full = masks_to_image(low, padded_hw=(32, 64), valid_hw=(32, 40), image_hw=(48, 60))
    assert full.shape == (1, 48, 60) and bool((full > 0).all())


# ----------------------------------------------------------------------------- post-processing


def _logits_from_probs(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64).log().float()


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_instance_postprocess_hand_computed() -> None:
    # 3 queries x 2 classes (+ "no object"); the softmax of log-probabilities gives them back.
    class_logits = _logits_from_probs([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.05, 0.05, 0.9]])
    masks = torch.full((3, 4, 5), -3.0)
    masks[0, 1:3, 1:4] = 2.0  # a 2x3 block...
    masks[0, 2, 3] = 1.0  # ...with one weaker pixel
    masks[1, 3, 4] = 0.5  # a single pixel in the bottom-right corner
    # query 2's mask is empty everywhere

    out = instance_postprocess(class_logits, masks, max_per_image=3)
    # Top 3 of the 6 (query, class) scores: (q0, c0) 0.7, (q1, c1) 0.6, (q0, c1) 0.2.
    assert out.labels.tolist() == [0, 1, 1]
    q0_mask_score = (5 * _sig(2.0) + _sig(1.0)) / 6
    expected = [0.7 * q0_mask_score, 0.6 * _sig(0.5), 0.2 * q0_mask_score]
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5)
    assert out.scores.dtype == np.float32 and out.boxes.dtype == np.float32
    # Boxes as mmdet's mask2bbox: first col/row, last col/row + 1.
    np.testing.assert_array_equal(out.boxes, [[1, 1, 4, 3], [4, 3, 5, 4], [1, 1, 4, 3]])
    assert out.masks.shape == (3, 4, 5) and out.masks.dtype == bool
    assert out.masks[0].sum() == 6 and out.masks[1].sum() == 1

    # With room for everything: (q1, c0) 0.1 joins; query 2's two pairs have empty masks and go.
    everything = instance_postprocess(class_logits, masks, max_per_image=100)
    assert everything.labels.tolist() == [0, 1, 1, 0]
    np.testing.assert_allclose(everything.scores[3], 0.1 * _sig(0.5), rtol=1e-5)


def test_masks_to_boxes_edges() -> None:
    masks = torch.zeros((3, 4, 6), dtype=torch.bool)
    masks[0, 0, 0] = True
    masks[1, :, :] = True
    boxes = masks_to_boxes(masks)
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[0, 0, 1, 1], [0, 0, 6, 4], [0, 0, 0, 0]]


@pytest.mark.mmdet
def test_matches_mmdet_instance_postprocess() -> None:
    """Same numbers as mmdet's own fusion head on the same raw outputs (incl. crop and rescale)."""
    from mmdet.models.seg_heads import panoptic_fusion_heads as fusion
    from mmengine.config import ConfigDict

    head = fusion.MaskFormerFusionHead(
        num_things_classes=80,
        num_stuff_classes=0,
        test_cfg=ConfigDict(max_per_image=100, instance_on=True, panoptic_on=False),
    )
    gen = torch.Generator().manual_seed(0)
    class_logits = torch.randn(20, 81, generator=gen) * 3
    low = torch.randn(20, 16, 24, generator=gen) * 3
    padded, valid, image = (64, 96), (64, 80), (50, 62)

    ours = instance_postprocess(class_logits, low, 100, to_image=lambda m: masks_to_image(m, padded, valid, image))
    upsampled = torch.nn.functional.interpolate(low[None], size=padded, mode="bilinear", align_corners=False)
    sample = SimpleNamespace(metainfo={"img_shape": valid, "ori_shape": image})
    (theirs,) = head.predict(class_logits[None], upsampled, [sample], rescale=True)
    theirs = theirs["ins_results"]
    keep = theirs.masks.flatten(1).any(1)
    order = torch.argsort(theirs.scores[keep], descending=True)
    np.testing.assert_allclose(np.sort(ours.scores)[::-1], theirs.scores[keep][order].numpy(), rtol=1e-5)
    mine = np.argsort(-ours.scores, kind="stable")
    assert ours.labels[mine].tolist() == theirs.labels[keep][order].tolist()
    np.testing.assert_array_equal(ours.boxes[mine], theirs.bboxes[keep][order].numpy())
    np.testing.assert_array_equal(ours.masks[mine], theirs.masks[keep][order].numpy())
