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

`--suite geneval2` times GenEval 2's Soft-TIFA instead, on a tiny random Qwen3-VL
(harness/tiny/qwen3_vl.py) and the same images and GenEval 2-format records on both sides:

- reference: what GenEval 2's evaluation.py does, one question at a time: the chat template over
  the image path and the question, `generate(max_new_tokens=1, do_sample=False, output_scores=True)`,
  the softmax of the first step, its answer variants summed (harness/geneval2/reference.py); every
  question of every image, plus the VQAScore question;
- batched: `harness.geneval2.evaluator.evaluate_images`: images decoded on threads, each image
  preprocessed once, its shared prefix (the image's tokens) run once, all questions of `--batch-size`
  images in one forward over their own tokens.

`--image-size` sets the tiny model's image resolution (one image token per 32x32 pixels; the real
model sees 1024 tokens for a 1024x1024 image). Both sides' per-question probabilities are compared.
The last line is `ratio: <batched questions/s ÷ reference questions/s>`.

    .venv/bin/python benchmarks/eval_throughput.py --suite geneval2 [--images 24] [--image-size 256]
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


GENEVAL2_OBJECTS = ("cup", "dog", "balloon", "chair", "apple", "kite", "bench", "clock")
GENEVAL2_COLORS = ("red", "blue", "green", "yellow")
GENEVAL2_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven")


def geneval2_record(i: int) -> dict:
    """A made-up record in GenEval 2's format (the real data is CC BY-NC, not shipped): count, colour and
    object of one or two objects, a relation between them for every other prompt."""
    a, b = GENEVAL2_OBJECTS[i % 8], GENEVAL2_OBJECTS[(i + 3) % 8]
    na, nb = GENEVAL2_NUMBERS[i % 7], GENEVAL2_NUMBERS[(i + 2) % 7]
    color = GENEVAL2_COLORS[i % 4]
    pairs = [[f"How many {a}s are in the image?", na], [f"Are the {a}s {color}?", "Yes"],
             [f"Are there any {a}s in the image?", "Yes"]]
    skills = ["count", "attribute", "object"]
    if i % 2:
        pairs += [[f"Are the {a}s to the left of the {b}s?", "Yes"], [f"How many {b}s are in the image?", nb],
                  [f"Are there any {b}s in the image?", "Yes"]]
        skills += ["position", "count", "object"]
    prompt = f"{na} {color} {a}s" + (f" to the left of {nb} {b}s" if i % 2 else "")
    return {"prompt": prompt, "atom_count": 3 + 3 * (i % 2), "vqa_list": pairs, "skills": skills}


def soft_tifa_case(args: argparse.Namespace) -> None:
    """The `--suite geneval2` case (see the module docstring)."""
    from PIL import Image
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    from harness.geneval2.evaluator import SoftTifaSpec, VqaModel, evaluate_images
    from harness.geneval2.inputs import PromptImage
    from harness.geneval2.reference import reference_scores, reference_vqascore
    from harness.tiny.qwen3_vl import write_tiny_qwen3_vl
    from harness.verifiers.answer_probs import AnswerProbEngine

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = write_tiny_qwen3_vl(root / "qwen3vl", max_pixels=args.image_size ** 2)
        items = []
        for i in range(args.images):
            path = root / f"{i:05d}.png"
            Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8)).save(path)
            items.append(PromptImage(path, geneval2_record(i), i))
        model = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype="auto", local_files_only=True).eval()
        processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        spec = SoftTifaSpec(model=str(folder), device="cpu")
        vqa = VqaModel(spec, engine=AnswerProbEngine(str(folder), device="cpu", image_batch=args.batch_size))

        def reference_run(batch: list) -> list[tuple[list[float], list[int], float]]:
            return [(*reference_scores(model, processor, item.record["vqa_list"], item.path),
                     reference_vqascore(model, processor, item.record["prompt"], item.path)) for item in batch]

        def batched_run(batch: list) -> list[dict]:
            return list(evaluate_images(batch, spec, vqa, cache=None, batch_size=args.batch_size))

        reference_run(items[:1])  # warm-up both paths (first-call allocations, lazy imports)
        batched_run(items[:1])
        start = time.perf_counter()
        reference = reference_run(items)
        reference_s = time.perf_counter() - start
        start = time.perf_counter()
        batched = batched_run(items)
        batched_s = time.perf_counter() - start
        n_image_tokens = int(vqa.engine._pixels(Image.open(items[0].path).convert("RGB"))["image_grid_thw"].prod()) // 4

    questions = sum(len(item.record["vqa_list"]) + 1 for item in items)  # + the VQAScore question
    soft_diff = max(abs(a - b) for (soft, _, _), r in zip(reference, batched, strict=True)
                    for a, b in zip(soft, r["soft_scores"], strict=True))
    vqa_diff = max(abs(v - r["vqascore"]) for (_, _, v), r in zip(reference, batched, strict=True))
    same_tifa = sum(hard == r["tifa_scores"] for (_, hard, _), r in zip(reference, batched, strict=True))
    print(f"images: {len(items)} ({args.image_size}px, {n_image_tokens} image tokens each), questions: {questions} "
          f"(with VQAScore's), torch threads: {args.threads}")
    print(f"reference (evaluation.py: one generate(max_new_tokens=1) per question): {questions / reference_s:.1f} "
          f"questions/s ({reference_s:.1f}s)")
    print(f"batched (batch {args.batch_size} images, prefix once per image, one forward for their questions): "
          f"{questions / batched_s:.1f} questions/s ({batched_s:.1f}s)")
    print(f"max |difference|: Soft-TIFA per question {soft_diff:.2e}, VQAScore {vqa_diff:.2e}; identical TIFA "
          f"answers: {same_tifa}/{len(items)} images")
    print(f"ratio: {reference_s / batched_s:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=["geneval", "geneval2"], default="geneval",
                        help="geneval: the detector/CLIP case; geneval2: the Soft-TIFA case")
    parser.add_argument("--images", type=int, default=None, help="images to evaluate [geneval: 48, geneval2: 24]")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--image-size", type=int, default=256,
                        help="geneval2: image side the tiny Qwen3-VL sees (one token per 32x32 pixels)")
    parser.add_argument("--batch-size", type=int, default=None, help="[geneval: 16, geneval2: 8]")
    parser.add_argument("--reference-workers", type=int, default=4,
                        help="DataLoader workers per colour check on the reference side (GenEval: 4)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads, both sides")
    args = parser.parse_args()
    geneval2 = args.suite == "geneval2"
    args.images = args.images or (24 if geneval2 else 48)
    args.batch_size = args.batch_size or (8 if geneval2 else 16)

    import torch

    torch.set_num_threads(args.threads)
    if geneval2:
        soft_tifa_case(args)
        return
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
