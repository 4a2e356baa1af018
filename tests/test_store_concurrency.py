"""Four writer processes on one store, as torchrun ranks would be: nothing lost, nothing doubled."""

from __future__ import annotations

import multiprocessing
import queue
import traceback
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harness.store import (
    SCHEMA_VERSION,
    Candidate,
    Evaluation,
    NewCandidate,
    NewEvaluation,
    NewPrompt,
    Prompt,
    Run,
    RunSpec,
    Suite,
    add_candidates,
    add_evaluations,
    add_prompts,
    get_or_create_run,
    get_or_create_suite,
    open_store,
)
from harness.store.migrations import check_version

pytest_plugins = ["postgres"]

WORKERS = 4
PROMPTS = 12
SAMPLES = 4
SHARED = range(6)  # prompts every worker writes; prompts 6..11 belong to one worker each (p % 4)
SPEC = RunSpec(suite_name="geneval", suite_hash="f" * 64, generator="toy", generator_package="stepwise-toy",
               generator_version="1", params={"steps": 2}, seed=0)


def worker_prompts(worker: int) -> list[int]:
    mine = [*SHARED, *(p for p in range(len(SHARED), PROMPTS) if p % WORKERS == worker)]
    shift = 2 * worker  # each worker walks its prompts in another order
    return mine[shift:] + mine[:shift]


def _writer(url: str, worker: int, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(60)
        engine = open_store(url)  # all four create the schema of an empty store at once
        with Session(engine) as s, s.begin():
            suite = get_or_create_suite(s, SPEC.suite_name, SPEC.suite_hash)
            prompt_ids = add_prompts(s, suite.id, [NewPrompt(i, "counting", f"p{i}") for i in range(PROMPTS)])
            run_id = get_or_create_run(s, SPEC, code_version=f"worker{worker}").id
        written: dict[int, dict[int, int]] = {}
        new_evaluations = 0
        for p in worker_prompts(worker):
            with Session(engine) as s, s.begin():  # one transaction per prompt
                rows = [NewCandidate(j, f"{p}-{j}.png", f"{1000 * p + j:064x}", cost={"seconds": 0.1})
                        for j in range(SAMPLES)]
                ids = add_candidates(s, run_id, prompt_ids[p], rows)
                new_evaluations += add_evaluations(s, "hf", "e" * 64,
                                                   [NewEvaluation(cid, j % 2 == 0) for j, cid in ids.items()])
            written[p] = ids
        engine.dispose()
        results.put((worker, written, new_evaluations, None))
    except BaseException:
        results.put((worker, {}, 0, traceback.format_exc()))


def test_concurrent_writers_lose_nothing_and_duplicate_nothing(store_url: str) -> None:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["test_store_concurrency"])  # import once, fork four times
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(store_url, w, barrier, results)) for w in range(WORKERS)]
    for proc in procs:
        proc.start()
    outcomes: list[tuple[int, dict[int, dict[int, int]], int, str | None]] = []
    try:
        for _ in procs:
            outcomes.append(results.get(timeout=120))
    except queue.Empty:
        raise AssertionError(f"only {len(outcomes)} of {WORKERS} writers finished within 120 s") from None
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    errors = [err for _, _, _, err in outcomes if err]
    assert not errors, "\n".join(errors)
    assert all(proc.exitcode == 0 for proc in procs)

    engine = open_store(store_url)
    try:
        assert check_version(engine) == SCHEMA_VERSION
        with Session(engine) as s:
            counts = [int(s.scalar(select(func.count()).select_from(m)) or 0)
                      for m in (Suite, Prompt, Run, Candidate, Evaluation)]
            assert counts == [1, PROMPTS, 1, PROMPTS * SAMPLES, PROMPTS * SAMPLES]
            stored = {(int(p), int(j)): int(cid) for p, j, cid in s.execute(
                select(Prompt.index, Candidate.sample_index, Candidate.id).join(Candidate.prompt))}
            assert sorted(stored) == [(p, j) for p in range(PROMPTS) for j in range(SAMPLES)]
            shas = s.scalars(select(Candidate.image_sha256)).all()
            assert len(set(shas)) == PROMPTS * SAMPLES
    finally:
        engine.dispose()
    # Every worker got back the stored id of each of its candidates, whoever wrote it ...
    for worker, written, _, _ in outcomes:
        assert sorted(written) == sorted(worker_prompts(worker))
        for p, ids in written.items():
            assert ids == {j: stored[p, j] for j in range(SAMPLES)}
    # ... and each verdict was inserted by exactly one of them.
    assert sum(new for _, _, new, _ in outcomes) == PROMPTS * SAMPLES
