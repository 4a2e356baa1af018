"""Stores that are damaged, read-only or moved: each says what is wrong in one line, never a traceback.

- migration 4: absolute image paths become relative to the run folder, recorded in run_folders;
- a schema_version row holding garbage, a dropped table or column: readers and writers name what is
  missing; `stepwise migrate` repairs what it can and refuses the rest by name;
- a read-only store (`chattr +i`, else permissions): curve, curate and submit work, curve says it could
  not record its results; run and migrate say "store is read-only: PATH";
- a run (store and run folder) moved to another directory: resume, curve, curate and submit work there;
  an image missing or changed is named, never used.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.store import Candidate, open_store, upgrade
from harness.store.migrations import SCHEMA_VERSION
from harness.store.models import RunFolder

POOL = 1


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    runner_plugins.register_isolated(monkeypatch)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project folder with a store and a run folder: the shapes generator over GenEval's 85-prompt suite
    (per_task 1), pool 1, the scripted verifier (it scores step previews, so previews are stored)."""
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        mp.setenv("STEPWISE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        flags = runner_plugins.tiny_model_flags(tmp_path_factory)
        project = tmp_path_factory.mktemp("made") / "project"
        project.mkdir()
        code, output = stepwise("run", *run_args(project, flags))
        assert code == 0, output
        yield {"project": project, "flags": flags, "run_id": output.strip().splitlines()[-1]}


def run_args(project: Path, flags: list[str], *extra: str, pool: int = POOL) -> list[str]:
    return ["--generator", "shapes", "--per-task", "1", "--pool", str(pool), "--verifier", "scripted",
            "--db", f"sqlite:///{project / 's.db'}", "--out", str(project / "out"), *flags, *extra]


@pytest.fixture
def project(made: dict[str, Any], tmp_path: Path) -> Path:
    """A copy of the project, as if it came from a cluster: the absolute folder the store records is gone."""
    project = Path(shutil.copytree(made["project"], tmp_path / "project"))
    sql(project, "UPDATE run_folders SET path = '/cluster/scratch/project/out'")
    return project


def db(project: Path) -> str:
    return f"sqlite:///{project / 's.db'}"


def curve(made: dict[str, Any], project: Path, *extra: str) -> tuple[int, str]:
    return stepwise("curve", "--run", made["run_id"], "--db", db(project), "--verifier", "scripted", "--n", "1",
                    *made["flags"], *extra)


def sql(project: Path, *statements: str) -> None:
    """Change the store behind stepwise's back (foreign keys off, as a hand-edit would)."""
    con = sqlite3.connect(project / "s.db")
    try:
        con.execute("PRAGMA foreign_keys = OFF")
        for statement in statements:
            con.execute(statement)
        con.commit()
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# migration 4: relative image paths


def test_migration_4_makes_image_paths_relative_to_the_run_folder(tmp_path: Path) -> None:
    from harness.store import (
        NewCandidate,
        NewPrompt,
        RunSpec,
        add_candidates,
        add_prompts,
        get_or_create_run,
        get_or_create_suite,
        make_engine,
    )

    store, out = tmp_path / "s.db", tmp_path / "runs" / "a"
    (out / "images").mkdir(parents=True)
    sha = [f"{j:064x}" for j in range(3)]
    engine = make_engine(f"sqlite:///{store}")
    try:
        assert upgrade(engine, target=3) == 3
        with Session(engine) as s, s.begin():  # what version 3's runner wrote: absolute paths
            suite = get_or_create_suite(s, "geneval", "a" * 64)
            (pid,) = add_prompts(s, suite.id, [NewPrompt(0, "single_object", "a photo of a cat")])
            spec = RunSpec("geneval", "a" * 64, "toy", "pkg", "1", {}, 0)
            run_id = get_or_create_run(s, spec, "old").id
            add_candidates(s, run_id, pid, [
                NewCandidate(j, str(out / "images" / f"{sha[j]}.png"), sha[j],
                             [str(out / "images" / f"{sha[2]}.png")] if j == 0 else []) for j in range(2)]
                + [NewCandidate(2, "elsewhere/x.png", sha[2])])  # not the runner's layout: kept as is
        assert upgrade(engine) == SCHEMA_VERSION >= 4
        with Session(engine) as s:
            rows = s.scalars(select(Candidate).order_by(Candidate.sample_index)).all()
            assert [c.image_path for c in rows] == [f"images/{sha[0]}.png", f"images/{sha[1]}.png", "elsewhere/x.png"]
            assert rows[0].step_previews == [f"images/{sha[2]}.png"]
            folder = s.get(RunFolder, run_id)
            assert folder is not None and folder.path == str(out) and folder.store_relative == "runs/a"
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# a damaged store


@pytest.mark.parametrize("value", ["-1", "'abc'", "2.5", "0"])
def test_a_garbage_schema_version_is_named_and_migrate_sets_it(made: dict[str, Any], project: Path,
                                                                value: str) -> None:
    sql(project, f"UPDATE schema_version SET version = {value}")
    code, output = curve(made, project)
    assert code == 1 and "schema_version.version holds" in output and "Traceback" not in output, output
    code, output = stepwise("run", *run_args(project, made["flags"]))
    assert code == 1 and "schema_version.version holds" in output, output
    code, output = stepwise("migrate", "--db", db(project))
    assert code == 0 and f"set to {SCHEMA_VERSION}, the version its tables fit" in output, output
    assert curve(made, project)[0] == 0


def test_a_garbage_version_on_tables_that_fit_no_version_is_refused(project: Path) -> None:
    sql(project, "UPDATE schema_version SET version = -1", "DROP TABLE results")  # a table of version 1
    code, output = stepwise("migrate", "--db", db(project))
    assert code == 1 and "its tables fit no single schema version either" in output and "Traceback" not in output
    sql(project, "DELETE FROM schema_version")
    code, output = stepwise("migrate", "--db", db(project))
    assert code == 1 and "holds no row, not one row (id 1)" in output


def test_a_dropped_table_is_named_and_migrate_recreates_it(made: dict[str, Any], project: Path) -> None:
    sql(project, "DROP TABLE verifier_scores")
    for code, output in (curve(made, project), stepwise("run", *run_args(project, made["flags"]))):
        assert code == 1 and "lacks table verifier_scores" in output and "stepwise migrate" in output, output
        assert "Traceback" not in output
    code, output = stepwise("migrate", "--db", db(project))
    assert code == 0 and "recreated table verifier_scores, empty" in output, output
    code, output = stepwise("run", *run_args(project, made["flags"]))  # scores the candidates again
    assert code == 0 and f"{85 * POOL} scores" in output, output
    assert curve(made, project)[0] == 0


def test_a_dropped_column_is_added_back_or_refused(made: dict[str, Any], project: Path) -> None:
    sql(project, "ALTER TABLE verifier_scores DROP COLUMN details", "ALTER TABLE candidates DROP COLUMN seed")
    code, output = curve(made, project)
    assert code == 1 and "lacks column candidates.seed, column verifier_scores.details" in output, output
    code, output = stepwise("migrate", "--db", db(project))
    assert code == 0 and "added column candidates.seed (empty)" in output, output
    assert "added column verifier_scores.details (default {})" in output
    assert curve(made, project)[0] == 0
    sql(project, "ALTER TABLE candidates DROP COLUMN image_sha256")
    code, output = stepwise("migrate", "--db", db(project))
    assert code == 1 and "column candidates.image_sha256 (it holds data nothing can restore)" in output


def test_a_dropped_table_that_rows_refer_to_is_refused(project: Path) -> None:
    sql(project, "DROP TABLE runs")
    code, output = stepwise("migrate", "--db", db(project))
    assert code == 1 and "table runs (rows of" in output and "candidates (85 rows)" in output, output
    assert "restore the store from a backup (nothing was changed)" in output


# ---------------------------------------------------------------------------------------------
# a read-only store


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make `folder` and its files unwritable, even for root: `chattr +i` where it works, else permissions."""
    paths = [folder, *sorted(p for p in folder.iterdir() if p.is_file())]
    immutable = os.geteuid() == 0 and all(subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode
                                           == 0 for p in paths)
    if not immutable:
        if os.geteuid() == 0:
            pytest.skip("root without chattr: nothing here can make a file read-only")
        for p in paths:
            p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield
    finally:
        for p in paths:
            if immutable:
                subprocess.run(["chattr", "-i", str(p)], check=True)
            else:
                p.chmod(0o755 if p.is_dir() else 0o644)


def test_a_read_only_store_serves_readers_and_refuses_writers(made: dict[str, Any], project: Path,
                                                              tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    with read_only(project):
        code, output = curve(made, project)
        assert code == 0 and "could not record the results in the store: store is read-only" in output, output
        assert "scripted" in output  # the table was printed all the same
        for args in (["run", *run_args(project, made["flags"])], ["migrate", "--db", db(project)]):
            code, output = stepwise(*args)
            assert code == 1 and f"store is read-only: {project / 's.db'}" in output and "Traceback" not in output
        code, output = stepwise("submit", made["run_id"], "--name", "ro", "--slug", "ro", "--db", db(project),
                                "--verifier", "scripted", "--n", "1", "--out", str(subs), *made["flags"])
        assert code == 0, output
        code, output = stepwise("curate", "--run", made["run_id"], "--db", db(project), "-o", str(tmp_path / "data"),
                                "--parm", "skip", *made["flags"])
        assert code == 0, output
    assert (subs / "ro" / "export.jsonl").is_file() and (tmp_path / "data" / "dpo.jsonl").is_file()


def test_outputs_below_a_regular_file_with_a_store(made: dict[str, Any], project: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    for args in (["curate", "--run", made["run_id"], "--db", db(project), "-o", str(notes / "data"), "--parm", "skip",
                  *made["flags"]],
                 ["submit", made["run_id"], "--name", "x", "--slug", "x", "--db", db(project), "--verifier",
                  "scripted", "--n", "1", "--out", str(notes / "subs"), *made["flags"]]):
        code, output = stepwise(*args)
        assert code == 1 and str(notes) in output and "Traceback" not in output, output
    assert notes.read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# a run moved to another directory


def test_a_moved_run_resumes_curves_curates_and_submits(made: dict[str, Any], project: Path, tmp_path: Path) -> None:
    moved = tmp_path / "laptop" / "project"
    moved.parent.mkdir()
    shutil.move(project, moved)  # the store and its run folder, copied off the cluster together
    flags = made["flags"]
    # resume: raise the pool (new images) and score every candidate with other verifier settings (old images
    # and their step previews are read from where the run folder is now)
    code, output = stepwise("run", *run_args(moved, flags, "--verifier-param", "scripted:channel=1", pool=2))
    assert code == 0 and "85 generated" in output and f"{85 * 2} scores" in output, output
    code, output = curve(made, moved, "--verifier-param", "scripted:channel=1")
    assert code == 0, output
    code, output = stepwise("curate", "--run", made["run_id"], "--db", db(moved), "-o", str(moved / "data"),
                            "--parm", "skip", *flags)
    assert code == 0, output
    records = json.loads((moved / "data" / "orm.json").read_text())
    assert records and all(r["image"].startswith(str(moved / "out" / "images")) for r in records)
    code, output = stepwise("submit", made["run_id"], "--name", "moved", "--slug", "moved", "--db", db(moved),
                            "--verifier", "scripted", "--n", "1", "--pool", "1", "--out", str(moved / "subs"), *flags)
    assert code == 0, output
    assert len(list((moved / "subs" / "moved" / "images").iterdir())) == 85
    engine = open_store(db(moved), upgrade_schema=False)
    try:
        with Session(engine) as s:
            folder = s.get(RunFolder, made["run_id"])
            assert folder is not None and folder.path == str(moved / "out") and folder.store_relative == "out"
    finally:
        engine.dispose()


def test_a_run_folder_moved_apart_from_its_store(made: dict[str, Any], project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "disk" / "runs"
    elsewhere.parent.mkdir()
    shutil.move(project / "out", elsewhere)
    args = ["submit", made["run_id"], "--name", "x", "--slug", "x", "--db", db(project), "--verifier", "scripted",
            "--n", "1", "--out", str(tmp_path / "subs"), *made["flags"]]
    code, output = stepwise(*args)
    assert code == 1 and "are not found (looked for images/" in output and "Traceback" not in output, output
    assert "give the run's --out folder with --run-dir" in output
    code, output = stepwise(*args, "--no-images")  # no image needed: no folder needed
    assert code == 0, output
    code, output = stepwise(*args, "--run-dir", str(elsewhere), "--force")
    assert code == 0, output
    code, output = stepwise("curate", "--run", made["run_id"], "--db", db(project), "-o", str(tmp_path / "data"),
                            "--parm", "skip", "--run-dir", str(elsewhere), *made["flags"])
    assert code == 0, output


def test_a_missing_or_changed_image_is_named_never_used(made: dict[str, Any], project: Path, tmp_path: Path) -> None:
    engine = open_store(db(project), upgrade_schema=False)
    try:
        with Session(engine) as s:
            first, second = s.scalars(select(Candidate).order_by(Candidate.id).limit(2)).all()
            first_path, second_path = first.image_path, second.image_path
    finally:
        engine.dispose()
    changed = project / "out" / second_path
    changed.write_bytes(changed.read_bytes() + b"\0")  # still a PNG, other bytes
    code, output = stepwise("curate", "--run", made["run_id"], "--db", db(project), "-o", str(tmp_path / "data"),
                            "--parm", "skip", *made["flags"])
    assert code == 1 and str(changed) in output and "the store says" in output, output
    # a resumed run that must score the changed image again refuses it, naming it
    code, output = stepwise("run", *run_args(project, made["flags"], "--verifier-param", "scripted:channel=2"))
    assert code == 1 and str(changed) in output and "no longer matches the stored sha256" in output, output
    (project / "out" / first_path).unlink()
    code, output = stepwise("submit", made["run_id"], "--name", "x", "--slug", "x", "--db", db(project), "--verifier",
                            "scripted", "--n", "1", "--out", str(tmp_path / "subs"), "--run-dir",
                            str(project / "out"), *made["flags"])
    assert code == 1 and f"image {project / 'out' / first_path} is missing" in output, output
    assert not (tmp_path / "subs" / "x").exists()
