"""Search rows for `stepwise curve --run RUN`: score with its interval, and compute per prompt.

A search row is one stored search (strategy, settings, budget) of the run: every pick's GenEval
verdict by the curve's evaluator settings; a prompt scores the mean over its samples, a task the
mean over its prompts, overall the mean over tasks (as best-of-n rows), with the same stratified
bootstrap over prompts. Compute per prompt means per GenEval sample (one selection), as the
best-of-n rows' `s/prompt`: the mean over picks of the ledger's generator NFE (candidate-steps) and
of its seconds (the whole search: generator and verifiers).

Best-of-n at the same compute: a best-of-n selection costs n x total_steps NFE (every candidate runs
every step), so the plot puts the pool's curves and the searches on one NFE axis (and one seconds
axis when the pool knows its costs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SearchRow", "record_search_results", "render_search_table", "search_rows", "write_compute_plot"]


@dataclass(frozen=True)
class SearchRow:
    label: str  # the table's row name: the strategy, with its settings when a run has several
    search_id: int
    strategy: str
    settings_hash: str
    budget: int
    verifiers: tuple[str, ...]
    tasks: dict[str, float]  # GenEval tags + "overall"
    intervals: dict[str, tuple[float, float]]
    nfe: float  # mean generator candidate-steps per sample
    seconds: float  # mean seconds per sample (the whole search)
    generator_seconds: float
    verifier_seconds: float
    prompts: int
    picks: int
    total_steps: int
    reads_metadata: tuple[str, ...]
    prompt_rewriting: bool  # some search generated from a rewritten prompt (its trace's start events say)
    unjudged: int = 0  # picks without a verdict by these evaluator settings (left out)
    per_prompt: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)

    @property
    def overall(self) -> float:
        return self.tasks["overall"]


def _labels(searches: Sequence[Any]) -> dict[int, str]:
    """One label per search: its strategy, with a settings prefix when the run has several settings of it."""
    settings: dict[str, set[str]] = {}
    for x in searches:
        settings.setdefault(x.strategy, set()).add(x.settings_hash)
    return {x.id: x.strategy if len(settings[x.strategy]) == 1 else f"{x.strategy}[{x.settings_hash[:6]}]"
            for x in searches}


def search_rows(s: Any, run_id: str, backend: str, settings_hash: str, *, seed: int = 0,
                n_boot: int = 2000, overall_mean: str = "groups") -> list[SearchRow]:
    """Every search of the run with picks judged by these evaluator settings, by strategy and budget.

    A pick counts its verdict's score (GenEval: 1 or 0; GenEval 2: Soft-TIFA GM); overall_mean is the
    suite's ("groups": GenEval's mean over tasks; "prompts": GenEval 2's mean over prompts)."""
    from harness.search.store import read_picks, run_searches
    from harness.search.trace import rewrote_prompt
    from harness.suites import aggregate, intervals

    searches = run_searches(s, run_id)
    labels = _labels(searches)
    out = []
    for x in searches:
        picks, events = read_picks(s, x.id, backend, settings_hash, with_events=True)
        judged = [p for p in picks if p.correct is not None]
        if not judged:
            continue
        by_prompt: dict[int, list[float]] = {}
        tags: dict[int, str] = {}
        for p in judged:
            by_prompt.setdefault(p.prompt_index, []).append(float(p.score))  # a judged pick has one (read_picks)
            tags[p.prompt_index] = p.tag
        order = sorted(by_prompt)
        per_prompt = np.array([np.mean(by_prompt[i]) for i in order])
        tag_list = [tags[i] for i in order]
        scores = aggregate(per_prompt, tag_list, overall_mean=overall_mean)
        boot = intervals(per_prompt, tag_list, np.random.default_rng(seed), n_boot=n_boot, overall_mean=overall_mean)
        ledgers = [p.ledger for p in judged]

        def mean(key: str, ledgers: list[dict[str, Any]] = ledgers) -> float:
            return float(np.mean([float(led.get(key) or 0.0) for led in ledgers]))

        verifier_seconds = float(np.mean([sum(float(t.get("seconds") or 0.0) for t in led.get("verifiers", {}).values())
                                          for led in ledgers]))
        out.append(SearchRow(
            label=labels[x.id], search_id=x.id, strategy=x.strategy, settings_hash=x.settings_hash, budget=x.budget,
            verifiers=tuple(x.verifiers), tasks={k: float(v) for k, v in scores.items()},
            intervals={k: (float(a), float(b)) for k, (a, b) in boot.items()}, nfe=mean("generator_nfe"),
            seconds=mean("seconds"), generator_seconds=mean("generator_seconds"), verifier_seconds=verifier_seconds,
            prompts=len(order), picks=len(judged), total_steps=x.total_steps, reads_metadata=tuple(x.reads_metadata),
            prompt_rewriting=any(rewrote_prompt(events.get(p.pick_id, []), p.prompt) for p in judged),
            unjudged=len(picks) - len(judged),
            per_prompt=per_prompt))
    return out


