"""Entries in, plain view data out: everything the templates show, computed before rendering.

This is the only module that reads `harness.submissions.model`; the templates see the frozen
dataclasses below (HELM's summarize-then-render split, STYLE.md pattern 7). Values keep their
sortable number (`Cell.value`) apart from the text shown (`Cell.text`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from markupsafe import Markup

from harness.submissions.model import TASKS, Entry, ImageRecord, PreparedCheckpoint
from harness.submissions.suites import GENEVAL, SuiteView, view
from leaderboard.fields import Field, html_id, settings_text
from leaderboard.images import SiteImage
from leaderboard.search_view import marks, search_json
from leaderboard.svg import Box, box_overlay

# GenEval's columns (the reference suite's); an entry's own are its suite's (`suite_of`).
SCORE_KEYS: tuple[str, ...] = GENEVAL.keys
SCORE_LABELS: dict[str, str] = GENEVAL.labels


def suite_of(entry: Entry) -> SuiteView:
    """The suite an entry was judged on, as the site shows it (`harness.submissions.suites`)."""
    return view(entry.suite)


def score_keys_of(entry: Entry) -> tuple[str, ...]:
    return suite_of(entry).keys


def score_labels_of(entry: Entry) -> dict[str, str]:
    return suite_of(entry).labels


def css_key(key: str) -> str:
    """A score key as a class-name part: GenEval's as they are, "atoms=3" as "atoms-3"."""
    return key if re.fullmatch(r"[a-z0-9_]+", key) else html_id(key)


def score_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def safe_url(url: str | None) -> str | None:
    """The URL when it is http(s), else None: a manifest's `javascript:` link stays text."""
    if not url:
        return None
    parts = urlsplit(url.strip())
    return url.strip() if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def file_part(text: str) -> str:
    """`text` when it is already a plain file name part (GenEval's tags are), else its html_id."""
    return text if re.fullmatch(r"[a-z0-9_]{1,64}", text) else html_id(text)


def entry_href(slug: str) -> str:
    """Link to an entry page, relative to the site root."""
    return f"entry/{quote(slug, safe='')}.html"


def entry_file(slug: str) -> str:
    return f"entry/{slug}.html"


def compare_name(a: str, b: str) -> str:
    return f"{a}--{b}"


@dataclass(frozen=True)
class Cell:
    value: float | None
    low: float | None
    high: float | None

    @property
    def text(self) -> str:
        if self.value is None:
            return "—"
        if self.low is None or self.high is None:
            return score_text(self.value)
        return f"{self.value:.2f} [{self.low:.2f}, {self.high:.2f}]"

    @property
    def sort_value(self) -> str:
        return "" if self.value is None else f"{self.value:.6f}"


def cells_of(entry: Entry) -> dict[str, Cell]:
    intervals = entry.intervals or {}
    cells = {}
    for key in score_keys_of(entry):
        low, high = intervals.get(key, (None, None))
        cells[key] = Cell(value=entry.scores.get(key), low=low, high=high)
    return cells


@dataclass(frozen=True)
class Row:
    rank: int
    slug: str
    href: str
    name: str
    kind: str
    generator: str
    strategy: str
    verifiers: str
    n: int
    alignment: str
    cells: dict[str, Cell]
    level: str = "reported"  # the entry's verification level (`LEVEL_LABELS`)
    search: bool = False  # a search strategy's entry: n is its budget
    marks: tuple[str, ...] = ()  # fair-protocol marks (leaderboard.search_view.marks)


@dataclass(frozen=True)
class Table:
    backend: str
    section_id: str
    rows: tuple[Row, ...]
    board: str = "rechecked"
    shown: SuiteView = GENEVAL  # one table per suite and evaluator backend: never mixed

    @property
    def suite(self) -> str:
        return self.shown.name

    @property
    def suite_title(self) -> str:
        return self.shown.title

    @property
    def score_keys(self) -> tuple[str, ...]:
        return self.shown.keys

    @property
    def score_labels(self) -> dict[str, str]:
        return self.shown.labels

    @property
    def css_keys(self) -> dict[str, str]:
        return {key: css_key(key) for key in self.shown.keys}


