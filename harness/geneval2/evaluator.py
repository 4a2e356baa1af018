"""The GenEval 2 evaluator: Soft-TIFA, TIFA and VQAScore per image, batched and cached.

Per image, every question of its prompt's record (`vqa_list`) and, unless turned off, the VQAScore
question go through `AnswerProbEngine` together with the questions of the other images of the
batch (`batch_size` images); the reference's rules (`harness.geneval2.soft_tifa`) turn the token
probabilities into scores. One result line per image:

    {"suite": "geneval2", "filename": ..., "prompt_index": 12, "prompt": ..., "metadata": {record},
     "soft_scores": [per question], "tifa_scores": [0/1 per question], "predicted": [decoded argmax tokens],
     "vqascore": 0.93 | null, "soft_tifa_am": ..., "soft_tifa_gm": ..., "tifa": ...,
     "model": "Qwen/Qwen3-VL-8B-Instruct", "dtype": "bfloat16", "evaluator": "<settings sha256>", "sha256": ...}

`soft_scores` and `tifa_scores` are the reference's per-image score lists (`--method soft_tifa_*` and
`tifa`); the per-image figures are on the 0..1 scale, the suite's (`stepwise summary`) on 0..100.
Results are cached by image sha256 + record + settings in the verdict cache GenEval uses (keys of the
two suites never meet), so re-running is instant and loads no model.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.geneval2.data import SUITE_NAME, Record
from harness.geneval2.inputs import ImageDecodeError, LoadedImage, PromptImage, load_image
from harness.geneval2.soft_tifa import (
    YES_VARIANTS,
    ImageScores,
    answer_variants,
    hard_score,
    question_text,
    soft_score,
    variant_tokens,
    vqascore_text,
)

if TYPE_CHECKING:
    from harness.verifiers.answer_probs import AnswerProbEngine, AnswerProbs, AnswerQuery

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
RULES_VERSION = 1  # bump when a rule in soft_tifa.py changes what a stored result means
DTYPES = ("auto", "bfloat16", "float16", "float32")


@dataclass(frozen=True)
class SoftTifaSpec:
    """Everything that decides a GenEval 2 result; `key()` names cached and stored results.

    model: a local Qwen3-VL folder or a hub id in the HF cache. dtype: "auto" is the checkpoint's
    (bfloat16 for Qwen3-VL-8B-Instruct), as the reference loads it. vqascore: also ask the VQAScore
    question (one more forward row per image).
    """

    model: str = DEFAULT_MODEL
    dtype: str = "auto"
    device: str | None = None
    vqascore: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")

    def key(self) -> str:
        from harness.geneval.evaluator import _fingerprint
        from harness.weights import model_folder

        folder = model_folder(self.model)
        payload = {
            "suite": SUITE_NAME,
            "evaluator": "soft_tifa",
            "rules_version": RULES_VERSION,
            "model": self.model,
            "model_files": _fingerprint(str(folder)) if folder is not None else self.model,
            "dtype": self.dtype,
            "vqascore": self.vqascore,
            "device": (self.device or "auto").split(":")[0],
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def build_engine(self, image_batch: int) -> AnswerProbEngine:
        from harness.verifiers.answer_probs import AnswerProbEngine

        return AnswerProbEngine(self.model, device=self.device, dtype=self.dtype,  # type: ignore[arg-type]
                                image_batch=image_batch)


class VqaModel:
    """The engine, built on first use: a fully cached run loads no model."""

    def __init__(self, spec: SoftTifaSpec, image_batch: int = 8, engine: AnswerProbEngine | None = None) -> None:
        self.spec = spec
        self.image_batch = image_batch
        self._engine = engine
        self._tokens: dict[str, int] = {}

    @property
    def engine(self) -> AnswerProbEngine:
        if self._engine is None:
            self._engine = self.spec.build_engine(self.image_batch)
        return self._engine

    def tokens(self, variants: Sequence[str]) -> tuple[int, ...]:
        for variant in variants:
            if variant not in self._tokens:
                (self._tokens[variant],) = variant_tokens([variant], self.engine.tokenizer.encode)
        return tuple(self._tokens[v] for v in variants)


@dataclass(frozen=True)
class _Question:
    text: str
    variants: tuple[str, ...]


def image_questions(record: Record, vqascore: bool) -> list[_Question]:
    """The questions asked about an image of `record`: its vqa_list in order, then VQAScore's."""
    questions = [_Question(question_text(q), answer_variants(q, a)) for q, a in record["vqa_list"]]
    if vqascore:
        questions.append(_Question(vqascore_text(record["prompt"]), YES_VARIANTS))
    return questions


def score_answers(record: Record, answers: Sequence[AnswerProbs], decode: Any,
                  vqascore: bool) -> tuple[ImageScores, list[str]]:
    """An image's scores from the engine's answers to `image_questions(record, vqascore)`."""
    questions = image_questions(record, vqascore)
    if len(answers) != len(questions):
        raise RuntimeError(f"{len(answers)} answers for {len(questions)} questions")
    n = len(record["vqa_list"])
    predicted = [decode(a.argmax) for a in answers[:n]]
    scores = ImageScores(
        soft=tuple(soft_score(a.probs) for a in answers[:n]),
        hard=tuple(hard_score(p, q.variants) for p, q in zip(predicted, questions[:n], strict=True)),
        vqascore=soft_score(answers[n].probs) if vqascore else None,
    )
    return scores, predicted


