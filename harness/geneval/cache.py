"""The verdict cache: image sha256 + evaluator settings + metadata -> result record.

An embedded SQLite file (WAL, so a reader never blocks the writer), one row per image.
Re-running `stepwise eval` on the same images with the same settings loads nothing and
recomputes nothing. Changing a threshold, a model file or the backend changes the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS verdicts (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL
)
"""


def default_cache_path() -> Path:
    base = os.environ.get("STEPWISE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "stepwise"
    )
    return Path(base) / "verdicts.sqlite"


def entry_key(settings_key: str, image_sha256: str, metadata: dict[str, Any]) -> str:
    payload = json.dumps([settings_key, image_sha256, metadata], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class VerdictCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(SCHEMA)
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT key, record FROM verdicts WHERE key IN ({marks})", chunk)
            found.update((key, json.loads(record)) for key, record in rows)
        return found

    def put_many(self, entries: dict[str, dict[str, Any]]) -> None:
        with self._db:  # one transaction per batch: a crash never leaves half a batch
            self._db.executemany(
                "INSERT OR REPLACE INTO verdicts (key, record) VALUES (?, ?)",
                [(key, json.dumps(record)) for key, record in entries.items()],
            )

    def close(self) -> None:
        self._db.close()