def render_search_table(rows: Sequence[SearchRow]) -> str:
    """The search rows: label, budget (as n), overall with its interval, NFE and seconds per prompt, tasks."""
    if not rows:
        return ""
    tags = [t for t in rows[0].tasks if t != "overall"]
    header = (f"{'search':<20} {'n':>3}  {'overall':>7}  {'95% interval':<15} {'NFE/prompt':>10} {'s/prompt':>9}"
              + "".join(f" {t[:13]:>13}" for t in tags))
    lines = ["", "searches (n = budget B: at most best-of-B's generator compute; a best-of-n row costs n x "
             f"{rows[0].total_steps} NFE per prompt)", header, "-" * len(header)]
    for r in rows:
        low, high = r.intervals["overall"]
        lines.append(f"{r.label:<20} {r.budget:>3}  {r.overall:>7.4f}  [{low:.4f}, {high:.4f}] {r.nfe:>10.1f} "
                     f"{r.seconds:>9.4g}" + "".join(f" {r.tasks.get(t, float('nan')):>13.4f}" for t in tags))
    marks = sorted({m for r in rows for m in r.reads_metadata})
    notes = [f"{r.label} (budget {r.budget}): {r.unjudged} picks have no verdict by these evaluator settings and are "
             "left out" for r in rows if r.unjudged]
    if marks:
        notes.append(f"reads the benchmark's metadata (declared): {', '.join(marks)}")
    if any(r.prompt_rewriting for r in rows):
        notes.append("prompt rewriting: yes for " + ", ".join(sorted({r.label for r in rows if r.prompt_rewriting})))
    notes.append("NFE/prompt and s/prompt: mean per GenEval sample of the harness's ledger (generator candidate-steps; "
                 "seconds of the whole search)")
    return "\n".join(lines + notes)


def record_search_results(s: Any, run_id: str, rows: Sequence[SearchRow], backend: str, settings_hash: str,
                          n_boot: int, seed: int) -> None:
    """Store each search row in the run's `results` (strategy NAME, n = budget; newest rows win)."""
    from harness.store import add_result

    for r in rows:
        details = {"search": {"id": r.search_id, "settings_hash": r.settings_hash, "budget": r.budget,
                              "nfe_per_prompt": r.nfe, "seconds_per_prompt": r.seconds,
                              "generator_seconds_per_prompt": r.generator_seconds,
                              "verifier_seconds_per_prompt": r.verifier_seconds, "picks": r.picks,
                              "prompts": r.prompts, "total_steps": r.total_steps,
                              "reads_metadata": list(r.reads_metadata), "prompt_rewriting": r.prompt_rewriting},
                   "intervals": {t: list(v) for t, v in r.intervals.items() if t != "overall"},
                   "bootstrap": n_boot, "seed": seed, "level": 0.95, "seconds_per_prompt": r.seconds}
        low, high = r.intervals["overall"]
        add_result(s, run_id, strategy=r.strategy, verifier="+".join(r.verifiers) or "none", n=r.budget,
                   scores={t: v for t, v in r.tasks.items() if t != "overall"}, overall=r.overall, low=low, high=high,
                   evaluator=backend, evaluator_settings_hash=settings_hash, verifier_settings_hash=r.settings_hash,
                   details=details)


def search_json(rows: Sequence[SearchRow]) -> dict[str, dict[str, dict[str, float]]]:
    """{label: {budget: {"overall": .., "<tag>": .., "nfe": .., "seconds": ..}}} for `stepwise curve --json`."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for r in rows:
        out.setdefault(r.label, {})[str(r.budget)] = {**r.tasks, "low": r.intervals["overall"][0],
                                                      "high": r.intervals["overall"][1], "nfe": r.nfe,
                                                      "seconds": r.seconds}
    return out


def write_compute_plot(path: Path, table: Mapping[str, Mapping[int, Mapping[str, float]]],
                       intervals: Mapping[str, Mapping[int, tuple[float, float]]],
                       seconds: Mapping[str, Mapping[int, float]] | None, rows: Sequence[SearchRow],
                       reference: Sequence[str] = ("random", "oracle")) -> None:
    """Score vs generator NFE (and vs seconds when the pool knows its costs): best-of-n curves as lines
    with interval bands (x = n x total_steps), searches as points with interval bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.figures import save_figure

    steps = rows[0].total_steps if rows else 1
    panels = ["nfe"] + (["seconds"] if seconds is not None and rows else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.8 * len(panels), 4.4), sharey=True, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        for label, by_n in table.items():
            ns = list(by_n)
            xs = [n * steps for n in ns] if panel == "nfe" else [seconds[label][n] for n in ns]  # type: ignore[index]
            if panel == "seconds" and not all(x > 0 for x in xs):
                continue
            ys = [by_n[n]["overall"] for n in ns]
            (line,) = ax.plot(xs, ys, "--" if label in reference else "-", marker="o", markersize=2, label=label)
            ax.fill_between(xs, [intervals[label][n][0] for n in ns], [intervals[label][n][1] for n in ns],
                            color=line.get_color(), alpha=0.12, linewidth=0)
        for r in rows:
            x = r.nfe if panel == "nfe" else r.seconds
            if x <= 0:
                continue
            low, high = r.intervals["overall"]
            ax.errorbar([x], [r.overall], yerr=[[r.overall - low], [high - r.overall]], fmt="s", capsize=3,
                        label=f"{r.label} (B={r.budget})")
        ax.set_xscale("log")
        ax.set_xlabel("generator NFE per prompt (candidate-steps)" if panel == "nfe"
                      else "seconds per prompt (generator + verifiers)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("GenEval overall (mean over tasks)")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
