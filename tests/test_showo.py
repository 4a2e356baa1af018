"""The Show-o generator: prompt layout, attention mask, MaskGIT schedule, per-candidate randomness,
loading checkpoints by the reference's parameter names, and generation end to end with tiny models.

Equality with the reference code itself (Show-o's `t2i_gen_prompt`, `create_attention_mask_predict_next`,
its modified Phi and `t2i_generate`, run under transformers 4.46) was checked outside this suite;
these tests pin the behaviour that check established.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.generators.seeding import row_generators
from harness.generators.showo import prompting
from harness.generators.showo.generator import ShowoGenerator
from harness.generators.showo.model import Showo, ShowoCheckpointError, ShowoConfig
from harness.generators.showo.sampling import masked_counts, maskgit_generate
from harness.plugins import GenerationRequest, parse_params
from harness.weights import MissingWeightsError

TOKENS = prompting.PromptTokens(pad=90, bos=0, eos=0, t2i=95, soi=91, eoi=92)
MASK = 99


# ---------------------------------------------------------------------------------------------
# fixtures: one tiny Show-o + tiny MAGVIT-v2 for the whole module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo

    root = tmp_path_factory.mktemp("tiny-showo")
    return {"showo": write_tiny_showo(root), "magvit": write_tiny_magvit(root / "magvit")}


@pytest.fixture(scope="module")
def loaded(tiny: dict[str, Path]) -> tuple[Showo, object, prompting.PromptTokens]:
    return Showo.from_pretrained(tiny["showo"])


def _generator(tiny: dict[str, Path], **values: str) -> ShowoGenerator:
    params = parse_params(ShowoGenerator.Params, {"model": str(tiny["showo"]), "vq_model": str(tiny["magvit"]),
                                                  "resolution": "32", "steps": "6", "batch_size": "3", **values})
    return ShowoGenerator(params)


def _ids(model: Showo, tokenizer: object, tokens: prompting.PromptTokens, prompts: list[str]) -> torch.Tensor:
    config = model.config
    return prompting.t2i_prompt_ids(tokenizer, prompts, tokens, max_text_len=config.max_text_len,
                                    num_image_tokens=config.num_vq_tokens, mask_id=config.mask_token_id)


# ---------------------------------------------------------------------------------------------
# prompt layout


def test_t2i_sequence_left_pads_the_text_part() -> None:
    seq = prompting.t2i_sequence([7, 8, 9], TOKENS, max_text_len=8, num_image_tokens=3, mask_id=MASK)
    # [pad pad] <|t2i|> <bos> 7 8 9 <eos> | <|soi|> mask mask mask <|eoi|>
    assert seq == [90, 90, 95, 0, 7, 8, 9, 0, 91, MASK, MASK, MASK, 92]


def test_t2i_sequence_empty_prompt_and_existing_bos() -> None:
    empty = prompting.t2i_sequence([], TOKENS, max_text_len=5, num_image_tokens=1, mask_id=MASK)
    assert empty == [90, 90, 95, 0, 0, 91, MASK, 92]  # the unconditional prompt: <|t2i|> <bos> <eos>
    # ids already starting with <bos> get no second one
    assert prompting.t2i_sequence([0, 7], TOKENS, max_text_len=5, num_image_tokens=1, mask_id=MASK)[:5] == \
        [90, 95, 0, 7, 0]


def test_t2i_sequence_truncates_long_prompts_keeping_eos() -> None:
    text = list(range(1, 20))
    seq = prompting.t2i_sequence(text, TOKENS, max_text_len=8, num_image_tokens=2, mask_id=MASK)
    # <|t2i|> <bos> and the first 5 text ids, then <eos>: no padding
    assert seq == [95, 0, 1, 2, 3, 4, 5, 0, 91, MASK, MASK, 92]
    exact = prompting.t2i_sequence(list(range(1, 6)), TOKENS, max_text_len=8, num_image_tokens=0, mask_id=MASK)
    assert exact == [95, 0, 1, 2, 3, 4, 5, 0, 91, 92]  # fits exactly: neither padded nor cut


def test_tokenizer_ids_sit_between_llm_vocabulary_and_image_tokens(loaded: tuple) -> None:
    model, tokenizer, tokens = loaded
    config = model.config
    assert tokens.pad == config.llm_vocab_size  # '[PAD]' first, like Phi-1.5's 50295
    assert len(tokenizer) == config.image_token_offset == config.llm_vocab_size + 10
    assert tokens.soi == config.llm_vocab_size + 1 and tokens.eoi == config.llm_vocab_size + 2
    assert tokens.t2i == config.llm_vocab_size + 5
    ids = _ids(model, tokenizer, tokens, ["a photo of a bench", ""])
    length = config.max_text_len + config.num_vq_tokens + 2
    assert ids.shape == (2, length)
    words = tokenizer("a photo of a bench")["input_ids"]
    text_end = config.max_text_len
    assert ids[0, text_end - len(words) - 3:text_end].tolist() == [tokens.t2i, tokens.bos, *words, tokens.eos]
    assert set(ids[0, :text_end - len(words) - 3].tolist()) == {tokens.pad}
    assert ids[1, text_end - 3:text_end].tolist() == [tokens.t2i, tokens.bos, tokens.eos]
    assert ids[:, text_end].tolist() == [tokens.soi] * 2 and ids[:, -1].tolist() == [tokens.eoi] * 2
    assert (ids[:, text_end + 1:-1] == config.mask_token_id).all()


# ---------------------------------------------------------------------------------------------
# attention mask


def test_attention_mask_matches_hand_built_pattern() -> None:
    # positions: 0 pad, 1 pad, 2 <|t2i|>, 3 <bos>, 4 word, 5 <eos>, 6 <|soi|>, 7 img, 8 img, 9 <|eoi|>
    ids = torch.tensor([[90, 90, 95, 0, 7, 0, 91, MASK, MASK, 92]])
    expected = torch.tensor([
        [1, 0, 0, 0, 0, 0, 0, 0, 0, 0],  # pads attend causally among themselves
        [1, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0, 0, 0, 0],  # text after the padding never sees it
        [0, 0, 1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 0, 0, 0, 0],
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],  # <|soi|> .. <|eoi|>: every non-pad position, both ways
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
        [0, 0, 1, 1, 1, 1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    mask = prompting.attention_mask(ids, TOKENS)
    assert mask.shape == (1, 1, 10, 10) and mask.dtype == torch.bool
    assert torch.equal(mask[0, 0], expected)


def test_attention_mask_without_padding_is_causal_then_bidirectional() -> None:
    ids = torch.tensor([[95, 0, 7, 0, 91, MASK, 92]])
    mask = prompting.attention_mask(ids, TOKENS)[0, 0]
    assert torch.equal(mask[:4, :4], torch.tril(torch.ones(4, 4, dtype=torch.bool)))
    assert not mask[:4, 4:].any()
    assert mask[4:].all()


def test_model_honours_the_mask(loaded: tuple, tiny: dict[str, Path]) -> None:
    model, tokenizer, tokens = loaded
    ids = _ids(model, tokenizer, tokens, ["a photo of a red cup"])
    mask = prompting.attention_mask(ids, tokens)
    text_end = model.config.max_text_len
    first_word = int((ids[0] != tokens.pad).nonzero()[0])  # <|t2i|>
    with torch.inference_mode():
        base = model(ids, mask)
        # a pad is seen by no position except later pads
        changed = ids.clone()
        changed[0, 0] = tokens.eos
        out = model(changed, mask)
        assert torch.equal(out[0, first_word:], base[0, first_word:])
        # text is causal: changing <eos> leaves the text before it alone, but moves the image part
        changed = ids.clone()
        changed[0, text_end - 1] = tokens.soi
        out = model(changed, mask)
        assert torch.equal(out[0, :text_end - 1], base[0, :text_end - 1])
        assert not torch.allclose(out[0, text_end + 1:], base[0, text_end + 1:])
        # image positions see each other both ways: the last image token moves the first one's logits
        changed = ids.clone()
        changed[0, -2] = model.config.image_token_offset + 3
        out = model(changed, mask)
        assert not torch.allclose(out[0, text_end + 1], base[0, text_end + 1])
        # eager attention (additive mask) agrees with SDPA (boolean mask)
        eager, _, _ = Showo.from_pretrained(tiny["showo"], attn_implementation="eager")
        torch.testing.assert_close(eager(ids, mask), base, rtol=0, atol=1e-5)


def test_image_logits_are_the_reference_slice_of_the_full_logits(loaded: tuple) -> None:
    model, tokenizer, tokens = loaded
    ids = _ids(model, tokenizer, tokens, ["two dogs", ""])
    mask = prompting.attention_mask(ids, tokens)
    n, offset = model.config.num_vq_tokens, model.config.image_token_offset
    with torch.inference_mode():
        full = model(ids, mask)[:, -(n + 1):-1, offset:-1]  # the reference's slice
        assert torch.equal(model.image_logits(ids, mask), full)
    assert full.shape[-1] == model.config.codebook_size


def test_cached_text_prefix_gives_the_full_forward_logits(loaded: tuple) -> None:
    """Text positions never see image positions: their keys/values computed once serve every step."""
    model, tokenizer, tokens = loaded
    ids = _ids(model, tokenizer, tokens, ["two dogs", "", "a photo of a red cup and a blue bench", "two dogs"])
    mask = prompting.attention_mask(ids, tokens)
    p, n = model.config.max_text_len, model.config.num_vq_tokens
    generator = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        cache = model.prefix_cache(ids[:, :p], mask[:, :, :p, :p])
        for known in (0, n // 2, n):  # all masked, half known, all known: the cache is reused each time
            step_ids = ids.clone()
            codes = torch.randint(model.config.codebook_size, (len(ids), known), generator=generator)
            step_ids[:, p + 1:p + 1 + known] = codes + model.config.image_token_offset
            cached = model.image_logits_after_prefix(cache, step_ids[:, p:], mask[:, :, p:, :])
            assert cache.get_seq_length() == p
            torch.testing.assert_close(cached, model.image_logits(step_ids, mask), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# MaskGIT decoding


def test_mask_schedule_n256_t18() -> None:
    # Independently: the reference evaluates cos in float32 (a torch tensor), where cos(pi/3) is
    # 0.49999997, so step 11 leaves 127 positions masked where exact arithmetic would say 128.
    unknown, expected = 256, []
    for step in range(18):
        ratio = np.cos(np.float32((step + 1) / 18) * np.float32(math.pi) * np.float32(0.5))
        unknown = max(1, min(unknown - 1, int(np.floor(np.float32(256) * ratio))))
        expected.append(unknown)
    assert masked_counts(256, 18) == expected
    assert expected == [255, 252, 247, 240, 232, 221, 209, 196, 181, 164, 146, 127, 108, 87, 66, 44, 22, 1]
    unmasked = [a - b for a, b in zip([256, *expected[:-1]], expected, strict=True)]
    assert unmasked[:3] == [1, 3, 5] and sum(unmasked) == 255  # the last step fills the final one


def _decode(model: Showo, tokenizer: object, tokens: prompting.PromptTokens, prompts: list[str],
            seeds: list[int], *, guidance: float = 1.75, steps: int = 6, temperature: float = 1.0):
    config = model.config
    cond = _ids(model, tokenizer, tokens, prompts)
    uncond = _ids(model, tokenizer, tokens, [""] * len(prompts)) if guidance > 0 else None
    mask = prompting.attention_mask(cond if uncond is None else torch.cat([cond, uncond]), tokens)
    rows: list[int] = []

    def logits(ids: torch.Tensor) -> torch.Tensor:
        rows.append(ids.shape[0])
        return model.image_logits(ids, mask)

    with torch.inference_mode():
        result = maskgit_generate(logits, cond, uncond, row_generators(seeds, "cpu"),
                                  num_tokens=config.num_vq_tokens, text_len=config.max_text_len,
                                  image_token_offset=config.image_token_offset, mask_id=config.mask_token_id,
                                  steps=steps, guidance=guidance, temperature=temperature)
    return result, rows


def test_decoding_unmasks_on_schedule_and_keeps_earlier_tokens(loaded: tuple) -> None:
    model, tokenizer, tokens = loaded
    n = model.config.num_vq_tokens
    result, _ = _decode(model, tokenizer, tokens, ["a photo of a cat"] * 2, [3, 4], steps=8)
    assert len(result.steps) == 8 and result.forward_passes == 8
    assert torch.equal(result.tokens, result.steps[-1])
    assert result.tokens.min() >= 0 and result.tokens.max() < model.config.codebook_size
    # tokens fixed after a step (n - masked_counts of them) stay in every later prediction
    for step, masked in enumerate(masked_counts(n, 8)[:-1]):
        later = result.steps[step + 1]
        same = (result.steps[step] == later).sum(dim=1)
        assert (same >= n - masked).all()


def test_same_seed_same_tokens_and_batch_composition_does_not_matter(loaded: tuple) -> None:
    model, tokenizer, tokens = loaded
    batch, _ = _decode(model, tokenizer, tokens, ["a photo of a cat", "a red bench", "a photo of a cat"],
                       [11, 22, 33])
    again, _ = _decode(model, tokenizer, tokens, ["a photo of a cat", "a red bench", "a photo of a cat"],
                       [11, 22, 33])
    alone, _ = _decode(model, tokenizer, tokens, ["a red bench"], [22])
    assert torch.equal(batch.tokens, again.tokens)
    assert torch.equal(batch.tokens[1], alone.tokens[0])
    assert all(torch.equal(b[1], a[0]) for b, a in zip(batch.steps, alone.steps, strict=True))
    assert not torch.equal(batch.tokens[0], batch.tokens[2])  # same prompt, other seed


def test_guidance_off_runs_cond_rows_only(loaded: tuple) -> None:
    model, tokenizer, tokens = loaded
    guided, guided_rows = _decode(model, tokenizer, tokens, ["a photo of a cat"] * 2, [5, 6], guidance=3.0)
    plain, plain_rows = _decode(model, tokenizer, tokens, ["a photo of a cat"] * 2, [5, 6], guidance=0.0)
    assert guided_rows == [4] * 6 and plain_rows == [2] * 6  # one forward per step, 2B rows vs B rows
    assert not torch.equal(guided.tokens, plain.tokens)


# ---------------------------------------------------------------------------------------------
# loading


def _reference_key_names(layers: int) -> set[str]:
    """The reference Showo's state_dict names (its modified Phi under `showo`), written out by hand."""
    per_layer = [f"self_attn.{p}.{w}" for p in ("q_proj", "k_proj", "v_proj", "dense") for w in ("weight", "bias")]
    per_layer += [f"self_attn.{n}.{w}" for n in ("q_layernorm", "k_layernorm") for w in ("weight", "bias")]
    per_layer += [f"mlp.{n}.{w}" for n in ("fc1", "fc2") for w in ("weight", "bias")]
    per_layer += [f"input_layernorm.{w}" for w in ("weight", "bias")]
    names = {f"showo.model.layers.{i}.{name}" for i in range(layers) for name in per_layer}
    return names | {"showo.model.embed_tokens.weight", "showo.model.final_layernorm.weight",
                    "showo.model.final_layernorm.bias", "showo.lm_head.weight", "showo.lm_head.bias"}


