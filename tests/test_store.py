"""The results store on SQLite and PostgreSQL: models, idempotent writes, crashes, pools, URLs."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, create_engine, delete, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harness.pools import read_pool
from harness.scaling import curve
from harness.store import (
    Candidate,
    Evaluation,
    NewCandidate,
    NewEvaluation,
    NewPreparation,
    NewPrompt,
    NewScore,
    Preparation,
    PreparationConflict,
    Prompt,
    Result,
    Run,
    RunSpec,
    StoreError,
    Suite,
    VerifierScore,
    add_candidates,
    add_evaluations,
    add_preparation,
    add_prompts,
    add_result,
    add_verifier_scores,
    get_or_create_run,
    get_or_create_suite,
    make_engine,
    missing_evaluations,
    missing_scores,
    open_store,
    pool_arrays,
    run_preparations,
    stored_samples,
)
from harness.store.engine import SQLITE_BUSY_TIMEOUT_MS

pytest_plugins = ["postgres"]

SUITE_HASH = "a" * 64
EVAL = ("hf", "e" * 64)  # backend, settings hash


def sha(i: int) -> str:
    return f"{i:064x}"


def spec(seed: int = 7, **params: Any) -> RunSpec:
    return RunSpec(suite_name="geneval", suite_hash=SUITE_HASH, generator="toy", generator_package="stepwise-toy",
                   generator_version="1.0", params=params or {"steps": 4, "guidance": 7.5}, seed=seed)


def count(s: Session, model: type[Any]) -> int:
    return int(s.scalar(select(func.count()).select_from(model)) or 0)


def make_suite(engine: Engine, tags: list[str]) -> tuple[list[int], str]:
    """A committed suite with one prompt per tag and a run; returns (prompt ids, run id)."""
    with Session(engine) as s, s.begin():
        suite = get_or_create_suite(s, "geneval", SUITE_HASH)
        prompts = [NewPrompt(i, tag, f"a photo of thing {i}", {"tag": tag, "include": [{"class": "cat", "count": 1}]})
                   for i, tag in enumerate(tags)]
        ids = add_prompts(s, suite.id, prompts)
        run_id = get_or_create_run(s, spec(), code_version="test").id
    return ids, run_id


def candidates(n: int, prompt: int = 0, start: int = 0) -> list[NewCandidate]:
    return [NewCandidate(j, f"images/{sha(1000 * prompt + j)}.png", sha(1000 * prompt + j),
                         step_previews=[f"steps/{prompt}-{j}-{k}.png" for k in range(2)],
                         cost={"forward_passes": 20, "tokens": 0, "seconds": 0.5}, seed=1000 * prompt + j)
            for j in range(start, start + n)]


# ---------------------------------------------------------------------------------------------
# round trip


def test_every_model_round_trips(store: Engine) -> None:
    before = datetime.now(UTC)
    metadata = {"tag": "colors", "include": [{"class": "dog", "count": 1, "color": "pink"}], "prompt": "ünïcode ✓"}
    with Session(store) as s, s.begin():
        suite = get_or_create_suite(s, "geneval", SUITE_HASH)
        (prompt_id,) = add_prompts(s, suite.id, [NewPrompt(3, "colors", "a photo of a pink dog", metadata)])
        run = get_or_create_run(s, spec(seed=2**40), code_version="0.1.0+g1234")
        run_id = run.id
        ids = add_candidates(s, run_id, prompt_id, candidates(1, prompt=3))
        cid = ids[0]
        add_evaluations(s, *EVAL, [NewEvaluation(cid, False, "expected pink dog, got red dog",
                                                 details={"clauses": [True, False]},
                                                 detections={"dog": [{"box": [1.5, 2, 30, 40], "score": 0.93}]})])
        add_verifier_scores(s, "parm", "v" * 64, [NewScore(cid, -1.25, step_scores=[0.1, 0.5, -1.25],
                                                           cost={"forward_passes": 3, "seconds": 0.02})])
        add_result(s, run_id, strategy="best_of_n", verifier="parm", n=4,
                   scores={"single_object": 0.9, "colors": 0.5, "counting": 0.25}, overall=0.55, low=0.5,
                   high=0.6, evaluator="hf", evaluator_settings_hash=EVAL[1], verifier_settings_hash="v" * 64,
                   details={"n_boot": 2000, "seed": 0})

    with Session(store) as s:
        suite = s.scalars(select(Suite)).one()
        assert (suite.name, suite.hash) == ("geneval", SUITE_HASH)
        prompt = s.scalars(select(Prompt)).one()
        assert (prompt.suite_id, prompt.index, prompt.tag, prompt.text) == (suite.id, 3, "colors",
                                                                          "a photo of a pink dog")
        assert prompt.meta == metadata and prompt.suite is suite and suite.prompts == [prompt]
        run = s.scalars(select(Run)).one()
        assert run.id == spec(seed=2**40).run_id and len(run.id) == 64
        assert (run.generator, run.generator_package, run.generator_version) == ("toy", "stepwise-toy", "1.0")
        assert run.params == {"steps": 4, "guidance": 7.5} and run.seed == 2**40
        assert run.code_version == "0.1.0+g1234" and run.spec == spec(seed=2**40).canonical()
        cand = s.scalars(select(Candidate)).one()
        assert (cand.run_id, cand.prompt_id, cand.sample_index) == (run.id, prompt.id, 0)
        assert (cand.image_path, cand.image_sha256, cand.seed) == (f"images/{sha(3000)}.png", sha(3000), 3000)
        assert cand.step_previews == ["steps/3-0-0.png", "steps/3-0-1.png"]
        assert cand.cost == {"forward_passes": 20, "tokens": 0, "seconds": 0.5}
        assert cand.prompt is prompt and cand.run is run
        ev = s.scalars(select(Evaluation)).one()
        assert (ev.candidate_id, ev.backend, ev.settings_hash, ev.correct) == (cand.id, *EVAL, False)
        assert ev.reason == "expected pink dog, got red dog" and ev.details == {"clauses": [True, False]}
        assert ev.detections == {"dog": [{"box": [1.5, 2, 30, 40], "score": 0.93}]}
        vs = s.scalars(select(VerifierScore)).one()
        assert (vs.candidate_id, vs.verifier, vs.settings_hash, vs.score) == (cand.id, "parm", "v" * 64, -1.25)
        assert vs.step_scores == [0.1, 0.5, -1.25] and vs.cost == {"forward_passes": 3, "seconds": 0.02}
        res = s.scalars(select(Result)).one()
        assert (res.run_id, res.strategy, res.verifier, res.n) == (run.id, "best_of_n", "parm", 4)
        assert list(res.scores) == ["single_object", "colors", "counting"]  # task order kept
        assert (res.overall, res.low, res.high) == (0.55, 0.5, 0.6)
        assert (res.evaluator, res.evaluator_settings_hash, res.verifier_settings_hash) == ("hf", EVAL[1], "v" * 64)
        assert res.details == {"n_boot": 2000, "seed": 0}
        for row in (suite, run, cand, ev, vs, res):
            assert row.created_at.tzinfo is not None and row.created_at.utcoffset().total_seconds() == 0
            assert before.replace(microsecond=0) <= row.created_at <= datetime.now(UTC)


def test_naive_datetimes_and_nan_are_refused(store: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), Session(store) as s, s.begin():
        s.add(Suite(name="x", hash="y", created_at=datetime(2024, 1, 1)))
    with pytest.raises(ValueError, match="not a finite number"), Session(store) as s, s.begin():
        add_verifier_scores(s, "clip", "h", [NewScore(1, float("nan"))])
    ids, run_id = make_suite(store, ["colors"])
    with pytest.raises(Exception, match=r"NaN|nan|not JSON compliant"), Session(store) as s, s.begin():
        add_candidates(s, run_id, ids[0], [NewCandidate(0, "a.png", sha(0), cost={"seconds": float("nan")})])


# ---------------------------------------------------------------------------------------------
# idempotence


def test_reinserting_adds_nothing(store: Engine) -> None:
    def write_all() -> tuple[int, ...]:
        with Session(store) as s, s.begin():
            suite = get_or_create_suite(s, "geneval", SUITE_HASH)
            pids = add_prompts(s, suite.id, [NewPrompt(i, "counting", f"p{i}") for i in range(3)])
            run = get_or_create_run(s, spec(), code_version="v1")
            ids = add_candidates(s, run.id, pids[1], candidates(4, prompt=1))
            new_evals = add_evaluations(s, *EVAL, [NewEvaluation(c, c % 2 == 0) for c in ids.values()])
            new_scores = add_verifier_scores(s, "clip", "c" * 64, [NewScore(c, c / 10) for c in ids.values()])
            return suite.id, *pids, run.id, *ids.values(), new_evals, new_scores

    first = write_all()
    again = write_all()
    assert first[:-2] == again[:-2]  # the same ids
    assert first[-2:] == (4, 4) and again[-2:] == (0, 0)
    with Session(store) as s:
        assert [count(s, m) for m in (Suite, Prompt, Run, Candidate, Evaluation, VerifierScore)] == [1, 3, 1, 4, 4, 4]
    # A later call with another code_version or image keeps the stored rows: the first write wins.
    with Session(store) as s, s.begin():
        run = get_or_create_run(s, spec(), code_version="v2")
        assert run.code_version == "v1"
        ids = add_candidates(s, run.id, first[2], [NewCandidate(0, "other.png", sha(99)), *candidates(2, 1, 4)])
        assert sorted(ids) == [0, 4, 5]
        assert s.get(Candidate, ids[0]).image_path == f"images/{sha(1000)}.png"
        assert stored_samples(s, run.id) == {first[2]: {0, 1, 2, 3, 4, 5}}


def test_changed_prompt_under_the_same_suite_hash_is_an_error(store: Engine) -> None:
    make_suite(store, ["colors", "counting"])
    with pytest.raises(ValueError, match="needs a new suite hash"), Session(store) as s, s.begin():
        suite = get_or_create_suite(s, "geneval", SUITE_HASH)
        add_prompts(s, suite.id, [NewPrompt(1, "counting", "a different text")])


def test_bad_inputs_give_clear_errors(store: Engine) -> None:
    ids, run_id = make_suite(store, ["colors"])
    with Session(store) as s, s.begin():
        other = get_or_create_suite(s, "other", "b" * 64)
        (foreign,) = add_prompts(s, other.id, [NewPrompt(0, "colors", "x")])
    cases: list[tuple[Any, str]] = [
        (lambda s: add_candidates(s, run_id, ids[0], [NewCandidate(0, "a.png", "XYZ")]), "64 lowercase hex"),
        (lambda s: add_candidates(s, run_id, ids[0], candidates(1) + candidates(1)), "repeat"),
        (lambda s: add_candidates(s, run_id, foreign, candidates(1)), "not in the suite of run"),
        (lambda s: add_candidates(s, "nope", ids[0], candidates(1)), "no run"),
        (lambda s: add_candidates(s, run_id, 10**6, candidates(1)), "no prompt"),
        (lambda s: get_or_create_run(s, replace(spec(), suite_hash="c" * 64), "v"),
         "not in the store"),
        (lambda s: add_prompts(s, 1, [NewPrompt(0, "a", "b"), NewPrompt(0, "a", "b")]), "repeat"),
        (lambda s: pool_arrays(s, "nope", *EVAL, {}), "no run"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message), Session(store) as s, s.begin():
            call(s)


# ---------------------------------------------------------------------------------------------
# crashes


def test_exception_inside_the_transaction_leaves_no_partial_rows(store: Engine) -> None:
    with Session(store) as s, s.begin():
        suite_id = get_or_create_suite(s, "geneval", SUITE_HASH).id
    with pytest.raises(RuntimeError, match="crash"), Session(store) as s, s.begin():
        add_prompts(s, suite_id, [NewPrompt(i, "colors", f"p{i}") for i in range(5)])
        s.flush()
        raise RuntimeError("crash after the prompts were sent")
    with Session(store) as s:
        assert count(s, Prompt) == 0 and count(s, Suite) == 1


def _write_then_die(url: str, suite_id: int) -> None:
    engine = make_engine(url)
    with Session(engine) as s, s.begin():
        add_prompts(s, suite_id, [NewPrompt(i, "colors", f"p{i}") for i in range(5)])
        s.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # kill -9 while the transaction is open


def test_killed_writer_leaves_no_partial_rows_and_no_lock(store: Engine, store_url: str) -> None:
    with Session(store) as s, s.begin():
        suite_id = get_or_create_suite(s, "geneval", SUITE_HASH).id
    ctx = multiprocessing.get_context("forkserver")  # a clean process: no threads or connections inherited
    ctx.set_forkserver_preload(["test_store"])
    proc = ctx.Process(target=_write_then_die, args=(store_url, suite_id))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    with Session(store) as s, s.begin():
        assert count(s, Prompt) == 0
        assert len(add_prompts(s, suite_id, [NewPrompt(0, "colors", "p0")])) == 1  # nothing left locked


# ---------------------------------------------------------------------------------------------
# foreign keys and SQLite settings


def test_foreign_keys_and_cascades(store: Engine) -> None:
    ids, run_id = make_suite(store, ["colors", "counting"])
    with Session(store) as s, s.begin():
        cids = add_candidates(s, run_id, ids[0], candidates(3))
        add_evaluations(s, *EVAL, [NewEvaluation(c, True) for c in cids.values()])
        add_verifier_scores(s, "clip", "h", [NewScore(c, 0.5) for c in cids.values()])
        add_result(s, run_id, strategy="best_of_n", verifier="clip", n=1, scores={"colors": 1.0}, overall=1.0,
                   low=1.0, high=1.0, evaluator="hf", evaluator_settings_hash=EVAL[1])
    # An evaluation of a candidate that does not exist is refused by the database.
    with pytest.raises(IntegrityError), Session(store) as s, s.begin():
        s.add(Evaluation(candidate_id=10**6, backend="hf", settings_hash="x", correct=True, reason="", details={}))
    # A suite or prompt that a run uses cannot be deleted (RESTRICT) ...
    for stmt in (delete(Suite), delete(Prompt).where(Prompt.id == ids[0])):
        with pytest.raises(IntegrityError), Session(store) as s, s.begin():
            s.execute(stmt)
    # ... and deleting the run takes its candidates, verdicts, scores and results with it (CASCADE).
    with Session(store) as s, s.begin():
        s.execute(delete(Run))
    with Session(store) as s, s.begin():
        assert [count(s, m) for m in (Candidate, Evaluation, VerifierScore, Result)] == [0, 0, 0, 0]
        s.execute(delete(Suite))
    with Session(store) as s:
        assert count(s, Prompt) == 0


def test_preparations_are_idempotent_refuse_other_weights_and_cascade(store: Engine) -> None:
    """The link from a run to the checkpoint a strategy trained (`harness.preparation`)."""
    _, run_id = make_suite(store, ["colors"])
    manifest = {"format": "stepwise-alignment", "data": {"sha256": sha(9)}, "steps": (1, 2)}
    first = NewPreparation("dpo", sha(1), {"pairs": "data/dpo.jsonl", "verifier": None}, "ckpt", sha(2), manifest)
    with Session(store) as s, s.begin():
        assert add_preparation(s, run_id, first) is True
        assert add_preparation(s, run_id, first) is False  # the same link again adds nothing
        # other settings that share the checkpoint (a selection-only parameter) add a row
        assert add_preparation(s, run_id, replace(first, settings_hash=sha(3), params={"verifier": "orm"})) is True
    with Session(store) as s:
        rows = run_preparations(s, run_id)
        assert [(r.strategy, r.settings_hash, r.checkpoint, r.checkpoint_sha256) for r in rows] == [
            ("dpo", sha(1), "ckpt", sha(2)), ("dpo", sha(3), "ckpt", sha(2))]
        assert rows[0].manifest == {"format": "stepwise-alignment", "data": {"sha256": sha(9)}, "steps": [1, 2]}
        assert rows[0].params == {"pairs": "data/dpo.jsonl", "verifier": None} and rows[0].run.id == run_id
    # other weights at the same path: refused, nothing written
    with pytest.raises(PreparationConflict, match=r"ckpt now holds other weights .* Write the new checkpoint"):
        with Session(store) as s, s.begin():
            add_preparation(s, run_id, replace(first, settings_hash=sha(4), checkpoint_sha256=sha(5)))
    for bad, message in ((replace(first, checkpoint_sha256="x"), "checkpoint_sha256 must be 64"),
                         (replace(first, manifest={"loss": float("nan")}), "manifest is not JSON-able")):
        with pytest.raises(ValueError, match=message), Session(store) as s, s.begin():
            add_preparation(s, run_id, bad)
    with pytest.raises(ValueError, match="no run"), Session(store) as s, s.begin():
        add_preparation(s, "f" * 64, first)
    with Session(store) as s, s.begin():
        assert count(s, Preparation) == 2
        s.execute(delete(Run))  # deleting the run deletes its preparations (CASCADE)
    with Session(store) as s:
        assert count(s, Preparation) == 0


def test_sqlite_pragmas_are_on_for_the_store_engine_only(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = open_store(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == SQLITE_BUSY_TIMEOUT_MS
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    with pytest.raises(IntegrityError, match="FOREIGN KEY"), Session(engine) as s, s.begin():
        s.add(Prompt(suite_id=42, index=0, tag="t", text="x", meta={}))
    # The listener belongs to that engine, not to every SQLite engine of the process.
    plain = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with plain.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
    plain.dispose()
    engine.dispose()


def test_default_url_comes_from_the_environment(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STEPWISE_DB", raising=False)
    engine = make_engine()
    assert engine.url.database == "stepwise.db"
    engine.dispose()
    assert (tmp_path / "stepwise.db").exists()
    monkeypatch.setenv("STEPWISE_DB", f"sqlite:///{tmp_path / 'env.db'}")
    engine = make_engine(None)
    assert engine.url.database == str(tmp_path / "env.db")
    engine.dispose()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_bad_urls_give_clear_errors(tmp_path: Any) -> None:
    with pytest.raises(StoreError, match="malformed database URL 'not a url'"):
        make_engine("not a url")
    with pytest.raises(StoreError, match=r"malformed database URL 'postgresql://u:\*\*\*@h:port/db'") as err:
        make_engine("postgresql://u:hunter2@h:port/db")
    assert "hunter2" not in str(err.value)
    with pytest.raises(StoreError, match=r"unknown database kind 'postgres'.*start with postgresql://"):
        make_engine("postgres://u@localhost/db")
    port = _closed_port()
    with pytest.raises(StoreError, match=rf"cannot open database postgresql://bench:\*\*\*@127.0.0.1:{port}/runs"
                       ) as err:
        make_engine(f"postgresql://bench:hunter2@127.0.0.1:{port}/runs")
    assert "hunter2" not in str(err.value)
    with pytest.raises(StoreError, match=r"cannot open database sqlite:///.*does not exist"):
        make_engine(f"sqlite:///{tmp_path / 'missing-folder' / 'store.db'}")


def test_wrong_password_is_masked(postgres_url: str) -> None:
    from sqlalchemy import make_url

    url = make_url(postgres_url)
    engine = make_engine(postgres_url)
    with engine.begin() as conn:  # a role that needs a password (trust still lets it in locally)
        conn.execute(text("CREATE ROLE stepwise_pw LOGIN PASSWORD 'right'"))
    engine.dispose()
    wrong = url.set(username="stepwise_pw", password="hunter2", database="no_such_db")
    with pytest.raises(StoreError, match=r"stepwise_pw:\*\*\*@.*no_such_db") as err:
        make_engine(wrong.render_as_string(hide_password=False))
    assert "hunter2" not in str(err.value)
    engine = make_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text("DROP ROLE stepwise_pw"))
    engine.dispose()


# ---------------------------------------------------------------------------------------------
# pools


def _ragged_store(engine: Engine) -> tuple[str, list[int], dict[tuple[int, int], int]]:
    """Prompts 0..3 with 4, 2, 3 and 0 candidates; verdicts and two verifiers' scores for all."""
    ids, run_id = make_suite(engine, ["colors", "counting", "colors", "position"])
    cand: dict[tuple[int, int], int] = {}
    with Session(engine) as s, s.begin():
        for p, size in enumerate([4, 2, 3, 0]):
            for j, cid in add_candidates(s, run_id, ids[p], candidates(size, prompt=p)).items():
                cand[p, j] = cid
        add_evaluations(s, *EVAL, [NewEvaluation(c, (p + j) % 2 == 0) for (p, j), c in cand.items()])
        add_verifier_scores(s, "clip", "c" * 64, [NewScore(c, p + j / 10) for (p, j), c in cand.items()])
        add_verifier_scores(s, "orm", "o" * 64, [NewScore(c, -j) for (p, j), c in cand.items()])
    return run_id, ids, cand


