"""The one denoising loop: rows of latents, each with its own scheduler state and random stream.

A row is one candidate image being made: its prompt's conditioning, its latents, a copy of the
scheduler (set up as the pipeline sets it up, then copied per row, so multistep history and step
index are the row's own), its `torch.Generator` and how many steps it has taken. `step(rows)`
takes one step on a batch of rows with ONE denoiser call (rows may be at different steps and of
different prompts: each row brings its own timestep and conditioning), then steps each row's
scheduler on its own slice of the output with its own generator. So a row's numbers depend only
on its seed and its conditioning, never on its batch-mates, except through the shape of the
batch: with `pad_batches` every denoiser and VAE call has `batch_size` rows (the missing ones
copies of the first), and a candidate's pixels are then the same bitwise in any batch (on CPU;
on GPU as far as kernels are chosen by shape).

`generate()` and step control share `new_row`, `step` and `decode`: stepping a row to the end
with no fork is exactly the loop `generate()` runs.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.generators.diffusion.schedulers import predict_x0, step_kwargs

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL.Image import Image

    from harness.generators.diffusion.families import Conditioning, Family

__all__ = ["Row", "Sampler"]


@dataclass(eq=False)
class Row:
    cond: Conditioning
    seed: int  # the seed it was started or forked with
    generator: torch.Generator  # its random stream: initial latents, then every noise draw of its steps
    scheduler: Any  # its own copy of the scheduler (step index, multistep history)
    latents: torch.Tensor  # (1, ...) as the pipeline holds them
    steps_done: int = 0
    x0: torch.Tensor | None = None  # the last step's prediction of the clean latents (latents' dtype)

    def copy(self, seed: int | None = None) -> Row:
        """A row in the same state; `seed` given: with a fresh stream from it, else the same stream (state copied)."""
        import torch

        generator = torch.Generator(device=self.generator.device)
        if seed is None:
            generator.set_state(self.generator.get_state())
        else:
            generator.manual_seed(int(seed))
        return Row(self.cond, self.seed if seed is None else int(seed), generator, copy.deepcopy(self.scheduler),
                   self.latents.clone(), self.steps_done, None if self.x0 is None else self.x0.clone())


class Sampler:
    """The loop over a pipeline `family` with scheduler `template` (timesteps already set)."""

    def __init__(self, family: Family, template: Any, *, batch_size: int, pad_batches: bool,
                 one_step_takes_x0: bool = False) -> None:
        self.family = family
        self.template = template
        self.batch_size = batch_size
        self.pad_batches = pad_batches
        self.total_steps = len(template.timesteps)
        # PixArt-alpha's one-step (DMD) rule: with a single step the image is the step's x0.
        self.one_step_takes_x0 = one_step_takes_x0 and self.total_steps == 1

    def new_row(self, cond: Conditioning, seed: int) -> Row:
        """A row at step 0: latents drawn by the pipeline's `prepare_latents` from the row's own generator."""
        import torch

        generator = torch.Generator(device=self.family.device).manual_seed(int(seed))
        latents = self.family.initial_latents(generator, cond)
        return Row(cond, int(seed), generator, copy.deepcopy(self.template), latents)

    def mixed_row(self, cond: Conditioning, seed: int, mix: Sequence[tuple[int, float]]) -> Row:
        """A row at step 0 whose initial latents are sum(weight * the latents seed s draws) over `mix`;
        its own stream (later noise draws of stochastic samplers) comes from `seed`."""
        import torch

        row = self.new_row(cond, seed)
        latents = torch.zeros_like(row.latents, dtype=torch.float32)
        for source, weight in mix:
            drawn = torch.Generator(device=self.family.device).manual_seed(int(source))
            latents += float(weight) * self.family.initial_latents(drawn, cond).float()
        row.latents = latents.to(row.latents.dtype)
        return row

    def chunks(self, rows: list[Row]) -> list[list[Row]]:
        size = self.batch_size
        return [rows[i:i + size] for i in range(0, len(rows), size)]

    def _padded(self, items: list[Any]) -> list[Any]:
        missing = self.batch_size - len(items) if self.pad_batches else 0
        return items + [items[0]] * missing

    def step(self, rows: list[Row]) -> None:
        """One step on each of `rows` (at most batch_size, none finished): one batched denoiser call."""
        import torch

        family = self.family
        timesteps = [row.scheduler.timesteps[row.steps_done] for row in rows]
        inputs = [row.scheduler.scale_model_input(row.latents, t) if family.scales_input else row.latents
                  for row, t in zip(rows, timesteps, strict=True)]
        out = family.denoise(torch.cat(self._padded(inputs)), torch.stack(self._padded(timesteps)),
                             self._padded([row.cond for row in rows]))
        for i, (row, t) in enumerate(zip(rows, timesteps, strict=True)):
            output, before = out[i:i + 1], row.latents
            result = row.scheduler.step(output, t, before, **step_kwargs(row.scheduler, row.generator),
                                        return_dict=False)
            index = getattr(row.scheduler, "step_index", None)  # advanced by the step: the one used is index - 1
            row.x0 = predict_x0(row.scheduler, before, output, t, None if index is None else index - 1).to(before.dtype)
            row.latents = result[1] if self.one_step_takes_x0 else result[0]
            row.steps_done += 1

    def run_to_end(self, rows: list[Row]) -> None:
        """Step every row of `rows` to total_steps, batch_size rows per denoiser call."""
        while True:
            active = [row for row in rows if row.steps_done < self.total_steps]
            if not active:
                return
            for chunk in self.chunks(active):
                self.step(chunk)

    def decode(self, latents: list[torch.Tensor]) -> torch.Tensor:
        """The VAE's images (N, 3, H, W) of latents (each (1, ...)), batch_size per VAE call."""
        import torch

        out = []
        for first in range(0, len(latents), self.batch_size):
            chunk = latents[first:first + self.batch_size]
            out.append(self.family.decode(torch.cat(self._padded(chunk)))[:len(chunk)])
        return torch.cat(out)

    def images(self, latents: list[torch.Tensor]) -> list[Image]:
        """PIL images of latents, postprocessed by the pipeline's own image processor."""
        if not latents:
            return []
        return self.family.pipe.image_processor.postprocess(self.decode(latents), output_type="pil")

    def arrays(self, latents: list[torch.Tensor]) -> np.ndarray:
        """The same images as float arrays (N, H, W, 3) in [0, 1], as `pipeline(output_type="np")` returns them."""
        import numpy as np

        if not latents:
            side = self.family.resolution
            return np.zeros((0, side, side, 3), dtype=np.float32)
        return self.family.pipe.image_processor.postprocess(self.decode(latents), output_type="np")

    def current(self, row: Row) -> torch.Tensor:
        """What a row's preview shows: its x0 prediction, or its final latents once finished."""
        if row.steps_done == 0:
            raise ValueError("a row at step 0 has no preview yet (advance it first)")
        if row.steps_done >= self.total_steps:
            return row.latents
        assert row.x0 is not None
        return row.x0
