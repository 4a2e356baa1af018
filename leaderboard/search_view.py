"""What the site shows of search entries: marks, the search block, compute figures and trace views.

Search entries (`Entry.search`, loaded from a `stepwise-search-export`) are listed in the index with
their budget (n), marked when a plug-in read the benchmark's metadata (the fair protocol), when the
oracle selected (GenEval itself) and when prompts were rewritten; the scaling page plots them as
points with intervals against the best-of-n curves of the pool entries of the same generator
(name and parameters) and evaluator backend, on one NFE axis (n x total_steps for best-of-n); the
entry page shows their settings and compute and, per prompt, a trace view of every pick: its search's
paths, the step each was pruned or finished at, the previews the search saw and the scores it read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from harness.submissions.model import Entry
from leaderboard.images import SiteImage

__all__ = ["PickTrace", "SearchFigure", "TracePath", "marks", "search_fields", "search_figures", "search_json",
           "trace_views"]

MAX_TRACE_PREVIEWS = 24  # previews shown per path (a long trace keeps its last ones)


def marks(entry: Entry) -> tuple[str, ...]:
    """The fair-protocol marks of an entry: what its numbers relied on beyond images and prompts."""
    out = []
    if entry.search is not None and entry.search.reads_metadata:
        out.append("reads metadata")
    if "oracle" in entry.manifest.system.verifiers:
        out.append("oracle")
    if entry.manifest.protocol.prompt_rewriting:
        out.append("prompt rewriting")
    return tuple(out)


def search_fields(entry: Entry) -> list[Any] | None:
    """The search's settings and compute as labelled fields (None for other entries)."""
    from leaderboard.fields import Field, settings_text

    info = entry.search
    if info is None:
        return None
    return [
        Field("Search strategy", f"{info.strategy} ({info.package} {info.version})"),
        Field("Parameters", settings_text(info.params)),
        Field("Budget", f"{info.budget}: at most best-of-{info.budget}'s generator compute per sample "
                        f"({info.budget * info.total_steps} NFE)"),
        Field("Verifiers", ", ".join(sorted(info.verifiers)) or "none"),
        Field("Generator NFE per prompt", f"{info.nfe:.1f} (mean over picks; best-of-n costs n x {info.total_steps})"),
        Field("Seconds per prompt", f"{info.seconds:.4g} (generator {info.generator_seconds:.4g}, verifiers "
                                    f"{info.verifier_seconds:.4g})"),
        Field("Reads the benchmark's metadata", ", ".join(info.reads_metadata) or "no"),
        Field("Prompt rewriting", "yes" if info.prompt_rewriting else "no"),
        Field("Settings sha256", f"{info.settings_hash[:12]}…", full=info.settings_hash),
    ]


def search_json(entry: Entry) -> dict[str, Any] | None:
    info = entry.search
    if info is None:
        return None
    return {"strategy": info.strategy, "package": info.package, "version": info.version, "params": info.params,
            "settings_hash": info.settings_hash, "budget": info.budget, "samples": info.samples,
            "total_steps": info.total_steps, "verifiers": info.verifiers, "reads_metadata": list(info.reads_metadata),
            "prompt_rewriting": info.prompt_rewriting, "nfe_per_prompt": info.nfe, "seconds_per_prompt": info.seconds}


# ---------------------------------------------------------------------------------------------
# the scaling page


@dataclass(frozen=True)
class SearchFigure:
    key: str  # the group: generator and backend
    section_id: str
    title: str
    by_nfe: Markup
    by_seconds: Markup | None
    searches: tuple[str, ...]  # slugs of the search entries plotted
    pools: tuple[str, ...]  # slugs of the pool entries whose curves are drawn


def _generator_key(generator: Any) -> str:
    import json

    if not isinstance(generator, Mapping):
        return ""
    return json.dumps({"name": generator.get("name"), "params": generator.get("params")}, sort_keys=True)


