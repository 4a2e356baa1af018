"""The `janus` generator on a tiny random Janus checkpoint: outputs, seeding, previews, and equality with transformers.

The tiny checkpoint (harness/tiny/janus.py) has a 4x4 token grid (T = 16 tokens) decoded to 16x16
pixels, so each token covers a 4x4 pixel block.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.plugins import GenerationRequest, parse_params
from harness.weights import MissingWeightsError

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from harness.generators.janus import GRAY, JanusGenerator, JanusParams, preview_points  # noqa: E402
from harness.tiny.janus import GRID, IMAGE_PX, write_tiny_janus  # noqa: E402

T = GRID * GRID
PROMPT = "a photo of a red cup and a blue vase"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_janus(tmp_path_factory.mktemp("tiny-janus"))


@pytest.fixture(scope="module")
def make(tiny: Path) -> Callable[..., JanusGenerator]:
    """JanusGenerator on the tiny checkpoint with some params overridden (instances are cached)."""
    built: dict[tuple[tuple[str, Any], ...], JanusGenerator] = {}

    def build(**overrides: Any) -> JanusGenerator:
        key = tuple(sorted(overrides.items()))
        if key not in built:
            built[key] = JanusGenerator(JanusParams(model=str(tiny), device="cpu", **overrides))
        return built[key]

    return build


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image)


def same(a: Any, b: Any) -> bool:
    return np.array_equal(pixels(a), pixels(b))


def chat_inputs(generator: JanusGenerator, prompt: str) -> Any:
    """What transformers' documented text-to-image example feeds `generate`: chat template, then the processor."""
    messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
    text = generator.processor.apply_chat_template(messages, add_generation_prompt=True)
    return generator.processor(text=text, generation_mode="image", return_tensors="pt")


# ------------------------------------------------------------------------------------ outputs


def test_images_previews_and_cost(make: Callable[..., JanusGenerator]) -> None:
    gen = make()
    with_previews, without = gen.generate([GenerationRequest(PROMPT, (1, 2), previews=True),
                                           GenerationRequest("a dog", (3,))])
    assert [im.size for im in with_previews.images] == [(IMAGE_PX, IMAGE_PX)] * 2
    assert all(im.mode == "RGB" for im in with_previews.images)
    assert without.previews == [[]]
    points = preview_points(T, 8)
    assert points == [2, 4, 6, 8, 10, 12, 14, 16]
    block = IMAGE_PX // GRID
    for image, frames in zip(with_previews.images, with_previews.previews, strict=True):
        assert len(frames) == 8
        assert all(f.size == image.size for f in frames)
        assert same(frames[-1], image)  # the last preview is the final image
        for frame, n in zip(frames[:-1], points[:-1], strict=True):
            canvas = pixels(frame)
            for token in range(T):
                patch = canvas[token // GRID * block:(token // GRID + 1) * block,
                               token % GRID * block:(token % GRID + 1) * block]
                assert (patch == GRAY).all() == (token >= n), (n, token)  # gray exactly where not yet generated
    # one forward per token for each batch (the two prompts differ in length: two batches)
    assert with_previews.cost.forward_passes == T and with_previews.cost.tokens == 2 * T
    assert without.cost.forward_passes == T and without.cost.tokens == T
    assert with_previews.cost.seconds > 0


def test_preview_points() -> None:
    assert preview_points(576, 8) == [72, 144, 216, 288, 360, 432, 504, 576]
    assert preview_points(16, 3) == [6, 11, 16]
    assert preview_points(2, 4) == [1, 1, 2, 2]  # more previews than tokens: repeats
    assert preview_points(16, 1) == [16]


def test_shared_batches_split_the_cost(make: Callable[..., JanusGenerator]) -> None:
    # "a red cup" and "a red mug" have the same token length, so all three candidates share one batch.
    results = make().generate([GenerationRequest("a red cup", (1, 2)), GenerationRequest("a red mug", (3,))])
    total = results[0].cost + results[1].cost
    assert total.forward_passes == T and total.tokens == 3 * T
    assert [r.cost.tokens for r in results] == [2 * T, T]


# ------------------------------------------------------------------------------------ seeding


def test_deterministic_under_a_seed(make: Callable[..., JanusGenerator], tiny: Path) -> None:
    first = make().generate([GenerationRequest(PROMPT, (7, 8, 9))])[0].images
    again = make().generate([GenerationRequest(PROMPT, (7, 8, 9))])[0].images
    fresh = JanusGenerator(JanusParams(model=str(tiny), device="cpu")).generate([GenerationRequest(PROMPT, (7,))])
    assert all(same(a, b) for a, b in zip(first, again, strict=True))
    assert same(fresh[0].images[0], first[0])
    assert len({pixels(im).tobytes() for im in first}) == 3  # distinct seeds, distinct samples


def test_candidates_do_not_depend_on_their_batch(make: Callable[..., JanusGenerator]) -> None:
    alone = make().generate([GenerationRequest(PROMPT, (5,))])[0].images[0]
    many = make(batch_size=3).generate([GenerationRequest(PROMPT, (11, 5, 12, 13, 14))])[0].images
    mixed = make().generate([GenerationRequest("a photo of a red cup and a blue bowl", (1, 2)),
                             GenerationRequest(PROMPT, (3, 5))])[1].images
    assert same(many[1], alone)
    assert same(mixed[1], alone)


