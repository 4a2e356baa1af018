"""Build the static leaderboard site from loaded submissions.

`build_site(entries, out)` writes, into `OUT.partial` and then swaps it for `OUT`:

    index.html                  one sortable table per evaluator backend
    scaling.html                best-of-n curves (score vs n, score vs seconds) of reproduced entries
    entry/<slug>.html           configuration, provenance, category bars, per-prompt gallery
    verifiers/<slug>.html       reproduced entries with verifier scores: how the verifiers judge the pool
    compare.html                pair picker and the list of every pair's page
    compare/<a>--<b>.html       one page per pair of entries, slugs in sorted order
    leaderboard.json            the tables as data
    img/<sha256>.png            candidate images, as shipped; img/thumb/<sha256>.png: 128 px thumbnails
    static/site.css, static/sort.js, static/compare.js
    .stepwise-site              marker: a later build may replace this folder (and no other)

The site makes no external request (no CDN, no web font), and every link is relative, so it
works from `file://` and any static host. Without JavaScript the tables are still in rank
order and the compare pages still linked. All submission text goes through Jinja2's
autoescape (templates never use `|safe`); SVG is built with `Markup.format`, which escapes
too. Manifest URLs are links only when http(s). Same entries in, same bytes out: nothing
depends on the clock, on dict order of the file system, or on thread completion order.

Stable hooks for browser tests (ids, classes, data attributes):

    every page      body[data-page=index|scaling|compare|entry|pair]; nav#site-nav a.nav-link[data-nav];
                    footer#site-footer; h1#page-title (index, scaling, compare, pair pages)
    index.html      p#provenance-note; section.board#board-<board>[data-board] for the boards that hold
                    entries, in order: rechecked (reproduced and re-checked: the ranked table), unverified
                    (reproduced, not re-checked), reported; in each, section.backend#<board>-<backend>
                    [data-backend][data-board];
                    table.leaderboard[data-backend][data-board][data-sort-key][data-sort-dir] (initially
                    "overall"/"descending"; JS adds class "sortable-ready");
                    thead th[data-key][data-sort=number|text][aria-sort] button.sort-button
                    (keys: rank name kind generator strategy verifiers n alignment overall
                    single_object two_object counting colors position color_attr);
                    tbody tr.entry-row[data-slug][data-kind][data-level][data-rank][data-order];
                    td.col-<key>[data-value] (scores: "0.630000", "" when missing);
                    a.entry-link; span.badge.kind-reported / .kind-reproduced [data-kind]; reproduced rows
                    also span.badge.verify-rechecked / .verify-consistent [data-level];
                    search entries: span.badge.search-entry[data-budget] and span.mark[data-mark]
                    (reads-metadata, oracle, prompt-rewriting) in td.col-kind;
    entry/<slug>    article#entry[data-slug][data-kind][data-level][data-backend]; h1#entry-name; #entry-link;
                    section#verification[data-level] (dl.fields: level, checks, images re-judged, candidates
                    re-scored per verifier, what was missing, seed, tolerance);
                    section#scores with svg.chart-bars#bars-<slug> (rect.bar[data-task][data-value])
                    and table#scores-table tr[data-task]; a#scaling-link; section#configuration
                    div.config-group#config-system/#config-evaluator/#config-protocol (dl.fields);
                    section#alignment[data-strategy][data-checkpoint-sha256] (prepared runs only:
                    dl.fields, hashes as code.sha256[title][data-value]); section#provenance;
                    section#gallery > details.gallery-task#gallery-<tag>
                    > div.prompt-group#prompt-<index>[data-prompt-index][data-tag] (span.prompt-text,
                    span.pick[data-value]) > figure.candidate.verdict-correct|.verdict-incorrect
                    [data-sha256][data-sample-index][data-verdict][data-rank] > div.thumb >
                    a.full-link > img.thumb-img, then svg.boxes > g.box[data-class][data-score];
                    figcaption span.verdict, span.reason, ul.verifier-scores li[data-verifier]
    verifiers/<slug>  article#verifiers[data-slug]; a#entry-back-link; section.verifier-section#verifier-<name>
                    [data-verifier] > table.verifier-table tr[data-group] (td.col-within_auroc, .col-pooled_auroc,
                    .col-average_precision, .col-ece, .col-miss_at_n, .col-regret_at_n [data-value]), then
                    svg.chart-reliability#reliability-<name> (rect.reliability-bin[data-count][data-accuracy]
                    [data-confidence]) for probability verifiers; section#steps svg.chart-lines#steps-<slug>
                    (verifiers with step scores); table#agreement-table tr[data-a][data-b]; the entry page links
                    it as a#verifiers-link
    entry/<slug>    (search entries) section#search (dl.fields) and, in each prompt-group, details.trace
                    [data-sample-index] > table.trace-paths tr.trace-path[data-path][data-fate][data-step]
                    (td.previews img.trace-preview[data-step][data-sha256]; ul.trace-scores li)
    scaling.html    section#search-scaling > section.search-figure#search-<key>[data-searches]:
                    svg.chart-compute (g.series, g.search-point[data-slug][data-x][data-y]);
                    section.scaling-entry#scaling-<slug>[data-slug]; svg.chart-lines#curve-n-<slug>,
                    #curve-seconds-<slug> (or p.no-compute); g.series[data-series] with
                    polygon.band, polyline.line, circle.point; g.legend-item[data-series]
    compare.html    form#compare-form (select#compare-a, select#compare-b, button#compare-go,
                    span#compare-message; JS adds class "compare-ready"); ul#paired-list and
                    ul#side-list of li.pair[data-a][data-b] > a.pair-link
    compare/<a>--<b>  article#comparison[data-a][data-b][data-paired=true|false]; #compare-note;
                    table#compare-table tr[data-task] (td.col-a, td.col-b, td.col-diff[data-value],
                    td.col-interval); p#compare-p-value[data-value] (paired only)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from harness import __version__
from harness.submissions.model import Entry
from harness.submissions.paths import PathProblem, confined
from leaderboard import search_view, summarize
from leaderboard.charts import category_bars, scaling_figures
from leaderboard.compare import all_pairs
from leaderboard.images import SiteImage, publish_images

PACKAGE_DIR = Path(__file__).resolve().parent
TEMPLATES = PACKAGE_DIR / "templates"
STATIC = PACKAGE_DIR / "static"
MARKER = ".stepwise-site"
# Candidates of one entry shown on its own page; more go to one gallery page per task.
# GenEval's protocol (553 prompts x 4 images = 2212) stays on the entry page.
GALLERY_INLINE_LIMIT = 2500
# A search entry's trace views show previews: past this many, each task's gallery gets its own page too.
TRACE_PREVIEWS_INLINE_LIMIT = 5000
# Slugs become file names and URL segments: ordinary characters only, never '/', '..' or a leading '.'.
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class SiteError(RuntimeError):
    """The site cannot be written where asked (e.g. OUT is a folder that is not a stepwise site)."""


@dataclass
class BuildReport:
    out: Path
    entries: int = 0
    pages: int = 0
    images: int = 0
    problems: list[str] = field(default_factory=list)


def environment() -> Environment:
    # Autoescape everything: every template is HTML and every value may come from a stranger.
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _usable(entries: Sequence[Entry]) -> tuple[list[Entry], list[str]]:
    """Entries whose slugs are safe file names, sorted by slug; duplicates and odd slugs are problems."""
    kept: dict[str, Entry] = {}
    problems = []
    for entry in sorted(entries, key=lambda e: (e.slug, str(e.folder))):
        if not _SLUG.fullmatch(entry.slug):
            problems.append(f"{entry.folder}: slug {entry.slug!r} is not a safe file name; entry skipped")
        elif entry.slug in kept:
            problems.append(f"{entry.folder}: slug {entry.slug!r} is used twice; entry skipped")
        else:
            kept[entry.slug] = entry
    return list(kept.values()), problems


def _image_sources(entries: Sequence[Entry]) -> tuple[dict[str, Path], list[str]]:
    """sha256 -> the first shipped file for it (entries by slug, records in export order; then the
    previews search entries' traces name)."""
    sources: dict[str, Path] = {}
    problems = []
    for entry in entries:
        for record in entry.images:
            if record.image is None or record.sha256 in sources:
                continue
            try:
                sources[record.sha256] = confined(entry.folder, record.image)
            except PathProblem as error:
                problems.append(f"{entry.folder}: image of prompt {record.prompt_index}: {error}")
    for entry in entries:
        for sha, relative in sorted((entry.search.previews if entry.search is not None else {}).items()):
            if sha not in sources:
                try:
                    sources[sha] = confined(entry.folder, relative)
                except PathProblem as error:  # pragma: no cover - the loader checked these paths
                    problems.append(f"{entry.folder}: preview {sha[:12]}…: {error}")
    return sources, problems


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", newline="\n")


class _Renderer:
    """Renders pages into the staging folder with the values every page shares."""

    def __init__(self, staging: Path, version: str) -> None:
        self.env = environment()
        self.staging = staging
        self.version = version
        self.pages = 0

    def page(self, template: str, path: str, page: str, **values: Any) -> None:
        root = "../" * path.count("/")
        shared = {"root": root, "page": page, "version": self.version, "score_keys": summarize.SCORE_KEYS,
                  "score_labels": summarize.SCORE_LABELS, "level_labels": summarize.LEVEL_LABELS}
        html = self.env.get_template(template).render(**{**shared, **values})  # an entry's own columns win
        _write(self.staging / path, html)
        self.pages += 1


def _pick_note(entry: Entry) -> str:
    system = entry.manifest.system
    what = "correctness" if entry.suite == "geneval" else "Soft-TIFA GM"
    if system.strategy == "best-of-n" and system.verifiers:
        return (f"“pick” is the expected {what} of the image that best-of-{system.n} by {system.verifiers[0]} "
                f"selects (exact over random {system.n}-subsets of the candidates; rank 1 = its top score).")
    return f"“pick” is the expected {what} of one sample (the mean over the prompt's candidates)."


def _render_entries(r: _Renderer, entries: Sequence[Entry], published: dict[str, SiteImage],
                    scaling_ids: dict[str, str]) -> None:
    for entry in entries:
        reproduced = entry.manifest.kind == "reproduced"
        traces = search_view.trace_views(entry, published) if entry.search is not None else None
        gallery = summarize.galleries(entry, published, traces) if reproduced else []
        selecting = entry.manifest.system.verifiers[0] if entry.manifest.system.verifiers else None
        # A big pool (e.g. 553 prompts x 80 candidates) would make one page of tens of MB:
        # past the limit, each task's gallery gets its own page, linked from the entry page.
        gallery_pages: dict[str, str] = {}
        previews = sum(len(p.previews) for task in gallery for group in task.prompts for t in group.traces
                       for p in t.paths)
        if len(entry.images) > GALLERY_INLINE_LIMIT or previews > TRACE_PREVIEWS_INLINE_LIMIT:
            for task in gallery:
                name = summarize.file_part(task.tag)
                gallery_pages[task.tag] = f"{quote(entry.slug, safe='')}/{name}.html"
                r.page("gallery.html", f"entry/{entry.slug}/{name}.html", "gallery", entry=entry, m=entry.manifest,
                       task=task, selecting=selecting, pick_note=_pick_note(entry), suite=summarize.suite_of(entry),
                       entry_href=f"../{quote(entry.slug, safe='')}.html")
        verifiers_href = _render_verifiers(r, entry) if reproduced else None
        r.page(
            "entry.html", summarize.entry_file(entry.slug), "entry",
            entry=entry, m=entry.manifest, link=summarize.safe_url(entry.manifest.link),
            cells=summarize.cells_of(entry), bars=category_bars(entry),
            configuration=summarize.configuration(entry), alignment=summarize.alignment(entry),
            provenance=summarize.provenance(entry, summarize.read_export_header(entry) if reproduced else None),
            gallery=gallery, gallery_pages=gallery_pages, selecting=selecting, pick_note=_pick_note(entry),
            has_scaling=entry.slug in scaling_ids, scaling_id=scaling_ids.get(entry.slug, ""),
            level=summarize.level_of(entry), verification=summarize.verification(entry),
            verifiers_href=verifiers_href,
            search=search_view.search_fields(entry), marks=search_view.marks(entry),
            score_keys=summarize.score_keys_of(entry), score_labels=summarize.score_labels_of(entry),
            suite=summarize.suite_of(entry),
        )


def _render_verifiers(r: _Renderer, entry: Entry) -> str | None:
    """The entry's Verifiers page (leaderboard.verifiers), when its pool has verifier scores; its href."""
    from leaderboard.verifiers import COLUMNS, verifier_page, verifiers_file

    page = verifier_page(entry)
    if page is None:
        return None
    r.page("verifiers.html", verifiers_file(entry.slug), "verifiers", entry=entry, m=entry.manifest, report=page,
           columns=COLUMNS, entry_href="../" + summarize.entry_href(entry.slug))
    return f"verifiers/{quote(entry.slug, safe='')}.html"


def _render_compare(r: _Renderer, entries: Sequence[Entry]) -> list[str]:
    comparisons = all_pairs(entries)
    seen: set[str] = set()
    kept = []
    problems = []
    for c in comparisons:
        # "a--b" is ambiguous when slugs hold "--" themselves; the first pair keeps the name.
        if c.name in seen:
            problems.append(f"compare page {c.name!r} would be written twice (slugs with '--'); skipped")
            continue
        seen.add(c.name)
        kept.append(c)
        r.page("compare.html", f"compare/{c.name}.html", "pair", c=c,
               href_a="../" + summarize.entry_href(c.a.slug), href_b="../" + summarize.entry_href(c.b.slug))
    by_name = sorted(entries, key=lambda e: (e.manifest.name.casefold(), e.slug))
    r.page("compare_index.html", "compare.html", "compare", entries=by_name,
           paired=[c for c in kept if c.paired], side=[c for c in kept if not c.paired],
           hrefs={c.name: f"compare/{quote(c.name, safe='')}.html" for c in kept})
    return problems


def _render(
    staging: Path, entries: list[Entry], published: dict[str, SiteImage], version: str
) -> tuple[int, list[str]]:
    r = _Renderer(staging, version)
    others = sorted({e.suite for e in entries} - {"geneval"})
    r.page("index.html", "index.html", "index", boards=summarize.boards(entries),
           other_suites=[summarize.view(name) for name in others])
    figures = [f for f in (scaling_figures(e) for e in entries if e.manifest.kind == "reproduced" and e.curves) if f]
    headers = {e.slug: summarize.read_export_header(e) for e in entries if e.manifest.kind == "reproduced"}
    search_figures = search_view.search_figures(entries, headers)
    r.page("scaling.html", "scaling.html", "scaling", figures=figures, search_figures=search_figures,
           hrefs={e.slug: summarize.entry_href(e.slug) for e in entries},
           names={e.slug: e.manifest.name for e in entries})
    scaling_ids = {f.slug: f.section_id for f in figures}
    scaling_ids.update({slug: f.section_id for f in search_figures for slug in f.searches})
    _render_entries(r, entries, published, scaling_ids)
    problems = _render_compare(r, entries)
    data = summarize.leaderboard_json(entries, version)
    text = json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)
    # '<', '>' and '&' occur only inside strings: as \u escapes the file stays the same JSON and is
    # inert even if someone pastes it into a page.
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    _write(staging / "leaderboard.json", text + "\n")
    return r.pages, problems


