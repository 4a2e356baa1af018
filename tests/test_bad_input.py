"""Bad input, tried as a new user would, through the real CLI: exit code 1, one line naming the file or
field, no traceback, and the input files left exactly as they were. Plus: an unexpected exception
(a bug) still shows its traceback, with one line asking for a report.

Read-only and damaged stores, and a run moved to another folder, are in test_store_integrity.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise

from harness.prompts import geneval_suite

DEEP = 5000  # levels of nesting: far past what Python's parser recursion allows


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    runner_plugins.register_isolated(monkeypatch)


@pytest.fixture(scope="module")
def flags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return runner_plugins.tiny_model_flags(tmp_path_factory)


def digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (or of root itself): to check that an input was left unchanged."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def fails_naming(args: list[str], name: str, *inputs: Path, message: str = "") -> str:
    """Run the CLI: exit 1, an error line naming `name` (and holding `message`), no traceback, inputs unchanged."""
    before = {p: digest(p) for p in inputs}
    code, output = stepwise(*args)
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and name in errors[0] and message in errors[0], output
    for p in inputs:
        assert digest(p) == before[p], f"{p} changed"
    return errors[0]


def deep_json() -> str:
    return "[" * DEEP + "]" * DEEP


def bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG whose header claims width x height pixels, in a few hundred bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1024))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A GenEval folder of prompt 0 with two shapes samples (`stepwise generate`); copy before changing."""
    out = tmp_path_factory.mktemp("made") / "folder"
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        code, output = stepwise("generate", "--generator", "shapes", "--per-task", "0", "--prompts", "0", "--n", "2",
                                "-o", str(out))
    assert code == 0, output
    yield out


@pytest.fixture
def folder(image_folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(image_folder, tmp_path / "folder"))


