"""The compute ledger and the trace the harness keeps around a search's generator and verifier calls."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import runner_plugins

from harness.plugins import Cost, Feedback, GenerationRequest, VerifierScore
from harness.search.context import SearchContext, fresh_seed, sample_seeds
from harness.search.ledger import BudgetExceeded, Ledger, MeteredGenerator, MeteredVerifier, Trace
from harness.search.trace import trace_paths


def saver(tmp_path: Path) -> Any:
    from harness.runner import save_png

    tmp_path.mkdir(parents=True, exist_ok=True)
    return lambda image: save_png(image, tmp_path)[1]


def metered(tmp_path: Path, steps: int = 4, budget: int = 100) -> tuple[Any, MeteredGenerator, Ledger, Trace]:
    gen = runner_plugins.ShapesStepper(runner_plugins.ShapesStepper.Params(size=16, steps=steps))
    ledger, trace = Ledger(), Trace(saver(tmp_path))
    return gen, MeteredGenerator(gen, ledger, trace, max_nfe=budget * steps), ledger, trace


def test_nfe_is_the_sum_over_rows_of_steps_advanced(tmp_path: Path) -> None:
    rng = random.Random(3)
    for trial in range(8):
        gen, m, ledger, trace = metered(tmp_path / str(trial))
        traj = m.start(GenerationRequest("a cat", (1, 2, 3)))
        advanced = 0  # candidate-steps, counted independently: what each call took
        passes = 0
        for _ in range(12):
            choice = rng.random()
            rows = [r for r in range(len(traj)) if traj.steps_done(r) < gen.total_steps]
            if choice < 0.5 and rows:
                picked = rng.sample(rows, rng.randint(1, len(rows)))
                k = rng.randint(1, min(gen.total_steps - traj.steps_done(r) for r in picked))
                m.advance(traj, picked, k)
                advanced += len(picked) * k
                passes += k
            elif choice < 0.7:
                m.fork(traj, rng.randrange(len(traj)), rng.randrange(10**6))  # a copy: no step
            elif choice < 0.85 and len(traj) > 1:
                m.keep(traj, rng.sample(range(len(traj)), rng.randint(1, len(traj))))
            elif any(traj.steps_done(r) > 0 for r in range(len(traj))):
                m.preview(traj, [r for r in range(len(traj)) if traj.steps_done(r) > 0])
        remaining = [gen.total_steps - traj.steps_done(r) for r in range(len(traj))]
        m.finish(traj, list(range(len(traj))))
        advanced += sum(remaining)
        passes += max(remaining)
        assert ledger.generator_nfe == advanced and ledger.generator_passes == passes
        # and the trace knows where every path got to, through forks and renumbering
        final = {p.path: p.reached for p in trace_paths(trace.events) if p.fate == "finished"}
        assert sorted(final.values()) == [gen.total_steps] * len(traj)
        assert ledger.generator_calls == sum(e["event"] in ("start", "advance", "preview", "fork", "keep", "finish")
                                             for e in trace.events)


def test_the_budget_is_enforced_before_any_step(tmp_path: Path) -> None:
    _, m, ledger, _ = metered(tmp_path, steps=4, budget=2)  # 8 candidate-steps
    traj = m.start(GenerationRequest("a cat", (1, 2, 3)))
    m.advance(traj, [0, 1, 2], 2)
    with pytest.raises(BudgetExceeded, match="6 of 8 spent"):
        m.advance(traj, [0, 1], 2)
    assert ledger.generator_nfe == 6 and traj.steps_done(0) == 2  # nothing was taken
    with pytest.raises(BudgetExceeded):
        m.finish(traj, [0, 1])
    m.finish(traj, [2])
    assert ledger.generator_nfe == 8


def test_verifier_calls_count_reported_passes_and_measured_seconds(tmp_path: Path) -> None:
    class Counting:
        needs_previews = False

        def score(self, prompt: str, images: list[Any], previews: Any) -> list[VerifierScore]:
            return [VerifierScore(0.5, cost=Cost(forward_passes=2, tokens=7)) for _ in images]

        def clarity(self, prompt: str, images: list[Any]) -> list[Any]:
            return [VerifierScore(1.0, cost=Cost(forward_passes=1)) for _ in images]

    gen, m, ledger, trace = metered(tmp_path)
    verifier = MeteredVerifier("v", Counting(), ledger, trace, needs_previews=False)
    traj = m.start(GenerationRequest("a cat", (1, 2)))
    m.advance(traj, [0, 1], 1)
    verifier.score("a cat", m.preview(traj, [0, 1]))
    verifier.clarity("a cat", m.finish(traj, [1]))
    tally = ledger.verifiers["v"]
    assert (tally.calls, tally.images, tally.forward_passes, tally.tokens) == (2, 3, 5, 14) and tally.seconds > 0
    scored = [e for e in trace.events if e["event"] == "score"]
    assert [e["method"] for e in scored] == ["score", "clarity"]
    assert scored[0]["paths"] == ["p0", "p1"] and scored[0]["at"] == [1, 1]  # the previews' paths and steps
    assert scored[1]["paths"] == ["p1"] and scored[1]["at"] == [gen.total_steps]
    assert Ledger.from_json(ledger.to_json()) == ledger
    with pytest.raises(ValueError, match=r"ledger\.generator_nfe must be an integer >= 0"):
        Ledger.from_json({**ledger.to_json(), "generator_nfe": -1})
    with pytest.raises(ValueError, match="lacks"):
        Ledger.from_json({"generator_nfe": 1})


def test_metadata_and_feedback_reach_only_generators_that_declare_them(tmp_path: Path) -> None:
    class Reader(runner_plugins.ShapesStepper):
        reads_metadata = True
        accepts_feedback = True
        def start(self, request: GenerationRequest) -> Any:
            return super().start(request)

    image = runner_plugins.ShapesStepper(runner_plugins.ShapesStepper.Params())._render((0, 0, 0), [])
    request = GenerationRequest("a cat", (1,), {"tag": "single_object"}, feedback=Feedback(image, "no: no cat"))
    for cls, expect in ((Reader, True), (runner_plugins.ShapesStepper, False)):
        gen = cls(cls.Params())
        reached: list[str] = []
        m = MeteredGenerator(gen, Ledger(), Trace(saver(tmp_path)), 40, on_metadata=reached.append)
        traj = m.start(request)
        assert traj.request.metadata == ({"tag": "single_object"} if expect else {})
        assert (traj.request.feedback is not None) == expect and m.accepts_feedback == expect
        assert reached == (["generator"] if expect else [])


def test_seeds_are_the_pool_s_candidates_and_forks_are_apart() -> None:
    from harness.runner import candidate_seed

    assert sample_seeds(0, 7, 1, 3) == [candidate_seed(0, 7, 1), candidate_seed(0, 7, 5), candidate_seed(0, 7, 9)]
    assert sample_seeds(0, 7, 1, 2) == sample_seeds(0, 7, 1, 3)[:2]  # a larger budget only adds candidates
    forks = {fresh_seed(0, 7, 1, k) for k in range(50)}
    assert len(forks) == 50 and not forks & set(sample_seeds(0, 7, 1, 50))


def test_the_context_hands_out_seeds_and_notes(tmp_path: Path) -> None:
    gen, m, ledger, trace = metered(tmp_path, budget=3)
    ctx = SearchContext(generator=m, verifiers={}, ledger=ledger, trace=trace, budget=3, run_seed=0, prompt_index=4,
                        sample=2)
    assert ctx.seeds(2, first=1) == sample_seeds(0, 4, 2, 3)[1:]
    assert ctx.fresh_seed() != ctx.fresh_seed()
    assert ctx.max_nfe == 3 * gen.total_steps == ctx.nfe_left
    assert ctx.rng("x").random() == ctx.rng("x").random()
    ctx.note("pruned", row=1)
    assert trace.events[-1] == {"event": "note", "kind": "pruned", "row": 1}
