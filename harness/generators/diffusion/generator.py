"""The `diffusers` generator plug-in: text-to-image diffusion and flow pipelines through diffusers.

    stepwise run --generator diffusers --param pipeline=DIR_OR_ID [--param steps=28] [--param guidance=7]
                 [--param resolution=1024] [--param scheduler=NAME] [--param dtype=bfloat16] ...

Supported pipeline classes (`families.py`): StableDiffusionPipeline (SD 1.5, 2.1),
StableDiffusionXLPipeline, StableDiffusion3Pipeline, FluxPipeline (dev, schnell),
PixArtAlphaPipeline, PixArtSigmaPipeline, SanaPipeline. diffusers' components do the work (the
text encoders through `encode_prompt`, the UNet or transformer, `scheduler.step`, the VAE and
image processor); stepwise owns the loop, the randomness and the batching (`sampler.py`):

* candidate i draws its initial latents from its own `torch.Generator(device).manual_seed(seed_i)`
  through the pipeline's `prepare_latents` (same shape, dtype and device as the pipeline draws
  them), and a stochastic scheduler draws every later noise of that row from the same generator.
  So the candidate with seed s is the image `pipeline(prompt, generator=torch.Generator(device)
  .manual_seed(s), num_inference_steps=..., guidance_scale=..., height=..., width=...)` returns;
* candidates of all requests of a call are batched, `batch_size` per denoiser call, each prompt's
  text encoded once, classifier-free guidance as the class does it;
* step previews (when a verifier asks) are the decoded x0 predictions at `previews` evenly
  spaced steps, the last being the final image;
* step control (`start / advance / preview / fork / keep / finish`, `harness.plugins`) runs the
  same loop; `fork` needs a stochastic scheduler (EulerAncestral, DDPM, SDE-DPM-Solver++,
  stochastic flow Euler) and is refused for deterministic ones (a fork would be a copy).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Literal

from harness.plugins import Cost, GenerationRequest, GenerationResult, param

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

    from harness.generators.diffusion.families import Conditioning
    from harness.generators.diffusion.sampler import Row

__all__ = ["DiffusersGenerator", "DiffusersParams", "DiffusionTrajectories"]


@dataclass(frozen=True, kw_only=True)
class DiffusersParams:
    pipeline: str = param(help="A diffusers text-to-image pipeline: a local folder with model_index.json or a hub "
                               "id in the HF cache (e.g. black-forest-labs/FLUX.1-dev).")
    steps: int | None = param(None, help="Denoising steps (num_inference_steps); default: the pipeline's own "
                                         "(SD 50, SD3 and FLUX 28, PixArt and Sana 20).")
    guidance: float | None = param(None, help="Guidance scale (guidance_scale): classifier-free guidance, FLUX's "
                                              "distilled guidance embedding; default: the pipeline's own.")
    true_cfg: float = param(1.0, help="FLUX only: true classifier-free guidance against negative_prompt when > 1 "
                                      "(diffusers' true_cfg_scale).")
    negative_prompt: str | None = param(None, help="The negative prompt of classifier-free guidance; default: the "
                                                   "pipeline's (empty, or zeros for SDXL).")
    resolution: int | None = param(None, help="Image side in pixels (square); default: the pipeline's. Must fit the "
                                              "VAE and patch size (checked at load).")
    scheduler: str | None = param(None, help="A diffusers scheduler class made from the pipeline's scheduler config "
                                             "(e.g. EulerAncestralDiscreteScheduler); default: the pipeline's own.")
    scheduler_config: tuple[str, ...] = param((), help="KEY=VALUE overrides of the scheduler config, comma-separated "
                                                       "(e.g. algorithm_type=sde-dpmsolver++).")
    max_sequence_length: int | None = param(None, help="T5/Gemma prompt tokens (SD3, FLUX, PixArt, Sana); default: "
                                                       "the pipeline's (FLUX.1-schnell is used with 256).")
    previews: int | Literal["all"] = param(8, help="Step previews per candidate when a verifier asks: the decoded x0 "
                                                   "prediction at this many evenly spaced steps (the last is the "
                                                   "final image), or all.")
    batch_size: int = param(8, help="Candidates per denoiser call (twice as many rows with guidance).")
    pad_batches: bool = param(False, help="Pad partial batches to batch_size so every denoiser and VAE call has one "
                                          "shape: a candidate's pixels then do not depend, even in the last bit, on "
                                          "its batch-mates. Costs compute on small requests.")
    variant: str | None = param(None, help="Weight file variant to load (e.g. fp16: *.fp16.safetensors).")
    device: str | None = param(None, help="Torch device; default cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = param(
        "auto", help="Weights and activations; auto = float16 (SD, SDXL, SD3, PixArt) or bfloat16 (FLUX, Sana) on "
                     "CUDA, float32 elsewhere.")


@dataclass(eq=False)
class DiffusionTrajectories:
    """The rows of one request being generated (`harness.plugins.Trajectories`)."""

    request: GenerationRequest
    cond: Conditioning
    rows: list[Row] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)

    def seed(self, row: int) -> int:
        return self.rows[row].seed

    def steps_done(self, row: int) -> int:
        return self.rows[row].steps_done


class DiffusersGenerator:
    """Diffusion and flow pipelines through diffusers, batched, per-candidate seeds, with step control."""

    Params: ClassVar[type] = DiffusersParams
    description: ClassVar[str] = ("Diffusion/flow pipelines through diffusers (SD 1.5/2.1, SDXL, SD3, FLUX, PixArt, "
                                  "Sana): per-candidate seeds, x0 previews, step control.")

    def __init__(self, params: DiffusersParams) -> None:
        from harness.devices import pick_device
        from harness.generators.diffusion.families import FAMILIES, Settings
        from harness.generators.diffusion.loading import find_pipeline, geometry, load_pipeline, resolve_dtype
        from harness.generators.diffusion.sampler import Sampler
        from harness.generators.diffusion.schedulers import (
            build_scheduler,
            check_choice,
            is_flow,
            is_stochastic,
            parse_overrides,
        )

        _check(params)
        self.params = params
        folder, index = find_pipeline(params.pipeline)
        class_name = index["_class_name"]
        family_cls = FAMILIES[class_name]
        # What the configs can tell is checked before loading gigabytes of weights.
        shape = geometry(folder)
        if params.resolution is not None and shape is not None:
            family_cls.check_resolution(params.resolution, *shape)
        overrides = parse_overrides(params.scheduler_config)
        listed = index.get("scheduler")
        if isinstance(listed, list) and len(listed) == 2 and isinstance(listed[1], str):
            check_choice(params.scheduler, overrides, listed[1])
        self.device = pick_device(params.device)
        dtype = resolve_dtype(params.dtype, self.device, family_cls.cuda_dtype)
        self.pipe = load_pipeline(folder, class_name, dtype=dtype, device=self.device, variant=params.variant,
                                  extra=family_cls.load_kwargs)
        self.family = family_cls(self.pipe, Settings(
            steps=params.steps, guidance=params.guidance, true_cfg=params.true_cfg,
            negative_prompt=params.negative_prompt, resolution=params.resolution,
            max_sequence_length=params.max_sequence_length))
        scheduler = build_scheduler(self.pipe.scheduler, params.scheduler, overrides)
        if is_flow(scheduler) != self.family.flow:
            model = "a flow-matching model" if self.family.flow else "a noise-prediction diffusion model"
            raise ValueError(f"scheduler {type(scheduler).__name__} does not fit {class_name}, {model}; leave "
                             "`scheduler` unset for the pipeline's own")
        self.family.set_timesteps(scheduler)
        if self.family.begin_index_zero and hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(0)
        self.pipe.scheduler = scheduler  # prepare_latents reads init_noise_sigma from it
        self.scheduler_name = type(scheduler).__name__
        self.stochastic = is_stochastic(scheduler)
        self.sampler = Sampler(self.family, scheduler, batch_size=params.batch_size, pad_batches=params.pad_batches,
                               one_step_takes_x0=class_name == "PixArtAlphaPipeline")
        self.total_steps = self.sampler.total_steps

    # -- generate --------------------------------------------------------------------------------

    def preview_steps(self) -> list[int]:
        """After how many steps each preview is taken (increasing; the last is total_steps)."""
        from harness.generators.janus import preview_points

        total, wanted = self.total_steps, self.params.previews
        if wanted == "all" or wanted >= total:
            return list(range(1, total + 1))
        return preview_points(total, wanted)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        started = time.perf_counter()
        entries = [(r, c, seed) for r, request in enumerate(requests) for c, seed in enumerate(request.seeds)]
        images: dict[tuple[int, int], Image] = {}
        previews: dict[tuple[int, int], list[Image]] = {(r, c): [] for r, c, _ in entries}
        batches_of: list[set[int]] = [set() for _ in requests]
        points = set(self.preview_steps()[:-1])  # the last preview is the final image
        with torch.inference_mode():
            conds: dict[str, Conditioning] = {}
            for request in requests:  # each prompt's text once
                if request.prompt not in conds:
                    conds[request.prompt] = self.family.encode(request.prompt)
            size = self.params.batch_size
            for number, first in enumerate(range(0, len(entries), size)):
                chunk = entries[first:first + size]
                rows = [self.sampler.new_row(conds[requests[r].prompt], seed) for r, _, seed in chunk]
                want = [i for i, (r, _, _) in enumerate(chunk) if requests[r].previews]
                for step in range(1, self.total_steps + 1):
                    self.sampler.step(rows)
                    if want and step in points:
                        frames = self.sampler.images([self.sampler.current(rows[i]) for i in want])
                        for i, frame in zip(want, frames, strict=True):
                            previews[chunk[i][:2]].append(frame)
                finals = self.sampler.images([row.latents for row in rows])
                for i, (r, c, _) in enumerate(chunk):
                    images[r, c] = finals[i]
                    if requests[r].previews:
                        previews[r, c].append(finals[i])
                    batches_of[r].add(number)
        seconds = time.perf_counter() - started
        results = []
        for r, request in enumerate(requests):
            n = request.n_candidates
            # One batched denoiser call per step counts once for each request it served.
            cost = Cost(forward_passes=self.total_steps * len(batches_of[r]), seconds=seconds * n / len(entries))
            results.append(GenerationResult(images=[images[r, c] for c in range(n)],
                                            previews=[previews[r, c] for c in range(n)], cost=cost))
        return results

    # -- step control ----------------------------------------------------------------------------

    def start(self, request: GenerationRequest) -> DiffusionTrajectories:
        import torch

        with torch.inference_mode():
            cond = self.family.encode(request.prompt)
            rows = [self.sampler.new_row(cond, seed) for seed in request.seeds]
        return DiffusionTrajectories(request, cond, rows)

    def start_mixed(self, request: GenerationRequest, mixes: Sequence[Sequence[tuple[int, float]]]
                    ) -> DiffusionTrajectories:
        """`start` with row i's initial latents the mix `mixes[i]` of seeds' draws (`harness.plugins.
        supports_initial_noise`); a mix of one seed at weight 1 is exactly `start`'s row."""
        import torch

        if len(mixes) != len(request.seeds):
            raise ValueError(f"start_mixed: {len(mixes)} noise mixes for {len(request.seeds)} seeds")
        with torch.inference_mode():
            cond = self.family.encode(request.prompt)
            rows = [self.sampler.mixed_row(cond, seed, mix) for seed, mix in zip(request.seeds, mixes, strict=True)]
        return DiffusionTrajectories(request, cond, rows)

    def _rows(self, traj: DiffusionTrajectories, rows: Sequence[int], what: str, *, unique: bool) -> list[Row]:
        bad = [i for i in rows if not isinstance(i, int) or not 0 <= i < len(traj.rows)]
        if bad:
            raise IndexError(f"{what}: no row {bad[0]} (the trajectories have {len(traj.rows)})")
        if unique and len(set(rows)) != len(rows):
            raise ValueError(f"{what}: a row is named twice in {list(rows)}")
        return [traj.rows[i] for i in rows]

    def advance(self, traj: DiffusionTrajectories, rows: Sequence[int], steps: int = 1) -> None:
        import torch

        chosen = self._rows(traj, rows, "advance", unique=True)
        if steps < 0:
            raise ValueError(f"advance: steps must be >= 0, got {steps}")
        for i, row in zip(rows, chosen, strict=True):
            if row.steps_done + steps > self.total_steps:
                raise ValueError(f"advance: row {i} is at step {row.steps_done} of {self.total_steps}; {steps} more "
                                 "would pass the end")
        with torch.inference_mode():
            for chunk in self.sampler.chunks(chosen):
                for _ in range(steps):
                    self.sampler.step(chunk)

    def preview(self, traj: DiffusionTrajectories, rows: Sequence[int]) -> list[Image]:
        import torch

        chosen = self._rows(traj, rows, "preview", unique=False)
        for i, row in zip(rows, chosen, strict=True):
            if row.steps_done == 0:
                raise ValueError(f"preview: row {i} is at step 0 and has no x0 prediction yet")
        with torch.inference_mode():
            return self.sampler.images([self.sampler.current(row) for row in chosen])

    def arrays(self, traj: DiffusionTrajectories, rows: Sequence[int]) -> np.ndarray:
        """What `preview` shows, as float arrays (N, H, W, 3) in [0, 1] before 8-bit rounding (the
        `pipeline(..., output_type="np")` form; tests compare these with diffusers' own)."""
        import torch

        chosen = self._rows(traj, rows, "arrays", unique=False)
        with torch.inference_mode():
            return self.sampler.arrays([self.sampler.current(row) for row in chosen])

    def fork(self, traj: DiffusionTrajectories, row: int, seed: int) -> int:
        import torch

        (source,) = self._rows(traj, [row], "fork", unique=True)
        if not self.stochastic:
            raise ValueError(
                f"fork: {self.scheduler_name} is a deterministic sampler (no noise after the initial latents), so a "
                f"fork of row {row} would be a copy of it; branch with a stochastic scheduler, e.g. --param "
                "scheduler=EulerAncestralDiscreteScheduler, DDPMScheduler, or DPMSolverMultistepScheduler with "
                "--param scheduler_config=algorithm_type=sde-dpmsolver++")
        if source.steps_done >= self.total_steps:
            raise ValueError(f"fork: row {row} is finished; no step is left to draw noise")
        with torch.inference_mode():
            traj.rows.append(source.copy(seed=seed))
        return len(traj.rows) - 1

    def keep(self, traj: DiffusionTrajectories, rows: Sequence[int]) -> None:
        import torch

        chosen = self._rows(traj, rows, "keep", unique=False)
        seen: set[int] = set()
        kept = []
        with torch.inference_mode():
            for row in chosen:  # a row named again is duplicated, random stream included
                kept.append(row.copy() if id(row) in seen else row)
                seen.add(id(row))
        traj.rows[:] = kept

    def finish(self, traj: DiffusionTrajectories, rows: Sequence[int]) -> list[Image]:
        import torch

        chosen = self._rows(traj, rows, "finish", unique=True)
        with torch.inference_mode():
            self.sampler.run_to_end(chosen)
            return self.sampler.images([row.latents for row in chosen])


def _check(params: DiffusersParams) -> None:
    problems = []
    if params.steps is not None and params.steps < 1:
        problems.append(f"steps must be at least 1, got {params.steps}")
    if params.guidance is not None and params.guidance < 0:
        problems.append(f"guidance must be >= 0, got {params.guidance}")
    if params.true_cfg < 1:
        problems.append(f"true_cfg must be >= 1 (1 = off), got {params.true_cfg}")
    if params.resolution is not None and params.resolution < 1:
        problems.append(f"resolution must be positive, got {params.resolution}")
    if params.max_sequence_length is not None and params.max_sequence_length < 1:
        problems.append(f"max_sequence_length must be positive, got {params.max_sequence_length}")
    if params.previews != "all" and params.previews < 1:
        problems.append(f"previews must be >= 1 or all, got {params.previews}")
    if params.batch_size < 1:
        problems.append(f"batch_size must be at least 1, got {params.batch_size}")
    if problems:
        raise ValueError("; ".join(problems))