# The index's three boards, in page order: which entries each holds, its heading and its note.
# Only re-checked reproduced entries are ranked against each other in the main one; entries that
# could not be re-checked with the models are shown apart, and numbers from papers in their own.
BOARDS: tuple[tuple[str, str, str], ...] = (
    ("rechecked", "Reproduced and re-checked",
     "Recomputed from run exports that passed every consistency check, with a random sample of their images "
     "re-judged by the recorded evaluator and re-scored by the recorded verifiers on the maintainers' machine."),
    ("unverified", "Reproduced, not re-checked",
     "Recomputed from run exports that passed every consistency check, but could not be re-judged and re-scored "
     "with the models (each entry page says what was missing). Not ranked with the re-checked entries."),
    ("reported", "Reported (numbers from papers)",
     "Typed from publications (each entry page cites its table); not recomputed here. Not ranked with the "
     "reproduced entries."),
)
LEVEL_LABELS: dict[str, str] = {"rechecked": "re-checked", "consistent": "not re-checked", "reported": "reported"}


def level_of(entry: Entry) -> str:
    """"reported", "rechecked" or "consistent" (a reproduced entry never re-checked counts as that)."""
    if entry.manifest.kind == "reported":
        return "reported"
    return entry.verification.level if entry.verification is not None else "consistent"


def board_of(entry: Entry) -> str:
    return {"reported": "reported", "rechecked": "rechecked"}.get(level_of(entry), "unverified")


def _alignment_text(entry: Entry) -> str:
    system = entry.manifest.system
    if system.reward_guidance not in ("", "none"):
        return f"{system.alignment} ({system.reward_guidance})"
    return system.alignment


def _order_key(entry: Entry) -> tuple[float, str, str]:
    overall = entry.scores.get("overall")
    # Entries without an overall score go last; ties keep a stable order by name, then slug.
    return (-(overall if overall is not None else float("-inf")), entry.manifest.name, entry.slug)


def ranked(entries: Sequence[Entry]) -> list[tuple[int, Entry]]:
    """Entries by overall score, best first, with competition ranks (1, 2, 2, 4)."""
    ordered = sorted(entries, key=_order_key)
    out: list[tuple[int, Entry]] = []
    for position, entry in enumerate(ordered):
        overall = entry.scores.get("overall")
        if out and overall == out[-1][1].scores.get("overall"):
            out.append((out[-1][0], entry))
        else:
            out.append((position + 1, entry))
    return out


def _suite_rank(name: str) -> tuple[int, str]:
    return (0 if name == GENEVAL.name else 1, name)  # GenEval's tables first, as before there were others


def tables(entries: Sequence[Entry]) -> list[Table]:
    """Per board (`BOARDS`, in order), one table per suite (GenEval first) and evaluator backend (sorted by
    name), rows by overall score with ranks within their table. Boards without entries have no table."""
    out = []
    for board, _title, _note in BOARDS:
        members = [e for e in entries if board_of(e) == board]
        for suite, backend in sorted({(e.suite, e.manifest.evaluator.backend) for e in members},
                                     key=lambda pair: (_suite_rank(pair[0]), pair[1])):
            rows = []
            shown = view(suite)
            for rank, entry in ranked([e for e in members
                                       if (e.suite, e.manifest.evaluator.backend) == (suite, backend)]):
                system = entry.manifest.system
                rows.append(Row(
                    rank=rank, slug=entry.slug, href=entry_href(entry.slug), name=entry.manifest.name,
                    kind=entry.manifest.kind, generator=system.generator, strategy=system.strategy,
                    verifiers=", ".join(system.verifiers) or "—", n=system.n, alignment=_alignment_text(entry),
                    cells=cells_of(entry), level=level_of(entry), search=entry.search is not None,
                    marks=marks(entry),
                ))
            section = f"{board}-{html_id(backend)}" if suite == GENEVAL.name else f"{board}-{suite}-{html_id(backend)}"
            out.append(Table(backend=backend, section_id=section, rows=tuple(rows), board=board, shown=shown))
    return out


