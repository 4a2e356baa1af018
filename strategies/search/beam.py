"""`step-beam`: beam search over generation steps, scoring previews with any verifier.

Source: the step-level beam search of Snell et al., "Scaling LLM Test-Time Compute Optimally can be
More Effective than Scaling Model Parameters" (2024), section 5 ("beam search": N beams, keep the
top N/M by the process reward, expand each into M), applied to image generation steps as the
"search over paths" of Ma et al., "Inference-Time Scaling for Diffusion Models beyond Scaling
Denoising Steps" (2025) does. Here a step's "partial solution" is the generator's preview
(MaskGIT's prediction, Janus' canvas, a diffusion model's x0 prediction).

With budget B: `width` k beams (default B // `children`) of `children` b rows each, k x b <= B
rows in all, started from the sample's first k x b candidate seeds. At each scoring step (`points`
evenly spaced steps before the last, or `at`), every row's preview is scored (`strategies.search.
scoring.preview_scores`: `parm` by its potential, `prm` by its question on that preview, `orm`,
`clipscore`, ... by their score of it); the k best rows (the first among ties) are kept and each is
forked into b - 1 more rows with fresh seeds (`fork`: same state, new randomness), the rest are
pruned. After the last scoring step all rows finish, and the pick is the best final image by
`final` (default: the same verifier). Every row runs all steps: k x b x total_steps candidate-steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.plugins import SearchProblem, SearchResult, param
from strategies.search.scoring import final_scores, first_best, preview_scores, score_steps

__all__ = ["StepBeamStrategy"]


class StepBeamStrategy:
    description: ClassVar[str] = ("Beam search over steps: keep the k best previews by a verifier, fork each into b "
                                  "children, prune the rest; best final image.")

    @dataclass(frozen=True)
    class Params:
        verifier: str = param("orm", help="Scores the previews (orm, prm, parm: its potential, clipscore, ...).")
        final: str | None = param(None, help="Picks among the finished rows; default: `verifier`.")
        width: int = param(0, help="Beams kept at each scoring step (k); 0 = budget // children.")
        children: int = param(2, help="Rows per kept beam after a scoring step (b: itself and b - 1 forks).")
        points: int = param(3, help="Scoring steps, evenly spaced before the last step.")
        at: tuple[int, ...] = param((), help="Explicit scoring steps (1..total_steps - 1), instead of `points`.")

    def __init__(self, params: Params) -> None:
        if params.children < 1 or params.width < 0 or params.points < 0:
            raise ValueError("children must be >= 1, width and points >= 0")
        self.params = params
        self.verifiers = tuple(dict.fromkeys([params.verifier, params.final or params.verifier]))

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        p, gen, prompt = self.params, ctx.generator, problem.prompt
        width = p.width or max(1, problem.budget // p.children)
        rows = width * p.children
        if rows > problem.budget:
            raise ValueError(f"step-beam: width {width} x children {p.children} = {rows} rows, more than the budget "
                             f"{problem.budget}")
        total = gen.total_steps
        steps = [s for s in (score_steps(total - 1, p.points, p.at) if total > 1 else []) if s < total]
        traj = gen.start(gen.request(prompt, ctx.seeds(rows)))
        scorer = ctx.verifiers[p.verifier]
        for step in steps:
            everyone = list(range(len(traj)))
            gen.advance(traj, everyone, step - traj.steps_done(0))
            scores = preview_scores(scorer, prompt, gen.preview(traj, everyone))
            best = sorted(everyone, key=lambda r: (-scores[r], r))[:width]
            ctx.note("beam", step=step, scores=scores, kept=best)
            order = []
            for r in best:
                order.append(r)
                order += [gen.fork(traj, r, ctx.fresh_seed()) for _ in range(p.children - 1)]
            gen.keep(traj, order)
        everyone = list(range(len(traj)))
        finals = gen.finish(traj, everyone)
        scores = final_scores(ctx.verifiers[p.final or p.verifier], prompt, finals)
        pick = first_best(scores)
        ctx.note("selected", row=pick, scores=scores)
        return SearchResult(finals[pick], details={"row": pick, "seed": traj.seed(pick), "width": width,
                                                   "children": p.children, "steps": steps})
