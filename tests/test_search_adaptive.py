"""adaptive-n's exact expected accuracy and cost over random candidate orders, against brute force."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import numpy as np
import pytest

from harness.search.adaptive import adaptive_n_exact, adaptive_n_prompt, simulate_adaptive_n, thresholds


def brute_force(scores: list[float], correct: list[bool], *, tau: float, batch: int, n_max: int) -> tuple[float, float]:
    """Every order of the pool, each drawn as the live strategy draws it: the mean correctness and cost."""
    orders = list(itertools.permutations(range(len(scores))))
    runs = [simulate_adaptive_n(order, scores, tau=tau, batch=batch, n_max=n_max) for order in orders]
    return (sum(correct[pick] for pick, _ in runs) / len(orders), sum(drawn for _, drawn in runs) / len(orders))


def test_the_exact_form_is_the_mean_over_every_order() -> None:
    rng = random.Random(0)
    checked = 0
    for _ in range(250):
        m = rng.randint(1, 6)
        scores = [round(rng.random(), 1) for _ in range(m)]  # one decimal: ties, shared by random orders
        correct = [rng.random() < 0.5 for _ in range(m)]
        batch, n_max = rng.randint(1, 3), rng.randint(1, m)
        for tau in [*thresholds(np.array(scores)), -1.0]:
            exact = adaptive_n_prompt(scores, correct, tau=tau, batch=batch, n_max=n_max)
            assert exact == pytest.approx(brute_force(scores, correct, tau=tau, batch=batch, n_max=n_max), abs=1e-12)
            checked += 1
    assert checked > 800


def test_limits_are_best_of_n_and_one_candidate() -> None:
    from harness.scaling import curve

    rng = np.random.default_rng(1)
    scores, correct = rng.random((5, 6)), rng.random((5, 6)) < 0.5
    never, cost = adaptive_n_exact(scores, correct, [float("inf")], batch=2, n_max=4)
    assert np.allclose(never[0], curve(scores, correct, [4])[0]) and np.all(cost == 4)  # never satisfied: best-of-4
    first, cost = adaptive_n_exact(scores, correct, [-1.0], batch=3, n_max=6)
    assert np.allclose(first[0], curve(scores, correct, [3])[0]) and np.all(cost == 3)  # the first batch passes


def test_the_live_strategy_draws_in_seed_order(tmp_path: Path) -> None:
    """The strategy on the stepping test double: its pick and cost are simulate_adaptive_n's with order 0, 1, ..."""
    import runner_plugins

    from harness.plugins import GenerationRequest
    from harness.runner import LoadedVerifier
    from harness.search.context import sample_seeds
    from harness.search.runner import search_sample
    from strategies.search.adaptive import AdaptiveNStrategy

    gen = runner_plugins.ShapesStepper(runner_plugins.ShapesStepper.Params(size=24, steps=3))
    verifier = runner_plugins.ScriptedVerifier(runner_plugins.ScriptedVerifier.Params(channel=1))
    loaded = [LoadedVerifier("scripted", "0" * 64, verifier, True)]
    for tau in (0.3, 0.5, 0.7):
        strategy = AdaptiveNStrategy(AdaptiveNStrategy.Params(verifier="scripted", tau=tau, batch=2))
        done = search_sample(strategy, gen, loaded, prompt="a cat", prompt_index=3, sample=1, budget=5, run_seed=0,
                             images_dir=tmp_path)
        (pool,) = gen.generate([GenerationRequest("a cat", tuple(sample_seeds(0, 3, 1, 5)))])
        scores = [s.score for s in verifier.score("a cat", pool.images, [[im] for im in pool.images])]
        pick, drawn = simulate_adaptive_n(range(5), scores, tau=tau, batch=2, n_max=5)
        assert done.result.details["candidate"] == pick and done.result.details["drawn"] == drawn
        assert done.ledger.generator_nfe == drawn * gen.total_steps
        assert np.array_equal(np.asarray(done.result.image), np.asarray(pool.images[pick]))
