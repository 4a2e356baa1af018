"""`parm-prune` picks what the pool-based `parm` strategy picks on the same seeds, with fewer generator steps.

The pool side: a prompt's N candidates generated with their step previews, scored by the `parm`
verifier (the official search per path, after the fact) and selected by the `parm` strategy's key
(the first best among ties, as the official code takes it). The search side: the same N seeds (the
sample's candidate seeds) stepped together, clarity every step, potential at the first clear step,
truncation on "no". Both use the real PARM code, on a scripted engine (answers fixed by the image)
and on the tiny random LLaVA-OneVision; the generator is the tiny Show-o (and Janus, at its preview
points) with padded batches, so a row's pixels never depend on its batch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.plugins import GenerationRequest, parse_params
from harness.runner import LoadedVerifier
from harness.search.context import sample_seeds
from harness.search.runner import search_sample
from harness.tiny.scripted_vlm import ScriptedYesNoEngine
from harness.verifiers.vlm import ParmParams, ParmVerifier
from strategies.builtin import ParmStrategy
from strategies.search.parm_prune import ParmPruneStrategy

pytest.importorskip("torch")

PROMPTS = ("a photo of a bench", "a photo of two cats", "a red cup")
N = 4


@pytest.fixture(scope="module")
def showo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from harness.generators.showo.generator import ShowoGenerator
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo

    root = tmp_path_factory.mktemp("prune-showo")
    params = {"model": str(write_tiny_showo(root)), "vq_model": str(write_tiny_magvit(root / "magvit")),
              "resolution": "32", "steps": "6", "batch_size": "4", "pad_batches": "true", "device": "cpu"}
    return ShowoGenerator(parse_params(ShowoGenerator.Params, params))


def pool_pick(gen: Any, verifier: ParmVerifier, prompt: str, seeds: list[int], points: int = 0) -> tuple[int, Any]:
    """(index, image) the pool-based `parm` strategy selects among these seeds' candidates."""
    (result,) = gen.generate([GenerationRequest(prompt, tuple(seeds), previews=True)])
    scores = verifier.score(prompt, result.images, result.previews)
    keys = ParmStrategy(ParmStrategy.Params()).select_key({"parm": scores})
    best = max(range(len(keys)), key=lambda i: (keys[i], -i))  # the first among ties, as the official code
    return best, result.images[best]


def check_same_picks(gen: Any, verifier: ParmVerifier, tmp_path: Path, points: int = 0,
                     prompts: tuple[str, ...] = PROMPTS, samples: int = 2) -> list[int]:
    """For every prompt and sample: the same image as the pool's pick; returns the searches' NFE."""
    strategy = ParmPruneStrategy(ParmPruneStrategy.Params(points=points))
    loaded = [LoadedVerifier("parm", "0" * 64, verifier, True)]
    spent = []
    for index, prompt in enumerate(prompts):
        for sample in range(samples):
            seeds = sample_seeds(0, index, sample, N)
            best, image = pool_pick(gen, verifier, prompt, seeds)
            done = search_sample(strategy, gen, loaded, prompt=prompt, prompt_index=index, sample=sample, budget=N,
                                 run_seed=0, images_dir=tmp_path)
            assert done.result.details["row"] == best and done.result.details["seed"] == seeds[best], (prompt, sample)
            assert np.array_equal(np.asarray(done.result.image), np.asarray(image))
            assert done.ledger.generator_nfe <= N * gen.total_steps
            spent.append(done.ledger.generator_nfe)
    return spent


def test_scripted_parm_prunes_and_picks_as_the_pool(showo: Any, tmp_path: Path) -> None:
    verifier = ParmVerifier(ParmParams(model="scripted"), engine=ScriptedYesNoEngine(clear=0.4, potential=0.5))
    spent = check_same_picks(showo, verifier, tmp_path)
    assert sum(spent) < len(spent) * N * showo.total_steps  # some paths were truncated: fewer steps than the pool


@pytest.mark.parametrize(("clear", "potential"), [(0.6, 0.0), (0.0, 0.5)])
def test_when_nothing_survives_the_fallback_is_the_pool_s(showo: Any, tmp_path: Path, clear: float,
                                                           potential: float) -> None:
    """potential 0: every clear path is truncated, the lowest P("no") wins and its remaining steps are computed
    then (and counted); clear 0: no path is ever clear, every path runs to the end, the first wins (no_prob 1)."""
    verifier = ParmVerifier(ParmParams(model="scripted"), engine=ScriptedYesNoEngine(clear=clear, potential=potential))
    spent = check_same_picks(showo, verifier, tmp_path, samples=1)
    if clear == 0.0:
        assert spent == [N * showo.total_steps] * len(spent)
    else:
        assert max(spent) < N * showo.total_steps


def test_lazy_fallback_steps_are_in_the_ledger(showo: Any, tmp_path: Path) -> None:
    verifier = ParmVerifier(ParmParams(model="scripted"), engine=ScriptedYesNoEngine(clear=0.6, potential=0.0))
    strategy = ParmPruneStrategy(ParmPruneStrategy.Params())
    done = search_sample(strategy, showo, [LoadedVerifier("parm", "0" * 64, verifier, True)], prompt=PROMPTS[0],
                         prompt_index=0, sample=0, budget=N, run_seed=0, images_dir=tmp_path)
    clear = done.result.details["clear_step"]
    pick = done.result.details["row"]
    assert done.result.details["survivors"] == 0 and all(step is not None for step in clear)
    # each path ran to its clear step; the picked one then ran to the end, counted in the same ledger
    assert done.ledger.generator_nfe == sum(clear) + showo.total_steps - clear[pick]
    finished = [e for e in done.events if e["event"] == "finish"]
    assert finished[-1]["steps"] == [showo.total_steps - clear[pick]]


def test_tiny_vlm_parm_picks_as_the_pool(showo: Any, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("transformers")
    from harness.tiny.vlm import write_tiny_llava_onevision

    model = write_tiny_llava_onevision(tmp_path_factory.mktemp("prune-vlm"))
    verifier = ParmVerifier(ParmParams(model=str(model), device="cpu", batch_size=8))
    spent = check_same_picks(showo, verifier, tmp_path, prompts=PROMPTS[:2])
    assert all(nfe <= N * showo.total_steps for nfe in spent)


def test_scripted_parm_on_janus_judges_its_preview_points(tmp_path: Path,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("transformers")
    from harness.generators.janus import JanusGenerator, JanusParams
    from harness.tiny.janus import write_tiny_janus

    gen = JanusGenerator(JanusParams(model=str(write_tiny_janus(tmp_path_factory.mktemp("prune-janus"))),
                                     device="cpu", preview_points=4))
    verifier = ParmVerifier(ParmParams(model="scripted"), engine=ScriptedYesNoEngine(clear=0.5, potential=0.5))
    spent = check_same_picks(gen, verifier, tmp_path, points=4, samples=1)
    assert sum(spent) < len(spent) * N * gen.total_steps


def test_sampled_answers_are_refused_step_by_step() -> None:
    verifier = ParmVerifier(ParmParams(model="scripted", sample=True), engine=ScriptedYesNoEngine())
    with pytest.raises(ValueError, match=r"needs argmax answers \(sample=false\)"):
        verifier.clarity("a cat", [])
