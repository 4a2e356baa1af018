"""A strategy with a prepare stage through `stepwise run --strategy`: `dpo` trains a tiny Show-o checkpoint,
the run generates with it, and the store links the two (harness.preparation, strategies.alignment).

One run (module fixture) trains on four pairs of the tiny model's own images and generates a pool of
2 for two prompts, judged by the tiny GenEval models; the tests then re-run it (no retraining, no new
row), change the weights behind it (refused, nothing written), compute its curve, merge its store,
and check the refusals (a selection rule given to `run`, training under torchrun, bad settings).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from click.testing import CliRunner
from helpers import stepwise, tiny_showo_with_pairs
from sqlalchemy import func, select
from sqlalchemy.orm import Session

import harness.alignment.train
from harness import registry
from harness.cli import main
from harness.plugins import VerifierScore, canonical_json, parse_params
from harness.preparation import checkpoint_sha256
from harness.store import Candidate, Preparation, Result, Run, open_store

PROMPTS = ("a photo of a cup", "a photo of a red dog", "a photo of two cats", "a photo of a bench")
DPO_FLAGS = ("--strategy-param", "batch_size=2", "--strategy-param", "lr=1e-3")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("prepare")
    params, pairs = tiny_showo_with_pairs(root, PROMPTS)
    return {"root": root, "params": params, "pairs": pairs, "flags": runner_plugins.tiny_model_flags(tmp_path_factory)}


def run_args(tiny: dict[str, Any], out: Path, db: str, *extra: str, pairs: Path | None = None) -> list[str]:
    params = [arg for key, value in tiny["params"].items() for arg in ("--param", f"{key}={value}")]
    return ["run", "--generator", "showo", *params, "--per-task", "1", "--prompts", "0..1", "--pool", "2",
            "--db", db, "--out", str(out), *tiny["flags"], "--strategy", "dpo",
            "--strategy-param", f"pairs={pairs or tiny['pairs']}", *DPO_FLAGS, *extra]


def invoke(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the CLI run in-process."""
    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def rows(db: str) -> dict[str, Any]:
    engine = open_store(db, upgrade_schema=False)
    try:
        with Session(engine) as s:
            preparations = s.scalars(select(Preparation).order_by(Preparation.id)).all()
            s.expunge_all()
            return {"preparations": preparations, "runs": s.scalar(select(func.count()).select_from(Run)),
                    "candidates": s.scalar(select(func.count()).select_from(Candidate))}
    finally:
        engine.dispose()


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time (a retrained checkpoint changes them)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tiny: dict[str, Any]) -> dict[str, Any]:
    """The first `stepwise run --strategy dpo`: trains, generates with the checkpoint, records the link."""
    out = tiny["root"] / "out"
    db = f"sqlite:///{tiny['root'] / 'store.db'}"
    code, stdout, stderr = invoke(*run_args(tiny, out, db))
    assert code == 0, stderr
    (ckpt,) = (out / "prepare").iterdir()
    return {"out": out, "db": db, "run_id": stdout.strip().splitlines()[-1], "stderr": stderr, "ckpt": ckpt}


def test_run_trains_generates_with_the_checkpoint_and_records_the_link(tiny: dict[str, Any],
                                                                        trained: dict[str, Any]) -> None:
    ckpt, run_id = trained["ckpt"], trained["run_id"]
    assert ckpt.name.startswith("dpo-") and (ckpt / "stepwise-alignment.json").is_file()
    stored = rows(trained["db"])
    assert stored["runs"] == 1 and stored["candidates"] == 4  # 2 prompts x pool 2
    (link,) = stored["preparations"]
    engine = open_store(trained["db"], upgrade_schema=False)
    with Session(engine) as s:
        run = s.get(Run, run_id)
        assert run is not None and run.params["model"] == str(ckpt)  # the run generated with the checkpoint
    engine.dispose()
    manifest = json.loads((ckpt / "stepwise-alignment.json").read_text())
    assert manifest["finished"] and manifest["steps"]["done"] == 2  # 4 pairs, batch 2, one epoch
    assert (link.run_id, link.strategy, link.checkpoint) == (run_id, "dpo", str(ckpt))
    assert link.checkpoint_sha256 == checkpoint_sha256(ckpt)
    assert link.manifest == manifest
    assert link.manifest["data"]["sha256"] == hashlib.sha256(tiny["pairs"].read_bytes()).hexdigest()
    assert set(link.manifest["parent"]["model_files"]) >= {"config.json"}
    assert link.params["pairs"] == str(tiny["pairs"]) and link.params["batch_size"] == 2
    assert link.params["verifier"] is None
    params = parse_params(registry.strategies.get("dpo").Params,
                          {"pairs": str(tiny["pairs"]), "batch_size": "2", "lr": "1e-3"})
    assert link.settings_hash == hashlib.sha256(canonical_json(params).encode()).hexdigest()
    last = trained["stderr"].strip().splitlines()[-1]
    assert f"run {run_id}:" in last and f"generator checkpoint {ckpt}" in last and "prepared by strategy dpo" in last


