"""Opening a store for a command: the engine, the schema brought up to date (or only checked), and
the integrity check. Above both `migrations` (which it runs) and `integrity` (which runs the frozen
migrations to know what a version promises), so neither imports the other's caller.
"""

from __future__ import annotations

from sqlalchemy import Engine

from harness.store.engine import StoreReadOnlyError, make_engine, read_only_path
from harness.store.integrity import check_schema
from harness.store.migrations import SCHEMA_VERSION, check_version, stored_version, upgrade

__all__ = ["open_store"]


def open_store(url: str | None = None, *, upgrade_schema: bool = True) -> Engine:
    """`make_engine(url)`, then the schema: migrated to `SCHEMA_VERSION` (created if empty),
    or, with upgrade_schema=False, only checked (a read-only look never changes a store).

    Either way the tables and columns the store's version promises must be there
    (`harness.store.integrity`; `StoreIntegrityError` names what is missing), and a store this
    process cannot write is refused to writers (`StoreReadOnlyError`: "store is read-only: PATH").
    """
    engine = make_engine(url)
    try:
        if upgrade_schema:
            read_only = read_only_path(engine)
            if read_only is not None:
                raise StoreReadOnlyError(f"store is read-only: {read_only} (this command writes to it; commands "
                                         "that only read, such as curve, curate and submit, work on it)")
            with engine.connect() as conn:
                before = stored_version(conn)
                if 0 < before <= SCHEMA_VERSION:
                    check_schema(conn, before)  # before migrating: a step may need what is missing
            upgrade(engine)
        else:
            check_version(engine)
        with engine.connect() as conn:
            check_schema(conn, stored_version(conn))
    except BaseException:
        engine.dispose()
        raise
    return engine
