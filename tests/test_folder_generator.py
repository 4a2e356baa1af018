"""The `folder` generator: a GenEval-layout folder read back as a pool, checked strictly, run end to end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import runner_plugins
from helpers import stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness import registry
from harness.generators.folder import FolderError, FolderGenerator
from harness.plugins import GenerationRequest, parse_params
from harness.prompts import geneval_suite
from harness.runner import candidate_seed
from harness.store import Candidate, open_store

PROMPTS = "0,80..84"  # one single-object prompt, then one of every other task (per_task 1)
INDICES = [0, 80, 81, 82, 83, 84]
SUITE = geneval_suite(per_task=1)


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    runner_plugins.register_isolated(monkeypatch)
    yield
    runner_plugins.FAIL_ON.clear()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pool written once by `stepwise generate` (shapes, 3 samples, 2 previews each); copy before changing it."""
    out = tmp_path_factory.mktemp("made") / "pool"
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)  # the doubles go into copies of the registries
        code, output = stepwise("generate", "--generator", "shapes", "--per-task", "1", "--prompts", PROMPTS,
                                "--n", "3", "-o", str(out), "--previews")
    assert code == 0, output
    return out


@pytest.fixture
def pool(made: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(made, tmp_path / "pool"))


def folder_generator(path: Path, **values: str) -> FolderGenerator:
    cls = registry.generators.get("folder")
    return cls(parse_params(cls.Params, {"path": str(path), "per_task": "1", **values}))  # type: ignore[return-value]


def request(index: int, samples: tuple[int, ...], *, previews: bool = False, seed: int = 0) -> GenerationRequest:
    seeds = tuple(candidate_seed(seed, index, k) for k in samples)
    return GenerationRequest(SUITE[index]["prompt"], seeds, SUITE[index], previews=previews, prompt_index=index,
                             sample_indices=samples)


def pixels(image: object) -> np.ndarray:
    return np.asarray(image)


# ---------------------------------------------------------------------------------------------
# reading


def test_reads_back_what_generate_wrote(pool: Path) -> None:
    shapes = runner_plugins.ShapesGenerator(runner_plugins.ShapesGenerator.Params())
    (want,) = shapes.generate([request(83, (2, 0), previews=True)])
    (got,) = folder_generator(pool).generate([request(83, (2, 0), previews=True)])
    assert [im.mode for im in got.images] == ["RGB", "RGB"]
    for a, b in zip(got.images, want.images, strict=True):
        np.testing.assert_array_equal(pixels(a), pixels(b))
    assert [len(p) for p in got.previews] == [2, 2]
    for steps_got, steps_want in zip(got.previews, want.previews, strict=True):
        for a, b in zip(steps_got, steps_want, strict=True):  # step order
            np.testing.assert_array_equal(pixels(a), pixels(b))
    assert got.cost.forward_passes == 0 and got.cost.tokens == 0 and got.cost.seconds > 0


def test_seeds_are_ignored_and_previews_only_when_asked(pool: Path) -> None:
    gen = folder_generator(pool)
    (a,), (b,) = gen.generate([request(0, (1,))]), gen.generate([request(0, (1,), seed=99)])
    np.testing.assert_array_equal(pixels(a.images[0]), pixels(b.images[0]))
    assert a.previews == [[]]


def test_other_writers_names_are_read(pool: Path) -> None:
    # The paper's code: 4-digit samples, metadata with indent=4, PARM's extra files; GenEval's grid.png.
    folder = pool / "00080"
    for k in range(3):
        (folder / f"samples/{k:05d}.png").rename(folder / f"samples/{k:04d}.png")
    (folder / "metadata.jsonl").write_text(json.dumps(SUITE[80], indent=4))
    shutil.copy(folder / "samples/0000.png", folder / "grid.png")
    shutil.copy(folder / "samples/0000.png", folder / "process/00000.png")
    shutil.copy(folder / "samples/0000.png", folder / "waiting_for_judge.png")
    (got,) = folder_generator(pool).generate([request(80, (0, 1, 2), previews=True)])
    assert len(got.images) == 3 and all(len(p) == 2 for p in got.previews)


