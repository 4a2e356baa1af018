"""GenEval 2 as a suite plug-in (`harness.suites`): the user's prompts, Soft-TIFA on Qwen3-VL, atomicity.

    stepwise prompts geneval2 --from geneval2_data.jsonl -o geneval2/
    stepwise run --suite geneval2 --suite-param data=geneval2/ --generator ... --pool 8

`data` is the suite folder `stepwise prompts geneval2` wrote (or a data file in its format, read as
strictly); the data is not shipped (CC BY-NC 4.0). Each image is judged by the batched Soft-TIFA
evaluator (`harness.geneval2.evaluator`): its verdict's score is the image's Soft-TIFA GM (the
geometric mean of its questions' answer probabilities, the figure GenEval 2 ranks by), `correct`
is TIFA = 1 (every question's most likely first answer token right), and the details are the
per-question score lists, the VQAScore and the AM/GM/TIFA figures of the reference's results.

A prompt's group is its atomicity, "atoms=3" .. "atoms=10" (soft_tifa_analysis.py's prompt-level
breakdown); the overall figure, `soft_tifa_gm`, is the mean over prompts (evaluation.py's score,
on 0..1 here, x100 in `stepwise summary`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.plugins import param
from harness.suites import EvaluatorContext, Verdict

EVALUATOR_NAME = "soft-tifa"
DETAIL_KEYS = ("soft_scores", "tifa_scores", "predicted", "vqascore", "soft_tifa_am", "soft_tifa_gm", "tifa",
               "model", "dtype")


class SoftTifaEvaluator:
    """Soft-TIFA verdicts through `harness.geneval2.evaluator.evaluate_images` (the store is the cache)."""

    name = EVALUATOR_NAME

    def __init__(self, spec: Any, batch_size: int = 8, model: Any = None) -> None:
        from harness.geneval2.evaluator import VqaModel

        self.spec = spec
        self.batch_size = batch_size
        self.model = model or VqaModel(spec, image_batch=batch_size)

    def key(self) -> str:
        return str(self.spec.key())

    def judge(self, images: Sequence[Path], records: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        from harness.geneval2.evaluator import ImageError, evaluate_images
        from harness.geneval2.inputs import PromptImage

        items = [PromptImage(Path(path), dict(record), 0) for path, record in zip(images, records, strict=True)]
        out = []
        for entry in evaluate_images(items, self.spec, self.model, cache=None, batch_size=self.batch_size):
            assert not isinstance(entry, ImageError)  # on_error="fail" raises instead
            out.append(verdict_of(entry))
        return out


def verdict_of(result: Mapping[str, Any]) -> Verdict:
    """A verdict from one of the evaluator's result records."""
    hard = list(result["tifa_scores"])
    questions = [q for q, _ in result["metadata"]["vqa_list"]]
    return Verdict(score=float(result["soft_tifa_gm"]), correct=all(hard), reason=reason_of(questions, hard),
                   details={k: result[k] for k in DETAIL_KEYS})


def reason_of(questions: Sequence[str], hard: Sequence[int]) -> str:
    """The verdict's reason: "" when every question's most likely answer is right, else which were not."""
    wrong = [q for q, h in zip(questions, hard, strict=True) if not h]
    return "" if not wrong else f"{len(wrong)} of {len(hard)} questions answered otherwise: " + "; ".join(wrong)


class Geneval2Suite:
    """GenEval 2 (Kamath et al., 2025): 800 compositional prompts, Soft-TIFA with a VQA model."""

    @dataclass(frozen=True, kw_only=True)
    class Params:
        data: str = param(help="The suite folder `stepwise prompts geneval2 -o DIR` wrote (or geneval2_data.jsonl).")
        model: str = param("Qwen/Qwen3-VL-8B-Instruct",
                           help="The VQA model: a local Qwen3-VL folder or a hub id in the HF cache.")
        dtype: str = param("auto", help="auto (the checkpoint's: bfloat16), bfloat16, float16 or float32.")
        vqascore: bool = param(True, help="Also ask the VQAScore question (stored in the details).")
        device: str | None = param(None, help="Device of the VQA model [the run's --device, else cuda if available].")

    description: ClassVar[str] = ("GenEval 2: 800 prompts of 3-10 atoms from the user's data file, Soft-TIFA "
                                  "(Qwen3-VL answer probabilities) per image.")
    overall: ClassVar[str] = "soft_tifa_gm"
    overall_mean: ClassVar[str] = "prompts"

    def __init__(self, params: Params) -> None:
        self.params = params

    def records(self) -> list[dict[str, Any]]:
        from harness.geneval2.data import read_suite

        return [dict(r) for r in read_suite(Path(self.params.data)).records]

    def group(self, record: Mapping[str, Any]) -> str:
        return f"atoms={record['atom_count']}"

    def spec(self, device: str | None = None) -> Any:
        from harness.geneval2.evaluator import SoftTifaSpec

        return SoftTifaSpec(model=self.params.model, dtype=self.params.dtype, device=self.params.device or device,
                            vqascore=self.params.vqascore)

    def evaluator(self, context: EvaluatorContext) -> SoftTifaEvaluator:
        return SoftTifaEvaluator(self.spec(context.device), batch_size=context.batch_size)
