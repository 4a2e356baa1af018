"""`stepwise summary` for GenEval 2 results: the reference's figures, as its scripts print them.

evaluation.py prints one `Score:` per method (Soft-TIFA GM or AM, TIFA, VQAScore: here all four,
from one evaluation); soft_tifa_analysis.py prints the per-skill atom-level estimate (Soft-TIFA AM)
and the per-atomicity prompt-level estimate (Soft-TIFA GM), each `round(x, 2)`. The computation is
`harness.geneval2.soft_tifa.figures`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.geneval2.data import SUITE_NAME, record_problems
from harness.geneval2.soft_tifa import Figures, ImageScores, Row, figures, is_finite_probability_list
from harness.jsonl import iter_json_lines

RESULT_KEYS = ("metadata", "soft_scores", "tifa_scores", "vqascore")


def is_results(text: str) -> bool:
    """Whether `text` (a results file) holds GenEval 2 results: its first record says suite "geneval2"."""
    for line in text.splitlines():
        if line.strip():
            try:
                record = json.loads(line)
            except ValueError:
                return False
            return isinstance(record, dict) and record.get("suite") == SUITE_NAME
    return False


@dataclass(frozen=True)
class Summary:
    figures: Figures
    prompts: int
    models: list[str] = field(default_factory=list)  # "model (dtype)" of the results, in order of appearance

    def to_dict(self) -> dict[str, Any]:
        return {"suite": SUITE_NAME, "prompts": self.prompts, **self.figures.to_dict(), "models": self.models}

    def to_text(self) -> str:
        f = self.figures
        lines = [
            "GenEval 2 summary",
            "=================",
            f"Total images: {f.images}",
            f"Total prompts: {self.prompts}",
            "",
            f"Soft-TIFA GM (prompt level): {f.soft_tifa_gm}",
            f"Soft-TIFA AM (atom level):   {f.soft_tifa_am}",
            f"TIFA:                        {f.tifa}",
            f"VQAScore:                    {'not computed' if f.vqascore is None else f.vqascore}",
            "",
            "Per Atom Type Analysis (Soft-TIFA AM)",
            *(f"{skill.capitalize() + ':':<11}{_rounded(value)} ({f.skill_counts[skill]} questions)"
              for skill, value in f.skills.items()),
            "",
            "Per Atomicity Analysis (Soft-TIFA GM)",
            *(f"Atomicity={k}: {_rounded(value)} ({f.atomicity_counts[k]} images)" for k, value in f.atomicity.items()),
        ]
        return "\n".join(lines)


def _rounded(value: float | None) -> str:
    return "n/a" if value is None else str(round(value, 2))


def parse_results(lines: Iterable[str], source: str) -> list[dict[str, Any]]:
    """GenEval 2 result records, each checked for what the summary reads; errors name source:line."""
    records = []
    for lineno, record in iter_json_lines(lines, source):
        where = f"{source}:{lineno}"
        if not isinstance(record, dict):
            raise ValueError(f"{where}: not a JSON object")
        if record.get("suite") != SUITE_NAME:
            raise ValueError(f"{where}: not a GenEval 2 result (suite {record.get('suite')!r}); a results file "
                             "holds one suite's results")
        missing = [k for k in RESULT_KEYS if k not in record]
        if missing:
            raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
        problems = record_problems(record["metadata"])
        if problems:
            raise ValueError(f"{where}: 'metadata' is not a GenEval 2 record: {'; '.join(problems)}")
        n = len(record["metadata"]["vqa_list"])
        for key in ("soft_scores", "tifa_scores"):
            values = record[key]
            if not is_finite_probability_list(values) or len(values) != n:
                raise ValueError(f"{where}: {key!r} must be {n} non-negative numbers, one per question")
        vqascore = record["vqascore"]
        if vqascore is not None and not is_finite_probability_list([vqascore]):
            raise ValueError(f"{where}: 'vqascore' must be a non-negative number or null")
        records.append(record)
    if not records:
        raise ValueError(f"{source}: no results to summarise")
    return records


def summarize(records: list[dict[str, Any]]) -> Summary:
    rows = [Row(skills=tuple(r["metadata"]["skills"]), atom_count=r["metadata"]["atom_count"],
                scores=ImageScores(soft=tuple(r["soft_scores"]), hard=tuple(r["tifa_scores"]),
                                   vqascore=r["vqascore"]))
            for r in records]
    models = list(dict.fromkeys(f"{r.get('model', '?')} ({r.get('dtype', '?')})" for r in records))
    prompts = len({json.dumps(r["metadata"], sort_keys=True) for r in records})
    return Summary(figures=figures(rows), prompts=prompts, models=models)


def evaluator_keys(records: list[dict[str, Any]]) -> list[str]:
    """The distinct evaluator settings of `records`, in order of appearance."""
    return list(dict.fromkeys(str(r.get("evaluator")) for r in records))
