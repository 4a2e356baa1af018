"""`submission.toml`: parse and check a manifest into a `Manifest`, or say everything wrong with it.

    name = "Show-o + PARM, best-of-20"          # any text (the site escapes it), no control characters
    authors = ["Ziyu Guo", "Renrui Zhang"]
    link = "https://arxiv.org/abs/2501.13926"    # optional, http(s) only
    description = "..."
    kind = "reported"                            # or "reproduced"
    suite = "geneval"                            # optional: "geneval2" for GenEval 2 entries

    [system]                                     # every key required
    generator = "show-o"                         # labels: lower-case letters, digits, '.', '_', '+', '-'
    strategy = "best-of-n"                       # "none" for one sample per image
    verifiers = ["parm"]                         # [] without a verifier
    n = 20
    alignment = "none"                           # or e.g. "dpo", "iterative-dpo"
    reward_guidance = "none"                     # or e.g. "ft-orm", "parm"

    [evaluator]
    backend = "mmdet"
    settings = { threshold = 0.3 }               # optional: flat table of strings, numbers, booleans

    [protocol]
    images_per_prompt = 4
    prompt_rewriting = false
    seed = 0                                     # optional
    resolution = 512                             # optional

    [[source]]                                   # reported: one or more
    citation = "Guo et al., ... (2025)"
    table = "Table 3"
    page = 7                                     # optional
    url = "https://arxiv.org/abs/2501.13926"     # optional, http(s) only

    [scores]                                     # reported only: any of the six tasks, and/or overall
    single_object = 0.99                         # (GenEval 2: overall = Soft-TIFA GM, "atoms=3" .. "atoms=10")

    [export]                                     # reproduced only
    path = "export.jsonl"

Every problem is reported with its dotted field name; unknown keys are refused (typos).
"""

from __future__ import annotations

import json
import math
import re
import tomllib
import unicodedata
from pathlib import Path
from typing import Any

from harness.submissions.model import KINDS, TASKS, Evaluator, Manifest, Protocol, Source, System
from harness.submissions.suites import EXPORT_SUITES, view

__all__ = ["MAX_MANIFEST_BYTES", "SLUG", "check_text", "dump_manifest", "parse_manifest", "read_manifest"]

MAX_MANIFEST_BYTES = 64 * 1024
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
LABEL = re.compile(r"[a-z0-9][a-z0-9._+-]{0,63}")
URL = re.compile(r"https?://[^\s\"'<>`]+")
MAX_TEXT = {"name": 120, "description": 4000, "author": 120, "citation": 400, "table": 80, "url": 500,
            "setting": 500}
MAX_AUTHORS = 50
MAX_SOURCES = 10
MAX_SETTINGS = 50
# Bidirectional overrides reorder how text is displayed: a name could show as something else.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def check_text(value: str, *, max_length: int, multiline: bool = False) -> str | None:
    """Why `value` is not acceptable display text, or None. Tabs and newlines only if multiline."""
    if len(value) > max_length:
        return f"is longer than {max_length} characters ({len(value)})"
    allowed = {"\n", "\t"} if multiline else set()
    for ch in value:
        if (unicodedata.category(ch) == "Cc" and ch not in allowed) or ch in _BIDI:
            return f"contains the control character U+{ord(ch):04X}"
    return None


