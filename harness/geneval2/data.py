"""GenEval 2's prompts: reading the user's `geneval2_data.jsonl` strictly, and the suite folder we write.

The data (facebookresearch/GenEval2, CC BY-NC 4.0) is not shipped: `stepwise prompts geneval2 --from
PATH -o DIR` reads the user's copy. One JSON object per line, in the reference's order (its
evaluation and analysis scripts pair prompts and score lists by position):

    {"prompt": "four white bicycles in front of three plastic cows", "atom_count": 7,
     "vqa_list": [["How many bicycles are in the image?", "four"], ["Are the bicycles white?", "Yes"], ...],
     "skills": ["count", "attribute", ...]}

Every line is checked for what the reference's scripts rely on, and the first problem is one
`DataError` naming the file and line: a line that is not UTF-8 or not one JSON object (or nested
too deeply to parse), a missing key, a prompt that is not a non-empty string or repeats an earlier
one (the reference maps prompt text to image), `atom_count` not an integer in 3..10 (the analysis
has buckets for those only), `vqa_list` empty or not [question, answer] string pairs, `skills` not
one known skill per pair, a "How many" question whose answer is not a number word "one".."ten"
(the reference scores its digit spelling too), or any other question whose answer is not "Yes"
(the reference scores every other question by the probability of "Yes", whatever its answer says).
Keys beyond the four are kept as they are.

The suite folder (`write_suite`):

    DIR/evaluation_metadata.jsonl   one record per prompt, in order, `json.dumps(record)` per line:
                                    for the published file, byte-identical to geneval2_data.jsonl
    DIR/generation_prompts.txt      one prompt per line (what a generator is given)
    DIR/suite.json                  {"suite": "geneval2", "sha256": ..., "published": true, counts, licence}
    DIR/LICENSE                     the data's licence, copied when it sits next to the source file

The record of prompt i is what a GenEval 2 image folder holds in `NNNNN/metadata.jsonl` (i = NNNNN),
as `stepwise generate` writes a suite's records.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUITE_NAME = "geneval2"
PUBLISHED_SHA256 = "09233adbc9f877fba205f1a20efa4a8640e7e62a91dfd55893562bed8a928e43"
SOURCE_URL = "https://github.com/facebookresearch/GenEval2"
LICENSE_NOTE = ("GenEval 2 data (Kamath et al., 2025, arXiv:2512.16853, github.com/facebookresearch/GenEval2), "
                "licensed CC BY-NC 4.0: https://creativecommons.org/licenses/by-nc/4.0/")
DATA_FILE = "geneval2_data.jsonl"
METADATA_FILE = "evaluation_metadata.jsonl"
PROMPTS_FILE = "generation_prompts.txt"
SUITE_FILE = "suite.json"
LICENSE_FILE = "LICENSE"

KEYS = ("prompt", "atom_count", "vqa_list", "skills")
# soft_tifa_analysis.py's order (per_skill_analysis returns and prints them so)
SKILLS = ("object", "attribute", "count", "position", "verb")
ATOM_COUNTS = tuple(range(3, 11))  # per_atomicity_analysis's buckets
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COUNT_PREFIX = "How many"  # evaluation.py: question.startswith("How many")
YES = "Yes"

Record = dict[str, Any]


class DataError(ValueError):
    """A GenEval 2 data file that the reference could not score as it reads; the message names file and line."""


@dataclass(frozen=True)
class SuiteData:
    """The records of a data file, in order, and what identifies the file."""

    records: list[Record]
    sha256: str
    source: Path

    @property
    def published(self) -> bool:
        return self.sha256 == PUBLISHED_SHA256

    @property
    def questions(self) -> int:
        return sum(len(r["vqa_list"]) for r in self.records)

    def skill_counts(self) -> dict[str, int]:
        counts = Counter(skill for r in self.records for skill in r["skills"])
        return {skill: counts[skill] for skill in SKILLS}

    def atom_counts(self) -> dict[int, int]:
        counts = Counter(r["atom_count"] for r in self.records)
        return {k: counts[k] for k in ATOM_COUNTS}


def record_problems(record: Any) -> list[str]:
    """What is wrong with one record ([] when the reference can score it as it reads it)."""
    if not isinstance(record, dict):
        return [f"expected a JSON object, got {_kind(record)}"]
    missing = [key for key in KEYS if key not in record]
    if missing:
        return [f"missing key(s) {', '.join(repr(k) for k in missing)}"]
    problems: list[str] = []
    prompt = record["prompt"]
    if not isinstance(prompt, str) or not prompt.strip():
        problems.append(f"'prompt' must be a non-empty string, got {_show(prompt)}")
    elif "\n" in prompt or "\r" in prompt:
        problems.append("'prompt' must be one line (generation_prompts.txt holds one prompt per line)")
    atoms = record["atom_count"]
    if isinstance(atoms, bool) or not isinstance(atoms, int) or atoms not in ATOM_COUNTS:
        problems.append(f"'atom_count' must be an integer {ATOM_COUNTS[0]}..{ATOM_COUNTS[-1]} (the reference's "
                        f"atomicity buckets), got {_show(atoms)}")
    pairs, skills = record["vqa_list"], record["skills"]
    if not isinstance(pairs, list) or not pairs:
        problems.append(f"'vqa_list' must be a non-empty list of [question, answer] pairs, got {_show(pairs)}")
        pairs = None
    if not isinstance(skills, list):
        problems.append(f"'skills' must be a list of skills, got {_show(skills)}")
        skills = None
    if pairs is not None:
        for i, pair in enumerate(pairs):
            problems.extend(f"'vqa_list'[{i}]: {p}" for p in _pair_problems(pair))
    if skills is not None:
        if pairs is not None and len(skills) != len(pairs):
            problems.append(f"'skills' has {len(skills)} entries for {len(pairs)} questions in 'vqa_list'")
        for i, skill in enumerate(skills):
            if skill not in SKILLS:
                problems.append(f"'skills'[{i}]: unknown skill {_show(skill)} (known: {', '.join(SKILLS)})")
    return problems


def _pair_problems(pair: Any) -> list[str]:
    if not isinstance(pair, list) or len(pair) != 2:
        return [f"expected a [question, answer] pair, got {_show(pair)}"]
    question, answer = pair
    if not isinstance(question, str) or not question.strip():
        return [f"the question must be a non-empty string, got {_show(question)}"]
    if not isinstance(answer, str):
        return [f"the answer must be a string, got {_show(answer)}"]
    if question.startswith(COUNT_PREFIX):
        if answer not in NUMBER_WORDS:
            return [f"a {COUNT_PREFIX!r} question needs a number word {NUMBER_WORDS[0]!r}..{NUMBER_WORDS[-1]!r} as its "
                    f"answer (the reference also scores its digit), got {answer!r}"]
    elif answer != YES:
        return [f"the answer must be {YES!r} for a question not starting with {COUNT_PREFIX!r} (the reference scores "
                f"those by P(Yes) whatever the answer), got {answer!r}"]
    return []


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else f"{_kind(value)} ({text[:40]}...)"


def parse_lines(lines: Iterable[bytes], source: str) -> list[Record]:
    """The records of a data file given as raw lines; DataError naming `source` and the line otherwise."""
    records: list[Record] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(lines, 1):
        where = f"{source}:{lineno}"
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            bad = f"byte 0x{raw[err.start]:02x} at column {err.start + 1}"
            raise DataError(f"{where}: not UTF-8 text ({bad})") from None
        if not text.strip():
            raise DataError(f"{where}: blank line (the reference reads one record per line)")
        try:
            record = json.loads(text)
        except RecursionError:
            raise DataError(f"{where}: JSON nested too deeply to read") from None
        except json.JSONDecodeError as err:
            raise DataError(f"{where}: not valid JSON ({err.msg}, column {err.colno})") from None
        problems = record_problems(record)
        if problems:
            raise DataError(f"{where}: " + "; ".join(problems))
        first = seen.setdefault(record["prompt"], lineno)
        if first != lineno:
            raise DataError(f"{where}: prompt {record['prompt']!r} repeats line {first} (the reference maps each "
                            "prompt text to one image)")
        records.append(record)
    if not records:
        raise DataError(f"{source}: no records")
    return records


def split_lines(data: bytes) -> list[bytes]:
    """Lines of a file's bytes; a final newline ends the last line rather than starting an empty one."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def read_data(path: Path) -> SuiteData:
    """Read and check a GenEval 2 data file (the published geneval2_data.jsonl or one in its format)."""
    try:
        data = Path(path).read_bytes()
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder; expected {DATA_FILE}") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    records = parse_lines(split_lines(data), str(path))
    return SuiteData(records=records, sha256=hashlib.sha256(data).hexdigest(), source=Path(path))


