"""Images per second: a prompt's candidates generated in one batch vs one at a time (the official loop).

Both sides run our Show-o implementation (`harness.generators.showo`) with the same weights,
prompts and candidate seeds, in one run:

- one at a time: what the paper's code (ZiyuGuo99/Image-Generation-CoT, `baseline.py`) does:
  for each candidate, 18 forward passes over the whole sequence (text prefix and image) of one
  conditional + one unconditional row (`batch_size=1, prefix_cache=false`);
- batched: all of a prompt's candidates in one batch, the text prefix run once per prompt:
  each step is one forward pass of 2 x N rows over the image positions only.

Two workloads: final images only (what best-of-N with an outcome verifier needs), and with the
step previews decoded through MAGVIT-v2 after every step, as `baseline.py` always does (what
PRM and PARM need). Candidates draw from their own seeds, so both sides sample the same tokens
unless float rounding (batched vs single kernels, cached vs recomputed prefix) moves a near-tie
sample; the script reports how many images came out byte-identical.

Without weights it builds a tiny random Show-o + MAGVIT-v2 (same classes, tiny sizes): the
ratio then measures the harness's batching, not the real model's arithmetic. With `--model`,
`--vq-model`, `--llm` (local folders or HF-cache ids) it runs the real model, on CUDA when
there is one, and the absolute images/s are the real model's.
The last line is `ratio: <batched ÷ one-at-a-time images/s>` for final images only.

    .venv/bin/python benchmarks/generation_throughput.py [--candidates 20] [--prompts 2] [--threads 1]

`--case diffusers` measures the `diffusers` generator instead: a prompt's candidates in batches of
`--candidates` (one denoiser call per step for all of them, the prompt encoded once) against what
a diffusers user does to get the same images, one `pipeline(prompt, generator=torch.Generator(device)
.manual_seed(seed), ...)` call per candidate, on the same pipeline weights. It reports how many
images came out byte-identical and the largest pixel difference (float rounding of batched vs
single kernels, at most one 8-bit level). Without `--pipeline` it builds the tiny random SD 1.5
(`harness.tiny.diffusion`); with `--pipeline DIR_OR_ID` it runs that checkpoint, on CUDA when there
is one. The last line is again `ratio: <batched ÷ one call per candidate images/s>`.

    .venv/bin/python benchmarks/generation_throughput.py --case diffusers [--pipeline DIR] [--steps 20]
"""

from __future__ import annotations

import argparse
import inspect
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a photo of a red cup and a blue dog", "a photo of three cats", "a photo of a bench left of a car",
           "a photo of a purple umbrella"]


def build_tiny(root: Path) -> dict[str, str]:
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo

    vq = write_tiny_magvit(root / "magvit")
    showo = write_tiny_showo(root / "showo")
    return {"model": str(showo), "vq_model": str(vq), "resolution": "32"}


def run(generator, prompts: list[str], seeds: list[tuple[int, ...]], previews: bool) -> tuple[float, list[bytes]]:
    from harness.plugins import GenerationRequest

    started = time.perf_counter()
    images = []
    for prompt, prompt_seeds in zip(prompts, seeds, strict=True):
        (result,) = generator.generate([GenerationRequest(prompt, prompt_seeds, previews=previews)])
        images.extend(image.tobytes() for image in result.images)
    return time.perf_counter() - started, images


