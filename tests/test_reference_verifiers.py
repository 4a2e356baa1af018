"""The reference verifiers: `oracle` (GenEval's verdict) and `random` (a seeded uniform score)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from harness import registry
from harness.plugins import ParamsError, parse_params
from harness.runner import needs_verdicts
from harness.scaling import curve
from harness.verifiers.reference import OracleVerifier, RandomVerifier, uniform_score

PROMPT = "a photo of two cats"


def images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)) for _ in range(n)]


def random_scores(seed: int, prompt: str, batch: list[Image.Image]) -> list[float]:
    return [s.score for s in RandomVerifier(RandomVerifier.Params(seed=seed)).score(prompt, batch, None)]


def test_both_are_registered_and_conform() -> None:
    assert registry.verifiers.get("oracle") is OracleVerifier
    assert registry.verifiers.get("random") is RandomVerifier
    assert needs_verdicts(OracleVerifier) and not needs_verdicts(RandomVerifier)
    assert not OracleVerifier.needs_previews and not RandomVerifier.needs_previews
    with pytest.raises(ParamsError, match="unknown parameter 'seed'"):
        parse_params(OracleVerifier.Params, {"seed": "1"})  # the oracle takes no parameters
    assert parse_params(RandomVerifier.Params, {"seed": "7"}) == RandomVerifier.Params(seed=7)


def test_oracle_scores_the_verdict() -> None:
    oracle = OracleVerifier(OracleVerifier.Params())
    scores = oracle.score(PROMPT, images(3), None, verdicts=[True, False, True])
    assert [s.score for s in scores] == [1.0, 0.0, 1.0]
    assert all(s.details == {} and s.step_scores == () for s in scores)
    with pytest.raises(ValueError, match="called without them"):
        oracle.score(PROMPT, images(3), None)
    with pytest.raises(ValueError, match="2 verdicts for 3 images"):
        oracle.score(PROMPT, images(3), None, verdicts=[True, False])


def test_random_scores_depend_on_seed_prompt_and_pixels_only() -> None:
    batch = images(6)
    scores = random_scores(0, PROMPT, batch)
    assert all(0.0 <= s < 1.0 for s in scores) and len(set(scores)) == 6
    assert random_scores(0, PROMPT, batch) == scores  # reproducible
    # independent of batching and order
    assert [random_scores(0, PROMPT, [im])[0] for im in batch] == scores
    assert random_scores(0, PROMPT, batch[::-1]) == scores[::-1]
    # the same pixels read back from a PNG (as the runner reads stored candidates) score the same
    buffer = io.BytesIO()
    batch[0].save(buffer, format="PNG")
    assert random_scores(0, PROMPT, [Image.open(io.BytesIO(buffer.getvalue()))]) == scores[:1]
    # and change with the seed, the prompt and the pixels
    assert random_scores(1, PROMPT, batch) != scores
    assert random_scores(0, PROMPT + ".", batch) != scores
    assert random_scores(0, PROMPT, images(6, seed=1)) != scores


def test_random_scores_look_uniform() -> None:
    image = images(1)[0]
    values = np.array([uniform_score(seed, PROMPT, image) for seed in range(4000)])
    assert values.min() >= 0 and values.max() < 1
    # each tenth holds 400 +- ~19; 5 standard deviations of slack
    counts = np.histogram(values, bins=10, range=(0, 1))[0]
    assert np.abs(counts - 400).max() < 95


def test_best_of_n_with_random_scores_is_the_mean_accuracy() -> None:
    """Random keys make the best of n a uniformly random candidate: for every n, the curve's
    expectation over the verifier's seed equals the pool's mean accuracy (the `random` row of
    `stepwise curve`, computed there exactly with all-tied keys)."""
    n_prompts, m = 5, 6
    pool = [images(m, seed=p) for p in range(n_prompts)]
    prompts = [f"prompt {p}" for p in range(n_prompts)]
    correct = np.random.default_rng(0).random((n_prompts, m)) < np.linspace(0.1, 0.9, n_prompts)[:, None]
    ns = list(range(1, m + 1))
    mean = correct.mean(axis=1)
    # curve() is (n, prompts); all-tied keys (what `stepwise curve` uses for `random`) give the mean exactly
    np.testing.assert_allclose(curve(np.zeros((n_prompts, m)), correct, ns), np.tile(mean, (m, 1)))

    seeds = 400
    draws = np.empty((seeds, m, n_prompts))  # per seed: each prompt's best-of-n accuracy for every n
    for seed in range(seeds):
        keys = np.array([random_scores(seed, prompts[p], pool[p]) for p in range(n_prompts)])
        draws[seed] = curve(keys, correct, ns)
    np.testing.assert_allclose(draws[:, 0, :], np.broadcast_to(mean, (seeds, n_prompts)))  # n = 1: exact
    overall = draws.mean(axis=2)  # (seeds, n): accuracy over the prompts, per draw
    error = np.abs(overall.mean(axis=0) - mean.mean())
    standard_error = overall.std(axis=0, ddof=1) / np.sqrt(seeds)
    assert (error <= 4 * standard_error + 1e-12).all(), (error, standard_error)
    assert standard_error[-1] > 0  # n = m really varies with the draw: the check above has teeth