class _Table:
    """One TOML table's fields, read with their types checked; problems name the dotted field."""

    def __init__(self, data: dict[str, Any], prefix: str, problems: list[str]) -> None:
        self.data = data
        self.prefix = prefix
        self.problems = problems
        self.read: set[str] = set()

    def _name(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def raw(self, key: str, required: bool) -> Any:
        """The value as TOML gave it (None when absent), marking the key as known."""
        self.read.add(key)
        if key not in self.data:
            if required:
                self.problems.append(f"{self._name(key)}: missing (required)")
            return None
        return self.data[key]

    def text(self, key: str, *, required: bool = True, max_length: int = 120, multiline: bool = False,
             pattern: re.Pattern[str] | None = None, hint: str = "") -> str | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problems.append(f"{self._name(key)}: must be a string, got {_kind(value)}")
            return None
        why = check_text(value, max_length=max_length, multiline=multiline)
        if why is None and pattern is not None and not pattern.fullmatch(value):
            why = f"{value!r} is not {hint}"
        if why is not None:
            self.problems.append(f"{self._name(key)}: {why}")
            return None
        return value

    def label(self, key: str, *, required: bool = True) -> str | None:
        return self.text(key, required=required, max_length=64, pattern=LABEL,
                         hint="a label (lower-case letters, digits, '.', '_', '+', '-'; e.g. 'show-o')")

    def url(self, key: str) -> str | None:
        return self.text(key, required=False, max_length=MAX_TEXT["url"], pattern=URL,
                         hint="an http:// or https:// URL")

    def integer(self, key: str, *, required: bool = True, minimum: int = 0) -> int | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.problems.append(f"{self._name(key)}: must be an integer, got {_kind(value)}")
            return None
        if not minimum <= value < 2**63:
            self.problems.append(f"{self._name(key)}: must be >= {minimum}, got {value}")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.raw(key, True)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.problems.append(f"{self._name(key)}: must be true or false, got {_kind(value)}")
            return None
        return value

    def table(self, key: str, *, required: bool = True) -> _Table | None:
        value = self.raw(key, required)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.append(f"{self._name(key)}: must be a table ([{self._name(key)}]), got {_kind(value)}")
            return None
        return _Table(value, f"{self._name(key)}.", self.problems)

    def text_list(self, key: str, *, max_items: int, max_length: int,
                  pattern: re.Pattern[str] | None = None, hint: str = "") -> tuple[str, ...] | None:
        value = self.raw(key, True)
        if value is None:
            return None
        if not isinstance(value, list):
            self.problems.append(f"{self._name(key)}: must be a list of strings, got {_kind(value)}")
            return None
        if len(value) > max_items:
            self.problems.append(f"{self._name(key)}: at most {max_items} items, got {len(value)}")
            return None
        out = []
        for i, item in enumerate(value):
            where = f"{self._name(key)}[{i}]"
            if not isinstance(item, str) or not item:
                self.problems.append(f"{where}: must be a non-empty string, got {_kind(item)}")
                continue
            why = check_text(item, max_length=max_length)
            if why is None and pattern is not None and not pattern.fullmatch(item):
                why = f"{item!r} is not {hint}"
            if why is not None:
                self.problems.append(f"{where}: {why}")
                continue
            out.append(item)
        if len(set(out)) != len(out):
            self.problems.append(f"{self._name(key)}: an item appears twice")
        return tuple(out) if len(out) == len(value) else None

    def done(self) -> None:
        """Refuse the keys nobody read: in a hand-written manifest they are typos."""
        for key in sorted(set(self.data) - self.read):
            known = ", ".join(sorted(self.read))
            self.problems.append(f"{self._name(key)}: unknown key (known here: {known})")


def _kind(value: Any) -> str:
    names = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list",
             dict: "a table"}
    return names.get(type(value), type(value).__name__)


def read_manifest(path: Path) -> tuple[Manifest | None, list[str]]:
    """Read and check a manifest file: (Manifest or None, problems). Problems name the field."""
    try:
        size = path.stat().st_size
    except OSError as err:
        return None, [f"cannot read ({err.strerror})"]
    if size > MAX_MANIFEST_BYTES:
        return None, [f"is {size} bytes; a manifest may have at most {MAX_MANIFEST_BYTES}"]
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as err:
        return None, [f"cannot read ({err.strerror})"]
    except UnicodeDecodeError as err:
        return None, [f"is not UTF-8 text ({err.reason} at byte {err.start})"]
    return parse_manifest(text)


