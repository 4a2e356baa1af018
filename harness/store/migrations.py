"""Schema versions and migrations (a small, documented equivalent of Alembic).

The store records its version in the one-row table `schema_version`. `MIGRATIONS` is the
ordered list of steps; step k (1-based) takes a store from version k-1 to k, and
`SCHEMA_VERSION` = len(MIGRATIONS) is the version this code reads and writes. A new store
is built by running every step from 0, so the path old stores take is the path every test
takes.

`upgrade(engine)` applies the missing steps, each in its own transaction together with
the version bump (DDL is transactional on PostgreSQL and, with the engine's BEGIN, on
SQLite), so a step that fails leaves the store at the previous version with nothing
half-done. Concurrent callers (torchrun ranks opening one PostgreSQL store) are serialised
by a transaction-scoped advisory lock on PostgreSQL and by SQLite's write lock (BEGIN
IMMEDIATE). A store whose version is newer than `SCHEMA_VERSION` is refused with a
`StoreVersionError`: upgrade the code, never the other way round.

Writing a migration:
- Append `Migration(version=len(MIGRATIONS) + 1, description=..., apply=_vN)`; never edit a
  released step (stores in the wild have run it).
- A step uses only the connection it is given, with its own frozen table definitions
  (`sqlalchemy.Table` on a private `MetaData`) or DDL text, never the current models: the
  models describe the newest schema, not the one the step starts from.
- Then change `models.py` to match; `test_migrations_build_the_models` fails until the two
  agree, on both backends.
- Column and constraint changes on SQLite: `ALTER TABLE ... ADD COLUMN` / `RENAME COLUMN` /
  `DROP COLUMN` work directly; anything else (a new constraint, a type change) needs a table
  rebuild, for which `alembic.operations.Operations(MigrationContext.configure(conn))
  .batch_alter_table(...)` can be used inside a step (add `alembic` to the dependencies then).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    Double,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError

from harness.store.engine import StoreError, mask_url
from harness.store.types import NAMING_CONVENTION, JSONType, UTCDateTime, utcnow

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "MalformedVersionError",
    "Migration",
    "StoreVersionError",
    "stored_version",
    "upgrade",
]

VERSION_TABLE = "schema_version"
# pg_advisory_xact_lock key: any constant shared by every stepwise process ("stepwise" in ASCII).
_PG_LOCK_KEY = 0x7374657077697365


class StoreVersionError(StoreError):
    """The store's schema version is not one this code can use as it is."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    """Version 1: every table. Frozen: later versions change the schema in later steps."""
    md = MetaData(naming_convention=NAMING_CONVENTION)

    def created() -> Column[object]:
        return Column("created_at", UTCDateTime, nullable=False)

    Table(
        "suites", md,
        Column("id", Integer, primary_key=True),
        Column("name", String, nullable=False),
        Column("hash", String, nullable=False),
        created(),
        UniqueConstraint("name", "hash"),
    )
    Table(
        "prompts", md,
        Column("id", Integer, primary_key=True),
        Column("suite_id", Integer, ForeignKey("suites.id", ondelete="CASCADE"), nullable=False),
        Column("index", Integer, nullable=False),
        Column("tag", String, nullable=False),
        Column("text", String, nullable=False),
        Column("metadata", JSONType, nullable=False),
        UniqueConstraint("suite_id", "index"),
    )
    Table(
        "runs", md,
        Column("id", String, primary_key=True),
        Column("suite_id", Integer, ForeignKey("suites.id", ondelete="RESTRICT"), nullable=False, index=True),
        Column("generator", String, nullable=False),
        Column("generator_package", String, nullable=False),
        Column("generator_version", String, nullable=False),
        Column("params", JSONType, nullable=False),
        Column("seed", BigInteger, nullable=False),
        Column("code_version", String, nullable=False),
        Column("spec", JSONType, nullable=False),
        created(),
    )
    Table(
        "candidates", md,
        Column("id", Integer, primary_key=True),
        Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        Column("prompt_id", Integer, ForeignKey("prompts.id", ondelete="RESTRICT"), nullable=False, index=True),
        Column("sample_index", Integer, nullable=False),
        Column("image_path", String, nullable=False),
        Column("image_sha256", String, nullable=False),
        Column("step_previews", JSONType, nullable=False),
        Column("cost", JSONType, nullable=False),
        Column("seed", BigInteger, nullable=True),
        created(),
        UniqueConstraint("run_id", "prompt_id", "sample_index"),
    )
    Table(
        "evaluations", md,
        Column("id", Integer, primary_key=True),
        Column("candidate_id", Integer, ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False),
        Column("backend", String, nullable=False),
        Column("settings_hash", String, nullable=False),
        Column("correct", Boolean, nullable=False),
        Column("reason", String, nullable=False),
        Column("details", JSONType, nullable=False),
        Column("detections", JSONType, nullable=True),
        created(),
        UniqueConstraint("candidate_id", "backend", "settings_hash"),
    )
    Table(
        "verifier_scores", md,
        Column("id", Integer, primary_key=True),
        Column("candidate_id", Integer, ForeignKey("candidates.id", ondelete="CASCADE"), nullable=False),
        Column("verifier", String, nullable=False),
        Column("settings_hash", String, nullable=False),
        Column("score", Double, nullable=False),
        Column("step_scores", JSONType, nullable=False),
        Column("cost", JSONType, nullable=False),
        created(),
        UniqueConstraint("candidate_id", "verifier", "settings_hash"),
    )
    Table(
        "results", md,
        Column("id", Integer, primary_key=True),
        Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        Column("strategy", String, nullable=False),
        Column("verifier", String, nullable=False),
        Column("n", Integer, nullable=False),
        Column("scores", JSONType, nullable=False),
        Column("overall", Double, nullable=False),
        Column("low", Double, nullable=False),
        Column("high", Double, nullable=False),
        Column("evaluator", String, nullable=False),
        Column("evaluator_settings_hash", String, nullable=False),
        Column("verifier_settings_hash", String, nullable=True),
        Column("details", JSONType, nullable=False),
        created(),
        Index(None, "run_id", "strategy", "verifier", "n"),
    )
    md.create_all(conn)