def _is_site(path: Path) -> bool:
    return (path / MARKER).is_file()


def _replaceable(path: Path) -> bool:
    """Missing, or a real folder this builder made (marked) or an empty one: safe to delete."""
    if not path.exists() and not path.is_symlink():
        return True
    return path.is_dir() and not path.is_symlink() and (_is_site(path) or not any(path.iterdir()))


def _refuse_unless_replaceable(path: Path) -> None:
    if not _replaceable(path):
        raise SiteError(f"{path} exists and is not a stepwise site; refusing to overwrite it")


def _remove(path: Path) -> None:
    _refuse_unless_replaceable(path)
    if path.exists():
        shutil.rmtree(path)


def _swap(staging: Path, out: Path) -> None:
    """Replace OUT by the finished staging folder; OUT is never seen half-written."""
    _refuse_unless_replaceable(out)
    old = out.with_name(out.name + ".old")
    _remove(old)
    if out.exists():
        out.rename(old)
    staging.rename(out)
    if old.exists():
        shutil.rmtree(old)


def build_site(entries: Sequence[Entry], out: Path, version: str = __version__) -> BuildReport:
    """Write the whole site for `entries` to `out` (atomically); returns counts and problems."""
    out = Path(os.path.abspath(out))  # "site/", "./site" and "a/../site" name one folder
    _refuse_unless_replaceable(out)
    staging = out.with_name(out.name + ".partial")
    _remove(staging)
    staging.mkdir(parents=True)
    (staging / MARKER).write_text("stepwise leaderboard site; `stepwise leaderboard build` replaces this folder\n",
                                  encoding="utf-8")

    usable, problems = _usable(entries)
    shutil.copytree(STATIC, staging / "static")
    sources, image_problems = _image_sources(usable)
    published, publish_problems = publish_images(sources, staging, previous=out if _is_site(out) else None)
    pages, render_problems = _render(staging, usable, published, version)
    _swap(staging, out)
    return BuildReport(out=out, entries=len(usable), pages=pages, images=len(published),
                       problems=problems + image_problems + publish_problems + render_problems)
