"""Step control of the Show-o and Janus generators (`harness.plugins.SteppingGenerator`).

The invariant that lets pools and searches share one sampler: start, then advance in any grouping of
rows and steps to the end (or finish), with no fork, gives every row exactly the tokens and pixels
`generate()` gives its seed, and a row's result does not depend on its batch-mates. Show-o's pixels
are exact with `pad_batches=true` (every forward and decoder call has one shape; unpadded, the
MAGVIT-v2 decoder's rounding moves with the batch size on CPU: its tokens are still exact).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.plugins import GenerationRequest, SteppingGenerator, parse_params, supports_step_control

torch = pytest.importorskip("torch")

PROMPT = "a photo of a red cup and a blue vase"
SEEDS = (11, 12, 13, 14, 15)


def pixels(image: Any) -> np.ndarray:
    return np.asarray(image)


def same_images(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(np.array_equal(pixels(x), pixels(y)) for x, y in zip(a, b, strict=True))


# ---------------------------------------------------------------------------------------------
# the groupings every stepping generator is checked with


def together(gen: Any, traj: Any) -> list[Any]:
    rows = list(range(len(traj)))
    for _ in range(gen.total_steps):
        gen.advance(traj, rows, 1)
    return gen.preview(traj, rows)


def one_by_one(gen: Any, traj: Any) -> list[Any]:
    for row in reversed(range(len(traj))):  # every row alone, the last first
        gen.advance(traj, [row], gen.total_steps)
    return gen.finish(traj, list(range(len(traj))))


def ragged(gen: Any, traj: Any) -> list[Any]:
    """Rows at different steps share calls; subsets in other orders; finish from several steps."""
    total = gen.total_steps
    gen.advance(traj, [0, 1, 2, 3, 4], 1)
    gen.advance(traj, [4, 1], min(2, total - 1))
    gen.advance(traj, [2], total - 1)
    gen.preview(traj, [0, 4])  # a preview takes no step and changes nothing
    gen.advance(traj, [0, 4, 3], 1)  # rows at different steps in one call (Show-o batches them)
    return gen.finish(traj, [0, 1, 2, 3, 4])


GROUPINGS: dict[str, Callable[[Any, Any], list[Any]]] = {"together": together, "one by one": one_by_one,
                                                         "ragged": ragged}


def check_invariant(gen: Any) -> None:
    assert supports_step_control(gen) and isinstance(gen, SteppingGenerator)
    request = GenerationRequest(PROMPT, SEEDS)
    (reference,) = gen.generate([request])
    for name, grouping in GROUPINGS.items():
        traj = gen.start(request)
        assert len(traj) == len(SEEDS) and [traj.seed(r) for r in range(len(traj))] == list(SEEDS)
        assert all(traj.steps_done(r) == 0 for r in range(len(traj)))
        images = grouping(gen, traj)
        assert all(traj.steps_done(r) == gen.total_steps for r in range(len(traj)))
        assert same_images(images, reference.images), name
    # batch-mates: a row started alone, or next to other prompts' rows in generate(), is the same image
    (alone,) = gen.generate([GenerationRequest(PROMPT, (SEEDS[2],))])
    traj = gen.start(GenerationRequest(PROMPT, (SEEDS[2], 99)))
    assert same_images(gen.finish(traj, [0]), [reference.images[2]])
    mixed = gen.generate([GenerationRequest("a dog", (7,)), GenerationRequest(PROMPT, (SEEDS[2], SEEDS[4]))])[1]
    assert same_images([alone.images[0], mixed.images[0], mixed.images[1]],
                       [reference.images[2], reference.images[2], reference.images[4]])


def check_fork_and_keep(gen: Any) -> None:
    request = GenerationRequest(PROMPT, SEEDS[:3])
    (reference,) = gen.generate([request])
    traj = gen.start(request)
    half = gen.total_steps // 2
    gen.advance(traj, [0, 1, 2], half)
    new = gen.fork(traj, 0, 1234)
    assert new == 3 and traj.seed(new) == 1234 and traj.steps_done(new) == half
    gen.keep(traj, [0, 0, new, 2])  # row 1 pruned, row 0 duplicated (random stream included)
    assert len(traj) == 4 and [traj.seed(r) for r in range(4)] == [SEEDS[0], SEEDS[0], 1234, SEEDS[2]]
    gen.advance(traj, [1], 1)  # the copy can step on its own, the original stays
    assert traj.steps_done(0) == half and traj.steps_done(1) == half + 1
    out = gen.finish(traj, [0, 1, 2, 3])
    assert same_images([out[0], out[1], out[3]], [reference.images[0], reference.images[0], reference.images[2]])
    assert not np.array_equal(pixels(out[2]), pixels(out[0]))  # the fork drew other numbers from step `half` on
    # a fork forked again from the same state with the same seed is the same image
    again = gen.start(request)
    gen.advance(again, [0], half)
    twin = gen.fork(again, 0, 1234)
    assert same_images(gen.finish(again, [twin]), [out[2]])


def check_errors(gen: Any) -> None:
    traj = gen.start(GenerationRequest(PROMPT, SEEDS[:2]))
    with pytest.raises(ValueError, match=r"took no step yet"):
        gen.preview(traj, [0])
    with pytest.raises(ValueError, match="pass the last step"):
        gen.advance(traj, [0], gen.total_steps + 1)
    with pytest.raises(ValueError, match="twice"):
        gen.advance(traj, [1, 1], 1)
    with pytest.raises(ValueError, match="not rows"):
        gen.advance(traj, [5], 1)


# ---------------------------------------------------------------------------------------------
# Show-o


@pytest.fixture(scope="module")
def showo_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo

    root = tmp_path_factory.mktemp("stepping-showo")
    return {"model": write_tiny_showo(root), "vq_model": write_tiny_magvit(root / "magvit")}


def showo(files: dict[str, Path], **values: str) -> Any:
    from harness.generators.showo.generator import ShowoGenerator

    params = {"model": str(files["model"]), "vq_model": str(files["vq_model"]), "resolution": "32", "steps": "5",
              "batch_size": "3", "pad_batches": "true", "device": "cpu", **values}
    return ShowoGenerator(parse_params(ShowoGenerator.Params, params))


@pytest.fixture(scope="module")
def padded_showo(showo_files: dict[str, Path]) -> Any:
    return showo(showo_files)


def test_showo_stepping_gives_generate_s_images(padded_showo: Any) -> None:
    check_invariant(padded_showo)


def test_showo_fork_keep_and_errors(padded_showo: Any) -> None:
    check_fork_and_keep(padded_showo)
    check_errors(padded_showo)


def test_showo_previews_are_the_step_predictions_generate_decodes(padded_showo: Any) -> None:
    (reference,) = padded_showo.generate([GenerationRequest(PROMPT, SEEDS[:3], previews=True)])
    traj = padded_showo.start(GenerationRequest(PROMPT, SEEDS[:3]))
    for step in range(padded_showo.total_steps):
        padded_showo.advance(traj, [0, 1, 2], 1)
        expected = [reference.previews[2][step], reference.previews[0][step]]
        assert same_images(padded_showo.preview(traj, [2, 0]), expected)


def test_showo_unpadded_tokens_do_not_depend_on_the_grouping(showo_files: dict[str, Path]) -> None:
    gen = showo(showo_files, pad_batches="false", guidance="1.75")
    request = GenerationRequest(PROMPT, SEEDS)
    tokens = []
    for grouping in GROUPINGS.values():
        traj = gen.start(request)
        grouping(gen, traj)
        tokens.append(traj.state.sampled.clone())
    alone = gen.start(GenerationRequest(PROMPT, (SEEDS[3],)))
    gen.finish(alone, [0])
    assert all(torch.equal(t, tokens[0]) for t in tokens)
    assert torch.equal(alone.state.sampled[0], tokens[0][3])


def test_showo_keeps_the_prefix_kv_cache(showo_files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    gen = showo(showo_files)
    calls = []
    original = gen.model.prefix_cache
    monkeypatch.setattr(gen.model, "prefix_cache", lambda *a: calls.append(a[0].shape) or original(*a))
    traj = gen.start(GenerationRequest(PROMPT, SEEDS))
    gen.advance(traj, [0, 1, 2, 3, 4], 2)
    gen.fork(traj, 1, 5)
    gen.finish(traj, [0, 5])
    # one prefix for the prompt (batch 1) and one for the unconditional text, whatever the steps
    assert calls == [torch.Size([1, gen.model.config.max_text_len])] * 2


# ---------------------------------------------------------------------------------------------
# Janus


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Any:
    pytest.importorskip("transformers")
    from harness.generators.janus import JanusGenerator, JanusParams
    from harness.tiny.janus import write_tiny_janus

    return JanusGenerator(JanusParams(model=str(write_tiny_janus(tmp_path_factory.mktemp("stepping-janus"))),
                                      device="cpu", batch_size=3))


def test_janus_stepping_gives_generate_s_images(janus: Any) -> None:
    check_invariant(janus)


def test_janus_fork_keep_and_errors(janus: Any) -> None:
    check_fork_and_keep(janus)
    check_errors(janus)


def test_janus_previews_are_generate_s_canvases(janus: Any) -> None:
    from harness.generators.janus import preview_points

    (reference,) = janus.generate([GenerationRequest(PROMPT, SEEDS[:2], previews=True)])
    traj = janus.start(GenerationRequest(PROMPT, SEEDS[:2]))
    for k, n in enumerate(preview_points(janus.total_steps, janus.params.preview_points)):
        janus.advance(traj, [0, 1], n - traj.steps_done(0))
        assert same_images(janus.preview(traj, [0, 1]), [reference.previews[0][k], reference.previews[1][k]])


def test_janus_keeps_the_prompt_s_kv_cache(janus: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lm = janus.model.model.language_model
    lengths = []
    original = lm.forward
    monkeypatch.setattr(lm, "forward",
                        lambda *a, **k: lengths.append(k["inputs_embeds"].shape[:2]) or original(*a, **k))
    traj = janus.start(GenerationRequest(PROMPT, SEEDS))
    janus.advance(traj, list(range(5)), 3)
    prompt = janus.prompt_ids(PROMPT).shape[0]
    assert lengths[0] == (2, prompt)  # the prompt once, cond and uncond rows, for all five candidates
    assert lengths[1:] == [(10, 1)] * 3  # then one token per row per step


def test_janus_greedy_refuses_a_fork(tmp_path_factory: pytest.TempPathFactory, janus: Any) -> None:
    from harness.generators.janus import JanusGenerator

    greedy = JanusGenerator(janus.params.__class__(**{**janus.params.__dict__, "temperature": 0.0}))
    traj = greedy.start(GenerationRequest(PROMPT, (1,)))
    greedy.advance(traj, [0], 2)
    with pytest.raises(ValueError, match=r"greedily.*a fork would be a copy"):
        greedy.fork(traj, 0, 5)


# ---------------------------------------------------------------------------------------------
# folder


def test_folder_cannot_step_and_a_search_on_it_is_refused(tmp_path: Path) -> None:
    from harness.generators.folder import FolderGenerator
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.runner import RunConfig, RunError
    from harness.search.runner import SearchConfig, run_search

    assert not supports_step_control(FolderGenerator)
    config = RunConfig(generator="folder", evaluator=EvaluatorSpec(backend="hf"), pool=1,
                       params={"path": str(tmp_path), "per_task": "1"}, per_task=1, db=f"sqlite:///{tmp_path / 's.db'}",
                       out=tmp_path / "out")
    with pytest.raises(RunError, match="generator 'folder' cannot be driven step by step"):
        run_search(config, SearchConfig("parm-prune", {}, (2,)))
    assert not (tmp_path / "s.db").exists()  # refused before the store was touched
