"""Seconds to compute exact best-of-n curves over one cached pool, and the generations it saves.

A synthetic GenEval-sized pool: 553 prompts with GenEval's task sizes, 80 candidates each,
random verdicts, and 5 verifiers with random keys (three rounded to 2 decimals or coarser so
that ties occur, as they do with real reward-model scores). Timed: the curves n = 1..20 of
all 5 verifiers plus their task scores, best of 3 runs (time.perf_counter).

Also printed: how many images the pool approach generates (553 x 80, once) versus GenEval's
protocol run afresh for each n (4 images per prompt, each the best of n new candidates:
553 x 4 x (1 + 2 + ... + 20)).

The last line is `seconds: <time to compute all curves>`.

    .venv/bin/python benchmarks/curve_speed.py [--seed 0] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from harness.scaling import curve, task_scores

# GenEval's prompt counts per task (553 in all), in its order.
TASK_SIZES = {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94, "position": 100, "color_attr": 100}
CANDIDATES = 80  # 4 GenEval samples x 20
NS = range(1, 21)
IMAGES_PER_PROMPT = 4  # GenEval's protocol


def synthetic_pool(rng: np.random.Generator) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Tags (P,), verdicts (P, m) and five verifiers' keys (P, m), some with many ties."""
    tags = [tag for tag, size in TASK_SIZES.items() for _ in range(size)]
    shape = (len(tags), CANDIDATES)
    difficulty = rng.random((len(tags), 1))  # per-prompt success rate, so prompts differ
    correct = rng.random(shape) < difficulty
    signal = correct + rng.normal(0, 1.0, shape)  # a verifier better than chance
    verifiers = {
        "orm": signal,
        "orm_rounded": np.round(signal, 2),
        "prm": np.round(rng.random(shape), 2),
        "parm_potential": rng.integers(0, 2, shape).astype(float),  # two values: mostly ties
        "random": np.zeros(shape),  # all tied: best-of-n == random pick
    }
    return tags, correct, verifiers


def compute_all(tags: list[str], correct: np.ndarray, verifiers: dict[str, np.ndarray]) -> dict[str, dict]:
    """Every verifier's curve (n = 1..20) and its per-task scores."""
    return {name: task_scores(curve(keys, correct, NS), tags) for name, keys in verifiers.items()}


def best_time(repeats: int, tags: list[str], correct: np.ndarray, verifiers: dict[str, np.ndarray]) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        compute_all(tags, correct, verifiers)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    tags, correct, verifiers = synthetic_pool(np.random.default_rng(args.seed))
    prompts = len(tags)
    scores = compute_all(tags, correct, verifiers)
    seconds = best_time(args.repeats, tags, correct, verifiers)

    print(f"pool: {prompts} prompts x {CANDIDATES} candidates, {len(verifiers)} verifiers, n = 1..{max(NS)}")
    for name, by_task in scores.items():
        overall = by_task["overall"]
        print(f"  {name:<15} overall n=1 {overall[0]:.4f}  n=4 {overall[3]:.4f}  n=20 {overall[-1]:.4f}")
    pool_images = prompts * CANDIDATES
    fresh_images = prompts * IMAGES_PER_PROMPT * sum(NS)
    print(f"generations, pool (once): {pool_images}")
    print(f"generations, fresh per n (GenEval protocol, {IMAGES_PER_PROMPT} images x best-of-n): {fresh_images}")
    print(f"ratio: {fresh_images / pool_images:.1f}x fewer generations with the pool")
    print(f"seconds: {seconds:.6f}")


if __name__ == "__main__":
    main()
