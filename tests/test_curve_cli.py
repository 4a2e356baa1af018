import json
from pathlib import Path

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