def results_file(path: Path, records: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


GOOD = {"tag": "single_object", "correct": True, "prompt": "a photo of a bench",
        "metadata": json.dumps(geneval_suite(per_task=0)[0]),
        "detections": {"bench": [{"box": [1.0, 2.0, 30.0, 40.0], "score": 0.93}]}}


# ---------------------------------------------------------------------------------------------
# JSON nested thousands of levels deep


def test_deeply_nested_metadata_in_an_image_folder(folder: Path, flags: list[str], tmp_path: Path) -> None:
    (folder / "00000" / "metadata.jsonl").write_text(deep_json())
    fails_naming(["eval", str(folder), "-o", str(tmp_path / "r.jsonl"), *flags], "00000/metadata.jsonl", folder,
                 message="nested too deeply")


def test_deeply_nested_json_lines(tmp_path: Path, flags: list[str]) -> None:
    deep = results_file(tmp_path / "deep.jsonl", [GOOD, deep_json()])
    fails_naming(["summary", str(deep)], f"{deep}:2", deep, message="nested too deeply")
    fails_naming(["rescore", str(deep)], f"{deep}:2", deep, message="nested too deeply")
    pool = pool_file(tmp_path)
    pool.write_text(pool.read_text() + deep_json() + "\n")
    fails_naming(["curve", "--from-jsonl", str(pool)], f"{pool}:5", pool, message="nested too deeply")
    nested_metadata = results_file(tmp_path / "meta.jsonl", [{**GOOD, "metadata": deep_json()}])
    fails_naming(["rescore", str(nested_metadata)], f"{nested_metadata}:1", nested_metadata,
                 message="nested too deeply")
    suite = results_file(tmp_path / "suite.jsonl", [deep_json()])
    fails_naming(["run", "--generator", "shapes", "--pool", "1", "--suite", str(suite), "--db",
                  f"sqlite:///{tmp_path / 's.db'}", "--out", str(tmp_path / "out"), *flags], f"{suite}:1", suite,
                 message="nested too deeply")


def test_deeply_nested_spec_and_manifest(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text("generator = " + "[" * DEEP + "]" * DEEP + "\n")
    fails_naming(["run", "--spec", str(spec)], str(spec), spec, message="nested too deeply")
    entry = tmp_path / "subs" / "deep"
    entry.mkdir(parents=True)
    (entry / "submission.toml").write_text("name = " + "[" * DEEP + "]" * DEEP + "\n")
    code, output = stepwise("validate", str(entry))
    assert code == 1 and "submission.toml: not valid TOML: nested too deeply" in output and "Traceback" not in output


# ---------------------------------------------------------------------------------------------
# a decompression bomb


def second_sample(folder: Path) -> Path:
    return sorted((folder / "00000" / "samples").iterdir())[1]


def test_a_decompression_bomb_is_named_and_skipped(folder: Path, flags: list[str], tmp_path: Path) -> None:
    bomb = bomb_png(second_sample(folder))
    fails_naming(["eval", str(folder), "-o", str(tmp_path / "r.jsonl"), *flags], str(bomb), folder,
                 message="claims 100000 x 100000 pixels")
    before = digest(folder)
    code, output = stepwise("eval", str(folder), "-o", str(tmp_path / "r.jsonl"), "--on-error", "skip", *flags)
    assert code == 0, output
    assert f"skipped {bomb}: the image claims 100000 x 100000 pixels" in output
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 1  # the other sample was judged
    assert digest(folder) == before


def test_a_decompression_bomb_in_the_folder_generator(folder: Path, flags: list[str], tmp_path: Path) -> None:
    bomb = bomb_png(second_sample(folder))
    fails_naming(["run", "--generator", "folder", "--param", f"path={folder}", "--param", "per_task=0",
                  "--per-task", "0", "--prompts", "0", "--pool", "2", "--db", f"sqlite:///{tmp_path / 's.db'}",
                  "--out", str(tmp_path / "out"), *flags], str(bomb), folder, message="claims 100000 x 100000")


def test_a_bomb_just_under_pillows_limit_is_refused_too(tmp_path: Path) -> None:
    from harness.images import MAX_PIXELS, ImageFileError, image_size

    big = bomb_png(tmp_path / "big.png", 10_000, 10_000)  # 1e8 pixels: Pillow itself only warns
    assert 10_000 * 10_000 > MAX_PIXELS
    with pytest.raises(ImageFileError, match=r"big\.png: the image claims 10000 x 10000 pixels"):
        image_size(big)


# ---------------------------------------------------------------------------------------------
# outputs below an existing regular file


def test_outputs_below_a_regular_file(folder: Path, flags: list[str], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    results = results_file(tmp_path / "results.jsonl", [GOOD])
    below = notes / "out"
    fails_naming(["eval", str(folder), "-o", str(below / "r.jsonl"), *flags], str(notes), notes, folder)
    fails_naming(["rescore", str(results), "-o", str(below / "r.jsonl")], str(notes), notes, results)
    fails_naming(["prompts", "geneval", "-o", str(below)], str(notes), notes)
    fails_naming(["generate", "--generator", "shapes", "--per-task", "0", "--prompts", "0", "--n", "1", "-o",
                  str(below)], str(notes), notes)
    fails_naming(["curve", "--from-jsonl", str(pool_file(tmp_path)), "--n", "1..2", "--plot", str(below / "c.png")],
                 str(notes), notes)
    fails_naming(["leaderboard", "build", "--submissions", str(tmp_path), "--out", str(below / "site"),
                  "--recheck", "none"], str(notes), notes)
    assert notes.read_text() == "keep me"


def pool_file(tmp_path: Path) -> Path:
    return results_file(tmp_path / "pool.jsonl", [
        {"prompt_id": f"{p:05d}", "tag": "single_object", "correct": k == 0, "scores": {"v": k / 2}}
        for p in range(2) for k in range(2)])


def test_a_store_url_naming_a_file_that_is_not_a_database(tmp_path: Path, flags: list[str]) -> None:
    """SQLite would take a short text file for an empty database and write a store over it."""
    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    for args in (["run", "--generator", "shapes", "--per-task", "0", "--prompts", "0", "--pool", "1", "--db",
                  f"sqlite:///{notes}", "--out", str(tmp_path / "out"), *flags],
                 ["migrate", "--db", f"sqlite:///{notes}"], ["curve", "--run", "0" * 64, "--db", f"sqlite:///{notes}"]):
        fails_naming(args, str(notes), notes, message="is not a SQLite database file")
    assert notes.read_text() == "x"


# ---------------------------------------------------------------------------------------------
# rescore onto its own input; every field kept


def test_rescore_refuses_to_overwrite_its_input_and_keeps_every_field(tmp_path: Path) -> None:
    source = results_file(tmp_path / "results.jsonl", [{**GOOD, "filename": "x/0000.png", "sha256": "a" * 64,
                                                        "backend": "hf", "evaluator": "e" * 64}])
    fails_naming(["rescore", str(source), "-o", str(source)], str(source), source, message="that is the input file")
    link = tmp_path / "link.jsonl"
    link.symlink_to(source)
    fails_naming(["rescore", str(source), "-o", str(link)], str(link), source, message="that is the input file")
    out = tmp_path / "out.jsonl"
    code, output = stepwise("rescore", str(source), "-o", str(out), "--threshold", "0.95")
    assert code == 0, output
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    assert record["detections"] == GOOD["detections"] and record["sha256"] == "a" * 64  # nothing dropped
    assert record["filename"] == "x/0000.png" and record["backend"] == "hf" and "evaluator" not in record
    assert record["correct"] is False and record["options"]["threshold"] == 0.95
    again = tmp_path / "again.jsonl"
    code, output = stepwise("rescore", str(out), "-o", str(again))  # the output is valid input again
    assert code == 0 and json.loads(again.read_text())["correct"] is True, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.jsonl", "link.jsonl", "out.jsonl", "results.jsonl"]


# ---------------------------------------------------------------------------------------------
# results records with the wrong types; non-UTF-8 and empty files


@pytest.mark.parametrize("record,message", [
    ({**GOOD, "correct": "false"}, "correct must be true or false, got 'false'"),
    ({**GOOD, "correct": 1}, "correct must be true or false, got 1"),
    ({**GOOD, "tag": ["single_object"]}, "tag must be a string"),
    ({**GOOD, "metadata": 7}, "metadata must be GenEval's metadata"),
])
def test_summary_type_checks_results_records(tmp_path: Path, record: dict[str, Any], message: str) -> None:
    path = results_file(tmp_path / "results.jsonl", [GOOD, record])
    fails_naming(["summary", str(path)], f"{path}:2", path, message=message)


def test_non_utf8_and_empty_files_are_named(folder: Path, flags: list[str], tmp_path: Path) -> None:
    binary, empty = tmp_path / "binary.jsonl", tmp_path / "empty.jsonl"
    binary.write_bytes(json.dumps(GOOD).encode() + b"\n\xff\xfe\x00garbage\n")
    empty.write_text("")
    for path, message in ((binary, "not UTF-8 text"), (empty, "empty")):
        fails_naming(["summary", str(path)], str(path), path, message=message)
        fails_naming(["rescore", str(path)], str(path), path, message=message)
        fails_naming(["curve", "--from-jsonl", str(path)], str(path), path)
        fails_naming(["run", "--generator", "shapes", "--pool", "1", "--suite", str(path), "--db",
                      f"sqlite:///{tmp_path / 's.db'}", "--out", str(tmp_path / "out"), *flags], str(path), path,
                     message=message)
    spec = tmp_path / "spec.toml"
    spec.write_bytes(b"generator = \"\xff\"\n")
    fails_naming(["run", "--spec", str(spec)], str(spec), spec, message="not UTF-8 text")
    spec.write_text("")
    fails_naming(["run", "--spec", str(spec)], str(spec), spec, message="empty")
    metadata = folder / "00000" / "metadata.jsonl"
    for data, message in ((b"\xff\xfe", "not UTF-8 text"), (b"", "empty")):
        metadata.write_bytes(data)
        fails_naming(["eval", str(folder), "-o", str(tmp_path / "r.jsonl"), *flags], str(metadata), folder,
                     message=message)


# ---------------------------------------------------------------------------------------------
# a bug still shows its traceback, with a line asking for a report


def test_an_unexpected_exception_keeps_its_traceback_and_asks_for_a_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from harness import cli
    from harness.geneval import summary

    def broken(lines: Any, source: str) -> Any:
        raise KeyError("an internal mistake")

    monkeypatch.setattr(summary, "parse_results", broken)
    result = CliRunner().invoke(cli.main, ["summary", "-"], input="{}\n")
    assert isinstance(result.exception, KeyError)  # not swallowed: the traceback is printed
    assert "this is a bug in stepwise" in result.output and "please report it" in result.output


def test_a_user_error_in_a_subprocess_prints_one_line(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it: no traceback on a file that cannot be written."""
    import subprocess
    import sys

    notes = tmp_path / "notes.txt"
    notes.write_text("x")
    code = "from harness.cli import main; main()"
    done = subprocess.run([sys.executable, "-c", code, "prompts", "geneval", "-o", str(notes / "sub")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and str(notes) in done.stderr
