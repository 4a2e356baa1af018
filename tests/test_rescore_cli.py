import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main

COUNTING = {"tag": "counting", "include": [{"class": "cup", "count": 2}],
            "exclude": [{"class": "cup", "count": 3}], "prompt": "a photo of two cups"}
COLORS = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}],
          "prompt": "a photo of a red car"}


def line(metadata: dict, detections: dict, **extra: object) -> str:
    return json.dumps({"metadata": metadata, "detections": detections, **extra})


def cups(*scores: float) -> dict:
    return {"cup": [{"box": [10 * i, 0, 10 * i + 8, 8], "score": s} for i, s in enumerate(scores)]}


def run(tmp_path: Path, lines: list[str], *args: str) -> tuple[int, str, list[dict]]:
    src = tmp_path / "detections.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(main, ["rescore", str(src), "-o", str(out), *args])
    ok = result.exit_code == 0 and out.exists()
    records = [json.loads(x) for x in out.read_text().splitlines()] if ok else []
    return result.exit_code, result.output, records


def test_thresholds_change_verdicts_in_order(tmp_path: Path) -> None:
    lines = [line(COUNTING, cups(0.95, 0.92, 0.5), filename="a.png"),
             line(COUNTING, cups(0.95, 0.85), filename="b.png")]
    code, output, records = run(tmp_path, lines)
    assert code == 0, output
    assert [r["filename"] for r in records] == ["a.png", "b.png"]
    assert [r["correct"] for r in records] == [True, False]
    assert records[1]["reason"] == "expected cup>=2, found 1"
    code, _, records = run(tmp_path, lines, "--counting-threshold", "0.4")
    assert [r["correct"] for r in records] == [False, True]
    assert records[0]["reason"] == "expected cup<3, found 3"
    # GenEval-style --options override the flags
    code, _, records = run(tmp_path, lines, "--options", "counting_threshold=0.4")
    assert [r["correct"] for r in records] == [False, True]


def test_output_has_geneval_keys_and_stdout_default(tmp_path: Path) -> None:
    src = tmp_path / "d.jsonl"
    src.write_text(line(COLORS, {"car": [{"box": [0, 0, 5, 5], "score": 0.9, "color": "blue"}]}) + "\n")
    result = CliRunner().invoke(main, ["rescore", str(src)])
    assert result.exit_code == 0, result.output
    record = json.loads(result.output)
    assert {"tag", "prompt", "correct", "reason", "metadata", "details"} <= set(record)
    assert record["reason"] == "expected red car>=1, found 0 red; and 1 blue"
    assert json.loads(record["metadata"]) == COLORS
    assert json.loads(record["details"]) == {"car": [[0.0, 0.0, 5.0, 5.0, pytest.approx(0.9)]]}


def test_geneval_results_with_string_metadata_are_accepted(tmp_path: Path) -> None:
    code, output, records = run(tmp_path, [line(json.dumps(COUNTING), cups(0.95, 0.95))])  # type: ignore[arg-type]
    assert code == 0, output
    assert records[0]["correct"] is True


@pytest.mark.parametrize("bad,message", [
    ("not json", "detections.jsonl:2: not valid JSON"),
    (json.dumps({"metadata": COUNTING}), "detections.jsonl:2: each line needs 'metadata' and 'detections'"),
    (line(COUNTING, {"unicorn": []}), "'unicorn' is not one of GenEval's 80 class names"),
    (line(COUNTING, {"cup": [{"box": [0, 0, 1], "score": 0.5}]}), "'box' must be [x1, y1, x2, y2]"),
    (line(COUNTING, {"cup": [{"box": [0, 0, 1, 1], "score": "high"}]}), "'score' must be a number"),
    (line(COUNTING, {"cup": [{"box": [0, 0, 1, 1], "score": 0.5, "color": "teal"}]}),
     "'color' 'teal' is not one of"),
    (line({"tag": "colours", "prompt": "x"}, {}), "unknown tag 'colours'"),
    (line(COLORS, {"car": [{"box": [0, 0, 5, 5], "score": 0.9}]}), "re-run `stepwise eval --colors all`"),
])
def test_malformed_lines_name_the_line_and_write_nothing(tmp_path: Path, bad: str, message: str) -> None:
    out = tmp_path / "out.jsonl"
    out.write_text("previous results\n")
    code, output, _ = run(tmp_path, [line(COUNTING, cups(0.95)), bad])
    assert code == 1
    assert message in output
    assert ":2:" in output
    assert out.read_text() == "previous results\n"  # nothing already written is lost


def test_missing_input_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rescore", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 1
    assert "nope.jsonl" in result.output


def test_details_follow_geneval_class_order_whatever_the_input_order(tmp_path: Path) -> None:
    two = {"tag": "two_object", "include": [{"class": "cup", "count": 1}, {"class": "person", "count": 1}],
           "prompt": "a photo of a cup and a person"}
    dets = {"cup": [{"box": [0, 0, 4, 4], "score": 0.8}], "person": [{"box": [5, 5, 9, 9], "score": 0.7}]}
    code, output, records = run(tmp_path, [line(two, dets)])
    assert code == 0, output
    assert list(json.loads(records[0]["details"])) == ["person", "cup"]  # COCO order: person first
