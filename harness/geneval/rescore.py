"""Re-score cached detections with other thresholds: no model needed.

Input, one JSON object per line:
    {"metadata": <GenEval metadata object, or the JSON string GenEval's results hold>,
     "detections": {"<class>": [{"box": [x1, y1, x2, y2], "score": s, "color": "red"}, ...]},
     "filename": "..." (optional)}
`stepwise eval` writes lines of exactly this shape (plus GenEval's own keys), so its
results.jsonl can be fed back in as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from harness.geneval.classes import COCO_CLASSES, COLORS
from harness.geneval.detections import ClassDetections, ImageDetections
from harness.geneval.rules import EvalOptions, MissingColorError, check_metadata, evaluate
from harness.jsonl import iter_json_lines


class RescoreInputError(ValueError):
    """A malformed input line; the message names the line number and the problem."""


def parse_detections(raw: Any) -> ImageDetections:
    if not isinstance(raw, dict):
        raise ValueError("'detections' must be an object mapping class names to lists")
    detections: ImageDetections = {}
    for classname, rows in raw.items():
        if classname not in COCO_CLASSES:
            raise ValueError(f"detections: {classname!r} is not one of GenEval's 80 class names")
        if not isinstance(rows, list):
            raise ValueError(f"detections[{classname!r}] must be a list")
        boxes, scores, colors = [], [], []
        for i, row in enumerate(rows):
            where = f"detections[{classname!r}][{i}]"
            if not isinstance(row, dict):
                raise ValueError(f"{where} must be an object with 'box' and 'score'")
            box, score = row.get("box"), row.get("score")
            if (not isinstance(box, list) or len(box) not in (4, 5)
                    or not all(_is_number(v) for v in box)):
                raise ValueError(f"{where}: 'box' must be [x1, y1, x2, y2], got {box!r}")
            if not _is_number(score):
                raise ValueError(f"{where}: 'score' must be a number, got {score!r}")
            color = row.get("color")
            if color is not None and color not in COLORS:
                raise ValueError(f"{where}: 'color' {color!r} is not one of {', '.join(COLORS)}")
            boxes.append(box[:4])
            scores.append(score)
            colors.append(color)
        detections[classname] = ClassDetections(
            boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            scores=np.asarray(scores, dtype=np.float32),
            colors=tuple(colors),
        )
    return detections


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def rescore_record(record: Any, options: EvalOptions) -> dict[str, Any]:
    """One output record for one parsed input line (errors raise ValueError without line numbers)."""
    if not isinstance(record, dict):
        raise ValueError("each line must be a JSON object")
    if "metadata" not in record or "detections" not in record:
        raise ValueError("each line needs 'metadata' and 'detections'")
    metadata = record["metadata"]
    if isinstance(metadata, str):  # GenEval's results.jsonl stores it as a JSON string
        try:
            metadata = json.loads(metadata)
        except json.JSONDecodeError:
            raise ValueError("'metadata' is a string but not valid JSON") from None
        except RecursionError:
            raise ValueError("'metadata' is JSON nested too deeply to read") from None
    problems = check_metadata(metadata)
    if problems:
        raise ValueError("metadata: " + "; ".join(problems))
    detections = parse_detections(record["detections"])
    try:
        verdict = evaluate(metadata, detections, options)
    except MissingColorError as err:
        raise ValueError(
            f"{err}; re-run `stepwise eval --colors all` to store the colour of every detection"
        ) from None
    # Every field of the input is kept (filename, detections, sha256, backend, ...), in its order: the
    # output is valid input again, and nothing is lost when it replaces the original. What the verdict
    # decides is replaced; `evaluator` (the settings hash of `eval`) no longer describes it and goes.
    out: dict[str, Any] = {k: v for k, v in record.items() if k != "evaluator"}
    out.update({
        "tag": metadata["tag"],
        "prompt": metadata["prompt"],
        "correct": verdict.correct,
        "reason": verdict.reason,
        "metadata": record["metadata"] if isinstance(record["metadata"], str) else json.dumps(metadata),
        "details": json.dumps(verdict.details),
        "options": options.to_dict(),
    })
    return out


def rescore_lines(lines: Iterable[str], options: EvalOptions, source: str = "<input>") -> Iterator[dict]:
    """Re-score every non-blank line, in order; a bad line raises RescoreInputError naming it."""
    try:
        for lineno, record in iter_json_lines(lines, source):
            try:
                yield rescore_record(record, options)
            except ValueError as err:
                raise RescoreInputError(f"{source}:{lineno}: {err}") from None
    except RescoreInputError:
        raise
    except ValueError as err:  # malformed JSON: the message already names source:line
        raise RescoreInputError(str(err)) from None
