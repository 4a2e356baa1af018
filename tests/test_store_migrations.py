"""Schema versions: the migration path builds the models' schema, upgrades keep rows, newer stores are refused."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, inspect, select, text
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
    VerifierScore,
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
from harness.store.migrations import MIGRATIONS, Migration, check_version, stored_version
from harness.store.types import utcnow

pytest_plugins = ["postgres"]

SPEC = RunSpec(suite_name="geneval", suite_hash="a" * 64, generator="toy", generator_package="stepwise-toy",
               generator_version="1", params={"steps": 2}, seed=3)


def _add_note(conn: Connection) -> None:
    conn.execute(text("ALTER TABLE runs ADD COLUMN note VARCHAR"))
    conn.execute(text("UPDATE runs SET note = 'migrated'"))


def _add_note_then_fail(conn: Connection) -> None:
    _add_note(conn)
    raise RuntimeError("the test migration failed half-way")


NEXT = len(MIGRATIONS) + 1  # a version this code does not know
WITH_NEXT = (*MIGRATIONS, Migration(NEXT, "test only: runs.note", _add_note))


@contextmanager
def engine_on(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()


def write_rows(engine: Engine, *, version_1: bool = False) -> str:
    """A run with 3 candidates, their verdicts and "clip" scores j / 4. version_1: the store is at
    schema 1, whose verifier_scores has no `details` and evaluations no `score`: those are written as
    that schema's rows."""
    with Session(engine) as s, s.begin():
        suite = get_or_create_suite(s, SPEC.suite_name, SPEC.suite_hash)
        (pid,) = add_prompts(s, suite.id, [NewPrompt(0, "counting", "a photo of two cats", {"tag": "counting"})])
        run_id = get_or_create_run(s, SPEC, code_version="old").id
        ids = add_candidates(s, run_id, pid, [NewCandidate(j, f"{j}.png", f"{j:064x}") for j in range(3)])
        if version_1:
            # The tables as the store has them (reflected), not as today's models declare them.
            verdicts = Table("evaluations", MetaData(), autoload_with=s.connection())
            s.execute(verdicts.insert(), [{"candidate_id": c, "backend": "hf", "settings_hash": "e" * 64,
                                           "correct": j == 1, "reason": "" if j == 1 else "wrong count",
                                           "details": {}, "detections": None, "created_at": utcnow()}
                                          for j, c in ids.items()])
            table = Table("verifier_scores", MetaData(), autoload_with=s.connection())
            s.execute(table.insert(), [{"candidate_id": c, "verifier": "clip", "settings_hash": "c" * 64,
                                        "score": j / 4, "step_scores": [], "cost": {}, "created_at": utcnow()}
                                       for j, c in ids.items()])
        else:
            add_evaluations(s, "hf", "e" * 64, [NewEvaluation(c, j == 1, "" if j == 1 else "wrong count")
                                                for j, c in ids.items()])
            add_verifier_scores(s, "clip", "c" * 64, [NewScore(c, j / 4) for j, c in ids.items()])
    return run_id


def test_a_version_1_store_upgrades_and_keeps_its_rows(store_url: str) -> None:
    with engine_on(store_url) as engine:
        assert upgrade(engine, target=0, migrations=WITH_NEXT) == 0
        assert upgrade(engine, target=1, migrations=WITH_NEXT) == 1
        with engine.connect() as conn:
            assert "note" not in {c["name"] for c in inspect(conn).get_columns("runs")}
            assert "details" not in {c["name"] for c in inspect(conn).get_columns("verifier_scores")}
        run_id = write_rows(engine, version_1=True)

    with engine_on(store_url) as engine:  # reopened by code that knows one version more than this one
        assert upgrade(engine, migrations=WITH_NEXT) == NEXT
        assert upgrade(engine, migrations=WITH_NEXT) == NEXT  # a no-op the second time
        with Session(engine) as s:
            assert s.scalars(select(SchemaVersion.version)).one() == NEXT
            run = s.get(Run, run_id)
            assert run is not None and run.code_version == "old" and run.spec == SPEC.canonical()
            assert s.scalars(select(Prompt.text)).one() == "a photo of two cats"
            cands = s.scalars(select(Candidate).order_by(Candidate.sample_index)).all()
            assert [c.image_sha256 for c in cands] == [f"{j:064x}" for j in range(3)]
            scores = s.scalars(select(VerifierScore).order_by(VerifierScore.score)).all()
            assert [(x.score, x.details) for x in scores] == [(j / 4, {}) for j in range(3)]  # migration 2
            assert s.execute(text("SELECT note FROM runs")).scalar() == "migrated"

    # This code knows only SCHEMA_VERSION: it refuses the newer store instead of misreading it.
    assert SCHEMA_VERSION == NEXT - 1
    for upgrade_schema in (True, False):
        with pytest.raises(StoreVersionError, match=f"schema version {NEXT}, newer than this code knows"):
            open_store(store_url, upgrade_schema=upgrade_schema)