@dataclass(frozen=True)
class Board:
    key: str
    title: str
    note: str
    tables: tuple[Table, ...]


def boards(entries: Sequence[Entry]) -> list[Board]:
    """The index's boards that hold entries, each with its tables."""
    all_tables = tables(entries)
    return [Board(key, title, note, tuple(t for t in all_tables if t.board == key))
            for key, title, note in BOARDS if any(t.board == key for t in all_tables)]


def verification(entry: Entry) -> list[Field]:
    """What was checked of an entry before its numbers are shown, for its page."""
    from harness.submissions.consistency import CHECKS

    level = level_of(entry)
    fields = [Field("Verification", LEVEL_LABELS[level])]
    if level == "reported":
        fields.append(Field("Checked", "numbers as published, with their sources; nothing recomputed here"))
        return fields
    v = entry.verification
    checks = ", ".join(v.checks) if v is not None else "none recorded"
    fields.append(Field("Consistency checks passed", checks if v is not None else "none"))
    if v is None:
        fields.append(Field("Re-check", "not run"))
        return fields
    if len(v.checks) < len(CHECKS):
        fields.append(Field("Consistency checks not run", ", ".join(n for n, _ in CHECKS if n not in v.checks)))
    if v.unranged:
        fields.append(Field("Score range not checked", ", ".join(v.unranged) + " (no score_range declared)"))
    k, n = v.images
    fields.append(Field("Images re-judged", f"{k} of {n}"))
    for name in sorted(v.scores):
        done, total = v.scores[name]
        fields.append(Field(f"Candidates re-scored by {name}", f"{done} of {total}"))
    for index, reason in enumerate(v.missing, start=1):
        fields.append(Field("Not re-checked" if len(v.missing) == 1 else f"Not re-checked ({index})", reason))
    if v.seed is not None:
        fields.append(Field("Re-check seed", str(v.seed)))
    if v.tolerance is not None:
        fields.append(Field("Score tolerance", f"{v.tolerance:g}"))
    return fields


def verification_json(entry: Entry) -> dict[str, Any]:
    """leaderboard.json's `verification` of an entry: its level and what was checked."""
    level = level_of(entry)
    v = entry.verification
    if level == "reported" or v is None:
        return {"level": level, "checks": [], "images_rejudged": None, "candidates_rescored": {}, "missing": [],
                "seed": None, "tolerance": None, "unranged": []}
    return {"level": level, "checks": list(v.checks), "images_rejudged": list(v.images),
            "candidates_rescored": {name: list(counts) for name, counts in sorted(v.scores.items())},
            "missing": list(v.missing), "seed": v.seed, "tolerance": v.tolerance, "unranged": list(v.unranged)}


# ---------------------------------------------------------------------------------------------
# entry pages


@dataclass(frozen=True)
class Candidate:
    record: ImageRecord
    verdict: str  # "correct" / "incorrect"
    rank: int  # 1 = highest score of the selecting verifier within its prompt (ties share)
    scores: tuple[tuple[str, str], ...]  # (verifier, formatted score), sorted by verifier
    image: SiteImage | None  # None when the export ships no image (or it could not be read)
    overlay: Markup | None  # the detection boxes, over the thumbnail


@dataclass(frozen=True)
class PromptGroup:
    prompt_index: int
    tag: str
    prompt: str
    selected: float | None  # expected correctness of the strategy's pick (Entry.prompt_correct)
    candidates: tuple[Candidate, ...]
    traces: tuple[Any, ...] = ()  # a search entry's picks' trace views (leaderboard.search_view.PickTrace)


