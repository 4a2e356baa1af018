"""`adaptive-n`: draw candidates in batches until the verifier is satisfied (or the budget is spent).

Source: the adaptive best-of-N idea of stopping once a verifier passes a threshold, as in the
reflection loops of PARM++ (Guo et al. 2025: "stop when the judge says yes") and Reflect-DiT (Li et
al. 2025); here without feedback: fresh candidates in batches of `batch` b (the sample's candidate
seeds, in order) until some candidate's score reaches `tau`, or n_max = B candidates are drawn. The
pick is the best candidate drawn (the first among ties; every passing one beats every failing one).

Because it only needs finished candidates, its expected accuracy and expected cost over random
candidate orders follow exactly from an existing pool, for every tau at once and with no
regeneration: `harness.search.adaptive.adaptive_n_exact` (`stepwise curve --adaptive-n VERIFIER`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.plugins import SearchProblem, SearchResult, param
from strategies.search.scoring import final_scores

__all__ = ["AdaptiveNStrategy"]


class AdaptiveNStrategy:
    description: ClassVar[str] = ("Adaptive N: candidates in batches of b until the verifier's score reaches tau or "
                                  "n_max (= budget) are drawn; the best drawn.")

    @dataclass(frozen=True)
    class Params:
        verifier: str = param("orm", help="Scores each finished candidate.")
        tau: float = param(0.5, help="Stop after a batch in which some candidate scores at least this.")
        batch: int = param(1, help="Candidates generated (and scored) together.")

    def __init__(self, params: Params) -> None:
        if params.batch < 1:
            raise ValueError(f"batch must be >= 1, got {params.batch}")
        self.params = params
        self.verifiers = (params.verifier,)

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        p, gen, prompt = self.params, ctx.generator, problem.prompt
        best: tuple[float, int, Any] | None = None  # (score, candidate, image)
        drawn = 0
        while drawn < problem.budget:
            size = min(p.batch, problem.budget - drawn)
            traj = gen.start(gen.request(prompt, ctx.seeds(size, first=drawn)))
            images = gen.finish(traj, list(range(size)))
            scores = final_scores(ctx.verifiers[p.verifier], prompt, images)
            for k, (score, image) in enumerate(zip(scores, images, strict=True)):
                if best is None or score > best[0]:
                    best = (score, drawn + k, image)
            drawn += size
            if max(scores) >= p.tau:
                ctx.note("passed", drawn=drawn, scores=scores, tau=p.tau)
                break
            ctx.note("batch", drawn=drawn, scores=scores, tau=p.tau)
        assert best is not None
        return SearchResult(best[2], details={"candidate": best[1], "score": best[0], "drawn": drawn,
                                              "passed": best[0] >= p.tau})
