"""`stepwise prompts geneval2` -> `stepwise eval --suite geneval2` -> `stepwise summary` with a tiny random
Qwen3-VL, on a folder in the layout `stepwise generate` writes and on the reference's prompt -> image JSON;
and bad input, each one clear line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from geneval2_synthetic import RECORDS, write_data
from helpers import stepwise
from PIL import Image

from harness.generation import metadata_bytes
from harness.generators.folder import METADATA_NAME, SAMPLES_DIR, prompt_dir_name, sample_name
from harness.geneval2.soft_tifa import ImageScores, Row, figures, geometric_mean
from harness.geneval2.summary import parse_results, summarize
from harness.tiny.qwen3_vl import write_tiny_qwen3_vl

SAMPLES = 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    source = write_data(tmp_path / "geneval2_data.jsonl")
    code, output = stepwise("prompts", "geneval2", "--from", str(source), "-o", str(tmp_path / "suite"))
    assert code == 0, output
    return tmp_path / "suite"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A folder as `stepwise generate` writes it: NNNNN/metadata.jsonl (the record), NNNNN/samples/{k:05}.png."""
    root = tmp_path / "images"
    rng = np.random.default_rng(3)
    for i, record in enumerate(RECORDS):
        folder = root / prompt_dir_name(i)
        (folder / SAMPLES_DIR).mkdir(parents=True)
        (folder / METADATA_NAME).write_bytes(metadata_bytes(record))
        for k in range(SAMPLES):
            pixels = rng.integers(0, 256, (48 + 16 * k, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / SAMPLES_DIR / sample_name(k))
    return root


def evaluate(*args: str) -> tuple[int, str]:
    return stepwise("eval", "--suite", "geneval2", *args, "--device", "cpu")


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_folder_eval_and_summary(tiny: Path, suite: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.jsonl"
    code, output = evaluate(str(images), "--prompts", str(suite), "--vqa-model", str(tiny), "-o", str(out))
    assert code == 0, output
    assert "6 images scored" in output and not out.with_name("results.jsonl.partial").exists()
    results = read_lines(out)
    assert [(r["prompt_index"], Path(r["filename"]).name) for r in results] == [
        (i, sample_name(k)) for i in range(len(RECORDS)) for k in range(SAMPLES)]
    for result in results:
        record = RECORDS[result["prompt_index"]]
        assert result["suite"] == "geneval2" and result["metadata"] == record
        assert len(result["soft_scores"]) == len(result["tifa_scores"]) == len(record["vqa_list"])
        assert result["soft_tifa_gm"] == geometric_mean(result["soft_scores"])
        assert result["tifa"] == sum(result["tifa_scores"]) / len(record["vqa_list"])
        assert 0 < result["vqascore"] < 1 and result["model"] == str(tiny)
    code, output = stepwise("summary", str(out), "--json")
    assert code == 0, output
    expected = figures([Row(tuple(r["metadata"]["skills"]), r["metadata"]["atom_count"],
                            ImageScores(tuple(r["soft_scores"]), tuple(r["tifa_scores"]), r["vqascore"]))
                        for r in results])
    assert json.loads(output)["soft_tifa_gm"] == expected.soft_tifa_gm
    assert json.loads(output)["atomicity"]["3"]["images"] == 2
    code, text = stepwise("summary", str(out))
    assert code == 0 and text.startswith(summarize(parse_results(out.read_text().splitlines(), str(out))).to_text())


def test_rerun_comes_from_the_cache_without_a_model(tiny: Path, suite: Path, images: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    assert evaluate(str(images), "--vqa-model", str(tiny), "-o", str(first))[0] == 0

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached run built the VQA model")

    monkeypatch.setattr("harness.verifiers.answer_probs.AnswerProbEngine.__init__", no_model)
    code, output = evaluate(str(images), "--vqa-model", str(tiny), "-o", str(second))
    assert code == 0, output
    assert second.read_text() == first.read_text()


def test_mapping_gives_the_folders_scores(tiny: Path, suite: Path, images: Path, tmp_path: Path) -> None:
    from_folder = tmp_path / "folder.jsonl"
    assert evaluate(str(images), "--vqa-model", str(tiny), "-o", str(from_folder), "--no-cache")[0] == 0
    mapping = {r["prompt"]: str(images / prompt_dir_name(i) / SAMPLES_DIR / sample_name(1))
               for i, r in enumerate(RECORDS)}
    (tmp_path / "paths.json").write_text(json.dumps({**mapping, "a prompt of another suite": "x.png"}))
    from_mapping = tmp_path / "mapping.jsonl"
    code, output = evaluate(str(tmp_path / "paths.json"), "--prompts", str(suite), "--vqa-model", str(tiny),
                            "-o", str(from_mapping), "--no-cache")
    assert code == 0, output
    assert "1 entry for prompts outside the suite ignored" in output
    by_file = {r["filename"]: r for r in read_lines(from_folder)}
    for result in read_lines(from_mapping):
        assert result["soft_scores"] == by_file[result["filename"]]["soft_scores"]
        assert result["prompt_index"] == by_file[result["filename"]]["prompt_index"]


def test_corrupt_png_is_one_line_naming_it(tiny: Path, images: Path, tmp_path: Path) -> None:
    bad = images / prompt_dir_name(1) / SAMPLES_DIR / sample_name(0)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    out = tmp_path / "results.jsonl"
    code, output = evaluate(str(images), "--vqa-model", str(tiny), "-o", str(out), "--batch-size", "2")
    assert code == 1
    line = output.strip().splitlines()[-1]  # after transformers' weight-loading bar
    assert line.startswith(f"Error: {bad}: corrupt or unreadable image")
    assert line.endswith(f"; 2 result(s) kept in {out}.partial (re-running resumes from the cache)")
    assert len(read_lines(Path(f"{out}.partial"))) == 2
    code, output = evaluate(str(images), "--vqa-model", str(tiny), "-o", str(out), "--on-error", "skip")
    assert code == 0 and f"skipped {bad}: corrupt or unreadable image" in output
    assert len(read_lines(out)) == len(RECORDS) * SAMPLES - 1


def test_bad_mappings(suite: Path, images: Path, tmp_path: Path) -> None:
    path = tmp_path / "paths.json"
    path.write_text(json.dumps({RECORDS[0]["prompt"]: "a.png"}))
    code, output = evaluate(str(path), "--prompts", str(suite), "-o", str(tmp_path / "r.jsonl"))
    assert code == 1 and output.strip().splitlines() == [
        f"Error: {path}: no image path for 2 of the suite's 3 prompts ('a dog riding a wooden bicycle'; "
        "'ten blue balloons above two cats'); the reference needs one per prompt"]
    path.write_text("{not json")
    code, output = evaluate(str(path), "--prompts", str(suite), "-o", str(tmp_path / "r.jsonl"))
    assert code == 1 and len(output.strip().splitlines()) == 1 and f"Error: {path}: not a JSON object" in output
    code, output = evaluate(str(path), "-o", str(tmp_path / "r.jsonl"))
    assert code == 1 and "needs the suite: add --prompts" in output
    missing = tmp_path / "nowhere.png"
    path.write_text(json.dumps({r["prompt"]: str(missing) for r in RECORDS}))
    code, output = evaluate(str(path), "--prompts", str(suite), "-o", str(tmp_path / "r.jsonl"))
    assert code == 1 and f"{missing}: image of prompt 0 ('three red cups') named in {path}: no such file" in output


def test_folder_record_that_differs_from_the_suite(suite: Path, images: Path, tmp_path: Path) -> None:
    changed = dict(RECORDS[2], atom_count=5)
    (images / prompt_dir_name(2) / METADATA_NAME).write_bytes(metadata_bytes(changed))
    code, output = evaluate(str(images), "--prompts", str(suite), "-o", str(tmp_path / "r.jsonl"))
    assert code == 1
    assert (f"{images / prompt_dir_name(2) / METADATA_NAME}: differs from prompt 2 of the suite in 'atom_count'"
            in output)
    (images / prompt_dir_name(1) / METADATA_NAME).write_text('{"prompt": "x"}')
    code, output = evaluate(str(images), "-o", str(tmp_path / "r.jsonl"))
    assert code == 1 and "not a GenEval 2 record: missing key(s) 'atom_count', 'vqa_list', 'skills'" in output


def test_options_of_the_other_suite_are_refused(images: Path, tmp_path: Path) -> None:
    code, output = evaluate(str(images), "-o", str(tmp_path / "r.jsonl"), "--threshold", "0.5")
    assert code == 2 and "--threshold: not an option of --suite geneval2" in output
    code, output = stepwise("eval", str(images), "-o", str(tmp_path / "r.jsonl"), "--vqa-model", "x")
    assert code == 2 and "--vqa-model: not an option of --suite geneval" in output


def test_missing_model_is_one_line(images: Path, tmp_path: Path) -> None:
    code, output = evaluate(str(images), "--vqa-model", str(tmp_path / "no-model"), "-o", str(tmp_path / "r.jsonl"))
    assert code == 1
    [line] = output.strip().splitlines()
    assert line.startswith(f"Error: GenEval 2 VQA model checkpoint '{tmp_path / 'no-model'}' not found")
    assert not (tmp_path / "r.jsonl.partial").exists()