@dataclass(frozen=True)
class TaskGallery:
    tag: str
    label: str
    prompts: tuple[PromptGroup, ...]


def configuration(entry: Entry) -> dict[str, list[Field]]:
    """The manifest's system, evaluator and protocol as labelled fields, in a fixed order."""
    m = entry.manifest
    yes_no = {True: "yes", False: "no"}
    return {
        "System": [
            Field("Generator", m.system.generator),
            Field("Strategy", m.system.strategy),
            Field("Verifiers", ", ".join(m.system.verifiers) or "none"),
            Field("n", str(m.system.n)),
            Field("Alignment", m.system.alignment),
            Field("Reward guidance", m.system.reward_guidance),
        ],
        "Evaluator": [
            Field("Backend", m.evaluator.backend),
            *[Field(key, settings_text(m.evaluator.settings[key])) for key in sorted(m.evaluator.settings)],
            *([] if m.evaluator.settings else [Field("Settings", "not stated")]),
        ],
        "Protocol": [
            Field("Images per prompt", str(m.protocol.images_per_prompt)),
            Field("Seed", "unknown" if m.protocol.seed is None else str(m.protocol.seed)),
            Field("Resolution", "unknown" if m.protocol.resolution is None else f"{m.protocol.resolution} px"),
            Field("Prompt rewriting", yes_no[m.protocol.prompt_rewriting]),
        ],
    }


def read_export_header(entry: Entry) -> dict[str, Any] | None:
    """The first line of a reproduced entry's export (run id, hashes, versions), or None.

    The loader has validated the export already; this reads the header again for display
    only, so anything unexpected just leaves the provenance shorter.
    """
    from harness.submissions.paths import PathProblem, confined

    if entry.manifest.export is None:
        return None
    try:
        path = confined(entry.folder, entry.manifest.export)
        with path.open(encoding="utf-8") as handle:
            header = json.loads(handle.readline(1 << 20))
    except (OSError, ValueError, PathProblem):
        return None
    return header if isinstance(header, dict) else None


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, dict) or key not in mapping:
            return None
        mapping = mapping[key]
    return mapping


def _header_fields(header: dict[str, Any]) -> list[Field]:
    generator = header.get("generator") if isinstance(header.get("generator"), dict) else {}
    verifiers = header.get("verifiers") if isinstance(header.get("verifiers"), dict) else {}
    suite = _get(header, "suite", "name")
    rows = [
        ("Run id", header.get("run_id")),
        ("Suite", None if suite is None else f"{suite} ({_get(header, 'suite', 'prompts')} prompts)"),
        ("Suite hash", _get(header, "suite", "hash")),
        ("Generator", " ".join(str(generator[k]) for k in ("name", "package", "version") if generator.get(k))),
        ("Generator params", settings_text(generator["params"]) if "params" in generator else None),
        ("Run seed", header.get("seed")),
        ("Evaluator settings hash", _get(header, "evaluator", "settings_hash")),
        *((f"Verifier {name} settings hash", verifiers[name]) for name in sorted(verifiers)),
        ("stepwise version", header.get("stepwise_version")),
    ]
    return [Field(label, str(value)) for label, value in rows if value not in (None, "")]


def provenance(entry: Entry, export_header: dict[str, Any] | None) -> list[Field]:
    """Where the numbers come from: cited sources (reported) or the export and its run (reproduced)."""
    m = entry.manifest
    fields: list[Field] = []
    for index, source in enumerate(m.sources, start=1):
        where = source.table if source.page is None else f"{source.table}, page {source.page}"
        prefix = f"Source {index}" if len(m.sources) > 1 else "Source"
        fields.append(Field(prefix, f"{source.citation} — {where}"))
        if source.url:
            fields.append(Field(f"{prefix} URL", source.url, safe_url(source.url)))
    if m.export is not None:
        fields.append(Field("Export", m.export))
    if export_header is not None:
        fields.extend(_header_fields(export_header))
    return fields


