"""A scripted stand-in for the VLM yes/no engine: answers decided by the image's pixels, no model.

The issue's "scripted PARM": the real `parm` (and `orm`) verifier code (`harness.verifiers.vlm`), its
questions, decisions and selection, on an engine whose answers are fixed functions of (question kind,
image content, seed). So a test or benchmark controls how often paths are clear or have potential
(`clear`, `potential`: the probabilities over images), and the answers never depend on batching,
order or call count, exactly like a deterministic VLM:

    verifier = ParmVerifier(ParmParams(model="scripted"), engine=ScriptedYesNoEngine(potential=0.5))

Per query: u = a uniform number in [0, 1) from sha256(seed, kind, image pixels); clarity "yes" when
u < clear, potential "yes" when u < potential, the ORM's P("yes") = u; `generate_text` answers the
ORM's way and adds one scripted sentence. These are NOT model outputs: use them for mechanics only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from harness.verifiers.engine import GeneratedAnswer, YesNoAnswer, YesNoQuery

__all__ = ["ScriptedYesNoEngine", "query_kind"]


def query_kind(query: YesNoQuery) -> str:
    """Which of the verifiers' questions a query asks: clarity, potential, judge or orm."""
    first = query.turns[0].text
    if len(query.turns) == 3:
        return "potential"
    if "certain step" in first:
        return "clarity"
    if "explain in one sentence" in first:
        return "judge"
    return "orm"


def _answer(p_yes: float, p_no: float) -> YesNoAnswer:
    probs = {"yes": p_yes, "no": p_no, "maybe": max(0.0, 1.0 - p_yes - p_no)}
    order = sorted(probs, key=lambda t: (-probs[t], t))
    return YesNoAnswer(p_yes, p_no, tuple(order), tuple(probs[t] for t in order))


class ScriptedYesNoEngine:
    """`answer(queries)` and `generate_text(queries)` like `YesNoEngine`'s, scripted (module docstring)."""

    def __init__(self, *, clear: float = 0.35, potential: float = 0.5, seed: int = 0) -> None:
        self.clear = clear
        self.potential = potential
        self.seed = seed
        self.calls = 0
        self.questions = 0

    def uniform(self, kind: str, image: Any) -> float:
        digest = hashlib.sha256(f"{self.seed}|{kind}|{image.mode}|{image.size}|".encode())
        digest.update(image.tobytes())
        return int.from_bytes(digest.digest()[:8], "big") / 2.0**64

    def _one(self, query: YesNoQuery) -> YesNoAnswer:
        kind = query_kind(query)
        u = self.uniform("orm" if kind == "judge" else kind, query.image)
        if kind == "clarity":
            return _answer(0.55 + 0.4 * u, 0.3 * u) if u < self.clear else _answer(0.3 * u, 0.55 + 0.4 * u)
        if kind == "potential":
            return _answer(0.6 + 0.3 * u, 0.1 + 0.2 * u) if u < self.potential else _answer(0.1 * u, 0.5 + 0.4 * u)
        return _answer(u, (1.0 - u) * 0.9)

    def answer(self, queries: Sequence[YesNoQuery]) -> list[YesNoAnswer]:
        self.calls += 1
        self.questions += len(queries)
        return [self._one(q) for q in queries]

    def generate_text(self, queries: Sequence[YesNoQuery], max_new_tokens: int = 40) -> list[GeneratedAnswer]:
        self.calls += 1
        self.questions += len(queries)
        out = []
        for query in queries:
            first = self._one(query)
            word = first.argmax_answer()
            text = f"{word}. The image {'matches' if word == 'yes' else 'does not match'} the prompt."
            out.append(GeneratedAnswer(first, text, min(max_new_tokens, len(text.split()) + 1)))
        return out
