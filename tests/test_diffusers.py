"""The `diffusers` generator against diffusers itself, on tiny random pipelines of every supported class.

Faithfulness: a candidate with seed s is the image `pipeline(prompt, generator=torch.Generator("cpu")
.manual_seed(s), ...)` returns (and the image of `pipeline(..., latents=...)` from its initial latents),
within 1e-5 in float32. Step control runs the same loop: any grouping of `advance` calls, then
`finish`, gives generate()'s pixels, and preview() gives generate()'s step previews. A candidate does
not depend on its batch-mates (bitwise with pad_batches). Forks need a stochastic scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.plugins import GenerationRequest, parse_params, supports_step_control
from harness.tiny.diffusion import KINDS, TINY_RESOLUTION

PROMPT = "a photo of a red cup and a blue dog"
TOLERANCE = 1e-5  # max abs difference of float32 pixels in [0, 1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """kind -> the tiny pipeline's folder, written once per module."""
    from harness.tiny.diffusion import write_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-diffusers")
    made: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in made:
            made[kind] = write_tiny_pipeline(kind, root / kind)
        return made[kind]

    return get


def make(path: Path, kind: str, **values: Any) -> Any:
    from harness.generators.diffusion.generator import DiffusersGenerator

    given = {"pipeline": str(path), "resolution": TINY_RESOLUTION[kind], "steps": 3, "device": "cpu", **values}
    return DiffusersGenerator(parse_params(DiffusersGenerator.Params, {k: str(v) for k, v in given.items()}))


def reference(path: Path) -> Any:
    """The same folder loaded by diffusers itself, as a user would (no safety checker, as we load it)."""
    import diffusers

    kwargs: dict[str, Any] = {}
    if diffusers.DiffusionPipeline.load_config(path)["_class_name"] == "StableDiffusionPipeline":
        kwargs = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    pipe = diffusers.DiffusionPipeline.from_pretrained(path, local_files_only=True, **kwargs)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def call(pipe: Any, gen: Any, **kwargs: Any) -> np.ndarray:
    """`pipe(PROMPT, ...)` with the generator's settings, as float arrays."""
    family = gen.family
    extra: dict[str, Any] = {}
    if family.pipeline_class in ("PixArtAlphaPipeline", "PixArtSigmaPipeline", "SanaPipeline"):
        extra["use_resolution_binning"] = False  # we make images at `resolution`, unbinned
    side = family.resolution
    return pipe(PROMPT, height=side, width=side, num_inference_steps=family.steps, guidance_scale=family.guidance,
                output_type="np", **extra, **kwargs).images


def pixels(images: list[Any]) -> list[np.ndarray]:
    return [np.asarray(image) for image in images]


def same_pixels(a: list[Any], b: list[Any]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(pixels(a), pixels(b), strict=True))


# ---------------------------------------------------------------------------------------------
# faithfulness, per pipeline class


@pytest.mark.parametrize("kind", KINDS)
def test_a_candidate_is_the_pipelines_image_for_its_seed(kind: str, folder: Callable[[str], Path]) -> None:
    import torch

    gen = make(folder(kind), kind, batch_size=2)
    seeds = (11, 12, 13)
    traj = gen.start(GenerationRequest(PROMPT, seeds))
    initial = traj.rows[1].latents.clone()
    gen.advance(traj, [0, 1, 2], gen.total_steps)
    ours = gen.arrays(traj, [0, 1, 2])
    pipe = reference(folder(kind))
    for i, seed in enumerate(seeds):
        theirs = call(pipe, gen, generator=torch.Generator("cpu").manual_seed(seed))[0]
        assert np.abs(ours[i] - theirs).max() <= TOLERANCE, (kind, seed)
    # The same initial latents through `latents=` (SD-style pipelines scale them by init_noise_sigma).
    scale = gen.pipe.scheduler.init_noise_sigma if gen.family.scales_input else 1.0
    theirs = call(pipe, gen, latents=initial / scale)[0]
    assert np.abs(ours[1] - theirs).max() <= TOLERANCE
    # generate() rounds the same floats to 8 bits (same batches here: [11, 12], [13]).
    (result,) = gen.generate([GenerationRequest(PROMPT, seeds)])
    assert same_pixels(result.images, [(a * 255).round().astype(np.uint8) for a in ours])
    assert ours.std() > 0.01 and not np.array_equal(ours[0], ours[1])  # not a constant image


