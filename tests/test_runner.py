"""`stepwise run` / `stepwise merge` end to end: a shapes generator, a scripted verifier, tiny GenEval models."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import runner_plugins
from helpers import stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness import registry
from harness.geneval.evaluator import EvaluatorSpec
from harness.geneval.rules import EvalOptions
from harness.runner import candidate_seed
from harness.store import Candidate, Evaluation, VerifierScore, open_store, pool_arrays
from harness.store.data import count_rows

pytest_plugins = ["postgres"]

PROMPTS = "0,80..84"  # one single-object prompt, then one of every other task (per_task 1)
N_PROMPTS = 6


@pytest.fixture(scope="module")
def model_flags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return runner_plugins.tiny_model_flags(tmp_path_factory)


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    runner_plugins.register_isolated(monkeypatch)
    yield
    runner_plugins.FAIL_ON.clear()


def run_args(flags: list[str], db: str | None, out: Path, *extra: str, pool: int = 3) -> list[str]:
    return ["run", "--generator", "shapes", "--per-task", "1", "--prompts", PROMPTS, "--pool", str(pool),
            "--verifier", "scripted", *(["--db", db] if db else []), "--out", str(out), *flags, *extra]


def do_run(flags: list[str], db: str, out: Path, *extra: str, pool: int = 3) -> str:
    code, output = stepwise(*run_args(flags, db, out, *extra, pool=pool))
    assert code == 0, output
    return output.strip().splitlines()[-1]  # the run id


def counts(db: str) -> tuple[int, int, int]:
    engine = open_store(db)
    try:
        with Session(engine) as s:
            return count_rows(s, Candidate), count_rows(s, Evaluation), count_rows(s, VerifierScore)
    finally:
        engine.dispose()


def hashes(db: str) -> dict[tuple[int, int], str]:
    """{(prompt index, sample index): image sha256}."""
    engine = open_store(db)
    try:
        with Session(engine) as s:
            rows = s.execute(select(Candidate)).scalars()
            return {(c.prompt.index, c.sample_index): c.image_sha256 for c in rows}
    finally:
        engine.dispose()


def score_details(db: str) -> dict[tuple[int, int, str], dict]:
    """{(prompt index, sample index, verifier): the details stored with the score}."""
    from harness.store import VerifierScore

    engine = open_store(db)
    try:
        with Session(engine) as s:
            rows = s.execute(select(VerifierScore)).scalars()
            return {(x.candidate.prompt.index, x.candidate.sample_index, x.verifier): x.details for x in rows}
    finally:
        engine.dispose()


def evaluator_key(flags: list[str]) -> str:
    get = dict(zip(flags[::2], flags[1::2], strict=True))
    spec = EvaluatorSpec(backend="hf", detector=get["--detector"], clip_arch=get["--clip-arch"],
                         clip_weights=get["--clip-weights"], options=EvalOptions(threshold=0.05))
    return spec.key()


def pool_of(db: str, run_id: str, flags: list[str], verifiers: tuple[str, ...] = ("scripted",)) -> object:
    from harness.runner import needs_verdicts, settings_hash

    engine = open_store(db)
    try:
        keys = {}
        for name in verifiers:
            cls = registry.verifiers.get(name)
            evaluator = evaluator_key(flags) if needs_verdicts(cls) else None  # the oracle's scores follow it
            keys[name] = settings_hash(registry.verifiers.info(name).provenance(), cls.Params(), evaluator)
        with Session(engine) as s:
            return pool_arrays(s, run_id, "hf", evaluator_key(flags), keys)
    finally:
        engine.dispose()


def same_pool(a: object, b: object) -> None:
    assert a.prompt_ids == b.prompt_ids and a.tags == b.tags  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a.correct, b.correct)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(a.valid, b.valid)  # type: ignore[attr-defined]
    for name in a.scores:  # type: ignore[attr-defined]
        np.testing.assert_array_equal(a.scores[name], b.scores[name])  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------


def test_candidate_seeds_are_stable_and_distinct() -> None:
    assert candidate_seed(0, 3, 1) == candidate_seed(0, 3, 1)
    seeds = {candidate_seed(s, p, i) for s in range(2) for p in range(20) for i in range(20)}
    assert len(seeds) == 800 and all(0 <= x < 2**63 for x in seeds)


def test_run_stores_everything_and_rerun_is_a_no_op(model_flags: list[str], tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    run_id = do_run(model_flags, db, out)
    assert counts(db) == (N_PROMPTS * 3,) * 3
    stored = hashes(db)
    for (_, _), sha in stored.items():
        assert (out / "images" / f"{sha}.png").is_file()  # content-addressed
    engine = open_store(db)
    with Session(engine) as s:
        cand = s.scalars(select(Candidate)).first()
        assert cand is not None and len(cand.step_previews) == 2  # the verifier needs previews
        assert all((out / p).is_file() and p.startswith("images/") for p in cand.step_previews)  # relative
        assert cand.image_path == f"images/{cand.image_sha256}.png"
        assert cand.seed == candidate_seed(0, cand.prompt.index, cand.sample_index)
        score = s.scalars(select(VerifierScore)).first()
        assert score is not None and len(score.step_scores) == 2
    engine.dispose()
    pool = pool_of(db, run_id, model_flags)
    assert pool.correct.shape == (N_PROMPTS, 3)  # type: ignore[attr-defined]

    runner_plugins.CALLS.update(generate=0, score=0)
    assert do_run(model_flags, db, out) == run_id
    assert counts(db) == (N_PROMPTS * 3,) * 3 and hashes(db) == stored
    assert runner_plugins.CALLS == {"generate": 0, "score": 0}


def test_raising_the_pool_adds_only_new_samples(model_flags: list[str], tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    run_id = do_run(model_flags, db, out)
    first = hashes(db)
    assert do_run(model_flags, db, out, pool=5) == run_id  # the pool size is not part of the run
    after = hashes(db)
    assert counts(db) == (N_PROMPTS * 5,) * 3
    assert {k: v for k, v in after.items() if k[1] < 3} == first
    # A fresh pool of 5 in another store is the same: the seeds depend on the sample index only.
    other = f"sqlite:///{tmp_path / 'fresh.db'}"
    do_run(model_flags, other, tmp_path / "out2", pool=5)
    assert hashes(other) == after


def test_adding_a_verifier_only_scores(model_flags: list[str], tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    run_id = do_run(model_flags, db, out)
    runner_plugins.CALLS.update(generate=0, score=0)
    code, output = stepwise(*run_args(model_flags, db, out, "--verifier", "plain"))
    assert code == 0, output
    assert "0 generated, 0 evaluated" in output
    assert runner_plugins.CALLS["generate"] == 0 and runner_plugins.CALLS["score"] == N_PROMPTS
    assert counts(db) == (N_PROMPTS * 3, N_PROMPTS * 3, N_PROMPTS * 3 * 2)
    pool = pool_of(db, run_id, model_flags, ("scripted", "plain"))
    np.testing.assert_array_equal(pool.scores["scripted"], pool.scores["plain"])  # type: ignore[attr-defined]


def test_crash_resume_gives_the_rows_of_an_uninterrupted_run(
    model_flags: list[str], store_url: str, other_store_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    runner_plugins.FAIL_ON.add("a photo of four snowboards")  # a prompt in the middle of the selection
    with pytest.raises(RuntimeError, match="simulated crash"):
        stepwise(*run_args(model_flags, store_url, out))
    done, _, _ = counts(store_url)
    assert 0 < done < N_PROMPTS * 3 and done % 3 == 0  # whole prompts only: one transaction each
    runner_plugins.FAIL_ON.clear()
    run_id = do_run(model_flags, store_url, out)
    reference = do_run(model_flags, other_store_url, tmp_path / "ref")
    assert run_id == reference
    assert counts(store_url) == counts(other_store_url) == (N_PROMPTS * 3,) * 3
    assert hashes(store_url) == hashes(other_store_url)
    same_pool(pool_of(store_url, run_id, model_flags), pool_of(other_store_url, run_id, model_flags))


def test_toml_spec_with_flag_overrides(model_flags: list[str], tmp_path: Path) -> None:
    get = dict(zip(model_flags[::2], model_flags[1::2], strict=True))
    db = f"sqlite:///{tmp_path / 's.db'}"
    spec = tmp_path / "run.toml"
    spec.write_text(f"""
