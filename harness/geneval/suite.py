"""GenEval as a suite plug-in (`harness.suites`): its prompts, its detector evaluator, its six tasks.

The prompts are `harness.prompts.geneval_suite(per_task)` (553 with GenEval's 100 per task), or a
metadata file in GenEval's format (`data`, e.g. `stepwise prompts train`'s). The evaluator is the
detector backend and thresholds of the run's flags (`--backend`, `--detector`, ...), with the
verdicts stored as before: under the backend's name and `EvaluatorSpec.key()`. A verdict's score is
its correctness (1.0 or 0.0), so a best-of-n curve is GenEval's expected accuracy; the overall
figure is the unweighted mean of the task scores (GenEval's "overall").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from harness.plugins import param
from harness.suites import EvaluatorContext, Verdict


class GenevalEvaluator:
    """GenEval's verdicts through the batched evaluator (`harness.geneval.evaluator.judge_batch`)."""

    def __init__(self, spec: Any, models: Any = None) -> None:
        from harness.geneval.evaluator import Models

        self.spec = spec
        self.name = spec.backend
        self.models = models or Models(spec)

    def key(self) -> str:
        return str(self.spec.key())

    def judge(self, images: Sequence[Path], records: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        from harness.geneval.detections import detections_to_json
        from harness.geneval.evaluator import judge_batch
        from harness.geneval.folder import decode_image

        # Decoded from the saved file, exactly as `stepwise eval` reads a folder: same pixels, same verdict.
        arrays = [decode_image(Path(path)).rgb for path in images]
        results = judge_batch(self.models, arrays, [dict(r) for r in records], self.spec)
        return [Verdict(float(bool(v.correct)), bool(v.correct), v.reason, dict(v.details), detections_to_json(d))
                for d, v in results]


class GenevalSuite:
    """GenEval (Ghosh et al., 2023): 553 prompts in six tasks, judged by an object detector."""

    @dataclass(frozen=True, kw_only=True)
    class Params:
        per_task: int = param(100, help="Prompts per task after the 80 single objects (GenEval's: 100).")
        data: str | None = param(None, help="A metadata .jsonl in GenEval's format instead of GenEval's prompts.")

    description: ClassVar[str] = "GenEval: six tasks, an object detector and a colour classifier judge each image."
    overall: ClassVar[str] = "overall"
    overall_mean: ClassVar[str] = "groups"
    # Judged by GenEval's evaluator, configured by the run's GenEval flags (--backend, --detector, ...).
    geneval_evaluator: ClassVar[bool] = True

    def __init__(self, params: Params) -> None:
        self.params = params

    def records(self) -> list[dict[str, Any]]:
        from harness.prompts import geneval_suite, read_metadata

        if self.params.data is not None:
            return [dict(r) for r in read_metadata(Path(self.params.data))]
        return [dict(r) for r in geneval_suite(per_task=self.params.per_task)]

    def group(self, record: Mapping[str, Any]) -> str:
        return str(record["tag"])

    def evaluator(self, context: EvaluatorContext) -> GenevalEvaluator:
        if context.geneval is None:
            raise ValueError("the geneval suite needs the GenEval evaluator settings (--backend, --detector, ...)")
        return GenevalEvaluator(context.geneval)
