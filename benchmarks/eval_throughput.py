"""Images per second: GenEval's per-image approach vs stepwise's batched evaluator.

Both sides use the same tiny random-weight models (mmdet Mask2Former, open_clip CLIP with
QuickGELU), the same images and the same thresholds, in one run:

- reference: what GenEval's evaluate_images.py does per image: `inference_detector(model,
  filepath)` (one image per detector call, the file read by mmcv), the image re-opened
  with PIL for the colour crops, and for every colour clause a fresh torch DataLoader
  (batch 16, GenEval's num_workers=4) over that image's crops;
- batched: `harness.geneval.evaluator.evaluate_samples`: images decoded on threads, many
  images per detector call, all colour crops of a batch in one CLIP pass.

The thresholds are lowered (the tiny models' scores are low) so that colour and position
checks actually run; both sides use the same ones. The verdicts of both sides are compared.
The last line is `ratio: <batched images/s ÷ reference images/s>`.

    .venv/bin/python benchmarks/eval_throughput.py [--images 48] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def write_folder(root: Path, n_images: int, size: int, rng: np.random.Generator) -> None:
    """A GenEval-layout folder, 4 images per prompt, prompts cycling through the suite's tasks."""
    from PIL import Image

    from harness.prompts import geneval_suite

    by_tag: dict[str, list[dict]] = {}
    for sample in geneval_suite():
        by_tag.setdefault(sample["tag"], []).append(sample)
    tags = list(by_tag)
    for p in range((n_images + 3) // 4):
        sample = by_tag[tags[p % len(tags)]][p // len(tags)]
        folder = root / f"{p:05d}"
        (folder / "samples").mkdir(parents=True)
        (folder / "metadata.jsonl").write_text(json.dumps(sample) + "\n")
        for k in range(min(4, n_images - 4 * p)):
            pixels = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / "samples" / f"{k:04d}.png")


def reference_run(samples: list, detector, colors, options, workers: int) -> list[tuple[bool, str]]:
    from mmdet.apis import inference_detector
    from PIL import Image, ImageOps

    from harness.geneval.classes import COCO_CLASSES
    from harness.geneval.detections import group_by_class
    from harness.geneval.rules import evaluate

    verdicts = []
    for sample in samples:
        result = inference_detector(detector.model, str(sample.path))
        inst = result.pred_instances
        detections = group_by_class(inst.bboxes.numpy(), inst.scores.numpy(), inst.labels.numpy(),
                                    COCO_CLASSES, inst.masks.numpy().astype(bool))
        image = ImageOps.exif_transpose(Image.open(sample.path)).convert("RGB")

        def colors_of(classname: str, rows: list[int], image=image, detections=detections) -> list[str]:
            dets = detections[classname]
            objects = [(dets.boxes[r], dets.masks[r]) for r in rows]
            return colors.classify_one_image_reference(image, objects, classname, num_workers=workers)

        verdict = evaluate(sample.metadata, detections, options, colors_of=colors_of)
        verdicts.append((verdict.correct, verdict.reason))
    return verdicts


def batched_run(samples: list, spec, models, batch_size: int) -> list[tuple[bool, str]]:
    from harness.geneval.evaluator import evaluate_samples

    return [(r["correct"], r["reason"]) for r in
            evaluate_samples(samples, spec, models, cache=None, batch_size=batch_size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--reference-workers", type=int, default=4,
                        help="DataLoader workers per colour check on the reference side (GenEval: 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from harness.geneval.backends.mmdet_backend import MMDetBackend
    from harness.geneval.colors import ColorClassifier
    from harness.geneval.evaluator import EvaluatorSpec, Models
    from harness.geneval.folder import scan_image_folder
    from harness.geneval.rules import EvalOptions
    from harness.tiny.clip import write_tiny_clip
    from harness.tiny.mmdet_detector import write_tiny_mmdet

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_folder(root / "images", args.images, args.size, np.random.default_rng(0))
        config, checkpoint = write_tiny_mmdet(root / "mmdet")
        arch, clip_weights = write_tiny_clip(root / "clip")
        options = EvalOptions(threshold=0.05, counting_threshold=0.1)
        spec = EvaluatorSpec(backend="mmdet", detector=str(checkpoint), detector_config=str(config),
                             clip_arch=arch, clip_weights=str(clip_weights), options=options, device="cpu")
        detector = MMDetBackend(checkpoint, config, device="cpu")
        detector.model.cfg = detector.cfg  # what mmdet's init_detector attaches for inference_detector
        colors = ColorClassifier.load(arch=arch, weights=clip_weights, device="cpu")
        models = Models(spec, detector=detector, colors=colors)
        samples = scan_image_folder(root / "images").samples

        # Warm-up both paths once (first-call allocations, lazy imports), then time.
        reference_run(samples[:2], detector, colors, options, args.reference_workers)
        batched_run(samples[:2], spec, models, args.batch_size)

        start = time.perf_counter()
        reference = reference_run(samples, detector, colors, options, args.reference_workers)
        reference_s = time.perf_counter() - start
        start = time.perf_counter()
        batched = batched_run(samples, spec, models, args.batch_size)
        batched_s = time.perf_counter() - start

    n = len(samples)
    n_colour_checks = sum(1 for s in samples for r in s.metadata["include"] if "color" in r)
    same = sum(a == b for a, b in zip(reference, batched, strict=True))
    print(f"images: {n} ({args.size}px), colour clauses: {n_colour_checks}, torch threads: {args.threads}")
    print(f"reference (1 image/detector call, DataLoader(workers={args.reference_workers}) per colour check): "
          f"{n / reference_s:.2f} images/s ({reference_s:.1f}s)")
    print(f"batched (batch {args.batch_size}, one CLIP pass per batch): {n / batched_s:.2f} images/s "
          f"({batched_s:.1f}s)")
    print(f"identical verdicts: {same}/{n}")
    print(f"ratio: {reference_s / batched_s:.2f}")


if __name__ == "__main__":
    main()
