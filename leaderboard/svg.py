"""Inline SVG drawn in Python: category bars, scaling curves, detection boxes over thumbnails.

Every function returns `markupsafe.Markup`, built with `Markup.format`, which escapes each
argument: labels come from submissions (verifier names, detector classes) and must stay text.
Numbers are written with fixed precision so the same data gives the same bytes. The output is
well-formed XML (numeric character references only), so tests parse it with xml.etree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup

# Colour-blind-safe (Okabe-Ito) series colours, assigned in series order.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")


def _num(value: float) -> str:
    """A coordinate with two decimals, trailing zeros dropped: stable bytes, small files."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _tick_label(value: float) -> str:
    return f"{value:.6g}"


# ---------------------------------------------------------------------------------------------
# category bars


@dataclass(frozen=True)
class Bar:
    """One horizontal bar on a 0..1 scale; `low`/`high` draw an interval whisker when given."""

    key: str
    label: str
    value: float | None
    low: float | None = None
    high: float | None = None


def bar_chart(bars: Sequence[Bar], title: str, chart_id: str) -> Markup:
    """Horizontal bars for the per-category scores of one entry (missing values say so)."""
    label_w, plot_w, row_h, pad = 110.0, 300.0, 24.0, 8.0
    width = label_w + plot_w + 60.0
    height = pad * 2 + row_h * len(bars) + 18.0
    parts = [
        Markup('<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-bars" id="{id}" role="img" '
               'viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{title}</title>').format(
            id=chart_id, w=_num(width), h=_num(height), title=title)
    ]
    for i, bar in enumerate(bars):
        y = pad + i * row_h
        parts.append(Markup('<text class="bar-label" x="{x}" y="{y}" text-anchor="end">{label}</text>').format(
            x=_num(label_w - 6), y=_num(y + row_h * 0.65), label=bar.label))
        parts.append(Markup('<rect class="bar-track" x="{x}" y="{y}" width="{w}" height="{h}"/>').format(
            x=_num(label_w), y=_num(y + 4), w=_num(plot_w), h=_num(row_h - 8)))
        if bar.value is None:
            parts.append(Markup('<text class="bar-value" x="{x}" y="{y}">not reported</text>').format(
                x=_num(label_w + 4), y=_num(y + row_h * 0.65)))
            continue
        value = min(max(bar.value, 0.0), 1.0)
        parts.append(Markup('<rect class="bar" data-task="{key}" data-value="{v}" x="{x}" y="{y}" width="{w}" '
                            'height="{h}"><title>{label}: {v}</title></rect>').format(
            key=bar.key, v=f"{bar.value:.4f}", label=bar.label, x=_num(label_w), y=_num(y + 4),
            w=_num(plot_w * value), h=_num(row_h - 8)))
        if bar.low is not None and bar.high is not None:
            x1 = label_w + plot_w * min(max(bar.low, 0.0), 1.0)
            x2 = label_w + plot_w * min(max(bar.high, 0.0), 1.0)
            mid = y + row_h / 2
            parts.append(Markup('<path class="whisker" d="M{x1} {m}H{x2}M{x1} {t}V{b}M{x2} {t}V{b}"/>').format(
                x1=_num(x1), x2=_num(x2), m=_num(mid), t=_num(mid - 5), b=_num(mid + 5)))
        parts.append(Markup('<text class="bar-value" x="{x}" y="{y}">{v}</text>').format(
            x=_num(label_w + plot_w + 6), y=_num(y + row_h * 0.65), v=f"{bar.value:.2f}"))
    axis_y = pad + row_h * len(bars) + 14
    for tick in (0.0, 0.5, 1.0):
        parts.append(Markup('<text class="tick" x="{x}" y="{y}" text-anchor="middle">{t}</text>').format(
            x=_num(label_w + plot_w * tick), y=_num(axis_y), t=_tick_label(tick)))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


# ---------------------------------------------------------------------------------------------
# line charts with interval bands


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    low: float | None = None
    high: float | None = None


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[Point, ...]


