"""sha256 of model files, read in chunks (checkpoints are GBs), with the HF cache's shortcut."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_CHUNK = 1 << 20
_SHA256_NAME = re.compile(r"[0-9a-f]{64}")


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content.

    A file in the Hugging Face cache is a link to blobs/<sha256 of the content> for LFS files, so
    the blob's name is the answer without reading gigabytes. (Non-LFS blobs are named by their
    40-digit git sha1 instead, and are hashed.)
    """
    blob = Path(os.path.realpath(path))
    if blob.parent.name == "blobs" and _SHA256_NAME.fullmatch(blob.name):
        return blob.name
    return content_sha256(path)


def content_sha256(path: Path) -> str:
    """The sha256 of a file, always read (in chunks): for checking provenance, where a file's name
    must not stand in for its content."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
