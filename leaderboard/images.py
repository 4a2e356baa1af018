"""Copy candidate images into the site by content hash and write small thumbnails.

`img/<sha256>.png` is the original file, byte for byte; `img/thumb/<sha256>.png` is a PNG
downscaled to fit THUMB_SIZE pixels. Both are named by the image's sha256, so an image
shared by several entries is stored once, and a thumbnail from the previous build of the
same site can be reused as is (same source bytes, same code, same thumbnail).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from harness.hashing import content_sha256

THUMB_SIZE = 128
FULL_DIR = "img"
THUMB_DIR = "img/thumb"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(text: str) -> bool:
    """A lower-case hex sha256: safe to use as a file name (no separators, no dots)."""
    return bool(_SHA256.fullmatch(text))


@dataclass(frozen=True)
class SiteImage:
    """Where an image landed in the site (paths relative to the site root) and its pixel size."""

    full: str
    thumb: str
    width: int
    height: int
    original: bool  # the shipped file is the candidate itself (its sha256 matches), not a smaller copy


def _publish_one(sha: str, source: Path, site: Path, previous: Path | None) -> SiteImage | str:
    """Copy one image and make its thumbnail; a string is the problem that stopped it."""
    from PIL import Image

    if not source.is_file():
        return f"image {source} is missing"
    full = f"{FULL_DIR}/{sha}.png"
    thumb = f"{THUMB_DIR}/{sha}.png"
    try:
        with Image.open(source) as image:
            width, height = image.size
            if image.format == "PNG":
                shutil.copyfile(source, site / full)
            else:
                # Pages link `<sha256>.png`; a JPEG/WebP export is re-encoded so the name tells the truth.
                image.save(site / full, format="PNG")
            old_thumb = previous / thumb if previous is not None else None
            if old_thumb is not None and old_thumb.is_file():
                shutil.copyfile(old_thumb, site / thumb)
            else:
                small = image.convert("RGB")
                small.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.LANCZOS)
                small.save(site / thumb, format="PNG")
    except OSError as error:
        return f"image {source} cannot be read: {error}"
    return SiteImage(full=full, thumb=thumb, width=width, height=height, original=content_sha256(source) == sha)


def publish_images(
    sources: Mapping[str, Path], site: Path, previous: Path | None = None, workers: int | None = None
) -> tuple[dict[str, SiteImage], list[str]]:
    """Copy every `sha256 -> file` into `site`; returns what was published and the problems.

    `previous` is the last build of the same site, whose thumbnails are reused. Images are
    independent, so they go through a thread pool (PIL decodes and resizes without the GIL);
    results are collected by sha256, so the order of completion never shows in the output.
    """
    (site / FULL_DIR).mkdir(parents=True, exist_ok=True)
    (site / THUMB_DIR).mkdir(parents=True, exist_ok=True)
    bad = sorted(sha for sha in sources if not is_sha256(sha))
    problems = [f"image sha256 {sha!r} is not 64 lower-case hex digits; image skipped" for sha in bad]
    todo = sorted(sha for sha in sources if is_sha256(sha))
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda sha: _publish_one(sha, sources[sha], site, previous), todo))
    published: dict[str, SiteImage] = {}
    for sha, result in zip(todo, results, strict=True):
        if isinstance(result, str):
            problems.append(result)
        else:
            published[sha] = result
    return published, problems