def test_the_same_command_again_neither_trains_nor_adds_rows(tiny: dict[str, Any], trained: dict[str, Any],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def no_trainer(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the trainer was built for a finished checkpoint")

    monkeypatch.setattr(harness.alignment.train, "DPOTrainer", no_trainer)
    before, files = rows(trained["db"]), folder_state(trained["ckpt"])
    code, stdout, stderr = invoke(*run_args(tiny, trained["out"], trained["db"]))
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == trained["run_id"]
    assert "using the finished checkpoint" in stderr and "0 generated" in stderr and "(recorded before)" in stderr
    after = rows(trained["db"])
    assert [p.id for p in after["preparations"]] == [p.id for p in before["preparations"]]
    assert after["candidates"] == before["candidates"] and folder_state(trained["ckpt"]) == files


def test_changed_weights_at_the_same_path_are_refused(tiny: dict[str, Any], trained: dict[str, Any],
                                                      tmp_path: Path) -> None:
    db_file = tmp_path / "copy.db"
    shutil.copy(tiny["root"] / "store.db", db_file)
    db = f"sqlite:///{db_file}"
    weights = trained["ckpt"] / "pytorch_model.bin"
    original = weights.read_bytes()
    before = rows(db)
    try:
        import torch

        state = torch.load(weights, weights_only=True)
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = state[name] + 1.0  # retrained in place, as far as the store can tell
        torch.save(state, weights)
        code, stdout, stderr = invoke(*run_args(tiny, trained["out"], db, "--prompts", "0..2"))
    finally:
        weights.write_bytes(original)
    assert code == 1 and stdout == ""
    message = stderr.strip().splitlines()[-1]  # one line (after the log line "using the finished checkpoint")
    assert message.startswith("Error: run ") and f"{trained['ckpt']} now holds other weights" in message
    assert "Write the new checkpoint elsewhere" in message
    after = rows(db)  # nothing written: no candidate for prompt 2, no row
    assert after["candidates"] == before["candidates"] and len(after["preparations"]) == 1


def test_the_link_precedes_the_candidates_so_a_cut_run_cannot_resume_on_other_weights(
        tiny: dict[str, Any], trained: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.runner

    db = f"sqlite:///{tmp_path / 'cut.db'}"

    def killed(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("killed")  # the run dies before its first candidate

    with monkeypatch.context() as patched:
        patched.setattr(harness.runner, "run", killed)
        with pytest.raises(RuntimeError, match="killed"):
            invoke(*run_args(tiny, trained["out"], db))
    stored = rows(db)
    assert stored["runs"] == 1 and stored["candidates"] == 0 and len(stored["preparations"]) == 1
    weights = trained["ckpt"] / "pytorch_model.bin"
    original = weights.read_bytes()
    try:
        import torch

        state = torch.load(weights, weights_only=True)
        name = next(k for k, v in state.items() if v.is_floating_point())
        state[name] = state[name] - 1.0
        torch.save(state, weights)
        code, _, stderr = invoke(*run_args(tiny, trained["out"], db))  # resuming the cut run: refused
    finally:
        weights.write_bytes(original)
    assert code == 1 and "now holds other weights" in stderr
    assert rows(db)["candidates"] == 0


def test_curve_reads_the_strategy_and_its_settings_from_the_run(tiny: dict[str, Any], trained: dict[str, Any]) -> None:
    base = ["curve", "--run", trained["run_id"], "--db", trained["db"], "--n", "1..2", "--bootstrap", "100",
            "--json", *tiny["flags"]]
    code, stdout, stderr = invoke(*base, "--strategy", "dpo")  # no --strategy-param: the recorded ones
    assert code == 0, stderr
    data = json.loads(stdout)
    assert list(data) == ["dpo", "random", "oracle"]
    assert data["dpo"] == data["random"]  # verifier unset: the generator alone, every candidate ties
    assert f"generator checkpoint {trained['ckpt']}" in stderr and "prepared by strategy dpo" in stderr
    engine = open_store(trained["db"], upgrade_schema=False)
    with Session(engine) as s:
        recorded = s.scalars(select(Result).where(Result.strategy == "dpo")).all()
        assert {r.verifier for r in recorded} == {"none"} and len(recorded) == 2
        assert recorded[0].details["strategy"]["params"]["pairs"] == str(tiny["pairs"])
    engine.dispose()


def test_merge_carries_the_link(trained: dict[str, Any], tmp_path: Path) -> None:
    merged = f"sqlite:///{tmp_path / 'merged.db'}"
    for _ in range(2):  # twice: idempotent
        code, output = stepwise("merge", str(trained["out"].parent / "store.db"), "--db", merged)
        assert code == 0 and "1 preparations" in output, output
    (source,), (copy,) = rows(trained["db"])["preparations"], rows(merged)["preparations"]
    fields = ("run_id", "strategy", "settings_hash", "params", "checkpoint", "checkpoint_sha256", "manifest")
    assert [getattr(copy, f) for f in fields] == [getattr(source, f) for f in fields]


def test_torchrun_uses_a_finished_checkpoint_and_refuses_to_train(tiny: dict[str, Any], trained: dict[str, Any],
                                                                  tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    code, stdout, stderr = invoke(*run_args(tiny, trained["out"], trained["db"]))
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == trained["run_id"] and len(rows(trained["db"])["preparations"]) == 1
    db = f"sqlite:///{tmp_path / 'store.db'}"
    code, _, stderr = invoke(*run_args(tiny, tmp_path / "out", db))
    assert code == 1 and "training under torchrun (WORLD_SIZE > 1) is refused: prepare first in one process" in stderr
    assert not (tmp_path / "out" / "prepare").exists()


def test_refusals_and_bad_settings(tiny: dict[str, Any], tmp_path: Path) -> None:
    out, db = tmp_path / "out", f"sqlite:///{tmp_path / 'store.db'}"
    args = run_args(tiny, out, db)
    base = args[:args.index("--strategy")]
    code, _, stderr = invoke(*base, "--strategy", "best-of-n")
    assert code == 2 and "is a selection rule over a stored pool, applied with `stepwise curve --run RUN_ID " \
                         "--strategy best-of-n`" in stderr and "(dpo, iterative-dpo)" in stderr
    code, _, stderr = invoke(*base, "--strategy", "dpp")
    assert code == 1 and "unknown strategy 'dpp'" in stderr and "did you mean 'dpo'" in stderr
    code, _, stderr = invoke(*base, "--strategy", "dpo", "--strategy-param", "beta=high")
    assert code == 1 and "missing required parameter 'pairs'" in stderr and "'beta': expected a number" in stderr
    code, _, stderr = invoke(*base, "--strategy-param", "pairs=x")
    assert code == 2 and "needs --strategy" in stderr
    missing = tmp_path / "nowhere.jsonl"
    code, _, stderr = invoke(*run_args(tiny, out, db, pairs=missing))
    message = stderr.strip().splitlines()[-1]
    assert code == 1 and message.startswith("Error: strategy 'dpo'") and f"{missing}: no such pairs file" in message
    code, _, stderr = invoke(*base, "--strategy", "dpo", "--strategy-param", f"pairs={tiny['pairs']}",
                             "--strategy-param", "reward_coef=0.5")
    assert code == 1 and "reward_coef apply only with reward_verifier set" in stderr
    assert not out.exists() or not any((out / "prepare").glob("*/*.bin"))
    engine = open_store(db)
    with Session(engine) as s:  # nothing reached the store
        assert s.scalar(select(func.count()).select_from(Run)) == 0
    engine.dispose()


def test_selection_follows_the_verifier_param() -> None:
    for name, required in (("dpo", {"pairs": "d.jsonl"}), ("iterative-dpo", {"train_suite": "t.jsonl"})):
        cls = registry.strategies.get(name)
        alone = cls(parse_params(cls.Params, required))
        orm = cls(parse_params(cls.Params, {**required, "verifier": "orm"}))
        scores = {"orm": [VerifierScore(0.7), VerifierScore(0.1)]}
        assert alone.verifiers == () and alone.select_key(scores) == []  # ties: the `baseline` rule
        assert orm.verifiers == ("orm",) and orm.select_key(scores) == [0.7, 0.1]  # the `best-of-n` rule
        parm = cls(parse_params(cls.Params, {**required, "verifier": "parm"}))
        details = [{"survivor": False, "no_prob": 0.9}, {"survivor": False, "no_prob": 0.2}]
        assert parm.select_key({"parm": [VerifierScore(5.0, details=d) for d in details]}) == [-0.9, -0.2]  # PARM's
        assert cls.description == registry.strategies.info(name).description


def test_settings_that_differ_in_selection_share_the_checkpoint_and_the_run(tiny: dict[str, Any],
                                                                            trained: dict[str, Any],
                                                                            tmp_path: Path) -> None:
    db_file = tmp_path / "copy.db"
    shutil.copy(tiny["root"] / "store.db", db_file)
    db = f"sqlite:///{db_file}"
    files = folder_state(trained["ckpt"])
    code, stdout, stderr = invoke(*run_args(tiny, trained["out"], db, "--strategy-param", "verifier=clipscore"))
    assert code == 0, stderr
    assert stdout.strip().splitlines()[-1] == trained["run_id"] and folder_state(trained["ckpt"]) == files
    links = rows(db)["preparations"]
    assert [(x.checkpoint, x.params["verifier"]) for x in links] == [(str(trained["ckpt"]), None),
                                                                     (str(trained["ckpt"]), "clipscore")]
    base = ["curve", "--run", trained["run_id"], "--db", db, "--n", "1..2", "--bootstrap", "100", "--json",
            *tiny["flags"], "--strategy", "dpo"]
    code, _, stderr = invoke(*base)
    assert code == 2 and "prepared by strategy 'dpo' with 2 settings (they differ in verifier)" in stderr
    code, stdout, stderr = invoke(*base, "--strategy-param", "dpo:verifier=none")
    assert code == 0, stderr
    assert list(json.loads(stdout)) == ["dpo", "random", "oracle"]


def test_iterative_dpo_trains_its_rounds_then_runs_with_the_last(tiny: dict[str, Any], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """One round on a tiny training suite. The tiny detector judges every image "no" (no pairs), so the
    verdicts are scripted as in test_align_iterate.py: even sample indices "yes", odd ones "no"."""
    from helpers import script_verdicts

    script_verdicts(monkeypatch)
    code, output = stepwise("prompts", "train", "--per-task", "1", "-o", str(tmp_path / "prompts"))
    assert code == 0, output
    suite = tmp_path / "prompts" / "evaluation_metadata.jsonl"
    out, db = tmp_path / "out", f"sqlite:///{tmp_path / 'store.db'}"
    args = run_args(tiny, out, db)
    args = [*args[:args.index("--strategy")], "--strategy", "iterative-dpo", "--strategy-param",
            f"train_suite={suite}", "--strategy-param", "rounds=1", "--strategy-param", "train_pool=2",
            "--strategy-param", "batch_size=4", "--strategy-param", "lr=1e-3"]
    code, stdout, stderr = invoke(*args)
    assert code == 0, stderr
    (work,) = (out / "prepare").iterdir()
    ckpt = work / "round-1" / "ckpt"
    state = json.loads((work / "iterate.json").read_text())
    assert work.name.startswith("iterative-dpo-") and len(state["rounds"]) == 1
    (link,) = rows(db)["preparations"]
    run_id = stdout.strip().splitlines()[-1]
    assert (link.strategy, link.checkpoint, link.run_id) == ("iterative-dpo", str(ckpt), run_id)
    assert link.checkpoint_sha256 == checkpoint_sha256(ckpt) and link.manifest["finished"]
    files = folder_state(work)
    code, stdout, stderr = invoke(*args)  # again: the round is done, nothing is trained or added
    assert code == 0, stderr
    assert folder_state(work) == files and len(rows(db)["preparations"]) == 1
