"""Paths named inside a submission (the export, its images) stay inside the submission folder.

A manifest or export is data from strangers: a path in it must not make the loader read a
file elsewhere on the machine (`/etc/passwd`, `../other-entry/...`, a symlink pointing out).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

__all__ = ["PathProblem", "confined"]

# What a relative path inside a submission may look like: POSIX segments of ordinary characters.
_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,128}")
MAX_PATH_LENGTH = 512


class PathProblem(ValueError):
    """A path that would leave the submission folder, or is not a plain relative path."""


def confined(folder: Path, relative: str) -> Path:
    """`folder / relative`, checked to stay inside `folder`; raises PathProblem saying why not.

    Refused: absolute paths, backslashes, `..` and `.` segments, empty segments, odd characters,
    and any path whose resolved target (symlinks followed) lies outside the folder. The target
    need not exist: callers check that, so "missing" and "escaping" read differently.
    """
    if not relative:
        raise PathProblem("the path is empty")
    if len(relative) > MAX_PATH_LENGTH:
        raise PathProblem(f"the path is longer than {MAX_PATH_LENGTH} characters")
    if "\\" in relative:
        raise PathProblem(f"{relative!r} contains a backslash; use '/' between folders")
    if relative.startswith("/") or re.match(r"[A-Za-z]:", relative):
        raise PathProblem(f"{relative!r} is absolute; give a path relative to the submission folder")
    parts = PurePosixPath(relative).parts
    if relative.endswith("/") or any(p in ("", ".", "..") for p in relative.split("/")):
        raise PathProblem(f"{relative!r} has an empty, '.' or '..' segment; paths must stay inside the folder")
    bad = [p for p in parts if not _SEGMENT.fullmatch(p) or p.startswith(".")]
    if bad:
        raise PathProblem(f"{relative!r}: segment {bad[0]!r} may hold only letters, digits, '.', '_' and '-' "
                          "(and may not start with '.')")
    root = folder.resolve()
    target = (root / relative).resolve()  # follows symlinks, also of the folders on the way
    if not target.is_relative_to(root):
        raise PathProblem(f"{relative!r} leads outside the submission folder (a symlink?)")
    return folder / relative
