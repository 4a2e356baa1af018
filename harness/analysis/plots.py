"""`stepwise analyze --plot DIR`: the report's figures as SVG files (matplotlib, no display).

    reliability-<verifier>.svg   stated probability vs share correct, per bin (probability verifiers)
    steps.svg                    within-prompt AUROC of each step's score vs the final verdict
    regret.svg                   oracle minus verifier, exact best-of-n accuracy, vs n

The leaderboard draws the same figures as inline SVG of its own (`leaderboard.svg`).
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.analysis.report import OVERALL, Analysis

__all__ = ["write_plots"]


def safe_file_part(name: str) -> str:
    """A verifier name as a file name part: anything but letters, digits, '.', '_' and '-' becomes '-'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip(".-") or "verifier"


def write_plots(analysis: Analysis, folder: Path) -> list[Path]:
    """Write the figures of `analysis` into `folder`; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.figures import save_figure

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, rep in analysis.verifiers.items():
        if rep.calibration is None or not rep.calibration[OVERALL].n:
            continue
        r = rep.calibration[OVERALL]
        fig, ax = plt.subplots(figsize=(4.6, 4.2))
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1, label="calibrated")
        points = [(c, a) for c, a in zip(r.confidence, r.accuracy, strict=True) if c is not None and a is not None]
        ax.plot([c for c, _ in points], [a for _, a in points], "o-", label=f"{name} (ECE {r.ece:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("stated probability (bin mean)")
        ax.set_ylabel("share GenEval judges correct")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / f"reliability-{safe_file_part(name)}.svg"
        save_figure(fig, path)
        written.append(path)
    stepped = {name: rep.steps for name, rep in analysis.verifiers.items() if rep.steps is not None}
    if stepped:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for name, steps in stepped.items():
            values = list(steps.within[OVERALL])
            ax.plot(list(steps.steps), [float("nan") if v is None else v for v in values], "o-", markersize=3,
                    label=name)
        ax.axhline(0.5, color="grey", linewidth=1, linestyle="--")
        ax.set_xlabel("generation step of the preview")
        ax.set_ylabel("within-prompt AUROC vs the final verdict")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = folder / "steps.svg"
        save_figure(fig, path)
        written.append(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, rep in analysis.verifiers.items():
        regret = rep.groups[OVERALL].regret
        ax.plot(list(regret), list(regret.values()), "o-", markersize=3, label=name)
    ax.set_xlabel("n (candidates per selection)")
    ax.set_ylabel("regret: oracle - verifier (GenEval overall)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / "regret.svg"
    save_figure(fig, path)
    written.append(path)
    return written
