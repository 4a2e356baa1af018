"""How the search strategies turn any verifier into one number per image (higher is better).

    preview_scores  a partial image (a step preview): `parm` -> minus its potential no_prob (PARM's own
                    key for a path: P("no"), 50 for an answer that is neither); a verifier that reads step
                    previews (`prm`) -> its score of that one preview (the ORM question on it); any other
                    (`orm`, `clipscore`, ...) -> its score of the preview as an image
    final_scores    a finished image: `parm` -> its ORM question (`outcome`), a previews verifier -> its
                    score of the image as its only step, any other -> its score

Every call goes through the search context's metered verifier, so the ledger counts it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["final_scores", "first_best", "preview_scores", "score_steps"]


def preview_scores(verifier: Any, prompt: str, images: list[Any]) -> list[float]:
    if not images:
        return []
    if callable(getattr(verifier, "potential", None)):
        return [-float(a.no_prob) for a in verifier.potential(prompt, images)]
    previews = [[image] for image in images] if verifier.needs_previews else None
    return [float(s.score) for s in verifier.score(prompt, images, previews)]


def final_scores(verifier: Any, prompt: str, images: list[Any]) -> list[float]:
    if not images:
        return []
    if callable(getattr(verifier, "outcome", None)):
        return [float(a.score) for a in verifier.outcome(prompt, images)]
    previews = [[image] for image in images] if verifier.needs_previews else None
    return [float(s.score) for s in verifier.score(prompt, images, previews)]


def first_best(values: list[float]) -> int:
    """Index of the highest value, the first among ties (the official selection's rule)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def score_steps(total: int, points: int, explicit: tuple[int, ...] = ()) -> list[int]:
    """The steps (1..total) at which a strategy looks: `explicit` when given, else `points` evenly
    spaced ones, ceil(k x total / points) for k = 1..points (the last is `total`); 0 points: every step."""
    if explicit:
        bad = [s for s in explicit if not 1 <= s <= total]
        if bad:
            raise ValueError(f"steps {bad} are outside 1..{total}")
        return sorted(set(explicit))
    if points <= 0:
        return list(range(1, total + 1))
    return sorted({-(-k * total // points) for k in range(1, points + 1)})
