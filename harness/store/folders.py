"""Where a run's images are now: image paths are stored relative to the run folder.

`stepwise run --out OUT` writes OUT/images/<sha256>.png and stores "images/<sha256>.png", plus the
run folder in `run_folders` (absolute, and relative to the folder of a SQLite store file). A run
made on a cluster and copied to a laptop (store and run folder together, or apart) is found again:

    folder = locate_run_folder(s, run_id, explicit=args.run_dir)   # RunFolderError: where it looked
    path = resolve_image(folder, candidate.image_path, candidate.image_sha256, "prompt 00003 sample 1")

`locate_run_folder` tries, in order: the folder given (`--run-dir`; `--out` for `stepwise run`), the
recorded folder relative to where the store file is now, the recorded absolute folder, a folder of
the recorded name beside the store, and the store's own folder (per-rank stores live in OUT); the
first one that holds the run's first image wins. `resolve_image` refuses, naming it, an image
that is missing or whose bytes no longer match the stored sha256: an image is never used silently.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.store.engine import StoreError
from harness.store.models import Candidate, RunFolder
from harness.store.types import utcnow

__all__ = ["ImageProblem", "RunFolderError", "locate_run_folder", "preview_sha256", "record_run_folder",
           "relative_image_path", "resolve_image", "resolve_previews", "store_folder"]

IMAGES_DIR = "images"


class RunFolderError(StoreError):
    """A run's folder cannot be found; the message says where it looked and what to give."""


class ImageProblem(StoreError):
    """A stored image that is missing or whose bytes changed since it was judged; names it."""


def store_folder(bind: Any) -> Path | None:
    """The folder of a SQLite store file (an Engine, Connection or Session's bind), else None."""
    url = (bind.get_bind() if isinstance(bind, Session) else bind).engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    database = url.database.removeprefix("file:").split("?")[0]
    return Path(os.path.abspath(database)).parent


def relative_image_path(path: str | Path, folder: Path) -> str:
    """`path` (under `folder`) as the store keeps it: POSIX, relative to the run folder."""
    absolute = Path(os.path.abspath(path))
    try:
        return PurePosixPath(absolute.relative_to(Path(os.path.abspath(folder)))).as_posix()
    except ValueError:
        return str(absolute)  # outside the run folder (not the runner's layout): kept absolute


def record_run_folder(s: Session, run_id: str, folder: Path) -> None:
    """Remember that `run_id`'s folder is `folder` now (absolute, and relative to a SQLite store's folder)."""
    from sqlalchemy.dialects import postgresql, sqlite

    absolute = os.path.abspath(folder)
    near = store_folder(s)
    relative = os.path.relpath(absolute, near) if near is not None else None
    values = {"path": absolute, "store_relative": relative, "updated_at": utcnow()}
    name = s.get_bind().dialect.name
    if name in ("sqlite", "postgresql"):  # one statement: torchrun ranks may write it at the same time
        insert = (sqlite.insert if name == "sqlite" else postgresql.insert)(RunFolder)
        s.execute(insert.values(run_id=run_id, **values)
                  .on_conflict_do_update(index_elements=["run_id"], set_=values))
        return
    row = s.get(RunFolder, run_id)
    if row is None:
        s.add(RunFolder(run_id=run_id, **values))
    else:
        row.path, row.store_relative, row.updated_at = absolute, relative, values["updated_at"]
    s.flush()


def _candidates(s: Session, run_id: str) -> list[Path]:
    """Where the run folder may be now, in the order `locate_run_folder` tries them."""
    out: list[Path] = []
    row = s.get(RunFolder, run_id)
    near = store_folder(s)
    if row is not None:
        if row.store_relative is not None and near is not None:
            out.append(near / row.store_relative)
        out.append(Path(row.path))
        if near is not None:
            out.append(near / Path(row.path).name)
    if near is not None:
        out.append(near)
    unique: list[Path] = []
    for path in out:
        if path not in unique:
            unique.append(path)
    return unique


def _probe(s: Session, run_id: str) -> str | None:
    """The run's first stored image path (relative), to recognise its folder by."""
    return s.scalar(select(Candidate.image_path).where(Candidate.run_id == run_id).order_by(Candidate.id).limit(1))


def locate_run_folder(s: Session, run_id: str, explicit: Path | None = None) -> Path:
    """Where `run_id`'s images are now (see the module docstring); RunFolderError listing where it looked.

    A run without candidates has nothing to find: the explicit folder, or the recorded one, is returned.
    """
    if explicit is not None:  # the user's word: each image is checked when it is used
        if not explicit.is_dir():
            raise RunFolderError(f"{explicit}: no such folder (the run folder of run {run_id[:12]}…)")
        return explicit
    tried = _candidates(s, run_id)
    probe = _probe(s, run_id)
    if probe is None or PurePosixPath(probe).is_absolute() or Path(probe).is_absolute():
        if tried:
            return tried[0]
        raise RunFolderError(f"run {run_id[:12]}… records no folder; give the run's --out folder with --run-dir")
    for folder in tried:
        if (folder / probe).is_file():
            return folder
    looked = ", ".join(str(p) for p in tried) or "nowhere (the store records no folder)"
    raise RunFolderError(f"the images of run {run_id[:12]}… are not found (looked for {probe} in {looked}); give "
                         "the run's --out folder with --run-dir")


def resolve_image(folder: Path, stored: str, sha256: str | None, what: str) -> Path:
    """The file of a stored image path under `folder`, checked: it exists and (when `sha256` is given)
    its bytes hash to it. ImageProblem, naming `what` and the file, otherwise."""
    from harness.hashing import content_sha256

    path = Path(stored) if Path(stored).is_absolute() else folder / stored
    try:
        actual = content_sha256(path) if sha256 is not None else None
    except FileNotFoundError:
        raise ImageProblem(f"{what}: image {path} is missing (the run folder is {folder})") from None
    except OSError as err:
        raise ImageProblem(f"{what}: image {path} cannot be read ({err.strerror})") from None
    if sha256 is not None and actual != sha256:
        raise ImageProblem(f"{what}: image {path} no longer matches the stored sha256 ({actual[:12]}…, the store says "
                           f"{sha256[:12]}…): the file changed after it was judged")
    if sha256 is None and not path.is_file():
        raise ImageProblem(f"{what}: image {path} is missing (the run folder is {folder})")
    return path


def preview_sha256(stored: str) -> str | None:
    """A preview's sha256 from its content-addressed name (images/<sha256>.png), when it has one."""
    stem = PurePosixPath(stored).stem
    return stem if len(stem) == 64 and all(c in "0123456789abcdef" for c in stem) else None


def resolve_previews(folder: Path, stored: Sequence[str], what: str) -> list[Path]:
    return [resolve_image(folder, p, preview_sha256(p), f"{what} preview {k}") for k, p in enumerate(stored)]
