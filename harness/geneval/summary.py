"""GenEval's summary figures, computed as `evaluation/summary_scores.py` computes them.

Prompts are told apart by their metadata, tasks are listed in order of first appearance,
and the overall score is the unweighted mean of the per-task accuracies.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.jsonl import iter_json_lines


@dataclass(frozen=True)
class TaskScore:
    tag: str
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total


@dataclass(frozen=True)
class Summary:
    images: int
    prompts: int
    correct_images: float
    correct_prompts: float
    tasks: list[TaskScore] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)

    @property
    def overall(self) -> float:
        return sum(t.accuracy for t in self.tasks) / len(self.tasks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "prompts": self.prompts,
            "correct_images": self.correct_images,
            "correct_prompts": self.correct_prompts,
            "tasks": {t.tag: {"accuracy": t.accuracy, "correct": t.correct, "total": t.total}
                      for t in self.tasks},
            "overall": self.overall,
            "backends": self.backends,
        }

    def to_text(self) -> str:
        lines = [
            "Summary",
            "=======",
            f"Total images: {self.images}",
            f"Total prompts: {self.prompts}",
            f"% correct images: {self.correct_images:.2%}",
            f"% correct prompts: {self.correct_prompts:.2%}",
            "",
            "Task breakdown",
            "==============",
            *(f"{t.tag:<16} = {t.accuracy:.2%} ({t.correct} / {t.total})" for t in self.tasks),
            "",
            f"Overall score (avg. over tasks): {self.overall:.5f}",
        ]
        return "\n".join(lines)


def summarize(records: list[dict[str, Any]]) -> Summary:
    """Summary of GenEval result records (each with `tag`, `correct` and `metadata`)."""
    if not records:
        raise ValueError("no results to summarise")
    by_prompt: dict[str, bool] = {}
    by_tag: dict[str, list[int]] = {}  # insertion order = order of first appearance
    backends: list[str] = []
    for record in records:
        metadata = record["metadata"]
        key = metadata if isinstance(metadata, str) else json.dumps(metadata)
        correct = bool(record["correct"])
        by_prompt[key] = by_prompt.get(key, False) or correct
        counts = by_tag.setdefault(record["tag"], [0, 0])
        counts[0] += correct
        counts[1] += 1
        backend = record.get("backend")
        if backend and backend not in backends:
            backends.append(backend)
    return Summary(
        images=len(records),
        prompts=len(by_prompt),
        correct_images=sum(bool(r["correct"]) for r in records) / len(records),
        correct_prompts=sum(by_prompt.values()) / len(by_prompt),
        tasks=[TaskScore(tag, c, n) for tag, (c, n) in by_tag.items()],
        backends=backends,
    )


def parse_results(lines: Iterable[str], source: str) -> list[dict[str, Any]]:
    """Parse results.jsonl lines (ours or GenEval's), naming the line of any malformed record."""
    records = []
    for lineno, record in iter_json_lines(lines, source):
        if not isinstance(record, dict):
            raise ValueError(f"{source}:{lineno}: not a JSON object")
        missing = [k for k in ("tag", "correct", "metadata") if k not in record]
        if missing:
            raise ValueError(f"{source}:{lineno}: missing key(s) {', '.join(missing)}")
        # GenEval writes true/false; "false" (a string) would count as correct under bool().
        if not isinstance(record["correct"], bool):
            raise ValueError(f"{source}:{lineno}: correct must be true or false, got {record['correct']!r:.40}")
        if not isinstance(record["tag"], str):
            raise ValueError(f"{source}:{lineno}: tag must be a string, got {record['tag']!r:.40}")
        if not isinstance(record["metadata"], str | dict):
            raise ValueError(f"{source}:{lineno}: metadata must be GenEval's metadata (a JSON string or object), "
                             f"got {record['metadata']!r:.40}")
        if "backend" in record and not isinstance(record["backend"], str | None):
            raise ValueError(f"{source}:{lineno}: backend must be a string, got {record['backend']!r:.40}")
        records.append(record)
    if not records:
        raise ValueError(f"{source}: empty: no results to summarise")
    return records


def read_results(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fp:
        return parse_results(fp, str(path))