def test_checkpoint_keys_are_the_reference_names_and_all_load(tiny: dict[str, Path], loaded: tuple) -> None:
    state = torch.load(tiny["showo"] / "pytorch_model.bin", weights_only=True)
    assert set(state) == _reference_key_names(layers=2)
    model, _, _ = loaded
    ours = model.state_dict()
    assert set(ours) == set(state)
    assert all(torch.equal(ours[key], state[key]) for key in state)


def _copy_checkpoint(src: Path, dst: Path, state: dict[str, torch.Tensor]) -> Path:
    dst.mkdir(parents=True)
    (dst / "config.json").write_text((src / "config.json").read_text())
    torch.save(state, dst / "pytorch_model.bin")
    return dst


def test_extra_or_missing_keys_fail_naming_them(tiny: dict[str, Path], tmp_path: Path) -> None:
    state = torch.load(tiny["showo"] / "pytorch_model.bin", weights_only=True)
    extra = _copy_checkpoint(tiny["showo"], tmp_path / "extra", {**state, "showo.model.bogus.weight": torch.ones(1)})
    with pytest.raises(ShowoCheckpointError, match=r"unexpected keys \(1\): showo\.model\.bogus\.weight"):
        Showo.from_pretrained(extra)
    fewer = {k: v for k, v in state.items() if k != "showo.model.layers.1.self_attn.q_layernorm.weight"}
    missing = _copy_checkpoint(tiny["showo"], tmp_path / "missing", fewer)
    with pytest.raises(ShowoCheckpointError,
                       match=r"missing keys \(1\): showo\.model\.layers\.1\.self_attn\.q_layernorm"):
        Showo.from_pretrained(missing)
    # an untied Phi (Phi-1.5 is) needs its own lm_head
    headless = _copy_checkpoint(tiny["showo"], tmp_path / "headless",
                                {k: v for k, v in state.items() if k != "showo.lm_head.weight"})
    with pytest.raises(ShowoCheckpointError, match=r"missing keys \(1\): showo\.lm_head\.weight"):
        Showo.from_pretrained(headless)


