"""`noise-search` (Ma et al. 2025) and the step-level searches on a diffusers pipeline, end to end.

A tiny random Stable Diffusion 1.5-shaped pipeline, the tiny GenEval models and the `scripted`
verifier (a pixel mean: it depends on the image only). What is checked: random search is best-of-n
(its pick is the pool's best candidate by the same verifier, image for image); zero-order search
spends its budget, keeps every candidate an exact draw of the prior (mix weights' squares sum to 1)
and is refused on a generator without initial noise; starting from a one-seed mix is `start`;
step-beam and smc run on a stochastic scheduler, and step-beam (which always forks) is refused, in one
line, on a deterministic one; and a search goes on to a submission, its validation and the site.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import runner_plugins
from helpers import stepwise
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.store import Candidate, Prompt, SearchPick, open_store

PROMPTS = "0..2"


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    runner_plugins.register_isolated(monkeypatch)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from harness.tiny.diffusion import write_tiny_pipeline

    root = tmp_path_factory.mktemp("noise-search")
    return {"sd15": write_tiny_pipeline("sd15", root / "sd15"), "root": root,
            "flags": runner_plugins.tiny_model_flags(tmp_path_factory)}


@pytest.fixture(scope="module")
def total_steps(tiny: dict[str, Any]) -> int:
    """Candidate-steps of one full generation with `generator_args`' settings (the pipeline's default
    scheduler, PNDM, runs one more step than asked)."""
    from harness.generators.diffusion.generator import DiffusersGenerator, DiffusersParams

    return int(DiffusersGenerator(DiffusersParams(pipeline=str(tiny["sd15"]), steps=3, resolution=16,
                                                  device="cpu")).total_steps)


def generator_args(folder: Path, *extra: str) -> list[str]:
    values = [f"pipeline={folder}", "steps=3", "resolution=16", "batch_size=4", "pad_batches=true", "device=cpu",
              *extra]
    return ["--generator", "diffusers", *(a for v in values for a in ("--param", v))]


def ok(*args: str) -> str:
    code, output = stepwise(*args)
    assert code == 0, output
    return output


def scripted(path: Path) -> float:
    return float(np.asarray(Image.open(path).convert("RGB"))[..., 0].mean() / 255)


def picks(db: str, run_id: str) -> list[SearchPick]:
    engine = open_store(db)
    try:
        with Session(engine) as s:
            rows = list(s.scalars(select(SearchPick).join(SearchPick.search).where(SearchPick.search.has(run_id=run_id))
                                  .order_by(SearchPick.prompt_id)))
            s.expunge_all()
            return rows
    finally:
        engine.dispose()


def test_a_one_seed_mix_is_start(tiny: dict[str, Any]) -> None:
    from harness.generators.diffusion.generator import DiffusersGenerator, DiffusersParams
    from harness.plugins import GenerationRequest, supports_initial_noise

    gen = DiffusersGenerator(DiffusersParams(pipeline=str(tiny["sd15"]), steps=2, resolution=16, device="cpu"))
    assert supports_initial_noise(gen)
    request = GenerationRequest("a photo of a cat", (3, 4))
    plain = gen.finish(t := gen.start(request), list(range(len(t))))
    mixed = gen.finish(t := gen.start_mixed(request, [((3, 1.0),), ((4, 1.0),)]), [0, 1])
    assert [np.asarray(a).tobytes() for a in plain] == [np.asarray(b).tobytes() for b in mixed]
    other = gen.finish(t := gen.start_mixed(request, [((3, 0.6), (9, 0.8)), ((4, 1.0),)]), [0, 1])
    assert np.asarray(other[0]).tobytes() != np.asarray(plain[0]).tobytes()


def test_random_search_is_the_pools_best_of_n(tiny: dict[str, Any], total_steps: int) -> None:
    root, flags = tiny["root"] / "random", tiny["flags"]
    root.mkdir()
    db = f"sqlite:///{root / 's.db'}"
    budget = 3
    common = [*generator_args(tiny["sd15"]), "--prompts", PROMPTS, "--db", db, "--out", str(root / "out"), *flags]
    pool_run = ok("run", *common, "--pool", str(budget), "--verifier", "scripted").strip().splitlines()[-1]
    search_run = ok("run", *common, "--strategy", "noise-search", "--strategy-param", "verifier=scripted",
                    "--budget", str(budget), "--samples", "1").strip().splitlines()[-1]
    engine = open_store(db)
    try:
        with Session(engine) as s:
            pool: dict[int, list[tuple[str, str]]] = {}
            for c in s.scalars(select(Candidate).where(Candidate.run_id == pool_run).order_by(Candidate.sample_index)):
                pool.setdefault(c.prompt_id, []).append((c.image_sha256, c.image_path))
            texts = {p.id: p.text for p in s.scalars(select(Prompt))}
    finally:
        engine.dispose()
    chosen = picks(db, search_run)
    assert len(chosen) == 3 and all(p.ledger["generator_nfe"] == budget * total_steps for p in chosen)
    for pick in chosen:
        candidates = pool[pick.prompt_id]
        scores = [scripted(root / "out" / path) for _, path in candidates]
        assert len(set(scores)) == budget, texts[pick.prompt_id]  # no ties: the best is one image
        assert pick.image_sha256 == candidates[int(np.argmax(scores))][0]


def test_zero_order_search_end_to_end(tiny: dict[str, Any], total_steps: int) -> None:
    root, flags = tiny["root"] / "zero", tiny["flags"]
    root.mkdir()
    db = f"sqlite:///{root / 's.db'}"
    budget = 4
    # the whole 80-prompt suite (--per-task 0): a leaderboard entry covers its suite
    run_id = ok("run", *generator_args(tiny["sd15"]), "--per-task", "0", "--db", db, "--out", str(root / "out"),
                "--strategy", "noise-search", "--strategy-param", "mode=zero-order",
                "--strategy-param", "verifier=scripted", "--strategy-param", "neighbors=2",
                "--strategy-param", "radius=0.5", "--budget", str(budget), "--samples", "1",
                *flags).strip().splitlines()[-1]
    chosen = picks(db, run_id)
    assert len(chosen) == 80
    assert any(p.details["rounds"] >= 1 and len(p.details["mix"]) > 1 for p in chosen)  # some neighbour won
    for pick in chosen:
        assert pick.details["mode"] == "zero-order" and pick.details["generated"] == budget
        assert pick.ledger["generator_nfe"] == budget * total_steps  # every candidate ran all its steps
        weights = [w for _, w in pick.details["mix"]]
        assert math.isclose(sum(w * w for w in weights), 1.0, rel_tol=1e-9)
    curve = ok("curve", "--run", run_id, "--db", db, *flags, "--json")
    assert "noise-search" in curve
    subs = root / "submissions"
    ok("submit", run_id, "--search", "noise-search", "--name", "Tiny SD, zero-order noise search", "--slug",
       "tiny-noise", "--db", db, "--out", str(subs), *flags)
    assert "1 valid, 0 invalid" in ok("validate", str(subs))
    ok("leaderboard", "build", "--submissions", str(subs), "--out", str(root / "site"), "--recheck", "none")
    assert "Tiny SD, zero-order noise search" in (root / "site" / "index.html").read_text()


def test_zero_order_needs_initial_noise(tmp_path: Path, tiny: dict[str, Any]) -> None:
    code, output = stepwise("run", "--generator", "shapes-stepper", "--prompts", "0", "--strategy", "noise-search",
                            "--strategy-param", "mode=zero-order", "--strategy-param", "verifier=scripted",
                            "--budget", "3", "--samples", "1", "--db", f"sqlite:///{tmp_path / 's.db'}", "--out",
                            str(tmp_path / "out"), *tiny["flags"])
    assert code != 0
    assert "needs a generator that starts from given initial noise" in output and "Traceback" not in output


@pytest.mark.parametrize("strategy", ["step-beam", "smc"])
def test_step_searches_branch_on_a_stochastic_diffusers_sampler(strategy: str, tiny: dict[str, Any],
                                                               tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    base = ["--prompts", "0", "--db", db, "--out", str(tmp_path / "out"), "--strategy", strategy,
            "--strategy-param", "verifier=scripted", "--budget", "4", "--samples", "1", *tiny["flags"]]
    run_id = ok("run", *generator_args(tiny["sd15"], "scheduler=EulerAncestralDiscreteScheduler"),
                *base).strip().splitlines()[-1]
    (pick,) = picks(db, run_id)
    assert 0 < pick.ledger["generator_nfe"] <= 4 * 3  # Euler ancestral: 3 steps
    assert Image.open(tmp_path / "out" / pick.image_path).size == (16, 16)
    if strategy == "smc":
        return  # smc forks only when resampling draws a particle twice, which depends on the scores
    code, output = stepwise("run", *generator_args(tiny["sd15"], "scheduler=DDIMScheduler"), *base)
    assert code != 0 and "deterministic sampler" in output and "Traceback" not in output
    assert len([line for line in output.splitlines() if line.startswith("Error")]) == 1  # one line
