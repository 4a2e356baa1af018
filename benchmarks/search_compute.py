"""Generator compute of PARM: the pool-based best-of-N (every path generated to the end, judged after)
vs `parm-prune` (paths truncated while generating, as the paper describes), same seeds, same picks.

Both sides run the tiny random Show-o (our implementation, `pad_batches=true` so a row's pixels never
depend on its batch) at the paper's settings: 18 MaskGIT steps, N = 20 paths per prompt, and the real
`parm` verifier code on a scripted engine (`harness.tiny.scripted_vlm`) whose clarity answers are
"yes" for `--clear` of the previews and whose potential answers are "no" for about half the paths
(`--potential 0.5`):

- best-of-N: `generate()` the N candidates with every step's preview, score them with the `parm`
  verifier (the official search, after the fact), select by the `parm` strategy's key: N x 18 NFE;
- parm-prune: the same N seeds stepped together, the clarity question every step, the potential
  question at the first clear step, "no" stops the path; NFE counted by the harness's ledger.

The script prints, per prompt, both picks (they must be the same image: it stops otherwise), the
NFE of both, and what the ratio is at the paper's settings as a function of the clear step: a path
truncated at its clear step t costs t steps instead of T, so with a share q of paths truncated at a
mean clear step t, best-of-N / parm-prune = T / (q t + (1 - q) T) (plus the fallback's lazily
finished path when nothing survives). The last line is `ratio: <best-of-N NFE ÷ parm-prune NFE>`.

    .venv/bin/python benchmarks/search_compute.py [--prompts 4] [--paths 20] [--steps 18] [--clear 0.35]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a photo of a red cup and a blue dog", "a photo of three cats", "a photo of a bench left of a car",
           "a photo of a purple umbrella", "a photo of a green bicycle", "a photo of two clocks"]


def predicted_ratio(steps: int, truncated: float, clear_step: float) -> float:
    """best-of-N / parm-prune NFE when a share `truncated` of paths stops at `clear_step` and the rest run on."""
    return steps / (truncated * clear_step + (1.0 - truncated) * steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--paths", type=int, default=20, help="N paths per prompt (the paper's best-of-20)")
    parser.add_argument("--steps", type=int, default=18, help="MaskGIT steps (Show-o's 18)")
    parser.add_argument("--clear", type=float, default=0.35, help="share of previews the clarity question calls clear")
    parser.add_argument("--potential", type=float, default=0.5, help="share of clear paths with potential")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import numpy as np
    import torch

    from harness.generators.showo.generator import ShowoGenerator
    from harness.plugins import GenerationRequest, parse_params
    from harness.runner import LoadedVerifier
    from harness.search.context import sample_seeds
    from harness.search.runner import search_sample
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.scripted_vlm import ScriptedYesNoEngine
    from harness.tiny.showo import write_tiny_showo
    from harness.verifiers.vlm import ParmParams, ParmVerifier
    from strategies.builtin import ParmStrategy
    from strategies.search.parm_prune import ParmPruneStrategy

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="stepwise-search-bench-"))
    params = {"model": str(write_tiny_showo(root / "showo")), "vq_model": str(write_tiny_magvit(root / "magvit")),
              "resolution": "32", "steps": str(args.steps), "batch_size": str(args.paths), "pad_batches": "true",
              "device": "cpu"}
    generator = ShowoGenerator(parse_params(ShowoGenerator.Params, params))
    verifier = ParmVerifier(ParmParams(model="scripted"),
                            engine=ScriptedYesNoEngine(clear=args.clear, potential=args.potential))
    strategy = ParmPruneStrategy(ParmPruneStrategy.Params())
    loaded = [LoadedVerifier("parm", "0" * 64, verifier, True)]
    n, steps = args.paths, args.steps
    print(f"tiny random Show-o, {steps} steps, N = {n} paths; scripted PARM: clarity yes for {args.clear:.0%} of "
          f"previews, potential yes for {args.potential:.0%} of clear paths")
    pool_nfe = prune_nfe = 0
    pool_seconds = prune_seconds = 0.0
    stops: list[int] = []  # the step each truncated path stopped at
    paths = 0
    for index, prompt in enumerate(PROMPTS[:args.prompts]):
        seeds = sample_seeds(0, index, 0, n)
        started = time.perf_counter()
        (result,) = generator.generate([GenerationRequest(prompt, tuple(seeds), previews=True)])
        keys = ParmStrategy(ParmStrategy.Params()).select_key({"parm": verifier.score(prompt, result.images,
                                                                                      result.previews)})
        best = max(range(n), key=lambda i: (keys[i], -i))  # the first among ties, as the official code
        pool_seconds += time.perf_counter() - started
        started = time.perf_counter()
        done = search_sample(strategy, generator, loaded, prompt=prompt, prompt_index=index, sample=0, budget=n,
                             run_seed=0, images_dir=root / "images")
        prune_seconds += time.perf_counter() - started
        same = np.array_equal(np.asarray(done.result.image), np.asarray(result.images[best]))
        pick = done.result.details["row"]
        print(f"prompt {index} {prompt!r}: best-of-{n} picks path {best}, parm-prune picks path {pick}: "
              f"{'identical image' if same and pick == best else 'DIFFERENT'}; NFE {n * steps} vs "
              f"{done.ledger.generator_nfe} ({done.result.details['survivors']} survivors)")
        if not (same and pick == best):
            raise SystemExit("the picks differ: parm-prune must pick what pool-based PARM picks")
        pool_nfe += n * steps
        prune_nfe += done.ledger.generator_nfe
        paths += n
        stops += [e["step"] for e in done.events if e["event"] == "note" and e["kind"] == "truncated"]
    share = len(stops) / paths
    measured_clear = sum(stops) / len(stops) if stops else float(steps)
    print(f"best-of-{n}: {pool_nfe} NFE, {pool_seconds:.2f} s; parm-prune: {prune_nfe} NFE, {prune_seconds:.2f} s "
          f"(seconds include the verifier's work; the scripted engine is instant)")
    print(f"{share:.0%} of paths were truncated, at step {measured_clear:.1f} on average: the formula "
          f"T / (q t + (1 - q) T) = {predicted_ratio(steps, share, measured_clear):.2f} (the fallback's lazily "
          "finished paths, when nothing survived, are in the measured NFE but not in the formula)")
    print("at the paper's settings (T = 18, N = 20), with half the paths truncated at their clear step t: "
          + ", ".join(f"t = {t}: {predicted_ratio(18, 0.5, t):.2f}x" for t in (3, 6, 9, 12))
          + "; all truncated at t: 18 / t (e.g. t = 6: 3.00x)")
    print(f"ratio: {pool_nfe / prune_nfe:.2f}")


if __name__ == "__main__":
    main()
