"""Does a store hold the tables and columns its schema version promises? And repairing what can be.

A store's `schema_version` says which migrations it has had; a table dropped by hand (or by another
tool) since then breaks every command that touches it, far from the cause. `open_store` therefore
checks, for the store's version v, that every table and column migrations 1..v create exists
(`promised(v)`, computed once per process by running those frozen steps on a scratch in-memory
SQLite database), and names what is missing (`StoreIntegrityError`). Extra tables and columns are
someone else's business and are left alone.

`stepwise migrate` repairs, at the newest version, what can be repaired without inventing data
(`repair`): a missing table that no existing row refers to is created again, empty (its rows are
lost: `stepwise run` computes verdicts and scores again; curve recomputes results), and a missing
column that may be NULL or has a default is added. Everything else is refused with the same
message (restore the store from a backup). A `schema_version` row holding garbage is set to the
one version whose promises the tables meet exactly (`infer_version`), or refused.
"""

from __future__ import annotations

import functools

from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.sql import func

from harness.store.engine import StoreError, mask_url

__all__ = ["StoreIntegrityError", "check_schema", "infer_version", "promised", "repair", "schema_problems"]


class StoreIntegrityError(StoreError):
    """The store lacks tables or columns its schema version promises."""


@functools.cache
def promised(version: int) -> dict[str, frozenset[str]]:
    """{table: column names} that migrations 1..version create (schema_version excluded)."""
    from sqlalchemy import create_engine

    from harness.store.migrations import VERSION_TABLE, upgrade

    scratch = create_engine("sqlite://")
    try:
        upgrade(scratch, target=version)
        with scratch.connect() as conn:
            insp = inspect(conn)
            return {t: frozenset(c["name"] for c in insp.get_columns(t))
                    for t in insp.get_table_names() if t != VERSION_TABLE}
    finally:
        scratch.dispose()


def _present(conn: Connection) -> dict[str, set[str]]:
    insp = inspect(conn)
    return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}


def schema_problems(conn: Connection, version: int) -> list[str]:
    """What the store lacks of `promised(version)`: "table X", "column X.Y", sorted."""
    if version < 1:
        return []
    present = _present(conn)
    problems = []
    for table, columns in sorted(promised(version).items()):
        if table not in present:
            problems.append(f"table {table}")
        else:
            problems += [f"column {table}.{c}" for c in sorted(columns - present[table])]
    return problems


def check_schema(conn: Connection, version: int) -> None:
    """StoreIntegrityError naming every table and column of `promised(version)` the store lacks."""
    problems = schema_problems(conn, version)
    if problems:
        raise StoreIntegrityError(
            f"the store {mask_url(conn.engine.url)} is at schema version {version} but lacks {', '.join(problems)}; "
            "`stepwise migrate --db URL` recreates what it can (a missing table nothing refers to, empty)")


def infer_version(conn: Connection) -> int | None:
    """The one schema version whose promised tables and columns the store has, with none of the next
    version's additions; None when no version, or more than one, fits."""
    from harness.store.migrations import SCHEMA_VERSION

    present = _present(conn)

    def holds(version: int) -> bool:
        return all(t in present and cols <= present[t] for t, cols in promised(version).items())

    fits = [v for v in range(1, SCHEMA_VERSION + 1) if holds(v) and (v == SCHEMA_VERSION or not holds(v + 1))]
    return fits[0] if len(fits) == 1 else None


def set_version(conn: Connection, version: int) -> None:
    """Make `schema_version` one row (id 1) holding `version` (after `infer_version`)."""
    from harness.store.migrations import _version_table
    from harness.store.types import utcnow

    table = _version_table()
    conn.execute(table.delete())
    conn.execute(table.insert().values(id=1, version=version, updated_at=utcnow()))


def _referring_rows(conn: Connection, missing: str) -> list[str]:
    """Existing tables with a foreign key to `missing` that hold rows: recreating it empty would orphan them."""
    from harness.store.models import Base

    out = []
    present = set(inspect(conn).get_table_names())
    for table in Base.metadata.sorted_tables:
        if table.name == missing or table.name not in present:
            continue
        if any(fk.column.table.name == missing for fk in table.foreign_keys):
            count = conn.scalar(select(func.count()).select_from(text(table.name)))
            if count:
                out.append(f"{table.name} ({count} rows)")
    return out


def repair(engine: Engine) -> list[str]:
    """At `SCHEMA_VERSION`: create missing tables nothing refers to (empty) and add missing columns that
    may be NULL or have a default, from the models; returns what was done, one line each. Raises
    StoreIntegrityError naming what cannot be repaired (nothing is changed then)."""
    from harness.store.migrations import SCHEMA_VERSION, stored_version
    from harness.store.models import Base

    done: list[str] = []
    with engine.begin() as conn:
        version = stored_version(conn)
        if version != SCHEMA_VERSION:
            return []
        present = _present(conn)
        refused: list[str] = []
        for table in Base.metadata.sorted_tables:  # parents first
            if table.name not in present:
                holders = _referring_rows(conn, table.name)
                if holders:
                    refused.append(f"table {table.name} (rows of {', '.join(holders)} refer to it)")
                    continue
                table.create(conn)
                done.append(f"recreated table {table.name}, empty: the rows it held are lost")
                continue
            for column in table.columns:
                if column.name in present[table.name]:
                    continue
                default = column.server_default.arg if column.server_default is not None else None  # type: ignore[attr-defined]
                if not column.nullable and default is None:
                    refused.append(f"column {table.name}.{column.name} (it holds data nothing can restore)")
                    continue
                ddl = f"ALTER TABLE {table.name} ADD COLUMN {column.name} {column.type.compile(dialect=conn.dialect)}"
                if default is not None:
                    ddl += f" NOT NULL DEFAULT '{default}'" if not column.nullable else f" DEFAULT '{default}'"
                conn.execute(text(ddl))
                done.append(f"added column {table.name}.{column.name}"
                            + (f" (default {default})" if default is not None else " (empty)"))
        if refused:
            raise StoreIntegrityError(
                f"the store {mask_url(engine.url)} lacks {', '.join(refused)}, which cannot be recreated without "
                "losing the rows that depend on it; restore the store from a backup (nothing was changed)")
    return done