def test_pool_arrays_on_a_ragged_pool(store: Engine) -> None:
    run_id, _ids, cand = _ragged_store(store)
    verifiers = {"clip": "c" * 64, "orm": "o" * 64}
    with Session(store) as s:
        pool = pool_arrays(s, run_id, *EVAL, verifiers)
    assert pool.prompt_ids == ["00000", "00001", "00002"]  # prompt 3 has no candidates yet
    assert pool.tags == ["colors", "counting", "colors"]
    assert pool.valid.tolist() == [[True] * 4, [True, True, False, False], [True, True, True, False]]
    assert pool.sizes.tolist() == [4, 2, 3]
    assert pool.correct.tolist() == [[True, False, True, False], [False, True, False, False],
                                     [True, False, True, False]]
    assert np.allclose(pool.scores["clip"], [[0, 0.1, 0.2, 0.3], [1, 1.1, 0, 0], [2, 2.1, 2.2, 0]])
    assert np.array_equal(pool.scores["orm"], [[0, -1, -2, -3], [0, -1, 0, 0], [0, -1, -2, 0]])

    # The same pool written as JSON lines reads back identically through harness.pools.
    lines = [json.dumps({"prompt_id": f"{p:05d}", "tag": ["colors", "counting", "colors"][p],
                         "correct": (p + j) % 2 == 0, "scores": {"clip": p + j / 10, "orm": -j}})
             for (p, j) in cand]
    jsonl = read_pool(lines, "pool.jsonl")
    assert jsonl.prompt_ids == pool.prompt_ids and jsonl.tags == pool.tags
    for name in ("correct", "valid"):
        assert np.array_equal(getattr(jsonl, name), getattr(pool, name))
    for name in verifiers:
        assert np.allclose(jsonl.scores[name], pool.scores[name])
    assert curve(pool.scores["clip"], pool.correct, [1, 2], valid=pool.valid).shape == (2, 3)

    with Session(store) as s:
        small = pool_arrays(s, run_id, *EVAL, verifiers, max_samples=2)
        assert small.valid.shape == (3, 2) and small.valid.all()
        assert pool_arrays(s, run_id, *EVAL, {}).scores == {}


