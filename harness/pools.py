"""Candidate pools brought from elsewhere: one JSON line per candidate.

    {"prompt_id": "00042", "tag": "counting", "correct": true, "scores": {"orm": 0.93, "clip": 0.31}}

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

    @property
    def sizes(self) -> np.ndarray:
        return self.valid.sum(axis=1)


def read_pool(lines: Iterable[str], source: str) -> Pool:
    """Parse pool lines; every malformed line is reported with its number."""
    by_prompt: dict[str, dict[str, Any]] = {}
    verifiers: list[str] | None = None
    for lineno, record in iter_json_lines(lines, source):
        where = f"{source}:{lineno}"
        prompt_id, tag, correct, scores = _fields(record, where)
        if verifiers is None:
            verifiers = sorted(scores)
        elif sorted(scores) != verifiers:
            raise ValueError(f"{where}: scores for {sorted(scores)}, but earlier lines have {verifiers}; "
                             "every candidate needs a score from every verifier")
        entry = by_prompt.setdefault(prompt_id, {"tag": tag, "correct": [], "scores": []})
        if entry["tag"] != tag:
            raise ValueError(f"{where}: prompt {prompt_id!r} has tag {tag!r} here but {entry['tag']!r} before")
        entry["correct"].append(correct)
        entry["scores"].append([scores[v] for v in verifiers])
    if not by_prompt or verifiers is None:
        raise ValueError(f"{source}: no candidates")
    width = max(len(e["correct"]) for e in by_prompt.values())
    n_prompts = len(by_prompt)
    correct_arr = np.zeros((n_prompts, width), dtype=bool)
    valid = np.zeros((n_prompts, width), dtype=bool)
    score_arr = np.zeros((len(verifiers), n_prompts, width), dtype=np.float64)
    for p, entry in enumerate(by_prompt.values()):
        k = len(entry["correct"])
        correct_arr[p, :k] = entry["correct"]
        valid[p, :k] = True
        score_arr[:, p, :k] = np.asarray(entry["scores"], dtype=np.float64).T
    return Pool(
        prompt_ids=list(by_prompt),
        tags=[e["tag"] for e in by_prompt.values()],
        correct=correct_arr,
        valid=valid,
        scores={v: score_arr[i] for i, v in enumerate(verifiers)},
    )


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
