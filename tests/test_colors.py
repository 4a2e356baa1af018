"""GenEval's colour classifier: exact crops, QuickGELU, classifier maths, batched == reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from harness.geneval.classes import COLORS, color_prompts
from harness.geneval.colors import (
    ColorClassifier,
    ColorQuery,
    clip_status,
    crop_for_color,
    resolve_openai_weights,
)

torch.set_num_threads(1)

GREY = (153, 153, 153)  # "#999"
OPENAI_REPO = "timm/vit_large_patch14_clip_224.openai"
REPO_ROOT = Path(__file__).resolve().parents[1]


def _grid_image(width: int = 6, height: int = 5) -> Image.Image:
    """Every pixel distinct, so a crop's pixels say exactly which box was taken."""
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs * 10, ys * 10, xs + ys * width], axis=-1).astype(np.uint8)
    return Image.fromarray(pixels)


# --------------------------------------------------------------------------------------------
# crop_for_color


def test_crop_without_mask_is_a_plain_crop():
    image = _grid_image()
    crop = crop_for_color(image, (1, 2, 4, 5), None)
    assert crop.mode == "RGB" and crop.size == (3, 3)
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(image)[2:5, 1:4])


def test_crop_with_mask_composites_grey_outside_the_mask():
    image = _grid_image()
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:3, 2:5] = True
    crop = np.asarray(crop_for_color(image, (0, 0, 6, 5), mask))
    original = np.asarray(image)
    np.testing.assert_array_equal(crop[mask], original[mask])
    assert (crop[~mask] == GREY).all()


def test_crop_outside_the_image_is_black_even_with_a_mask():
    # GenEval composites the whole image first and crops after: padding is PIL's black, not #999.
    image = _grid_image()
    mask = np.ones((5, 6), dtype=bool)
    crop = np.asarray(crop_for_color(image, (4, 3, 8, 7), mask))
    assert crop.shape == (4, 4, 3)
    np.testing.assert_array_equal(crop[:2, :2], np.asarray(image)[3:5, 4:6])
    assert (crop[2:, :] == 0).all() and (crop[:, 2:] == 0).all()


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((0.5, 1.5, 2.5, 3.5), (0, 2, 2, 4)),  # half to even, as Python's round (PIL's crop)
        ((0.49, 0.51, 4.5, 4.5000001), (0, 1, 4, 5)),
        (np.array([1.5, 0.5, 5.5, 2.5, 0.97], dtype=np.float32), (2, 0, 6, 2)),  # extra score ignored
    ],
)
def test_float_boxes_round_like_pil(box, expected):
    image = _grid_image()
    x1, y1, x2, y2 = expected
    crop = crop_for_color(image, box, None)
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(image)[y1:y2, x1:x2])


def test_rgba_and_l_inputs_are_converted_to_rgb():
    rgba = Image.new("RGBA", (4, 4), (10, 20, 30, 0))  # alpha is dropped, not composited
    crop = crop_for_color(rgba, (0, 0, 2, 2), np.ones((4, 4), dtype=bool))
    assert crop.mode == "RGB" and (np.asarray(crop) == (10, 20, 30)).all()
    gray = Image.new("L", (4, 4), 77)
    mask = np.zeros((4, 4), dtype=bool)
    mask[0, 0] = True
    crop = np.asarray(crop_for_color(gray, (0, 0, 2, 2), mask))
    assert (crop[0, 0] == 77).all() and (crop[1, 1] == GREY).all()


def test_mask_of_the_wrong_size_is_refused():
    with pytest.raises(ValueError, match="mask shape"):
        crop_for_color(_grid_image(), (0, 0, 2, 2), np.ones((6, 5), dtype=bool))


def test_original_background_keeps_the_pixels():
    image = _grid_image()
    crop = crop_for_color(image, (0, 0, 6, 5), np.zeros((5, 6), dtype=bool), bgcolor="original")
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(image))


# --------------------------------------------------------------------------------------------
# Architecture: QuickGELU


def _activations(model) -> set[str]:
    from open_clip.transformer import QuickGELU

    return {type(m).__name__ for m in model.modules() if isinstance(m, QuickGELU | torch.nn.GELU)}


def test_real_vit_l_14_quickgelu_builds_quickgelu():
    # On the meta device: the full architecture in ~0.1 s without allocating 1.7 GB.
    with torch.device("meta"):
        model = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None, device="meta")
        plain = open_clip.create_model("ViT-L-14", pretrained=None, device="meta")
    assert _activations(model) == {"QuickGELU"}
    assert _activations(plain) == {"GELU"}  # the trap: open_clip 3.x's ViT-L-14 is not GenEval's


def test_plain_vit_l_14_is_refused_for_openai_weights(tmp_path):
    with pytest.raises(ValueError, match="QuickGELU"):
        ColorClassifier.load(arch="ViT-L-14", device="cpu", cache_dir=tmp_path)