def test_migration_2_gives_verifier_scores_details(store_url: str) -> None:
    """A store at version 1 (no `verifier_scores.details`) upgrades: old scores read {} and new
    scores keep their details; details that are not JSON are refused, naming the verifier."""
    with engine_on(store_url) as engine:
        assert upgrade(engine, target=1) == 1
        run_id = write_rows(engine, version_1=True)
    engine = open_store(store_url)  # what every stepwise command does: migrate to SCHEMA_VERSION
    try:
        assert check_version(engine) == SCHEMA_VERSION >= 2
        with Session(engine) as s, s.begin():
            ids = [c.id for c in s.scalars(select(Candidate).where(Candidate.run_id == run_id))]
            details = {"p_yes": 0.75, "answer": "Yes", "steps": (1, 2), "nested": {"ok": [True, None]}}
            assert add_verifier_scores(s, "orm", "o" * 64, [NewScore(ids[0], 0.75, details=details)]) == 1
        with Session(engine) as s:
            rows = s.scalars(select(VerifierScore).order_by(VerifierScore.verifier, VerifierScore.score)).all()
            assert [x.details for x in rows if x.verifier == "clip"] == [{}, {}, {}]
            (orm,) = [x for x in rows if x.verifier == "orm"]
            assert orm.details == {"p_yes": 0.75, "answer": "Yes", "steps": [1, 2], "nested": {"ok": [True, None]}}

        bad: list[Any] = [{"p": float("nan")}, {"p": object()}, {1: "int key"}, {"p": {2: "nested int key"}},
                          ["not", "a", "mapping"]]
        for value in bad:
            with pytest.raises(ValueError, match=r"verifier 'orm' gave candidate \d+ details that are not"):
                with Session(engine) as s, s.begin():
                    add_verifier_scores(s, "orm", "p" * 64, [NewScore(ids[1], 0.5),  # fine, but not stored either
                                                             NewScore(ids[2], 0.5, details=value)])
        with Session(engine) as s:
            assert s.scalars(select(VerifierScore).where(VerifierScore.settings_hash == "p" * 64)).all() == []
    finally:
        engine.dispose()


def test_migration_6_gives_geneval_verdicts_their_score(store_url: str) -> None:
    """A store at version 5 (GenEval verdicts without `score`) upgrades: each verdict's score is its
    correctness, 1.0 or 0.0, so curves read the same numbers; a suite's real-valued score is kept."""
    from harness.store.models import Evaluation

    with engine_on(store_url) as engine:
        assert upgrade(engine, target=5) == 5
        with engine.connect() as conn:
            assert "score" not in {c["name"] for c in inspect(conn).get_columns("evaluations")}
            assert "score" not in {c["name"] for c in inspect(conn).get_columns("search_evaluations")}
        run_id = write_rows(engine, version_1=True)  # schema 1's evaluations and schema 5's agree
        assert upgrade(engine) == SCHEMA_VERSION >= 6
        with Session(engine) as s, s.begin():
            rows = s.scalars(select(Evaluation).order_by(Evaluation.id)).all()
            assert [(r.correct, r.score) for r in rows] == [(False, 0.0), (True, 1.0), (False, 0.0)]
            ids = [c.id for c in s.scalars(select(Candidate).where(Candidate.run_id == run_id))]
            add_evaluations(s, "soft-tifa", "f" * 64, [NewEvaluation(ids[0], False, "1 of 3", score=0.42),
                                                        NewEvaluation(ids[1], True)])
            with pytest.raises(ValueError, match=r"verdict score -0\.5 is not a finite number >= 0"):
                add_evaluations(s, "soft-tifa", "g" * 64, [NewEvaluation(ids[2], False, score=-0.5)])
        with Session(engine) as s:
            new = s.scalars(select(Evaluation).where(Evaluation.backend == "soft-tifa").order_by(Evaluation.id)).all()
            assert [(r.correct, r.score) for r in new] == [(False, 0.42), (True, 1.0)]


def test_a_failed_migration_leaves_the_previous_version(store_url: str) -> None:
    with engine_on(store_url) as engine:
        upgrade(engine)
        run_id = write_rows(engine)
        failing = (*MIGRATIONS, Migration(NEXT, "fails", _add_note_then_fail))
        with pytest.raises(RuntimeError, match="failed half-way"):
            upgrade(engine, migrations=failing)
        with engine.connect() as conn:  # DDL rolled back with the rest, on SQLite too
            assert "note" not in {c["name"] for c in inspect(conn).get_columns("runs")}
        assert check_version(engine) == SCHEMA_VERSION
        with Session(engine) as s:
            assert s.get(Run, run_id) is not None


def test_version_checks(store_url: str) -> None:
    with pytest.raises(StoreVersionError, match=r"is empty \(schema version 0, older than this code.s"):
        open_store(store_url, upgrade_schema=False)  # an empty database is not created by a read-only open
    engine = open_store(store_url)
    try:
        assert check_version(engine) == SCHEMA_VERSION
        with pytest.raises(ValueError, match="numbered"):
            upgrade(engine, migrations=(Migration(NEXT + 1, "misnumbered", _add_note),))
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


def test_readers_refuse_an_older_store_and_migrate_upgrades_it(store_url: str) -> None:
    from helpers import stepwise

    code, output = stepwise("migrate", "--db", store_url)
    assert code == 1 and "nothing to migrate" in output  # no file (SQLite) or an empty database
    with engine_on(store_url) as engine:
        assert upgrade(engine, target=SCHEMA_VERSION - 1) == SCHEMA_VERSION - 1
    # a reader (curve) refuses and says how to migrate, leaving the store as it was
    code, output = stepwise("curve", "--run", "0" * 64, "--db", store_url)
    assert code == 1 and f"at schema version {SCHEMA_VERSION - 1}" in output
    assert "`stepwise migrate --db URL` upgrades it" in output
    with engine_on(store_url) as engine, engine.connect() as conn:
        assert stored_version(conn) == SCHEMA_VERSION - 1
    code, output = stepwise("migrate", "--db", store_url)
    assert code == 0 and f"schema version {SCHEMA_VERSION - 1} -> {SCHEMA_VERSION}" in output, output
    code, output = stepwise("migrate", "--db", store_url)
    assert code == 0 and f"already at schema version {SCHEMA_VERSION}" in output
    with engine_on(store_url) as engine:
        assert check_version(engine) == SCHEMA_VERSION
