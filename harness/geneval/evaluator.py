"""The batched GenEval evaluator: many images per detector call, one CLIP pass per batch.

The reference evaluates one image at a time: one detector call, then one DataLoader per
colour check. Here a batch of images goes through the detector in one call, the colour
crops of the whole batch go through CLIP together, and decoding and hashing of the next
batch happen on worker threads while the models run. The verdicts are the same rules
(`harness.geneval.rules`) applied to the same detections.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.geneval.backends.base import DetectorBackend
from harness.geneval.detections import ImageDetections, detections_to_json
from harness.geneval.folder import DecodedImage, ImageDecodeError, SampleImage, decode_image
from harness.geneval.rules import RULES_VERSION, EvalOptions, color_requests, evaluate, select_objects
from harness.registry import backend_class

DEFAULT_HF_DETECTOR = "facebook/mask2former-swin-small-coco-instance"
DEFAULT_CLIP_ARCH = "ViT-L-14-quickgelu"
COLOR_MODES = ("needed", "all")


@dataclass(frozen=True)
class EvaluatorSpec:
    """Everything that decides a verdict. Its key names cached verdicts.

    backend: "mmdet" (GenEval's detector, the reference) or "hf" (transformers Mask2Former).
    detector: mmdet checkpoint file, or a transformers model path / hub id for "hf".
    detector_config: mmdet config file (None = Mask2Former Swin-S as GenEval uses).
    clip_arch / clip_weights: the open_clip colour model (None weights = "openai" from the HF cache).
    color_mode: "needed" classifies only what the verdict needs (as GenEval does);
        "all" also stores the colour of every detection of a colour-clause class, so that
        `stepwise rescore` can apply any thresholds later.
    """

    backend: str = "mmdet"
    detector: str | None = None
    detector_config: str | None = None
    clip_arch: str = DEFAULT_CLIP_ARCH
    clip_weights: str | None = None
    options: EvalOptions = dataclasses.field(default_factory=EvalOptions)
    color_mode: str = "needed"
    device: str | None = None

    def __post_init__(self) -> None:
        from harness.registry import backends

        if self.backend not in backends:
            raise ValueError(f"unknown backend {self.backend!r}; available: {', '.join(backends)}")
        if self.color_mode not in COLOR_MODES:
            raise ValueError(f"color mode must be one of {', '.join(COLOR_MODES)}")
        if self.backend == "mmdet" and not self.detector:
            raise ValueError(
                "the mmdet backend needs a checkpoint: --detector PATH/TO/"
                "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco_20220504_001756-c9d0c4f2.pth"
            )

    def key(self) -> str:
        """sha256 over the settings and fingerprints of the local model files they name."""
        payload = {
            "backend": self.backend,
            "detector": self.detector or DEFAULT_HF_DETECTOR,
            "detector_files": _fingerprint(self.detector),
            "detector_config": _fingerprint(self.detector_config),
            "clip_arch": self.clip_arch,
            "clip_weights": _fingerprint(self.clip_weights) if self.clip_weights else "openai",
            "options": self.options.to_dict(),
            "rules_version": RULES_VERSION,
            "color_mode": self.color_mode,
            "device": (self.device or "auto").split(":")[0],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def build_detector(self) -> DetectorBackend:
        cls = backend_class(self.backend)
        if self.backend == "mmdet":
            return cls(checkpoint=self.detector, config=self.detector_config, device=self.device)
        return cls(model=self.detector or DEFAULT_HF_DETECTOR, device=self.device)

    def build_colors(self) -> Any:
        from harness.geneval.colors import ColorClassifier

        return ColorClassifier.load(arch=self.clip_arch, weights=self.clip_weights, device=self.device)


def _fingerprint(path_or_id: str | None) -> str | None:
    """Cheap identity of a local file or folder: names, sizes and modification times."""
    if not path_or_id:
        return None
    path = Path(path_or_id)
    if not path.exists():
        return path_or_id  # a hub id: its name is its identity here
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    parts = [(str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size,
              p.stat().st_mtime_ns) for p in files]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


class Models:
    """The detector and colour classifier, built on first use: a fully cached run loads neither."""

    def __init__(self, spec: EvaluatorSpec,
                 detector: DetectorBackend | None = None, colors: Any | None = None) -> None:
        self.spec = spec
        self._detector = detector
        self._colors = colors

    @property
    def detector(self) -> DetectorBackend:
        if self._detector is None:
            self._detector = self.spec.build_detector()
        return self._detector

    @property
    def colors(self) -> Any:
        if self._colors is None:
            self._colors = self.spec.build_colors()
        return self._colors


def colors_to_classify(metadata: dict[str, Any], detections: ImageDetections,
                       options: EvalOptions, color_mode: str) -> dict[str, list[int]]:
    """Per class, the detection rows whose colour this image's record will hold."""
    if color_mode == "all":
        classes = {req["class"] for req in metadata.get("include", []) if "color" in req}
        return {c: list(range(len(detections[c]))) for c in sorted(classes) if c in detections}
    return color_requests(metadata, select_objects(detections, metadata["tag"], options))


def judge_batch(models: Models, images: list[np.ndarray], metadatas: list[dict[str, Any]],
                spec: EvaluatorSpec) -> list[tuple[ImageDetections, Any]]:
    """Detections and verdicts for a batch: one detector call, one colour pass."""
    from PIL import Image

    from harness.geneval.colors import ColorQuery

    all_detections = models.detector.detect(images)
    if len(all_detections) != len(images):
        raise RuntimeError(f"detector returned {len(all_detections)} results for {len(images)} images")
    queries: list[ColorQuery] = []
    owners: list[tuple[int, str, int]] = []
    for i, (detections, metadata) in enumerate(zip(all_detections, metadatas, strict=True)):
        wanted = colors_to_classify(metadata, detections, spec.options, spec.color_mode)
        if not wanted:
            continue
        pil = Image.fromarray(images[i])
        for classname, rows in wanted.items():
            dets = detections[classname]
            for row in rows:
                mask = None if dets.masks is None else dets.masks[row]
                queries.append(ColorQuery(pil, dets.boxes[row], mask, classname))
                owners.append((i, classname, row))
    colors = models.colors.classify(queries) if queries else []
    assigned: dict[tuple[int, str], dict[int, str]] = {}
    for (i, classname, row), color in zip(owners, colors, strict=True):
        assigned.setdefault((i, classname), {})[row] = color
    results = []
    for i, (detections, metadata) in enumerate(zip(all_detections, metadatas, strict=True)):
        colored = {
            classname: dataclasses.replace(
                dets,
                colors=tuple(assigned.get((i, classname), {}).get(r) for r in range(len(dets))),
            )
            for classname, dets in detections.items()
        }
        results.append((colored, evaluate(metadata, colored, spec.options)))
    return results


def result_record(sample: SampleImage, filename: str, sha256: str, detections: ImageDetections,
                  verdict: Any, backend: str, settings_key: str) -> dict[str, Any]:
    """GenEval's results.jsonl keys, then what `rescore` and provenance need."""
    return {
        "filename": filename,
        "tag": sample.metadata["tag"],
        "prompt": sample.metadata["prompt"],
        "correct": verdict.correct,
        "reason": verdict.reason,
        "metadata": json.dumps(sample.metadata),
        "details": json.dumps(verdict.details),
        "detections": detections_to_json(detections),
        "backend": backend,
        "evaluator": settings_key,
        "sha256": sha256,
    }


@dataclass(frozen=True)
class ImageError:
    path: Path
    message: str


def _decode_all(samples: list[SampleImage], workers: int) -> Iterator[DecodedImage | ImageDecodeError]:
    """Decode and hash images on worker threads, a bounded window ahead of the consumer."""
    window = max(4, workers * 4)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: list[Future[DecodedImage]] = []
        next_index = 0
        for _ in range(len(samples)):
            while next_index < len(samples) and len(pending) < window:
                pending.append(pool.submit(decode_image, samples[next_index].path))
                next_index += 1
            future = pending.pop(0)
            try:
                yield future.result()
            except ImageDecodeError as err:
                yield err


def evaluate_samples(
    samples: list[SampleImage],
    spec: EvaluatorSpec,
    models: Models,
    cache: Any | None = None,
    batch_size: int = 8,
    filename_of: Callable[[SampleImage], str] = lambda s: str(s.path),
    on_error: str = "fail",
    progress: Any | None = None,
    decode_workers: int | None = None,
) -> Iterator[dict[str, Any] | ImageError]:
    """Yield one result record (or ImageError with on_error="skip") per sample, in order.

    Records of a batch are yielded only once the whole batch is judged, so a consumer that
    writes them as they come never holds more than one batch in memory.
    """
    from harness.geneval.cache import entry_key

    settings_key = spec.key()
    workers = decode_workers or min(4, os.cpu_count() or 1)
    decoded = _decode_all(samples, workers)
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        images = [next(decoded) for _ in batch]
        out: list[dict[str, Any] | ImageError | None] = [None] * len(batch)
        todo: list[int] = []
        keys: dict[int, str] = {}
        for j, (sample, image) in enumerate(zip(batch, images, strict=True)):
            if isinstance(image, ImageDecodeError):
                if on_error == "fail":
                    raise image
                out[j] = ImageError(sample.path, str(image))
                continue
            keys[j] = entry_key(settings_key, image.sha256, sample.metadata)
            todo.append(j)
        hits = cache.get_many(list(keys.values())) if cache is not None and keys else {}
        misses = [j for j in todo if keys[j] not in hits]
        for j in todo:
            if keys[j] in hits:
                out[j] = {**hits[keys[j]], "filename": filename_of(batch[j])}
        if misses:
            judged = judge_batch(models, [images[j].rgb for j in misses],
                                 [batch[j].metadata for j in misses], spec)
            fresh = {}
            for j, (detections, verdict) in zip(misses, judged, strict=True):
                record = result_record(batch[j], filename_of(batch[j]), images[j].sha256,
                                       detections, verdict, spec.backend, settings_key)
                out[j] = record
                fresh[keys[j]] = record
            if cache is not None:
                cache.put_many(fresh)
        for item in out:
            assert item is not None
            yield item
        if progress is not None:
            progress.update(len(batch))