def _linear_ticks(lo: float, hi: float, target: int = 5, min_step: float = 0.0) -> list[float]:
    """Round-number ticks (1, 2 or 5 times a power of ten, at least `min_step`) covering [lo, hi]."""
    span = hi - lo
    raw = max(span / target, min_step)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _log_ticks(lo: float, hi: float, base: int) -> list[float]:
    """Ticks for a log axis: powers of 2 for counts (n), 1-2-5 decades for seconds."""
    if base == 2:
        candidates = [2.0**k for k in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1)]
    else:
        decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        candidates = [m * 10.0**k for k in decades for m in (1.0, 2.0, 5.0)]
        inside = [c for c in candidates if lo * (1 - 1e-9) <= c <= hi * (1 + 1e-9)]
        if len(inside) > 7:
            candidates = [10.0**k for k in decades]
    ticks = [c for c in candidates if lo * (1 - 1e-9) <= c <= hi * (1 + 1e-9)]
    return ticks or [lo, hi]


def _y_range(series: Sequence[Series]) -> tuple[float, float]:
    values = [v for s in series for p in s.points for v in (p.y, p.low, p.high) if v is not None]
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.08, 0.01)
    return max(0.0, lo - pad), min(1.0, hi + pad)


def line_chart(
    series: Sequence[Series],
    *,
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    log_base: int | None = None,
    integer_x: bool = False,
) -> Markup:
    """Lines with shaded interval bands, axes with ticks and labels, and a legend below.

    log_base: None for a linear x axis, 2 or 10 for a logarithmic one (x values must be > 0).
    integer_x: x is a count (n): no ticks between whole numbers.
    """
    series = [s for s in series if s.points]
    if not series:
        raise ValueError("line_chart needs at least one series with points")
    left, right, top, plot_w, plot_h = 56.0, 16.0, 28.0, 420.0, 240.0
    legend_row = 18.0
    height = top + plot_h + 44.0 + legend_row * len(series)
    width = left + plot_w + right

    xs = [p.x for s in series for p in s.points]
    x_lo, x_hi = min(xs), max(xs)
    if log_base is not None and x_lo <= 0:
        raise ValueError("a logarithmic x axis needs positive x values")
    if x_hi == x_lo:
        x_lo, x_hi = (x_lo / 2, x_hi * 2) if log_base else (x_lo - 1, x_hi + 1)
    y_lo, y_hi = _y_range(series)
    if y_hi <= y_lo:
        y_lo, y_hi = max(0.0, y_lo - 0.05), min(1.0, y_hi + 0.05)

    def fx(x: float) -> float:
        if log_base is not None:
            return left + plot_w * (math.log(x) - math.log(x_lo)) / (math.log(x_hi) - math.log(x_lo))
        return left + plot_w * (x - x_lo) / (x_hi - x_lo)

    def fy(y: float) -> float:
        return top + plot_h * (1 - (y - y_lo) / (y_hi - y_lo))

    parts = [
        Markup('<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-lines" id="{id}" role="img" '
               'viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{title}</title>').format(
            id=chart_id, w=_num(width), h=_num(height), title=title),
        Markup('<rect class="plot-area" x="{x}" y="{y}" width="{w}" height="{h}"/>').format(
            x=_num(left), y=_num(top), w=_num(plot_w), h=_num(plot_h)),
    ]
    if log_base:
        x_ticks = _log_ticks(x_lo, x_hi, log_base)
    else:
        x_ticks = _linear_ticks(x_lo, x_hi, min_step=1.0 if integer_x else 0.0)
    for tick in x_ticks:
        x = fx(tick)
        parts.append(Markup('<path class="grid" d="M{x} {t}V{b}"/><text class="tick" x="{x}" y="{y}" '
                            'text-anchor="middle">{label}</text>').format(
            x=_num(x), t=_num(top), b=_num(top + plot_h), y=_num(top + plot_h + 14), label=_tick_label(tick)))
    for tick in _linear_ticks(y_lo, y_hi):
        y = fy(tick)
        parts.append(Markup('<path class="grid" d="M{l} {y}H{r}"/><text class="tick" x="{x}" y="{ty}" '
                            'text-anchor="end">{label}</text>').format(
            l=_num(left), r=_num(left + plot_w), y=_num(y), x=_num(left - 4), ty=_num(y + 4),
            label=_tick_label(tick)))
    parts.append(Markup('<text class="axis-label x-label" x="{x}" y="{y}" text-anchor="middle">{label}</text>').format(
        x=_num(left + plot_w / 2), y=_num(top + plot_h + 32), label=x_label))
    parts.append(Markup('<text class="axis-label y-label" x="{x}" y="{y}" text-anchor="middle" '
                        'transform="rotate(-90 {x} {y})">{label}</text>').format(
        x=_num(14), y=_num(top + plot_h / 2), label=y_label))

    for index, s in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        points = sorted(s.points, key=lambda p: p.x)
        parts.append(Markup('<g class="series" data-series="{label}">').format(label=s.label))
        banded = [p for p in points if p.low is not None and p.high is not None]
        if len(banded) >= 2:
            upper = " ".join(f"{_num(fx(p.x))},{_num(fy(p.high))}" for p in banded)  # type: ignore[arg-type]
            lower = " ".join(f"{_num(fx(p.x))},{_num(fy(p.low))}" for p in reversed(banded))  # type: ignore[arg-type]
            parts.append(Markup('<polygon class="band" fill="{c}" points="{pts}"/>').format(
                c=colour, pts=f"{upper} {lower}"))
        line = " ".join(f"{_num(fx(p.x))},{_num(fy(p.y))}" for p in points)
        parts.append(Markup('<polyline class="line" stroke="{c}" points="{pts}"/>').format(c=colour, pts=line))
        for p in points:
            interval = "" if p.low is None or p.high is None else f" [{p.low:.3f}, {p.high:.3f}]"
            parts.append(Markup('<circle class="point" fill="{c}" cx="{x}" cy="{y}" r="2.5">'
                                "<title>{label}: x={px}, {py:.3f}{iv}</title></circle>").format(
                c=colour, x=_num(fx(p.x)), y=_num(fy(p.y)), label=s.label, px=_tick_label(p.x), py=p.y, iv=interval))
        parts.append(Markup("</g>"))

    legend_top = top + plot_h + 44
    for index, s in enumerate(series):
        colour = PALETTE[index % len(PALETTE)]
        y = legend_top + index * legend_row
        parts.append(Markup('<g class="legend-item" data-series="{label}"><rect x="{x}" y="{y}" width="12" '
                            'height="12" fill="{c}"/><text x="{tx}" y="{ty}">{label}</text></g>').format(
            label=s.label, x=_num(left), y=_num(y), c=colour, tx=_num(left + 18), ty=_num(y + 10)))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


