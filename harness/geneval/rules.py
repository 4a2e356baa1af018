"""GenEval's verdict rules: from raw detections to (correct, reason). Pure; no models.

A line-by-line port of `evaluate_image()`'s post-processing and `evaluate()` in GenEval's
`evaluation/evaluate_images.py`, so that cached detections can be re-scored with other
thresholds. Numbers stay float32, as in mmdet's arrays, because the reference's score
threshold and position geometry are float32 computations (numpy keeps an array's dtype
against a Python float); doing them in float64 flips verdicts on scores that sit exactly
on a threshold. Where the reference's result hangs on its numpy (1.23, pinned by GenEval's
environment.yml) rather than on its code, we reproduce numpy 1.23 whatever numpy is
installed: the order of tied scores (`argsort_like_geneval`) and the IoU's float64
arithmetic (`compute_iou`).

The one deliberate choice: the reference joins the relations of a failed position check
from a Python `set`, whose order varies between processes; we list them in the fixed order
"left of", "right of", "above", "below".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.geneval.classes import COCO_CLASSES, COLORS, TAGS
from harness.geneval.detections import ImageDetections
from harness.geneval.legacy_sort import argsort_like_geneval

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")

# Part of the verdict cache key: bump it whenever a change here can change a verdict, a
# reason or the details, so that cached verdicts computed by older rules are not reused.
RULES_VERSION = 1


@dataclass(frozen=True)
class EvalOptions:
    """The thresholds GenEval reads from `--options` (same names, same defaults)."""

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_threshold: float = 0.1

    def __post_init__(self) -> None:
        for name in ("threshold", "counting_threshold", "max_overlap", "position_threshold"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ValueError(f"option {name} must be a finite number, got {value!r}")
        if self.max_objects < 0:
            raise ValueError(f"option max_objects must be >= 0, got {self.max_objects}")

    @classmethod
    def from_strings(cls, options: Mapping[str, str]) -> EvalOptions:
        """Build from GenEval-style `key=value` strings; unknown keys are an error."""
        known = {"threshold": float, "counting_threshold": float, "max_objects": int,
                 "max_overlap": float, "position_threshold": float}
        values: dict[str, Any] = {}
        for key, raw in options.items():
            if key not in known:
                raise ValueError(f"unknown option {key!r}; known: {', '.join(sorted(known))}")
            try:
                values[key] = known[key](raw)
            except ValueError:
                raise ValueError(f"option {key}={raw!r} is not a valid {known[key].__name__}") from None
        return cls(**values)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str
    # GenEval's `details`: per class, the kept boxes as [x1, y1, x2, y2, score].
    details: dict[str, list[list[float]]]


class MissingColorError(ValueError):
    """A colour clause needs the colour of a detection that was never classified."""


# Selected objects: class name -> row indices into that class's ClassDetections, best first.
Selection = dict[str, list[int]]


def compute_iou(box_a: np.ndarray, box_b: np.ndarray) -> float:
    """GenEval's IoU, with its +1 pixel convention, in GenEval's numpy's (1.23) arithmetic.

    There, `box[2] - box[0]` of two float32 scalars is a float32, but adding the Python
    int 1 promotes the scalar to float64 (legacy promotion; numpy >= 2 would stay in
    float32), so widths are float32 differences and everything after is float64. We spell
    that out with Python floats so the result does not depend on the installed numpy.
    """
    a = [np.float32(x) for x in box_a[:4]]
    b = [np.float32(x) for x in box_b[:4]]

    def area(box: list[np.float32]) -> float:
        return max(float(box[2] - box[0]) + 1.0, 0.0) * max(float(box[3] - box[1]) + 1.0, 0.0)

    i_area = area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    u_area = area(a) + area(b) - i_area
    return i_area / u_area if u_area else 0.0


def select_objects(detections: ImageDetections, tag: str, options: EvalOptions) -> Selection:
    """Threshold, sort by score, cap per class and (optionally) suppress overlaps, as GenEval does."""
    threshold = options.counting_threshold if tag == "counting" else options.threshold
    threshold32 = np.float32(threshold)
    max_overlap = options.max_overlap
    selection: Selection = {}
    for classname, dets in detections.items():
        scores = dets.scores
        # GenEval: ordering = np.argsort(scores)[::-1], with numpy 1.23's tie order.
        ordering = np.array(argsort_like_geneval(scores), dtype=np.intp)[::-1]
        ordering = ordering[scores[ordering] > threshold32]
        pending: list[int] = ordering[: options.max_objects].tolist()
        kept: list[int] = []
        while pending:
            best = pending.pop(0)
            kept.append(best)
            if max_overlap != 1:
                pending = [
                    i for i in pending
                    if compute_iou(dets.boxes[best], dets.boxes[i]) < max_overlap
                ]
        if kept:
            selection[classname] = kept
    return selection


def relative_position(box_a: np.ndarray, box_b: np.ndarray, position_threshold: float) -> set[str]:
    """Relations of A to B ("left of", ...), factoring in the objects' sizes (GenEval's geometry)."""
    boxes = np.stack([box_a[:4], box_b[:4]]).astype(np.float32).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    threshold = np.float32(position_threshold)
    revised_offset = np.maximum(np.abs(offset) - threshold * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised_offset) < 1e-3):
        return set()
    dx, dy = revised_offset / np.linalg.norm(offset)
    relations = set()
    if dx < -0.5:
        relations.add("left of")
    if dx > 0.5:
        relations.add("right of")
    if dy < -0.5:
        relations.add("above")
    if dy > 0.5:
        relations.add("below")
    return relations


def color_requests(metadata: Mapping[str, Any], selection: Selection) -> dict[str, list[int]]:
    """Which detections the verdict needs colours for: per class, the rows to classify.

    The reference classifies the first `count` selected objects of a colour clause, and
    only when at least `count` were found. Knowing this before `evaluate` lets the caller
    classify every crop of a whole batch of images in one CLIP pass.
    """
    needed: dict[str, list[int]] = {}
    for req in metadata.get("include", []):
        if "color" not in req:
            continue
        found = selection.get(req["class"], [])[: req["count"]]
        if len(found) >= req["count"]:
            rows = needed.setdefault(req["class"], [])
            rows.extend(i for i in found if i not in rows)
    return needed


def evaluate(
    metadata: Mapping[str, Any],
    detections: ImageDetections,
    options: EvalOptions = EvalOptions(),
    colors_of: Callable[[str, list[int]], list[str]] | None = None,
) -> Verdict:
    """GenEval's verdict for one image.

    `colors_of(classname, rows)` returns the colour of those rows; by default the colours
    stored on the detections (`ClassDetections.colors`) are used.
    """
    selection = select_objects(detections, metadata["tag"], options)

    def stored_colors(classname: str, rows: list[int]) -> list[str]:
        colors = detections[classname].colors
        picked = [None if colors is None else colors[i] for i in rows]
        if any(c is None for c in picked):
            raise MissingColorError(
                f"the colour of a {classname!r} detection is needed but was not classified"
            )
        return picked  # type: ignore[return-value]

    colors_of = colors_of or stored_colors
    correct = True
    reasons: list[str] = []
    matched_groups: list[tuple[str, list[int]] | None] = []
    for req in metadata.get("include", []):
        classname, count = req["class"], req["count"]
        matched = True
        found = selection.get(classname, [])[:count]
        if len(found) < count:
            correct = matched = False
            reasons.append(f"expected {classname}>={count}, found {len(found)}")
        else:
            if "color" in req:
                colors = colors_of(classname, found)
                wanted = req["color"]
                if colors.count(wanted) < count:
                    correct = matched = False
                    reasons.append(
                        f"expected {wanted} {classname}>={count}, found "
                        f"{colors.count(wanted)} {wanted}; and "
                        + ", ".join(f"{colors.count(c)} {c}" for c in COLORS if c in colors)
                    )
            if "position" in req and matched:
                expected_rel, target_group = req["position"]
                target = matched_groups[target_group]
                if target is None:
                    correct = matched = False
                    reasons.append(f"no target for {classname} to be {expected_rel}")
                else:
                    target_class, target_rows = target
                    for row in found:
                        for target_row in target_rows:
                            true_rels = relative_position(
                                detections[classname].boxes[row],
                                detections[target_class].boxes[target_row],
                                options.position_threshold,
                            )
                            if expected_rel not in true_rels:
                                correct = matched = False
                                listed = [r for r in RELATIONS if r in true_rels]
                                reasons.append(
                                    f"expected {classname} {expected_rel} target, found "
                                    f"{' and '.join(listed)} target"
                                )
                                break
                        if not matched:
                            break
        matched_groups.append((classname, found) if matched else None)
    for req in metadata.get("exclude", []):
        classname, count = req["class"], req["count"]
        n_found = len(selection.get(classname, []))
        if n_found >= count:
            correct = False
            reasons.append(f"expected {classname}<{count}, found {n_found}")
    # GenEval builds `details` walking its class list, so keys come in COCO order whatever
    # order the detections arrived in (a rescore input may list classes in any order).
    details = {
        classname: [
            [*detections[classname].boxes[i].tolist(), float(detections[classname].scores[i])]
            for i in selection[classname]
        ]
        for classname in sorted(selection, key=COCO_CLASSES.index)
    }
    return Verdict(correct=correct, reason="\n".join(reasons), details=details)


def check_metadata(metadata: Any) -> list[str]:
    """Problems that would make the rules crash or silently misjudge; empty when valid."""
    if not isinstance(metadata, dict):
        return [f"metadata must be a JSON object, got {type(metadata).__name__}"]
    problems: list[str] = []
    tag = metadata.get("tag")
    if not isinstance(tag, str):
        problems.append("missing or non-string 'tag'")
    elif tag not in TAGS:
        problems.append(f"unknown tag {tag!r} (GenEval's tags: {', '.join(TAGS)})")
    if not isinstance(metadata.get("prompt"), str):
        problems.append("missing or non-string 'prompt'")
    includes = metadata.get("include", [])
    if not isinstance(includes, list):
        problems.append("'include' must be a list")
        includes = []
    excludes = metadata.get("exclude", [])
    if not isinstance(excludes, list):
        problems.append("'exclude' must be a list")
        excludes = []
    for where, clauses in (("include", includes), ("exclude", excludes)):
        for n, req in enumerate(clauses):
            problems.extend(f"{where}[{n}]: {p}" for p in _check_clause(req, n, where))
    return problems


def _check_clause(req: Any, index: int, where: str) -> list[str]:
    if not isinstance(req, dict):
        return ["must be an object"]
    problems = []
    if req.get("class") not in COCO_CLASSES:
        problems.append(f"'class' {req.get('class')!r} is not one of GenEval's 80 class names")
    count = req.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        problems.append(f"'count' must be a non-negative integer, got {count!r}")
    if "color" in req and req["color"] not in COLORS:
        problems.append(f"'color' {req['color']!r} is not one of {', '.join(COLORS)}")
    if "position" in req:
        pos = req["position"]
        if (
            not isinstance(pos, list | tuple) or len(pos) != 2 or pos[0] not in RELATIONS
            or not isinstance(pos[1], int) or not 0 <= pos[1] < index
        ) or where != "include":
            problems.append(
                f"'position' must be [relation, index of an earlier include clause], got {pos!r}"
            )
    return problems