# ---------------------------------------------------------------------------------------------
# problems found when the generator is built: all at once, each naming its file


def _extra_file(pool: Path) -> str:
    (pool / "00080/samples/notes.txt").write_text("x")
    return f"{pool / '00080/samples/notes.txt'}: unexpected entry in samples/"


def _missing_sample(pool: Path) -> str:
    (pool / "00081/samples/00001.png").unlink()
    for preview in (pool / "00081/process").glob("00001_step*.png"):
        preview.unlink()
    return f"{pool / '00081/samples/00001.png'}: missing (samples must be numbered 0..2 without gaps)"


def _prompt_mismatch(pool: Path) -> str:
    (pool / "00082/metadata.jsonl").write_text(json.dumps({**SUITE[82], "prompt": "a photo of a red cup"}))
    return (f"{pool / '00082/metadata.jsonl'}: metadata differs from prompt 00082 of the geneval suite: "
            f"'prompt' is 'a photo of a red cup', the suite has {SUITE[82]['prompt']!r}")


def _tag_mismatch(pool: Path) -> str:
    (pool / "00083/metadata.jsonl").write_text(json.dumps({**SUITE[83], "tag": "counting"}))
    return f"'tag' is 'counting', the suite has {SUITE[83]['tag']!r}"


def _not_in_suite(pool: Path) -> str:
    shutil.copytree(pool / "00084", pool / "00085")
    return f"{pool / '00085'}: prompt 85 is not in the suite (prompts 0..84)"


def _malformed_folder_name(pool: Path) -> str:
    (pool / "0084").mkdir()
    return f"{pool / '0084'}: malformed prompt folder name (prompt 84 is 00084)"


def _malformed_preview(pool: Path) -> str:
    shutil.copy(pool / "00000/process/00000_step1.png", pool / "00000/process/00000-step1.png")
    return f"{pool / '00000/process/00000-step1.png'}: unexpected entry in process/"


def _missing_preview(pool: Path) -> str:
    (pool / "00084/process/00002_step1.png").unlink()
    return f"{pool / '00084/process'}: missing 00002_step1.png"


def _orphan_preview(pool: Path) -> str:
    shutil.copy(pool / "00084/process/00000_step0.png", pool / "00084/process/00007_step0.png")
    return f"{pool / '00084/process/00007_step0.png'}: previews of sample 7, which has no image in samples/"


@pytest.mark.parametrize("damage", [_extra_file, _missing_sample, _prompt_mismatch, _tag_mismatch, _not_in_suite,
                                    _malformed_folder_name, _malformed_preview, _missing_preview, _orphan_preview])
def test_each_problem_names_its_file(pool: Path, damage: Callable[[Path], str]) -> None:
    expected = damage(pool)
    with pytest.raises(FolderError) as err:
        folder_generator(pool)
    assert expected in str(err.value)
    assert str(err.value).startswith(f"{pool}: 1 problem(s)")


def test_all_problems_in_one_error_capped(pool: Path) -> None:
    for n in range(25):
        (pool / f"00000/samples/extra{n}.png").write_bytes(b"")
    _missing_sample(pool)
    with pytest.raises(FolderError) as err:
        folder_generator(pool)
    message = str(err.value)
    assert "26 problem(s)" in message and "... and 6 more" in message
    assert folder_generator(pool, check="false").root == pool  # check=false defers to each request


def test_a_path_that_is_no_folder(tmp_path: Path) -> None:
    with pytest.raises(FolderError, match="not a folder"):
        folder_generator(tmp_path / "nothing")
    with pytest.raises(FolderError, match="no prompt folders"):
        folder_generator(tmp_path)


# ---------------------------------------------------------------------------------------------
# problems known only at generate time


