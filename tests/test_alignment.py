"""DPO for image-token generators (harness.alignment): the loss, Show-o's masked-token and Janus's
next-token log-likelihoods, the trainer (frozen reference, checkpoints the generators load, exact
resume) and `stepwise align dpo`'s errors, all on tiny random models."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from helpers import write_pairs

from harness.alignment.dpo import (
    IGNORE,
    dpo_loss,
    draw_showo_mask,
    janus_image_tokens,
    janus_logp,
    showo_logp,
    showo_training_ids,
)
from harness.alignment.models import JanusFamily, ShowoFamily, load_family
from harness.alignment.train import MANIFEST_NAME, STATE_NAME, AlignmentError, DPOConfig, DPOTrainer
from harness.cli import main
from harness.generators.janus import JanusGenerator, JanusParams
from harness.generators.showo.generator import ShowoGenerator
from harness.generators.showo.model import Showo
from harness.generators.showo.prompting import attention_mask
from harness.plugins import GenerationRequest, parse_params

PROMPTS = ("a photo of a cup", "a photo of a red dog", "a photo of two cats", "a photo of a bench")


# ---------------------------------------------------------------------------------------------
# fixtures: tiny models and preference pairs made of their own images


@pytest.fixture(scope="module")
def showo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo

    root = tmp_path_factory.mktemp("dpo-showo")
    params = {"model": str(write_tiny_showo(root)), "vq_model": str(write_tiny_magvit(root / "magvit")),
              "resolution": "32", "steps": "4", "guidance": "0", "device": "cpu"}
    generator = ShowoGenerator(parse_params(ShowoGenerator.Params, params))
    results = generator.generate([GenerationRequest(prompt, (1, 2), {}) for prompt in PROMPTS])
    pairs = write_pairs(root, [(prompt, *result.images) for prompt, result in zip(PROMPTS, results, strict=True)])
    family = load_family("showo", {k: v for k, v in params.items() if k not in ("steps", "guidance")})
    return {"root": root, "params": params, "pairs": pairs, "family": family}


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from harness.tiny.janus import write_tiny_janus

    root = tmp_path_factory.mktemp("dpo-janus")
    params = {"model": str(write_tiny_janus(root / "model")), "device": "cpu"}
    family = load_family("janus", params)
    assert isinstance(family, JanusFamily)
    return {"root": root, "params": params, "family": family}


def _config(showo: dict[str, Any], out: Path, **values: Any) -> DPOConfig:
    settings: dict[str, Any] = {"pairs": showo["pairs"], "lr": 1e-3, "batch_size": 2, "warmup_ratio": 0.0,
                                "scheduler": "constant", "progress": False, **values}
    return DPOConfig(generator="showo", out=out, params=showo["params"], **settings)


# ---------------------------------------------------------------------------------------------
# the loss


def test_dpo_loss_matches_a_hand_computed_batch() -> None:
    policy_chosen, policy_rejected = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    ref_chosen, ref_rejected = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    loss, chosen, rejected = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.5)
    # pair 1: β((−1 − −3) − 0) = 1 -> log(1 + e^−1); pair 2: β((−2 − −1) − 0) = −0.5 -> log(1 + e^0.5)
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.5))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert chosen.tolist() == [0.5, 0.0]  # β(π − ref) per image
    assert rejected.tolist() == [-0.5, 0.5]


# ---------------------------------------------------------------------------------------------
# Show-o's masked-token log-likelihood


def test_showo_mask_follows_the_training_schedule() -> None:
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        timestep = torch.rand((), generator=torch.Generator().manual_seed(seed))
        mask = draw_showo_mask(64, generator)
        expected = max(1, round(64 * math.cos(math.pi / 2 * float(timestep))))
        assert mask.dtype == torch.bool and mask.shape == (64,)
        assert int(mask.sum()) == expected
    assert int(draw_showo_mask(64, torch.Generator().manual_seed(0), min_masking_rate=1.0).sum()) == 64


def test_showo_training_sequence_and_labels(showo: dict[str, Any]) -> None:
    family: ShowoFamily = showo["family"]
    config, tokens = family.reference.config, family.tokens
    n, text = config.num_vq_tokens, config.max_text_len
    codes = torch.arange(2 * n).reshape(2, n) % config.codebook_size
    masks = torch.zeros(2, n, dtype=torch.bool)
    masks[0, :3] = True
    masks[1, -1] = True
    ids, labels = showo_training_ids(codes, [[5, 6], []], masks, tokens=tokens, config=config)
    assert ids.shape == labels.shape == (2, text + n + 2)
    assert ids[1, text - 3:text].tolist() == [tokens.t2i, tokens.bos, tokens.eos]  # the dropped prompt
    assert ids[0, text].item() == tokens.soi and ids[0, -1].item() == tokens.eoi
    image = ids[:, text + 1:-1]
    assert torch.equal(image == config.mask_token_id, masks)
    assert torch.equal(image[~masks], (codes + config.image_token_offset)[~masks])
    # counted: <|soi|>, the masked positions with their true ids, <|eoi|>
    counted = labels != IGNORE
    assert counted.sum(dim=1).tolist() == [3 + 2, 1 + 2]
    assert labels[0, text].item() == tokens.soi and labels[0, -1].item() == tokens.eoi
    assert labels[0, text + 1:text + 4].tolist() == (codes[0, :3] + config.image_token_offset).tolist()


def test_showo_logp_is_the_reference_get_batch_logps(showo: dict[str, Any]) -> None:
    """The official train_dpo.py: full logits, slice from max_seq_length + 1, log-softmax, sum over labels != -100."""
    family: ShowoFamily = showo["family"]
    model, config = family.reference, family.reference.config
    generator = torch.Generator().manual_seed(3)
    codes = torch.randint(0, config.codebook_size, (2, config.num_vq_tokens), generator=generator)
    masks = torch.stack([draw_showo_mask(config.num_vq_tokens, generator) for _ in range(2)])
    text_ids = family.tokenizer(["a photo of a cup", "a photo of two dogs"])["input_ids"]
    ids, labels = showo_training_ids(codes, text_ids, masks, tokens=family.tokens, config=config)
    with torch.no_grad():
        ours = showo_logp(model, ids, labels, family.tokens)
        logits = model(ids, attention_mask(ids, family.tokens))[:, config.max_seq_length + 1:]
    sliced = labels[:, config.max_seq_length + 1:].clone()
    loss_mask = sliced != IGNORE
    sliced[~loss_mask] = 0
    per_token = torch.gather(logits.log_softmax(-1), dim=2, index=sliced.unsqueeze(2)).squeeze(2)
    torch.testing.assert_close(ours, (per_token * loss_mask).sum(-1), rtol=1e-5, atol=1e-4)


def test_images_tokenise_through_magvit_encode_to_ids(showo: dict[str, Any]) -> None:
    family: ShowoFamily = showo["family"]
    codes = torch.randint(0, family.reference.config.codebook_size, (2, family.reference.config.num_vq_tokens),
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        pixels = ((family.vq.decode_code(codes).clamp(-1, 1) + 1) / 2 * 255).to(torch.uint8)
    from PIL import Image

    images = [Image.fromarray(p.permute(1, 2, 0).numpy()) for p in pixels]
    tokens = family.image_tokens(images)
    assert tokens.shape == codes.shape and tokens.dtype == torch.long
    with torch.no_grad():
        expected = family.vq.encode_to_ids(pixels.float() / 255 * 2 - 1)
    assert torch.equal(tokens, expected)


# ---------------------------------------------------------------------------------------------
# Janus's next-token log-likelihood


def _manual_janus_logp(model: Any, ids: torch.Tensor, tokens: torch.Tensor) -> float:
    """Step by step with the KV cache, as the generator samples: log-softmax of the generation head, picked."""
    lm = model.model.language_model
    out = lm(inputs_embeds=model.get_input_embeddings()(ids[None]), use_cache=True)
    total = 0.0
    for t, token in enumerate(tokens.tolist()):
        logits = model.model.generation_head(out.last_hidden_state[:, -1, :]).float()
        total += float(logits.log_softmax(dim=-1)[0, token])
        if t + 1 < len(tokens):
            embeds = model.prepare_embeddings_for_image_generation(tokens[t:t + 1][None])
            out = lm(inputs_embeds=embeds, past_key_values=out.past_key_values, use_cache=True)
    return total


def test_janus_logp_is_the_sum_of_per_step_log_softmax_picks(janus: dict[str, Any]) -> None:
    family: JanusFamily = janus["family"]
    generator = family.generator
    prompts = [generator.prompt_ids("a cup"), generator.prompt_ids("a photo of two red dogs")]  # lengths differ
    assert len(prompts[0]) != len(prompts[1])
    prompts.append(family.unconditional(prompts[1]))
    tokens = torch.randint(0, 64, (3, generator.n_tokens), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        batched = janus_logp(family.reference, prompts, tokens, generator.pad_id)
        manual = [_manual_janus_logp(family.reference, ids, row) for ids, row in zip(prompts, tokens, strict=True)]
    torch.testing.assert_close(batched, torch.tensor(manual), rtol=1e-5, atol=1e-4)
    # the unconditional prompt is the generator's own
    assert torch.equal(prompts[2], generator._unconditional(prompts[1]))


def test_janus_tokens_search_the_l2_normalised_codebook(janus: dict[str, Any]) -> None:
    """DeepSeek's quantiser normalises latent and codebook; decoding a token grid and encoding it back
    through that search recovers the codes the decoder was given far more often than chance."""
    model = janus["family"].reference
    codes = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        pixels = model.decode_image_tokens(codes).permute(0, 3, 1, 2)
        tokens = janus_image_tokens(model, pixels)
        latent = model.model.vqmodel.quant_conv(model.model.vqmodel.encoder(pixels))
    z = torch.nn.functional.normalize(latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1]), dim=-1)
    codebook = torch.nn.functional.normalize(model.model.vqmodel.quantize.embedding.weight, dim=-1)
    assert torch.equal(tokens.reshape(-1), (z @ codebook.T).argmax(dim=1))  # nearest by cosine
    assert tokens.shape == codes.shape


def test_janus_dpo_checkpoint_loads_in_the_janus_generator(janus: dict[str, Any]) -> None:
    family: JanusFamily = janus["family"]
    images = family.generator.generate([GenerationRequest(p, (1, 2), {}) for p in PROMPTS[:2]])
    pairs = write_pairs(janus["root"], [(p, *r.images) for p, r in zip(PROMPTS[:2], images, strict=True)])
    out = janus["root"] / "ckpt"
    config = DPOConfig(generator="janus", pairs=pairs, out=out, params=janus["params"], lr=1e-3, batch_size=2,
                       epochs=3, warmup_ratio=0.0, scheduler="constant", progress=False)
    trainer = DPOTrainer(config, family=family)
    trainer.train()
    assert trainer.margins(trainer.pairs).mean() > 0
    loaded = JanusGenerator(parse_params(JanusParams, {"model": str(out), "device": "cpu"}))
    for name, tensor in trainer.policy.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[name]), name
    assert loaded.generate([GenerationRequest("a cup", (5,), {})])[0].images[0].size == (16, 16)


# ---------------------------------------------------------------------------------------------
# the trainer


def test_training_raises_the_preference_margin_and_leaves_the_reference_alone(
        showo: dict[str, Any], tmp_path: Path) -> None:
    family: ShowoFamily = showo["family"]
    reference = {name: p.detach().clone() for name, p in family.reference.named_parameters()}
    trainer = DPOTrainer(_config(showo, tmp_path / "ckpt", epochs=3, cond_dropout=0.0), family=family)
    # the margin over masks the training never drew (other epochs' draws), averaged
    unseen = range(100, 106)
    before = torch.stack([trainer.margins(trainer.pairs, epoch) for epoch in unseen]).mean(0)
    assert torch.equal(before, torch.zeros(len(PROMPTS)))  # the policy starts as the reference
    manifest = trainer.train()
    after = torch.stack([trainer.margins(trainer.pairs, epoch) for epoch in unseen]).mean(0)
    assert manifest["steps"] == {"done": 6, "total": 6, "per_epoch": 2} and manifest["finished"]
    assert (after > 0).all() and after.mean() > 1.0, after

    assert not family.reference.training
    for name, p in family.reference.named_parameters():
        assert not p.requires_grad and p.grad is None, name
        assert torch.equal(p, reference[name]), name
    assert any(not torch.equal(p, reference[name]) for name, p in trainer.policy.named_parameters())


def test_checkpoint_reloads_exactly_and_generates_through_the_plugin(showo: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    trainer = DPOTrainer(_config(showo, out), family=showo["family"])
    trainer.train()
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "pytorch_model.bin", MANIFEST_NAME, STATE_NAME]
    assert not (tmp_path / "ckpt.partial").exists() and not (tmp_path / "ckpt.previous").exists()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["data"]["sha256"] == hashlib.sha256(showo["pairs"].read_bytes()).hexdigest()
    assert manifest["parameters"]["lr"] == 1e-3 and manifest["parent"]["model"] == showo["params"]["model"]
    assert set(manifest["parent"]["model_files"]) == {"config.json", "pytorch_model.bin"}

    loaded, _, _ = Showo.from_pretrained(out)  # strict: every original parameter name
    draws = trainer.pair_draws(trainer.pairs, 0)
    tokens = trainer.batch_tokens(trainer.pairs)
    with torch.no_grad():
        ours = trainer.logps(trainer.policy, trainer.pairs, tokens, draws)
        theirs = trainer.logps(loaded, trainer.pairs, tokens, draws)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))

    params = {**showo["params"], "model": str(out)}
    generator = ShowoGenerator(parse_params(ShowoGenerator.Params, params))
    image = generator.generate([GenerationRequest("a photo of a cup", (7,), {})])[0].images[0]
    assert image.size == (32, 32)


def test_resume_is_exact(showo: dict[str, Any], tmp_path: Path) -> None:
    """4 steps straight = 1 step, stop, resume to 3 (across an epoch end), resume to the end."""
    settings = {"epochs": 2, "shuffle": True, "scheduler": "linear", "warmup_ratio": 0.5}
    straight = DPOTrainer(_config(showo, tmp_path / "a", **settings), family=showo["family"])
    straight.train()
    out = tmp_path / "b"
    for stop, resume in ((1, False), (3, True), (None, True)):
        trainer = DPOTrainer(_config(showo, out, stop_after=stop, resume=resume, **settings), family=showo["family"])
        manifest = trainer.train()
        assert manifest["steps"]["done"] == (stop or 4)
    assert manifest["finished"]
    for name, tensor in straight.policy.state_dict().items():
        assert torch.equal(tensor, trainer.policy.state_dict()[name]), name
    a = json.loads((tmp_path / "a" / MANIFEST_NAME).read_text())
    assert a["metrics"] == manifest["metrics"]
    assert torch.load(tmp_path / "a" / STATE_NAME, weights_only=True)["scheduler"] == \
        torch.load(out / STATE_NAME, weights_only=True)["scheduler"]


def test_a_finished_checkpoint_is_recognised_without_loading_a_model(showo: dict[str, Any], tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.alignment.train as train

    out = tmp_path / "ckpt"
    trained = DPOTrainer(_config(showo, out), family=showo["family"]).train()

    def no_trainer(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the trainer (and so the models) was built")

    monkeypatch.setattr(train, "DPOTrainer", no_trainer)
    assert train.train_dpo(_config(showo, out, resume=True)) == trained  # same settings: its manifest, no model
    assert train.finished_checkpoint(_config(showo, out, resume=True, beta=0.2)) is None  # other settings
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(showo["pairs"].read_bytes())
    assert train.finished_checkpoint(_config(showo, out, pairs=moved)) == trained  # a moved file, same bytes
    changed = tmp_path / "changed.jsonl"
    changed.write_text("\n".join(showo["pairs"].read_text().splitlines()[:1]) + "\n")
    assert train.finished_checkpoint(_config(showo, out, pairs=changed)) is None
    with pytest.raises(AssertionError, match="trainer"):  # anything that differs goes to the trainer to judge
        train.train_dpo(_config(showo, out, resume=True, pairs=changed))


def test_resume_refuses_other_settings_and_fresh_runs_refuse_a_checkpoint(showo: dict[str, Any],
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    DPOTrainer(_config(showo, out, stop_after=1), family=showo["family"]).train()
    with pytest.raises(AlignmentError, match="--resume"):
        DPOTrainer(_config(showo, out), family=showo["family"])
    with pytest.raises(AlignmentError, match="beta"):
        DPOTrainer(_config(showo, out, beta=0.2, resume=True), family=showo["family"])
    # a swap interrupted between its two renames: OUT.previous is taken back
    out.rename(tmp_path / "ckpt.previous")
    trainer = DPOTrainer(_config(showo, out, resume=True), family=showo["family"])
    assert trainer.step == 1 and out.is_dir() and not (tmp_path / "ckpt.previous").exists()


# ---------------------------------------------------------------------------------------------
# the command


def _invoke(showo: dict[str, Any], pairs: Path, out: Path, *extra: str) -> Any:
    params = [arg for key in ("model", "vq_model", "resolution", "device")
              for arg in ("--param", f"{key}={showo['params'][key]}")]
    return CliRunner().invoke(main, ["align", "dpo", "--generator", "showo", *params, "--pairs", str(pairs),
                                     "-o", str(out), "--batch-size", "4", *extra])


def test_align_dpo_command_trains_and_names_bad_inputs(showo: dict[str, Any], tmp_path: Path) -> None:
    result = _invoke(showo, showo["pairs"], tmp_path / "ok")
    assert result.exit_code == 0, result.output
    assert "1 of 1 steps (finished)" in result.output
    manifest = json.loads((tmp_path / "ok" / MANIFEST_NAME).read_text())
    assert manifest["finished"]
    # the time per step is measured on whatever runs it (the README's time per epoch comes from here)
    timing = manifest["timing"]
    assert timing["device"] == "cpu" and timing["measured_steps"] == 1 and timing["seconds_per_step"] > 0
    assert timing["seconds_per_epoch"] == timing["seconds_per_step"] * manifest["steps"]["per_epoch"]
    assert "s/step on cpu (one epoch = 1 steps, about " in result.output and " s)" in result.output

    result = _invoke(showo, tmp_path / "nothing.jsonl", tmp_path / "x")
    assert result.exit_code == 1 and "no such pairs file" in result.output

    records = [json.loads(line) for line in showo["pairs"].read_text().splitlines()]
    folder = tmp_path / "bad"
    folder.mkdir()
    missing = folder / "gone.png"
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    cases = {
        "missing": ({"chosen": str(missing), "chosen_sha256": None}, f"image {missing} does not exist"),
        "corrupt": ({"chosen": str(corrupt), "chosen_sha256": None}, f"image {corrupt} is not a readable image"),
        "sha256": ({"rejected_sha256": "0" * 64}, "the pairs file says " + "0" * 64),
    }
    for name, (change, message) in cases.items():
        pairs = folder / f"{name}.jsonl"
        pairs.write_text("\n".join(json.dumps({**r, **(change if i == 2 else {})}) for i, r in enumerate(records)))
        result = _invoke(showo, pairs, tmp_path / name)
        assert result.exit_code == 1, result.output
        assert f"{pairs}:3" in result.output and message in result.output, result.output
        assert not (tmp_path / name).exists()  # refused before any model was loaded or written

    result = _invoke(showo, showo["pairs"], tmp_path / "ok")
    assert result.exit_code == 1 and "--resume" in result.output
    shutil.rmtree(tmp_path / "ok")