def result_record(item: PromptImage, sha256: str, scores: ImageScores, predicted: list[str], spec: SoftTifaSpec,
                  dtype: str, settings_key: str) -> dict[str, Any]:
    return {
        "suite": SUITE_NAME,
        "filename": str(item.path),
        "prompt_index": item.prompt_index,
        "prompt": item.record["prompt"],
        "metadata": item.record,
        "soft_scores": list(scores.soft),
        "tifa_scores": list(scores.hard),
        "predicted": predicted,
        "vqascore": scores.vqascore,
        "soft_tifa_am": scores.soft_tifa_am,
        "soft_tifa_gm": scores.soft_tifa_gm,
        "tifa": scores.tifa,
        "model": spec.model,
        "dtype": dtype,
        "evaluator": settings_key,
        "sha256": sha256,
    }


@dataclass(frozen=True)
class ImageError:
    path: Path
    message: str


def _loaded(items: Sequence[PromptImage], workers: int) -> Iterator[LoadedImage | ImageDecodeError]:
    """Decode images on threads, a bounded window ahead of the consumer, in order."""
    window = max(4, workers * 4)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending = []
        next_index = 0
        for _ in range(len(items)):
            while next_index < len(items) and len(pending) < window:
                pending.append(pool.submit(load_image, items[next_index].path))
                next_index += 1
            try:
                yield pending.pop(0).result()
            except ImageDecodeError as err:
                yield err


def evaluate_images(items: Sequence[PromptImage], spec: SoftTifaSpec, model: VqaModel, cache: Any | None = None,
                    batch_size: int = 8, on_error: str = "fail",
                    progress: Any | None = None) -> Iterator[dict[str, Any] | ImageError]:
    """Yield one result record (or ImageError with on_error="skip") per image, in order."""
    from harness.geneval.cache import entry_key
    from harness.verifiers.answer_probs import AnswerQuery

    settings_key = spec.key()
    decoded = _loaded(items, workers=min(4, os.cpu_count() or 1))
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        images = [next(decoded) for _ in batch]
        out: list[dict[str, Any] | ImageError | None] = [None] * len(batch)
        keys: dict[int, str] = {}
        for j, (item, image) in enumerate(zip(batch, images, strict=True)):
            if isinstance(image, ImageDecodeError):
                if on_error == "fail":
                    raise image
                out[j] = ImageError(item.path, str(image))
            else:
                keys[j] = entry_key(settings_key, image.sha256, item.record)
        hits = cache.get_many(list(keys.values())) if cache is not None and keys else {}
        misses = [j for j in keys if keys[j] not in hits]
        for j in keys:
            if keys[j] in hits:
                out[j] = {**hits[keys[j]], "filename": str(batch[j].path), "prompt_index": batch[j].prompt_index}
        if misses:
            queries: list[AnswerQuery] = []
            spans = []
            for j in misses:
                image = images[j]
                assert isinstance(image, LoadedImage)
                questions = image_questions(batch[j].record, spec.vqascore)
                spans.append((len(queries), len(questions)))
                queries.extend(AnswerQuery(image.image, q.text, model.tokens(q.variants)) for q in questions)
            answers = model.engine.answer(queries)
            dtype = str(model.engine.dtype).removeprefix("torch.")
            fresh = {}
            for j, (first, count) in zip(misses, spans, strict=True):
                image = images[j]
                assert isinstance(image, LoadedImage)
                scores, predicted = score_answers(batch[j].record, answers[first:first + count], model.engine.decode,
                                                  spec.vqascore)
                record = result_record(batch[j], image.sha256, scores, predicted, spec, dtype, settings_key)
                out[j] = record
                fresh[keys[j]] = record
            if cache is not None:
                cache.put_many(fresh)
        for entry in out:
            assert entry is not None
            yield entry
        if progress is not None:
            progress.update(len(batch))


class EvalError(RuntimeError):
    """An evaluation that stopped; the message says what was kept."""


@dataclass
class EvalOutcome:
    out: Path
    written: int = 0
    skipped: list[ImageError] = field(default_factory=list)
    seconds: float = 0.0
    mean_soft_tifa_gm: float | None = None  # over the images written (0..1), for a one-line report


def write_results(items: Sequence[PromptImage], out: Path, spec: SoftTifaSpec, *, batch_size: int = 8,
                  on_error: str = "fail", cache_path: Path | None = None, use_cache: bool = True,
                  model: VqaModel | None = None, on_skip: Any = None) -> EvalOutcome:
    """Evaluate `items` into `out` (JSON lines), through `out.partial` renamed at the end."""
    from tqdm import tqdm

    from harness.geneval.cache import VerdictCache, default_cache_path

    cache = VerdictCache(cache_path or default_cache_path()) if use_cache else None
    model = model or VqaModel(spec, image_batch=batch_size)
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    outcome = EvalOutcome(out=out)
    gm_total = 0.0
    started = time.perf_counter()
    try:
        with open(partial, "w", encoding="utf-8") as fp, \
                tqdm(total=len(items), unit="img", desc="eval geneval2", disable=None) as bar:
            for entry in evaluate_images(items, spec, model, cache=cache, batch_size=batch_size, on_error=on_error,
                                         progress=bar):
                if isinstance(entry, ImageError):
                    outcome.skipped.append(entry)
                    if on_skip is not None:
                        on_skip(entry)
                    continue
                fp.write(json.dumps(entry) + "\n")
                outcome.written += 1
                gm_total += entry["soft_tifa_gm"]
                if outcome.written % batch_size == 0:
                    fp.flush()
    except Exception as err:
        if not outcome.written:  # nothing to keep
            partial.unlink(missing_ok=True)
            raise EvalError(str(err)) from None
        raise EvalError(f"{str(err).rstrip('.')}; {outcome.written} result(s) kept in {partial} (re-running resumes "
                        "from the cache)") from None
    finally:
        if cache is not None:
            cache.close()
    os.replace(partial, out)
    outcome.seconds = time.perf_counter() - started
    outcome.mean_soft_tifa_gm = gm_total / outcome.written if outcome.written else None
    return outcome