def diffusers_case(args: argparse.Namespace, prompts: list[str], seeds: list[tuple[int, ...]]) -> None:
    """Batched candidates through the `diffusers` generator vs one diffusers pipeline call per candidate."""
    import diffusers
    import numpy as np
    import torch

    from harness.generators.diffusion.generator import DiffusersGenerator
    from harness.plugins import GenerationRequest, parse_params

    diffusers.utils.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        values = {"pipeline": args.pipeline, "steps": str(args.steps), "batch_size": str(args.candidates)}
        label = f"diffusers pipeline {args.pipeline}"
        if not args.pipeline:
            from harness.tiny.diffusion import TINY_RESOLUTION, write_tiny_pipeline

            values.update(pipeline=str(write_tiny_pipeline("sd15", Path(tmp) / "sd15")),
                          resolution=str(TINY_RESOLUTION["sd15"]))
            label = "tiny random SD 1.5 pipeline (measures batching, not the real model)"
        if args.resolution:
            values["resolution"] = str(args.resolution)
        if args.device:
            values["device"] = args.device
        batched = DiffusersGenerator(parse_params(DiffusersGenerator.Params, values))
        family = batched.family
        # The user's side: the same components in a pipeline of their own, with a fresh scheduler.
        components = {**batched.pipe.components,
                      "scheduler": type(batched.pipe.scheduler).from_config(batched.pipe.scheduler.config)}
        if "requires_safety_checker" in inspect.signature(type(batched.pipe).__init__).parameters:
            components["requires_safety_checker"] = False  # SD without its safety checker, as the generator runs it
        pipe = type(batched.pipe)(**components)
        pipe.set_progress_bar_config(disable=True)
        call_args = inspect.signature(type(pipe).__call__).parameters
        extra = {"use_resolution_binning": False} if "use_resolution_binning" in call_args else {}

        def one_call_each(prompt_seeds: list[tuple[str, int]]) -> list[np.ndarray]:
            out = []
            for prompt, seed in prompt_seeds:
                generator = torch.Generator(batched.device).manual_seed(seed)
                (image,) = pipe(prompt, generator=generator, num_inference_steps=family.steps,
                                guidance_scale=family.guidance, height=family.resolution, width=family.resolution,
                                **extra).images
                out.append(np.asarray(image))
            return out

        def in_batches(requests: list[GenerationRequest]) -> list[np.ndarray]:
            return [np.asarray(image) for request in requests for image in batched.generate([request])[0].images]

        requests = [GenerationRequest(p, s) for p, s in zip(prompts, seeds, strict=True)]
        pairs = [(p, seed) for p, s in zip(prompts, seeds, strict=True) for seed in s]
        one_call_each(pairs[:1])  # warm-up: first-call allocations on both sides
        in_batches([GenerationRequest(prompts[0], seeds[0][:2])])
        started = time.perf_counter()
        single_images = one_call_each(pairs)
        single_s = time.perf_counter() - started
        started = time.perf_counter()
        batched_images = in_batches(requests)
        batched_s = time.perf_counter() - started

    n_images = len(pairs)
    same = sum(np.array_equal(a, b) for a, b in zip(single_images, batched_images, strict=True))
    worst = max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(single_images, batched_images,
                                                                                strict=True))
    print(f"model: {label}; {type(pipe).__name__}, {batched.scheduler_name}; device {batched.device}, "
          f"{batched.pipe.dtype}; {args.prompts} prompts x {args.candidates} candidates, {family.steps} steps, "
          f"guidance {family.guidance}, {family.resolution} px; torch threads {torch.get_num_threads()}")
    print(f"  one pipeline call per candidate: {single_s:8.2f} s  {n_images / single_s:8.2f} images/s")
    print(f"  batched (diffusers generator):   {batched_s:8.2f} s  {n_images / batched_s:8.2f} images/s   "
          f"ratio {single_s / batched_s:.2f}; byte-identical images {same}/{n_images}, max pixel difference {worst}")
    print(f"ratio: {single_s / batched_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["showo", "diffusers"], default="showo", help="Which generator to measure.")
    parser.add_argument("--candidates", type=int, default=20, help="Candidates per prompt (the paper's pool: 20).")
    parser.add_argument("--prompts", type=int, default=2, help="Prompts to generate for.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument("--model", default=None, help="Show-o weights (default: a tiny random model).")
    parser.add_argument("--vq-model", default="showlab/magvitv2")
    parser.add_argument("--llm", default=None)
    parser.add_argument("--pipeline", default=None, help="--case diffusers: a diffusers pipeline folder or hub id "
                                                         "(default: a tiny random SD 1.5).")
    parser.add_argument("--steps", type=int, default=20, help="--case diffusers: denoising steps.")
    parser.add_argument("--resolution", type=int, default=None, help="--case diffusers: image side "
                                                                     "(default: the pipeline's).")
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    import torch

    from harness.generators.showo.generator import ShowoGenerator
    from harness.plugins import parse_params
    from harness.runner import candidate_seed

    torch.set_num_threads(args.threads)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    seeds = [tuple(candidate_seed(0, p, k) for k in range(args.candidates)) for p in range(args.prompts)]
    if args.case == "diffusers":
        diffusers_case(args, prompts, seeds)
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            values = {"model": args.model, "vq_model": args.vq_model}
            if args.llm:
                values["llm"] = args.llm
            label = f"Show-o {args.model}"
        else:
            values = build_tiny(Path(tmp))
            label = "tiny random Show-o (measures batching, not the real model)"
        if args.device:
            values["device"] = args.device
        batched = ShowoGenerator(parse_params(ShowoGenerator.Params, {**values, "batch_size": args.candidates}))
        single = ShowoGenerator(parse_params(ShowoGenerator.Params,
                                             {**values, "batch_size": 1, "prefix_cache": False}))
        run(batched, prompts[:1], [seeds[0][:2]], True)  # warm-up: first-call allocations on both sides
        run(single, prompts[:1], [seeds[0][:1]], True)
        timings = {}
        for previews in (True, False):
            single_s, single_images = run(single, prompts, seeds, previews)
            batched_s, batched_images = run(batched, prompts, seeds, previews)
            same = sum(a == b for a, b in zip(single_images, batched_images, strict=True))
            timings[previews] = (single_s, batched_s, same)

    n_images = args.prompts * args.candidates
    print(f"model: {label}; device {batched.device}; {args.prompts} prompts x {args.candidates} candidates, "
          f"{batched.params.steps} steps, guidance {batched.params.guidance}; torch threads {torch.get_num_threads()}")
    for previews, name in ((True, "with step previews decoded every step"), (False, "final images only")):
        single_s, batched_s, same = timings[previews]
        print(f"{name}:")
        print(f"  one at a time: {single_s:8.2f} s  {n_images / single_s:8.2f} images/s")
        print(f"  batched:       {batched_s:8.2f} s  {n_images / batched_s:8.2f} images/s   "
              f"ratio {single_s / batched_s:.2f}; byte-identical images {same}/{n_images}")
    single_s, batched_s, _ = timings[False]
    print(f"ratio: {single_s / batched_s:.2f}")


if __name__ == "__main__":
    main()
