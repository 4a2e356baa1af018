import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import main

# Two tasks; each prompt has 4 candidates. Verifier "good" ranks correct candidates first,
# "bad" ranks them last.
POOL = [
    # prompt, tag, [correct...]
    ("p1", "counting", [True, False, False, False]),
    ("p2", "counting", [False, False, False, False]),
    ("p3", "colors", [True, True, False, False]),
]


def pool_lines() -> list[str]:
    lines = []
    for prompt_id, tag, verdicts in POOL:
        for i, correct in enumerate(verdicts):
            good = (1.0 if correct else 0.0) + i / 10
            lines.append(json.dumps({"prompt_id": prompt_id, "tag": tag, "correct": correct,
                                     "scores": {"good": good, "bad": -good}}))
    return lines


def run(tmp_path: Path, lines: list[str], *args: str):
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return CliRunner().invoke(main, ["curve", "--from-jsonl", str(path), *args])


def test_json_has_the_documented_shape_and_exact_values(tmp_path: Path) -> None:
    result = run(tmp_path, pool_lines(), "--n", "1..4", "--json", "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"good", "bad", "random", "oracle"}
    assert set(data["good"]) == {"1", "2", "3", "4"}
    assert list(data["good"]["1"]) == ["overall", "counting", "colors"]
    # n = 1: every verifier is a random pick; counting = mean(1/4, 0), colors = 2/4
    for verifier in data:
        assert data[verifier]["1"]["counting"] == pytest.approx(0.125)
        assert data[verifier]["1"]["colors"] == pytest.approx(0.5)
        assert data[verifier]["1"]["overall"] == pytest.approx((0.125 + 0.5) / 2)
    # a verifier that ranks the correct candidate first finds it whenever it is in the subset:
    # p1 at n=2: P(candidate 0 in a 2-subset of 4) = 1/2
    assert data["good"]["2"]["counting"] == pytest.approx(0.25)
    assert data["good"]["4"]["overall"] == pytest.approx((0.5 + 1.0) / 2)
    assert data["bad"]["4"]["overall"] == pytest.approx(0.0)
    assert data["oracle"]["2"]["colors"] == pytest.approx(1 - 1 / 6)  # 1 - C(2,2)/C(4,2)
    assert all(row["overall"] == pytest.approx(0.3125) for row in data["random"].values())


def test_table_and_plots(tmp_path: Path) -> None:
    result = run(tmp_path, pool_lines(), "--n", "1,2,4", "--plot", str(tmp_path / "c.png"), "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    assert "3 prompts, 12 candidates" in result.output
    assert "95% interval" in result.output
    assert (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")
    result = run(tmp_path, pool_lines(), "--n", "1,2", "--plot", str(tmp_path / "c.svg"), "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    assert "<svg" in (tmp_path / "c.svg").read_text()


def test_same_seed_same_intervals(tmp_path: Path) -> None:
    first = run(tmp_path, pool_lines(), "--n", "1,2", "--bootstrap", "300", "--seed", "7").output
    assert run(tmp_path, pool_lines(), "--n", "1,2", "--bootstrap", "300", "--seed", "7").output == first


@pytest.mark.parametrize("mutate,message", [
    (lambda lines: [*lines, "{oops"], ":13: not valid JSON"),
    (lambda lines: [*lines, json.dumps({"prompt_id": "p4", "tag": "counting", "correct": True,
                                        "scores": {"good": 1.0}})], ":13: scores for ['good']"),
    (lambda lines: [*lines, json.dumps({"prompt_id": "p1", "tag": "colors", "correct": True,
                                        "scores": {"good": 1.0, "bad": 0.0}})], "has tag 'colors' here"),
    (lambda lines: [*lines, json.dumps({"prompt_id": "p4", "tag": "x", "correct": "yes",
                                        "scores": {"good": 1.0, "bad": 0.0}})], "'correct' must be true or false"),
    (lambda lines: [*lines, json.dumps({"prompt_id": "p4", "tag": "x", "correct": True,
                                        "scores": {"good": None, "bad": 0.0}})], "must be a finite number"),
    (lambda lines: [], "no candidates"),
])
def test_bad_pools_are_explained(tmp_path: Path, mutate, message: str) -> None:
    result = run(tmp_path, mutate(pool_lines()), "--n", "1")
    assert result.exit_code == 1
    assert message in result.output


def test_n_beyond_the_smallest_pool_is_refused(tmp_path: Path) -> None:
    lines = [*pool_lines(), json.dumps({"prompt_id": "tiny", "tag": "colors", "correct": True,
                                        "scores": {"good": 1.0, "bad": 0.0}})]
    result = run(tmp_path, lines, "--n", "1..3")
    assert result.exit_code == 1
    assert "prompt 'tiny' (1 candidates); use --n up to 1" in result.output


@pytest.mark.parametrize("text", ["0..3", "a", ""])
def test_bad_n(tmp_path: Path, text: str) -> None:
    assert run(tmp_path, pool_lines(), "--n", text).exit_code == 2


# ---------------------------------------------------------------------------------------------
# costs: compute per selection


def cost_lines() -> list[str]:
    """pool_lines() with costs: candidate i took 1 + i generator seconds (mean 2.5), "good" 0.5 s
    per candidate, "bad" 0.1 x i (mean 0.15), and 10 forward passes each."""
    lines = []
    for line in pool_lines():
        record = json.loads(line)
        i = round(record["scores"]["good"] * 10) % 10  # the candidate's index within its prompt
        record["cost"] = {"generator_seconds": 1 + i, "verifier_seconds": {"good": 0.5, "bad": 0.1 * i},
                          "generator_forward_passes": 10}
        lines.append(json.dumps(record))
    return lines


def test_read_pool_keeps_costs() -> None:
    from harness.pools import read_pool

    pool = read_pool(cost_lines(), "pool")
    assert pool.generator_seconds is not None and pool.verifier_seconds is not None
    np.testing.assert_allclose(pool.generator_seconds, [[1, 2, 3, 4]] * 3)
    np.testing.assert_allclose(pool.verifier_seconds["bad"], [[0, 0.1, 0.2, 0.3]] * 3)
    np.testing.assert_allclose(pool.generator_forward_passes, 10)
    plain = read_pool(pool_lines(), "pool")
    assert plain.generator_seconds is None and plain.verifier_seconds is None
    assert plain.generator_forward_passes is None


def test_table_shows_compute_per_selection(tmp_path: Path) -> None:
    result = run(tmp_path, cost_lines(), "--n", "1,2", "--bootstrap", "200",
                 "--compute-json", str(tmp_path / "compute.json"))
    assert result.exit_code == 0, result.output
    assert "s/prompt" in result.output
    rows = {tuple(line.split()[:2]): line.split() for line in result.output.splitlines()
            if line.split()[:1] and line.split()[0] in ("good", "bad", "random", "oracle")}
    # n x (generator + verifier seconds per candidate): good 2 x (2.5 + 0.5), bad 2 x (2.5 + 0.15)
    assert float(rows[("good", "2")][5]) == pytest.approx(6.0)
    assert float(rows[("bad", "2")][5]) == pytest.approx(5.3)
    assert float(rows[("random", "2")][5]) == pytest.approx(5.0)  # the generator only
    assert float(rows[("oracle", "1")][5]) == pytest.approx(2.5)
    data = json.loads((tmp_path / "compute.json").read_text())
    assert data["generator_seconds_per_candidate"] == pytest.approx(2.5)
    assert data["generator_forward_passes_per_candidate"] == pytest.approx(10)
    assert data["verifier_seconds_per_candidate"] == pytest.approx({"good": 0.5, "bad": 0.15})
    assert data["seconds_per_prompt"]["good"] == pytest.approx({"1": 3.0, "2": 6.0})
    assert data["seconds_per_prompt"]["oracle"] == pytest.approx({"1": 2.5, "2": 5.0})


def test_json_output_is_the_same_with_costs(tmp_path: Path) -> None:
    with_costs = run(tmp_path, cost_lines(), "--n", "1..4", "--json", "--bootstrap", "200")
    without = run(tmp_path, pool_lines(), "--n", "1..4", "--json", "--bootstrap", "200")
    assert with_costs.exit_code == 0 and json.loads(with_costs.output) == json.loads(without.output)


def test_without_costs_no_compute(tmp_path: Path) -> None:
    result = run(tmp_path, pool_lines(), "--n", "1,2", "--bootstrap", "200")
    assert result.exit_code == 0 and "s/prompt" not in result.output
    result = run(tmp_path, pool_lines(), "--n", "1", "--compute-json", str(tmp_path / "c.json"))
    assert result.exit_code == 2 and "the pool has no costs" in result.output


def test_plot_with_costs_has_a_compute_panel(tmp_path: Path) -> None:
    result = run(tmp_path, pool_lines(), "--n", "1,2", "--plot", str(tmp_path / "n.svg"), "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    result = run(tmp_path, cost_lines(), "--n", "1,2", "--plot", str(tmp_path / "c.svg"), "--bootstrap", "200")
    assert result.exit_code == 0, result.output
    # one panel is 6.4 in wide (460.8 pt), two panels 11.5 in (828 pt)
    assert 'width="460.8pt"' in (tmp_path / "n.svg").read_text()
    assert 'width="828pt"' in (tmp_path / "c.svg").read_text()
    result = run(tmp_path, cost_lines(), "--n", "1,2", "--plot", str(tmp_path / "c.png"), "--bootstrap", "200")
    assert result.exit_code == 0 and (tmp_path / "c.png").read_bytes().startswith(b"\x89PNG")


def with_cost(cost: object, prompt_id: str = "p4") -> str:
    return json.dumps({"prompt_id": prompt_id, "tag": "counting", "correct": True,
                       "scores": {"good": 1.0, "bad": 0.0}, "cost": cost})


GOOD_COST = {"generator_seconds": 1.0, "verifier_seconds": {"good": 0.1, "bad": 0.1}}


@pytest.mark.parametrize("lines,message", [
    (lambda: [*pool_lines(), with_cost(GOOD_COST)], ":13: cost keys ['generator_seconds', 'verifier_seconds'], "
                                                      "but earlier lines have no cost"),
    (lambda: [*cost_lines(), pool_lines()[0]], ":13: no cost, but earlier lines have "
                                                                        "cost keys"),
    (lambda: [*cost_lines(), with_cost(GOOD_COST)], ":13: cost keys ['generator_seconds', 'verifier_seconds'], "
                                                     "but earlier lines have cost keys ['generator_forward_passes'"),
    (lambda: [with_cost([1, 2])], ":1: 'cost' must be an object"),
    (lambda: [with_cost({**GOOD_COST, "gpu": 1})], ":1: unknown cost key(s) gpu"),
    (lambda: [with_cost({"generator_seconds": 1.0})], ":1: cost lacks verifier_seconds"),
    (lambda: [with_cost({**GOOD_COST, "generator_seconds": -1})], ":1: cost 'generator_seconds' must be a finite "
                                                                   "number >= 0, got -1"),
    (lambda: [with_cost({**GOOD_COST, "generator_seconds": "1"})], "must be a finite number >= 0"),
    (lambda: [with_cost({**GOOD_COST, "verifier_seconds": {"good": 0.1}})],
     ":1: cost 'verifier_seconds' for ['good'], but the scores are for ['bad', 'good']"),
    (lambda: [with_cost({**GOOD_COST, "verifier_seconds": {"good": 0.1, "bad": None}})],
     "cost 'verifier_seconds' of 'bad' must be a finite number >= 0"),
])
def test_bad_costs_are_explained(tmp_path: Path, lines, message: str) -> None:
    result = run(tmp_path, lines(), "--n", "1")
    assert result.exit_code == 1
    assert message in result.output


# ---------------------------------------------------------------------------------------------
# --compare: paired bootstrap


def test_compare_hand_checked(tmp_path: Path) -> None:
    result = run(tmp_path, pool_lines(), "--n", "1..4", "--bootstrap", "200", "--compare", "good", "bad")
    assert result.exit_code == 0, result.output
    assert "good vs bad" in result.output and "p-value" in result.output
    comparison = result.output.split("good vs bad", 1)[1].splitlines()
    rows = {int(line.split()[0]): line for line in comparison if line.split()[:1] and line.split()[0].isdigit()}
    assert sorted(rows) == [1, 2, 3, 4]
    # n = 1: both are a random pick, identical per prompt: no difference, p = 1
    assert rows[1].split() == ["1", "+0.0000", "[+0.0000,", "+0.0000]", "1.0000"]
    # n = 4: good finds the correct candidate wherever there is one, bad never does. Per prompt the
    # difference is 1, 0 (counting) and 1 (colors): overall 0.75; any resample keeps colors at 1 and
    # counting in {0, 0.5, 1}, so every resampled difference is >= 0.5: p = 2 / (200 + 1)
    assert rows[4].split() == ["4", "+0.7500", "[+0.5000,", "+1.0000]", f"{2 / 201:.4f}"]


def test_compare_json_file_and_unchanged_stdout(tmp_path: Path) -> None:
    plain = run(tmp_path, pool_lines(), "--n", "1..4", "--json", "--bootstrap", "200")
    result = run(tmp_path, pool_lines(), "--n", "1..4", "--json", "--bootstrap", "200", "--compare", "good",
                 "random", "--compare-n", "4", "--compare-n", "2", "--compare-json", str(tmp_path / "cmp.json"))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(plain.stdout)  # --json stdout: the curves only
    assert "good vs random" in result.stderr
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert data["a"] == "good" and data["b"] == "random" and data["bootstrap"] == 200
    assert list(data["n"]) == ["2", "4"]
    assert set(data["n"]["4"]) == {"difference", "low", "high", "p_value"}
    # good at 4 = 0.75, random = 0.3125 at every n
    assert data["n"]["4"]["difference"] == pytest.approx(0.75 - 0.3125)
    assert data["n"]["4"]["low"] <= data["n"]["4"]["difference"] <= data["n"]["4"]["high"]
    assert 0 < data["n"]["4"]["p_value"] <= 1


def test_compare_same_strategy_and_oracle(tmp_path: Path) -> None:
    result = run(tmp_path, pool_lines(), "--n", "2", "--bootstrap", "200", "--compare", "oracle", "oracle",
                 "--compare-json", str(tmp_path / "c.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "c.json").read_text())["n"]["2"] == {
        "difference": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


@pytest.mark.parametrize("args,code,message", [
    (["--compare", "good", "nope"], 2, "no verifier 'nope' in the pool; available: bad, good, random, oracle"),
    (["--compare-n", "2"], 2, "--compare-n and --compare-json need --compare A B"),
    (["--compare", "good", "bad", "--compare-n", "5"], 1, "n = 5 is larger than the pool"),
])
def test_compare_errors(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = run(tmp_path, pool_lines(), "--n", "1", *args)
    assert result.exit_code == code
    assert message in result.output
