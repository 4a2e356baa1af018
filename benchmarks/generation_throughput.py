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
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=20, help="Candidates per prompt (the paper's pool: 20).")
    parser.add_argument("--prompts", type=int, default=2, help="Prompts to generate for.")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    parser.add_argument("--model", default=None, help="Show-o weights (default: a tiny random model).")
    parser.add_argument("--vq-model", default="showlab/magvitv2")
    parser.add_argument("--llm", default=None)
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    import torch

    from harness.generators.showo.generator import ShowoGenerator
    from harness.plugins import parse_params
    from harness.runner import candidate_seed

    torch.set_num_threads(args.threads)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    seeds = [tuple(candidate_seed(0, p, k) for k in range(args.candidates)) for p in range(args.prompts)]
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
