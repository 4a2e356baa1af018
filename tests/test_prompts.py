import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.geneval.rules import check_metadata
from harness.prompts import geneval_suite, read_metadata, write_suite

# sha256 of GenEval's published prompts/evaluation_metadata.jsonl and generation_prompts.txt.
METADATA_SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"
PROMPTS_SHA256 = "55b6e3650e980c13daf30569eb666e000faf19bfc2b7b4cbe999fcdb7aa9d680"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cli_defaults_reproduce_geneval_files_byte_for_byte(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["prompts", "geneval", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sha256(tmp_path / "evaluation_metadata.jsonl") == METADATA_SHA256
    assert sha256(tmp_path / "generation_prompts.txt") == PROMPTS_SHA256


def test_default_suite_has_geneval_task_counts() -> None:
    suite = geneval_suite()
    counts = Counter(s["tag"] for s in suite)
    assert len(suite) == 553
    assert counts == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                      "position": 100, "color_attr": 100}
    # tasks appear in GenEval's order
    assert list(counts) == ["single_object", "two_object", "counting", "colors", "position", "color_attr"]


def test_first_lines_are_geneval_s() -> None:
    suite = geneval_suite()
    assert json.dumps(suite[0]) == (
        '{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"}'
    )
    position = next(s for s in suite if s["tag"] == "position")
    assert list(position) == ["tag", "include", "prompt"]
    assert isinstance(position["include"][1]["position"][1], int)


@pytest.mark.parametrize("seed,per_task", [(0, 5), (43, 20), (7, 0)])
def test_other_seeds_give_valid_deduplicated_suites(seed: int, per_task: int) -> None:
    suite = geneval_suite(seed=seed, per_task=per_task)
    keys = [json.dumps(s, sort_keys=True) for s in suite]
    assert len(keys) == len(set(keys))
    assert Counter(s["tag"] for s in suite)["single_object"] == 80
    assert len(suite) <= 80 + 5 * per_task
    assert all(check_metadata(s) == [] for s in suite)
    # no "[colour] person" prompts, as in GenEval
    assert not any(r.get("class") == "person" and "color" in r for s in suite for r in s["include"])


def test_seed_changes_the_suite() -> None:
    assert geneval_suite(seed=1, per_task=10) != geneval_suite(seed=2, per_task=10)


def test_read_metadata_roundtrip_and_names_bad_line(tmp_path: Path) -> None:
    suite = geneval_suite(per_task=3)
    metadata_path, _ = write_suite(suite, tmp_path)
    assert read_metadata(metadata_path) == json.loads(json.dumps(suite))
    lines = metadata_path.read_text().splitlines()
    lines[4] = '{"tag": "counting", "prompt": "x", "include": [{"class": "unicorn", "count": 2}]}'
    metadata_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"evaluation_metadata.jsonl:5: .*unicorn"):
        read_metadata(metadata_path)


def test_negative_per_task_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["prompts", "geneval", "--per-task", "-1", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "per-task" in result.output
