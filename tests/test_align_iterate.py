"""`stepwise align iterate`: rounds of run, curate and DPO on tiny Show-o, tiny MAGVIT and tiny GenEval models.

The tiny random-weight detector finds nothing it is asked for, so every image is judged "no" and a
real pool has no DPO pairs. The two-round tests therefore script the verdicts in one documented
place: `harness.runner._judge` still runs the tiny detector on every saved image (detections are
stored as usual), and only each verdict's `correct` is replaced by "sample index is even" (reason
"scripted"). With a pool of 2 every prompt then has one "yes" and one "no" image, so curation makes
one pair per prompt. The "no pairs" test uses the detector's real (all "no") verdicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import script_verdicts, stepwise

from harness.generators.showo.generator import ShowoGenerator


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo

    root = tmp_path_factory.mktemp("iterate")
    code, output = stepwise("prompts", "train", "--per-task", "1", "-o", str(root / "prompts"))
    assert code == 0, output
    params = {"model": str(write_tiny_showo(root / "showo")), "vq_model": str(write_tiny_magvit(root / "magvit")),
              "resolution": "32", "steps": "2", "guidance": "0", "device": "cpu"}
    return {"root": root, "suite": str(root / "prompts" / "evaluation_metadata.jsonl"), "params": params,
            "flags": runner_plugins.tiny_model_flags(tmp_path_factory)}


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEPWISE_CACHE_DIR", str(tmp_path / "cache"))


def iterate_args(setup: dict[str, Any], workdir: Path, *extra: str) -> list[str]:
    params = [arg for key, value in setup["params"].items() for arg in ("--param", f"{key}={value}")]
    return ["align", "iterate", "--generator", "showo", *params, "--suite", setup["suite"], "--pool", "2",
            "-o", str(workdir), "--lr", "1e-3", "--batch-size", "4", *setup["flags"], *extra]


def count_generate(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = ShowoGenerator.generate

    def counted(self: ShowoGenerator, requests: Any) -> Any:
        calls.append(len(requests))
        return real(self, requests)

    monkeypatch.setattr(ShowoGenerator, "generate", counted)
    return calls


def test_two_rounds_then_resume(setup: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script_verdicts(monkeypatch)
    calls = count_generate(monkeypatch)
    work = tmp_path / "work"
    code, output = stepwise(*iterate_args(setup, work, "--rounds", "2"))
    assert code == 0, output
    ckpt1, ckpt2 = work / "round-1" / "ckpt", work / "round-2" / "ckpt"
    assert output.strip().splitlines()[-1] == str(ckpt2.resolve())
    assert calls  # the generator ran (both rounds)

    state = json.loads((work / "iterate.json").read_text())
    assert state["format"] == "stepwise-align-iterate" and state["stopped"] is None
    assert state["final_checkpoint"] == str(ckpt2.resolve())
    assert [r["round"] for r in state["rounds"]] == [1, 2]
    prompts = len((Path(setup["suite"])).read_text().splitlines())
    first, second = state["rounds"]
    assert first["model"] == setup["params"]["model"] and second["model"] == str(ckpt1.resolve())
    assert first["run_id"] != second["run_id"]  # another model: another run
    for entry in state["rounds"]:
        data = Path(entry["data"])
        pairs = (data / "dpo.jsonl").read_text().splitlines()
        assert entry["pairs"] == len(pairs) == prompts  # one yes and one no image per prompt
        curated = json.loads((data / "manifest.json").read_text())
        assert entry["pairs_sha256"] == curated["files"]["dpo.jsonl"] and curated["run_id"] == entry["run_id"]
        assert entry["metrics"]["geneval_accuracy"] == 0.5 and entry["metrics"]["dpo"]["last"]["loss"] > 0
    assert state["settings"]["dpo"] == {"batch_size": 4, "beta": 0.1, "epochs": 1, "lr": 1e-3}

    # Round 2 trains from round 1's checkpoint, which is also its frozen reference (the manifest's parent).
    manifest1 = json.loads((ckpt1 / "stepwise-alignment.json").read_text())
    manifest2 = json.loads((ckpt2 / "stepwise-alignment.json").read_text())
    assert manifest1["parent"]["model"] == setup["params"]["model"]
    assert manifest2["parent"]["model"] == str(ckpt1.resolve())
    assert manifest2["finished"] and manifest2["data"]["sha256"] == second["pairs_sha256"]

    # Again: both rounds are done, nothing is generated, the same checkpoint is printed.
    calls.clear()
    before = (work / "iterate.json").read_bytes()
    code, output = stepwise(*iterate_args(setup, work, "--rounds", "2"))
    assert code == 0, output
    assert calls == [] and output.strip().splitlines()[-1] == str(ckpt2.resolve())
    assert (work / "iterate.json").read_bytes() == before

    # Other settings in the same folder are refused.
    code, output = stepwise(*iterate_args(setup, work, "--rounds", "2", "--beta", "0.2"))
    assert code != 0 and "other settings (dpo)" in output


def test_resume_runs_only_the_missing_round(setup: dict[str, Any], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    script_verdicts(monkeypatch)
    work = tmp_path / "work"
    code, output = stepwise(*iterate_args(setup, work, "--rounds", "1", "--epochs", "1"))
    assert code == 0, output
    ckpt1 = (work / "round-1" / "ckpt").resolve()
    assert output.strip().splitlines()[-1] == str(ckpt1)
    stamp = (ckpt1 / "stepwise-alignment.json").stat().st_mtime_ns

    code, output = stepwise(*iterate_args(setup, work, "--rounds", "2", "--epochs", "1"))
    assert code == 0, output
    assert f"round 2 starts from {ckpt1}" in output
    assert (ckpt1 / "stepwise-alignment.json").stat().st_mtime_ns == stamp  # round 1 untouched
    state = json.loads((work / "iterate.json").read_text())
    assert [r["round"] for r in state["rounds"]] == [1, 2] and state["rounds"][1]["model"] == str(ckpt1)


def test_no_pairs_stops_with_a_clear_message(setup: dict[str, Any], tmp_path: Path) -> None:
    # The tiny detector's own verdicts: every image "no", so every prompt has a single label.
    work = tmp_path / "work"
    code, output = stepwise(*iterate_args(setup, work, "--rounds", "2"))
    prompts = len((Path(setup["suite"])).read_text().splitlines())
    assert code != 0
    assert (f"round 1: no DPO pairs: every one of the {prompts} prompts got a single label over its pool of 2 "
            f"(0 all yes, {prompts} all no)") in output
    assert not (work / "round-1" / "ckpt").exists()
    state = json.loads((work / "iterate.json").read_text())
    assert state["rounds"] == [] and state["final_checkpoint"] is None and "no DPO pairs" in state["stopped"]