def test_tied_head_may_be_left_out(tiny: dict[str, Path], tmp_path: Path) -> None:
    llm = shutil.copytree(tiny["showo"].parent / "llm", tmp_path / "llm")
    phi = json.loads((llm / "config.json").read_text())
    (llm / "config.json").write_text(json.dumps({**phi, "tie_word_embeddings": True}))
    state = torch.load(tiny["showo"] / "pytorch_model.bin", weights_only=True)
    del state["showo.lm_head.weight"]
    folder = _copy_checkpoint(tiny["showo"], tmp_path / "tied", state)
    model, _, _ = Showo.from_pretrained(folder, llm=llm)
    assert torch.equal(model.showo.lm_head.weight, state["showo.model.embed_tokens.weight"])


def test_missing_checkpoint_names_files_and_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          tiny: dict[str, Path]) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError) as err:
        Showo.from_pretrained("showlab/show-o")
    message = str(err.value)
    assert "Show-o transformer checkpoint 'showlab/show-o' not found" in message
    assert "config.json" in message and "weights" in message and "`hf download showlab/show-o`" in message
    # the weights are here but the LLM (tokenizer and config) is not: reported the same way
    with pytest.raises(MissingWeightsError) as err:
        Showo.from_pretrained(tiny["showo"], llm="microsoft/phi-1_5")
    message = str(err.value)
    assert "Phi-1.5 tokenizer and config checkpoint 'microsoft/phi-1_5' not found" in message
    assert "`hf download microsoft/phi-1_5`" in message