# ---------------------------------------------------------------------------------------------
# detection boxes over an image


@dataclass(frozen=True)
class Box:
    label: str  # the detector's class
    color: str | None  # the colour GenEval's CLIP step gave it, when stored
    x1: float
    y1: float
    x2: float
    y2: float
    score: float | None


def box_overlay(width: int, height: int, boxes: Sequence[Box]) -> Markup:
    """An SVG laid over a thumbnail, in the ORIGINAL image's pixel coordinates (its viewBox).

    The browser scales it with the thumbnail, so the same markup fits any display size;
    `vector-effect: non-scaling-stroke` keeps the outlines thin at every scale.
    """
    font = max(height / 11.0, 6.0)
    parts = [
        Markup('<svg xmlns="http://www.w3.org/2000/svg" class="boxes" viewBox="0 0 {w} {h}" '
               'preserveAspectRatio="none" aria-hidden="true">').format(w=width, h=height)
    ]
    for box in boxes:
        text = box.label if box.color is None else f"{box.color} {box.label}"
        text = text if box.score is None else f"{text} {box.score:.2f}"
        x1, y1 = min(box.x1, box.x2), min(box.y1, box.y2)
        w, h = abs(box.x2 - box.x1), abs(box.y2 - box.y1)
        # The label sits inside the box's top edge so it never leaves the image.
        parts.append(Markup(
            '<g class="box" data-class="{label}" data-score="{score}"><rect x="{x}" y="{y}" width="{w}" height="{h}"/>'
            '<text x="{tx}" y="{ty}" font-size="{fs}">{text}</text></g>').format(
            label=box.label, score="" if box.score is None else f"{box.score:.4f}", x=_num(x1), y=_num(y1),
            w=_num(w), h=_num(h), tx=_num(x1 + font * 0.2), ty=_num(min(y1 + font, height - 2)), fs=_num(font),
            text=text))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)