def test_tiny_model_is_quickgelu_and_in_eval_mode(tiny):
    assert _activations(tiny.model) == {"QuickGELU"}
    assert not tiny.model.training


# --------------------------------------------------------------------------------------------
# Tiny classifier


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    from harness.tiny.clip import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_files) -> ColorClassifier:
    arch, checkpoint = tiny_files
    return ColorClassifier.load(arch=arch, weights=checkpoint, device="cpu")


def _random_scene(rng: np.random.Generator, size: tuple[int, int]) -> Image.Image:
    """Coloured rectangles over noise, so that crops differ in colour."""
    width, height = size
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    for _ in range(6):
        x, y = rng.integers(0, width - 8), rng.integers(0, height - 8)
        pixels[y : y + rng.integers(8, 40), x : x + rng.integers(8, 40)] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels)


def _random_objects(rng: np.random.Generator, image: Image.Image, count: int):
    width, height = image.size
    objects = []
    for _ in range(count):
        x1, y1 = rng.uniform(0, width - 12), rng.uniform(0, height - 12)
        x2, y2 = rng.uniform(x1 + 6, width), rng.uniform(y1 + 6, height)
        box = np.array([x1, y1, x2, y2, rng.uniform()], dtype=np.float32)
        mask = None
        if rng.uniform() < 0.6:
            mask = np.zeros((height, width), dtype=bool)
            inside = (slice(int(y1), int(y2)), slice(int(x1), int(x2)))
            mask[inside] = rng.uniform(size=mask[inside].shape) < 0.7
        objects.append((box, mask))
    return objects


@pytest.fixture(scope="module")
def scenes():
    """(image, classname, [(box, mask)]) groups, as GenEval would ask for them."""
    rng = np.random.default_rng(1)
    groups = []
    for index, size in enumerate([(64, 48), (80, 80), (50, 70), (96, 64)]):
        image = _random_scene(rng, size)
        if index == 2:
            image = image.convert("RGBA")
        for classname in ("cat", "traffic light"):
            groups.append((image, classname, _random_objects(rng, image, int(rng.integers(1, 20)))))
    return groups


def _queries(scenes) -> list[ColorQuery]:
    return [ColorQuery(image, box, mask, cls) for image, cls, objects in scenes for box, mask in objects]


