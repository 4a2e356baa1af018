"""`reflect`: PARM++'s reflection loop, with a documented substitute for its unreleased models.

Source: Guo et al. 2025 (the official repository's README): PARM++ "introduces a reflection mechanism
to empower generative models to self-correct the previous unsatisfactory image": generate, judge,
and regenerate from the judge's feedback until it is satisfied. Reflect-DiT (Li et al. 2025) loops
the same way with in-context reflection.

The paper's self-correcting Show-o and its reflection model are NOT released, so this is a
substitute: the judge is the engine of the `orm` verifier (any VLM it loads), asked for yes/no plus
one sentence of explanation through greedy generation (`OutcomeVerifier.judge`, the question
`harness.verifiers.vlm.judge_question`). Up to R rounds (R = `rounds`, at most the budget): round r
generates one candidate from candidate seed r; "yes" stops and picks it; "no" passes the image and
the explanation on as `GenerationRequest.feedback` to a generator that declares `accepts_feedback`
(a self-correcting model), and to every other (Show-o, Janus: they cannot read feedback) as a
rewritten prompt, the original prompt followed by the explanation (`rewrite`): such an entry is
marked "prompt rewriting: yes". When no round says yes, the round with the highest P("yes") is the
pick. GenEval always judges the pick against the original prompt's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.plugins import Feedback, SearchProblem, SearchResult, param
from strategies.search.scoring import first_best

__all__ = ["ReflectStrategy", "rewrite"]


def rewrite(prompt: str, explanation: str) -> str:
    """The next round's prompt for a generator that cannot read feedback: the original prompt, then the judge's
    explanation of what was wrong."""
    explanation = explanation.strip()
    return f"{prompt}. A previous image was judged wrong: {explanation}" if explanation else prompt


class ReflectStrategy:
    description: ClassVar[str] = ("PARM++-style reflection (substitute: the orm engine judges yes/no + one sentence): "
                                  "regenerate with feedback or a rewritten prompt until yes, at most R rounds.")

    @dataclass(frozen=True)
    class Params:
        verifier: str = param("orm", help="The judge: a verifier with judge(prompt, images) (the orm engine).")
        rounds: int = param(0, help="Rounds R at most (one generation each); 0 = the budget.")
        max_new_tokens: int = param(40, help="Length cap of the judge's answer and explanation, in tokens.")

    def __init__(self, params: Params) -> None:
        if params.rounds < 0 or params.max_new_tokens < 1:
            raise ValueError("rounds must be >= 0 and max_new_tokens >= 1")
        self.params = params
        self.verifiers = (params.verifier,)

    def search(self, problem: SearchProblem, ctx: Any) -> SearchResult:
        p, gen = self.params, ctx.generator
        judge = ctx.verifiers[p.verifier]
        if not callable(getattr(judge, "judge", None)):
            raise ValueError(f"reflect: verifier {p.verifier!r} has no judge(prompt, images) (the orm verifier has)")
        rounds = min(p.rounds or problem.budget, problem.budget)
        prompt, feedback = problem.prompt, None
        tried: list[tuple[Any, str, float]] = []  # (image, the prompt it came from, P("yes"))
        accepted: int | None = None
        for r in range(rounds):
            traj = gen.start(gen.request(prompt, ctx.seeds(1, first=r), feedback=feedback))
            (image,) = gen.finish(traj, [0])
            (verdict,) = judge.judge(problem.prompt, [image], p.max_new_tokens)
            tried.append((image, prompt, verdict.p_yes))
            ctx.note("judged", round=r, answer=verdict.answer, p_yes=verdict.p_yes, explanation=verdict.explanation,
                     prompt=prompt)
            if verdict.answer == "yes":
                accepted = r
                break
            if gen.accepts_feedback:
                feedback = Feedback(image, f"{verdict.answer}: {verdict.explanation}")
            else:
                prompt = rewrite(problem.prompt, verdict.explanation)
        best = accepted if accepted is not None else first_best([t[2] for t in tried])
        image, used, _ = tried[best]
        return SearchResult(image, prompt=used if used != problem.prompt else None,
                            details={"round": best, "rounds": len(tried), "accepted": accepted is not None,
                                     "rewritten": used != problem.prompt, "feedback": gen.accepts_feedback})