# ---------------------------------------------------------------------------------------------
# reliability diagrams


@dataclass(frozen=True)
class ReliabilityBin:
    low: float  # bin edges of the stated probability
    high: float
    confidence: float | None  # mean stated probability of the bin's candidates (None: empty bin)
    accuracy: float | None  # share of them judged correct
    count: int


def reliability_chart(bins: Sequence[ReliabilityBin], *, chart_id: str, title: str, ece: float | None) -> Markup:
    """A reliability diagram: per bin a bar of the share correct at the bin's mean stated probability,
    the diagonal (perfect calibration) behind, counts in each bar's title, ECE in the corner."""
    left, top, side = 44.0, 24.0, 220.0
    width, height = left + side + 16.0, top + side + 40.0

    def fx(p: float) -> float:
        return left + side * p

    def fy(p: float) -> float:
        return top + side * (1 - p)

    parts = [
        Markup('<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-reliability" id="{id}" role="img" '
               'viewBox="0 0 {w} {h}" width="{w}" height="{h}"><title>{title}</title>').format(
            id=chart_id, w=_num(width), h=_num(height), title=title),
        Markup('<rect class="plot-area" x="{x}" y="{y}" width="{s}" height="{s}"/>').format(
            x=_num(left), y=_num(top), s=_num(side)),
        Markup('<path class="diagonal" d="M{x0} {y0}L{x1} {y1}"/>').format(
            x0=_num(fx(0)), y0=_num(fy(0)), x1=_num(fx(1)), y1=_num(fy(1))),
    ]
    for tick in (0.0, 0.5, 1.0):
        parts.append(Markup('<text class="tick" x="{x}" y="{y}" text-anchor="middle">{t}</text>').format(
            x=_num(fx(tick)), y=_num(top + side + 14), t=_tick_label(tick)))
        parts.append(Markup('<text class="tick" x="{x}" y="{y}" text-anchor="end">{t}</text>').format(
            x=_num(left - 4), y=_num(fy(tick) + 4), t=_tick_label(tick)))
    for b in bins:
        if b.accuracy is None or b.confidence is None or not b.count:
            continue
        x, w = fx(b.low) + 1, side * (b.high - b.low) - 2
        parts.append(Markup('<rect class="reliability-bin" data-low="{lo}" data-high="{hi}" data-count="{n}" '
                            'data-accuracy="{acc}" data-confidence="{conf}" x="{x}" y="{y}" width="{w}" height="{h}">'
                            '<title>{lo}–{hi}: {n} candidates, stated {conf}, correct {acc}</title></rect>').format(
            lo=f"{b.low:.2f}", hi=f"{b.high:.2f}", n=b.count, acc=f"{b.accuracy:.3f}", conf=f"{b.confidence:.3f}",
            x=_num(x), y=_num(fy(b.accuracy)), w=_num(max(w, 1.0)), h=_num(side * b.accuracy)))
        parts.append(Markup('<circle class="point" cx="{x}" cy="{y}" r="2.5"/>').format(
            x=_num(fx(b.confidence)), y=_num(fy(b.accuracy))))
    parts.append(Markup('<text class="axis-label x-label" x="{x}" y="{y}" text-anchor="middle">stated probability'
                        '</text>').format(x=_num(left + side / 2), y=_num(top + side + 30)))
    parts.append(Markup('<text class="axis-label y-label" x="{x}" y="{y}" text-anchor="middle" '
                        'transform="rotate(-90 {x} {y})">share correct</text>').format(
        x=_num(12), y=_num(top + side / 2)))
    parts.append(Markup('<text class="ece" x="{x}" y="{y}">ECE {ece}</text>').format(
        x=_num(left + 6), y=_num(top + 14), ece="—" if ece is None else f"{ece:.3f}"))
    parts.append(Markup("</svg>"))
    return Markup("").join(parts)
