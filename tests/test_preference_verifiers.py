"""`pickscore`, `hpsv2` and `vqascore` on tiny random builds of the real classes (transformers CLIPModel,
open_clip ViT-H-14-shaped CLIP, LLaVA-OneVision), checked against the published scoring and preprocessing
written out here: PickScore's README, HPSv2's hpsv2/img_score.py (and its validation transform),
t2v_metrics' VQAScore question."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("open_clip")

from PIL import Image  # noqa: E402

from harness import registry  # noqa: E402
from harness.tiny.hf_clip import OPENAI_MEAN, OPENAI_STD, TINY_HPS_ARCH, TINY_TILE, write_tiny_hps, write_tiny_pickscore  # noqa: E402
from harness.verifiers.preference import (  # noqa: E402
    HPS_FILES,
    HpsV2Params,
    HpsV2Verifier,
    PickScoreParams,
    PickScoreVerifier,
    hps_pixels,
)
from harness.verifiers.vqascore import VqaScoreParams, VqaScoreVerifier, vqascore_question  # noqa: E402
from harness.weights import MissingWeightsError  # noqa: E402

PROMPT = "a photo of a red cup and a blue vase"


def noise(width: int, height: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


IMAGES = [noise(60, 40, 0), noise(33, 70, 1), noise(28, 28, 2), noise(90, 31, 3)]


# ---------------------------------------------------------------------------------------------
# PickScore


@pytest.fixture(scope="module")
def pickscore_dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_tiny_pickscore(tmp_path_factory.mktemp("pickscore"))


@pytest.fixture(scope="module")
def pickscore(pickscore_dirs: tuple[Path, Path]) -> PickScoreVerifier:
    model, processor = pickscore_dirs
    return PickScoreVerifier(PickScoreParams(model=str(model), processor=str(processor), device="cpu", batch_size=3))


def test_pickscore_preprocessing_is_the_published_recipe(pickscore: PickScoreVerifier) -> None:
    """laion/CLIP-ViT-H-14's processor through PIL: shortest edge to the tile (bicubic), centre crop,
    x 1/255, OpenAI mean/std; computed here independently with PIL and numpy."""
    assert type(pickscore.image_processor).__name__ == "CLIPImageProcessorPil"
    for image in IMAGES:
        width, height = image.size
        short, long = min(width, height), max(width, height)
        long_new = int(TINY_TILE * long / short)  # transformers' get_resize_output_image_size
        size = (TINY_TILE, long_new) if width <= height else (long_new, TINY_TILE)
        resized = np.asarray(image.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)
        top = (resized.shape[0] - TINY_TILE) // 2
        left = (resized.shape[1] - TINY_TILE) // 2
        crop = resized[top:top + TINY_TILE, left:left + TINY_TILE]
        expected = ((crop / 255.0 - np.asarray(OPENAI_MEAN)) / np.asarray(OPENAI_STD)).transpose(2, 0, 1)
        np.testing.assert_allclose(pickscore.pixels([image])[0].numpy(), expected, atol=1e-5)


def test_pickscore_is_the_readme_score(pickscore: PickScoreVerifier, pickscore_dirs: tuple[Path, Path]) -> None:
    from transformers import AutoModel, AutoProcessor

    model_dir, processor_dir = pickscore_dirs
    processor = AutoProcessor.from_pretrained(processor_dir, backend="pil")
    model = AutoModel.from_pretrained(model_dir).eval()
    # PickScore's README, calc_probs without the final softmax
    image_inputs = processor(images=IMAGES, padding=True, truncation=True, max_length=77, return_tensors="pt")
    text_inputs = processor(text=PROMPT, padding=True, truncation=True, max_length=77, return_tensors="pt")
    with torch.no_grad():
        image_embs = model.get_image_features(**image_inputs)
        image_embs = getattr(image_embs, "pooler_output", image_embs)
        image_embs = image_embs / torch.norm(image_embs, dim=-1, keepdim=True)
        text_embs = model.get_text_features(**text_inputs)
        text_embs = getattr(text_embs, "pooler_output", text_embs)
        text_embs = text_embs / torch.norm(text_embs, dim=-1, keepdim=True)
        scores = model.logit_scale.exp() * (text_embs @ image_embs.T)[0]
    ours = pickscore.score(PROMPT, IMAGES, None)
    assert [s.score for s in ours] == pytest.approx(scores.tolist(), abs=1e-5)
    assert len({round(s.score, 6) for s in ours}) == len(IMAGES)  # the image reaches the score
    lo, hi = PickScoreVerifier.score_range
    assert all(lo <= s.score <= hi for s in ours)
    assert sum(s.cost.forward_passes for s in ours) == 2 + 1  # two image batches of 3, one text pass
    for s in ours:
        assert s.score == pytest.approx(float(model.logit_scale.detach().exp()) * s.details["cosine"], rel=1e-6)


def test_pickscore_tokens_are_clips(pickscore: PickScoreVerifier) -> None:
    import open_clip

    ids = pickscore.tokenizer(PROMPT).input_ids
    reference = open_clip.get_tokenizer("ViT-H-14")([PROMPT])[0].tolist()
    assert ids == reference[:len(ids)] and ids[0] == 49406 and ids[-1] == 49407


def test_pickscore_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match=r"PickScore model .*hf download yuvalkirstain/PickScore_v1"):
        PickScoreVerifier(PickScoreParams(model=str(tmp_path / "nowhere"), device="cpu"))


# ---------------------------------------------------------------------------------------------
# HPS v2


@pytest.fixture(scope="module")
def hps_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_hps(tmp_path_factory.mktemp("hps"))


@pytest.fixture(scope="module")
def hps(hps_dir: Path) -> HpsV2Verifier:
    return HpsV2Verifier(HpsV2Params(checkpoint=str(hps_dir), arch=TINY_HPS_ARCH, device="cpu", batch_size=3))


def test_hps_preprocessing_is_the_published_transform() -> None:
    """ResizeMaxSize(size): the longer side to `size` (bicubic on the [0, 1] tensor), zeros padded centred
    (left/top the floor half), then normalised; a square image of the right size is not resized."""
    mean, std = np.asarray(OPENAI_MEAN), np.asarray(OPENAI_STD)
    size = TINY_TILE
    square = noise(size, size, 5)
    expected = ((np.asarray(square, dtype=np.float64) / 255 - mean) / std).transpose(2, 0, 1)
    np.testing.assert_allclose(hps_pixels(square, size, OPENAI_MEAN, OPENAI_STD).numpy(), expected, atol=1e-6)

    wide = noise(60, 23, 6)  # scale 28/60: 23 -> round(10.73) = 11 rows, 17 rows of padding: 8 above, 9 below
    pixels = hps_pixels(wide, size, OPENAI_MEAN, OPENAI_STD).numpy()
    tensor = torch.from_numpy(np.asarray(wide, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    band = torch.nn.functional.interpolate(tensor, size=(11, 28), mode="bicubic", antialias=True,
                                           align_corners=False)[0].numpy()
    np.testing.assert_allclose(pixels[:, 8:19], (band - mean[:, None, None]) / std[:, None, None], atol=1e-5)
    pad = ((0 - mean) / std)[:, None, None]
    np.testing.assert_allclose(pixels[:, :8], np.broadcast_to(pad, (3, 8, size)), atol=1e-6)
    np.testing.assert_allclose(pixels[:, 19:], np.broadcast_to(pad, (3, 9, size)), atol=1e-6)

    tall = noise(23, 60, 7)  # the same, sideways: columns padded, 8 left, 9 right
    pixels = hps_pixels(tall, size, OPENAI_MEAN, OPENAI_STD).numpy()
    np.testing.assert_allclose(pixels[:, :, :8], np.broadcast_to(pad, (3, size, 8)), atol=1e-6)
    np.testing.assert_allclose(pixels[:, :, 19:], np.broadcast_to(pad, (3, size, 9)), atol=1e-6)


def test_hps_is_img_score(hps: HpsV2Verifier, hps_dir: Path) -> None:
    """hpsv2/img_score.py: model(image, text) -> normalised features; the score is their dot product."""
    import open_clip

    model = open_clip.create_model(TINY_HPS_ARCH, pretrained=None, device="cpu")
    model.load_state_dict(torch.load(hps_dir / HPS_FILES["v2.1"], map_location="cpu")["state_dict"])
    model.eval()
    tokenizer = open_clip.get_tokenizer(TINY_HPS_ARCH)
    reference = []
    with torch.no_grad():
        for image in IMAGES:
            pixels = hps_pixels(image, TINY_TILE, OPENAI_MEAN, OPENAI_STD)[None]
            image_features, text_features, _ = model(pixels, tokenizer([PROMPT]))
            reference.append(float(torch.diagonal(image_features @ text_features.T)[0]))
    ours = hps.score(PROMPT, IMAGES, None)
    assert [s.score for s in ours] == pytest.approx(reference, abs=1e-6)
    assert all(-1.0 <= s.score <= 1.0 for s in ours) and len({round(s.score, 7) for s in ours}) == len(IMAGES)
    assert sum(s.cost.forward_passes for s in ours) == 3


def test_hps_checkpoint_lookup(hps_dir: Path, tmp_path: Path) -> None:
    by_file = HpsV2Verifier(HpsV2Params(checkpoint=str(hps_dir / HPS_FILES["v2.1"]), arch=TINY_HPS_ARCH,
                                        device="cpu"))
    assert by_file.checkpoint == hps_dir / HPS_FILES["v2.1"]
    with pytest.raises(MissingWeightsError, match=r"HPS v2\.0 .*HPS_v2_compressed\.pt.*hf download xswu/HPSv2"):
        HpsV2Verifier(HpsV2Params(checkpoint=str(hps_dir), version="v2.0", arch=TINY_HPS_ARCH, device="cpu"))
    wrong = tmp_path / HPS_FILES["v2.1"]
    torch.save({"state_dict": {"visual.proj": torch.zeros(2)}}, wrong)
    (tmp_path / f"{TINY_HPS_ARCH}.json").write_text((hps_dir / f"{TINY_HPS_ARCH}.json").read_text())
    with pytest.raises(MissingWeightsError, match=r"not an HPS checkpoint.*missing keys"):
        HpsV2Verifier(HpsV2Params(checkpoint=str(wrong), arch=TINY_HPS_ARCH, device="cpu"))


# ---------------------------------------------------------------------------------------------
# VQAScore, and the registry


def test_vqascore_question_and_template_errors() -> None:
    assert vqascore_question('Does this figure show "{}"? Please answer yes or no.', "a cat") == (
        '<image>\nDoes this figure show "a cat"? Please answer yes or no.')
    with pytest.raises(ValueError, match="exactly once"):
        VqaScoreVerifier(VqaScoreParams(question="Is this right?"), engine=object())  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "low", "high", "probability"), [
    ("vqascore", 0.0, 1.0, True), ("pickscore", -100.0, 100.0, False), ("hpsv2", -1.0, 1.0, False),
    ("ensemble", -math.inf, math.inf, False)])
def test_registered_with_their_ranges(name: str, low: float, high: float, probability: bool) -> None:
    cls: Any = registry.verifiers.get(name)
    assert cls.score_range == (low, high)
    assert hasattr(cls, "score_probability") == probability
    for orm_like in ("orm", "prm"):
        assert registry.verifiers.get(orm_like).score_probability(0.25) == 0.25  # type: ignore[attr-defined]
    parm: Any = registry.verifiers.get("parm")
    assert parm.score_probability(1.75) == 0.75 and parm.score_probability(-0.3) is None
