"""`stepwise run --generator diffusers` end to end: run -> curve -> submit -> leaderboard build.

Two tiny random pipelines (Stable Diffusion 1.5-shaped and FLUX.1-dev-shaped) each make a pool of 2
candidates for every prompt of GenEval's suite (`--per-task 1`: 85 prompts), judged by the tiny
GenEval models and scored by a verifier that reads the x0 step previews; the curves, the leaderboard
entry and the static site follow. The scores mean nothing; what is checked is that the pieces fit.
Then bad input through the same command: one clear line each.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.store import Candidate, open_store
from harness.submissions.load import load_entry

POOL = 2


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    runner_plugins.register_isolated(monkeypatch)  # the `scripted` verifier (reads previews)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from harness.tiny.diffusion import write_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-diffusers-e2e")
    return {"sd15": write_tiny_pipeline("sd15", root / "sd15"),
            "flux-dev": write_tiny_pipeline("flux-dev", root / "flux"),
            "flags": runner_plugins.tiny_model_flags(tmp_path_factory)}


def generator_args(folder: Path, *extra: str) -> list[str]:
    values = [f"pipeline={folder}", "steps=2", "resolution=16", "previews=2", "batch_size=2", "device=cpu", *extra]
    return ["--generator", "diffusers", *(a for v in values for a in ("--param", v))]


@pytest.fixture(scope="module", params=["sd15", "flux-dev"])
def entry(request: pytest.FixtureRequest, tiny: dict[str, Any],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    kind = request.param
    base = tmp_path_factory.mktemp(f"run-{kind}")
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        mp.setenv("STEPWISE_CACHE_DIR", str(base / "cache"))
        db = f"sqlite:///{base / 'store.db'}"
        code, output = stepwise("run", *generator_args(tiny[kind]), "--per-task", "1", "--pool", str(POOL),
                                "--verifier", "scripted", "--db", db, "--out", str(base / "out"), *tiny["flags"])
        assert code == 0, output
        run_id = output.strip().splitlines()[-1]
        code, curves = stepwise("curve", "--run", run_id, "--db", db, "--verifier", "scripted", "--n", f"1..{POOL}",
                                "--json", *tiny["flags"])
        assert code == 0, curves
        subs = base / "submissions"
        code, submitted = stepwise("submit", run_id, "--name", f"Tiny {kind} (TINY RANDOM WEIGHTS)", "--slug",
                                   f"tiny-{kind}", "--db", db, "--verifier", "scripted", "--n", str(POOL), "--out",
                                   str(subs), "--author", "Test Author", *tiny["flags"])
        assert code == 0, submitted
        code, built = stepwise("leaderboard", "build", "--submissions", str(subs), "--out", str(base / "site"))
        assert code == 0, built
        yield {"kind": kind, "db": db, "run_id": run_id, "curves": json.loads(curves), "folder": subs / f"tiny-{kind}",
               "site": base / "site", "out": base / "out"}


def test_the_pool_is_stored_with_its_x0_previews(entry: dict[str, Any]) -> None:
    engine = open_store(entry["db"])
    with Session(engine) as s:
        candidates = s.scalars(select(Candidate)).all()
        assert len(candidates) == 85 * POOL
        assert all(len(c.step_previews) == 2 for c in candidates)  # previews=2: a mid-way x0 and the image
        # A prompt's 2 candidates share one denoiser call per step (PNDM, SD 1.5's scheduler, takes 3 for 2 steps).
        steps = {"sd15": 3, "flux-dev": 2}[entry["kind"]]
        per_prompt: dict[int, float] = {}
        for c in candidates:
            per_prompt[c.prompt_id] = per_prompt.get(c.prompt_id, 0.0) + c.cost["forward_passes"]
        assert set(per_prompt.values()) == {steps}
        assert len({c.image_sha256 for c in candidates}) == 85 * POOL  # every candidate its own image
    engine.dispose()


def test_curves_submission_and_site(entry: dict[str, Any]) -> None:
    curve = entry["curves"]["scripted"]
    assert set(curve) == {str(n) for n in range(1, POOL + 1)}
    loaded = load_entry(entry["folder"])
    assert loaded.manifest.system.generator == "diffusers" and loaded.manifest.system.n == POOL
    assert loaded.scores is not None and loaded.scores["overall"] == pytest.approx(curve[str(POOL)]["overall"])
    assert len(loaded.images) == 85 * POOL
    page = entry["site"] / "entry" / f"tiny-{entry['kind']}.html"
    assert page.is_file() and "TINY RANDOM WEIGHTS" in page.read_text(encoding="utf-8")
    assert f"tiny-{entry['kind']}" in (entry["site"] / "index.html").read_text(encoding="utf-8")


def test_a_rerun_finds_everything_stored(entry: dict[str, Any], tiny: dict[str, Any]) -> None:
    """Same command, same run id: nothing is generated again (the candidates are the seeds' images)."""
    code, output = stepwise("run", *generator_args(tiny[entry["kind"]]), "--per-task", "1", "--pool", str(POOL),
                            "--verifier", "scripted", "--db", entry["db"], "--out", str(entry["out"]), *tiny["flags"])
    assert code == 0, output
    assert output.strip().splitlines()[-1] == entry["run_id"] and "0 generated" in output


# ---------------------------------------------------------------------------------------------
# bad input: one line each, naming what is wrong


def bad_run(tiny: dict[str, Any], tmp_path: Path, *args: str) -> str:
    code, output = stepwise("run", *args, "--per-task", "1", "--prompts", "0", "--pool", "1",
                            "--db", f"sqlite:///{tmp_path / 's.db'}", "--out", str(tmp_path / "out"), *tiny["flags"])
    assert code == 1, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: generator 'diffusers': "), output
    return lines[0]


def test_a_folder_that_is_not_a_pipeline(tiny: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"")
    line = bad_run(tiny, tmp_path, *generator_args(folder))
    assert f"{folder} is not a diffusers pipeline folder: it has no model_index.json" in line


def test_an_unsupported_pipeline_class(tiny: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "wuerstchen"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "WuerstchenCombinedPipeline",
                                                         "_diffusers_version": "0.42.1"}))
    line = bad_run(tiny, tmp_path, *generator_args(folder))
    assert "holds a WuerstchenCombinedPipeline, which the diffusers generator does not support; supported: " \
           "StableDiffusionPipeline, StableDiffusionXLPipeline, StableDiffusion3Pipeline, FluxPipeline, " \
           "PixArtAlphaPipeline, PixArtSigmaPipeline, SanaPipeline" in line


def test_a_resolution_the_vae_cannot_take(tiny: dict[str, Any], tmp_path: Path) -> None:
    line = bad_run(tiny, tmp_path, *generator_args(tiny["flux-dev"], "resolution=18"))
    assert "resolution=18: FluxPipeline makes images whose side is a multiple of 4" in line