def parse_manifest(text: str) -> tuple[Manifest | None, list[str]]:
    """Parse TOML text into a checked Manifest: (Manifest, []) or (None, problems)."""
    if len(text.encode("utf-8")) > MAX_MANIFEST_BYTES:
        return None, [f"a manifest may have at most {MAX_MANIFEST_BYTES} bytes"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return None, [f"not valid TOML: {err}"]
    except RecursionError:
        return None, ["not valid TOML: nested too deeply to read"]
    problems: list[str] = []
    top = _Table(data, "", problems)
    name = top.text("name", max_length=MAX_TEXT["name"])
    if name is not None and not name.strip():
        problems.append("name: must not be blank")
    authors = top.text_list("authors", max_items=MAX_AUTHORS, max_length=MAX_TEXT["author"])
    link = top.url("link")
    description = top.text("description", max_length=MAX_TEXT["description"], multiline=True)
    kind = top.text("kind", max_length=20)
    if kind is not None and kind not in KINDS:
        problems.append(f"kind: must be one of {', '.join(map(repr, KINDS))}, got {kind!r}")
        kind = None
    suite = top.text("suite", max_length=20) if "suite" in data else "geneval"
    if suite is not None and suite not in EXPORT_SUITES:
        problems.append(f"suite: must be one of {', '.join(map(repr, EXPORT_SUITES))}, got {suite!r}")
        suite = None
    system = _system(top.table("system"))
    evaluator = _evaluator(top.table("evaluator"))
    protocol = _protocol(top.table("protocol"))

    sources: tuple[Source, ...] = ()
    scores: dict[str, float] | None = None
    export: str | None = None
    if kind == "reported":
        sources = _sources(top, problems)
        score_table = top.table("scores")
        scores = _scores(score_table, problems, suite or "geneval") if score_table is not None else None
        if "export" in data:
            top.read.add("export")
            problems.append("export: only reproduced entries carry an export")
    elif kind == "reproduced":
        if "scores" in data:
            top.read.add("scores")
            problems.append("scores: reproduced entries' numbers are recomputed, not typed; remove [scores]")
        if "source" in data:
            top.read.add("source")
            problems.append("source: reproduced entries are run here and cite no table; remove [[source]]")
        export_table = top.table("export")
        if export_table is not None:
            export = export_table.text("path", max_length=512)
            export_table.done()
    else:  # an unknown kind: do not also complain about the kind-specific tables
        top.read.update({"source", "scores", "export"})
    top.done()

    if problems:
        return None, list(problems)
    assert name is not None and authors is not None and description is not None and kind is not None
    assert system is not None and evaluator is not None and protocol is not None and suite is not None
    assert (export is not None) == (kind == "reproduced")  # a missing [export] or path is a problem above
    return Manifest(name=name, authors=authors, link=link, description=description, kind=kind,  # type: ignore[arg-type]
                    system=system, evaluator=evaluator, protocol=protocol, sources=sources, scores=scores,
                    export=export, suite=suite), []


def _system(table: _Table | None) -> System | None:
    if table is None:
        return None
    generator = table.label("generator")
    strategy = table.label("strategy")
    verifiers = table.text_list("verifiers", max_items=8, max_length=64, pattern=LABEL,
                                hint="a label (lower-case letters, digits, '.', '_', '+', '-')")
    n = table.integer("n", minimum=1)
    alignment = table.label("alignment")
    guidance = table.label("reward_guidance")
    table.done()
    if None in (generator, strategy, verifiers, n, alignment, guidance):
        return None
    return System(generator=generator, strategy=strategy, verifiers=verifiers, n=n,  # type: ignore[arg-type]
                  alignment=alignment, reward_guidance=guidance)  # type: ignore[arg-type]


def _evaluator(table: _Table | None) -> Evaluator | None:
    if table is None:
        return None
    backend = table.label("backend")
    settings: dict[str, Any] = {}
    raw = table.raw("settings", False)
    ok = True
    if raw is not None:
        if not isinstance(raw, dict):
            table.problems.append(f"evaluator.settings: must be a table, got {_kind(raw)}")
            ok = False
        elif len(raw) > MAX_SETTINGS:
            table.problems.append(f"evaluator.settings: at most {MAX_SETTINGS} keys, got {len(raw)}")
            ok = False
        else:
            for key, value in raw.items():
                where = f"evaluator.settings.{key}"
                if not LABEL.fullmatch(key.lower()):
                    table.problems.append(f"{where}: a setting's name may hold only letters, digits, '.', '_', "
                                          "'+', '-'")
                    ok = False
                elif isinstance(value, str):
                    why = check_text(value, max_length=MAX_TEXT["setting"])
                    if why is not None:
                        table.problems.append(f"{where}: {why}")
                        ok = False
                elif isinstance(value, float) and not math.isfinite(value):
                    table.problems.append(f"{where}: must be a finite number")
                    ok = False
                elif not isinstance(value, str | int | float | bool):
                    table.problems.append(f"{where}: must be a string, number or boolean, got {_kind(value)}")
                    ok = False
            settings = dict(raw)
    table.done()
    if backend is None or not ok:
        return None
    return Evaluator(backend=backend, settings=settings)


def _protocol(table: _Table | None) -> Protocol | None:
    if table is None:
        return None
    images = table.integer("images_per_prompt", minimum=1)
    rewriting = table.boolean("prompt_rewriting")
    seed = table.integer("seed", required=False)
    resolution = table.integer("resolution", required=False, minimum=1)
    table.done()
    if images is None or rewriting is None:
        return None
    return Protocol(images_per_prompt=images, seed=seed, resolution=resolution, prompt_rewriting=rewriting)


def _sources(top: _Table, problems: list[str]) -> tuple[Source, ...]:
    raw = top.raw("source", False)
    if raw is None:
        problems.append("source: missing (a reported entry cites where its numbers come from: [[source]] with "
                        "citation, table, and optionally page and url)")
        return ()
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw) or not raw:
        problems.append("source: must be one or more [[source]] tables")
        return ()
    if len(raw) > MAX_SOURCES:
        problems.append(f"source: at most {MAX_SOURCES} sources, got {len(raw)}")
        return ()
    out = []
    for i, item in enumerate(raw):
        table = _Table(item, f"source[{i}].", problems)
        citation = table.text("citation", max_length=MAX_TEXT["citation"])
        name = table.text("table", max_length=MAX_TEXT["table"])
        page = table.integer("page", required=False, minimum=1)
        url = table.url("url")
        table.done()
        if citation is not None and name is not None:
            out.append(Source(citation=citation, table=name, page=page, url=url))
    return tuple(out)