def test_too_few_samples_names_the_missing_files(pool: Path) -> None:
    with pytest.raises(FolderError) as err:
        folder_generator(pool).generate([request(80, (0, 1, 2, 3, 4))])
    assert str(err.value) == (f"{pool / '00080/samples/00003.png'}, {pool / '00080/samples/00004.png'} missing: "
                              "00080 has 3 samples (0..2), the pool needs samples 0..4")


def test_absent_prompt_folder(pool: Path) -> None:
    with pytest.raises(FolderError, match=r"00001: no such prompt folder \(prompt 1 needs samples 0, 2\)"):
        folder_generator(pool).generate([request(1, (0, 2))])


def test_corrupt_png_names_the_file(pool: Path) -> None:
    path = pool / "00081/samples/00002.png"
    path.write_bytes(path.read_bytes()[:60])
    gen = folder_generator(pool)  # names and metadata are fine: pixels are read per request
    with pytest.raises(FolderError, match=f"{path}: corrupt or unreadable PNG"):
        gen.generate([request(81, (0, 1, 2))])


def test_request_must_match_the_folder(pool: Path) -> None:
    gen = folder_generator(pool)
    other = GenerationRequest("a photo of a cat", (1,), prompt_index=0, sample_indices=(0,))
    with pytest.raises(FolderError, match=r"00000/metadata.jsonl: prompt .* but the request is for 'a photo of a cat'"):
        gen.generate([other])
    with pytest.raises(FolderError, match="needs prompt_index and sample_indices"):
        gen.generate([GenerationRequest(SUITE[0]["prompt"], (1,))])
    # A suite with another per_task puts other prompts at the same index (81 onwards).
    suite100 = geneval_suite(per_task=100)
    assert suite100[81] != SUITE[81]
    with pytest.raises(FolderError, match="made with another --per-task"):
        folder_generator(pool, per_task="100")


def test_previews_asked_but_absent(pool: Path) -> None:
    shutil.rmtree(pool / "00080/process")
    with pytest.raises(FolderError, match=r"00080/process: no step previews of sample 1 \(00001_step0.png, ...\)"):
        folder_generator(pool).generate([request(80, (1,), previews=True)])


# ---------------------------------------------------------------------------------------------
# end to end: stepwise run over the folder gives the run over the generator


@pytest.fixture(scope="module")
def model_flags(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    return runner_plugins.tiny_model_flags(tmp_path_factory)


def stored(db: str) -> dict[tuple[int, int], tuple[str, int]]:
    """{(prompt index, sample index): (image sha256, number of previews)}."""
    engine = open_store(db)
    try:
        with Session(engine) as s:
            return {(c.prompt.index, c.sample_index): (c.image_sha256, len(c.step_previews))
                    for c in s.execute(select(Candidate)).scalars()}
    finally:
        engine.dispose()


def test_stepwise_run_over_the_folder(made: Path, model_flags: list[str], tmp_path: Path) -> None:
    common = ["--per-task", "1", "--prompts", PROMPTS, "--verifier", "scripted", *model_flags]
    db_gen, db_folder = f"sqlite:///{tmp_path / 'gen.db'}", f"sqlite:///{tmp_path / 'folder.db'}"
    code, output = stepwise("run", "--generator", "shapes", "--pool", "3", "--db", db_gen,
                            "--out", str(tmp_path / "gen"), *common)
    assert code == 0, output
    runner_plugins.CALLS["generate"] = 0
    folder_args = ["run", "--generator", "folder", "--param", f"path={made}", "--param", "per_task=1",
                   "--db", db_folder, "--out", str(tmp_path / "folder"), *common]
    code, output = stepwise(*folder_args, "--pool", "3")
    assert code == 0, output
    assert runner_plugins.CALLS["generate"] == 0  # no model ran
    from_folder = stored(db_folder)
    assert from_folder == stored(db_gen)  # same images, byte for byte, and their previews
    assert len(from_folder) == len(INDICES) * 3 and {n for _, n in from_folder.values()} == {2}

    code, output = stepwise(*folder_args, "--pool", "4")  # the folder has 3 samples per prompt
    assert code == 1 and "00000/samples/00003.png missing: 00000 has 3 samples (0..2)" in output
