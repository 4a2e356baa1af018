"""Score vs compute with search entries: best-of-n curves as lines with bands, searches as points with bars.

The x axis is generator NFE per prompt (candidate-steps; logarithmic): a best-of-n point of a pool
entry sits at n x total_steps (every candidate runs every step), a search entry at the mean NFE its
ledger counted. With seconds on both sides, a second chart uses seconds per prompt. Built like
`leaderboard.svg.line_chart` (escaped `Markup.format`, fixed precision: same data, same bytes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

from leaderboard.svg import PALETTE, Series, _log_ticks, _num, _tick_label

__all__ = ["SearchPoint", "compute_chart"]


@dataclass(frozen=True)
class SearchPoint:
    label: str
    slug: str
    x: float
    y: float
    low: float
    high: float


def compute_chart(curves: Sequence[Series], points: Sequence[SearchPoint], *, chart_id: str, title: str,
                  x_label: str) -> Markup:
    """Lines (with interval bands) for `curves`, square points with interval bars for `points`; log x."""
    curves = [s for s in curves if s.points]
    points = [p for p in points if p.x > 0]
    if not curves and not points:
        raise ValueError("compute_chart needs a curve or a point")
    left, right, top, plot_w, plot_h, row = 56.0, 16.0, 28.0, 420.0, 240.0, 18.0
    height = top + plot_h + 44.0 + row * (len(curves) + len(points))
    xs = [p.x for s in curves for p in s.points if p.x > 0] + [p.x for p in points]
    ys = ([v for s in curves for p in s.points for v in (p.y, p.low, p.high) if v is not None]
          + [v for p in points for v in (p.y, p.low, p.high)])
    x_lo, x_hi = min(xs), max(xs)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo / 2, x_hi * 2
    x_lo, x_hi = x_lo / 1.25, x_hi * 1.25  # room for the end points' markers
    y_lo, y_hi = max(0.0, min(ys) - 0.05), min(1.0, max(ys) + 0.05)  # scores are in [0, 1]: never equal here

    def fx(x: float) -> float:
        return left + plot_w * (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo))

    def fy(y: float) -> float:
        return top + plot_h * (1 - (y - y_lo) / (y_hi - y_lo))

    parts = [
        Markup('<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-compute" id="{id}" role="img" '
               'viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{title}</title>').format(
            id=chart_id, w=_num(left + plot_w + right), h=_num(height), title=title),
        Markup('<rect class="plot-area" x="{x}" y="{y}" width="{w}" height="{h}"/>').format(
            x=_num(left), y=_num(top), w=_num(plot_w), h=_num(plot_h)),
    ]
    for tick in _log_ticks(x_lo, x_hi, 10):
        parts.append(Markup('<path class="grid" d="M{x} {t}V{b}"/><text class="tick" x="{x}" y="{y}" '
                            'text-anchor="middle">{label}</text>').format(
            x=_num(fx(tick)), t=_num(top), b=_num(top + plot_h), y=_num(top + plot_h + 14), label=_tick_label(tick)))
    step = 0.1 if y_hi - y_lo > 0.3 else 0.05 if y_hi - y_lo > 0.12 else 0.02
    tick = math.ceil(y_lo / step) * step
    while tick <= y_hi + 1e-9:
        parts.append(Markup('<path class="grid" d="M{l} {y}H{r}"/><text class="tick" x="{x}" y="{ty}" '
                            'text-anchor="end">{label}</text>').format(
            l=_num(left), r=_num(left + plot_w), y=_num(fy(tick)), x=_num(left - 4), ty=_num(fy(tick) + 4),
            label=_tick_label(round(tick, 6))))
        tick += step
    parts.append(Markup('<text class="axis-label x-label" x="{x}" y="{y}" text-anchor="middle">{label}</text>').format(
        x=_num(left + plot_w / 2), y=_num(top + plot_h + 32), label=x_label))
    parts.append(Markup('<text class="axis-label y-label" x="{x}" y="{y}" text-anchor="middle" '
                        'transform="rotate(-90 {x} {y})">GenEval overall</text>').format(x=_num(14),
                                                                                         y=_num(top + plot_h / 2)))
    legend: list[tuple[str, str, str]] = []  # (kind, label, colour)
    for index, s in enumerate(curves):
        colour = PALETTE[index % len(PALETTE)]
        pts = sorted((p for p in s.points if p.x > 0), key=lambda p: p.x)
        parts.append(Markup('<g class="series" data-series="{label}">').format(label=s.label))
        banded = [p for p in pts if p.low is not None and p.high is not None]
        if len(banded) >= 2:
            upper = " ".join(f"{_num(fx(p.x))},{_num(fy(p.high))}" for p in banded)  # type: ignore[arg-type]
            lower = " ".join(f"{_num(fx(p.x))},{_num(fy(p.low))}" for p in reversed(banded))  # type: ignore[arg-type]
            parts.append(Markup('<polygon class="band" fill="{c}" points="{pts}"/>').format(c=colour,
                                                                                           pts=f"{upper} {lower}"))
        line = " ".join(f"{_num(fx(p.x))},{_num(fy(p.y))}" for p in pts)
        parts.append(Markup('<polyline class="line" stroke="{c}" points="{pts}"/>').format(c=colour, pts=line))
        parts.append(Markup("</g>"))
        legend.append(("series", s.label, colour))
    for index, p in enumerate(points):
        colour = PALETTE[(len(curves) + index) % len(PALETTE)]
        x, y = fx(p.x), fy(p.y)
        parts.append(Markup(
            '<g class="search-point" data-slug="{slug}" data-series="{label}" data-x="{px}" data-y="{py}">'
            '<path class="interval" stroke="{c}" d="M{x} {y1}V{y2}M{xa} {y1}H{xb}M{xa} {y2}H{xb}"/>'
            '<rect class="marker" fill="{c}" x="{rx}" y="{ry}" width="7" height="7">'
            "<title>{label}: {px} , {py:.3f} [{lo:.3f}, {hi:.3f}]</title></rect></g>").format(
            slug=p.slug, label=p.label, px=_tick_label(p.x), py=p.y, lo=p.low, hi=p.high, c=colour, x=_num(x),
            y1=_num(fy(p.low)), y2=_num(fy(p.high)), xa=_num(x - 3), xb=_num(x + 3), rx=_num(x - 3.5),
            ry=_num(y - 3.5)))
        legend.append(("point", p.label, colour))
    legend_top = top + plot_h + 44
    for index, (kind, label, colour) in enumerate(legend):
        y = legend_top + index * row
        shape = (Markup('<rect x="{x}" y="{y}" width="12" height="12" fill="{c}"/>') if kind == "series" else
                 Markup('<rect x="{x}" y="{y}" width="9" height="9" fill="{c}" transform="translate(1.5 1.5)"/>'))
        parts.append(Markup('<g class="legend-item" data-kind="{k}" data-series="{label}">').format(k=kind, label=label)
                     + shape.format(x=_num(left), y=_num(y), c=colour)
                     + Markup('<text x="{tx}" y="{ty}">{label}</text></g>').format(tx=_num(left + 18), ty=_num(y + 10),
                                                                                label=label))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