def test_pool_arrays_with_missing_verdicts_or_scores(store: Engine) -> None:
    run_id, ids, cand = _ragged_store(store)
    with Session(store) as s, s.begin():
        extra = add_candidates(s, run_id, ids[1], candidates(1, prompt=1, start=2))[2]  # no verdict, no scores
        add_evaluations(s, *EVAL, [NewEvaluation(extra, True)])
        add_verifier_scores(s, "clip", "c" * 64, [NewScore(extra, 9.0)])  # but no "orm" score
        s.execute(delete(Evaluation).where(Evaluation.candidate_id == cand[0, 1]))
    verifiers = {"clip": "c" * 64, "orm": "o" * 64}
    with Session(store) as s:
        with pytest.raises(ValueError, match=r"1 candidate\(s\) have no verdict by hf .* prompt 00000 sample 1"):
            pool_arrays(s, run_id, *EVAL, verifiers)
        with pytest.raises(ValueError, match=r"no score by orm .* prompt 00001 sample 2"):
            pool_arrays(s, run_id, *EVAL, verifiers)
        pool = pool_arrays(s, run_id, *EVAL, verifiers, require_complete=False)
        # prompt 0 lost sample 1 (packed left); prompt 1 keeps 2 of its 3
        assert pool.valid.tolist() == [[True, True, True], [True, True, False], [True, True, True]]
        assert np.allclose(pool.scores["clip"][0], [0, 0.2, 0.3])
        assert pool_arrays(s, run_id, *EVAL, {"clip": "c" * 64}, require_complete=False).sizes.tolist() == [3, 3, 3]
        assert [c.id for c in missing_evaluations(s, run_id, *EVAL)] == [cand[0, 1]]
        assert [c.id for c in missing_scores(s, run_id, "orm", "o" * 64)] == [extra]
        todo = missing_scores(s, run_id, "new-verifier", "n" * 64)
        assert [(c.prompt.index, c.sample_index) for c in todo] == sorted([*cand, (1, 2)])
        assert todo[0].prompt.meta["tag"] == "colors"  # the prompt comes loaded, with its metadata
        assert len(missing_scores(s, run_id, "new-verifier", "n" * 64, max_samples=1)) == 3
        with pytest.raises(ValueError, match="no candidate has a verdict"):
            pool_arrays(s, run_id, "mmdet", "m" * 64, {}, require_complete=False)


# ---------------------------------------------------------------------------------------------
# run ids


def test_run_id_hashes_the_canonical_spec() -> None:
    a = spec(steps=4, guidance=7.5)
    b = replace(a, params={"guidance": 7.5, "steps": 4})  # key order does not matter
    assert a.run_id == b.run_id
    assert spec(seed=8).run_id != spec(seed=7).run_id
    assert spec(steps=5, guidance=7.5).run_id != a.run_id
    assert replace(a, generator_version="1.1").run_id != a.run_id