def search_figures(entries: Sequence[Entry], headers: Mapping[str, dict[str, Any] | None]) -> list[SearchFigure]:
    """One figure per (generator, evaluator backend) that has search entries; `headers`: slug -> export header."""
    from harness.submissions.suites import view
    from leaderboard.charts import _curve_order
    from leaderboard.fields import html_id
    from leaderboard.search_charts import SearchPoint, compute_chart
    from leaderboard.svg import Point, Series

    groups: dict[tuple[str, str], list[Entry]] = {}
    for e in entries:
        if e.search is not None:
            groups.setdefault((_generator_key(e.search.generator), e.manifest.evaluator.backend), []).append(e)
    out: list[SearchFigure] = []
    for (generator, backend), searches in sorted(groups.items()):
        steps = searches[0].search.total_steps  # type: ignore[union-attr]
        pools = [e for e in entries if e.search is None and e.curves and e.manifest.evaluator.backend == backend
                 and _generator_key((headers.get(e.slug) or {}).get("generator")) == generator]
        curves, timed = [], []
        for pool in pools:
            for name in _curve_order(pool):
                label = f"{pool.slug}: {name}"
                points = pool.curves[name]
                curves.append(Series(label, tuple(Point(float(p.n * steps), p.overall, p.low, p.high) for p in points)))
                if all(p.seconds is not None and p.seconds > 0 for p in points):
                    timed.append(Series(label, tuple(Point(float(p.seconds), p.overall, p.low, p.high)  # type: ignore[arg-type]
                                                     for p in points)))
        low_high = [(e.intervals or {}).get("overall", (e.scores["overall"],) * 2) for e in searches]
        by_nfe = [SearchPoint(f"{e.slug} ({e.search.strategy}, B={e.search.budget})", e.slug,  # type: ignore[union-attr]
                              e.search.nfe, e.scores["overall"], lo, hi)  # type: ignore[union-attr]
                  for e, (lo, hi) in zip(searches, low_high, strict=True)]
        by_seconds = [SearchPoint(p.label, p.slug, e.search.seconds, p.y, p.low, p.high)  # type: ignore[union-attr]
                      for p, e in zip(by_nfe, searches, strict=True)]
        name = searches[0].manifest.system.generator
        key = html_id(f"{name}-{backend}")
        if any(f.key == key for f in out):  # one generator name with other parameters
            key = f"{key}-{len(out)}"
        title = f"{name} ({backend}): {view(searches[0].suite).figure} vs compute"
        nfe_chart = compute_chart(curves, by_nfe, chart_id=f"search-nfe-{key}", title=title,
                                  x_label="generator NFE per prompt (candidate-steps)")
        seconds_chart = None
        if timed and all(p.x > 0 for p in by_seconds):
            seconds_chart = compute_chart(timed, by_seconds, chart_id=f"search-seconds-{key}", title=title,
                                          x_label="seconds per prompt")
        out.append(SearchFigure(key, f"search-{key}", title, nfe_chart, seconds_chart,
                                tuple(e.slug for e in searches), tuple(e.slug for e in pools)))
    return out


# ---------------------------------------------------------------------------------------------
# the entry page's trace view


@dataclass(frozen=True)
class TracePath:
    path: str
    seed: int | None
    parent: str | None
    reached: int
    fate: str  # picked, finished, dropped, stopped
    fate_step: int
    previews: tuple[tuple[int, str, SiteImage | None], ...]  # (step, sha256, published image or None)
    scores: tuple[str, ...]  # "step k: verifier.method: result"


@dataclass(frozen=True)
class PickTrace:
    sample_index: int
    sha256: str
    nfe: int
    seconds: float
    paths: tuple[TracePath, ...]
    notes: tuple[str, ...]  # the strategy's own trace notes, as text


def _note_text(event: Mapping[str, Any]) -> str:
    from harness.search.trace import result_text

    fields = {k: v for k, v in event.items() if k not in ("event", "kind")}
    return f"{event.get('kind')}: {result_text(fields)}"


def trace_views(entry: Entry, published: Mapping[str, SiteImage]) -> dict[int, tuple[PickTrace, ...]]:
    """Per prompt index, the trace view of each of its picks (search entries only; {} otherwise)."""
    from harness.search.trace import trace_paths
    from harness.submissions.search_load import read_traces

    info = entry.search
    if info is None:
        return {}
    traces = read_traces(entry)
    out: dict[int, list[PickTrace]] = {}
    for pick in info.picks:
        events = traces.get((pick.prompt_index, pick.sample_index), [])
        paths = []
        for view in trace_paths(events):
            shown = view.previews[-MAX_TRACE_PREVIEWS:]
            paths.append(TracePath(view.path, view.seed, view.parent, view.reached, view.fate, view.fate_step,
                                   tuple((step, sha, published.get(sha)) for step, sha in shown),
                                   tuple(f"step {step}: {text}" if step is not None else text
                                         for step, text in view.scores)))
        notes = tuple(_note_text(e) for e in events if isinstance(e, Mapping) and e.get("event") == "note")[:50]
        sha = next((r.sha256 for r in entry.images if (r.prompt_index, r.sample_index) ==
                    (pick.prompt_index, pick.sample_index)), "")
        nfe = pick.ledger.get("generator_nfe", 0)
        seconds = pick.ledger.get("seconds", 0.0)
        out.setdefault(pick.prompt_index, []).append(PickTrace(
            pick.sample_index, sha, int(nfe) if isinstance(nfe, int | float) else 0,
            float(seconds) if isinstance(seconds, int | float) else 0.0, tuple(paths), notes))
    return {k: tuple(v) for k, v in out.items()}