@pytest.mark.parametrize("kind", ["sd15", "sdxl", "sd3", "pixart-alpha", "sana"])
def test_without_guidance_only_the_conditional_half_runs(kind: str, folder: Callable[[str], Path]) -> None:
    """guidance <= 1: no classifier-free guidance, as the pipelines decide it (one row per candidate)."""
    import torch

    gen = make(folder(kind), kind, guidance=1.0)
    assert not gen.family.guided
    traj = gen.start(GenerationRequest(PROMPT, (4,)))
    assert traj.cond.uncond is None
    gen.advance(traj, [0], gen.total_steps)
    theirs = call(reference(folder(kind)), gen, generator=torch.Generator("cpu").manual_seed(4))[0]
    assert np.abs(gen.arrays(traj, [0])[0] - theirs).max() <= TOLERANCE


@pytest.mark.parametrize("kind", KINDS)
def test_stepping_in_any_grouping_gives_generates_images_and_previews(kind: str,
                                                                      folder: Callable[[str], Path]) -> None:
    gen = make(folder(kind), kind, batch_size=2, pad_batches="true", previews="all")
    seeds = (3, 4, 5)
    (result,) = gen.generate([GenerationRequest(PROMPT, seeds, previews=True)])
    assert gen.total_steps == len(result.previews[0]) and all(len(p) == gen.total_steps for p in result.previews)
    assert same_pixels([p[-1] for p in result.previews], result.images)  # the last preview is the image

    traj = gen.start(GenerationRequest(PROMPT, seeds))
    assert [traj.steps_done(i) for i in range(3)] == [0, 0, 0] and [traj.seed(i) for i in range(3)] == [3, 4, 5]
    gen.advance(traj, [2], 1)
    gen.advance(traj, [0, 1], 1)
    assert same_pixels(gen.preview(traj, [0, 1, 2]), [p[0] for p in result.previews])
    gen.advance(traj, [1, 0], 1)
    assert same_pixels(gen.preview(traj, [2, 0]), [result.previews[2][0], result.previews[0][1]])
    assert same_pixels(gen.finish(traj, [1, 2, 0]), [result.images[1], result.images[2], result.images[0]])
    assert all(traj.steps_done(i) == gen.total_steps for i in range(3))
    assert same_pixels(gen.preview(traj, [0]), [result.images[0]])  # at the end, the preview is the image


@pytest.mark.parametrize("kind", ["sd15", "flux-dev"])
def test_a_candidate_does_not_depend_on_its_batch_mates(kind: str, folder: Callable[[str], Path]) -> None:
    padded = make(folder(kind), kind, batch_size=8, pad_batches="true")
    (alone,) = padded.generate([GenerationRequest(PROMPT, (105,))])
    (pool,) = padded.generate([GenerationRequest(PROMPT, tuple(range(100, 108)))])
    (mixed,) = padded.generate([GenerationRequest(PROMPT, (7, 105))])
    assert same_pixels([alone.images[0]] * 2, [pool.images[5], mixed.images[1]])  # bitwise, in any batch
    (grown,) = padded.generate([GenerationRequest(PROMPT, tuple(range(100, 112)))])  # pool growth
    assert same_pixels(grown.images[:8], pool.images)
    # Without padding the batch shape changes the kernels: the same image up to float rounding.
    plain = make(folder(kind), kind, batch_size=8)
    one = plain.start(GenerationRequest(PROMPT, (105,)))
    eight = plain.start(GenerationRequest(PROMPT, tuple(range(100, 108))))
    plain.advance(one, [0], plain.total_steps)
    plain.advance(eight, list(range(8)), plain.total_steps)
    assert np.abs(plain.arrays(one, [0])[0] - plain.arrays(eight, [5])[0]).max() <= TOLERANCE


