"""The export of a search entry: picks, verdicts, ledgers and trace hashes; the traces beside it.

A search run (`stepwise run --strategy NAME --budget B`) makes one image per GenEval sample, so its
export is not a candidate pool: one line per pick, after a header. `export.jsonl`:

    {"format": "stepwise-search-export", "version": 1, "run_id": ..., "suite": {...}, "generator": {...},
     "seed": 0, "evaluator": {...}, "verifiers": {"<name>": "<settings sha256>"}, "stepwise_version": ...,
     "search": {"strategy": "parm-prune", "package": ..., "version": ..., "params": {...},
                "settings_hash": "<sha256>", "budget": 4, "samples": 4, "total_steps": 18,
                "reads_metadata": []},
     "traces": "traces.jsonl"}
    {"prompt_index": 0, "tag": ..., "prompt": ..., "sample_index": 0, "sha256": "<of the PNG>",
     "image": "images/<sha256>.png" or null, "correct": true, "reason": "", "detections": {...},
     "ledger": {"generator_nfe": 41, ...}, "trace_sha256": "<sha256>", "prompt_used": null, "details": {...}}

(the header's common keys are a pool export's: `harness.submissions.export`). `traces.jsonl`, one
line per pick: {"prompt_index": 0, "sample_index": 0, "sha256": "<sha256>", "events": [...]}, where
sha256 is that of the events' canonical JSON (`harness.search.store.trace_sha256`), the one the pick
line names. Everything here checks types and shapes; `search_load` checks the rest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from harness.submissions.export import (
    EXPORT_FORMAT,
    MAX_PROBLEMS,
    SHA256,
    ExportError,
    ExportHeader,
    _detections,
    _header,
    _int,
    _obj,
    _only,
    _refuse_constant,
    _str,
    header_json,
    suite_keys,
    suite_reason,
    suite_tag,
    suite_verdict,
)
from harness.submissions.manifest import LABEL
from harness.submissions.model import ImageRecord, SearchPickRecord

__all__ = ["SEARCH_FORMAT", "SearchExport", "SearchHeader", "is_search_header", "parse_search_export",
           "parse_traces", "search_header_json", "search_record_json"]

SEARCH_FORMAT = "stepwise-search-export"
MAX_TRACE_EVENTS = 20000  # per pick: a forged trace stays small
_RECORD_KEYS = ("prompt_index", "tag", "prompt", "sample_index", "sha256", "image", "correct", "reason", "detections",
                "ledger", "trace_sha256", "prompt_used", "details")


@dataclass(frozen=True)
class SearchHeader:
    strategy: str
    package: str
    version: str
    params: dict[str, Any]
    settings_hash: str
    budget: int
    samples: int
    total_steps: int
    reads_metadata: tuple[str, ...]


@dataclass(frozen=True)
class SearchExport:
    header: ExportHeader
    search: SearchHeader
    traces: str  # the traces file's name, relative to the folder
    records: tuple[ImageRecord, ...]  # the picks as image records (scores: {})
    picks: tuple[SearchPickRecord, ...]  # one per record, same order


def is_search_header(line: str) -> bool:
    """Whether an export's first line is a search export's header (cheap: no validation)."""
    try:
        value = json.loads(line)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get("format") == SEARCH_FORMAT


def search_header_json(header: ExportHeader, search: SearchHeader, traces: str) -> dict[str, Any]:
    out = header_json(header)
    out["format"] = SEARCH_FORMAT
    out["search"] = {"strategy": search.strategy, "package": search.package, "version": search.version,
                     "params": search.params, "settings_hash": search.settings_hash, "budget": search.budget,
                     "samples": search.samples, "total_steps": search.total_steps,
                     "reads_metadata": list(search.reads_metadata)}
    out["traces"] = traces
    return out


def search_record_json(record: ImageRecord, pick: SearchPickRecord) -> dict[str, Any]:
    out = {"prompt_index": record.prompt_index, "tag": record.tag, "prompt": record.prompt,
           "sample_index": record.sample_index, "sha256": record.sha256, "image": record.image,
           "correct": record.correct, "reason": record.reason, "detections": record.detections,
           "ledger": pick.ledger, "trace_sha256": pick.trace_sha256, "prompt_used": pick.prompt_used,
           "details": pick.details}
    if record.score is not None:  # a GenEval 2 pick: its Soft-TIFA GM and answers, as a pool export's
        out["score"] = record.score
        out["answers"] = record.answers
    return out


def _search_header(value: Any) -> tuple[ExportHeader, SearchHeader, str]:
    head = _obj(value, "the header")
    if head.get("format") != SEARCH_FORMAT:
        raise ValueError(f"format must be {SEARCH_FORMAT!r}, got {head.get('format')!r:.80}")
    common = {k: v for k, v in head.items() if k not in ("search", "traces")}
    common["format"] = EXPORT_FORMAT
    if "preparation" in common:
        raise ValueError("a search export carries no preparation")
    header = _header(common)
    if "search" not in head or "traces" not in head:
        raise ValueError("the header lacks search / traces")
    search = _obj(head["search"], "search")
    _only(search, ("strategy", "package", "version", "params", "settings_hash", "budget", "samples", "total_steps",
                   "reads_metadata"), "search")
    reads = search["reads_metadata"]
    if not isinstance(reads, list) or len(reads) > 16:
        raise ValueError("search.reads_metadata must be a list (at most 16 names)")
    return header, SearchHeader(
        strategy=_str(search["strategy"], "search.strategy", 64, LABEL),
        package=_str(search["package"], "search.package", 200),
        version=_str(search["version"], "search.version", 64),
        params=_obj(search["params"], "search.params"),
        settings_hash=_str(search["settings_hash"], "search.settings_hash", 64, SHA256),
        budget=_int(search["budget"], "search.budget", 1),
        samples=_int(search["samples"], "search.samples", 1),
        total_steps=_int(search["total_steps"], "search.total_steps", 1),
        reads_metadata=tuple(_str(x, "a search.reads_metadata name", 200) for x in reads),
    ), _str(head["traces"], "traces", 512)


def _record(value: Any, suite: str = "geneval") -> tuple[ImageRecord, SearchPickRecord]:
    rec = _obj(value, "a pick line")
    _only(rec, (*_RECORD_KEYS, *suite_keys(suite)), "the pick")
    tag = suite_tag(rec, suite)
    image = rec["image"]
    if image is not None:
        image = _str(image, "image", 512)
    if not isinstance(rec["correct"], bool):
        raise ValueError("correct must be true or false")
    used = rec["prompt_used"]
    if used is not None:
        used = _str(used, "prompt_used", 2000)
    detections = _detections(rec["detections"])
    score, answers = suite_verdict(rec, suite, detections)
    record = ImageRecord(
        prompt_index=_int(rec["prompt_index"], "prompt_index"), tag=tag, prompt=_str(rec["prompt"], "prompt", 500),
        sample_index=_int(rec["sample_index"], "sample_index"), sha256=_str(rec["sha256"], "sha256", 64, SHA256),
        image=image, correct=rec["correct"], reason=suite_reason(rec, suite), detections=detections, scores={},
        score=score, answers=answers)
    pick = SearchPickRecord(record.prompt_index, record.sample_index, _obj(rec["ledger"], "ledger"),
                            _str(rec["trace_sha256"], "trace_sha256", 64, SHA256), used,
                            _obj(rec["details"], "details"))
    return record, pick


def parse_search_export(lines: Iterable[str]) -> SearchExport:
    """Parse a search export's lines; ExportError listing what is wrong (line numbers 1-based)."""
    problems: list[str] = []
    head: tuple[ExportHeader, SearchHeader, str] | None = None
    records: list[ImageRecord] = []
    picks: list[SearchPickRecord] = []
    for lineno, line in enumerate(lines, 1):
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"stopped after {MAX_PROBLEMS} problems")
            break
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_refuse_constant)
        except ValueError as err:
            problems.append(f"line {lineno}: not valid JSON ({err})")
            if head is None:
                raise ExportError(problems) from None
            continue
        if head is None:
            try:
                head = _search_header(value)
            except ValueError as err:
                raise ExportError([*problems, f"line {lineno} (the header): {err}"]) from None
            continue
        try:
            record, pick = _record(value, head[0].suite)
        except ValueError as err:
            problems.append(f"line {lineno}: {err}")
            continue
        records.append(record)
        picks.append(pick)
    if head is None and not problems:
        problems.append("empty: expected a header line and one line per pick")
    elif head is not None and not records and not problems:
        problems.append("no picks after the header")
    if problems or head is None:
        raise ExportError(problems)
    return SearchExport(head[0], head[1], head[2], tuple(records), tuple(picks))


