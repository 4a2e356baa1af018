"""`smc`: particle resampling by intermediate rewards, in the style of Feynman-Kac steering.

Source: Singhal et al., "A General Framework for Inference-time Scaling and Steering of Diffusion
Models" (2025, FK steering), and its reference code (zacharyhorvitz/Fk-Diffusion-Steering,
`fkd_class.py`), which this follows: K particles; at each resampling step the reward r of every
particle's x0 prediction (here: its preview) gives a potential

    max         r' = max(r, r_prev)   G = exp(lam * r')
    sum         r' = r + r_prev       G = exp(lam * r')        (the code's "add")
    difference  r' = r                G = exp(lam * (r - r_prev))

with r_prev the particle's previous r' (0 at first: the code's reward_min_value). Weights are
clamped to [0, 1e10], NaN -> 0, all zero -> all one; when the effective sample size 1 / sum(w_i^2)
of the normalised weights falls below `ess_threshold` x K (the code: 0.5), K particles are drawn
with replacement in proportion to G (multinomial), r_prev and the product of potentials follow the
drawn particles; otherwise nothing is resampled and r_prev = r'. The final pick is the best final
image by the verifier (`final`, default the same one): resampling at the last step, which the code
also does (with corrected weights G / product), could only duplicate particles, never change that
argmax, so it is skipped.

Stepwise differences: a particle drawn twice continues as a `fork` with a fresh seed (in diffusion
the next step's noise differs per particle; a copied row here would repeat its random stream), and
the draws come from a stream seeded per sample (`ctx.rng`), not torch's global one. With budget B:
K = B particles from the sample's first B candidate seeds; every particle runs all steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from harness.plugins import SearchProblem, SearchResult, param
from strategies.search.scoring import final_scores, first_best, preview_scores, score_steps

__all__ = ["SmcStrategy", "fk_weights"]


def fk_weights(rewards: list[float], previous: list[float], potential: str, lam: float) -> tuple[list[float],
                                                                                                   list[float]]:
    """(weights, r') of FK steering's potential for one resampling step (module docstring)."""
    if potential == "max":
        current = [max(r, p) for r, p in zip(rewards, previous, strict=True)]
        exponents = [lam * r for r in current]
    elif potential == "sum":
        current = [r + p for r, p in zip(rewards, previous, strict=True)]
        exponents = [lam * r for r in current]
    elif potential == "difference":
        current = list(rewards)
        exponents = [lam * (r - p) for r, p in zip(rewards, previous, strict=True)]
    else:
        raise ValueError(f"unknown potential {potential!r}: max, sum or difference")
    weights = []
    for x in exponents:
        w = math.exp(min(x, 700.0))  # exp overflows past ~709; the clamp below caps it at 1e10 anyway
        weights.append(0.0 if math.isnan(w) else min(max(w, 0.0), 1e10))
    if sum(weights) == 0:
        weights = [1.0] * len(weights)
    return weights, current


def effective_sample_size(weights: list[float]) -> float:
    total = sum(weights)
    return 1.0 / sum((w / total) ** 2 for w in weights)


class SmcStrategy:
    description: ClassVar[str] = ("Particle resampling in the style of FK steering: K particles, potentials from a "
                                  "verifier on previews (max, difference, sum), resampling when the ESS drops.")

    @dataclass(frozen=True)
    class Params:
        verifier: str = param("orm", help="The reward of a particle's preview (orm, prm, parm: its potential, ...).")
        final: str | None = param(None, help="Picks among the finished particles; default: `verifier`.")
        potential: Literal["max", "difference", "sum"] = param("max", help="FK steering's potential (its 'add' "
                                                                           "is sum).")
        lam: float = param(10.0, help="lambda: the potentials' inverse temperature (the reference code's 10).")
        ess_threshold: float = param(0.5, help="Resample when the effective sample size is below this x K.")
        points: int = param(4, help="Resampling steps, evenly spaced before the last step.")
        at: tuple[int, ...] = param((), help="Explicit resampling steps (1..total_steps - 1), instead of `points`.")

    def __init__(self, params: Params) -> None:
        if not 0.0 <= params.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must be in [0, 1], got {params.ess_threshold}")
        if params.points < 0:
            raise ValueError(f"points must be >= 0, got {params.points}")
        self.params = params
        self.verifiers = tuple(dict.fromkeys([params.verifier, params.final or params.verifier]))

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        p, gen, prompt = self.params, ctx.generator, problem.prompt
        k = problem.budget
        total = gen.total_steps
        steps = [s for s in (score_steps(total - 1, p.points, p.at) if total > 1 else []) if s < total]
        traj = gen.start(gen.request(prompt, ctx.seeds(k)))
        rng = ctx.rng("smc")
        previous = [0.0] * k  # the reference code's reward_min_value
        product = [1.0] * k
        scorer = ctx.verifiers[p.verifier]
        for step in steps:
            everyone = list(range(k))
            gen.advance(traj, everyone, step - traj.steps_done(0))
            rewards = preview_scores(scorer, prompt, gen.preview(traj, everyone))
            weights, current = fk_weights(rewards, previous, p.potential, p.lam)
            ess = effective_sample_size(weights)
            if ess < p.ess_threshold * k:
                drawn = sorted(rng.choices(range(k), weights=weights, k=k))
                order, used = [], set()
                for i in drawn:
                    order.append(i if i not in used else gen.fork(traj, i, ctx.fresh_seed()))
                    used.add(i)
                gen.keep(traj, order)
                previous = [current[i] for i in drawn]
                product = [product[i] * weights[i] for i in drawn]
                ctx.note("resample", step=step, rewards=rewards, weights=weights, ess=ess, drawn=drawn)
            else:
                previous = current
                ctx.note("no-resample", step=step, rewards=rewards, weights=weights, ess=ess)
        finals = gen.finish(traj, list(range(k)))
        scores = final_scores(ctx.verifiers[p.final or p.verifier], prompt, finals)
        pick = first_best(scores)
        ctx.note("selected", row=pick, scores=scores)
        return SearchResult(finals[pick], details={"row": pick, "seed": traj.seed(pick), "particles": k,
                                                   "steps": steps})