def _hash_field(label: str, digest: str) -> Field:
    return Field(label, f"{digest[:12]}…", full=digest)


def alignment(entry: Entry) -> list[Field] | None:
    """The checkpoint a reproduced entry's run generated with, when a strategy prepared it (the export
    header's `preparation`): strategy, weights sha256, training data, parent model, reward guidance,
    steps. None for every other entry."""
    prepared = entry.preparation
    if prepared is None:
        return None
    training = prepared.training
    fields = [
        Field("Strategy", prepared.strategy),
        _hash_field("Strategy settings sha256", prepared.settings_hash),
        Field("Checkpoint", prepared.checkpoint),
        _hash_field("Checkpoint sha256", prepared.checkpoint_sha256),
        _hash_field("Training data sha256", training.data_sha256),
    ]
    if training.pairs is not None:
        fields.append(Field("Training pairs", str(training.pairs)))
    if training.reward_prompts_sha256 is not None:
        fields.append(_hash_field("Reward prompts sha256", training.reward_prompts_sha256))
    parent = training.parent
    for key in sorted(k for k in parent if not k.endswith("_files")):
        label = "Parent model" if key == "model" else f"Parent {key}"
        fields.append(Field(label, "unknown" if parent[key] is None else str(parent[key])))
    for key in sorted(k for k in parent if k.endswith("_files")):
        which = key.removesuffix("_files")
        for name in sorted(parent[key]):
            fields.append(_hash_field(f"Parent {which} file {name}", parent[key][name]))
    fields += [
        Field("Reward guidance verifier", prepared.reward_verifier or "none"),
        Field("Steps", f"{training.steps_done} of {training.steps_total}"
                       f" ({'finished' if training.finished else 'not finished'})"),
        Field("Training parameters", settings_text(training.parameters)),
    ]
    return fields


def preparation_json(prepared: PreparedCheckpoint | None) -> dict[str, Any] | None:
    """leaderboard.json's `preparation` of an entry: the export header's object, or None."""
    from harness.submissions.export import preparation_json as header_object

    return None if prepared is None else header_object(prepared)


def boxes_of(record: ImageRecord) -> list[Box]:
    """GenEval's detections as boxes, by class name then detection order; malformed ones skipped."""
    out = []
    for label in sorted(record.detections):
        for detection in record.detections[label]:
            box = detection.get("box") if isinstance(detection, dict) else None
            if not isinstance(box, list | tuple) or len(box) != 4:
                continue
            if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
                continue
            score = detection.get("score")
            color = detection.get("color")
            out.append(Box(label, color if isinstance(color, str) and color else None, *(float(v) for v in box),
                           score=float(score) if isinstance(score, int | float) else None))
    return out


def _original_size(image: SiteImage, resolution: int | None) -> tuple[int, int]:
    """Pixel size of the candidate the detector saw: boxes are in its coordinates.

    An export may ship a smaller copy of the candidate (its sha256 then differs); the
    protocol's resolution (the long side) tells the original size, keeping the aspect ratio.
    """
    if image.original or resolution is None:
        return image.width, image.height
    scale = resolution / max(image.width, image.height)
    return round(image.width * scale), round(image.height * scale)