def _scores(table: _Table, problems: list[str], suite: str = "geneval") -> dict[str, float] | None:
    groups = view(suite).groups
    out: dict[str, float] = {}
    for key, value in table.data.items():
        table.read.add(key)
        where = f"scores.{key}"
        if key not in (*groups, "overall"):
            known = f"GenEval's tags: {', '.join(TASKS)}" if suite == "geneval" else \
                f"GenEval 2's atomicities: \"{groups[0]}\" .. \"{groups[-1]}\" (quoted TOML keys)"
            problems.append(f"{where}: unknown task ({known}, and 'overall')")
        elif not isinstance(value, int | float) or isinstance(value, bool):
            problems.append(f"{where}: must be a number, got {_kind(value)}")
        elif not (math.isfinite(value) and 0.0 <= value <= 1.0):
            problems.append(f"{where}: must be a fraction in [0, 1] (0.53, not 53), got {value}")
        else:
            out[key] = float(value)
    if not table.data:
        problems.append("scores: empty; give at least one task score or 'overall'")
    # A typed overall is kept as published even when it is not the mean of the typed tasks: some
    # papers print such rows (TokenFlow-XL in Janus-Pro's Table 4: tasks average 0.53, overall 0.55).
    return out if len(out) == len(table.data) else None


# ---------------------------------------------------------------------------------------------
# writing (`stepwise submit`)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form; always has '.' or 'e' (TOML floats)
    if isinstance(value, str):
        # A JSON string of checked text (no control characters) is a TOML basic string.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _toml_key(key: str) -> str:
    """A bare TOML key when it may be one, else a quoted one ("atoms=3")."""
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_table(header: str | None, fields: dict[str, Any]) -> list[str]:
    lines = [f"[{header}]"] if header else []
    lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in fields.items() if value is not None]
    return lines


def dump_manifest(manifest: Manifest) -> str:
    """The TOML text of a manifest; `parse_manifest(dump_manifest(m))` gives `m` back."""
    m = manifest
    s, p = m.system, m.protocol
    blocks = [
        _toml_table(None, {"name": m.name, "authors": list(m.authors), "link": m.link,
                           "description": m.description, "kind": m.kind,
                           "suite": m.suite if m.suite != "geneval" else None}),  # GenEval's stay as they were
        _toml_table("system", {"generator": s.generator, "strategy": s.strategy, "verifiers": list(s.verifiers),
                               "n": s.n, "alignment": s.alignment, "reward_guidance": s.reward_guidance}),
        _toml_table("evaluator", {"backend": m.evaluator.backend}),
    ]
    if m.evaluator.settings:
        blocks.append(_toml_table("evaluator.settings", m.evaluator.settings))
    blocks.append(_toml_table("protocol", {"images_per_prompt": p.images_per_prompt,
                                           "prompt_rewriting": p.prompt_rewriting, "seed": p.seed,
                                           "resolution": p.resolution}))
    for source in m.sources:
        blocks.append(["[[source]]", *_toml_table(None, {"citation": source.citation, "table": source.table,
                                                        "page": source.page, "url": source.url})])
    if m.scores is not None:
        blocks.append(_toml_table("scores", m.scores))
    if m.export is not None:
        blocks.append(_toml_table("export", {"path": m.export}))
    return "\n\n".join("\n".join(block) for block in blocks) + "\n"
