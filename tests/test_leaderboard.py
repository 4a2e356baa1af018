"""The static leaderboard site: pages, escaping, SVG, thumbnails, links, JSON, determinism, serve.

Entries are built directly from `harness.submissions.model` dataclasses (no loader needed), with
small PNGs written to a temporary folder; the site is built once per module and inspected.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, replace
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from helpers import REPORTED_MANIFEST

from harness.submissions.model import (
    TASKS,
    CurvePoint,
    Entry,
    Evaluator,
    ImageRecord,
    Manifest,
    PreparedCheckpoint,
    Protocol,
    Source,
    System,
    TrainingRecord,
    Verification,
)
from leaderboard.build import MARKER, SiteError, build_site

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
HOSTILE_VERIFIER = "<b>v</b>&"
PAPER_URL = "https://arxiv.org/abs/2501.13926"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


# ---------------------------------------------------------------------------------------------
# a tiny DOM (html.parser; void elements closed at once), enough to query tags and attributes


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)

    def iter(self, tag: str | None = None):
        for child in self.children:
            if tag is None or child.tag == tag:
                yield child
            yield from child.iter(tag)

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find_all(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        return [n for n in self.iter(tag) if (cls is None or cls in n.classes())
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def by_id(self, id_: str) -> Node:
        found = [n for n in self.iter() if n.attrs.get("id") == id_]
        assert len(found) == 1, f"id {id_!r} found {len(found)} times"
        return found[0]

    def all_text(self) -> str:
        return "".join(self.text) + "".join(c.all_text() for c in self.children)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].text.append(data)


def parse(path: Path) -> Node:
    builder = _Builder()
    builder.feed(path.read_text(encoding="utf-8"))
    builder.close()
    assert builder.stack == [builder.root], f"{path}: unclosed {[n.tag for n in builder.stack[1:]]}"
    return builder.root


# ---------------------------------------------------------------------------------------------
# fixtures: two reported entries, three reproduced (two on the same prompts), one bad slug


def _png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format="PNG")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(name: str, kind: str, backend: str, verifiers: tuple[str, ...] = (), n: int = 1,
              link: str | None = None, sources: tuple[Source, ...] = ()) -> Manifest:
    return Manifest(
        name=name, authors=("A. Author", "B. Author"), link=link, description=f"About {name}.", kind=kind,
        system=System(generator="show-o", strategy="best-of-n" if n > 1 else "none", verifiers=verifiers, n=n,
                      alignment="none", reward_guidance="none"),
        evaluator=Evaluator(backend=backend, settings={"threshold": 0.3}),
        protocol=Protocol(images_per_prompt=4, seed=0, resolution=96, prompt_rewriting=False),
        sources=sources, scores=None, export="export.jsonl" if kind == "reproduced" else None,
    )


def _reported(slug: str, name: str, scores: dict[str, float], link: str | None) -> Entry:
    source = Source(citation="Guo et al. (2025)", table="Table 3", page=7, url=PAPER_URL)
    return Entry(slug=slug, folder=Path("/nonexistent") / slug, manifest=_manifest(name, "reported", "mmdet",
                 link=link, sources=(source,)), scores=scores, intervals=None, images=(), curves={},
                 prompt_correct=None)


def _reproduced(root: Path, slug: str, name: str, shift: float, prompts: range, seconds: bool) -> Entry:
    folder = root / slug
    verifiers = ("parm", HOSTILE_VERIFIER)
    records = []
    for p in prompts:
        tag = TASKS[p % len(TASKS)]
        for k in range(2):
            colour = (p * 20 % 256, k * 100, int(shift * 100))
            rel = f"images/{p}-{k}.png"
            if p == prompts[0] and k == 1:
                image, sha = None, hashlib.sha256(f"{slug}{p}{k}".encode()).hexdigest()  # not shipped
            elif p == prompts[0] and k == 0:
                # A smaller copy is shipped: its sha256 is not the candidate's; boxes stay in 96 px.
                _png(folder / rel, (48, 48), colour)
                image, sha = rel, hashlib.sha256(f"orig{slug}{p}{k}".encode()).hexdigest()
            else:
                image, sha = rel, _png(folder / rel, (96, 72), colour)
            detections = {"cup": [{"box": [4.0, 6.0, 50.0, 40.0], "score": 0.93}],
                          HOSTILE: [{"box": [10, 10, 30, 30], "score": 0.5, "color": "red"}]} if k == 0 else {}
            records.append(ImageRecord(
                prompt_index=p, tag=tag, prompt=f"a photo of thing {p}", sample_index=k, sha256=sha, image=image,
                correct=(p + k) % 2 == 0, reason="" if (p + k) % 2 == 0 else f"expected cup, found {HOSTILE}",
                detections=detections, scores={"parm": 0.1 * k + shift, HOSTILE_VERIFIER: 0.5 - 0.1 * k},
            ))
    base = 0.5 + shift
    scores = {t: round(base + 0.01 * i, 4) for i, t in enumerate(TASKS)}
    scores["overall"] = sum(scores[t] for t in TASKS) / len(TASKS)
    intervals = {k: (v - 0.03, v + 0.03) for k, v in scores.items()}
    curves = {
        name_: tuple(CurvePoint(n=n, overall=base + 0.02 * n + off, low=base + 0.02 * n + off - 0.05,
                                high=base + 0.02 * n + off + 0.05, tasks={}, seconds=2.0 * n if seconds else None)
                     for n in (1, 2))
        for name_, off in (("parm", 0.0), (HOSTILE_VERIFIER, -0.01), ("random", -0.02), ("oracle", 0.1))
    }
    prompt_correct = {p: float((p + int(shift * 10)) % 2) for p in prompts}
    (folder / "export.jsonl").parent.mkdir(parents=True, exist_ok=True)
    header = {"format": "stepwise-export", "version": 1, "run_id": "f" * 64,
              "suite": {"name": "geneval", "hash": "e" * 64, "prompts": len(prompts)},
              "generator": {"name": "showo", "package": "stepwise-bench", "version": "0.1.0", "params": {}},
              "seed": 0, "evaluator": {"backend": "hf", "settings_hash": "d" * 64, "settings": {}},
              "verifiers": {v: "c" * 64 for v in verifiers}, "stepwise_version": "0.1.0"}
    (folder / "export.jsonl").write_text(json.dumps(header) + "\n", encoding="utf-8")
    manifest = _manifest(name, "reproduced", "hf", verifiers=verifiers, n=2)
    return Entry(slug=slug, folder=folder, manifest=manifest, scores=scores, intervals=intervals,
                 images=tuple(records), curves=curves, prompt_correct=prompt_correct)


CHECKS = ("detections", "verdicts", "images", "scores")
RECHECKED = Verification(level="rechecked", checks=CHECKS, images=(20, 24),
                         scores={"parm": (20, 24), HOSTILE_VERIFIER: (20, 24)}, seed=7, tolerance=0.02)
NOT_RECHECKED = Verification(level="consistent", checks=CHECKS, unranged=(HOSTILE_VERIFIER,), images=(0, 12),
                             scores={"parm": (0, 12), HOSTILE_VERIFIER: (0, 12)}, seed=7,
                             missing=(f"evaluator (hf): detector 'tiny' is not in the --models folders {HOSTILE}",))


def make_entries(root: Path) -> list[Entry]:
    full = {t: 0.5 + 0.05 * i for i, t in enumerate(TASKS)}
    full["overall"] = sum(full.values()) / len(TASKS)
    return [
        _reported("hostile", HOSTILE, full, link="javascript:alert(3)"),
        _reported("partial", "Partial row", {"single_object": 0.98, "counting": 0.5}, link=PAPER_URL),
        replace(_reproduced(root, "run-a", "Run A", 0.1, range(12), seconds=True), verification=RECHECKED),
        replace(_reproduced(root, "run-b", "Run B", 0.2, range(12), seconds=False), verification=RECHECKED),
        replace(_reproduced(root, "run-c", "Run C", 0.0, range(6), seconds=True), verification=NOT_RECHECKED),
        replace(_reported("bad", "Bad slug", full, link=None), slug="../escape"),
    ]


@pytest.fixture(scope="module")
def entries(tmp_path_factory: pytest.TempPathFactory) -> list[Entry]:
    return make_entries(tmp_path_factory.mktemp("submissions"))


@pytest.fixture(scope="module")
def site(entries: list[Entry], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "site"
    report = build_site(entries, out)
    assert report.entries == 5
    assert any("../escape" in p for p in report.problems)
    return out


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


# ---------------------------------------------------------------------------------------------
# files and tables


def test_every_page_and_asset_is_written(site: Path) -> None:
    slugs = ["hostile", "partial", "run-a", "run-b", "run-c"]
    expected = ["index.html", "scaling.html", "compare.html", "leaderboard.json", MARKER,
                "static/site.css", "static/sort.js", "static/compare.js",
                *(f"entry/{s}.html" for s in slugs),
                *(f"compare/{a}--{b}.html" for i, a in enumerate(slugs) for b in slugs[i + 1:])]
    for name in expected:
        assert (site / name).is_file(), name
    assert not (site / "entry" / "escape.html").exists()
    assert not site.with_name("site.partial").exists()
    assert not any("escape" in p.name for p in site.rglob("*"))


def test_index_has_one_table_per_board_and_backend_with_ranked_rows_and_badges(site: Path) -> None:
    doc = parse(site / "index.html")
    boards = [b.attrs["data-board"] for b in doc.find_all("section", "board")]
    assert boards == ["rechecked", "unverified", "reported"]  # the ranked table first
    mmdet, hf = doc.by_id("reported-mmdet"), doc.by_id("rechecked-hf")
    # "partial" has no overall score: it goes last.
    assert [r.attrs["data-slug"] for r in mmdet.find_all("tr", "entry-row")] == ["hostile", "partial"]
    rows = hf.find_all("tr", "entry-row")
    assert [r.attrs["data-slug"] for r in rows] == ["run-b", "run-a"]  # only re-checked entries are ranked here
    assert [r.attrs["data-rank"] for r in rows] == ["1", "2"]
    apart = doc.by_id("unverified-hf").find_all("tr", "entry-row")
    assert [(r.attrs["data-slug"], r.attrs["data-level"]) for r in apart] == [("run-c", "consistent")]
    assert apart[0].find_all("span", "verify-consistent")[0].all_text() == "not re-checked"
    for row in rows:
        badge = row.find_all("span", "badge")
        assert len(badge) == 2 and badge[0].classes() >= {"kind-reproduced"}
        assert badge[1].classes() >= {"verify-rechecked"} and badge[1].all_text() == "re-checked"
        overall = row.find_all("td", "col-overall")[0]
        assert re.fullmatch(r"\d\.\d\d \[\d\.\d\d, \d\.\d\d\]", overall.all_text()), overall.all_text()
        link = row.find_all("a", "entry-link")[0].attrs["href"]
        assert link == f"entry/{row.attrs['data-slug']}.html"
    assert not doc.by_id("board-reported").find_all("span", "verify-rechecked")
    partial = mmdet.find_all("tr", "entry-row", data_slug="partial")[0]
    assert partial.find_all("span", "badge")[0].attrs["data-kind"] == "reported"
    assert partial.find_all("td", "col-colors")[0].all_text() == "—"
    assert partial.find_all("td", "col-colors")[0].attrs["data-value"] == ""
    assert "recomputed" in doc.by_id("provenance-note").all_text()


def test_tables_carry_sorting_attributes(site: Path) -> None:
    doc = parse(site / "index.html")
    for table in doc.find_all("table", "leaderboard"):
        assert (table.attrs["data-sort-key"], table.attrs["data-sort-dir"]) == ("overall", "descending")
        heads = {th.attrs["data-key"]: th for th in table.find_all("th") if "data-key" in th.attrs}
        assert list(heads) == ["rank", "name", "kind", "generator", "strategy", "verifiers", "n", "alignment",
                               "overall", *TASKS]
        assert all(th.attrs["data-sort"] in ("number", "text") for th in heads.values())
        assert all(th.find_all("button", "sort-button") for th in heads.values())
        assert heads["overall"].attrs["aria-sort"] == "descending"
        for row in table.find_all("tr", "entry-row"):
            cells = row.find_all("td")
            assert len(cells) == len(heads)
            for th, td in zip(heads.values(), cells, strict=True):
                if th.attrs["data-sort"] == "number" and td.attrs["data-value"]:
                    float(td.attrs["data-value"])
    scripts = [s.attrs.get("src") for s in doc.find_all("script")]
    assert scripts == ["static/sort.js"]


# ---------------------------------------------------------------------------------------------
# escaping


def test_hostile_text_is_escaped_everywhere(site: Path) -> None:
    seen_in = []
    for page in pages(site):
        raw = page.read_text(encoding="utf-8")
        assert "<script>alert" not in raw and "<img src=x" not in raw and "<b>v</b>" not in raw, page
        assert 'href="javascript' not in raw.lower(), page
        # The only scripts are the site's own files.
        for script in parse(page).find_all("script"):
            assert script.attrs.get("src", "").endswith(("static/sort.js", "static/compare.js")), page
            assert not script.all_text().strip()
        if "&lt;script&gt;alert(1)&lt;/script&gt;" in raw:
            seen_in.append(page.relative_to(site).as_posix())
    for must in ("index.html", "compare.html", "entry/hostile.html", "entry/run-a.html",
                 "compare/hostile--partial.html"):
        assert must in seen_in, must
    for page in ("scaling.html", "index.html", "entry/run-a.html"):  # the hostile verifier name
        assert "&lt;b&gt;v&lt;/b&gt;&amp;" in (site / page).read_text(encoding="utf-8"), page
    entry = parse(site / "entry" / "hostile.html")
    assert entry.by_id("entry-name").all_text() == HOSTILE
    # A javascript: link is shown as text, never as a link.
    assert entry.by_id("entry-link-text").all_text() == "javascript:alert(3)"


# ---------------------------------------------------------------------------------------------
# SVG, thumbnails, overlays


SVG = re.compile(r"<svg\b.*?</svg>", re.DOTALL)


def test_every_inline_svg_is_well_formed_xml(site: Path) -> None:
    count = 0
    for page in pages(site):
        for match in SVG.finditer(page.read_text(encoding="utf-8")):
            root = ET.fromstring(match.group(0))
            assert root.tag == "{http://www.w3.org/2000/svg}svg"
            count += 1
    assert count > 20
    scaling = (site / "scaling.html").read_text(encoding="utf-8")
    charts = {ET.fromstring(m.group(0)).get("id"): ET.fromstring(m.group(0)) for m in SVG.finditer(scaling)}
    assert set(charts) == {"curve-n-run-a", "curve-seconds-run-a", "curve-n-run-b", "curve-n-run-c",
                           "curve-seconds-run-c"}
    ns = {"s": "http://www.w3.org/2000/svg"}
    chart = charts["curve-n-run-a"]
    legend = [g.get("data-series") for g in chart.findall(".//s:g[@class='legend-item']", ns)]
    assert legend == [HOSTILE_VERIFIER, "parm", "random", "oracle"]  # verifiers sorted, then references
    assert len(chart.findall(".//s:polygon[@class='band']", ns)) == 4
    labels = [t.text for t in chart.findall(".//s:text", ns) if "axis-label" in (t.get("class") or "")]
    assert labels == ["n (candidates per prompt)", "GenEval overall"]
    assert parse(site / "scaling.html").find_all("p", "no-compute")  # run-b has no costs


@pytest.mark.parametrize("xs, log_base", [((1.0,), None), ((1.0, 2.0, 4.0, 8.0, 16.0, 20.0), 2),
                                          ((0.5, 40.0, 3000.0), 10), ((3.0, 3.0), None)])
def test_line_chart_edge_cases_stay_well_formed(xs: tuple[float, ...], log_base: int | None) -> None:
    from leaderboard.svg import Point, Series, line_chart

    flat = Series("flat", tuple(Point(x, 1.0, None, None) for x in xs))
    banded = Series(HOSTILE, tuple(Point(x, 0.0, 0.0, 0.1) for x in xs))
    svg = line_chart([flat, banded], chart_id="c", title=HOSTILE, x_label="x", y_label="y", log_base=log_base)
    root = ET.fromstring(str(svg))
    assert root.find("{http://www.w3.org/2000/svg}title").text == HOSTILE
    assert "NaN" not in svg and "inf" not in svg


def test_gallery_thumbnails_with_box_overlays(site: Path, entries: list[Entry]) -> None:
    from PIL import Image

    run_a = next(e for e in entries if e.slug == "run-a")
    doc = parse(site / "entry" / "run-a.html")
    figures = doc.find_all("figure", "candidate")
    assert len(figures) == len(run_a.images) == 24
    by_key = {(r.prompt_index, r.sample_index): r for r in run_a.images}
    for fig in figures:
        group = next(g for g in doc.find_all("div", "prompt-group") if fig in list(g.iter("figure")))
        record = by_key[(int(group.attrs["data-prompt-index"]), int(fig.attrs["data-sample-index"]))]
        assert fig.attrs["data-verdict"] == ("correct" if record.correct else "incorrect")
        assert fig.find_all("span", "verdict")[0].all_text() == fig.attrs["data-verdict"]
        assert fig.find_all("span", "reason")[0].all_text() == record.reason
        assert {li.attrs["data-verifier"] for li in fig.find_all("li")} == set(record.scores)
        if record.image is None:
            assert fig.find_all("div", "no-image")
            continue
        img = fig.find_all("img", "thumb-img")[0]
        thumb = (site / "entry" / img.attrs["src"]).resolve()
        assert thumb == (site / "img" / "thumb" / f"{record.sha256}.png").resolve()
        with Image.open(thumb) as im:
            assert max(im.size) <= 128
        full = fig.find_all("a", "full-link")[0].attrs["href"]
        assert (site / "entry" / full).resolve() == (site / "img" / f"{record.sha256}.png").resolve()
        overlay = fig.find_all("svg", "boxes")[0]
        boxes = overlay.find_all("g", "box")
        assert len(boxes) == sum(len(v) for v in record.detections.values())
        # Boxes are in the candidate's pixels; a shipped 48 px copy of a 96 px image says 96.
        expected = "0 0 96 96" if record.prompt_index == 0 else "0 0 96 72"
        assert overlay.attrs["viewbox"] == expected
        if boxes:
            assert {b.attrs["data-class"] for b in boxes} == {"cup", HOSTILE}
            assert "red " + HOSTILE + " 0.50" in overlay.all_text()
    assert (site / "img" / f"{by_key[(1, 0)].sha256}.png").read_bytes() == (
        run_a.folder / "images" / "1-0.png").read_bytes()


def test_entry_pages_show_configuration_provenance_and_bars(site: Path) -> None:
    reported = parse(site / "entry" / "partial.html")
    assert reported.by_id("entry").attrs["data-kind"] == "reported"
    provenance = reported.by_id("provenance").all_text()
    assert "Guo et al. (2025) — Table 3, page 7" in provenance and PAPER_URL in provenance
    assert reported.by_id("config-system").find_all("dd")[0].all_text() == "show-o"
    assert "threshold" in reported.by_id("config-evaluator").all_text()
    bars = {b.attrs["data-task"] for b in reported.by_id("scores").find_all("rect", "bar")}
    assert bars == {"single_object", "counting"}
    assert not reported.find_all("section", id="gallery")
    reproduced = parse(site / "entry" / "run-a.html")
    text = reproduced.by_id("provenance").all_text()
    assert "f" * 64 in text and "0.1.0" in text and "export.jsonl" in text
    assert reproduced.by_id("scaling-link").attrs["href"] == "../scaling.html#scaling-run-a"
    assert [d.attrs["data-tag"] for d in reproduced.find_all("details", "gallery-task")] == list(TASKS)


def test_a_prepared_entry_shows_its_alignment_block(site: Path, tmp_path: Path) -> None:
    """The checkpoint a run generated with (the export's `preparation`), escaped like everything else;
    entries without one have no block and `"preparation": null` in leaderboard.json."""
    assert not parse(site / "entry" / "run-a.html").find_all("section", id="alignment")
    assert all(e["preparation"] is None for e in json.loads((site / "leaderboard.json").read_text())["entries"])
    training = TrainingRecord(data_sha256="a" * 64, pairs=4, reward_prompts_sha256="b" * 64,
                              parameters={"beta": 0.1, "reward_verifier": HOSTILE, "reward_params": {"model": HOSTILE}},
                              parent={"model": HOSTILE, "model_files": {f"{HOSTILE}.bin": "c" * 64}},
                              steps_done=1, steps_total=2, finished=False)
    prepared = PreparedCheckpoint(strategy="dpo", settings_hash="d" * 64, checkpoint=HOSTILE,
                                  checkpoint_sha256="0123456789ab" + "e" * 52, training=training)
    entry = _reproduced(tmp_path / "subs", "run-p", "Run P", 0.1, range(6), seconds=True)
    entry = replace(entry, preparation=prepared,
                    manifest=replace(entry.manifest, system=replace(entry.manifest.system, alignment="dpo")))
    build_site([entry], tmp_path / "site")
    raw = (tmp_path / "site" / "entry" / "run-p.html").read_text(encoding="utf-8")
    assert "<script>alert" not in raw and "<img src=x" not in raw
    block = parse(tmp_path / "site" / "entry" / "run-p.html").by_id("alignment")
    assert (block.attrs["data-strategy"], block.attrs["data-checkpoint-sha256"]) == ("dpo", prepared.checkpoint_sha256)
    fields = dict(zip((dt.all_text() for dt in block.find_all("dt")), block.find_all("dd"), strict=True))
    (code,) = fields["Checkpoint sha256"].find_all("code", "sha256")
    assert code.all_text() == "0123456789ab…" and code.attrs["title"] == prepared.checkpoint_sha256
    assert fields["Training data sha256"].find_all("code")[0].attrs["title"] == "a" * 64
    assert fields["Reward prompts sha256"].find_all("code")[0].attrs["title"] == "b" * 64
    assert fields["Checkpoint"].all_text() == HOSTILE and fields["Parent model"].all_text() == HOSTILE
    assert fields["Reward guidance verifier"].all_text() == HOSTILE
    assert fields[f"Parent model file {HOSTILE}.bin"].find_all("code")[0].attrs["title"] == "c" * 64
    assert fields["Steps"].all_text() == "1 of 2 (not finished)" and fields["Training pairs"].all_text() == "4"
    (row,) = json.loads((tmp_path / "site" / "leaderboard.json").read_text())["entries"]
    assert row["preparation"]["checkpoint"] == HOSTILE and row["preparation"]["training"]["steps"] == {
        "done": 1, "total": 2}


# ---------------------------------------------------------------------------------------------
# links, JSON, compare pages


def _ids(path: Path, cache: dict[Path, set[str]]) -> set[str]:
    if path not in cache:
        cache[path] = {n.attrs["id"] for n in parse(path).iter() if "id" in n.attrs}
    return cache[path]


def test_every_link_is_relative_and_resolves(site: Path, entries: list[Entry]) -> None:
    allowed = {PAPER_URL}
    ids: dict[Path, set[str]] = {}
    checked = 0
    for page in pages(site):
        for node in parse(page).iter():
            for attr in ("href", "src"):
                if attr not in node.attrs:
                    continue
                url = node.attrs[attr]
                parts = urlsplit(url)
                if parts.scheme:
                    assert parts.scheme in ("http", "https") and url in allowed, (page, url)
                    continue
                assert not url.startswith("/") and not parts.netloc, (page, url)
                target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
                assert target.is_file() and target.is_relative_to(site.resolve()), (page, url)
                if parts.fragment:
                    assert parts.fragment in _ids(target, ids), (page, url)
                checked += 1
    assert checked > 100


def test_json_export(site: Path) -> None:
    raw = (site / "leaderboard.json").read_text(encoding="utf-8")
    assert "<" not in raw  # escaped as \u003c: safe even if pasted into a page
    data = json.loads(raw)
    assert data["tasks"] == list(TASKS)
    rows = {e["slug"]: e for e in data["entries"]}
    assert list(rows) == ["run-b", "run-a", "run-c", "hostile", "partial"]
    assert rows["hostile"]["name"] == HOSTILE
    assert rows["hostile"]["kind"] == "reported" and rows["hostile"]["backend"] == "mmdet"
    assert rows["hostile"]["sources"] == [{"citation": "Guo et al. (2025)", "table": "Table 3", "page": 7,
                                           "url": PAPER_URL}]
    assert rows["hostile"]["intervals"] is None
    assert rows["run-a"]["intervals"]["overall"][0] < rows["run-a"]["scores"]["overall"]
    assert rows["run-a"]["system"]["verifiers"] == ["parm", HOSTILE_VERIFIER]
    assert set(rows["partial"]["scores"]) == {"single_object", "counting"}
    assert rows["run-a"]["page"] == "entry/run-a.html"


def test_every_entry_says_what_was_checked(site: Path) -> None:
    """Entry pages and leaderboard.json carry each entry's verification level and what it covered."""
    rechecked = parse(site / "entry" / "run-a.html")
    section = rechecked.by_id("verification")
    assert section.attrs["data-level"] == "rechecked" and rechecked.by_id("entry").attrs["data-level"] == "rechecked"
    text = section.all_text()
    assert "Images re-judged20 of 24" in text and "Candidates re-scored by parm20 of 24" in text
    assert "Re-check seed7" in text and "Score tolerance0.02" in text
    assert rechecked.find_all("span", "verify-rechecked")
    apart = parse(site / "entry" / "run-c.html").by_id("verification")
    assert apart.attrs["data-level"] == "consistent"
    assert "not in the --models folders" in apart.all_text() and HOSTILE in apart.all_text()  # escaped text
    assert "no score_range declared" in apart.all_text()
    reported = parse(site / "entry" / "hostile.html").by_id("verification")
    assert reported.attrs["data-level"] == "reported" and "as published" in reported.all_text()
    rows = {e["slug"]: e for e in json.loads((site / "leaderboard.json").read_text(encoding="utf-8"))["entries"]}
    assert {slug: row["table"] for slug, row in rows.items()} == {
        "run-a": "rechecked", "run-b": "rechecked", "run-c": "unverified", "hostile": "reported", "partial": "reported"}
    assert rows["run-a"]["verification"]["images_rejudged"] == [20, 24]
    assert rows["run-a"]["verification"]["candidates_rescored"]["parm"] == [20, 24]
    assert rows["run-c"]["verification"]["level"] == "consistent" and rows["run-c"]["verification"]["missing"]
    assert rows["hostile"]["verification"]["level"] == "reported"


def test_compare_pages(site: Path, entries: list[Entry]) -> None:
    index = parse(site / "compare.html")
    paired = [(li.attrs["data-a"], li.attrs["data-b"]) for li in index.by_id("paired-list").find_all("li")]
    assert paired == [("run-a", "run-b")]  # run-c judged other prompts
    assert len(index.by_id("side-list").find_all("li")) == 9
    page = parse(site / "compare" / "run-a--run-b.html")
    assert page.by_id("comparison").attrs["data-paired"] == "true"
    p_value = float(page.by_id("compare-p-value").attrs["data-value"])
    assert 0 < p_value <= 1
    rows = {tr.attrs["data-task"]: tr for tr in page.by_id("compare-table").find_all("tr") if "data-task" in tr.attrs}
    a = next(e for e in entries if e.slug == "run-a").prompt_correct
    b = next(e for e in entries if e.slug == "run-b").prompt_correct
    assert a is not None and b is not None
    expected = sum(a[p] - b[p] for p in range(12) if p % 6 == 0) / 2  # single_object: prompts 0 and 6
    assert float(rows["single_object"].find_all("td", "col-diff")[0].attrs["data-value"]) == pytest.approx(expected)
    assert rows["overall"].find_all("td", "col-interval")[0].all_text().startswith("[")
    side = parse(site / "compare" / "hostile--partial.html")
    assert side.by_id("comparison").attrs["data-paired"] == "false"
    assert not side.find_all("p", id="compare-p-value")


# ---------------------------------------------------------------------------------------------
# determinism, atomicity, CLI


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rebuild_is_byte_identical(site: Path, entries: list[Entry], tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    build_site(entries, fresh)
    assert _tree(fresh) == _tree(site)
    build_site(entries, fresh)  # over itself: thumbnails reused, old site swapped out
    assert _tree(fresh) == _tree(site)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh"]


def test_refuses_to_replace_a_folder_that_is_not_a_site(entries: list[Entry], tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "precious.txt").write_text("keep me")
    with pytest.raises(SiteError, match="not a stepwise site"):
        build_site(entries[:1], tmp_path / "home")
    assert (tmp_path / "home" / "precious.txt").read_text() == "keep me"


def test_empty_site_builds(tmp_path: Path) -> None:
    report = build_site([], tmp_path / "site")
    assert report.entries == 0
    assert "No entries yet" in (tmp_path / "site" / "index.html").read_text(encoding="utf-8")


def test_big_pools_get_one_gallery_page_per_task(entries: list[Entry], tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import leaderboard.build

    monkeypatch.setattr(leaderboard.build, "GALLERY_INLINE_LIMIT", 10)
    out = tmp_path / "site"
    build_site([e for e in entries if e.slug == "run-a"], out)
    entry = parse(out / "entry" / "run-a.html")
    assert not entry.find_all("figure", "candidate")
    links = [a.attrs["href"] for a in entry.by_id("gallery-pages").find_all("a", "gallery-page-link")]
    assert links == [f"run-a/{t}.html" for t in TASKS]
    page = parse(out / "entry" / "run-a" / "counting.html")
    assert page.by_id("gallery-page").attrs["data-tag"] == "counting"
    assert len(page.find_all("figure", "candidate")) == 4  # prompts 2 and 8, two samples each
    img = page.find_all("img", "thumb-img")[0].attrs["src"]
    assert (out / "entry" / "run-a" / img).resolve().is_file()
    assert (out / "entry" / "run-a" / page.by_id("gallery-entry-link").attrs["href"]).resolve() == (
        out / "entry" / "run-a.html").resolve()




def test_build_command_skips_invalid_submissions(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import main

    root = tmp_path / "submissions"
    for slug, name in (("paper-a", "Paper A"), ("paper-b", "Paper B")):
        (root / slug).mkdir(parents=True)
        manifest = REPORTED_MANIFEST.replace('"Show-o + PARM, best-of-20"', f'"{name}"')
        (root / slug / "submission.toml").write_text(manifest, encoding="utf-8")
    (root / "broken").mkdir()
    (root / "broken" / "submission.toml").write_text('name = "x"\n', encoding="utf-8")
    (root / "README.md").write_text("not an entry")
    out = tmp_path / "site"
    runner = CliRunner()
    result = runner.invoke(main, ["leaderboard", "build", "--submissions", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "broken" in result.stderr and "paper-a" not in result.stderr
    assert "2 entries" in result.stdout
    rows = parse(out / "index.html").by_id("reported-mmdet").find_all("tr", "entry-row")
    assert [r.attrs["data-slug"] for r in rows] == ["paper-a", "paper-b"]  # tied overall: by name
    assert [r.attrs["data-rank"] for r in rows] == ["1", "1"]
    strict = runner.invoke(main, ["leaderboard", "build", "--submissions", str(root), "--out", str(out), "--strict"])
    assert strict.exit_code == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    refused = runner.invoke(main, ["leaderboard", "build", "--submissions", str(root), "--out", str(tmp_path / "mine")])
    assert refused.exit_code == 1 and "not a stepwise site" in refused.output


REPRODUCED_TOML = """\
name = "{name}"
authors = ["C. Author"]
description = "A run made here."
kind = "reproduced"

[system]
generator = "showo"
strategy = "best-of-n"
verifiers = ["parm"]
n = 2
alignment = "none"
reward_guidance = "none"

[evaluator]
backend = "hf"

[evaluator.settings]
threshold = 0.3
counting_threshold = 0.9
max_objects = 16
max_overlap = 1.0
position_threshold = 0.1

[protocol]
images_per_prompt = 2
prompt_rewriting = false
seed = 0

[export]
path = "export.jsonl"
"""


def _write_reproduced(folder: Path, name: str, flip: int) -> None:
    """A whole (85-prompt, per_task=1) GenEval run with 2 candidates per prompt; 3 images shipped. The
    verdicts are GenEval's rules applied to the detections, as the leaderboard's consistency check wants."""
    from harness.geneval.rescore import parse_detections
    from harness.geneval.rules import EvalOptions, evaluate
    from harness.prompts import geneval_suite
    from harness.store import content_hash
    from harness.submissions.export import ExportHeader, header_json, record_json

    suite = geneval_suite(per_task=1)
    options = EvalOptions()
    header = ExportHeader(
        run_id="a" * 64, suite="geneval", suite_hash=content_hash(suite), prompts=len(suite),
        generator={"name": "showo", "package": "stepwise-bench", "version": "0.1.0", "params": {}}, seed=0,
        evaluator_backend="hf", evaluator_settings_hash="b" * 64, evaluator_settings=options.to_dict(),
        verifiers={"parm": "c" * 64}, stepwise_version="0.1.0")
    lines = [json.dumps(header_json(header))]
    for p, sample in enumerate(suite):
        for k in range(2):
            image, sha = None, hashlib.sha256(f"{name}{p}{k}".encode()).hexdigest()
            if p < 3 and k == 0:
                image = f"images/{p}.png"
                sha = _png(folder / image, (64, 64), (p * 60, flip * 90, 10))
            detections = {"bench": [{"box": [1.0, 2.0, 30.0, 40.0], "score": 0.9}]} if (p + k + flip) % 3 else {}
            verdict = evaluate(sample, parse_detections(detections), options)
            record = ImageRecord(prompt_index=p, tag=sample["tag"], prompt=sample["prompt"], sample_index=k,
                                 sha256=sha, image=image, correct=verdict.correct, reason=verdict.reason,
                                 detections=detections, scores={"parm": 1 + ((p * (k + 1) + flip) % 5) / 4})
            lines.append(json.dumps(record_json(record, None)))
    (folder / "export.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "submission.toml").write_text(REPRODUCED_TOML.format(name=name), encoding="utf-8")


def test_loaded_reproduced_submissions_render(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import main

    root = tmp_path / "submissions"
    for slug, flip in (("run-x", 0), ("run-y", 1)):
        (root / slug).mkdir(parents=True)
        _write_reproduced(root / slug, slug.upper(), flip)
    out = tmp_path / "site"
    result = CliRunner().invoke(main, ["leaderboard", "build", "--submissions", str(root), "--out", str(out),
                                       "--strict"])
    assert result.exit_code == 0, result.output
    doc = parse(out / "entry" / "run-x.html")
    assert len(doc.find_all("figure", "candidate")) == 170
    assert len(doc.find_all("img", "thumb-img")) == 3
    assert len(doc.find_all("div", "prompt-group")) == 85
    assert "a" * 64 in doc.by_id("provenance").all_text()
    rows = parse(out / "index.html").by_id("unverified-hf").find_all("tr", "entry-row")  # no verifier settings
    assert {r.attrs["data-kind"] for r in rows} == {"reproduced"}
    assert "does not record its parameters" in doc.by_id("verification").all_text()
    assert parse(out / "compare" / "run-x--run-y.html").by_id("comparison").attrs["data-paired"] == "true"
    scaling = parse(out / "scaling.html")
    assert {s.attrs["data-slug"] for s in scaling.find_all("section", "scaling-entry")} == {"run-x", "run-y"}


def test_verifiers_page_recomputes_the_report(tmp_path: Path) -> None:
    """The Verifiers page of a reproduced entry shows `harness.analysis` on its export, deterministically.
    PARM's scores here (1..2) are survivors' 1 + P_ORM(yes), so they state a probability: a reliability
    diagram; the export has no step scores: no per-step section."""
    import numpy as np
    from click.testing import CliRunner

    from harness.analysis.report import analyze, pool_from_records
    from harness.cli import main
    from harness.submissions.load import load_entry

    root = tmp_path / "submissions"
    (root / "run-x").mkdir(parents=True)
    _write_reproduced(root / "run-x", "RUN-X", 0)
    pages = []
    for out in (tmp_path / "a", tmp_path / "b"):
        result = CliRunner().invoke(main, ["leaderboard", "build", "--submissions", str(root), "--out", str(out)])
        assert result.exit_code == 0, result.output
        pages.append((out / "verifiers" / "run-x.html").read_bytes())
    assert pages[0] == pages[1]  # same export, same bytes
    entry_page = parse(tmp_path / "a" / "entry" / "run-x.html")
    assert entry_page.by_id("verifiers-link").attrs["href"] == "../verifiers/run-x.html"
    doc = parse(tmp_path / "a" / "verifiers" / "run-x.html")
    assert doc.by_id("verifiers").attrs["data-slug"] == "run-x"
    [table] = doc.find_all("table", "verifier-table", data_verifier="parm")
    groups = {row.attrs["data-group"]: row for row in table.find_all("tr") if "data-group" in row.attrs}
    assert list(groups)[-1] == "overall" and len(groups) == 7
    entry = load_entry(root / "run-x")
    report = analyze(pool_from_records(entry.images), rng=np.random.default_rng(0), n_boot=1000)
    for group, row in groups.items():
        [cell] = row.find_all("td", "col-within_auroc")
        expected = report.verifiers["parm"].groups[group].within_auroc
        assert cell.attrs["data-value"] == ("" if expected is None else f"{expected:.6f}")
    assert len(doc.find_all("svg", "chart-reliability")) == 1 and not doc.find_all("section", id="steps")


def test_serve_answers_a_request(site: Path) -> None:
    code = "from harness.cli import main; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "leaderboard", "serve", "--out", str(site), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        with urllib.request.urlopen(f"http://127.0.0.1:{match.group(1)}/index.html", timeout=10) as response:
            assert response.status == 200
            assert b'id="rechecked-hf"' in response.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
