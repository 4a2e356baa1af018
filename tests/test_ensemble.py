"""The `ensemble` verifier: its within-prompt combinations (hand-computed values, ties, one candidate),
and through `stepwise run` / `stepwise curve` with the runner's test doubles: scored after the
verifiers it reads, rescored and replaced when the pool grows, curves like any verifier's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import runner_plugins
from helpers import stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.plugins import ParamsError, parse_params
from harness.verifiers.ensemble import EnsembleParams, EnsembleVerifier, combine, within_prompt_ranks, within_prompt_z

PROMPTS = "0,80..84"
ENSEMBLE = ["--verifier", "scripted", "--verifier", "plain", "--verifier", "ensemble",
            "--verifier-param", "plain:channel=1", "--verifier-param", "ensemble:verifiers=scripted,plain",
            "--verifier-param", "ensemble:method=zscore", "--verifier-param", "ensemble:weights=2,1"]


def test_ranks_share_ties_and_scale_to_unit_interval() -> None:
    ranks = within_prompt_ranks(np.array([[3.0, 1.0, 3.0, 2.0], [0.5, 0.5, 0.5, 0.5]]))
    # ranks 1..4 with the tie at the top sharing 3.5: (r - 1) / 3
    np.testing.assert_allclose(ranks, [[2.5 / 3, 0.0, 2.5 / 3, 1 / 3], [0.5, 0.5, 0.5, 0.5]])
    np.testing.assert_array_equal(within_prompt_ranks(np.array([[7.0], [-1.0]])), [[0.5], [0.5]])


def test_z_scores_use_the_population_std_and_flat_rows_give_zero() -> None:
    z = within_prompt_z(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0], [0.1, 0.1 + 1e-17, 0.1]]))
    np.testing.assert_allclose(z[0], [-np.sqrt(1.5), 0.0, np.sqrt(1.5)])  # std = sqrt(2/3)
    assert (z[1:] == 0).all()


def test_combine_by_hand() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [10.0, 30.0, 20.0]])  # two verifiers on different scales
    score, parts = combine("rank", scores, [1.0, 3.0])
    np.testing.assert_allclose(parts, [[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    np.testing.assert_allclose(score, [0.25, 0.75, 0.5])  # (1*r1 + 3*r2) / 4
    score, _ = combine("zscore", scores, [1.0, 1.0])
    z = np.sqrt(1.5)
    np.testing.assert_allclose(score, [z - z, -z + z, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="unknown ensemble method"):
        combine("mean", scores, [1.0, 1.0])


def test_the_plugin_checks_its_params_and_inputs() -> None:
    verifier = EnsembleVerifier(parse_params(EnsembleParams, {"verifiers": "a,b"}))
    assert verifier.inputs == ("a", "b") and verifier.weights == (1.0, 1.0)
    out = verifier.score("p", [None, None], None, scores={"a": [0.2, 0.4], "b": [3.0, 1.0]})  # type: ignore[list-item]
    assert [s.score for s in out] == [0.5, 0.5] and out[0].details == {"method": "rank", "parts": {"a": 0.0, "b": 1.0}}
    for values, message in [({"verifiers": "a"}, "at least two"), ({"verifiers": "a,a"}, "named twice"),
                            ({"verifiers": "a,b", "weights": "1"}, "1 weights for 2"),
                            ({"verifiers": "a,b", "weights": "0,0"}, "not all 0"),
                            ({"verifiers": "a,b", "weights": "-1,2"}, ">= 0")]:
        with pytest.raises(ValueError, match=message):
            EnsembleVerifier(parse_params(EnsembleParams, values))
    with pytest.raises(ParamsError, match="missing required parameter 'verifiers'"):
        parse_params(EnsembleParams, {})
    with pytest.raises(ValueError, match="called without them"):
        verifier.score("p", [], None)
    with pytest.raises(ValueError, match="no scores by b"):
        verifier.score("p", [None], None, scores={"a": [1.0]})  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# through the runner


@pytest.fixture(scope="module")
def model_flags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return runner_plugins.tiny_model_flags(tmp_path_factory)


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    runner_plugins.register_isolated(monkeypatch)
    yield


def run(flags: list[str], db: str, out: Path, pool: int, *verifiers: str) -> tuple[int, str]:
    return stepwise("run", "--generator", "shapes", "--per-task", "1", "--prompts", PROMPTS, "--pool", str(pool),
                    *verifiers, "--db", db, "--out", str(out), *flags)


def stored(db: str) -> dict[str, dict[int, dict[int, float]]]:
    """{verifier: {prompt index: {sample index: score}}}, checking there is one row per candidate."""
    from harness.store import VerifierScore, open_store

    engine = open_store(db)
    out: dict[str, dict[int, dict[int, float]]] = {}
    with Session(engine) as s:
        for row in s.scalars(select(VerifierScore)):
            per = out.setdefault(row.verifier, {}).setdefault(row.candidate.prompt.index, {})
            assert row.candidate.sample_index not in per  # no duplicate rows
            per[row.candidate.sample_index] = row.score
    engine.dispose()
    return out


def check_ensemble(scores: dict[str, dict[int, dict[int, float]]], pool: int) -> None:
    for prompt, by_sample in scores["ensemble"].items():
        samples = sorted(by_sample)
        assert samples == list(range(pool))
        matrix = np.array([[scores[name][prompt][k] for k in samples] for name in ("scripted", "plain")])
        expected, _ = combine("zscore", matrix, [2.0, 1.0])  # over the prompt's whole pool
        np.testing.assert_allclose([by_sample[k] for k in samples], expected, rtol=1e-12, atol=1e-12)


def test_run_scores_and_rescores_the_whole_prompt(model_flags: list[str], tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    code, output = run(model_flags, db, out, 2, *ENSEMBLE)
    assert code == 0, output
    first = stored(db)
    check_ensemble(first, 2)
    code, output = run(model_flags, db, out, 3, *ENSEMBLE)  # a larger pool: every ensemble score made again
    assert code == 0, output
    second = stored(db)
    check_ensemble(second, 3)
    assert second["scripted"][80][0] == first["scripted"][80][0]  # the other verifiers' rows are kept
    assert any(second["ensemble"][p][0] != pytest.approx(first["ensemble"][p][0]) for p in first["ensemble"])
    run_id = output.strip().splitlines()[-1]

    # curve: the ensemble is a row like any verifier's, from its stored scores (exact best-of-n)
    code, output = stepwise("curve", "--run", run_id, "--db", db, *ENSEMBLE, *model_flags, "--n", "1..3", "--json")
    assert code == 0, output
    table = json.loads(output)
    from harness.scaling import curve, task_scores
    from harness.store import open_store, pool_arrays

    hashes = settings(model_flags)
    engine = open_store(db)
    with Session(engine) as s:
        pool = pool_arrays(s, run_id, "hf", evaluator_key(model_flags), {"ensemble": hashes["ensemble"]})
    engine.dispose()
    overall = task_scores(curve(pool.scores["ensemble"], pool.correct, [1, 2, 3]), pool.tags)["overall"]
    assert [table["ensemble"][str(n)]["overall"] for n in (1, 2, 3)] == pytest.approx(list(overall))


def test_inputs_must_be_verifiers_of_the_run(model_flags: list[str], tmp_path: Path) -> None:
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    code, output = run(model_flags, db, out, 2, "--verifier", "scripted", "--verifier", "ensemble",
                       "--verifier-param", "ensemble:verifiers=scripted,plain")
    assert code != 0 and "combines the scores of scripted, plain: name plain with --verifier too" in output
    code, output = run(model_flags, db, out, 2, "--verifier", "scripted", "--verifier", "ensemble",
                       "--verifier-param", "ensemble:verifiers=scripted")
    assert code != 0 and "at least two" in output


def evaluator_key(flags: list[str]) -> str:
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.geneval.rules import EvalOptions

    get = dict(zip(flags[::2], flags[1::2], strict=True))
    return EvaluatorSpec(backend="hf", detector=get["--detector"], clip_arch=get["--clip-arch"],
                         clip_weights=get["--clip-weights"], options=EvalOptions(threshold=0.05)).key()


def settings(flags: list[str], channel: str = "1") -> dict[str, str]:
    from harness.runner import verifier_settings_hashes

    params = {"plain": {"channel": channel}, "ensemble": {"verifiers": "scripted,plain", "method": "zscore",
                                                          "weights": "2,1"}}
    return verifier_settings_hashes(["scripted", "plain", "ensemble"], params, evaluator_key=evaluator_key(flags))


def test_the_settings_hash_follows_the_inputs(model_flags: list[str]) -> None:
    one, two = settings(model_flags, "1"), settings(model_flags, "2")
    assert one["scripted"] == two["scripted"] and one["plain"] != two["plain"]
    assert one["ensemble"] != two["ensemble"]