generator = "shapes"
per_task = 1
prompts = [0, 80]
pool = 4
verifiers = ["scripted"]
backend = "hf"
detector = "{get['--detector']}"
clip_arch = "{get['--clip-arch']}"
clip_weights = "{get['--clip-weights']}"
db = "{db}"
out = "{tmp_path / 'out'}"
[params]
size = 48
[verifier_params.scripted]
channel = 0
""")
    code, output = stepwise("run", "--spec", str(spec), "--pool", "2", "--threshold", "0.05")
    assert code == 0, output
    assert counts(db) == (4, 4, 4)  # --pool 2 overrides the spec's 4
    from_flags = do_run(model_flags, db, tmp_path / "out", "--param", "size=48", pool=2)
    assert from_flags == output.strip().splitlines()[-1]  # the same run: params are canonical


def test_clear_errors(model_flags: list[str], tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    code, output = stepwise(*run_args(model_flags, db, out)[:1], "--generator", "shapez", "--pool", "1",
                            "--db", db, *model_flags)
    assert code != 0 and "unknown generator 'shapez'" in output and "shapes" in output
    code, output = stepwise(*run_args(model_flags, db, out, "--param", "size=big"))
    assert code != 0 and "'size'" in output and "integer" in output
    code, output = stepwise(*run_args(model_flags, db, out, "--verifier-param", "scripted:chanel=1"))
    assert code != 0 and "'chanel'" in output
    code, output = stepwise(*run_args(model_flags, "postgresql+psycopg://nobody@127.0.0.1:9/none", out))
    assert code != 0 and "cannot open database" in output
    assert not (tmp_path / "s.db").exists()  # nothing was started


# ---------------------------------------------------------------------------------------------
# torchrun + merge


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_torchrun_two_ranks_then_merge(model_flags: list[str], tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    tests_dir = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests_dir), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    env.pop("STEPWISE_DB", None)  # no --db and no $STEPWISE_DB: each rank writes its own SQLite file
    args = run_args(model_flags, None, out)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()), "--module", "runner_plugins", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "all 2 ranks finished" in proc.stderr  # rank 0 reports after the gloo barrier
    rank_files = sorted(out.glob("stepwise-rank*.db"))
    assert [p.name for p in rank_files] == ["stepwise-rank0.db", "stepwise-rank1.db"]
    per_rank = [{k[0] for k in hashes(f"sqlite:///{p}")} for p in rank_files]
    assert per_rank == [{0, 80, 82, 84}, {81, 83}]  # prompt index % WORLD_SIZE == RANK

    merged = f"sqlite:///{tmp_path / 'merged.db'}"
    for _ in range(2):  # merging twice adds nothing
        code, output = stepwise("merge", *map(str, rank_files), "--db", merged)
        assert code == 0, output
        assert counts(merged) == (N_PROMPTS * 3,) * 3

    single = f"sqlite:///{tmp_path / 'single.db'}"
    run_id = do_run(model_flags, single, tmp_path / "single")
    assert hashes(merged) == hashes(single)
    assert score_details(merged) == score_details(single) != {}  # merge carries the verifiers' details
    same_pool(pool_of(merged, run_id, model_flags), pool_of(single, run_id, model_flags))


# ---------------------------------------------------------------------------------------------
# stepwise curve --run


def test_curve_reads_the_pool_from_the_store(model_flags: list[str], tmp_path: Path) -> None:
    import json

    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    run_id = do_run(model_flags, db, out)
    pool = pool_of(db, run_id, model_flags)
    jsonl = tmp_path / "pool.jsonl"
    with open(jsonl, "w") as fp:
        for p, (pid, tag) in enumerate(zip(pool.prompt_ids, pool.tags, strict=True)):  # type: ignore[attr-defined]
            for c in range(3):
                fp.write(json.dumps({"prompt_id": pid, "tag": tag, "correct": bool(pool.correct[p, c]),  # type: ignore[attr-defined]
                                     "scores": {"scripted": float(pool.scores["scripted"][p, c])}}) + "\n")  # type: ignore[attr-defined]
    code, from_store = stepwise("curve", "--run", run_id, "--db", db, "--verifier", "scripted", *model_flags,
                                "--n", "1..3", "--json")
    assert code == 0, from_store
    code, from_file = stepwise("curve", "--from-jsonl", str(jsonl), "--n", "1..3", "--json")
    assert code == 0 and json.loads(from_store) == json.loads(from_file)
    # curve --run recorded every row it computed in the run's results
    from harness.store import Result

    engine = open_store(db)
    with Session(engine) as s:
        rows = s.scalars(select(Result).where(Result.run_id == run_id)).all()
    engine.dispose()
    computed = json.loads(from_store)
    assert {(r.strategy, r.verifier, r.n) for r in rows} == {
        (strategy, verifier, n) for strategy, verifier in
        [("best-of-n", "scripted"), ("random", "none"), ("oracle", "geneval")] for n in (1, 2, 3)}
    best3 = next(r for r in rows if r.strategy == "best-of-n" and r.n == 3)
    assert best3.overall == pytest.approx(computed["scripted"]["3"]["overall"])
    assert best3.low <= best3.overall <= best3.high
    assert best3.verifier_settings_hash and best3.evaluator == "hf"
    assert set(best3.details["intervals"]) == set(best3.scores)
    code, output = stepwise("curve", "--run", run_id, "--db", db, "--verifier", "plain", *model_flags)
    assert code != 0 and "no score by plain" in output  # a pool with missing scores: a clear error
    code, output = stepwise("curve", "--n", "1..3")
    assert code != 0 and "exactly one of --from-jsonl" in output


def test_curve_from_the_store_knows_costs_and_compares(model_flags: list[str], tmp_path: Path) -> None:
    import json

    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    run_id = do_run(model_flags, db, out)
    pool = pool_of(db, run_id, model_flags)
    # the shapes generator reports 1 forward pass per image and the scripted verifier no seconds:
    # the runner measures both plug-ins' seconds itself
    assert pool.generator_seconds is not None and (pool.generator_seconds[pool.valid] > 0).all()  # type: ignore[attr-defined]
    np.testing.assert_array_equal(pool.generator_forward_passes, pool.valid.astype(float))  # type: ignore[attr-defined]
    assert (pool.verifier_seconds["scripted"][pool.valid] > 0).all()  # type: ignore[attr-defined]
    base = ["curve", "--run", run_id, "--db", db, "--verifier", "scripted", *model_flags, "--n", "1..3",
            "--bootstrap", "200"]
    code, output = stepwise(*base, "--compute-json", str(tmp_path / "c.json"), "--compare", "scripted", "random",
                            "--compare-json", str(tmp_path / "cmp.json"))
    assert code == 0, output
    assert "s/prompt" in output and "scripted vs random" in output
    compute = json.loads((tmp_path / "c.json").read_text())
    per_candidate = float(pool.generator_seconds[pool.valid].mean())  # type: ignore[attr-defined]
    assert compute["generator_seconds_per_candidate"] == pytest.approx(per_candidate)
    assert compute["generator_forward_passes_per_candidate"] == pytest.approx(1.0)
    verifier_per_candidate = float(pool.verifier_seconds["scripted"][pool.valid].mean())  # type: ignore[attr-defined]
    assert compute["seconds_per_prompt"]["scripted"]["3"] == pytest.approx(3 * (per_candidate + verifier_per_candidate))
    assert compute["seconds_per_prompt"]["random"]["3"] == pytest.approx(3 * per_candidate)
    assert list(json.loads((tmp_path / "cmp.json").read_text())["n"]) == ["1", "2", "3"]


# ---------------------------------------------------------------------------------------------
# verifiers that read GenEval's verdicts (the oracle), and score details


@pytest.fixture
def judged(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the images each GenEval call judges (the runner imports judge_batch on every call)."""
    from harness.geneval import evaluator

    sizes: list[int] = []
    real = evaluator.judge_batch

    def counting(models: object, images: list[np.ndarray], *args: object) -> object:
        sizes.append(len(images))
        return real(models, images, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(evaluator, "judge_batch", counting)
    return sizes


def test_oracle_scores_are_the_verdicts(model_flags: list[str], tmp_path: Path, judged: list[int]) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    run_id = do_run(model_flags, db, out, "--verifier", "oracle")
    assert sum(judged) == N_PROMPTS * 3  # every candidate judged once, before it was scored
    assert counts(db) == (N_PROMPTS * 3, N_PROMPTS * 3, N_PROMPTS * 3 * 2)
    pool = pool_of(db, run_id, model_flags, ("scripted", "oracle"))
    np.testing.assert_array_equal(pool.scores["oracle"], pool.correct.astype(float))  # type: ignore[attr-defined]


def test_adding_the_oracle_later_reads_the_stored_verdicts(model_flags: list[str], tmp_path: Path,
                                                           judged: list[int]) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    run_id = do_run(model_flags, db, out)
    assert sum(judged) == N_PROMPTS * 3
    judged.clear()
    runner_plugins.CALLS.update(generate=0, score=0)
    code, output = stepwise(*run_args(model_flags, db, out, "--verifier", "oracle"))
    assert code == 0, output
    assert "0 generated, 0 evaluated" in output and judged == []  # GenEval did not run again
    assert runner_plugins.CALLS == {"generate": 0, "score": 0}
    pool = pool_of(db, run_id, model_flags, ("scripted", "oracle"))
    np.testing.assert_array_equal(pool.scores["oracle"], pool.correct.astype(float))  # type: ignore[attr-defined]

    # A bigger pool: the stored candidates' verdicts come from the store, the new ones' from GenEval.
    assert do_run(model_flags, db, out, "--verifier", "oracle", pool=4) == run_id
    assert sum(judged) == N_PROMPTS  # the new sample of each prompt only
    pool = pool_of(db, run_id, model_flags, ("scripted", "oracle"))
    assert pool.correct.shape == (N_PROMPTS, 4)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(pool.scores["oracle"], pool.correct.astype(float))  # type: ignore[attr-defined]


def test_oracle_scores_follow_the_evaluator_settings(model_flags: list[str], tmp_path: Path) -> None:
    """Other evaluator settings give other verdicts: the oracle's scores under them are new rows,
    not the stored ones (the evaluator's key is part of the oracle's settings hash)."""
    from harness.runner import RunError, verifier_settings_hashes

    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    do_run(model_flags, db, out, "--verifier", "oracle")
    assert counts(db) == (N_PROMPTS * 3, N_PROMPTS * 3, N_PROMPTS * 3 * 2)
    do_run(model_flags, db, out, "--verifier", "oracle", "--threshold", "0.9")  # the last --threshold wins
    assert counts(db) == (N_PROMPTS * 3, N_PROMPTS * 3 * 2, N_PROMPTS * 3 * 3)  # scripted's scores are reused
    with pytest.raises(RunError, match="'oracle' scores by GenEval's verdicts"):
        verifier_settings_hashes(["oracle"], {})  # a caller that cannot name the evaluator finds nothing
    assert verifier_settings_hashes(["random"], {}) == verifier_settings_hashes(["random"], {}, evaluator_key="x")


class DetailedVerifier:
    """Stores what a score was made of; returns `BAD` as details when the prompt asks for it."""

    description = "Scores with details (test double)."
    needs_previews = False
    BAD: object = None

    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params: object) -> None:
        pass

    def score(self, prompt: str, images: list[object], previews: object) -> list[object]:
        from harness.plugins import VerifierScore

        if DetailedVerifier.BAD is not None:
            return [VerifierScore(0.5, details=DetailedVerifier.BAD)] * len(images)  # type: ignore[arg-type]
        return [VerifierScore(0.5, details={"prompt": prompt, "rank": (k, len(images))})
                for k, _ in enumerate(images)]