def galleries(entry: Entry, published: dict[str, SiteImage],
              traces: dict[int, tuple[Any, ...]] | None = None) -> list[TaskGallery]:
    """A reproduced entry's candidates grouped by task (GenEval order), then prompt, then sample
    (a search entry's: its picks, with their trace views from `traces`, by prompt index)."""
    selecting = entry.manifest.system.verifiers[0] if entry.manifest.system.verifiers else None
    by_prompt: dict[int, list[ImageRecord]] = {}
    for record in entry.images:
        by_prompt.setdefault(record.prompt_index, []).append(record)
    groups: dict[str, list[PromptGroup]] = {}
    for prompt_index in sorted(by_prompt):
        records = sorted(by_prompt[prompt_index], key=lambda r: r.sample_index)
        keys = [r.scores.get(selecting) if selecting else None for r in records]
        candidates = []
        for record, key in zip(records, keys, strict=True):
            rank = 1 + sum(1 for other in keys if other is not None and key is not None and other > key)
            image = published.get(record.sha256) if record.image is not None else None
            overlay = None
            if image is not None:
                overlay = box_overlay(*_original_size(image, entry.manifest.protocol.resolution), boxes_of(record))
            candidates.append(Candidate(
                record=record, verdict="correct" if record.correct else "incorrect",
                rank=rank if key is not None else 0,
                scores=tuple((v, f"{record.scores[v]:.4g}") for v in sorted(record.scores)),
                image=image, overlay=overlay,
            ))
        first = records[0]
        selected = None if entry.prompt_correct is None else entry.prompt_correct.get(prompt_index)
        groups.setdefault(first.tag, []).append(PromptGroup(
            prompt_index=prompt_index, tag=first.tag, prompt=first.prompt, selected=selected,
            candidates=tuple(candidates), traces=(traces or {}).get(prompt_index, ()),
        ))
    suite = suite_of(entry)
    return [TaskGallery(tag=t, label=suite.label(t), prompts=tuple(groups[t])) for t in suite.order(list(groups))]


# ---------------------------------------------------------------------------------------------
# JSON export


def entry_json(entry: Entry, rank: int) -> dict[str, Any]:
    m = entry.manifest
    keys = score_keys_of(entry)
    out = {
        "slug": entry.slug,
        "name": m.name,
        "kind": m.kind,
        "backend": m.evaluator.backend,
        "rank": rank,
        "authors": list(m.authors),
        "link": m.link,
        "system": {
            "generator": m.system.generator,
            "strategy": m.system.strategy,
            "verifiers": list(m.system.verifiers),
            "n": m.system.n,
            "alignment": m.system.alignment,
            "reward_guidance": m.system.reward_guidance,
        },
        "evaluator": {"backend": m.evaluator.backend, "settings": m.evaluator.settings},
        "protocol": {
            "images_per_prompt": m.protocol.images_per_prompt,
            "seed": m.protocol.seed,
            "resolution": m.protocol.resolution,
            "prompt_rewriting": m.protocol.prompt_rewriting,
        },
        "scores": {key: entry.scores[key] for key in keys if key in entry.scores},
        "intervals": None if entry.intervals is None else {
            key: list(entry.intervals[key]) for key in keys if key in entry.intervals
        },
        "sources": [
            {"citation": s.citation, "table": s.table, "page": s.page, "url": s.url} for s in m.sources
        ],
        "page": entry_href(entry.slug),
        "preparation": preparation_json(entry.preparation),
        "table": board_of(entry),
        "verification": verification_json(entry),
        "search": search_json(entry),
        "marks": list(marks(entry)),
    }
    if entry.suite != GENEVAL.name:  # GenEval's entries are as they were before other suites had entries
        out["suite"] = entry.suite
    return out


def leaderboard_json(entries: Sequence[Entry], version: str) -> dict[str, Any]:
    rows = []
    for table in tables(entries):
        by_slug = {e.slug: e for e in entries}
        rows.extend(entry_json(by_slug[row.slug], row.rank) for row in table.rows)
    data: dict[str, Any] = {"format": 1, "stepwise_version": version, "tasks": list(TASKS), "entries": rows}
    others = sorted({e.suite for e in entries if e.suite != GENEVAL.name})
    if others:  # each other suite's columns ("overall" is its headline figure)
        data["suites"] = {name: {"title": view(name).title, "overall": view(name).overall_label,
                                 "groups": list(view(name).groups)} for name in others}
    return data
