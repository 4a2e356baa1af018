"""Soft-TIFA, TIFA and VQAScore as GenEval 2's reference computes them (`evaluation.py`,
`soft_tifa_analysis.py`), apart from the model call: the questions, the answer spellings whose
probabilities are summed, the hard-answer check and every aggregation.

Per question (evaluation.py `soft_tifa` / `tifa`):

* the VQA model is asked `"{question} Answer in one word."` about the image, in one user turn;
* its answer spellings ("variants"): for a question starting with "How many", the answer word, the
  word capitalised, each with a leading space, the digit and the digit with a leading space (six,
  in that order); for any other question "Yes", "yes", " yes", " Yes", whatever the answer field says;
* each variant stands for the FIRST token of its encoding (`tokenizer.encode(variant)[0]`), so with
  Qwen's tokenizer " 3" stands for the bare-space token and "10" for "1", and a token that two
  variants share is counted twice, as the reference counts it;
* Soft-TIFA's score is the sum of the full-vocabulary softmax probabilities of those tokens at the
  first answer position (no renormalisation, no clipping: it can exceed 1 in principle);
* TIFA's score is 1 when the decoded most likely first token, lower-cased, is one of the variant
  strings, else 0.

VQAScore asks `Does this image show "{prompt}"? Answer the question with Yes or No.` and sums the
probabilities of "Yes", "yes", " yes", " Yes" in the same way.

Aggregation (evaluation.py `main`, soft_tifa_analysis.py): per image, Soft-TIFA AM = the arithmetic
mean of its question scores, GM = `scipy.stats.gmean` of them (0 when any score is 0), TIFA = the
mean of its 0/1 scores; a suite figure is `100 * sum(per-image scores) / count`. Per skill (atom
level, Soft-TIFA scores): `100 * sum / count` over all questions of that skill; per atomicity
(prompt level): `100 * sum(GM) / count` over the images whose prompt has that atom count. The
additions happen in the reference's order (images in order, questions in order), so the floats
are the reference's. Where the reference would divide by zero (no question of a skill, no prompt
of an atomicity in the results) the figure is None.

With several images per prompt (a pool, or GenEval's four samples) every image is one of the
reference's rows: the figures are those of the reference run over all the images.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.geneval2.data import ATOM_COUNTS, COUNT_PREFIX, SKILLS

QUESTION_TEMPLATE = "{} Answer in one word."  # evaluation.py, soft_tifa() and tifa()
VQASCORE_TEMPLATE = 'Does this image show "{}"? Answer the question with Yes or No.'  # evaluation.py, vqa_score()
YES_VARIANTS = ("Yes", "yes", " yes", " Yes")
# evaluation.py return_numeric_string: the digit of a number word; "other" for anything else
NUMERIC = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6", "seven": "7",
           "eight": "8", "nine": "9", "ten": "10"}
METHODS = ("soft_tifa_gm", "soft_tifa_am", "tifa", "vqascore")


def numeric_string(number: str) -> str:
    """evaluation.py `return_numeric_string`."""
    return NUMERIC.get(number, "other")


def answer_variants(question: str, answer: str) -> tuple[str, ...]:
    """The reference's answer list for one question, in its order."""
    if question.startswith(COUNT_PREFIX):
        digit = numeric_string(answer)
        return (answer, answer.capitalize(), " " + answer, " " + answer.capitalize(), digit, " " + digit)
    return YES_VARIANTS


def question_text(question: str) -> str:
    return QUESTION_TEMPLATE.format(question)


def vqascore_text(prompt: str) -> str:
    # The reference formats this string a second time (`message_prompt.format(prompt)`), which changes
    # nothing unless the prompt holds braces; no GenEval 2 prompt does.
    return VQASCORE_TEMPLATE.format(prompt)


def variant_tokens(variants: Sequence[str], encode: Callable[[str], Sequence[int]]) -> tuple[int, ...]:
    """The token each variant stands for: `encode(variant)[0]`, duplicates kept (the reference sums them all)."""
    return tuple(int(encode(variant)[0]) for variant in variants)


def soft_score(probs: Sequence[float]) -> float:
    """The sum of the variants' probabilities, added in the reference's order (`lm_prob += ...`)."""
    total = 0.0
    for p in probs:
        total += float(p)
    return total


def hard_score(predicted: str, variants: Sequence[str]) -> int:
    """TIFA's 0/1: the decoded argmax token, lower-cased, is one of the variant strings."""
    return int(predicted.lower() in variants)


