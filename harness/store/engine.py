"""Opening a store: one SQLAlchemy engine per process, from a URL.

The URL is `make_engine(url)`'s argument, else the environment variable `STEPWISE_DB`, else
`sqlite:///stepwise.db` in the current directory. Any SQLAlchemy URL works; SQLite and
PostgreSQL (`postgresql://user:password@host:port/db`, driven by psycopg 3 unless the URL
names another driver, e.g. `postgresql+psycopg2://`) are the two the tests cover.

SQLite engines get, on every new DBAPI connection (a `connect` listener on that engine only):
`foreign_keys=ON` (SQLite ignores foreign keys without it), `journal_mode=WAL` (readers never
block the writer), `synchronous=NORMAL` (durable across a killed process; the last commits
may be lost on power loss, which a resumed run redoes) and a busy timeout. SQLAlchemy, not
the sqlite3 module, emits the transaction start, as `BEGIN IMMEDIATE`: every transaction
takes SQLite's write lock up front (waiting up to the busy timeout), so two processes that
each read and then write never deadlock into "database is locked". Readers in other
processes are not blocked (WAL). DDL is transactional too, so a failed migration leaves
nothing behind.

A SQLite store file this process cannot write (its permissions, `chattr +i`, a read-only mount,
or a read-only folder for its journal) is opened read-only (`mode=ro`, and `immutable=1` when its
folder cannot hold the WAL index): commands that only read work on it, and `open_store` refuses it
to writers with "store is read-only: PATH" (`read_only_path`).

An engine must not cross a `fork`: each process (torchrun rank, multiprocessing worker)
calls `make_engine` itself.
"""

from __future__ import annotations

import os
import random
import re
import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from harness.store.types import json_dumps

__all__ = ["DEFAULT_URL", "ENV_VAR", "SQLITE_BUSY_TIMEOUT_MS", "StoreError", "StoreReadOnlyError", "make_engine",
           "mask_url", "read_only_path", "resolve_url"]

ENV_VAR = "STEPWISE_DB"
DEFAULT_URL = "sqlite:///stepwise.db"
SQLITE_BUSY_TIMEOUT_MS = 60_000
POSTGRES_CONNECT_TIMEOUT_S = 10

_DRIVER_HINTS = {
    "psycopg": "pip install 'psycopg[binary]'",
    "psycopg2": "pip install psycopg2-binary",
}


class StoreError(RuntimeError):
    """The store cannot be opened or used as asked (bad URL, server down, wrong schema version)."""


def resolve_url(url: str | None = None) -> str:
    """The URL a store opens: `url`, else $STEPWISE_DB, else `sqlite:///stepwise.db`."""
    return url or os.environ.get(ENV_VAR) or DEFAULT_URL


def mask_url(url: str | URL) -> str:
    """The URL with its password replaced by ***, also when it does not parse.

    >>> mask_url("postgresql://bench:s3cret@db.example:5432/runs")
    'postgresql://bench:***@db.example:5432/runs'
    >>> mask_url("postgresql://bench:s3cret@db:notaport/runs")
    'postgresql://bench:***@db:notaport/runs'
    """
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        # user:password@ in the authority part; the password may itself hold ':' but not '@'.
        return re.sub(r"^([^:/]+://[^:/@]*):[^@]*@", r"\1:***@", url)


def make_engine(url: str | None = None, *, check: bool = True, **engine_kwargs: Any) -> Engine:
    """An engine for the store at `url` (see `resolve_url`), configured for it.

    check: connect once now, so a bad path, an unreachable server or a refused login is a
        `StoreError` naming the URL (password masked) here rather than deep inside a run.
    engine_kwargs: passed on to `sqlalchemy.create_engine` (e.g. `echo=True`).

    Creates no tables: `harness.store.open_store` (or `upgrade`) brings the schema up to date.
    """
    raw = resolve_url(url)
    shown = mask_url(raw)
    try:
        parsed = make_url(raw)
    except (ArgumentError, ValueError) as err:
        password = re.match(r"^[^:/]+://[^:/@]*:([^@]*)@", raw)
        detail = str(err).replace(password.group(1), "***") if password and password.group(1) else str(err)
        raise StoreError(
            f"malformed database URL {shown!r} ({detail}); expected e.g. sqlite:///path/to/stepwise.db "
            "or postgresql://user:password@host:5432/dbname"
        ) from None
    if parsed.drivername == "postgresql":
        # psycopg 3 is the driver this project installs; SQLAlchemy 2.0 would pick psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    _refuse_foreign_file(parsed, shown)
    read_only_file = _read_only_sqlite_file(parsed)
    if read_only_file is not None:
        parsed = _read_only_url(parsed, read_only_file)
    kwargs: dict[str, Any] = {"json_serializer": json_dumps}
    if parsed.get_backend_name() != "sqlite":
        kwargs["pool_pre_ping"] = True  # a server restarted during a long run
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            kwargs["connect_args"] = {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_S}
    kwargs.update(engine_kwargs)
    try:
        engine = create_engine(parsed, **kwargs)
    except NoSuchModuleError:
        hint = " (PostgreSQL URLs start with postgresql://)" if parsed.drivername.split("+")[0] == "postgres" else ""
        raise StoreError(f"unknown database kind {parsed.drivername!r} in URL {shown!r}{hint}") from None
    except ImportError as err:
        driver = parsed.get_driver_name()
        hint = _DRIVER_HINTS.get(driver, f"install the {driver!r} DBAPI driver")
        raise StoreError(f"database URL {shown!r} needs the Python driver {driver!r}, which is not "
                         f"installed ({err}); {hint}") from None
    except (ArgumentError, TypeError, ValueError) as err:
        raise StoreError(f"cannot use database URL {shown!r}: {err}") from None
    engine._stepwise_read_only = read_only_file  # type: ignore[attr-defined]
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, read_only=read_only_file is not None)
    if check:
        try:
            with engine.connect():
                pass
        except DBAPIError as err:
            engine.dispose()
            raise StoreError(f"cannot open database {shown}: {_reason(err, parsed)}") from None
    return engine


