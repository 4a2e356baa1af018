import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.geneval.summary import summarize


def record(tag: str, prompt: str, correct: bool, backend: str | None = None) -> dict:
    metadata = json.dumps({"tag": tag, "prompt": prompt, "include": []})
    out = {"tag": tag, "prompt": prompt, "correct": correct, "metadata": metadata}
    if backend:
        out["backend"] = backend
    return out


RECORDS = [
    record("two_object", "a photo of a cat and a dog", True),
    record("two_object", "a photo of a cat and a dog", False),
    record("single_object", "a photo of a cat", False),
    record("single_object", "a photo of a cat", False),
    record("single_object", "a photo of a bench", True),
    record("counting", "a photo of two cups", True),
]


def test_summary_figures_match_geneval_definitions() -> None:
    s = summarize(RECORDS)
    assert s.images == 6
    assert s.prompts == 4  # distinct metadata strings
    assert s.correct_images == pytest.approx(3 / 6)
    assert s.correct_prompts == pytest.approx(3 / 4)  # a prompt counts if any image is correct
    # order of first appearance, as pandas groupby(sort=False)
    assert [t.tag for t in s.tasks] == ["two_object", "single_object", "counting"]
    assert [(t.correct, t.total) for t in s.tasks] == [(1, 2), (1, 3), (1, 1)]
    assert s.overall == pytest.approx((1 / 2 + 1 / 3 + 1) / 3)  # mean over tasks, not images


def test_text_output_has_geneval_format(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    result = CliRunner().invoke(main, ["summary", str(path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[:6] == ["Summary", "=======", "Total images: 6", "Total prompts: 4",
                         "% correct images: 50.00%", "% correct prompts: 75.00%"]
    assert "two_object       = 50.00% (1 / 2)" in lines
    assert "single_object    = 33.33% (1 / 3)" in lines
    assert "Overall score (avg. over tasks): 0.61111" in lines


def test_json_output(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    result = CliRunner().invoke(main, ["summary", str(path), "--json"])
    data = json.loads(result.output)
    assert data["overall"] == pytest.approx(0.6111111)
    assert data["tasks"]["counting"] == {"accuracy": 1.0, "correct": 1, "total": 1}


def test_mixed_backends_are_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    rows = [record("counting", "a", True, "mmdet"), record("counting", "a", False, "hf")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = CliRunner().invoke(main, ["summary", str(path)])
    assert result.exit_code == 1
    assert "mixes detector backends (mmdet, hf)" in result.output
    assert CliRunner().invoke(main, ["summary", str(path), "--allow-mixed-backends"]).exit_code == 0


@pytest.mark.parametrize("content,message", [
    ("", "no results"),
    ('{"tag": "counting", "correct": true, "metadata": "{}"}\nnot json\n', ":2: not valid JSON"),
    ('{"tag": "counting", "metadata": "{}"}\n', ":1: missing key(s) correct"),
])
def test_bad_results_files_are_named(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    result = CliRunner().invoke(main, ["summary", str(path)])
    assert result.exit_code == 1
    assert message in result.output