def test_score_details_are_stored(model_flags: list[str], tmp_path: Path) -> None:
    from harness.tiny.clip import write_tiny_clip

    registry.verifiers.register("detailed", DetailedVerifier, package=runner_plugins.PACKAGE, version="1.0")
    arch, weights = write_tiny_clip(tmp_path / "clipscore")
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    do_run(model_flags, db, out, "--verifier", "detailed", "--verifier", "clipscore",
           "--verifier-param", f"clipscore:arch={arch}", "--verifier-param", f"clipscore:weights={weights}",
           "--verifier-param", "clipscore:device=cpu")
    engine = open_store(db)
    with Session(engine) as s:
        rows = s.scalars(select(VerifierScore).order_by(VerifierScore.id)).all()
        by = {name: [r for r in rows if r.verifier == name] for name in ("scripted", "detailed", "clipscore")}
        assert all(r.details == {"channel": 0, "steps": len(r.step_scores)} for r in by["scripted"])
        first = by["detailed"][0]
        assert first.details == {"prompt": first.candidate.prompt.text, "rank": [0, 3]}
        assert len(by["clipscore"]) == N_PROMPTS * 3
        for r in by["clipscore"]:
            assert r.score == pytest.approx(2.5 * max(r.details["cosine"], 0.0))
            assert r.cost["seconds"] > 0
    engine.dispose()


def test_details_that_are_not_json_stop_the_run_and_store_nothing(model_flags: list[str], tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    registry.verifiers.register("detailed", DetailedVerifier, package=runner_plugins.PACKAGE, version="1.0")
    monkeypatch.setattr(DetailedVerifier, "BAD", {"tensor": object()})
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    code, output = stepwise(*run_args(model_flags, db, out, "--verifier", "detailed"))
    assert code != 0
    assert "verifier 'detailed' gave image" in output and "not JSON-able" in output
    assert counts(db) == (0, 0, 0)  # the first prompt's transaction never began
