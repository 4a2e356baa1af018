"""Pairwise comparisons, precomputed at build time (a static site cannot compute on request).

Two reproduced entries judged by the same evaluator backend on the same prompts (same
indices, tags and texts) get a paired, stratified bootstrap over prompts of the difference
of their strategies' picks (`harness.scaling.paired_comparison`), with per-task intervals of
the difference from the same resampling scheme. Every other pair gets the numbers side by
side, without a test. The bootstrap is seeded, so every build prints the same interval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from harness.submissions.model import Entry
from leaderboard.summarize import Cell, cells_of, compare_name, score_labels_of, suite_of

N_BOOT = 2000
SEED = 0


@dataclass(frozen=True)
class DiffRow:
    key: str
    label: str
    a: Cell
    b: Cell
    difference: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Comparison:
    name: str  # file stem: "<a>--<b>"
    a: Entry
    b: Entry
    paired: bool  # True: bootstrap over shared prompts; False: numbers only
    rows: tuple[DiffRow, ...]
    p_value: float | None
    prompts: int  # shared prompts (paired) or 0
    note: str


def _prompt_keys(entry: Entry) -> dict[int, tuple[str, str]] | None:
    if entry.manifest.kind != "reproduced" or not entry.prompt_correct or not entry.images:
        return None
    keys = {record.prompt_index: (record.tag, record.prompt) for record in entry.images}
    return keys if set(keys) == set(entry.prompt_correct) else None


def _numbers_only(a: Entry, b: Entry, note: str) -> Comparison:
    cells_a, cells_b = cells_of(a), cells_of(b)
    labels = score_labels_of(a)
    rows = []
    for key in labels if a.suite == b.suite else ("overall",):
        va, vb = cells_a[key].value, cells_b[key].value
        diff = None if va is None or vb is None or a.suite != b.suite else va - vb
        rows.append(DiffRow(key, labels[key], cells_a[key], cells_b[key], diff, None, None))
    return Comparison(compare_name(a.slug, b.slug), a, b, False, tuple(rows), None, 0, note)


def _paired(a: Entry, b: Entry, prompts: dict[int, tuple[str, str]]) -> Comparison:
    import numpy as np

    from harness.scaling import bootstrap_intervals, paired_comparison

    order = sorted(prompts)
    tags = [prompts[i][0] for i in order]
    assert a.prompt_correct is not None and b.prompt_correct is not None
    values_a = np.array([a.prompt_correct[i] for i in order], dtype=np.float64)
    values_b = np.array([b.prompt_correct[i] for i in order], dtype=np.float64)
    diff = values_a - values_b
    # The overall difference is of the suite's headline figure: GenEval's mean of task means (resampled within
    # tasks), GenEval 2's mean over prompts (one stratum, so every prompt weighs the same).
    strata = tags if suite_of(a).overall_mean == "groups" else ["all"] * len(tags)
    result = paired_comparison(values_a, values_b, strata, np.random.default_rng(SEED), n_boot=N_BOOT)
    # Per-task intervals of the difference: the same stratified resampling, applied to a - b.
    intervals = bootstrap_intervals(diff, tags, np.random.default_rng(SEED), n_boot=N_BOOT)
    cells_a, cells_b = cells_of(a), cells_of(b)
    labels = score_labels_of(a)
    rows = []
    for key in labels:
        if key == "overall":
            value, low, high = result.difference, result.low, result.high
        elif key in intervals:
            mask = np.array([t == key for t in tags])
            value = float(diff[mask].mean())
            low, high = (float(x) for x in intervals[key])
        else:
            value = low = high = None
        rows.append(DiffRow(key, labels[key], cells_a[key], cells_b[key], value, low, high))
    if a.suite == "geneval":
        note = (f"Paired bootstrap over {len(order)} shared prompts ({N_BOOT} resamples within each task, "
                f"seed {SEED}) of the expected correctness of each system's pick.")
    else:
        note = (f"Paired bootstrap over {len(order)} shared prompts ({N_BOOT} resamples, seed {SEED}) of the "
                "expected Soft-TIFA GM of each system's pick.")
    return Comparison(compare_name(a.slug, b.slug), a, b, True, tuple(rows), result.p_value, len(order), note)


def compare(a: Entry, b: Entry) -> Comparison:
    """One pair, `a.slug < b.slug`: paired when both runs judged the same prompts the same way."""
    backend_a, backend_b = a.manifest.evaluator.backend, b.manifest.evaluator.backend
    if a.suite != b.suite:
        return _numbers_only(a, b, f"Different suites ({a.suite} vs {b.suite}): their figures measure different "
                                   "things; headline figures shown side by side only, no difference.")
    if backend_a != backend_b:
        return _numbers_only(a, b, f"Different evaluator backends ({backend_a} vs {backend_b}): the numbers are "
                                   "not directly comparable; shown side by side only.")
    prompts_a, prompts_b = _prompt_keys(a), _prompt_keys(b)
    if prompts_a is None or prompts_b is None:
        return _numbers_only(a, b, "At least one entry is reported (numbers as published): side by side only, "
                                   "no per-prompt test is possible.")
    if prompts_a != prompts_b:
        return _numbers_only(a, b, "The two runs judged different prompts: side by side only, no paired test.")
    return _paired(a, b, prompts_a)


def all_pairs(entries: Sequence[Entry]) -> list[Comparison]:
    """Every unordered pair once, named by its slugs in sorted order."""
    ordered = sorted(entries, key=lambda e: e.slug)
    return [compare(a, b) for i, a in enumerate(ordered) for b in ordered[i + 1:]]
