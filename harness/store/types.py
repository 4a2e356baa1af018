"""Column types, constraint names and hashing shared by the models and the migrations.

Kept apart from `models.py` so that a frozen migration (which must not import the current
models) can still use the same types and constraint names.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

# Explicit constraint and index names: the same on SQLite and PostgreSQL, so a later migration
# can drop or alter a constraint by name on either backend.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime, stored and returned in UTC on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so values are stored as UTC
    and given their `tzinfo` back on the way out. Naive datetimes are refused: their zone
    is unknown.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: give it a time zone (e.g. datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Plain JSON on both backends (PostgreSQL `json`, not `jsonb`): it keeps key order, which
# matters for per-category scores listed in GenEval's task order.
JSONType = JSON(none_as_null=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no spaces, ASCII, and no NaN or infinity (refused).

    >>> canonical_json({"b": 1, "a": [1.5, "é"]})
    '{"a":[1.5,"\\\\u00e9"],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def content_hash(obj: Any) -> str:
    """sha256 hex of `canonical_json(obj)`: run ids and settings hashes.

    >>> content_hash({"seed": 0})[:12]
    'bd0488843468'
    """
    return hashlib.sha256(canonical_json(obj).encode("ascii")).hexdigest()


def json_dumps(obj: Any) -> str:
    """The engines' JSON serializer: NaN and infinity are refused on every backend alike.

    (PostgreSQL's `json` type rejects them, while Python's json module would write them for
    SQLite; a store must not accept on one backend what it refuses on the other.)
    """
    return json.dumps(obj, allow_nan=False)


def is_finite(value: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
