"""What a detector backend hands to the verdict rules.

GenEval (mmdet 2.x) received, per image, one array per class of shape (k, 5) holding
x1, y1, x2, y2, score, plus one mask per row. We keep exactly that shape of data, as
float32 like mmdet, because the thresholds are compared in float32: a score stored as
float32(0.3) is *not* above a threshold of 0.3, whereas the same number in float64 is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassDetections:
    """All raw detections of one class in one image, in the order the detector returned them.

    boxes: float32 (k, 4) as x1, y1, x2, y2 in pixels of the (EXIF-transposed) image.
    scores: float32 (k,).
    masks: bool (k, H, W), or None when the backend gives no masks.
    colors: one GenEval colour name (or None when not classified) per row, or None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    masks: np.ndarray | None = None
    colors: tuple[str | None, ...] | None = None

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
        if self.masks is not None and len(self.masks) != len(scores):
            raise ValueError(f"{len(self.masks)} masks but {len(scores)} scores")
        if self.colors is not None and len(self.colors) != len(scores):
            raise ValueError(f"{len(self.colors)} colours but {len(scores)} scores")
        # frozen dataclass: normalise dtypes once, here, so every consumer sees float32.
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.scores)


# Per image: class name -> its detections. Classes with no detection may be absent.
ImageDetections = dict[str, ClassDetections]


def group_by_class(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    class_names: tuple[str, ...] | list[str],
    masks: np.ndarray | None = None,
) -> ImageDetections:
    """Turn flat instances (mmdet 3.x, transformers) into GenEval's per-class arrays.

    The relative order of the instances of one class is kept, as mmdet 2.x's
    `bbox2result` (`bboxes[labels == i]`) kept it.
    """
    labels = np.asarray(labels).reshape(-1)
    grouped: ImageDetections = {}
    for label in sorted(set(labels.tolist())):
        rows = labels == label
        grouped[class_names[label]] = ClassDetections(
            boxes=np.asarray(boxes)[rows],
            scores=np.asarray(scores)[rows],
            masks=None if masks is None else np.asarray(masks)[rows],
        )
    return grouped


def detections_to_json(detections: ImageDetections) -> dict[str, list[dict]]:
    """The raw detections as `rescore` reads them (masks are not written: they are large)."""
    out: dict[str, list[dict]] = {}
    for classname, dets in detections.items():
        rows = []
        for i in range(len(dets)):
            row: dict = {"box": dets.boxes[i].tolist(), "score": float(dets.scores[i])}
            if dets.colors is not None and dets.colors[i] is not None:
                row["color"] = dets.colors[i]
            rows.append(row)
        out[classname] = rows
    return out