def read_suite(path: Path) -> SuiteData:
    """A suite folder written by `write_suite` (its evaluation_metadata.jsonl), or a data file itself."""
    path = Path(path)
    if path.is_dir():
        metadata = path / METADATA_FILE
        if not metadata.is_file():
            raise DataError(f"{path}: no {METADATA_FILE}; write the suite with "
                            f"`stepwise prompts geneval2 --from {DATA_FILE} -o {path}`")
        return read_data(metadata)
    return read_data(path)


def suite_info(suite: SuiteData) -> dict[str, Any]:
    """What suite.json records: the source's identity, the counts, the licence."""
    return {
        "suite": SUITE_NAME,
        "source_name": suite.source.name,
        "sha256": suite.sha256,
        "published_sha256": PUBLISHED_SHA256,
        "published": suite.published,
        "prompts": len(suite.records),
        "questions": suite.questions,
        "skills": suite.skill_counts(),
        "atom_counts": {str(k): n for k, n in suite.atom_counts().items()},
        "source_url": SOURCE_URL,
        "license": LICENSE_NOTE,
    }


def metadata_text(records: Sequence[Record]) -> str:
    # json.dumps with default separators: the published file is written exactly so
    return "".join(json.dumps(record) + "\n" for record in records)


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary name in the same folder and a rename (a reader never sees half a file),
    with the permissions the umask gives (the suite is meant to be shared)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_suite(suite: SuiteData, out_dir: Path) -> list[Path]:
    """Write the suite folder (see the module docstring); returns the files written."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / METADATA_FILE, out_dir / PROMPTS_FILE, out_dir / SUITE_FILE]
    _write_atomic(written[0], metadata_text(suite.records))
    _write_atomic(written[1], "".join(r["prompt"] + "\n" for r in suite.records))
    _write_atomic(written[2], json.dumps(suite_info(suite), indent=2) + "\n")
    licence = suite.source.parent / LICENSE_FILE
    if licence.is_file() and licence.resolve() != (out_dir / LICENSE_FILE).resolve():
        shutil.copyfile(licence, out_dir / LICENSE_FILE)
        written.append(out_dir / LICENSE_FILE)
    return written
