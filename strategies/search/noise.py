"""`noise-search`: search over the initial noise, with a verifier's score of the finished image.

Source: Ma et al., "Inference-Time Scaling for Diffusion Models beyond Scaling Denoising Steps"
(arXiv 2501.09732, 2025), section 3.2 ("search algorithms": random search and zero-order search).

`mode=random` is their random search: `budget` independent initial noises, each generated to the end
and scored; the pick is the best. It is best-of-n with n = budget, drawn from the sample's first
`budget` candidate seeds, the seeds a pool run gives the same candidates: with `--samples 1` its pick
is the pool's best-of-B by the same verifier (tests/test_noise_search.py checks it). Any stepping
generator can do it.

`mode=zero-order` is their zero-order search: start from a random pivot noise n; each round draw
`neighbors` noises around it, y = sqrt(1 - λ²) n + λ ε (ε a fresh standard Gaussian noise per
neighbour, λ = `radius` in (0, 1]), generate each to the end and score it; if the best neighbour
scores above the pivot it becomes the pivot, otherwise a fresh random pivot is drawn and scored (the
search restarts there). We write the neighbourhood as that mix, rather than the paper's "noises at
distance λ", so that every candidate is still an exact draw of the model's Gaussian prior (n and ε are
independent, the weights' squares sum to 1); λ = 1 makes every neighbour a fresh noise. Rounds go
on until `rounds` rounds are done (0: no limit) or the budget of `budget` full generations is spent;
the pick is the best-scoring image of all generated. Noises are mixes of seeded draws
(`harness.plugins.NoiseMix`), so a search is reproducible from the run seed and its trace records
each candidate's mix. It needs a generator that starts from given noise (`supports_initial_noise`:
the diffusers generator); Show-o and Janus have no initial noise and are refused.

Compute: every candidate runs all steps, so a search costs at most budget x total_steps candidate-steps
(NFE), as best-of-budget does; the harness's ledger counts them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from harness.plugins import NoiseMix, SearchProblem, SearchResult, param
from strategies.search.scoring import final_scores, first_best

__all__ = ["NoiseSearchStrategy"]


@dataclass
class _Candidate:
    image: Any
    score: float
    mix: NoiseMix
    seed: int  # the row's own stream (later noise of stochastic samplers)


class NoiseSearchStrategy:
    description: ClassVar[str] = ("Search over the initial noise (Ma et al. 2025): random (= best-of-n) or zero-order "
                                  "(neighbours of a pivot noise, accept the best if it improves, else redraw).")

    @dataclass(frozen=True)
    class Params:
        mode: Literal["random", "zero-order"] = param(
            "random", help="random: `budget` independent noises, the best by `verifier` (= best-of-n); zero-order: "
                           "neighbours of a pivot noise, the best accepted if it improves, else a fresh pivot.")
        verifier: str = param("orm", help="Scores the finished images (orm, clipscore, pickscore, ...).")
        neighbors: int = param(4, help="zero-order: neighbours generated per round.")
        radius: float = param(0.5, help="zero-order: lambda in (0, 1]; a neighbour is sqrt(1 - lambda^2) pivot + "
                                        "lambda fresh noise (1: every neighbour is a fresh noise).")
        rounds: int = param(0, help="zero-order: at most this many rounds (0: until the budget is spent).")

    def __init__(self, params: Params) -> None:
        if params.neighbors < 1:
            raise ValueError(f"noise-search: neighbors must be >= 1, got {params.neighbors}")
        if not 0 < params.radius <= 1:
            raise ValueError(f"noise-search: radius must be in (0, 1], got {params.radius}")
        if params.rounds < 0:
            raise ValueError(f"noise-search: rounds must be >= 0, got {params.rounds}")
        self.params = params
        self.verifiers = (params.verifier,)

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        if self.params.mode == "random":
            return self._random(problem, ctx)
        if not getattr(ctx.generator, "supports_initial_noise", False):
            raise ValueError("noise-search: mode=zero-order needs a generator that starts from given initial noise "
                             "(diffusers); this one has none (Show-o and Janus make discrete tokens): use mode=random")
        return self._zero_order(problem, ctx)

    def _random(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        gen, prompt = ctx.generator, problem.prompt
        seeds = ctx.seeds(problem.budget)
        traj = gen.start(gen.request(prompt, seeds))
        images = gen.finish(traj, list(range(len(traj))))
        scores = final_scores(ctx.verifiers[self.params.verifier], prompt, images)
        pick = first_best(scores)
        ctx.note("selected", row=pick, scores=scores)
        return SearchResult(images[pick], details={"mode": "random", "row": pick, "seed": seeds[pick]})

    def _generate(self, problem: SearchProblem, ctx: Any, seeds: list[int], mixes: list[NoiseMix]
                  ) -> list[_Candidate]:
        gen = ctx.generator
        traj = gen.start_mixed(gen.request(problem.prompt, seeds), mixes)
        images = gen.finish(traj, list(range(len(traj))))
        scores = final_scores(ctx.verifiers[self.params.verifier], problem.prompt, images)
        return [_Candidate(im, s, mix, seed) for im, s, mix, seed in zip(images, scores, mixes, seeds, strict=True)]

    def _zero_order(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        p = self.params
        keep, step = math.sqrt(1.0 - p.radius ** 2), p.radius
        first = ctx.seeds(1)[0]
        (pivot,) = self._generate(problem, ctx, [first], [((first, 1.0),)])
        best, spent, rounds = pivot, 1, 0
        ctx.note("pivot", seed=first, score=pivot.score, why="start")
        while spent < problem.budget and (p.rounds == 0 or rounds < p.rounds):
            count = min(p.neighbors, problem.budget - spent)
            fresh = [ctx.fresh_seed() for _ in range(count)]
            mixes = [(*((s, w * keep) for s, w in pivot.mix), (e, step)) for e in fresh]
            found = self._generate(problem, ctx, fresh, mixes)
            spent += count
            rounds += 1
            top = found[first_best([c.score for c in found])]
            accepted = top.score > pivot.score
            ctx.note("round", round=rounds, pivot_score=pivot.score, scores=[c.score for c in found], seeds=fresh,
                     accepted=accepted)
            if top.score > best.score:
                best = top
            if accepted:
                pivot = top
            elif spent < problem.budget:  # no neighbour improves: restart from a fresh random pivot
                seed = ctx.fresh_seed()
                (pivot,) = self._generate(problem, ctx, [seed], [((seed, 1.0),)])
                spent += 1
                ctx.note("pivot", seed=seed, score=pivot.score, why="redraw")
                if pivot.score > best.score:
                    best = pivot
        ctx.note("selected", score=best.score, mix=[[s, w] for s, w in best.mix])
        return SearchResult(best.image, details={"mode": "zero-order", "seed": best.seed, "rounds": rounds,
                                                 "generated": spent,
                                                 "mix": [[int(s), float(w)] for s, w in best.mix]})