def test_guidance_changes_the_output(make: Callable[..., JanusGenerator]) -> None:
    ids = make().prompt_ids(PROMPT)[None]
    with torch.inference_mode():
        # top_k=50: a random tiny model's full-codebook distribution is so flat that w barely moves a sample
        tokens = {w: make(guidance=w, top_k=50).sample_tokens(ids, [4]) for w in (1.0, 2.0, 5.0)}
    assert not torch.equal(tokens[1.0], tokens[5.0])
    assert not torch.equal(tokens[2.0], tokens[5.0])


def test_greedy_is_seed_independent(make: Callable[..., JanusGenerator]) -> None:
    images = make(temperature=0.0).generate([GenerationRequest(PROMPT, (1, 2, 3))])[0].images
    assert same(images[0], images[1]) and same(images[0], images[2])


# ------------------------------------------------------------------------------------ transformers


@pytest.mark.parametrize("guidance", [5.0, 2.5])
@pytest.mark.parametrize("prompt", [PROMPT, "two dogs"])
def test_greedy_tokens_equal_transformers_generate(make: Callable[..., JanusGenerator], prompt: str,
                                                   guidance: float) -> None:
    gen = make(temperature=0.0, guidance=guidance)
    inputs = chat_inputs(gen, prompt)
    assert torch.equal(gen.prompt_ids(prompt), inputs["input_ids"][0])  # same prompt format
    with torch.inference_mode():
        theirs = gen.model.generate(**inputs, generation_mode="image", do_sample=False, guidance_scale=guidance)
        ours = gen.sample_tokens(inputs["input_ids"], [0])
        decoded = gen.model.decode_image_tokens(theirs)
    assert theirs.shape == (1, T)
    assert torch.equal(ours, theirs)
    # ...and generate() decodes them as transformers' decode_image_tokens + processor.postprocess do
    (image,) = gen.generate([GenerationRequest(prompt, (0,))])[0].images
    (expected,) = gen.processor.postprocess(list(decoded.float()))["pixel_values"]  # (3, H, W) uint8
    assert np.array_equal(pixels(image), expected.permute(1, 2, 0).numpy())


def record_logits_processing(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, Any]]:
    """(scores in, scores out) of every call of transformers' logits processors from now on."""
    from transformers.generation.logits_process import LogitsProcessorList

    seen: list[tuple[Any, Any]] = []
    original = LogitsProcessorList.__call__

    def record(self: LogitsProcessorList, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        out = original(self, input_ids, scores, **kwargs)
        seen.append((scores.clone(), out.clone()))
        return out

    monkeypatch.setattr(LogitsProcessorList, "__call__", record)
    return seen


def test_sampling_logits_equal_transformers_processors(make: Callable[..., JanusGenerator],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """What transformers' sampling loop turns the generation head's scores into (CFG, temperature, top-k)."""
    gen = make(temperature=0.7, top_k=5, guidance=3.0)
    seen = record_logits_processing(monkeypatch)
    with torch.inference_mode():
        gen.model.generate(**chat_inputs(gen, PROMPT), generation_mode="image", do_sample=True,
                           guidance_scale=3.0, temperature=0.7, top_k=5)
    assert len(seen) == T
    for raw, processed in seen:
        ours = gen.warp(gen.guide(raw))
        assert torch.equal(ours, processed)
        assert int(torch.isfinite(ours).sum()) == 5


def test_top_k_50_is_transformers_default_sampling(make: Callable[..., JanusGenerator],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """With `do_sample=True` and nothing else, transformers guides and keeps the top 50; `top_k=50` does the same.

    Our default is 0 (the whole codebook), as DeepSeek's reference code samples.
    """
    assert (JanusParams().guidance, JanusParams().temperature, JanusParams().top_k) == (5.0, 1.0, 0)
    gen = make(top_k=50)
    seen = record_logits_processing(monkeypatch)
    with torch.inference_mode():
        gen.model.generate(**chat_inputs(gen, PROMPT), generation_mode="image", do_sample=True)
    raw, processed = seen[0]
    assert torch.equal(gen.warp(gen.guide(raw)), processed)


# ------------------------------------------------------------------------------------ errors


def test_missing_checkpoint_says_what_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError) as err:
        JanusGenerator(JanusParams(device="cpu"))
    message = str(err.value)
    assert "Janus-Pro checkpoint 'deepseek-community/Janus-Pro-1B' not found" in message
    assert "config.json" in message
    assert "`hf download deepseek-community/Janus-Pro-1B`" in message


def test_bad_params_are_refused(tiny: Path) -> None:
    with pytest.raises(ValueError, match=r"top_k must be >= 0.*batch_size must be >= 1"):
        JanusGenerator(JanusParams(model=str(tiny), top_k=-1, batch_size=0))


def test_params_parse_from_the_command_line() -> None:
    params = parse_params(JanusParams, {"guidance": "3", "temperature": "0", "dtype": "bfloat16", "device": "none"})
    assert (params.guidance, params.temperature, params.dtype, params.device) == (3.0, 0.0, "bfloat16", None)


def test_registered_as_janus() -> None:
    from harness import registry

    assert registry.generators.get("janus") is JanusGenerator
