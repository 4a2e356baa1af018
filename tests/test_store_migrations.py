"""Schema versions: the migration path builds the models' schema, upgrades keep rows, newer stores are refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, inspect, select, text
from sqlalchemy.orm import Session

from harness.store import (
    SCHEMA_VERSION,
    Base,
    Candidate,
    NewCandidate,
    NewEvaluation,
    NewPrompt,
    NewScore,
    Prompt,
    Run,
    RunSpec,
    SchemaVersion,
    StoreVersionError,
    add_candidates,
    add_evaluations,
    add_prompts,
    add_verifier_scores,
    get_or_create_run,
    get_or_create_suite,
    make_engine,
    open_store,
    upgrade,
)
from harness.store.migrations import MIGRATIONS, Migration, check_version

pytest_plugins = ["postgres"]

SPEC = RunSpec(suite_name="geneval", suite_hash="a" * 64, generator="toy", generator_package="stepwise-toy",
               generator_version="1", params={"steps": 2}, seed=3)


def _add_note(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE runs ADD COLUMN note VARCHAR"))
    conn.execute(text("UPDATE runs SET note = 'migrated'"))


def _add_note_then_fail(conn: Connection) -> None:
    _add_note(conn)
    raise RuntimeError("migration 2 failed half-way")


WITH_V2 = (*MIGRATIONS, Migration(2, "test only: runs.note", _add_note))


@contextmanager
def engine_on(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def write_rows(engine: Engine) -> str:
    with Session(engine) as s, s.begin():
        suite = get_or_create_suite(s, SPEC.suite_name, SPEC.suite_hash)
        (pid,) = add_prompts(s, suite.id, [NewPrompt(0, "counting", "a photo of two cats", {"tag": "counting"})])
        run_id = get_or_create_run(s, SPEC, code_version="old").id
        ids = add_candidates(s, run_id, pid, [NewCandidate(j, f"{j}.png", f"{j:064x}") for j in range(3)])
        add_evaluations(s, "hf", "e" * 64, [NewEvaluation(c, j == 1, "" if j == 1 else "wrong count")
                                            for j, c in ids.items()])
        add_verifier_scores(s, "clip", "c" * 64, [NewScore(c, j / 4) for j, c in ids.items()])
    return run_id


def test_a_version_1_store_upgrades_and_keeps_its_rows(store_url: str) -> None:
    with engine_on(store_url) as engine:
        assert upgrade(engine, target=0, migrations=WITH_V2) == 0
        assert upgrade(engine, target=1, migrations=WITH_V2) == 1
        with engine.connect() as conn:
            assert "note" not in {c["name"] for c in inspect(conn).get_columns("runs")}
        run_id = write_rows(engine)

    with engine_on(store_url) as engine:  # reopened by code that knows version 2
        assert upgrade(engine, migrations=WITH_V2) == 2
        assert upgrade(engine, migrations=WITH_V2) == 2  # a no-op the second time
        with Session(engine) as s:
            assert s.scalars(select(SchemaVersion.version)).one() == 2
            run = s.get(Run, run_id)
            assert run is not None and run.code_version == "old" and run.spec == SPEC.canonical()
            assert s.scalars(select(Prompt.text)).one() == "a photo of two cats"
            cands = s.scalars(select(Candidate).order_by(Candidate.sample_index)).all()
            assert [c.image_sha256 for c in cands] == [f"{j:064x}" for j in range(3)]
            assert s.execute(text("SELECT note FROM runs")).scalar() == "migrated"

    # This code knows only SCHEMA_VERSION: it refuses the newer store instead of misreading it.
    assert SCHEMA_VERSION == 1
    for upgrade_schema in (True, False):
        with pytest.raises(StoreVersionError, match="schema version 2, newer than this code knows"):
            open_store(store_url, upgrade_schema=upgrade_schema)


def test_a_failed_migration_leaves_the_previous_version(store_url: str) -> None:
    with engine_on(store_url) as engine:
        upgrade(engine)
        run_id = write_rows(engine)
        failing = (*MIGRATIONS, Migration(2, "fails", _add_note_then_fail))
        with pytest.raises(RuntimeError, match="failed half-way"):
            upgrade(engine, migrations=failing)
        with engine.connect() as conn:  # DDL rolled back with the rest, on SQLite too
            assert "note" not in {c["name"] for c in inspect(conn).get_columns("runs")}
        assert check_version(engine) == SCHEMA_VERSION
        with Session(engine) as s:
            assert s.get(Run, run_id) is not None


def test_version_checks(store_url: str) -> None:
    with pytest.raises(StoreVersionError, match="schema version 0, older than this code's"):
        open_store(store_url, upgrade_schema=False)  # an empty database is not created by a read-only open
    engine = open_store(store_url)
    try:
        assert check_version(engine) == SCHEMA_VERSION
        with pytest.raises(ValueError, match="numbered"):
            upgrade(engine, migrations=(Migration(2, "misnumbered", _add_note),))
        with pytest.raises(StoreVersionError, match="past the target 0"):
            upgrade(engine, target=0)
    finally:
        engine.dispose()


def test_a_foreign_database_is_refused(store_url: str) -> None:
    with engine_on(store_url) as engine, engine.begin() as conn:
        conn.execute(text("CREATE TABLE runs (id INTEGER PRIMARY KEY)"))
    with pytest.raises(StoreVersionError, match=r"has table.* runs but no schema_version table"):
        open_store(store_url)


def _schema(url: str) -> dict[str, Any]:
    """Everything the database says about its tables, in a comparable form."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            insp = inspect(conn)
            out: dict[str, Any] = {}
            for table in sorted(insp.get_table_names()):
                out[table] = {
                    "columns": [(c["name"], c["type"].compile(dialect=engine.dialect), c["nullable"])
                                for c in insp.get_columns(table)],
                    "pk": insp.get_pk_constraint(table),
                    "fks": sorted((fk["name"], tuple(fk["constrained_columns"]), fk["referred_table"],
                                   tuple(fk["referred_columns"]), (fk.get("options") or {}).get("ondelete"))
                                  for fk in insp.get_foreign_keys(table)),
                    "unique": sorted((u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)),
                    "indexes": sorted((i["name"], tuple(i["column_names"]), i["unique"])
                                      for i in insp.get_indexes(table)),
                }
            return out
    finally:
        engine.dispose()


def test_migrations_build_the_models(store_url: str, other_store_url: str) -> None:
    """The schema the migration steps build is exactly the one models.py declares.

    Fails when a model changes without a migration (or the other way round).
    """
    with engine_on(store_url) as engine:
        upgrade(engine)
    with engine_on(other_store_url) as engine:
        Base.metadata.create_all(engine)
    migrated, declared = _schema(store_url), _schema(other_store_url)
    assert sorted(migrated) == sorted(declared)
    for table in declared:
        assert migrated[table] == declared[table], table
    assert declared["candidates"]["unique"] == [
        ("uq_candidates_run_id_prompt_id_sample_index", ("run_id", "prompt_id", "sample_index"))]
    assert ("fk_candidates_run_id_runs", ("run_id",), "runs", ("id",), "CASCADE") in declared["candidates"]["fks"]