def arithmetic_mean(scores: Sequence[float]) -> float:
    return sum(scores) / len(scores)


def geometric_mean(scores: Sequence[float]) -> float:
    """`scipy.stats.gmean`, as the reference takes it; 0 when a score is 0 (its log warning silenced)."""
    from scipy.stats import gmean

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(gmean(list(scores)))


def suite_mean(values: Sequence[float]) -> float:
    """evaluation.py: `100 * sum(per_prompt_scores) / len(per_prompt_scores)`."""
    return 100 * sum(values) / len(values)


@dataclass(frozen=True)
class ImageScores:
    """One image's per-question results: what the reference's score lists hold for it."""

    soft: tuple[float, ...]  # Soft-TIFA per question (evaluation.py soft_tifa's score_list)
    hard: tuple[int, ...]  # TIFA per question (tifa's score_list)
    vqascore: float | None = None  # None when not computed

    @property
    def soft_tifa_am(self) -> float:
        return arithmetic_mean(self.soft)

    @property
    def soft_tifa_gm(self) -> float:
        return geometric_mean(self.soft)

    @property
    def tifa(self) -> float:
        return arithmetic_mean(self.hard)


@dataclass(frozen=True)
class Row:
    """One evaluated image with what the analysis needs of its prompt's record."""

    skills: tuple[str, ...]
    atom_count: int
    scores: ImageScores


@dataclass(frozen=True)
class Figures:
    """The reference's figures over a set of images (values on the 0-100 scale; None where undefined)."""

    images: int
    soft_tifa_gm: float
    soft_tifa_am: float
    tifa: float
    vqascore: float | None
    skills: dict[str, float | None] = field(default_factory=dict)  # per skill, atom level (Soft-TIFA AM)
    skill_counts: dict[str, int] = field(default_factory=dict)  # questions per skill
    atomicity: dict[int, float | None] = field(default_factory=dict)  # per atom count, prompt level (GM)
    atomicity_counts: dict[int, int] = field(default_factory=dict)  # images per atom count

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "soft_tifa_gm": self.soft_tifa_gm,
            "soft_tifa_am": self.soft_tifa_am,
            "tifa": self.tifa,
            "vqascore": self.vqascore,
            "skills": {s: {"score": v, "questions": self.skill_counts[s]} for s, v in self.skills.items()},
            "atomicity": {str(k): {"score": v, "images": self.atomicity_counts[k]} for k, v in self.atomicity.items()},
        }


def figures(rows: Sequence[Row]) -> Figures:
    """evaluation.py's totals and soft_tifa_analysis.py's breakdowns over `rows`, in their order."""
    if not rows:
        raise ValueError("no results to summarise")
    per_skill = {skill: [0.0, 0] for skill in SKILLS}
    per_atoms: dict[int, list[float]] = {k: [0.0, 0] for k in ATOM_COUNTS}
    for row in rows:
        if len(row.skills) != len(row.scores.soft):
            raise ValueError(f"{len(row.scores.soft)} scores for {len(row.skills)} skills")
        for skill, score in zip(row.skills, row.scores.soft, strict=True):
            if skill not in per_skill:
                raise ValueError(f"unrecognised skill {skill!r}")
            per_skill[skill][0] += score
            per_skill[skill][1] += 1
        bucket = per_atoms.setdefault(row.atom_count, [0.0, 0])
        bucket[0] += row.scores.soft_tifa_gm
        bucket[1] += 1
    vqascores = [row.scores.vqascore for row in rows]
    return Figures(
        images=len(rows),
        soft_tifa_gm=suite_mean([row.scores.soft_tifa_gm for row in rows]),
        soft_tifa_am=suite_mean([row.scores.soft_tifa_am for row in rows]),
        tifa=suite_mean([row.scores.tifa for row in rows]),
        vqascore=None if any(v is None for v in vqascores) else suite_mean([float(v) for v in vqascores]),
        skills={s: (100 * total / n if n else None) for s, (total, n) in per_skill.items()},
        skill_counts={s: int(n) for s, (_, n) in per_skill.items()},
        atomicity={k: (total * 100 / n if n else None) for k, (total, n) in sorted(per_atoms.items())},
        atomicity_counts={k: int(n) for k, (_, n) in sorted(per_atoms.items())},
    )


def is_finite_probability_list(values: Any) -> bool:
    """Whether `values` is a list of finite non-negative numbers (what a stored score list must be)."""
    return isinstance(values, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values)
