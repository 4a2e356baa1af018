"""The Verifiers page of a reproduced entry: how its verifiers judge its pool (`harness.analysis`).

`verifier_page(entry)` computes the report from the entry's export (the records' verdicts, scores
and optional step scores; no model) with the entry's fixed bootstrap (`BOOTSTRAP_SEED`,
`BOOTSTRAP_RESAMPLES`: the same bytes on every build) and returns plain view data: one table per
verifier (rows: tasks, then overall), its reliability diagram (verifiers whose scores state a
probability), the per-step AUROC curve (verifiers with step scores), and the agreement table.
Entries without verifier scores, or with one candidate per prompt, get no page (None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from markupsafe import Markup

from harness.submissions.compute import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
from harness.submissions.model import TASK_LABELS, Entry
from leaderboard.svg import Point, ReliabilityBin, Series, line_chart, reliability_chart

__all__ = ["VerifierPage", "VerifierTable", "verifier_page", "verifiers_file"]

OVERALL = "overall"


def verifiers_file(slug: str) -> str:
    return f"verifiers/{slug}.html"


@dataclass(frozen=True)
class Value:
    value: float | None
    text: str

    @property
    def sort_value(self) -> str:
        return "" if self.value is None else f"{self.value:.6f}"


def _value(x: float | None, interval: tuple[float, float] | None = None) -> Value:
    if x is None:
        return Value(None, "—")
    text = f"{x:.3f}" if interval is None else f"{x:.3f} [{interval[0]:.2f}, {interval[1]:.2f}]"
    return Value(x, text)


@dataclass(frozen=True)
class Row:
    group: str
    label: str
    prompts: int
    informative: int
    excluded: str  # "all correct / all incorrect"
    cells: dict[str, Value]  # within_auroc, pooled_auroc, average_precision, ece, miss_at_n, regret_at_n


@dataclass(frozen=True)
class VerifierTable:
    name: str
    section_id: str
    rows: tuple[Row, ...]
    reliability: Markup | None
    reliability_n: int


@dataclass(frozen=True)
class AgreementRow:
    a: str
    b: str
    spearman: Value
    spearman_prompts: int
    top1: Value


@dataclass(frozen=True)
class VerifierPage:
    slug: str
    n: int  # the pool's N (regret and miss are at n = N)
    tables: tuple[VerifierTable, ...]
    steps: Markup | None
    agreement: tuple[AgreementRow, ...]
    prompts: int
    candidates: int


COLUMNS: tuple[tuple[str, str], ...] = (
    ("within_auroc", "Within-prompt AUROC"), ("pooled_auroc", "Pooled AUROC"), ("average_precision", "AP"),
    ("ece", "ECE"), ("miss_at_n", "Miss at N"), ("regret_at_n", "Regret at N"))


def _id(text: str) -> str:
    from leaderboard.fields import html_id

    return html_id(text)


def _calibrated(pool: Any, probabilities: dict[str, Any]) -> dict[str, Any]:
    """The probability maps whose stated probabilities all lie in [0, 1] on this pool: a score outside its
    verifier's range (an export that is not what it claims) gets no reliability diagram, not a failed build."""
    from harness.analysis.report import stated_probabilities

    kept = {}
    for name, probability in probabilities.items():
        stated = stated_probabilities(pool.scores[name], pool.valid, probability)
        known = stated[~np.isnan(stated)]
        if ((known >= 0) & (known <= 1)).all():
            kept[name] = probability
    return kept


def verifier_page(entry: Entry) -> VerifierPage | None:
    """The page's data for a reproduced entry with verifier scores and pools of 2 or more, else None."""
    from harness.analysis.report import analyze, pool_from_records, score_probabilities

    if entry.manifest.kind != "reproduced" or not entry.images or not entry.images[0].scores:
        return None
    pool = pool_from_records(entry.images)
    if int(pool.valid.sum(axis=1).min()) < 2:
        return None
    names = sorted(pool.scores)
    report = analyze(pool, rng=np.random.default_rng(BOOTSTRAP_SEED), n_boot=BOOTSTRAP_RESAMPLES,
                     seed=BOOTSTRAP_SEED, probabilities=_calibrated(pool, score_probabilities(names)))
    n = report.ns[-1]
    tables = []
    for name in names:
        rep = report.verifiers[name]
        rows = []
        for group, g in rep.groups.items():
            ece = rep.calibration[group].ece if rep.calibration is not None else None
            rows.append(Row(group, "Overall" if group == OVERALL else TASK_LABELS.get(group, group), g.prompts,
                            g.informative, f"{g.all_correct} / {g.all_incorrect}", {
                                "within_auroc": _value(g.within_auroc, g.within_interval),
                                "pooled_auroc": _value(g.pooled_auroc, g.pooled_interval),
                                "average_precision": _value(g.average_precision),
                                "ece": _value(ece),
                                "miss_at_n": _value(g.miss_at_n),
                                "regret_at_n": _value(g.regret[n], g.regret_interval.get(n)),
                            }))
        diagram = None
        count = 0
        if rep.calibration is not None and rep.calibration[OVERALL].n:
            r = rep.calibration[OVERALL]
            count = r.n
            bins = [ReliabilityBin(lo, hi, conf, acc, c) for lo, hi, conf, acc, c in
                    zip(r.edges[:-1], r.edges[1:], r.confidence, r.accuracy, r.counts, strict=True)]
            diagram = reliability_chart(bins, chart_id=f"reliability-{_id(name)}",
                                        title=f"Reliability of {name}'s probabilities", ece=r.ece)
        tables.append(VerifierTable(name, f"verifier-{_id(name)}", tuple(rows), diagram, count))
    series = []
    for name in names:
        steps = report.verifiers[name].steps
        if steps is None:
            continue
        points = tuple(Point(float(s), v, *(iv if iv is not None else (None, None)))
                       for s, v, iv in zip(steps.steps, steps.within[OVERALL], steps.within_interval[OVERALL],
                                           strict=True) if v is not None)
        if points:
            series.append(Series(name, points))
    chart = None
    if series:
        chart = line_chart(series, chart_id=f"steps-{entry.slug}", title=f"{entry.manifest.name}: per-step AUROC",
                           x_label="generation step of the preview", y_label="within-prompt AUROC vs final verdict",
                           integer_x=True)
    agreement = tuple(AgreementRow(x.a, x.b, _value(x.spearman[OVERALL]), x.spearman_prompts[OVERALL],
                                   _value(x.top1[OVERALL])) for x in report.agreement)
    return VerifierPage(entry.slug, n, tuple(tables), chart, agreement, report.prompts, report.candidates)
