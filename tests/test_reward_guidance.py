"""DPO with reward-model guidance (harness.alignment.guidance): online pairs from policy samples judged
by a verifier plug-in, on tiny Show-o. The verifiers are runner_plugins' test doubles (`scripted`:
mean of one colour channel, with step previews; `plain`: the same without), registered in isolation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import runner_plugins
import torch
from click.testing import CliRunner
from helpers import tiny_showo_with_pairs

from harness.alignment.guidance import online_pair, online_seed, sample_seed
from harness.alignment.iterate import IterateConfig
from harness.alignment.models import ShowoFamily, load_family
from harness.alignment.train import MANIFEST_NAME, AlignmentError, DPOConfig, DPOTrainer, StepMetrics
from harness.cli import main
from harness.plugins import GenerationRequest
from harness.prompts import geneval_suite

PROMPTS = ("a photo of a cup", "a photo of a red dog")


@pytest.fixture(scope="module")
def showo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("guided-showo")
    params, pairs = tiny_showo_with_pairs(root, PROMPTS)
    prompts = root / "reward_prompts.jsonl"
    prompts.write_text("".join(json.dumps(sample) + "\n" for sample in geneval_suite(per_task=1)[:3]))
    return {"root": root, "params": params, "pairs": pairs, "prompts": prompts, "family": load_family("showo", params)}


@pytest.fixture(autouse=True)
def _doubles(monkeypatch: pytest.MonkeyPatch) -> None:
    runner_plugins.register_isolated(monkeypatch)


def _config(showo: dict[str, Any], out: Path, **values: Any) -> DPOConfig:
    settings: dict[str, Any] = {"lr": 1e-3, "batch_size": 2, "warmup_ratio": 0.0, "scheduler": "constant",
                                "progress": False, **values}
    return DPOConfig(generator="showo", pairs=showo["pairs"], out=out, params=showo["params"], **settings)


def _weights(trainer: DPOTrainer) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in trainer.policy.state_dict().items()}


def test_online_pair_picks_the_best_and_the_worst() -> None:
    assert online_pair([0.2, 0.9, 0.1]) == (1, 2)
    assert online_pair([0.1, 0.9, 0.2]) == (1, 0)
    assert online_pair([1.0, 3.0, 3.0, 0.0, 0.0]) == (1, 3)  # first of equals
    assert online_pair([0.5, 0.5, 0.5]) is None and online_pair([]) is None
    # the seeds: stable, distinct per candidate, and a stream apart from the pairs' draws
    assert sample_seed(0, 0, 3, 0) == sample_seed(0, 0, 3, 0) != sample_seed(0, 0, 3, 1)
    assert len({sample_seed(0, 0, 3, 0), sample_seed(1, 0, 3, 0), sample_seed(0, 1, 3, 0), online_seed(0, 0, 3)}) == 4


def test_sample_generates_with_the_policy_and_puts_the_reference_back(showo: dict[str, Any]) -> None:
    family: ShowoFamily = showo["family"]
    requests = [GenerationRequest(prompt, (5, 6), {}) for prompt in PROMPTS]
    own = family.generator.generate(requests)

    same = family.new_policy()
    sampled = family.sample(same, requests)
    for a, b in zip(own, sampled, strict=True):
        assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.images, b.images, strict=True))

    changed = family.new_policy()
    with torch.no_grad():
        noise = torch.Generator().manual_seed(0)
        for p in changed.parameters():
            p.add_(torch.randn(p.shape, generator=noise) * 0.5)
    sampled = family.sample(changed, requests)
    assert any(not np.array_equal(np.asarray(x), np.asarray(y))
               for a, b in zip(own, sampled, strict=True) for x, y in zip(a.images, b.images, strict=True))
    assert family.generator.model is family.reference and not family.reference.training
    assert changed.training  # back in train mode
    again = family.generator.generate(requests)  # the generator is untouched
    assert all(np.array_equal(np.asarray(x), np.asarray(y))
               for a, b in zip(own, again, strict=True) for x, y in zip(a.images, b.images, strict=True))


def test_guidance_changes_the_trained_weights_and_is_recorded(showo: dict[str, Any], tmp_path: Path) -> None:
    guided = {"reward_verifier": "scripted", "reward_params": {"channel": "1"}, "reward_samples": 2}
    plain = DPOTrainer(_config(showo, tmp_path / "plain"), family=showo["family"])
    plain.train()
    logged = DPOTrainer(_config(showo, tmp_path / "coef0", reward_coef=0.0, **guided), family=showo["family"])
    logged.train()
    trained = DPOTrainer(_config(showo, tmp_path / "coef1", reward_coef=1.0, **guided), family=showo["family"])
    manifest = trained.train()

    # coef 0 logs the online loss only: the weights are those of plain DPO; coef 1 moves them elsewhere
    before, zero, one = _weights(plain), _weights(logged), _weights(trained)
    assert all(torch.equal(before[name], zero[name]) for name in before)
    assert any(not torch.equal(before[name], one[name]) for name in before)
    assert logged.history[0].loss == trained.history[0].loss  # `loss` is the curated pairs' DPO loss

    assert {key: manifest["parameters"][key] for key in guided} == guided
    assert manifest["parameters"]["reward_coef"] == 1.0
    last = manifest["metrics"]["last"]
    assert last["online_pairs"] > 0 and math.isfinite(last["online_loss"])
    assert 0.0 <= last["online_reward"] <= 1.0 and manifest["metrics"]["mean"]["online_pairs"] == last["online_pairs"]
    assert runner_plugins.CALLS["score"] > 0  # the scripted verifier asserts it was given previews
    assert json.loads((tmp_path / "coef1" / MANIFEST_NAME).read_text())["metrics"] == manifest["metrics"]
    # without guidance nothing about it is recorded (older checkpoints still resume)
    unguided = json.loads((tmp_path / "plain" / MANIFEST_NAME).read_text())
    assert "reward_verifier" not in unguided["parameters"] and "online_loss" not in unguided["metrics"]["last"]
    # trainer states written before guidance existed still load
    row = {k: v for k, v in vars(trained.history[0]).items() if not k.startswith("online")}
    assert StepMetrics(**row).online_pairs == 0


def test_resume_is_exact_with_guidance(showo: dict[str, Any], tmp_path: Path) -> None:
    """2 steps straight == 1 step, stop, resume; prompts from a reward-prompts file, recorded by hash."""
    guided = {"reward_verifier": "plain", "reward_coef": 1.0, "reward_prompts": showo["prompts"], "batch_size": 1}
    straight = DPOTrainer(_config(showo, tmp_path / "a", **guided), family=showo["family"])
    straight.train()
    out = tmp_path / "b"
    for stop, resume in ((1, False), (None, True)):
        trainer = DPOTrainer(_config(showo, out, stop_after=stop, resume=resume, **guided), family=showo["family"])
        manifest = trainer.train()
    assert manifest["finished"] and manifest["steps"]["done"] == 2
    for name, tensor in straight.policy.state_dict().items():
        assert torch.equal(tensor, trainer.policy.state_dict()[name]), name
    assert json.loads((tmp_path / "a" / MANIFEST_NAME).read_text())["metrics"] == manifest["metrics"]
    assert manifest["metrics"]["mean"]["online_pairs"] > 0

    recorded = manifest["data"]["reward_prompts"]
    assert recorded["prompts"] == 3 and recorded["path"] == str(showo["prompts"].resolve())
    # the prompts file is compared by content: moved is fine, changed is refused
    moved = tmp_path / "moved.jsonl"
    moved.write_bytes(showo["prompts"].read_bytes())
    DPOTrainer(_config(showo, out, resume=True, **{**guided, "reward_prompts": moved}), family=showo["family"])
    moved.write_text(showo["prompts"].read_text().splitlines()[0] + "\n")
    with pytest.raises(AlignmentError, match="reward_prompts"):
        DPOTrainer(_config(showo, out, resume=True, **{**guided, "reward_prompts": moved}), family=showo["family"])
    with pytest.raises(AlignmentError, match="reward_coef"):
        DPOTrainer(_config(showo, out, resume=True, **{**guided, "reward_coef": 0.5}), family=showo["family"])


def _invoke(showo: dict[str, Any], out: Path, *extra: str) -> Any:
    params = [arg for key in ("model", "vq_model", "resolution", "device")
              for arg in ("--param", f"{key}={showo['params'][key]}")]
    return CliRunner().invoke(main, ["align", "dpo", "--generator", "showo", *params, "--pairs", str(showo["pairs"]),
                                     "-o", str(out), "--batch-size", "2", *extra])


@pytest.mark.parametrize(("flags", "message"), [
    (("--reward-verifier", "nosuch"), "unknown verifier 'nosuch'"),
    (("--reward-verifier", "oracle"), "--reward-verifier 'oracle' scores by GenEval's verdicts"),
    (("--reward-verifier", "plain", "--reward-samples", "1"), "--reward-samples must be >= 2"),
    (("--reward-param", "channel=1"), "--reward-param needs --reward-verifier"),
    (("--reward-verifier", "plain", "--reward-param", "nosuch=1"), "nosuch"),
    (("--reward-verifier", "plain", "--reward-coef", "-1"), "--reward-coef must be >= 0"),
])
def test_align_dpo_refuses_bad_reward_flags_in_one_line(showo: dict[str, Any], tmp_path: Path,
                                                        flags: tuple[str, ...], message: str) -> None:
    result = _invoke(showo, tmp_path / "out", *flags)
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
    assert message in result.output, result.output
    assert not (tmp_path / "out").exists()  # refused before any model was loaded or written


def test_align_dpo_command_trains_with_guidance(showo: dict[str, Any], tmp_path: Path) -> None:
    result = _invoke(showo, tmp_path / "out", "--reward-verifier", "plain", "--reward-param", "channel=2",
                     "--reward-coef", "0.5", "--reward-samples", "3")
    assert result.exit_code == 0, result.output
    assert "1 of 1 steps (finished)" in result.output and "online pairs" in result.output
    parameters = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())["parameters"]
    assert (parameters["reward_verifier"], parameters["reward_params"], parameters["reward_coef"],
            parameters["reward_samples"]) == ("plain", {"channel": "2"}, 0.5, 3)


def test_align_iterate_forwards_the_reward_settings(showo: dict[str, Any], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.alignment.iterate

    seen: list[IterateConfig] = []
    real = harness.alignment.iterate.iterate
    monkeypatch.setattr(harness.alignment.iterate, "iterate",
                        lambda config, log=None: seen.append(config) or {"final_checkpoint": "ckpt"})
    base = ["align", "iterate", "--generator", "showo", "--param", f"model={showo['params']['model']}",
            "--suite", str(showo["prompts"]), "--pool", "2", "-o", str(tmp_path / "work"), "--backend", "hf"]
    result = CliRunner().invoke(main, [*base, "--reward-verifier", "plain", "--reward-param", "channel=1",
                                       "--reward-coef", "0.3", "--reward-samples", "4",
                                       "--reward-prompts", str(showo["prompts"])])
    assert result.exit_code == 0, result.output
    config = seen[-1]
    dpo = json.loads(json.dumps(config.settings()))["dpo"]  # JSON as iterate.json records it
    assert {key: value for key, value in dpo.items() if key.startswith("reward")} == {
        "reward_verifier": "plain", "reward_params": {"channel": "1"}, "reward_coef": 0.3, "reward_samples": 4,
        "reward_prompts": str(showo["prompts"].resolve())}
    fields = DPOConfig(generator="showo", pairs=Path("p"), out=Path("o"), **config.dpo_fields())
    assert (fields.reward_verifier, dict(fields.reward_params), fields.reward_coef, fields.reward_samples,
            fields.reward_prompts) == ("plain", {"channel": "1"}, 0.3, 4, showo["prompts"].resolve())

    # no reward flag: nothing about guidance in the settings (iterate.json files from before it still match)
    result = CliRunner().invoke(main, base)
    assert result.exit_code == 0, result.output
    assert sorted(seen[-1].settings()["dpo"]) == ["batch_size", "beta", "epochs", "lr"]

    # the real loop refuses bad reward settings before round 1 runs anything
    monkeypatch.setattr(harness.alignment.iterate, "iterate", real)
    for flags, message in ((("--reward-verifier", "oracle"), "GenEval's verdicts"),
                           (("--reward-samples", "1"), "--reward-samples must be >= 2")):
        result = CliRunner().invoke(main, [*base, *flags])
        assert result.exit_code == 1 and message in result.output, result.output
        assert not (tmp_path / "work" / "store.db").exists() and not (tmp_path / "work" / "round-1").exists()


def test_janus_sample_generates_with_the_policy(tmp_path: Path) -> None:
    from harness.alignment.models import JanusFamily
    from harness.tiny.janus import write_tiny_janus

    family = load_family("janus", {"model": str(write_tiny_janus(tmp_path / "model")), "device": "cpu"})
    assert isinstance(family, JanusFamily)
    requests = [GenerationRequest("a photo of a cup", (3, 4), {})]
    own = family.generator.generate(requests)[0].images
    same = family.sample(family.new_policy(), requests)[0].images
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(own, same, strict=True))
    changed = family.new_policy()
    with torch.no_grad():
        head = changed.model.generation_head
        for p in head.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    other = family.sample(changed, requests)[0].images
    assert any(not np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(own, other, strict=True))
    assert family.generator.model is family.reference and changed.training
