"""CLIPScore with the tiny open_clip model: the formula, batching, a constructed closer image, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness import registry
from harness.plugins import ParamsError, parse_params
from harness.verifiers.clipscore import ClipScoreParams, ClipScoreVerifier, spread

PROMPT = "a photo of a red cat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    from harness.tiny.clip import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def verifier(tiny: tuple[str, Path], **values: str) -> ClipScoreVerifier:
    arch, weights = tiny
    params = parse_params(ClipScoreParams, {"arch": arch, "weights": str(weights), "device": "cpu", **values})
    return ClipScoreVerifier(params)


def random_images(n: int, seed: int = 0, size: int = 40) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]


def reference_cosines(tiny: tuple[str, Path], prompt: str, images: list[Image.Image]) -> np.ndarray:
    """cos(image, text) computed straight from open_clip, one image at a time, without the verifier."""
    import open_clip
    import torch

    arch, weights = tiny
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=str(weights), device="cpu")
    model.eval()
    with torch.no_grad():
        text = model.encode_text(open_clip.get_tokenizer(arch)([prompt]))[0]
        out = []
        for image in images:
            feature = model.encode_image(preprocess(image.convert("RGB"))[None])[0]
            out.append(float(torch.nn.functional.cosine_similarity(feature, text, dim=0)))
    return np.array(out)


def test_the_registered_plugin_loads_and_conforms() -> None:
    assert registry.verifiers.get("clipscore") is ClipScoreVerifier
    assert ClipScoreParams().arch == "ViT-L-14-quickgelu" and ClipScoreParams().scale == 2.5


def test_scores_are_hessel_clipscore(tiny: tuple[str, Path]) -> None:
    images = random_images(12)
    seen = []
    for prompt in (PROMPT, "a photo of a cat"):
        expected = reference_cosines(tiny, prompt, images)
        seen.extend(expected)
        for scale in ("2.5", "1.0"):
            scores = verifier(tiny, scale=scale).score(prompt, images, None)
            cosines = np.array([s.details["cosine"] for s in scores])
            np.testing.assert_allclose(cosines, expected, atol=1e-5)
            np.testing.assert_allclose([s.score for s in scores], float(scale) * np.maximum(expected, 0), atol=1e-5)
    assert min(seen) < 0 < max(seen)  # both sides of the clip at 0 were exercised


def test_batched_equals_one_by_one(tiny: tuple[str, Path]) -> None:
    images = random_images(8, seed=1)
    batched = verifier(tiny, batch_size="3").score(PROMPT, images, None)
    single = verifier(tiny, batch_size="1")
    alone = [single.score(PROMPT, [image], None)[0] for image in images]
    np.testing.assert_allclose([s.details["cosine"] for s in batched], [s.details["cosine"] for s in alone],
                               atol=1e-5)
    np.testing.assert_allclose([s.score for s in batched], [s.score for s in alone], atol=1e-5)
    # 3 image batches + 1 text pass, spread over the 8 candidates as whole numbers
    assert sum(s.cost.forward_passes for s in batched) == 4
    assert all(s.cost.forward_passes == 2 for s in alone) and all(s.cost.seconds > 0 for s in batched)
    assert verifier(tiny).score(PROMPT, [], None) == []


def test_the_prefix_goes_before_the_prompt(tiny: tuple[str, Path]) -> None:
    images = random_images(3, seed=2)
    with_prefix = verifier(tiny, prefix="A photo depicts ").score(PROMPT, images, None)
    spelled_out = verifier(tiny).score("A photo depicts " + PROMPT, images, None)
    assert [s.details for s in with_prefix] == [s.details for s in spelled_out]


def _constructed(v: ClipScoreVerifier, prompt: str, start: Image.Image, toward: bool) -> Image.Image:
    """`start` pushed by gradient steps on its pixels toward (or away from) the prompt's text embedding."""
    import torch

    normalize = v.preprocess.transforms[-1]
    mean, std = (torch.tensor(x).view(3, 1, 1) for x in (normalize.mean, normalize.std))
    text = v.text_embedding(prompt)
    pixels = torch.from_numpy(np.asarray(start, dtype=np.float32) / 255).permute(2, 0, 1).requires_grad_(True)
    optimiser = torch.optim.Adam([pixels], lr=0.05)
    for _ in range(40):
        feature = v.model.encode_image(((pixels.clamp(0, 1) - mean) / std)[None])[0]
        cos = torch.nn.functional.cosine_similarity(feature, text, dim=0)
        optimiser.zero_grad()
        (-cos if toward else cos).backward()
        optimiser.step()
    array = (pixels.detach().clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    return Image.fromarray(array)


def test_an_image_closer_to_the_prompt_scores_higher(tiny: tuple[str, Path]) -> None:
    v = verifier(tiny)
    size = v.preprocess.transforms[1].size[0]  # the model's input size: no resampling in the transform
    (start,) = random_images(1, seed=3, size=size)
    closer = _constructed(v, PROMPT, start, toward=True)
    farther = _constructed(v, PROMPT, start, toward=False)
    cos = reference_cosines(tiny, PROMPT, [closer, start, farther])
    assert cos[0] > 0.5 and cos[0] > cos[1] > cos[2]  # the construction worked
    scores = v.score(PROMPT, [farther, start, closer], None)
    assert scores[2].score > scores[1].score >= scores[0].score == 0.0  # farther: negative cosine, clipped
    assert scores[2].score == pytest.approx(2.5 * cos[0], abs=1e-5)
    assert scores[0].details["cosine"] < 0


def test_missing_weights_are_a_clear_error(tiny: tuple[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    from harness.runner import RunError, instantiate

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(FileNotFoundError, match=r"not in the local Hugging Face cache.*never downloads"
                                                r".*timm/vit_large_patch14_clip_224\.openai"):
        ClipScoreVerifier(ClipScoreParams(device="cpu"))
    # through the runner: one message naming the verifier, not a traceback
    with pytest.raises(RunError, match=r"verifier 'clipscore': CLIP checkpoint not found: .*nope\.pt"):
        instantiate("verifier", "clipscore", ClipScoreVerifier,
                    ClipScoreParams(weights=str(tmp_path / "nope.pt"), device="cpu"))
    # plain ViT-L-14 builds GELU: refused for the openai weights, pointing at the -quickgelu arch
    with pytest.raises(ValueError, match=r"QuickGELU.*ViT-L-14-quickgelu"):
        ClipScoreVerifier(ClipScoreParams(arch="ViT-L-14", device="cpu"))


def test_params_are_checked(tiny: tuple[str, Path]) -> None:
    with pytest.raises(ParamsError, match="'pretrained'"):
        parse_params(ClipScoreParams, {"pretrained": "laion2b_s32b_b82k"})
    with pytest.raises(ValueError, match=r"scale must be in \(0, 2.5\]"):
        verifier(tiny, scale="0")
    with pytest.raises(ValueError, match="declared score range is"):  # scores past score_range: refused early
        verifier(tiny, scale="3")
    with pytest.raises(ValueError, match="batch_size"):
        verifier(tiny, batch_size="0")
    assert spread(3, 4) == [0, 1, 1, 1] and spread(5, 2) == [2, 3] and sum(spread(7, 5)) == 7


def test_dtype_is_the_autocast_compute_dtype(tiny: tuple[str, Path]) -> None:
    images = random_images(4, seed=4)
    full = [s.details["cosine"] for s in verifier(tiny).score(PROMPT, images, None)]
    low = [s.details["cosine"] for s in verifier(tiny, dtype="bfloat16").score(PROMPT, images, None)]
    assert full != low  # it did run in bfloat16 ...
    np.testing.assert_allclose(low, full, atol=0.02)  # ... over the same float32 weights
