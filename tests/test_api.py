"""The Python API (`harness.api`) drives the same work as the commands and gives the same answers.

One tiny run (the `shapes` test generator, the tiny hf detector and CLIP, the `scripted` verifier) made
through `api.run`; then evaluate, curves, analyze, submit and the site through the API, each checked
against what the matching command prints or writes for the same input.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise

from harness import api

REPO = Path(__file__).resolve().parents[1]


def evaluator_of(flags: list[str]) -> dict[str, Any]:
    """`tiny_model_flags`' flags as the API's evaluator dict."""
    pairs = dict(zip(flags[::2], flags[1::2], strict=True))
    return {key.removeprefix("--").replace("-", "_"): value for key, value in pairs.items()}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("api")
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        flags = runner_plugins.tiny_model_flags(tmp_path_factory)
        evaluator = evaluator_of(flags)
        db = f"sqlite:///{root / 's.db'}"
        spec = {"generator": "shapes", "per_task": 1, "pool": 3, "verifiers": ["scripted"], "db": db,
                "out": str(root / "out"), **{k: v for k, v in evaluator.items() if k != "threshold"}}
        run_id = api.run(spec, threshold=0.05)
        yield {"root": root, "flags": flags, "evaluator": evaluator, "db": db, "run_id": run_id, "spec": spec}


def test_import_is_light() -> None:
    code = "import sys, harness.api; print(int(any(m in sys.modules for m in ('torch', 'transformers', 'sqlalchemy'))))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          check=True).stdout.strip() == "0"


def test_run_returns_the_id_the_command_prints(made: dict[str, Any]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        code, output = stepwise("run", "--generator", "shapes", "--per-task", "1", "--pool", "3", "--verifier",
                                "scripted", "--db", made["db"], "--out", str(made["root"] / "out"), *made["flags"])
    assert code == 0, output
    assert output.strip().splitlines()[-1] == made["run_id"]  # the same run, found complete: nothing redone
    assert "0 needed work" in output


def test_curves_equal_the_commands_json(made: dict[str, Any]) -> None:
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        rows = api.curves(made["run_id"], db=made["db"], verifiers=["scripted"], ns=[1, 2, 3],
                          evaluator=made["evaluator"], n_boot=200)
        code, output = stepwise("curve", "--run", made["run_id"], "--db", made["db"], "--verifier", "scripted",
                                "--n", "1..3", "--json", "--bootstrap", "200", *made["flags"])
    assert code == 0, output
    expected = json.loads(output[output.index("{"):])
    assert {r["row"] for r in rows} == set(expected) == {"scripted", "random", "oracle"}
    for row in rows:
        shown = expected[row["row"]][str(row["n"])]
        assert row["overall"] == pytest.approx(shown["overall"])
        assert all(row[t] == pytest.approx(v) for t, v in shown.items())
        assert row["low"] <= row["overall"] <= row["high"]
    oracle = {r["n"]: r["overall"] for r in rows if r["row"] == "oracle"}
    assert oracle[1] <= oracle[2] <= oracle[3]  # best-of-n by GenEval itself never gets worse with n


def test_curves_from_a_jsonl_pool_and_bad_requests(tmp_path: Path) -> None:
    pool = tmp_path / "pool.jsonl"
    lines = [{"prompt_id": p, "tag": "single_object", "correct": c, "scores": {"v": s}}
             for p, cands in (("a", [(True, 0.9), (False, 0.1)]), ("b", [(False, 0.8), (True, 0.2)]))
             for c, s in cands]
    pool.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows = api.curves(pool=pool, ns=[1, 2], n_boot=100)
    by = {(r["row"], r["n"]): r["overall"] for r in rows}
    assert by[("v", 1)] == pytest.approx(0.5)  # picks a's correct one and b's incorrect one
    assert by[("oracle", 2)] == pytest.approx(1.0) and by[("random", 1)] == pytest.approx(0.5)
    with pytest.raises(api.ApiError, match="larger than the pool"):
        api.curves(pool=pool, ns=[3])
    with pytest.raises(api.ApiError, match="no scores by w"):
        api.curves(pool=pool, verifiers=["w"], ns=[1])
    with pytest.raises(api.ApiError, match="exactly one"):
        api.curves()
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(api.ApiError, match="needs pandas"):
            api.curves(pool=pool, ns=[1], as_dataframe=True)
    else:
        frame = api.curves(pool=pool, ns=[1], as_dataframe=True)
        assert list(frame["row"]) == ["v", "random", "oracle"]


def test_evaluate_gives_the_commands_verdicts(made: dict[str, Any], tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        code, output = stepwise("generate", "--generator", "shapes", "--per-task", "0", "--prompts", "0..2", "--n",
                                "2", "-o", str(tmp_path / "images"))
        assert code == 0, output
    records = api.evaluate(tmp_path / "images", **made["evaluator"])
    code, output = stepwise("eval", str(tmp_path / "images"), "-o", str(tmp_path / "r.jsonl"), *made["flags"])
    assert code == 0, output
    written = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(records) == 6
    assert [(r["filename"], r["correct"], r["reason"]) for r in records] == \
        [(r["filename"], r["correct"], r["reason"]) for r in written]
    with pytest.raises(api.ApiError, match="missing: not a directory"):
        api.evaluate(tmp_path / "missing", **made["evaluator"])
    with pytest.raises(api.ApiError, match="unknown evaluator setting"):
        api.evaluate(tmp_path / "images", detectr="x")


def test_analyze_gives_the_commands_report(made: dict[str, Any], tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        report = api.analyze(made["run_id"], db=made["db"], verifiers=["scripted"], evaluator=made["evaluator"],
                             n_boot=100)
        code, output = stepwise("analyze", "--run", made["run_id"], "--db", made["db"], "--verifier", "scripted",
                                "--json", str(tmp_path / "a.json"), "--bootstrap", "100", *made["flags"])
    assert code == 0, output
    assert report == json.loads((tmp_path / "a.json").read_text())
    with pytest.raises(api.ApiError, match="verifiers"):
        api.analyze(made["run_id"], db=made["db"])


def test_submit_and_build_site(made: dict[str, Any]) -> None:
    subs, site = made["root"] / "submissions", made["root"] / "site"
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        folder = api.submit(made["run_id"], name="Tiny shapes via the API", slug="api-tiny", db=made["db"],
                            verifiers=["scripted"], n=3, evaluator=made["evaluator"], out=subs)
        assert (folder / "submission.toml").is_file() and folder == subs / "api-tiny"
        with pytest.raises(api.ApiError, match="slug"):
            api.submit(made["run_id"], name="x", slug="Not A Slug!", db=made["db"], verifiers=["scripted"], n=3,
                       evaluator=made["evaluator"], out=subs)
        built = api.build_site(subs, site, recheck="none")
    assert built == site
    index = (site / "index.html").read_text()
    assert "Tiny shapes via the API" in index
