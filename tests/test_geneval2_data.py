"""GenEval 2's data reader and suite folder (harness/geneval2/data.py, `stepwise prompts geneval2`).

The committed tests use a synthetic file in the published format (tests/geneval2_synthetic.py);
the published file (CC BY-NC 4.0, never committed) is checked when this machine has it.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from geneval2_synthetic import RECORDS, data_text, real_data_file, write_data
from helpers import stepwise

from harness.geneval2.data import (
    METADATA_FILE,
    PROMPTS_FILE,
    PUBLISHED_SHA256,
    SUITE_FILE,
    DataError,
    read_data,
    read_suite,
    write_suite,
)


def test_reads_the_synthetic_file(tmp_path: Path) -> None:
    path = write_data(tmp_path / "data.jsonl")
    suite = read_data(path)
    assert suite.records == RECORDS
    assert suite.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not suite.published
    assert suite.questions == 15
    assert suite.skill_counts() == {"object": 5, "attribute": 3, "count": 5, "position": 1, "verb": 1}
    assert suite.atom_counts() == {3: 1, 4: 1, 5: 0, 6: 1, 7: 0, 8: 0, 9: 0, 10: 0}


def test_suite_folder_round_trip(tmp_path: Path) -> None:
    source = write_data(tmp_path / "src" / "geneval2_data.jsonl")
    (source.parent / "LICENSE").write_text("CC BY-NC 4.0 ...\n")
    suite = read_data(source)
    written = write_suite(suite, tmp_path / "suite")
    names = sorted(p.name for p in written)
    assert names == sorted([METADATA_FILE, PROMPTS_FILE, SUITE_FILE, "LICENSE"])
    out = tmp_path / "suite"
    # records written as the published file writes them: the same bytes as a json.dumps-per-line source
    assert (out / METADATA_FILE).read_bytes() == source.read_bytes()
    assert (out / PROMPTS_FILE).read_text().splitlines() == [r["prompt"] for r in RECORDS]
    info = json.loads((out / SUITE_FILE).read_text())
    assert info["suite"] == "geneval2"
    assert info["sha256"] == suite.sha256 and info["published"] is False
    assert info["published_sha256"] == PUBLISHED_SHA256
    assert info["prompts"] == 3 and info["questions"] == 15
    assert "CC BY-NC 4.0" in info["license"]
    assert (out / "LICENSE").read_text() == "CC BY-NC 4.0 ...\n"
    assert read_suite(out).records == RECORDS  # the folder reads back
    assert read_suite(out / METADATA_FILE).records == RECORDS


def test_prompts_command_warns_about_another_hash_and_records_it(tmp_path: Path) -> None:
    source = write_data(tmp_path / "geneval2_data.jsonl")
    code, output = stepwise("prompts", "geneval2", "--from", str(source), "-o", str(tmp_path / "suite"))
    assert code == 0, output
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert f"warning: {source}: sha256 {digest} is not the published file's ({PUBLISHED_SHA256}); accepted" in output
    assert "wrote 3 prompts (15 questions)" in output
    assert "skills: object 5, attribute 3, count 5, position 1, verb 1" in output
    assert json.loads((tmp_path / "suite" / SUITE_FILE).read_text())["sha256"] == digest


def _mutated(change: Any) -> list[dict[str, Any]]:
    records = copy.deepcopy(RECORDS)
    change(records)
    return records


def _set(index: int, key: str, value: Any) -> Any:
    def apply(records: list[dict[str, Any]]) -> None:
        records[index][key] = value
    return apply


def _delete(index: int, key: str) -> Any:
    def apply(records: list[dict[str, Any]]) -> None:
        del records[index][key]
    return apply


def _answer(index: int, pair: int, answer: Any) -> Any:
    def apply(records: list[dict[str, Any]]) -> None:
        records[index]["vqa_list"][pair][1] = answer
    return apply


# (how the file is spoiled, the line it names, what the message must say)
BAD_RECORDS = [
    (_delete(1, "skills"), 2, "missing key(s) 'skills'"),
    (_answer(0, 0, 3), 1, "'vqa_list'[0]: the answer must be a string, got 3"),
    (_set(2, "vqa_list", []), 3, "'vqa_list' must be a non-empty list of [question, answer] pairs, got []"),
    (_set(0, "skills", ["count", "attribute"]), 1, "'skills' has 2 entries for 3 questions in 'vqa_list'"),
    (_set(1, "skills", ["count", "object", "action", "attribute", "count", "object"]), 2,
     "'skills'[2]: unknown skill \"action\""),
    (_set(0, "atom_count", 11), 1, "'atom_count' must be an integer 3..10"),
    (_set(0, "atom_count", True), 1, "'atom_count' must be an integer 3..10"),
    (_set(0, "atom_count", "3"), 1, "'atom_count' must be an integer 3..10"),
    (_set(2, "prompt", ""), 3, "'prompt' must be a non-empty string"),
    (_set(2, "prompt", "two\ncats"), 3, "'prompt' must be one line"),
    (_answer(0, 0, "3"), 1, "a 'How many' question needs a number word 'one'..'ten' as its answer"),
    (_answer(0, 1, "No"), 1, "the answer must be 'Yes' for a question not starting with 'How many'"),
    (_set(1, "vqa_list", [["Is the dog riding the bicycle?"]] * 6), 2, "expected a [question, answer] pair"),
    (lambda rs: rs.append(copy.deepcopy(rs[0])), 4, "prompt 'three red cups' repeats line 1"),
]


@pytest.mark.parametrize(("spoil", "line", "message"), BAD_RECORDS)
def test_bad_record_is_one_error_naming_the_line(tmp_path: Path, spoil: Any, line: int, message: str) -> None:
    path = write_data(tmp_path / "data.jsonl", _mutated(spoil))
    with pytest.raises(DataError) as caught:
        read_data(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)


@pytest.mark.parametrize(("content", "line", "message"), [
    (data_text().encode() + b'{"prompt": "caf\xe9"}\n', 4, "not UTF-8 text (byte 0xe9 at column 16)"),
    (data_text().encode() + b"[" * 100_000 + b"\n", 4, "nested too deeply"),
    (data_text().encode().replace(b"}\n", b"\n", 1), 1, "not valid JSON"),
    (b"\n" + data_text().encode(), 1, "blank line"),
    (b"[1, 2]\n", 1, "expected a JSON object, got a list"),
])
def test_unreadable_line_is_one_error_naming_the_line(tmp_path: Path, content: bytes, line: int,
                                                      message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        read_data(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty.jsonl").write_bytes(b"")
    with pytest.raises(DataError, match="no records"):
        read_data(tmp_path / "empty.jsonl")
    with pytest.raises(DataError, match="cannot read"):
        read_data(tmp_path / "absent.jsonl")
    with pytest.raises(DataError, match=f"no {METADATA_FILE}"):
        read_suite(tmp_path)


def test_prompts_command_bad_file_is_one_line(tmp_path: Path) -> None:
    path = write_data(tmp_path / "data.jsonl", _mutated(_delete(1, "vqa_list")))
    code, output = stepwise("prompts", "geneval2", "--from", str(path), "-o", str(tmp_path / "suite"))
    assert code == 1
    assert output.strip().splitlines() == [f"Error: {path}:2: missing key(s) 'vqa_list'"]
    assert not (tmp_path / "suite").exists()


def test_extra_keys_are_kept(tmp_path: Path) -> None:
    records = _mutated(_set(0, "id", "p-0"))
    suite = read_data(write_data(tmp_path / "data.jsonl", records))
    assert suite.records[0]["id"] == "p-0"


REAL = real_data_file()


@pytest.mark.skipif(REAL is None, reason="the published geneval2_data.jsonl is not on this machine "
                                         "(../shared/data/geneval2/ or $STEPWISE_GENEVAL2_DATA)")
def test_the_published_file(tmp_path: Path) -> None:
    assert REAL is not None
    suite = read_data(REAL)
    assert suite.sha256 == PUBLISHED_SHA256 and suite.published
    assert len(suite.records) == 800
    assert suite.questions == 6012
    assert suite.skill_counts() == {"object": 2025, "attribute": 1214, "count": 2025, "position": 662, "verb": 86}
    assert suite.atom_counts() == {k: 100 for k in range(3, 11)}
    code, output = stepwise("prompts", "geneval2", "--from", str(REAL), "-o", str(tmp_path / "suite"))
    assert code == 0 and "warning" not in output
    written = (tmp_path / "suite" / METADATA_FILE).read_bytes()
    assert hashlib.sha256(written).hexdigest() == PUBLISHED_SHA256  # the records, byte for byte
    assert len((tmp_path / "suite" / PROMPTS_FILE).read_text().splitlines()) == 800
