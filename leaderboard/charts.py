"""The site's figures: an entry's category bars and its best-of-n scaling curves, as inline SVG."""

from __future__ import annotations

from dataclasses import dataclass

from markupsafe import Markup

from harness.submissions.model import CurvePoint, Entry
from leaderboard.summarize import cells_of, score_labels_of, suite_of
from leaderboard.svg import Bar, Point, Series, bar_chart, line_chart

# Reference rows computed next to the verifiers; listed after them in legends.
REFERENCE_CURVES = ("random", "oracle")


def category_bars(entry: Entry) -> Markup:
    cells = cells_of(entry)
    labels = score_labels_of(entry)
    bars = [Bar(key, labels[key], cells[key].value, cells[key].low, cells[key].high) for key in labels]
    return bar_chart(bars, title=f"{suite_of(entry).title} scores of {entry.manifest.name}",
                     chart_id=f"bars-{entry.slug}")


def _curve_order(entry: Entry) -> list[str]:
    names = sorted(name for name in entry.curves if name not in REFERENCE_CURVES)
    return names + [name for name in REFERENCE_CURVES if name in entry.curves]


def _log_base(xs: list[float], base: int, ratio: float) -> int | None:
    """A log axis when the values span at least `ratio` (e.g. n = 1..20), else linear."""
    return base if xs and min(xs) > 0 and max(xs) / min(xs) >= ratio else None


def _series(entry: Entry, x_of: str) -> list[Series]:
    out = []
    for name in _curve_order(entry):
        points: list[CurvePoint] = list(entry.curves[name])
        if x_of == "seconds":
            points = [p for p in points if p.seconds is not None and p.seconds > 0]
        out.append(Series(name, tuple(
            Point(float(p.n if x_of == "n" else p.seconds), p.overall, p.low, p.high)  # type: ignore[arg-type]
            for p in points
        )))
    return [s for s in out if s.points]


@dataclass(frozen=True)
class ScalingFigures:
    slug: str
    section_id: str
    by_n: Markup
    by_seconds: Markup | None  # None when the export knows no costs


def scaling_figures(entry: Entry) -> ScalingFigures | None:
    """Overall score vs n and vs seconds per prompt, one line per verifier, or None without curves."""
    by_n = _series(entry, "n")
    if not by_n:
        return None
    base = entry.slug
    name = entry.manifest.name
    figure = suite_of(entry).figure
    xs = [p.x for s in by_n for p in s.points]
    n_chart = line_chart(by_n, chart_id=f"curve-n-{base}", title=f"{name}: {figure} vs n",
                         x_label="n (candidates per prompt)", y_label=figure,
                         log_base=_log_base(xs, 2, 8), integer_x=True)
    by_seconds = _series(entry, "seconds")
    seconds_chart = None
    if by_seconds:
        xs = [p.x for s in by_seconds for p in s.points]
        seconds_chart = line_chart(by_seconds, chart_id=f"curve-seconds-{base}",
                                   title=f"{name}: {figure} vs compute", x_label="seconds per prompt",
                                   y_label=figure, log_base=_log_base(xs, 10, 10))
    return ScalingFigures(entry.slug, f"scaling-{base}", n_chart, seconds_chart)