def _v2_verifier_details(conn: Connection) -> None:
    """Version 2: `verifier_scores.details`, what a score was made of (JSON, {} for older rows)."""
    json_type = JSONType.compile(dialect=conn.dialect)
    # ADD COLUMN works in place on both backends; NOT NULL needs the DEFAULT so existing rows get {}.
    conn.execute(text(f"ALTER TABLE verifier_scores ADD COLUMN details {json_type} NOT NULL DEFAULT '{{}}'"))


def _v3_preparations(conn: Connection) -> None:
    """Version 3: `preparations`, the link from a run to the checkpoint a strategy's prepare stage made."""
    md = MetaData(naming_convention=NAMING_CONVENTION)
    Table("runs", md, Column("id", String, primary_key=True))  # referred to only; not created here
    Table(
        "preparations", md,
        Column("id", Integer, primary_key=True),
        Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("strategy", String, nullable=False),
        Column("settings_hash", String, nullable=False),
        Column("params", JSONType, nullable=False),
        Column("checkpoint", String, nullable=False),
        Column("checkpoint_sha256", String, nullable=False),
        Column("manifest", JSONType, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("run_id", "strategy", "settings_hash"),
    )
    md.tables["preparations"].create(conn)


def _v4_relative_image_paths(conn: Connection) -> None:
    """Version 4: candidates' image and preview paths relative to their run folder ("images/<sha256>.png"),
    and `run_folders`: where each run's folder was last (absolute, and relative to a SQLite store's own
    folder), so a store and its run folder copied elsewhere together still find their images.

    The runner always wrote OUT/images/<sha256>.png as an absolute path; such a path becomes
    "images/<sha256>.png" and OUT the run's folder. Paths of any other shape are kept as they are.
    """
    import os
    from pathlib import PurePath

    md = MetaData(naming_convention=NAMING_CONVENTION)
    Table("runs", md, Column("id", String, primary_key=True))  # referred to only; not created here
    folders = Table(
        "run_folders", md,
        Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
        Column("path", String, nullable=False),
        Column("store_relative", String, nullable=True),
        Column("updated_at", UTCDateTime, nullable=False),
    )
    folders.create(conn)
    candidates = Table("candidates", MetaData(), Column("id", Integer, primary_key=True), Column("run_id", String),
                       Column("image_path", String), Column("step_previews", JSONType))

    def relative(path: str) -> tuple[str, str | None]:
        parts = PurePath(path)
        if parts.is_absolute() and parts.parent.name == "images":
            return f"images/{parts.name}", str(parts.parent.parent)
        return path, None

    database = conn.engine.url.database if conn.dialect.name == "sqlite" else None
    store_dir = os.path.dirname(os.path.abspath(database)) if database and database != ":memory:" else None
    found: dict[str, str] = {}
    rows = conn.execute(candidates.select().order_by(candidates.c.id)).all()
    for row in rows:
        image, folder = relative(row.image_path)
        previews = [relative(p)[0] for p in (row.step_previews or [])]
        if folder is not None:
            found.setdefault(row.run_id, folder)
        if image != row.image_path or previews != list(row.step_previews or []):
            conn.execute(candidates.update().where(candidates.c.id == row.id)
                         .values(image_path=image, step_previews=previews))
    now = utcnow()
    for run_id, folder in sorted(found.items()):
        # Relative to the store only when the folder is still where the paths say: a store moved before
        # migrating cannot tell where its folder was relative to it.
        near = os.path.relpath(folder, store_dir) if store_dir is not None and os.path.isdir(folder) else None
        conn.execute(folders.insert().values(run_id=run_id, path=folder, store_relative=near, updated_at=now))


def _v5_searches(conn: Connection) -> None:
    """Version 5: `searches`, `search_picks`, `search_traces`, `search_evaluations`: what search strategies
    made (one pick per GenEval sample, its ledger, trace and verdicts; `harness.search`)."""
    md = MetaData(naming_convention=NAMING_CONVENTION)
    Table("runs", md, Column("id", String, primary_key=True))  # referred to only; not created here
    Table("prompts", md, Column("id", Integer, primary_key=True))

    def created() -> Column[object]:
        return Column("created_at", UTCDateTime, nullable=False)

    Table(
        "searches", md,
        Column("id", Integer, primary_key=True),
        Column("run_id", String, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
        Column("strategy", String, nullable=False),
        Column("strategy_package", String, nullable=False),
        Column("strategy_version", String, nullable=False),
        Column("params", JSONType, nullable=False),
        Column("verifiers", JSONType, nullable=False),
        Column("settings_hash", String, nullable=False),
        Column("budget", Integer, nullable=False),
        Column("samples", Integer, nullable=False),
        Column("total_steps", Integer, nullable=False),
        Column("reads_metadata", JSONType, nullable=False),
        created(),
        UniqueConstraint("run_id", "settings_hash", "budget"),
    )
    Table(
        "search_picks", md,
        Column("id", Integer, primary_key=True),
        Column("search_id", Integer, ForeignKey("searches.id", ondelete="CASCADE"), nullable=False),
        Column("prompt_id", Integer, ForeignKey("prompts.id", ondelete="RESTRICT"), nullable=False, index=True),
        Column("sample_index", Integer, nullable=False),
        Column("image_path", String, nullable=False),
        Column("image_sha256", String, nullable=False),
        Column("prompt_text", String, nullable=True),
        Column("ledger", JSONType, nullable=False),
        Column("details", JSONType, nullable=False),
        created(),
        UniqueConstraint("search_id", "prompt_id", "sample_index"),
    )
    Table(
        "search_traces", md,
        Column("id", Integer, primary_key=True),
        Column("pick_id", Integer, ForeignKey("search_picks.id", ondelete="CASCADE"), nullable=False, unique=True),
        Column("sha256", String, nullable=False),
        Column("events", JSONType, nullable=False),
        created(),
    )
    Table(
        "search_evaluations", md,
        Column("id", Integer, primary_key=True),
        Column("pick_id", Integer, ForeignKey("search_picks.id", ondelete="CASCADE"), nullable=False),
        Column("backend", String, nullable=False),
        Column("settings_hash", String, nullable=False),
        Column("correct", Boolean, nullable=False),
        Column("reason", String, nullable=False),
        Column("details", JSONType, nullable=False),
        Column("detections", JSONType, nullable=True),
        created(),
        UniqueConstraint("pick_id", "backend", "settings_hash"),
    )
    for name in ("searches", "search_picks", "search_traces", "search_evaluations"):
        md.tables[name].create(conn)


def _v6_verdict_scores(conn: Connection) -> None:
    """Version 6: `evaluations.score` and `search_evaluations.score`, a verdict's per-image figure in a
    suite's own terms (`harness.suites.Verdict.score`: GenEval 2's Soft-TIFA GM). Every verdict before
    it is GenEval's, whose score is its correctness: 1.0 or 0.0, so older rows mean what they meant."""
    double = Double().compile(dialect=conn.dialect)
    for table in ("evaluations", "search_evaluations"):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN score {double}"))
        conn.execute(text(f"UPDATE {table} SET score = CASE WHEN correct THEN 1.0 ELSE 0.0 END"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema: suites, prompts, runs, candidates, evaluations, verifier_scores, results",
              _v1_initial),
    Migration(2, "verifier_scores.details: what a score was made of (JSON)", _v2_verifier_details),
    Migration(3, "preparations: the checkpoint a strategy's prepare stage made for a run", _v3_preparations),
    Migration(4, "candidates' image paths relative to the run folder; run_folders: where each run folder is",
              _v4_relative_image_paths),
    Migration(5, "searches, search_picks, search_traces, search_evaluations: what search strategies made",
              _v5_searches),
    Migration(6, "evaluations.score, search_evaluations.score: a verdict's per-image figure (GenEval: 1.0 or 0.0)",
              _v6_verdict_scores),
)
SCHEMA_VERSION = len(MIGRATIONS)


def _version_table() -> Table:
    # Frozen like a migration: every version of the code must be able to read it.
    return Table(
        VERSION_TABLE, MetaData(naming_convention=NAMING_CONVENTION),
        Column("id", Integer, primary_key=True),
        Column("version", Integer, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
    )


class MalformedVersionError(StoreVersionError):
    """The `schema_version` table does not hold one row with a version this code could have written."""


def stored_version(conn: Connection) -> int:
    """The store's schema version; 0 for an empty database. Refuses a foreign database, and a
    `schema_version` table that does not hold exactly one row (id 1) with a version >= 1
    (`MalformedVersionError`: `stepwise migrate` can tell the version from the tables)."""
    names = set(inspect(conn).get_table_names())
    if VERSION_TABLE not in names:
        ours = names & {"suites", "prompts", "runs", "candidates", "evaluations", "verifier_scores", "results"}
        if ours:
            raise StoreVersionError(
                f"the database has table(s) {', '.join(sorted(ours))} but no {VERSION_TABLE} table: "
                "it is not a stepwise store (or an unversioned one); use another database"
            )
        return 0
    # Read raw: a hand-edited row may hold text, a float or NULL, which must be named, not crash int().
    rows = conn.execute(text(f"SELECT id, version FROM {VERSION_TABLE}")).all()
    where = mask_url(conn.engine.url)
    if len(rows) != 1 or rows[0][0] != 1:
        held = "no row" if not rows else f"{len(rows)} rows" if len(rows) > 1 else f"a row with id {rows[0][0]!r:.20}"
        raise MalformedVersionError(f"the store {where}: its {VERSION_TABLE} table holds {held}, not one row (id 1); "
                                    "`stepwise migrate --db URL` can tell the version from the tables")
    version = rows[0][1]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise MalformedVersionError(f"the store {where}: {VERSION_TABLE}.version holds {version!r:.40}, not a schema "
                                    "version (1, 2, ...); `stepwise migrate --db URL` can tell the version from the "
                                    "tables")
    return version


def _check_known(version: int, known: int, where: str) -> None:
    if version > known:
        raise StoreVersionError(
            f"the store {where} is at schema version {version}, newer than this code knows ({known}); "
            "upgrade stepwise to read it (a store is never downgraded)"
        )


def _lock(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    # SQLite: the engine's BEGIN IMMEDIATE already holds the database's write lock.


def upgrade(engine: Engine, *, target: int | None = None, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Bring the store to `target` (default: the newest version); returns the version reached.

    migrations: the steps (default `MIGRATIONS`; tests pass their own list).
    Raises `StoreVersionError` when the store is newer than `migrations` know or than
    `target` (nothing is ever downgraded).
    """
    known = len(migrations)
    for i, step in enumerate(migrations, start=1):
        if step.version != i:
            raise ValueError(f"migration {i} is numbered {step.version}; steps must be numbered 1, 2, ...")
    target = known if target is None else target
    if not 0 <= target <= known:
        raise ValueError(f"target version {target} is not between 0 and {known}")
    where = mask_url(engine.url)
    table = _version_table()
    while True:
        with engine.begin() as conn:
            _lock(conn)
            version = stored_version(conn)
            _check_known(version, known, where)
            if version > target:
                raise StoreVersionError(f"the store {where} is at schema version {version}, past the target {target}")
            if version == target:
                return version
            step = migrations[version]
            if version == 0:
                table.create(conn)
            try:
                step.apply(conn)
            except DBAPIError as err:  # e.g. a table the step changes is missing: nothing of it was applied
                reason = " ".join(str(err.orig).split())
                raise StoreVersionError(f"the store {where}: migration {step.version} ({step.description}) failed "
                                        f"and was rolled back, the store stays at version {version}: "
                                        f"{reason}") from None
            values = {"version": step.version, "updated_at": utcnow()}
            if version == 0:
                conn.execute(table.insert().values(id=1, **values))
            else:
                conn.execute(table.update().where(table.c.id == 1).values(**values))


def check_version(engine: Engine) -> int:
    """The store's version if it is exactly `SCHEMA_VERSION`; else a `StoreVersionError`."""
    with engine.connect() as conn:
        version = stored_version(conn)
    where = mask_url(engine.url)
    _check_known(version, SCHEMA_VERSION, where)
    if version == 0:
        raise StoreVersionError(f"the store {where} is empty (schema version 0, older than this code's "
                                f"{SCHEMA_VERSION}): no run was stored there; check --db / $STEPWISE_DB")
    if version < SCHEMA_VERSION:
        # Readers never migrate (a look must not change someone's store); say how to do it on purpose.
        raise StoreVersionError(
            f"the store {where} is at schema version {version}, older than this code's {SCHEMA_VERSION}; "
            "`stepwise migrate --db URL` upgrades it (commands that only read a store never change it)"
        )
    return version
