"""The detector backend interface (the built-in backends are registered in `harness.registry`,
which `harness.registry.backend_class` looks up; this module imports no registry).

A backend turns a batch of RGB images into GenEval's per-class raw detections. It is
narrow and batched on purpose (one call, many images): the evaluator owns decoding,
caching, colour classification and the verdict rules.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from harness.geneval.detections import ImageDetections


@runtime_checkable
class DetectorBackend(Protocol):
    #: "mmdet" or "hf": written into every result so backends are never mixed silently.
    name: str

    def describe(self) -> dict[str, str]:
        """What identifies this detector's outputs (backend, config, weights file/sha, dtype).

        Part of the verdict cache key and of every result record.
        """
        ...

    def detect(self, images: list[np.ndarray]) -> list[ImageDetections]:
        """Detect objects in a batch of images.

        images: uint8 RGB arrays of shape (H, W, 3), sizes may differ, already EXIF-transposed.
        Returns one ImageDetections per image, same order, with boxes in that image's pixels
        and boolean masks of shape (k, H, W) (or None when the backend has no masks).
        """
        ...
