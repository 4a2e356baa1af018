"""The batched answer-probability engine (harness/verifiers/answer_probs.py) and the GenEval 2 evaluator on a
tiny random Qwen3-VL, against the reference's one-question-at-a-time `generate(max_new_tokens=1,
output_scores=True)` (harness/geneval2/reference.py, evaluation.py's send_message_with_image).

What is checked: the token ids (the processor's own `apply_chat_template(tokenize=True)`), the whole
first-token distribution of every query within 1e-5 in float32 (images of different sizes, so prefixes
of different lengths, and questions of different lengths in one batch), the argmax and its decoding,
independence from batch composition, one preprocessing and one prefix forward per image, and the
evaluator's score lists against the reference's soft_tifa / tifa / vqa_score.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from harness.geneval2.evaluator import SoftTifaSpec, VqaModel, evaluate_images  # noqa: E402
from harness.geneval2.inputs import PromptImage  # noqa: E402
from harness.geneval2.reference import reference_scores, reference_vqascore, send_message_with_image  # noqa: E402
from harness.geneval2.soft_tifa import answer_variants, question_text  # noqa: E402
from harness.tiny.qwen3_vl import write_tiny_qwen3_vl  # noqa: E402
from harness.verifiers.answer_probs import AnswerProbEngine, AnswerQuery  # noqa: E402
from harness.weights import MissingWeightsError  # noqa: E402

ATOL = 1e-5
QUESTIONS = [
    ("How many cups are in the image?", "three"),
    ("Are the cups red?", "Yes"),
    ("Is the dog to the left of the cat in the picture?", "Yes"),
    ("How many balloons are in the image?", "ten"),
]
SIZES = [(64, 64), (64, 32), (40, 60), (64, 64), (20, 30)]  # 4, 2, 2, 4 and 1 image tokens


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture(scope="module")
def reference(folder: Path) -> tuple:
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype="auto", local_files_only=True).eval()
    return model, AutoProcessor.from_pretrained(folder, local_files_only=True)


@pytest.fixture(scope="module")
def engine(folder: Path) -> AnswerProbEngine:
    return AnswerProbEngine(str(folder), device="cpu", image_batch=2)


@pytest.fixture(scope="module")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(7)
    paths = []
    for i, (width, height) in enumerate(SIZES):
        path = root / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def open_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def reference_distribution(reference: tuple, text: str, image: Path) -> torch.Tensor:
    model, processor = reference
    messages = [{"role": "user", "content": [{"type": "image", "image": str(image)}, {"type": "text", "text": text}]}]
    inputs = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True, return_dict=True,
                                           return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                             return_dict_in_generate=True)
    return torch.softmax(out.scores[0], dim=-1)[0]


def test_dtype_auto_is_the_checkpoints(engine: AnswerProbEngine) -> None:
    assert engine.dtype == torch.float32  # the tiny checkpoint is saved in float32


def test_token_ids_are_the_processors(engine: AnswerProbEngine, reference: tuple, image_files: list[Path]) -> None:
    _, processor = reference
    for path in image_files[:3]:
        text = question_text(QUESTIONS[2][0])
        messages = [{"role": "user", "content": [{"type": "image", "image": str(path)},
                                                 {"type": "text", "text": text}]}]
        expected = processor.apply_chat_template(messages, tokenize=True, add_generation_prompt=True,
                                                 return_dict=True, return_tensors="pt")["input_ids"][0].tolist()
        head, tail = engine._split(text)
        prefix = engine._prefix(head, engine._pixels(open_rgb(path)))
        assert prefix.ids + tail == expected
        assert engine.chat_text(text).startswith("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>")


def test_whole_distribution_equals_the_reference_generate(engine: AnswerProbEngine, reference: tuple,
                                                          image_files: list[Path]) -> None:
    vocabulary = tuple(range(len(engine.tokenizer)))
    images = [open_rgb(p) for p in image_files]
    queries = [AnswerQuery(image, question_text(q), vocabulary) for image in images for q, _ in QUESTIONS]
    before = engine.forward_passes
    answers = engine.answer(queries)
    # five images in three length groups (4 tokens: 2 images; 2 tokens: 2 images; 1 token), image_batch=2:
    # one prefix forward and one question forward per chunk
    assert engine.forward_passes - before == 6
    _, processor = reference
    for query, answer, path in zip(queries, answers, [p for p in image_files for _ in QUESTIONS], strict=True):
        expected = reference_distribution(reference, query.text, path)
        assert torch.allclose(torch.tensor(answer.probs), expected, atol=ATOL, rtol=0)
        assert answer.argmax == int(expected.argmax())
        assert engine.decode(answer.argmax) == processor.batch_decode([expected.argmax()])[0]


def test_answers_do_not_depend_on_the_batch(engine: AnswerProbEngine, image_files: list[Path]) -> None:
    images = [open_rgb(p) for p in image_files]
    tokens = tuple(range(len(engine.tokenizer)))
    together = engine.answer([AnswerQuery(image, question_text(q), tokens) for image in images for q, _ in QUESTIONS])
    for i, image in enumerate(images):
        alone = engine.answer([AnswerQuery(image, question_text(QUESTIONS[1][0]), tokens)])[0]
        assert np.allclose(alone.probs, together[i * len(QUESTIONS) + 1].probs, atol=ATOL, rtol=0)
    engine.question_batch = 3  # the questions of a chunk split over several forwards
    try:
        split = engine.answer([AnswerQuery(image, question_text(q), tokens) for image in images for q, _ in QUESTIONS])
    finally:
        engine.question_batch = 64
    for a, b in zip(split, together, strict=True):
        assert np.allclose(a.probs, b.probs, atol=ATOL, rtol=0) and a.argmax == b.argmax


def test_each_image_is_preprocessed_once(engine: AnswerProbEngine, image_files: list[Path]) -> None:
    image = open_rgb(image_files[0])
    before = engine.images_processed, engine.forward_passes
    engine.answer([AnswerQuery(image, question_text(q), (1, 2)) for q, _ in QUESTIONS * 3])
    assert (engine.images_processed - before[0], engine.forward_passes - before[1]) == (1, 2)


def test_requested_tokens_come_back_in_order_with_duplicates(engine: AnswerProbEngine,
                                                             image_files: list[Path]) -> None:
    image = open_rgb(image_files[1])
    yes = engine.first_token("Yes")
    [both] = engine.answer([AnswerQuery(image, "Is it red? Answer in one word.", (yes, 5, yes))])
    assert both.probs[0] == both.probs[2] and len(both.probs) == 3


def test_evaluator_scores_equal_the_references(folder: Path, engine: AnswerProbEngine, reference: tuple,
                                               image_files: list[Path]) -> None:
    from geneval2_synthetic import RECORDS

    items = [PromptImage(path, RECORDS[i % len(RECORDS)], i) for i, path in enumerate(image_files)]
    spec = SoftTifaSpec(model=str(folder), device="cpu")
    results = list(evaluate_images(items, spec, VqaModel(spec, engine=engine), batch_size=3))
    model, processor = reference
    for item, result in zip(items, results, strict=True):
        soft, hard = reference_scores(model, processor, item.record["vqa_list"], item.path)
        assert np.allclose(result["soft_scores"], soft, atol=ATOL, rtol=0)
        assert result["tifa_scores"] == hard
        assert result["vqascore"] == pytest.approx(reference_vqascore(model, processor, item.record["prompt"],
                                                                      item.path), abs=ATOL)
        for (question, answer), predicted in zip(item.record["vqa_list"], result["predicted"], strict=True):
            pred, _ = send_message_with_image(model, processor, question_text(question), item.path,
                                              answer_variants(question, answer))
            assert predicted == pred
        assert result["dtype"] == "float32" and json.dumps(result)  # plain JSON


def test_missing_weights_and_other_models(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="GenEval 2 VQA model checkpoint"):
        AnswerProbEngine(str(tmp_path / "absent"), device="cpu")
    other = tmp_path / "qwen2"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    (other / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="runs Qwen3-VL"):
        AnswerProbEngine(str(other), device="cpu")
