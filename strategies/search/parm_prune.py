"""`parm-prune`: PARM as the paper describes it, truncating low-potential paths while they are generated.

Source: Guo et al., "Can We Generate Images with CoT? Let's Verify and Reinforce Image Generation Step
by Step" (2025), section 3, "Potential Assessment Reward Model": (1) clarity judgement at every
intermediate step, "if labeled 'no', the model skips to the next step"; (2) at the first clear step
the potential assessment, "if labeled 'no', the generation path is truncated immediately"; (3) a
best-of-N' selection among the N' surviving paths by the ORM question, and "if N' = 0, the model
defaults to selecting the reasoning path with the lowest probability of a 'no' label". The questions,
their texts and decisions are the `parm` verifier's (`harness.verifiers.vlm`, the official code's).

With budget B: N = B paths, the sample's candidate seeds (those of its pool candidates), advance
together one step at a time. After each step, the paths not yet clear get the clarity question on
their preview; a path that becomes clear gets the potential question on that same preview; "no"
(or an answer that is neither) stops it: it takes no more generator steps. Survivors and paths
never judged clear run to the end. The pick is the survivor with the highest ORM score, else the
path with the lowest no_prob (1 for a path never clear, 50 for an unexpected potential answer), the
first among ties, as the official code picks; when that path was truncated, its remaining steps are
computed only then (and counted: they are generator compute like any other).

On the same seeds the pick is the one the pool-based `parm` strategy selects among the same N
candidates (its key orders paths exactly so), while the generator runs fewer steps: a path truncated
at clear step t costs t steps instead of `total_steps`. `points` > 0 judges at the generator's preview
points instead of every step (ceil(k x T / points), k = 1..points; Janus' pools judge its 8 canvases).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.plugins import SearchProblem, SearchResult, param
from strategies.search.scoring import first_best, score_steps

__all__ = ["ParmPruneStrategy"]


class ParmPruneStrategy:
    description: ClassVar[str] = ("PARM with real truncation: N paths step together, clarity each step, potential at "
                                  "the first clear step, 'no' stops the path; ORM among survivors, else lowest P(no).")

    @dataclass(frozen=True)
    class Params:
        verifier: str = param("parm", help="The PARM verifier whose clarity, potential and outcome questions decide.")
        points: int = param(0, help="Judge previews at this many evenly spaced steps (ceil(k*T/points)); 0 = every "
                                    "step (MaskGIT: the paper's and the pool's previews). Janus pools: 8.")

    def __init__(self, params: Params) -> None:
        if params.points < 0:
            raise ValueError(f"points must be >= 0, got {params.points}")
        self.params = params
        self.verifiers = (params.verifier,)

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        gen, parm = ctx.generator, ctx.verifiers[self.params.verifier]
        n, prompt = problem.budget, problem.prompt
        traj = gen.start(gen.request(prompt, ctx.seeds(n)))
        judged_at = set(score_steps(gen.total_steps, self.params.points))
        clear_step: list[int | None] = [None] * n
        no_prob = [1.0] * n  # the official default for a path never judged clear
        survivor = [False] * n
        alive = list(range(n))
        for step in range(1, gen.total_steps + 1):
            if not alive:
                break
            gen.advance(traj, alive, 1)
            unclear = [r for r in alive if clear_step[r] is None]
            if step not in judged_at or not unclear:
                continue
            previews = gen.preview(traj, unclear)
            became = [(r, im) for r, im, a in zip(unclear, previews, parm.clarity(prompt, previews), strict=True)
                      if a.clear]
            if not became:
                continue
            for (r, _), answer in zip(became, parm.potential(prompt, [im for _, im in became]), strict=True):
                clear_step[r], no_prob[r], survivor[r] = step, answer.no_prob, answer.survivor
                if not answer.survivor:
                    alive.remove(r)
                    ctx.note("truncated", row=r, step=step, potential=answer.potential, no_prob=answer.no_prob)
        survivors = [r for r in range(n) if survivor[r]]
        if survivors:
            finals = gen.finish(traj, survivors)  # already at the last step: no generator compute
            scores = [1.0 + a.score for a in parm.outcome(prompt, finals)]
            best = first_best(scores)
            pick, image = survivors[best], finals[best]
            ctx.note("selected", rule="best ORM score among survivors", row=pick, survivors=survivors, scores=scores)
        else:
            pick = min(range(n), key=lambda r: (no_prob[r], r))  # the official fallback: lowest P("no"), first
            (image,) = gen.finish(traj, [pick])  # a truncated path's remaining steps are computed only now
            ctx.note("selected", rule="no survivor: lowest no_prob", row=pick, no_prob=no_prob)
        return SearchResult(image, details={"row": pick, "seed": traj.seed(pick), "survivors": len(survivors),
                                            "clear_step": clear_step, "no_prob": no_prob})
