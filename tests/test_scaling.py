"""Exact best-of-n statistics (harness.scaling) against brute force, special cases and properties."""

from __future__ import annotations

import doctest
import itertools
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from harness import scaling
from harness.scaling import (
    PairedResult,
    bootstrap_intervals,
    curve,
    expected_accuracy,
    lexicographic_keys,
    paired_comparison,
    selection_probabilities,
    task_scores,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def brute_force_probabilities(keys: np.ndarray, n: int, valid: np.ndarray) -> np.ndarray:
    """Enumerate every n-subset of each prompt's valid candidates; split ties exactly."""
    out = np.zeros(keys.shape)
    for p in range(keys.shape[0]):
        members = np.flatnonzero(valid[p])
        subsets = list(itertools.combinations(members, n))
        totals = [Fraction(0)] * keys.shape[1]
        for subset in subsets:
            best = max(keys[p, c] for c in subset)
            winners = [c for c in subset if keys[p, c] == best]
            for c in winners:
                totals[c] += Fraction(1, len(winners) * len(subsets))
        out[p] = [float(t) for t in totals]
    return out


def random_pool(rng: np.random.Generator, prompts: int, width: int, ragged: bool):
    """Keys drawn from few values (many ties), random verdicts, NaN in the invalid cells."""
    keys = rng.integers(0, 4, (prompts, width)).astype(float)
    correct = rng.random((prompts, width)) < 0.5
    valid = np.ones((prompts, width), bool)
    if ragged:
        counts = rng.integers(1, width + 1, prompts)
        valid = np.arange(width) < counts[:, None]
        for p in range(prompts):
            valid[p] = rng.permutation(valid[p])  # invalid cells anywhere, not only at the end
        keys[~valid] = np.nan
    return keys, correct, valid


# --- exactness against enumeration ------------------------------------------------------------


@pytest.mark.parametrize("ragged", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_matches_brute_force_for_every_n(seed: int, ragged: bool) -> None:
    rng = np.random.default_rng(seed)
    keys, correct, valid = random_pool(rng, prompts=5, width=7, ragged=ragged)
    max_n = int(valid.sum(axis=1).min())
    ns = list(range(1, max_n + 1))
    curves = curve(keys, correct, ns, valid)
    for k, n in enumerate(ns):
        want = brute_force_probabilities(keys, n, valid)
        got = selection_probabilities(keys, n, valid)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
        np.testing.assert_allclose(curves[k], (want * correct).sum(axis=1), rtol=0, atol=1e-12)
        np.testing.assert_allclose(expected_accuracy(keys, correct, n, valid), curves[k], rtol=0, atol=1e-15)


def test_each_ragged_prompt_checked_up_to_its_own_size() -> None:
    # Enumerate every n up to m_p one prompt at a time (a whole-pool call stops at the smallest m_p).
    keys, _, valid = random_pool(np.random.default_rng(9), prompts=6, width=8, ragged=True)
    for p in range(keys.shape[0]):
        for n in range(1, int(valid[p].sum()) + 1):
            want = brute_force_probabilities(keys[p : p + 1], n, valid[p : p + 1])
            got = selection_probabilities(keys[p : p + 1], n, valid[p : p + 1])
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_invalid_cells_are_ignored_whatever_they_hold() -> None:
    keys, correct, valid = random_pool(np.random.default_rng(3), prompts=4, width=6, ragged=True)
    other_keys = np.where(valid, keys, 99.0)  # would win every subset if it counted
    other_correct = np.where(valid, correct, True)
    ns = [1]
    np.testing.assert_array_equal(curve(keys, correct, ns, valid), curve(other_keys, other_correct, ns, valid))
    probs = selection_probabilities(other_keys, 1, valid)
    assert (probs[~valid] == 0).all()


# --- special cases that fall out of the formula ----------------------------------------------


@pytest.mark.parametrize("m", [1, 5, 12])
def test_random_selection_is_mean_correct_for_every_n(m: int) -> None:
    rng = np.random.default_rng(m)
    correct = rng.random((6, m)) < 0.4
    got = curve(np.zeros((6, m)), correct, range(1, m + 1))
    np.testing.assert_allclose(got, np.broadcast_to(correct.mean(axis=1), got.shape), rtol=0, atol=1e-14)


@pytest.mark.parametrize("m", [4, 10, 30])
def test_oracle_is_pass_at_n(m: int) -> None:
    rng = np.random.default_rng(m)
    correct = rng.random((8, m)) < rng.random((8, 1))
    correct[0] = False  # k = 0 and k = m rows too
    correct[1] = True
    k = correct.sum(axis=1)
    got = curve(correct, correct, range(1, m + 1))
    for i, n in enumerate(range(1, m + 1)):
        want = [1 - comb(m - kp, n) / comb(m, n) for kp in k]
        np.testing.assert_allclose(got[i], want, rtol=0, atol=1e-12)


def test_n_equal_one_is_mean_correct_and_n_equal_m_is_tie_averaged_argmax() -> None:
    keys = np.array([[0.3, 0.9, 0.9, 0.1], [0.5, 0.2, 0.2, 0.2]])
    correct = np.array([[True, True, False, True], [False, True, True, False]])
    np.testing.assert_allclose(expected_accuracy(keys, correct, 1), correct.mean(axis=1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(expected_accuracy(keys, correct, 4), [0.5, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_allclose(selection_probabilities(keys, 4)[0], [0, 0.5, 0.5, 0], rtol=0, atol=1e-15)


def test_large_pool_has_no_overflow_and_sums_to_one() -> None:
    rng = np.random.default_rng(0)
    keys = np.round(rng.random((50, 80)), 2)  # C(80, 20) ~ 3.5e18: beyond exact float64 integers
    for n in (1, 20, 40, 79, 80):
        probs = selection_probabilities(keys, n)
        assert np.isfinite(probs).all() and (probs >= 0).all()
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # the top-ranked candidate's share is n/m exactly when it is unique
    distinct = rng.permutation(80)[None, :].astype(float)
    np.testing.assert_allclose(selection_probabilities(distinct, 20)[0, distinct.argmax()], 20 / 80, rtol=1e-14)
    # every rank against exact integer binomials
    sorted_probs = np.sort(selection_probabilities(distinct, 20)[0])[::-1]
    want = [comb(79 - r, 19) / comb(80, 20) for r in range(80)]
    np.testing.assert_allclose(sorted_probs, want, rtol=1e-13, atol=1e-300)


def test_signed_zero_and_infinite_keys_order_like_numbers() -> None:
    keys = np.array([[-0.0, 0.0, np.inf, -np.inf]])
    probs = selection_probabilities(keys, 4)
    np.testing.assert_array_equal(probs, [[0, 0, 1, 0]])
    probs = selection_probabilities(keys[:, [0, 1, 3]], 3)
    np.testing.assert_allclose(probs, [[0.5, 0.5, 0]], rtol=0, atol=1e-15)


# --- lexicographic keys ----------------------------------------------------------------------


def test_lexicographic_keys_are_dense_and_ordered() -> None:
    potential = np.array([[1, 0, 1, 1, 0], [0, 0, 0, 0, 0]])
    score = np.array([[0.2, 0.9, 0.7, 0.2, 0.1], [0.3, 0.3, 0.3, 0.3, 0.3]])
    got = lexicographic_keys(potential, score)
    np.testing.assert_array_equal(got, [[2, 1, 3, 2, 0], [0, 0, 0, 0, 0]])


def test_lexicographic_keys_equal_brute_force_tuple_order() -> None:
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(0, 3, (6, 9)) for _ in range(3))
    got = lexicographic_keys(a, b, c)
    for p in range(6):
        tuples = list(zip(a[p], b[p], c[p], strict=True))
        ranks = {t: i for i, t in enumerate(sorted(set(tuples)))}
        np.testing.assert_array_equal(got[p], [ranks[t] for t in tuples])


def test_lexicographic_keys_select_like_tuple_argmax() -> None:
    rng = np.random.default_rng(2)
    potential, score = rng.integers(0, 2, (4, 6)), rng.integers(0, 3, (4, 6)).astype(float)
    combined = lexicographic_keys(potential, score)
    for p in range(4):
        tuples = list(zip(potential[p], score[p], strict=True))
        for n in range(1, 7):
            want = np.zeros(6)
            subsets = list(itertools.combinations(range(6), n))
            for subset in subsets:
                best = max(tuples[c] for c in subset)
                winners = [c for c in subset if tuples[c] == best]
                want[winners] += 1 / (len(winners) * len(subsets))
            np.testing.assert_allclose(selection_probabilities(combined[p : p + 1], n)[0], want, atol=1e-12)


def test_lexicographic_keys_with_ragged_pool() -> None:
    valid = np.array([[True, False, True, True]])
    got = lexicographic_keys(np.array([[0.0, np.nan, 5.0, 1.0]]), np.zeros((1, 4)), valid=valid)
    np.testing.assert_array_equal(got, [[0, np.nan, 2, 1]])
    with pytest.raises(ValueError, match="keys\\[1\\] has NaN at prompt 0, candidate 2"):
        lexicographic_keys(np.zeros((1, 4)), np.array([[0, np.nan, np.nan, 0]]), valid=valid)


# --- task scores ------------------------------------------------------------------------------


def test_task_scores_follow_geneval() -> None:
    # GenEval: per task, the mean over its images (4 per prompt here); overall = mean of the tasks.
    tags = ["two_object", "counting", "two_object", "colors", "counting", "two_object"]
    images_correct = [[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 1, 0]]
    per_prompt = np.mean(images_correct, axis=1)
    got = task_scores(per_prompt, tags)
    assert list(got) == ["two_object", "counting", "colors", "overall"]
    assert got["two_object"] == pytest.approx(6 / 12)
    assert got["counting"] == pytest.approx(5 / 8)
    assert got["colors"] == 0.0
    assert got["overall"] == pytest.approx((6 / 12 + 5 / 8 + 0) / 3)  # not 11/24, the image mean
    assert all(isinstance(v, float) for v in got.values())


def test_task_scores_broadcast_over_a_curve() -> None:
    keys, correct, _ = random_pool(np.random.default_rng(4), prompts=9, width=5, ragged=False)
    tags = ["a", "b", "c"] * 3
    curves = curve(keys, correct, [1, 2, 3])
    got = task_scores(curves, tags)
    for k in range(3):
        row = task_scores(curves[k], tags)
        for name, value in row.items():
            assert got[name][k] == pytest.approx(value)


# --- bootstrap --------------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_true_mean() -> None:
    rng = np.random.default_rng(2024)
    means, sizes = np.array([0.3, 0.6, 0.85]), [30, 50, 40]
    tags = [t for t, size in zip("abc", sizes, strict=True) for _ in range(size)]
    truth = np.repeat(means, sizes)
    hits, reps = 0, 200
    for _ in range(reps):
        per_prompt = (rng.random(truth.size) < truth).astype(float)
        low, high = bootstrap_intervals(per_prompt, tags, rng, n_boot=400)["overall"]
        hits += low <= means.mean() <= high
    assert 0.90 * reps <= hits <= 0.99 * reps


def test_bootstrap_is_reproducible_and_stratified() -> None:
    values = np.array([0.0, 1.0, 1.0, 1.0, 0.25])
    tags = ["x", "x", "y", "y", "z"]
    one = bootstrap_intervals(values, tags, np.random.default_rng(5), n_boot=300)
    two = bootstrap_intervals(values, tags, np.random.default_rng(5), n_boot=300)
    assert one == two
    assert list(one) == ["x", "y", "z", "overall"]
    assert one["y"] == (1.0, 1.0) and one["z"] == (0.25, 0.25)  # stratified: tags never mix
    assert 0.0 <= one["x"][0] <= 0.5 <= one["x"][1] <= 1.0


def test_bootstrap_batches_do_not_change_the_result(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    values, tags = rng.random(40), list("ab" * 20)
    whole = bootstrap_intervals(values, tags, np.random.default_rng(1), n_boot=500)
    monkeypatch.setattr(scaling, "_BOOT_ELEMENTS", 7 * 40)  # 7 resamples per batch, ragged last batch
    batched = bootstrap_intervals(values, tags, np.random.default_rng(1), n_boot=500)
    assert whole == batched


def test_paired_comparison_identical_is_p_one() -> None:
    values = np.random.default_rng(7).random(60)
    tags = ["a", "b", "c"] * 20
    got = paired_comparison(values, values.copy(), tags, np.random.default_rng(0), n_boot=500)
    assert got == PairedResult(difference=0.0, low=0.0, high=0.0, p_value=1.0)


def test_paired_comparison_detects_a_clear_difference() -> None:
    rng = np.random.default_rng(8)
    tags = ["a", "b"] * 50
    b = rng.random(100) * 0.8
    a = b + 0.1 + rng.normal(0, 0.05, 100)
    got = paired_comparison(a, b, tags, rng)
    assert got.difference == pytest.approx(task_scores(a, tags)["overall"] - task_scores(b, tags)["overall"])
    assert got.p_value < 0.01 and got.p_value == pytest.approx(2 / 2001)
    assert 0 < got.low < got.difference < got.high
    flipped = paired_comparison(b, a, tags, np.random.default_rng(8))
    assert flipped.difference == pytest.approx(-got.difference) and flipped.high < 0


def test_paired_comparison_of_noise_is_not_significant() -> None:
    rng = np.random.default_rng(10)
    tags = ["a", "b"] * 50
    got = paired_comparison(rng.random(100), rng.random(100), tags, rng, n_boot=1000)
    assert got.low < 0 < got.high or got.p_value > 0.01


# --- validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: curve(np.zeros(3), np.zeros(3, bool), [1]), "must be 2-D"),
        (lambda: curve(np.zeros((2, 3)), np.zeros((2, 4), bool), [1]), "correct must have shape"),
        (lambda: curve(np.zeros((2, 3)), np.full((2, 3), 2), [1]), "correct must be boolean"),
        (lambda: curve(np.zeros((2, 3), complex), np.zeros((2, 3), bool), [1]), "real numbers"),
        (lambda: curve(np.array([[0, 1, 2], [0, np.nan, 1.0]]), np.zeros((2, 3), bool), [1]),
         "NaN at prompt 1, candidate 1"),
        (lambda: curve(np.zeros((3, 3)), np.zeros((3, 3), bool), [1, 4]),
         "n=4 exceeds the 3 valid candidates of prompt 0"),
        (lambda: curve(np.zeros((3, 3)), np.zeros((3, 3), bool), [3], np.array([[1, 1, 1], [1, 1, 1], [1, 1, 0]])),
         "n=3 exceeds the 2 valid candidates of prompt 2"),
        (lambda: curve(np.zeros((2, 3)), np.zeros((2, 3), bool), [1], np.array([[1, 1, 1], [0, 0, 0]])),
         "prompt 1 has no valid candidates"),
        (lambda: curve(np.zeros((2, 3)), np.zeros((2, 3), bool), [0]), "n=0 is below 1"),
        (lambda: curve(np.zeros((2, 3)), np.zeros((2, 3), bool), [1.5]), "must be integers"),
        (lambda: curve(np.zeros((2, 3)), np.zeros((2, 3), bool), []), "no subset sizes"),
        (lambda: curve(np.zeros((2, 3)), np.zeros((2, 3), bool), [True]), "must be integers"),
        (lambda: selection_probabilities(np.zeros((2, 3)), 5), "n=5 exceeds"),
        (lambda: lexicographic_keys(), "at least one"),
        (lambda: lexicographic_keys(np.zeros((2, 3)), np.zeros((2, 2))), "keys\\[1\\] has shape"),
        (lambda: task_scores([1.0, 0.0], ["a"]), "one entry per tag"),
        (lambda: task_scores([1.0, np.nan], ["a", "b"]), "NaN for prompt 1"),
        (lambda: task_scores([], []), "no prompts"),
        (lambda: bootstrap_intervals([1.0], ["a"], np.random.default_rng(0), n_boot=0), "n_boot"),
        (lambda: bootstrap_intervals([1.0], ["a"], np.random.default_rng(0), level=1.0), "level"),
        (lambda: paired_comparison([1.0], [1.0, 0.0], ["a"], np.random.default_rng(0)), "b must end"),
    ],
)
def test_validation_errors(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_bootstrap_of_several_rows_shares_resamples_and_equals_each_row_alone() -> None:
    rng = np.random.default_rng(3)
    rows = rng.random((3, 2, 12))  # e.g. (verifiers, n values, prompts)
    tags = ["a"] * 5 + ["b"] * 7
    many = bootstrap_intervals(rows, tags, np.random.default_rng(11), n_boot=300)
    assert many["overall"][0].shape == (3, 2)
    for v in range(3):
        for i in range(2):
            alone = bootstrap_intervals(rows[v, i], tags, np.random.default_rng(11), n_boot=300)
            for name, (low, high) in alone.items():
                assert many[name][0][v, i] == pytest.approx(low, abs=1e-12)
                assert many[name][1][v, i] == pytest.approx(high, abs=1e-12)


def test_rng_is_required_and_must_be_a_generator() -> None:
    with pytest.raises(TypeError):
        bootstrap_intervals([1.0], ["a"])  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="Generator"):
        bootstrap_intervals([1.0], ["a"], np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Generator"):
        paired_comparison([1.0], [1.0], ["a"], 0)  # type: ignore[arg-type]


def test_docstring_examples_run() -> None:
    result = doctest.testmod(scaling, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 8 and result.failed == 0


# --- properties (hypothesis) ------------------------------------------------------------------


@st.composite
def pools(draw, max_prompts: int = 4, max_width: int = 8):
    prompts = draw(st.integers(1, max_prompts))
    width = draw(st.integers(1, max_width))
    shape = (prompts, width)
    # few distinct values: ties are the interesting case
    keys = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([-1.0, 0.0, 0.5, 2.0, np.inf])))
    correct = draw(hnp.arrays(np.bool_, shape))
    valid = draw(hnp.arrays(np.bool_, shape))
    valid[np.arange(prompts), draw(hnp.arrays(np.int64, prompts, elements=st.integers(0, width - 1)))] = True
    n = draw(st.integers(1, int(valid.sum(axis=1).min())))
    return keys, correct, valid, n


@SETTINGS
@given(pools())
def test_probabilities_are_a_distribution_over_valid_candidates(pool) -> None:
    keys, _, valid, n = pool
    probs = selection_probabilities(keys, n, valid)
    assert (probs >= 0).all() and (probs[~valid] == 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)


@SETTINGS
@given(pools())
def test_accuracy_lies_between_worst_and_best_candidate(pool) -> None:
    keys, correct, valid, n = pool
    acc = expected_accuracy(keys, correct, n, valid)
    masked = np.where(valid, correct, np.nan)
    assert (acc >= np.nanmin(masked, axis=1) - 1e-12).all()
    assert (acc <= np.nanmax(masked, axis=1) + 1e-12).all()


@SETTINGS
@given(pools(), st.randoms(use_true_random=False))
def test_invariant_to_permuting_candidates(pool, random) -> None:
    keys, correct, valid, n = pool
    perm = np.array(random.sample(range(keys.shape[1]), keys.shape[1]))
    probs = selection_probabilities(keys, n, valid)
    permuted = selection_probabilities(keys[:, perm], n, valid[:, perm])
    np.testing.assert_allclose(permuted, probs[:, perm], rtol=0, atol=1e-14)
    np.testing.assert_allclose(expected_accuracy(keys[:, perm], correct[:, perm], n, valid[:, perm]),
                               expected_accuracy(keys, correct, n, valid), rtol=0, atol=1e-14)


@SETTINGS
@given(pools(max_prompts=2, max_width=6))
def test_random_pools_match_brute_force(pool) -> None:
    keys, _, valid, n = pool
    np.testing.assert_allclose(selection_probabilities(keys, n, valid), brute_force_probabilities(keys, n, valid),
                               rtol=0, atol=1e-12)


@SETTINGS
@given(pools())
def test_oracle_curve_never_decreases(pool) -> None:
    _, correct, valid, _ = pool
    max_n = int(valid.sum(axis=1).min())
    oracle = curve(correct, correct, range(1, max_n + 1), valid)
    assert (np.diff(oracle, axis=0) >= -1e-12).all()


@SETTINGS
@given(pools())
def test_monotone_transform_of_keys_changes_nothing(pool) -> None:
    keys, correct, valid, n = pool
    transformed = np.where(valid, np.arctan(keys) * 3 - 1, np.nan)  # strictly increasing
    np.testing.assert_allclose(expected_accuracy(transformed, correct, n, valid),
                               expected_accuracy(keys, correct, n, valid), rtol=0, atol=1e-14)