def test_prompts_are_batched_together_and_encoded_once(folder: Callable[[str], Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    gen = make(folder("sdxl"), "sdxl", batch_size=4, pad_batches="true")
    encoded: list[str] = []
    original = gen.family.encode
    monkeypatch.setattr(gen.family, "encode", lambda prompt: encoded.append(prompt) or original(prompt))
    requests = [GenerationRequest(PROMPT, (1, 2)), GenerationRequest("a photo of a bench", (1, 3, 4)),
                GenerationRequest(PROMPT, (5,))]
    together = gen.generate(requests)
    assert sorted(encoded) == sorted([PROMPT, "a photo of a bench"])  # each prompt's text once
    apart = [gen.generate([r])[0] for r in requests]
    for a, b in zip(together, apart, strict=True):
        assert same_pixels(a.images, b.images)
    # rows 0-3 share one denoiser call per step, rows 4-5 another: 2 batches x 3 steps for the first prompt
    assert [r.cost.forward_passes for r in together] == [3, 6, 3]
    assert not same_pixels([together[0].images[0]], [together[1].images[0]])  # seed 1, two prompts


def test_previews_are_evenly_spaced_x0_predictions(folder: Callable[[str], Path]) -> None:
    gen = make(folder("sd3"), "sd3", steps=6, previews=3, pad_batches="true", batch_size=2)
    assert gen.preview_steps() == [2, 4, 6]
    (result,) = gen.generate([GenerationRequest(PROMPT, (1, 2), previews=True)])
    (bare,) = gen.generate([GenerationRequest(PROMPT, (1, 2))])
    assert bare.previews == [[], []] and same_pixels(bare.images, result.images)
    traj = gen.start(GenerationRequest(PROMPT, (1, 2)))
    seen = []
    for _ in range(3):
        gen.advance(traj, [0, 1], 2)
        seen.append(gen.preview(traj, [0, 1]))
    assert all(same_pixels([result.previews[i][k] for i in range(2)], seen[k]) for k in range(3))
    # an early x0 prediction is not yet the image
    assert not same_pixels([result.previews[0][0]], [result.images[0]])
    assert make(folder("sd3"), "sd3", steps=6, previews="all").preview_steps() == [1, 2, 3, 4, 5, 6]
    assert make(folder("sd3"), "sd3", steps=2, previews=8).preview_steps() == [1, 2]


# ---------------------------------------------------------------------------------------------
# schedulers


SD_SCHEDULERS = [
    ("DDIMScheduler", ()), ("PNDMScheduler", ()), ("DDPMScheduler", ()), ("EulerDiscreteScheduler", ()),
    ("EulerAncestralDiscreteScheduler", ()), ("LMSDiscreteScheduler", ()), ("DPMSolverMultistepScheduler", ()),
    ("DPMSolverMultistepScheduler", ("algorithm_type=sde-dpmsolver++",)), ("UniPCMultistepScheduler", ()),
]


@pytest.mark.parametrize(("name", "overrides"), SD_SCHEDULERS)
def test_every_supported_scheduler_matches_the_pipeline(name: str, overrides: tuple[str, ...],
                                                        folder: Callable[[str], Path]) -> None:
    """Stochastic ones too: the pipeline passes its generator to `step`, we pass the row's."""
    import diffusers
    import torch

    from harness.generators.diffusion.schedulers import parse_overrides

    config = ",".join(overrides)
    gen = make(folder("sd15"), "sd15", steps=4, scheduler=name, **({"scheduler_config": config} if config else {}))
    traj = gen.start(GenerationRequest(PROMPT, (21,)))
    gen.advance(traj, [0], gen.total_steps)
    pipe = reference(folder("sd15"))
    pipe.scheduler = getattr(diffusers, name).from_config(pipe.scheduler.config, **parse_overrides(overrides))
    theirs = call(pipe, gen, generator=torch.Generator("cpu").manual_seed(21))[0]
    assert np.abs(gen.arrays(traj, [0])[0] - theirs).max() <= TOLERANCE


@pytest.mark.parametrize("name", ["DDIMScheduler", "DDPMScheduler", "EulerDiscreteScheduler",
                                  "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler",
                                  "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"])
@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_x0_is_the_schedulers_own_prediction(name: str, prediction: str) -> None:
    """Where a scheduler exposes its x0 (pred_original_sample, or DPM-Solver's / UniPC's converted model
    output), ours is the same at every step."""
    import diffusers
    import torch

    from harness.generators.diffusion.schedulers import predict_x0, step_kwargs

    scheduler = getattr(diffusers, name)(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                         prediction_type=prediction)
    scheduler.set_timesteps(5)
    g = torch.Generator().manual_seed(0)
    sample = torch.randn(1, 4, 4, 4, generator=g) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        output = torch.randn(1, 4, 4, 4, generator=g)
        scaled = scheduler.scale_model_input(sample, t)
        if hasattr(scheduler, "convert_model_output"):
            if scheduler.step_index is None:
                scheduler._init_step_index(t)
            theirs = scheduler.convert_model_output(output, sample=scaled)
            result = scheduler.step(output, t, sample, **step_kwargs(scheduler, g))
        else:
            result = scheduler.step(output, t, sample, **step_kwargs(scheduler, g))
            theirs = result.pred_original_sample
        index = getattr(scheduler, "step_index", None)
        ours = predict_x0(scheduler, sample, output, t, None if index is None else index - 1)
        assert torch.allclose(ours, theirs.float(), atol=1e-5, rtol=1e-5), (name, int(t))
        sample = result.prev_sample


def test_flow_x0_is_x_minus_sigma_v(folder: Callable[[str], Path]) -> None:
    import torch

    gen = make(folder("flux-dev"), "flux-dev", steps=3)
    traj = gen.start(GenerationRequest(PROMPT, (1,)))
    row = traj.rows[0]
    before = row.latents.clone()
    scheduler = gen.pipe.scheduler
    with torch.inference_mode():
        velocity = gen.family.denoise(before, scheduler.timesteps[:1], [row.cond])
    gen.advance(traj, [0], 1)
    assert torch.allclose(row.x0.float(), before - scheduler.sigmas[0] * velocity, atol=1e-6)


def test_stochastic_flow_sampling_draws_from_the_rows_stream(folder: Callable[[str], Path]) -> None:
    gen = make(folder("sd3"), "sd3", steps=3, scheduler_config="stochastic_sampling=true", pad_batches="true",
               batch_size=2)
    assert gen.stochastic
    (first,) = gen.generate([GenerationRequest(PROMPT, (1, 2))])
    (again,) = gen.generate([GenerationRequest(PROMPT, (2, 1))])
    assert same_pixels(first.images, again.images[::-1])
    deterministic = make(folder("sd3"), "sd3", steps=3)
    (plain,) = deterministic.generate([GenerationRequest(PROMPT, (1,))])
    assert not same_pixels([plain.images[0]], [first.images[0]])  # later noise changed the image


# ---------------------------------------------------------------------------------------------
# step control


def test_the_generator_supports_step_control(folder: Callable[[str], Path]) -> None:
    from harness.generators.diffusion.generator import DiffusersGenerator

    assert supports_step_control(DiffusersGenerator)
    gen = make(folder("sd15"), "sd15", steps=3)
    assert gen.total_steps == 4  # PNDM (SD 1.5's scheduler) with skip_prk_steps repeats one timestep
    assert not gen.stochastic


def test_fork_is_refused_for_a_deterministic_sampler(folder: Callable[[str], Path]) -> None:
    gen = make(folder("sd15"), "sd15")
    traj = gen.start(GenerationRequest(PROMPT, (1,)))
    gen.advance(traj, [0], 1)
    with pytest.raises(ValueError, match=r"PNDMScheduler is a deterministic sampler.*would be a copy"):
        gen.fork(traj, 0, 9)
    assert len(traj) == 1


def test_fork_continues_with_a_fresh_stream_and_keep_duplicates_the_old_one(folder: Callable[[str], Path]) -> None:
    gen = make(folder("sd15"), "sd15", steps=4, scheduler="EulerAncestralDiscreteScheduler", pad_batches="true",
               batch_size=4)
    assert gen.stochastic
    (reference_result,) = gen.generate([GenerationRequest(PROMPT, (1,))])
    traj = gen.start(GenerationRequest(PROMPT, (1,)))
    gen.advance(traj, [0], 2)
    a, b = gen.fork(traj, 0, 77), gen.fork(traj, 0, 77)
    c = gen.fork(traj, 0, 78)
    assert (a, b, c) == (1, 2, 3) and traj.seed(a) == 77 and traj.steps_done(a) == 2
    assert same_pixels(gen.preview(traj, [a]), gen.preview(traj, [0]))  # a fork starts where its row is
    gen.keep(traj, [0, a, b, c, 0])  # row 0 twice: a duplicate with the same stream
    images = gen.finish(traj, [0, 1, 2, 3, 4])
    assert same_pixels([images[0], images[4]], [reference_result.images[0]] * 2)  # unforked: generate's image
    assert same_pixels([images[1]], [images[2]])  # same fork seed, same continuation
    assert not same_pixels([images[1]], [images[0]]) and not same_pixels([images[1]], [images[3]])
    with pytest.raises(ValueError, match="finished"):
        gen.fork(traj, 0, 5)


def test_keep_prunes_and_renumbers(folder: Callable[[str], Path]) -> None:
    gen = make(folder("pixart-sigma"), "pixart-sigma", batch_size=4, pad_batches="true")
    (result,) = gen.generate([GenerationRequest(PROMPT, (1, 2, 3))])
    traj = gen.start(GenerationRequest(PROMPT, (1, 2, 3)))
    gen.advance(traj, [0, 1, 2], 1)
    gen.keep(traj, [2, 0])
    assert len(traj) == 2 and [traj.seed(0), traj.seed(1)] == [3, 1]
    assert same_pixels(gen.finish(traj, [0, 1]), [result.images[2], result.images[0]])


def test_step_control_refuses_what_it_cannot_do(folder: Callable[[str], Path]) -> None:
    gen = make(folder("sd21"), "sd21")
    traj = gen.start(GenerationRequest(PROMPT, (1, 2)))
    with pytest.raises(ValueError, match="step 0"):
        gen.preview(traj, [0])
    with pytest.raises(ValueError, match="would pass the end"):
        gen.advance(traj, [0], gen.total_steps + 1)
    with pytest.raises(ValueError, match="named twice"):
        gen.advance(traj, [1, 1])
    with pytest.raises(IndexError, match="no row 2"):
        gen.advance(traj, [2])
    assert [traj.steps_done(0), traj.steps_done(1)] == [0, 0]  # nothing moved
    gen.advance(traj, [])
    assert gen.finish(traj, []) == [] and gen.preview(traj, []) == [] and gen.arrays(traj, []).shape[0] == 0


# ---------------------------------------------------------------------------------------------
# settings and bad input


def test_pipeline_defaults_come_from_its_own_call(folder: Callable[[str], Path]) -> None:
    """Unset settings are the installed pipeline's __call__ defaults."""
    cases = {"sd15": (50, 7.5), "sdxl": (50, 5.0), "sd3": (28, 7.0), "flux-dev": (28, 3.5), "pixart-alpha": (20, 4.5),
             "sana": (20, 4.5)}
    for kind, (steps, guidance) in cases.items():
        gen = make(folder(kind), kind, steps="none")
        assert (gen.family.steps, gen.family.guidance) == (steps, guidance), kind
    assert make(folder("flux-dev"), "flux-dev").family.max_sequence_length == 512
    assert make(folder("pixart-alpha"), "pixart-alpha").family.max_sequence_length == 120
    # the default side is the pipeline's: sample_size times the VAE's downsampling
    assert make(folder("sd15"), "sd15", resolution="none").family.resolution == 16


def test_flux_true_cfg_guides_against_the_negative_prompt(folder: Callable[[str], Path]) -> None:
    import torch

    gen = make(folder("flux-schnell"), "flux-schnell", true_cfg=4.0, negative_prompt="blurry", max_sequence_length=64)
    assert gen.family.guided
    traj = gen.start(GenerationRequest(PROMPT, (8,)))
    gen.advance(traj, [0], gen.total_steps)
    pipe = reference(folder("flux-schnell"))
    theirs = call(pipe, gen, generator=torch.Generator("cpu").manual_seed(8), true_cfg_scale=4.0,
                  negative_prompt="blurry", max_sequence_length=64)[0]
    assert np.abs(gen.arrays(traj, [0])[0] - theirs).max() <= TOLERANCE


@pytest.mark.parametrize(("values", "message"), [
    ({"resolution": 20}, r"resolution=20: StableDiffusionPipeline makes images whose side is a multiple of 8 .*try 16 "
                         r"or 24"),
    ({"scheduler": "HeunDiscreteScheduler"}, "scheduler=HeunDiscreteScheduler is not supported.*supported: DDIM"),
    ({"scheduler": "FlowMatchEulerDiscreteScheduler"}, "does not fit StableDiffusionPipeline"),
    ({"scheduler_config": "solver_order=3"}, "PNDMScheduler has no setting solver_order"),
    ({"scheduler_config": "nonsense"}, "not KEY=VALUE"),
    ({"true_cfg": 3.0}, "true_cfg is FLUX's setting"),
    ({"max_sequence_length": 64}, "max_sequence_length: StableDiffusionPipeline has no such setting"),
    ({"steps": 0, "batch_size": 0}, "steps must be at least 1, got 0; batch_size must be at least 1, got 0"),
])
def test_bad_settings_are_refused_in_one_line(values: dict[str, Any], message: str,
                                              folder: Callable[[str], Path]) -> None:
    with pytest.raises(ValueError, match=message) as err:
        make(folder("sd15"), "sd15", **values)
    assert "\n" not in str(err.value)


def test_flow_models_refuse_noise_prediction_schedulers_and_flux_true_cfg_needs_a_negative(
        folder: Callable[[str], Path]) -> None:
    with pytest.raises(ValueError, match="does not fit StableDiffusion3Pipeline, a flow-matching model"):
        make(folder("sd3"), "sd3", scheduler="EulerDiscreteScheduler")
    with pytest.raises(ValueError, match="true_cfg > 1 needs a negative_prompt"):
        make(folder("flux-dev"), "flux-dev", true_cfg=2.0)
    with pytest.raises(ValueError, match=r"multiple of 4 .*packed in 2x2 patches"):
        make(folder("flux-dev"), "flux-dev", resolution=18)
    with pytest.raises(ValueError, match="multiple of 32"):
        make(folder("sana"), "sana", resolution=48)


def test_folders_that_are_not_supported_pipelines(folder: Callable[[str], Path], tmp_path: Path) -> None:
    import json
    import shutil

    from harness.weights import MissingWeightsError

    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match=r"is not a diffusers pipeline folder: it has no model_index\.json"):
        make(plain, "sd15")
    unet = folder("sd15") / "unet"
    with pytest.raises(ValueError, match="describes a single UNet2DConditionModel"):
        make(unet, "sd15")
    other = shutil.copytree(folder("sd15"), tmp_path / "kandinsky")
    index = json.loads((other / "model_index.json").read_text())
    (other / "model_index.json").write_text(json.dumps({**index, "_class_name": "KandinskyPipeline"}))
    with pytest.raises(ValueError, match="holds a KandinskyPipeline, which the diffusers generator does not support; "
                                         "supported: StableDiffusionPipeline, StableDiffusionXLPipeline"):
        make(other, "sd15")
    broken = shutil.copytree(folder("sd15"), tmp_path / "broken")
    for weights in (broken / "unet").glob("*.safetensors"):
        weights.unlink()
    shutil.rmtree(broken / "tokenizer")
    with pytest.raises(MissingWeightsError, match=r"incomplete: missing tokenizer/, unet/ weights\..*hf download"):
        make(broken, "sd15")


def test_a_hub_id_not_in_the_cache_names_the_download(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from harness.weights import MissingWeightsError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError, match=r"nobody/no-such-pipeline.*`hf download nobody/no-such-pipeline`"):
        make(Path("nobody/no-such-pipeline"), "sd15")


def test_a_cached_hub_snapshot_loads_by_its_id(folder: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    """A hub id is found in the HF cache (offline), the folder layout `hf download` leaves there."""
    import shutil

    import huggingface_hub.constants

    hub = tmp_path / "hub"
    repo = hub / "models--tiny--sd15"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(folder("sd15"), snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub))
    gen = make(Path("tiny/sd15"), "sd15")
    (by_id,) = gen.generate([GenerationRequest(PROMPT, (1,))])
    (by_path,) = make(folder("sd15"), "sd15").generate([GenerationRequest(PROMPT, (1,))])
    assert same_pixels(by_id.images, by_path.images)
