"""`harness.analysis`: every verifier metric on small hand-built pools whose values are worked out here
(ties, prompts with all-correct or all-incorrect candidates, ragged pools), checked against scikit-learn
and scipy where they compute the same thing, and the report built from them."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, roc_auc_score

from harness.analysis import metrics
from harness.analysis.report import analysis_json, analyze, pool_from_records, render_text, score_probabilities
from harness.pools import Pool, read_pool
from harness.scaling import curve

# Four prompts of four candidates; the worked values are in the tests.
SCORES = np.array([[0.9, 0.5, 0.5, 0.1],  # correct T T F F: pairs (0.9>0.5)(0.9>0.1)(0.5=0.5: 1/2)(0.5>0.1) = 3.5/4
                   [0.3, 0.2, 0.8, 0.4],  # all correct: no pair
                   [0.6, 0.6, 0.6, 0.6],  # all incorrect: no pair
                   [0.1, 0.7, 0.2, 0.3]])  # correct T F F F: the correct one is lowest: 0/3
CORRECT = np.array([[True, True, False, False], [True] * 4, [False] * 4, [True, False, False, False]])


def test_within_prompt_auroc_by_hand_and_against_sklearn() -> None:
    auc, pairs = metrics.within_prompt_auroc(SCORES, CORRECT)
    assert pairs.tolist() == [4, 0, 0, 3]
    assert auc[0] == 0.875 and auc[3] == 0.0 and math.isnan(auc[1]) and math.isnan(auc[2])
    for p in (0, 3):
        assert auc[p] == roc_auc_score(CORRECT[p], SCORES[p])


def test_within_prompt_auroc_ragged_and_random_against_sklearn() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 4, (40, 7)).astype(float)  # many ties
    correct = rng.random((40, 7)) < 0.4
    valid = np.ones((40, 7), bool)
    valid[::3, 5:] = False
    scores[~valid] = np.nan  # invalid cells may hold anything
    auc, _ = metrics.within_prompt_auroc(scores, correct, valid)
    for p in range(40):
        y, s = correct[p, valid[p]], scores[p, valid[p]]
        if y.all() or not y.any():
            assert math.isnan(auc[p])
        else:
            assert auc[p] == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    with pytest.raises(ValueError, match="not a finite number at prompt 0, candidate 5"):
        metrics.within_prompt_auroc(scores, correct, np.ones((40, 7), bool))


def test_pooled_auroc_and_average_precision() -> None:
    # Pooled over all 16 candidates: a second look at the same pairs, now across prompts.
    assert metrics.pooled_auroc(SCORES, CORRECT) == roc_auc_score(CORRECT.ravel(), SCORES.ravel())
    assert metrics.average_precision(SCORES, CORRECT) == average_precision_score(CORRECT.ravel(), SCORES.ravel())
    # two candidates by hand: positive 0.8 over negative 0.2, and a tie
    assert metrics.pooled_auroc(np.array([[0.8, 0.2]]), np.array([[True, False]])) == 1.0
    assert metrics.pooled_auroc(np.array([[0.5, 0.5]]), np.array([[True, False]])) == 0.5
    assert metrics.average_precision(np.array([[0.2, 0.8, 0.5]]), np.array([[True, False, False]])) == 1 / 3
    assert math.isnan(metrics.pooled_auroc(SCORES[1:2], CORRECT[1:2]))  # one class
    assert math.isnan(metrics.average_precision(SCORES[2:3], CORRECT[2:3]))


def test_weighted_auroc_is_sklearns_with_sample_weights() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 60).astype(float)
    labels = rng.random(60) < 0.5
    weights = rng.integers(0, 4, (7, 60)).astype(float)
    ours = metrics.weighted_auroc(scores, labels, weights)
    for row, value in zip(weights, ours, strict=True):
        assert value == pytest.approx(roc_auc_score(labels, scores, sample_weight=row), abs=1e-12)
    # integer weights are duplicated candidates
    twice = metrics.weighted_auroc(scores, labels, np.full((1, 60), 2.0))[0]
    assert twice == pytest.approx(roc_auc_score(labels, scores))
    assert math.isnan(metrics.weighted_auroc(scores, labels, np.where(labels, 0.0, 1.0)[None])[0])


def test_reliability_by_hand() -> None:
    probs = np.array([0.05, 0.15, 0.15, 0.85, 0.95, 0.1, 1.0])
    labels = np.array([False, False, True, True, True, False, True])
    r = metrics.reliability(probs, labels, n_bins=10)
    # 0.1 sits on an edge: sklearn's binning (searchsorted on the inner edges) puts it in the first bin
    assert r.counts == (2, 2, 0, 0, 0, 0, 0, 0, 1, 2) and r.n == 7
    assert r.confidence[0] == pytest.approx(0.075) and r.accuracy[0] == 0.0
    assert r.confidence[1] == pytest.approx(0.15) and r.accuracy[1] == 0.5
    assert r.confidence[2] is None and r.accuracy[2] is None
    assert r.confidence[9] == pytest.approx(0.975) and r.accuracy[9] == 1.0
    expected = (2 * 0.075 + 2 * 0.35 + 1 * 0.15 + 2 * 0.025) / 7
    assert r.ece == pytest.approx(expected)
    accuracy, confidence = calibration_curve(labels, probs, n_bins=10, strategy="uniform")
    assert [a for a in r.accuracy if a is not None] == pytest.approx(list(accuracy))
    assert [c for c in r.confidence if c is not None] == pytest.approx(list(confidence))
    perfect = metrics.reliability(np.array([0.0, 1.0]), np.array([False, True]), n_bins=4)
    assert perfect.ece == 0.0
    assert metrics.reliability(np.array([]), np.array([], bool)).ece is None
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        metrics.reliability(np.array([1.5]), np.array([True]))


def test_spearman_within_prompts() -> None:
    a = np.array([[1.0, 2.0, 3.0], [1.0, 1.0, 2.0], [5.0, 5.0, 5.0], [1.0, 2.0, 9.0]])
    b = np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [2.0, 4.0, 0.0]])
    rho = metrics.spearman_within_prompts(a, b)
    assert rho[0] == pytest.approx(-0.5)  # 1 - 6 * (4 + 1 + 1) / (3 * 8)
    assert rho[1] == pytest.approx(spearmanr(a[1], b[1]).statistic)  # ties share the mean rank
    assert math.isnan(rho[2])  # a is constant on prompt 2
    valid = np.array([[True] * 3, [True] * 3, [True] * 3, [True, True, False]])
    ragged = metrics.spearman_within_prompts(a, b, valid)
    assert ragged[3] == pytest.approx(1.0)  # two candidates, same order


def test_top1_agreement_and_miss_with_ties() -> None:
    a = np.array([[0.9, 0.9, 0.1], [0.1, 0.2, 0.3]])
    b = np.array([[0.5, 0.7, 0.7], [0.0, 0.0, 0.9]])
    assert metrics.top1_agreement(a, b).tolist() == [0.25, 1.0]  # |{1}| / (2 x 2); the same unique top
    correct = np.array([[True, False, True], [False, False, False]])
    miss = metrics.full_pool_miss(a, correct)
    assert miss[0] == 0.5 and math.isnan(miss[1])  # the 0.9 tie: one of two right
    exact = curve(SCORES, CORRECT, [4])[0]
    miss = metrics.full_pool_miss(SCORES, CORRECT)
    has = CORRECT.any(axis=1)
    np.testing.assert_allclose(miss[has], 1 - exact[has])


def test_regret_is_oracle_minus_curve() -> None:
    # best-of-2 of [0.9 F, 0.5 T, 0.1 T]: subsets {0,1} {0,2} pick the incorrect 0.9, {1,2} a correct one
    assert metrics.regret(np.array([[0.9, 0.5, 0.1]]), np.array([[False, True, True]]), [1, 2, 3]).round(6).tolist() \
        == [[0.0], [0.666667], [1.0]]
    r = metrics.regret(SCORES, CORRECT, [1, 2, 3, 4])
    np.testing.assert_allclose(r, curve(CORRECT.astype(float), CORRECT, [1, 2, 3, 4]) - curve(SCORES, CORRECT,
                                                                                            [1, 2, 3, 4]))
    assert (r >= -1e-12).all()


def test_bootstrap_counts_are_stratified_and_seeded() -> None:
    tags = ["a", "a", "b", "b", "b", "c"]
    counts = metrics.bootstrap_counts(tags, np.random.default_rng(7), 500)
    assert counts.shape == (500, 6)
    assert (counts[:, :2].sum(axis=1) == 2).all() and (counts[:, 2:5].sum(axis=1) == 3).all()
    assert (counts[:, 5] == 1).all()  # a tag of one prompt always draws it
    np.testing.assert_array_equal(counts, metrics.bootstrap_counts(tags, np.random.default_rng(7), 500))
    assert len({tuple(row) for row in counts}) > 10
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        metrics.bootstrap_counts(tags, 0, 10)  # type: ignore[arg-type]
    values = np.array([0.5, np.nan, 1.0, 0.0, 1.0, np.nan])
    assert metrics.weighted_mean_interval(values, np.ones((20, 6), np.int64)) == (0.625, 0.625)
    assert metrics.percentile_interval(np.array([np.nan, np.nan])) is None


# ---------------------------------------------------------------------------------------------
# the report


def hand_pool() -> Pool:
    """The four prompts above as two tasks (counting: prompts 0, 1; colors: 2, 3), with an ORM-like
    probability verifier, a second verifier, step scores for the ORM and PARM-like details."""
    lines = []
    tags = ["counting", "counting", "colors", "colors"]
    other = np.array([[0.2, 0.1, 0.4, 0.3], [1, 2, 3, 4], [1, 2, 3, 4], [9, 1, 2, 3]], dtype=float)
    for p in range(4):
        for k in range(4):
            steps = [float(CORRECT[p, k]), 0.5, float(SCORES[p, k])]  # step 0 knows the verdict, step 1 nothing
            lines.append(json.dumps({"prompt_id": p, "tag": tags[p], "correct": bool(CORRECT[p, k]),
                                     "scores": {"orm": float(SCORES[p, k]), "other": float(other[p, k])},
                                     "step_scores": {"orm": steps[: 3 if k < 3 else 2]}}))
    return read_pool(lines, "hand")


def test_report_values_by_hand() -> None:
    pool = hand_pool()
    report = analyze(pool, rng=np.random.default_rng(0), probabilities=score_probabilities(pool.scores),
                     n_boot=200, seed=0)
    assert report.groups == ("counting", "colors", "overall") and report.ns == (1, 2, 3, 4)
    orm = report.verifiers["orm"]
    counting, colors, overall = (orm.groups[g] for g in report.groups)
    assert (counting.prompts, counting.informative, counting.all_correct, counting.all_incorrect) == (2, 1, 1, 0)
    assert (colors.informative, colors.all_correct, colors.all_incorrect) == (1, 0, 1)
    assert counting.within_auroc == 0.875 and colors.within_auroc == 0.0
    assert overall.within_auroc == pytest.approx(0.4375) and overall.informative == 2
    assert overall.within_interval is not None and 0.0 <= overall.within_interval[0] <= overall.within_interval[1] <= 1
    assert overall.pooled_auroc == pytest.approx(roc_auc_score(CORRECT.ravel(), SCORES.ravel()))
    # miss@N: prompt 0 picks its correct 0.9, prompt 1 can't miss, prompt 3 picks an incorrect one
    assert counting.miss_at_n == 0.0 and colors.miss_at_n == 1.0 and overall.miss_at_n == pytest.approx(1 / 3)
    assert overall.miss_prompts == 3
    regret = metrics.regret(SCORES, CORRECT, [1, 2, 3, 4])
    for k, n in enumerate((1, 2, 3, 4)):
        tasks = [regret[k, :2].mean(), regret[k, 2:].mean()]
        assert counting.regret[n] == pytest.approx(tasks[0]) and overall.regret[n] == pytest.approx(np.mean(tasks))
    # calibration: "orm" is the registered ORM, whose score is its probability; "other" states none
    assert orm.calibration is not None and report.verifiers["other"].calibration is None
    assert orm.calibration["overall"].n == 16
    assert orm.calibration["overall"].ece == pytest.approx(metrics.reliability(SCORES.ravel(), CORRECT.ravel()).ece)
    # per step: step 0 equals the verdict (AUROC 1 within prompt), step 1 is constant (1/2), step 2 is the score
    steps = orm.steps
    assert steps is not None and steps.steps == (0, 1, 2)
    assert steps.within["overall"][:2] == (1.0, 0.5)
    assert steps.informative["overall"] == (2, 2, 2)
    auc2, _ = metrics.within_prompt_auroc(np.where(np.arange(4) < 3, SCORES, np.nan), CORRECT)
    assert steps.within["overall"][2] == pytest.approx(np.nanmean(auc2))  # the 4th candidates lack step 2
    assert report.verifiers["other"].steps is None
    [agree] = report.agreement
    assert (agree.a, agree.b) == ("orm", "other")
    rho = metrics.spearman_within_prompts(pool.scores["orm"], pool.scores["other"])
    assert agree.spearman["overall"] == pytest.approx(np.nanmean(rho)) and agree.spearman_prompts["overall"] == 3
    assert agree.top1["overall"] == pytest.approx(np.mean(metrics.top1_agreement(pool.scores["orm"],
                                                                                 pool.scores["other"])))


def test_parm_decisions_and_json_has_no_nan() -> None:
    import dataclasses

    pool = hand_pool()
    decisions = [[{"clear_step": None if k == 3 else k, "potential": ["yes", "no", "maybe"][k % 3]} for k in range(4)]
                 for _ in range(4)]
    pool = dataclasses.replace(pool, details={"orm": decisions})
    report = analyze(pool, rng=np.random.default_rng(1), n_boot=50, ns=[1, 4])
    parm = report.verifiers["orm"].parm
    assert parm is not None and report.verifiers["other"].parm is None
    # candidate 3 of each prompt is never clear (correct only in prompt 1): 1 / 3; the clear candidates 0..2
    # are correct in prompt 0 (0, 1), prompt 1 (all), prompt 3 (0): 6 / 6. Potential: "yes" for candidate 0
    # (correct in prompts 0, 1, 3), "no" for 1 (prompts 0, 1), "maybe" = other for 2 (prompt 1).
    assert parm["overall"].clarity == {"clear": (6, 6), "never clear": (1, 3)}
    assert parm["overall"].potential == {"yes": (3, 1), "no": (2, 2), "other": (1, 3)}
    assert parm["overall"].mean_clear_step == pytest.approx(1.0)
    data = analysis_json(report)
    text = json.dumps(data, allow_nan=False)  # undefined values are null, never NaN
    assert json.loads(text)["verifiers"]["orm"]["groups"]["colors"]["excluded_all_incorrect"] == 1
    assert set(data["verifiers"]["orm"]["groups"]["overall"]["regret"]) == {"1", "4"}
    rendered = render_text(report)
    assert "verifier orm" in rendered and "PARM decisions" in rendered and "orm vs other" in rendered


def test_records_make_the_same_pool() -> None:
    from harness.submissions.model import ImageRecord

    pool = hand_pool()
    records = [ImageRecord(prompt_index=p, tag=pool.tags[p], prompt="x", sample_index=k, sha256="0" * 64, image=None,
                           correct=bool(CORRECT[p, k]), reason="", detections={},
                           scores={v: float(pool.scores[v][p, k]) for v in pool.scores},
                           step_scores={"orm": tuple(x for x in pool.step_scores["orm"][p, k] if not math.isnan(x))})
               for p in range(4) for k in range(4)]
    again = pool_from_records(records[::-1])
    np.testing.assert_array_equal(again.correct, pool.correct)
    for v in pool.scores:
        np.testing.assert_array_equal(again.scores[v], pool.scores[v])
    np.testing.assert_array_equal(again.step_scores["orm"], pool.step_scores["orm"])


def test_bad_requests() -> None:
    pool = hand_pool()
    with pytest.raises(ValueError, match="no scores by clip"):
        analyze(pool, rng=np.random.default_rng(0), verifiers=["clip"])
    with pytest.raises(ValueError, match="1 <= n <= 4"):
        analyze(pool, rng=np.random.default_rng(0), ns=[5])
