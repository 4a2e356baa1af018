"""`stepwise analyze` through the CLI: a JSONL pool (the curve's format with step scores), and a store run
scored by the runner's test doubles, the real PARM on the tiny LLaVA-OneVision and an ensemble."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import runner_plugins
from helpers import stepwise

from harness.analysis.report import analysis_json, analyze
from harness.pools import read_pool

HAND = [  # (prompt, tag, correct, orm, clip, orm steps)
    (0, "counting", True, 0.9, 0.2, [1.0, 0.9]), (0, "counting", True, 0.5, 0.1, [1.0, 0.5]),
    (0, "counting", False, 0.5, 0.4, [0.0, 0.5]), (0, "counting", False, 0.1, 0.3, [0.0, 0.1]),
    (1, "colors", True, 0.3, 1.0, [1.0, 0.3]), (1, "colors", True, 0.2, 2.0, [1.0, 0.2]),
    (2, "colors", False, 0.6, 0.5, [0.0, 0.6]), (2, "colors", True, 0.7, 0.6, [1.0, 0.7]),
]


@pytest.fixture
def pool_file(tmp_path: Path) -> Path:
    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({"prompt_id": p, "tag": t, "correct": c, "scores": {"orm": o, "clip": k},
                                        "step_scores": {"orm": s}}) + "\n" for p, t, c, o, k, s in HAND))
    return path


def test_jsonl_pool_text_json_and_plots(pool_file: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    code, output = stepwise("analyze", "--from-jsonl", str(pool_file), "--json", str(report), "--plot",
                            str(tmp_path / "plots"), "--bootstrap", "200", "--label", "hand-made pool")
    assert code == 0, output
    assert output.startswith("hand-made pool\n3 prompts, 8 candidates")
    assert "verifier orm" in output and "verifier clip" in output and "clip vs orm" in output
    data = json.loads(report.read_text())
    with open(pool_file) as fp:
        pool = read_pool(fp, "x")
    from harness.analysis.report import score_probabilities

    expected = analysis_json(analyze(pool, rng=np.random.default_rng(0), n_boot=200, seed=0,
                                     probabilities=score_probabilities(pool.scores)))
    assert data == {**expected, "label": "hand-made pool"}
    orm = data["verifiers"]["orm"]
    # prompt 0: 0.875 (ties half); prompt 1: all correct, left out; prompt 2: the correct one on top
    assert orm["groups"]["counting"]["within_prompt_auroc"] == 0.875
    assert orm["groups"]["colors"]["within_prompt_auroc"] == 1.0
    assert orm["groups"]["colors"]["excluded_all_correct"] == 1
    assert orm["groups"]["overall"]["within_prompt_auroc"] == pytest.approx(0.9375)
    assert orm["calibration"] is not None and data["verifiers"]["clip"]["calibration"] is None  # "clip" states none
    assert orm["steps"]["within_prompt_auroc"]["overall"][0] == 1.0  # step 0 is the verdict itself
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["regret.svg", "reliability-orm.svg",
                                                                      "steps.svg"]


def test_usage_errors(pool_file: Path) -> None:
    code, output = stepwise("analyze")
    assert code != 0 and "exactly one of --from-jsonl" in output
    code, output = stepwise("analyze", "--from-jsonl", str(pool_file), "--verifier", "pickscore")
    assert code != 0 and "no scores by pickscore; the pool has clip, orm" in output
    code, output = stepwise("analyze", "--run", "abc")
    assert code != 0 and "--run needs the --verifier names" in output
    code, output = stepwise("analyze", "--from-jsonl", str(pool_file), "--n", "1..3")
    assert code != 0 and "1 <= n <= 2" in output


# ---------------------------------------------------------------------------------------------
# a store run


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    runner_plugins.register_isolated(monkeypatch)
    yield


def test_store_run_with_parm_and_an_ensemble(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from harness.tiny.vlm import write_tiny_llava_onevision

    flags = runner_plugins.tiny_model_flags(tmp_path_factory)
    vlm = write_tiny_llava_onevision(tmp_path / "vlm")
    verifiers = ["--verifier", "scripted", "--verifier", "parm", "--verifier", "ensemble",
                 "--verifier-param", f"parm:model={vlm}", "--verifier-param", "parm:device=cpu",
                 "--verifier-param", "ensemble:verifiers=scripted,parm"]
    db = f"sqlite:///{tmp_path / 's.db'}"
    code, output = stepwise("run", "--generator", "shapes", "--per-task", "1", "--prompts", "0,80..84", "--pool", "3",
                            *verifiers, "--db", db, "--out", str(tmp_path / "out"), *flags)
    assert code == 0, output
    run_id = output.strip().splitlines()[-1]
    code, output = stepwise("analyze", "--run", run_id, "--db", db, *verifiers, *flags, "--bootstrap", "100",
                            "--json", str(tmp_path / "r.json"))
    assert code == 0, output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["prompts"] == 6 and data["candidates"] == 18
    assert set(data["verifiers"]) == {"scripted", "parm", "ensemble"}
    scripted, parm = data["verifiers"]["scripted"], data["verifiers"]["parm"]
    assert len(scripted["steps"]["steps"]) == 2  # the shapes generator's two previews
    assert parm["steps"] is not None and parm["parm"] is not None  # clarity P(yes) per judged step; decisions
    decisions = parm["parm"]["overall"]
    assert sum(map(sum, decisions["clarity"].values())) == 18
    assert sum(map(sum, decisions["potential"].values())) == sum(decisions["clarity"]["clear"])
    assert parm["calibration"] is not None  # its survivors' ORM probability (possibly none survive: n = 0)
    assert {(a["a"], a["b"]) for a in data["agreement"]} == {("scripted", "parm"), ("scripted", "ensemble"),
                                                             ("parm", "ensemble")}
    assert "PARM decisions vs the final verdict" in output