def test_text_classifier_is_normalised_mean_of_normalised_embeddings(tiny):
    columns = []
    tokenizer = open_clip.get_tokenizer(tiny.arch)
    with torch.no_grad():
        for texts in color_prompts("dog"):
            tokens = tokenizer(texts)
            embeddings = tiny.model.encode_text(tokens)
            embeddings = embeddings / embeddings.norm(dim=-1, keepdim=True)
            mean = embeddings.mean(dim=0)
            columns.append(mean / mean.norm())
    expected = torch.stack(columns, dim=1)
    classifier = tiny.classifier_for("dog")
    assert classifier.shape == (32, len(COLORS))
    torch.testing.assert_close(classifier, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(classifier.norm(dim=0), torch.ones(len(COLORS)))


def test_text_classifier_is_cached_per_class(tiny_files):
    arch, checkpoint = tiny_files
    classifier = ColorClassifier.load(arch=arch, weights=checkpoint, device="cpu")
    calls = []
    encode_text = classifier.model.encode_text
    classifier.model.encode_text = lambda *a, **k: calls.append(1) or encode_text(*a, **k)
    first = classifier.classifier_for("cat")
    assert len(calls) == len(COLORS)  # one call per colour: its 3 templates in one batch
    assert classifier.classifier_for("cat") is first
    assert len(calls) == len(COLORS)
    classifier.classifier_for("dog")
    assert len(calls) == 2 * len(COLORS)


def test_classify_matches_the_reference_loop(tiny, scenes):
    queries = _queries(scenes)
    batched = tiny.classify(queries)
    logits = tiny.logits(queries)
    reference, reference_logits = [], []
    for image, classname, objects in scenes:
        reference += tiny.classify_one_image_reference(image, objects, classname)
        reference_logits.append(tiny.reference_logits(image, objects, classname))
    assert batched == reference
    torch.testing.assert_close(logits, torch.cat(reference_logits), rtol=1e-4, atol=1e-4)
    assert len(queries) > 64  # more than one batch of the batched path
    assert all(color in COLORS for color in batched)
    assert len(set(batched)) > 1  # the comparison means something only if colours differ


def test_all_crops_of_a_call_go_through_few_forward_passes(tiny_files, scenes):
    arch, checkpoint = tiny_files
    classifier = ColorClassifier.load(arch=arch, weights=checkpoint, device="cpu", batch_size=32)
    sizes = []
    encode_image = classifier.model.encode_image
    classifier.model.encode_image = lambda pixels, *a, **k: sizes.append(len(pixels)) or encode_image(
        pixels, *a, **k
    )
    queries = _queries(scenes)
    classifier.classify(queries)
    assert sum(sizes) == len(queries)
    assert sizes[:-1] == [32] * (len(sizes) - 1)


@pytest.mark.parametrize(("batch_size", "workers"), [(1, 0), (7, 2), (64, 0)])
def test_batching_does_not_change_colours(tiny, scenes, batch_size, workers):
    queries = _queries(scenes)
    other = ColorClassifier(tiny.model, tiny.preprocess, tiny.tokenizer, "cpu", batch_size, workers=workers)
    assert other.classify(queries) == tiny.classify(queries)
    torch.testing.assert_close(other.logits(queries), tiny.logits(queries), rtol=1e-4, atol=1e-4)


def test_empty_calls(tiny):
    assert tiny.classify([]) == []
    assert tiny.classify_one_image_reference(_grid_image(), [], "cat") == []


def test_describe(tiny, tiny_files):
    info = tiny.describe()
    assert info["arch"] == tiny_files[0]
    assert info["weights"] == str(tiny_files[1])
    assert len(info["weights_sha256"]) == 64
    assert info["open_clip"] == open_clip.__version__
    assert (info["device"], info["amp"]) == ("cpu", "off")


def test_amp_is_refused_on_cpu(tiny):
    with pytest.raises(ValueError, match="CUDA"):
        ColorClassifier(tiny.model, tiny.preprocess, tiny.tokenizer, "cpu", amp=True)


def test_sidecar_config_registers_an_unknown_arch(tiny_files, monkeypatch):
    # A fresh process does not know the tiny arch; simulate it with an emptied registry copy
    # (a subprocess would spend most of the test budget importing open_clip).
    from open_clip import factory

    arch, checkpoint = tiny_files
    known = {k: v for k, v in factory._MODEL_CONFIGS.items() if k != arch}
    monkeypatch.setattr(factory, "_MODEL_CONFIGS", known)
    builtin_paths = [path for path in factory._MODEL_CONFIG_PATHS if path.is_dir()]
    monkeypatch.setattr(factory, "_MODEL_CONFIG_PATHS", builtin_paths)
    assert arch not in open_clip.list_models()
    classifier = ColorClassifier.load(arch=arch, weights=checkpoint, device="cpu")
    assert arch in open_clip.list_models()
    assert classifier.classifier_for("cat").shape == (32, len(COLORS))


# --------------------------------------------------------------------------------------------
# Offline weights


def test_missing_openai_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError) as excinfo:
        ColorClassifier.load(device="cpu", cache_dir=tmp_path)
    message = str(excinfo.value)
    assert OPENAI_REPO in message and "open_clip_model.safetensors" in message
    assert "never downloads" in message
    ok, status = clip_status(cache_dir=tmp_path)
    assert not ok and OPENAI_REPO in status


def test_missing_checkpoint_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ColorClassifier.load(arch="ViT-L-14-quickgelu", weights=tmp_path / "nope.pt", device="cpu")


def test_openai_weights_are_found_in_the_hf_cache_layout(tmp_path):
    # huggingface_hub's cache layout: refs/main names the snapshot holding the files.
    repo = tmp_path / ("models--" + OPENAI_REPO.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"not really weights")
    assert resolve_openai_weights(cache_dir=tmp_path) == snapshot / "open_clip_pytorch_model.bin"
    (snapshot / "open_clip_model.safetensors").write_bytes(b"preferred, as open_clip prefers it")
    assert resolve_openai_weights(cache_dir=tmp_path) == snapshot / "open_clip_model.safetensors"
    ok, status = clip_status(cache_dir=tmp_path)
    assert ok and "open_clip_model.safetensors" in status


def test_importing_the_module_does_not_import_torch():
    code = (
        "import sys, harness.geneval.colors, harness.tiny.clip\n"
        "heavy = [m for m in ('torch', 'open_clip', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_weights_fingerprint_uses_the_hf_blob_name_or_hashes(tmp_path):
    import hashlib

    from harness.hashing import file_sha256

    data = b"checkpoint bytes"
    digest = hashlib.sha256(data).hexdigest()
    plain = tmp_path / "model.pt"
    plain.write_bytes(data)
    assert file_sha256(plain) == digest
    # The HF cache stores LFS files as blobs/<sha256>, linked from the snapshot: no re-hashing.
    (tmp_path / "blobs").mkdir()
    blob = tmp_path / "blobs" / ("f" * 64)
    blob.write_bytes(data)
    link = tmp_path / "open_clip_model.safetensors"
    link.symlink_to(blob)
    assert file_sha256(link) == "f" * 64
