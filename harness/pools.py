"""Candidate pools brought from elsewhere: one JSON line per candidate.

    {"prompt_id": "00042", "tag": "counting", "correct": true, "scores": {"orm": 0.93, "clip": 0.31}}

A line may also carry what the candidate cost, in seconds (and optionally forward passes):

    "cost": {"generator_seconds": 1.9, "verifier_seconds": {"orm": 0.05, "clip": 0.01},
             "generator_forward_passes": 50}

All or nothing per file: either every line has a cost (each with the same keys and a time for
every verifier) or none has.

A line may also carry per-step scores of verifiers that judged the step previews (what
`stepwise analyze` turns into per-step AUROC curves; `curve` ignores them):

    "step_scores": {"prm": [0.41, 0.52, 0.77]}

any subset of the line's verifiers, any number of steps; a step a candidate lacks is NaN.

Candidates are grouped by prompt (in order of first appearance) into (P, m) arrays, ragged
pools padded and marked invalid, ready for `harness.scaling`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.jsonl import iter_json_lines


@dataclass(frozen=True)
class Pool:
    prompt_ids: list[str]
    tags: list[str]  # one per prompt
    correct: np.ndarray  # bool (P, m)
    valid: np.ndarray  # bool (P, m): False where a prompt has fewer than m candidates
    scores: dict[str, np.ndarray]  # verifier -> float (P, m), 0 where invalid
    # What each candidate cost, where known (None otherwise); 0 where invalid.
    generator_seconds: np.ndarray | None = None  # float (P, m): generating the candidate
    generator_forward_passes: np.ndarray | None = None  # float (P, m): network evaluations to generate it
    verifier_seconds: dict[str, np.ndarray] | None = None  # verifier -> float (P, m): scoring it
    # Per-step scores (step previews), where known: verifier -> float (P, m, S), NaN where a candidate
    # has no score at a step (or is invalid). Details (store runs): verifier -> per prompt, per
    # candidate, the score's details.
    step_scores: dict[str, np.ndarray] | None = None
    details: dict[str, list[list[dict[str, Any]]]] | None = None
    # The suite's per-candidate score (`harness.suites.Verdict.score`, store pools): float (P, m), 0 where
    # invalid; None: the outcome is `correct` (GenEval's verdict, as in a JSONL pool).
    outcome: np.ndarray | None = None

    @property
    def outcomes(self) -> np.ndarray:
        """What a best-of-n curve takes the expectation of: the suite's score, else `correct`."""
        return self.outcome if self.outcome is not None else self.correct

    @property
    def sizes(self) -> np.ndarray:
        return self.valid.sum(axis=1)


def read_pool(lines: Iterable[str], source: str) -> Pool:
    """Parse pool lines; every malformed line is reported with its number."""
    by_prompt: dict[str, dict[str, Any]] = {}
    verifiers: list[str] | None = None
    cost_keys: tuple[str, ...] | None = None  # the cost keys of the first line (() when it has none)
    for lineno, record in iter_json_lines(lines, source):
        where = f"{source}:{lineno}"
        prompt_id, tag, correct, scores = _fields(record, where)
        if verifiers is None:
            verifiers = sorted(scores)
        elif sorted(scores) != verifiers:
            raise ValueError(f"{where}: scores for {sorted(scores)}, but earlier lines have {verifiers}; "
                             "every candidate needs a score from every verifier")
        cost = _cost(record.get("cost"), verifiers, where)
        keys = tuple(sorted(cost)) if cost is not None else ()
        if cost_keys is None:
            cost_keys = keys
        elif keys != cost_keys:
            have = f"cost keys {list(keys)}" if keys else "no cost"
            before = f"cost keys {list(cost_keys)}" if cost_keys else "no cost"
            raise ValueError(f"{where}: {have}, but earlier lines have {before}; "
                             "give a cost on every line or on none")
        entry = by_prompt.setdefault(prompt_id, {"tag": tag, "correct": [], "scores": [], "cost": [], "steps": []})
        if entry["tag"] != tag:
            raise ValueError(f"{where}: prompt {prompt_id!r} has tag {tag!r} here but {entry['tag']!r} before")
        entry["correct"].append(correct)
        entry["scores"].append([scores[v] for v in verifiers])
        entry["steps"].append(_step_scores(record.get("step_scores"), verifiers, where))
        if cost is not None:
            entry["cost"].append([cost["generator_seconds"], cost.get("generator_forward_passes", 0.0),
                                  *(cost["verifier_seconds"][v] for v in verifiers)])
    if not by_prompt or verifiers is None:
        raise ValueError(f"{source}: no candidates")
    width = max(len(e["correct"]) for e in by_prompt.values())
    n_prompts = len(by_prompt)
    correct_arr = np.zeros((n_prompts, width), dtype=bool)
    valid = np.zeros((n_prompts, width), dtype=bool)
    score_arr = np.zeros((len(verifiers), n_prompts, width), dtype=np.float64)
    has_cost = bool(cost_keys)
    cost_arr = np.zeros((2 + len(verifiers), n_prompts, width), dtype=np.float64)
    for p, entry in enumerate(by_prompt.values()):
        k = len(entry["correct"])
        correct_arr[p, :k] = entry["correct"]
        valid[p, :k] = True
        score_arr[:, p, :k] = np.asarray(entry["scores"], dtype=np.float64).T
        if has_cost:
            cost_arr[:, p, :k] = np.asarray(entry["cost"], dtype=np.float64).T
    return Pool(
        prompt_ids=list(by_prompt),
        tags=[e["tag"] for e in by_prompt.values()],
        correct=correct_arr,
        valid=valid,
        scores={v: score_arr[i] for i, v in enumerate(verifiers)},
        generator_seconds=cost_arr[0] if has_cost else None,
        generator_forward_passes=cost_arr[1] if "generator_forward_passes" in (cost_keys or ()) else None,
        verifier_seconds={v: cost_arr[2 + i] for i, v in enumerate(verifiers)} if has_cost else None,
        step_scores=step_arrays([e["steps"] for e in by_prompt.values()], width),
    )