def parse_traces(lines: Iterable[str]) -> dict[tuple[int, int], tuple[str, list[Any]]]:
    """{(prompt index, sample index): (sha256 named, events)} of a traces file; ExportError on bad lines."""
    out: dict[tuple[int, int], tuple[str, list[Any]]] = {}
    problems: list[str] = []
    for lineno, line in enumerate(lines, 1):
        if len(problems) >= MAX_PROBLEMS:
            break
        if not line.strip():
            continue
        try:
            value = _obj(json.loads(line, parse_constant=_refuse_constant), "a trace line")
            _only(value, ("prompt_index", "sample_index", "sha256", "events"), "the trace line")
            key = (_int(value["prompt_index"], "prompt_index"), _int(value["sample_index"], "sample_index"))
            events = value["events"]
            if not isinstance(events, list) or len(events) > MAX_TRACE_EVENTS:
                raise ValueError(f"events must be a list of at most {MAX_TRACE_EVENTS} objects")
            if key in out:
                raise ValueError(f"prompt {key[0]:05d} sample {key[1]} has a second trace")
            out[key] = (_str(value["sha256"], "sha256", 64, SHA256), events)
        except ValueError as err:
            problems.append(f"line {lineno}: {err}")
    if problems:
        raise ExportError(problems)
    return out