def _reason(err: DBAPIError, url: URL) -> str:
    text = str(err.orig).strip() or type(err.orig).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = "; ".join(lines[:3])
    if url.get_backend_name() == "sqlite" and "unable to open" in reason and url.database:
        folder = os.path.dirname(os.path.abspath(url.database))
        if not os.path.isdir(folder):
            reason += f" (the folder {folder} does not exist)"
    return reason


def read_only_path(engine: Engine) -> str | None:
    """The file of a SQLite store that this process cannot write (opened read-only), else None."""
    return getattr(engine, "_stepwise_read_only", None)


class StoreReadOnlyError(StoreError):
    """A command that writes was given a store it cannot write."""


SQLITE_HEADER = b"SQLite format 3\x00"


def _refuse_foreign_file(url: URL, shown: str) -> None:
    """StoreError when a SQLite URL names an existing file that is not a SQLite database: SQLite would
    take a short text file for an empty database and write a store over it (`--db sqlite:///notes.txt`)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return
    try:
        with open(database, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return  # created (or refused) by SQLite itself, with its own message
    except OSError as err:
        raise StoreError(f"cannot open database {shown}: {err.strerror}") from None
    if head and head != SQLITE_HEADER:
        raise StoreError(f"cannot open database {shown}: {database} is not a SQLite database file (it does not "
                         "start with SQLite's header); nothing was written to it")


def _read_only_sqlite_file(url: URL) -> str | None:
    """The absolute path of an existing SQLite store file that cannot be written here (the file, or the
    folder its journal files go to, is read-only: permissions, `chattr +i`, a read-only mount), else None."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = os.path.abspath(database)
    if not os.path.isfile(path):
        return None
    if os.access(path, os.W_OK) and os.access(os.path.dirname(path), os.W_OK):
        return None
    return path


def _read_only_url(url: URL, path: str) -> URL:
    """SQLite's read-only URI for `path`. When the folder cannot hold the WAL index (-shm) and none is
    there, SQLite cannot open it at all unless told that nothing changes it (`immutable=1`)."""
    query = {**url.query, "mode": "ro", "uri": "true"}
    if not os.access(os.path.dirname(path), os.W_OK) and not os.path.exists(path + "-shm"):
        query["immutable"] = "1"
    return url.set(database=f"file:{path}", query=query)


def _while_locked(cursor: Any, pragma: str) -> None:
    """Run `pragma`, retrying while another connection holds the lock it needs.

    SQLite does not call the busy handler where waiting could deadlock, and switching the
    journal mode while other processes open the same new file is such a place: several
    torchrun ranks starting on one empty store got "database is locked" at once, however
    long busy_timeout was. So wait here, with jitter, for as long as busy_timeout promises.
    """
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.01
    while True:
        try:
            cursor.execute(pragma)
            return
        except sqlite3.OperationalError as err:
            if ("locked" not in str(err) and "busy" not in str(err)) or time.monotonic() > deadline:
                raise
        time.sleep(pause * (1 + random.random()))
        pause = min(pause * 2, 0.5)


def _configure_sqlite(engine: Engine, read_only: bool = False) -> None:
    """Pragmas on each new connection of THIS engine, and SQLAlchemy-controlled BEGIN IMMEDIATE
    (a plain BEGIN on a read-only store, which no lock to write can be taken on)."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
        # The sqlite3 module would BEGIN (deferred) only before DML and never before DDL;
        # switching its transaction handling off lets the "begin" listener below do it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")  # first: WAL needs a lock
            cursor.execute("PRAGMA foreign_keys = ON")
            if not read_only:  # switching the journal mode writes the file
                _while_locked(cursor, "PRAGMA journal_mode = WAL")  # an in-memory database answers "memory"
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT":
            return
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
