"""`stepwise generate`: GenEval's folder layout, GenEval's metadata bytes, resume, the seeds of `stepwise run`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import runner_plugins
from click.testing import CliRunner

from harness.cli import main
from harness.generation import MANIFEST_NAME, png_bytes
from harness.geneval.folder import scan_image_folder
from harness.plugins import GenerationRequest
from harness.prompts import geneval_suite, write_suite
from harness.runner import candidate_seed

PROMPTS = "0,80..84"  # one single-object prompt, then one of every other task (per_task 1)
INDICES = [0, 80, 81, 82, 83, 84]


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    runner_plugins.register_isolated(monkeypatch)
    yield
    runner_plugins.FAIL_ON.clear()


def generate(out: Path, *extra: str, n: int = 3, expect: int = 0) -> str:
    args = ["generate", "--generator", "shapes", "--per-task", "1", "--prompts", PROMPTS, "--n", str(n),
            "-o", str(out), *extra]
    result = CliRunner().invoke(main, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == expect, result.output
    return result.output


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_writes_geneval_layout_with_geneval_metadata_bytes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(out, "--previews")
    expected = {MANIFEST_NAME}
    for i in INDICES:
        expected.add(f"{i:05d}/metadata.jsonl")
        for k in range(3):
            expected |= {f"{i:05d}/samples/{k:05d}.png", f"{i:05d}/process/{k:05d}_step0.png",
                         f"{i:05d}/process/{k:05d}_step1.png"}
    written = files(out)
    assert set(written) == expected  # no grid.png, no temporaries
    # GenEval's generation script: json.dump(metadata, fp) of the suite's line, so no newline.
    metadata_path, _ = write_suite(geneval_suite(per_task=1), tmp_path / "suite")
    lines = metadata_path.read_bytes().split(b"\n")
    for i in INDICES:
        assert written[f"{i:05d}/metadata.jsonl"] == lines[i]


def test_output_is_what_stepwise_eval_reads(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(out, "--previews")
    scan = scan_image_folder(out)
    assert scan.problems == [] and scan.ignored == []
    assert [(s.prompt_index, s.path.name) for s in scan.samples] == [
        (i, f"{k:05d}.png") for i in INDICES for k in range(3)]


def test_samples_are_the_images_stepwise_run_makes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(out, "--seed", "7", "--previews")
    shapes = runner_plugins.ShapesGenerator(runner_plugins.ShapesGenerator.Params())
    suite = geneval_suite(per_task=1)
    for i in (0, 83):
        seeds = tuple(candidate_seed(7, i, k) for k in range(3))
        (result,) = shapes.generate([GenerationRequest(suite[i]["prompt"], seeds, suite[i], previews=True)])
        for k in range(3):
            assert (out / f"{i:05d}/samples/{k:05d}.png").read_bytes() == png_bytes(result.images[k])
            for step, preview in enumerate(result.previews[k]):
                assert (out / f"{i:05d}/process/{k:05d}_step{step}.png").read_bytes() == png_bytes(preview)


def test_resume_generates_only_missing_samples(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(out, n=2)
    assert runner_plugins.CALLS["generate"] == len(INDICES)  # one request per prompt
    first = files(out)
    runner_plugins.CALLS["generate"] = 0
    output = generate(out, n=2)
    assert runner_plugins.CALLS["generate"] == 0 and "0 needed work" in output and files(out) == first

    # A leftover temporary of a killed process goes; raising --n adds sample 2 only.
    stale = out / "00081/samples/.00002.png.99999.tmp"
    stale.write_bytes(b"half a png")
    output = generate(out, n=3)
    assert "6 samples generated, 12 kept" in output and not stale.exists()
    assert runner_plugins.CALLS["generate"] == len(INDICES)
    after = files(out)
    assert {k: v for k, v in after.items() if k in first} == first
    assert set(after) - set(first) == {f"{i:05d}/samples/00002.png" for i in INDICES}

    # Asking for previews later regenerates the samples that lack them (same seeds: same bytes).
    generate(out, "--previews", n=3)
    with_previews = files(out)
    assert {k: v for k, v in with_previews.items() if k in after} == after
    assert sum("/process/" in k for k in with_previews) == len(INDICES) * 3 * 2


def test_crash_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    runner_plugins.FAIL_ON.add("a photo of four snowboards")  # prompt 81, in the middle of the selection
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate(tmp_path / "out", "--previews")
    scan = scan_image_folder(tmp_path / "out")
    assert scan.problems == []  # what was written before the crash is a valid folder
    runner_plugins.FAIL_ON.clear()
    generate(tmp_path / "out", "--previews")
    generate(tmp_path / "ref", "--previews")
    assert files(tmp_path / "out") == files(tmp_path / "ref")


def test_refuses_a_folder_written_otherwise(tmp_path: Path) -> None:
    out = tmp_path / "out"
    generate(out)
    output = generate(out, "--seed", "1", expect=1)
    assert "seed: 0 there, 1 now" in output
    output = generate(out, "--param", "size=32", expect=1)
    assert "'size': 48" in output and "'size': 32" in output

    # Another suite's prompt in a prompt folder: named, with the field that differs.
    (out / "00082/metadata.jsonl").write_text('{"tag": "colors", "include": [{"class": "cup", "count": 1, '
                                              '"color": "red"}], "prompt": "a photo of a red cup"}')
    output = generate(out, expect=1)
    assert "another suite's prompts" in output
    assert f"{out / '00082/metadata.jsonl'}: metadata differs from prompt 00082" in output
    assert "'prompt' is 'a photo of a red cup'" in output

    # GenEval's own output (no manifest): its samples could come from anything.
    geneval = tmp_path / "geneval"
    (geneval / "00000/samples").mkdir(parents=True)
    output = generate(geneval, expect=1)
    assert f"no {MANIFEST_NAME}" in output


def test_previews_the_generator_cannot_make_are_an_error(tmp_path: Path) -> None:
    output = generate(tmp_path / "out", "--previews", "--param", "steps=0", expect=1)
    assert "returned no step previews" in output and "run without --previews" in output


def test_bad_selection_and_unknown_generator(tmp_path: Path) -> None:
    output = generate(tmp_path / "out", "--prompts", "0,9999", expect=1)
    assert "prompt index 9999 is outside the suite" in output
    output = generate(tmp_path / "out", "--prompts", "zero", expect=2)
    assert "0..9 or 0,80,81" in output
    result = CliRunner().invoke(main, ["generate", "--generator", "shapez", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1 and "did you mean 'shapes'" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "o").exists()



def test_missing_weights_and_refused_params_are_one_message(tmp_path: Path) -> None:
    empty = tmp_path / "empty-checkpoint"
    empty.mkdir()
    result = CliRunner().invoke(main, ["generate", "--generator", "showo", "--param", f"model={empty}",
                                       "--prompts", "0", "--n", "1", "-o", str(tmp_path / "a")])
    assert result.exit_code == 1 and not isinstance(result.exception, FileNotFoundError)
    assert f"Error: generator 'showo': Show-o transformer checkpoint '{empty}' not found" in result.output
    assert "`hf download showlab/show-o`" in result.output
    result = CliRunner().invoke(main, ["generate", "--generator", "showo", "--param", "steps=0",
                                       "--prompts", "0", "--n", "1", "-o", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "Error: generator 'showo': steps must be at least 1, got 0" in result.output


def test_geneval2_prompts_in_the_layout_stepwise_eval_reads(tmp_path: Path) -> None:
    import json

    from geneval2_synthetic import RECORDS, write_data

    from harness.geneval2.data import read_suite
    from harness.geneval2.inputs import scan_inputs

    data = write_data(tmp_path / "geneval2_data.jsonl")
    result = CliRunner().invoke(main, ["prompts", "geneval2", "--from", str(data), "-o", str(tmp_path / "suite")])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    args = ["generate", "--generator", "shapes", "--suite", "geneval2", "--n", "2", "-o", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "needs --suite-param data=DIR" in result.output
    result = CliRunner().invoke(main, [*args, "--suite-param", f"data={tmp_path / 'suite'}"])
    assert result.exit_code == 0, result.output
    for i, record in enumerate(RECORDS):
        assert json.loads((out / f"{i:05d}/metadata.jsonl").read_text()) == record
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["suite"] == "geneval2" and manifest["per_task"] is None
    scan = scan_inputs(out, read_suite(tmp_path / "suite"))  # what `stepwise eval --suite geneval2 OUT` reads
    assert len(scan.images) == 2 * len(RECORDS) and not scan.problems and not scan.ignored
    # Another suite's data in the same folder is refused, naming the prompt.
    other = write_data(tmp_path / "other.jsonl", [{**RECORDS[0], "prompt": "four red cups"}, *RECORDS[1:]])
    result = CliRunner().invoke(main, [*args[:-2], "-o", str(out), "--suite-param", f"data={other}"])
    assert result.exit_code == 1 and "00000" in result.output and "four red cups" in result.output, result.output