def step_arrays(steps: list[list[dict[str, list[float]]]], width: int) -> dict[str, np.ndarray] | None:
    """Per prompt, per candidate {verifier: step scores} -> {verifier: (P, width, S) float, NaN-padded}."""
    names = sorted({name for prompt in steps for cand in prompt for name in cand})
    if not names:
        return None
    out = {}
    for name in names:
        depth = max(len(cand.get(name, ())) for prompt in steps for cand in prompt)
        arr = np.full((len(steps), width, depth), np.nan)
        for p, prompt in enumerate(steps):
            for k, cand in enumerate(prompt):
                values = cand.get(name, ())
                arr[p, k, :len(values)] = values
        out[name] = arr
    return out


def _step_scores(value: Any, verifiers: list[str], where: str) -> dict[str, list[float]]:
    """A line's optional "step_scores" object, checked: {} when the line has none."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: 'step_scores' must be an object mapping verifier names to lists of numbers")
    unknown = sorted(set(value) - set(verifiers))
    if unknown:
        raise ValueError(f"{where}: step_scores for {', '.join(unknown)}, which has no score on this line")
    out = {}
    for name, steps in value.items():
        if not isinstance(steps, list) or not all(
                isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in steps):
            raise ValueError(f"{where}: step_scores of {name!r} must be a list of finite numbers")
        out[name] = [float(x) for x in steps]
    return out


_COST_KEYS = ("generator_seconds", "verifier_seconds", "generator_forward_passes")


def _cost(cost: Any, verifiers: list[str], where: str) -> dict[str, Any] | None:
    """A line's optional "cost" object, checked: None when the line has none."""
    if cost is None:
        return None
    if not isinstance(cost, dict):
        raise ValueError(f"{where}: 'cost' must be an object like "
                         '{"generator_seconds": 1.9, "verifier_seconds": {"<verifier>": 0.05}}')
    unknown = sorted(set(cost) - set(_COST_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown cost key(s) {', '.join(unknown)} (known: {', '.join(_COST_KEYS)})")
    missing = [k for k in _COST_KEYS[:2] if k not in cost]
    if missing:
        raise ValueError(f"{where}: cost lacks {', '.join(missing)}")
    for key in ("generator_seconds", "generator_forward_passes"):
        if key in cost:
            _check_amount(cost[key], f"{where}: cost {key!r}")
    per_verifier = cost["verifier_seconds"]
    if not isinstance(per_verifier, dict):
        raise ValueError(f"{where}: cost 'verifier_seconds' must be an object mapping verifier names to seconds")
    if sorted(per_verifier) != verifiers:
        raise ValueError(f"{where}: cost 'verifier_seconds' for {sorted(per_verifier)}, but the scores are "
                         f"for {verifiers}; give a time for every verifier")
    for name, value in per_verifier.items():
        _check_amount(value, f"{where}: cost 'verifier_seconds' of {name!r}")
    return {k: ({n: float(x) for n, x in v.items()} if isinstance(v, dict) else float(v)) for k, v in cost.items()}


def _check_amount(value: Any, what: str) -> None:
    if (not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value)
            or value < 0):
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")


def _fields(record: Any, where: str) -> tuple[str, str, bool, dict[str, float]]:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: each line must be a JSON object")
    missing = [k for k in ("prompt_id", "tag", "correct", "scores") if k not in record]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    prompt_id, tag, correct, scores = record["prompt_id"], record["tag"], record["correct"], record["scores"]
    if not isinstance(prompt_id, str | int) or isinstance(prompt_id, bool):
        raise ValueError(f"{where}: 'prompt_id' must be a string or an integer")
    if not isinstance(tag, str) or not tag:
        raise ValueError(f"{where}: 'tag' must be a non-empty string")
    if not isinstance(correct, bool):
        raise ValueError(f"{where}: 'correct' must be true or false, got {correct!r}")
    if not isinstance(scores, dict) or not scores:
        raise ValueError(f"{where}: 'scores' must be an object mapping verifier names to numbers")
    for name, value in scores.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{where}: score of verifier {name!r} must be a finite number, got {value!r}")
    return str(prompt_id), tag, correct, {k: float(v) for k, v in scores.items()}
