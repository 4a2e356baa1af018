"""JSON-lines helpers: read with line numbers in every error, write whole or not at all."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def loads(text: str, where: str) -> Any:
    """json.loads, with what a hostile input makes it raise turned into a ValueError naming `where`: bad
    JSON, and JSON nested so deeply (thousands of brackets) that the parser runs out of stack."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{where}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise ValueError(f"{where}: JSON nested too deeply to read (thousands of levels)") from None


def iter_json_lines(lines: Iterable[str], source: str) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed value) for every non-blank line; bad JSON names source:line, and a
    file that is not UTF-8 text names the file (ValueError either way)."""
    iterator = iter(lines)
    lineno = 0
    while True:
        try:
            line = next(iterator)
        except StopIteration:
            return
        except UnicodeDecodeError as err:  # reading the file, not parsing it
            raise ValueError(f"{source}: not UTF-8 text ({err.reason}, after line {lineno})") from None
        lineno += 1
        if not line.strip():
            continue
        yield lineno, loads(line, f"{source}:{lineno}")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temporary file and a rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fp:
            fp.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path` (a config file); ValueError naming the file when it is not one."""
    try:
        data = loads(path.read_text(encoding="utf-8"), str(path))
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