def test_config_must_give_the_codebook_its_columns() -> None:
    assert ShowoConfig(vocab_size=58498, llm_vocab_size=50295).image_token_offset == 50305
    with pytest.raises(ShowoCheckpointError, match="8191 image columns"):
        ShowoConfig(vocab_size=58497, llm_vocab_size=50295)


# ---------------------------------------------------------------------------------------------
# the plug-in, end to end with the tiny MAGVIT-v2


def test_generator_end_to_end(tiny: dict[str, Path]) -> None:
    gen = _generator(tiny, pad_batches="true")
    first = GenerationRequest("a photo of a bench", (1, 2, 3, 4), previews=True)
    second = GenerationRequest("a red cup", (7,))
    out = gen.generate([first, second])
    assert [len(r.images) for r in out] == [4, 1]
    assert all(image.size == (32, 32) and image.mode == "RGB" for r in out for image in r.images)
    assert [len(p) for p in out[0].previews] == [6] * 4 and out[1].previews == [[]]
    assert out[0].previews[2][-1] is out[0].images[2]  # the last step's preview is the image
    # 5 candidates in batches of 3: the first request was in both batches, the second in one
    assert out[0].cost.forward_passes == 12 and out[1].cost.forward_passes == 6
    assert out[0].cost.tokens == 4 * 64 and out[0].cost.seconds > 0

    # the same candidate alone, in another call and batch, is the same image, byte for byte
    (alone,) = gen.generate([GenerationRequest("a photo of a bench", (3,))])
    assert np.array_equal(np.asarray(alone.images[0]), np.asarray(out[0].images[2]))
    assert not np.array_equal(np.asarray(out[0].images[0]), np.asarray(out[0].images[1]))


def test_generator_checks_resolution_and_params(tiny: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="makes 32x32 images"):
        _generator(tiny, resolution="256")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        _generator(tiny, steps="0")
    defaults = ShowoGenerator.Params()
    assert (defaults.steps, defaults.guidance, defaults.temperature, defaults.dtype) == (18, 1.75, 1.0, "auto")
    assert replace(defaults, model="x").model == "x"
