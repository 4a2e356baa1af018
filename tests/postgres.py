"""PostgreSQL for the store tests, loaded as a pytest plugin (`pytest_plugins = ["postgres"]`).

- `STEPWISE_TEST_POSTGRES_URL=postgresql://user:pw@host:port/db`: use that server. Each test
  gets a database of its own, created and dropped through that URL (its role needs CREATEDB).
- Otherwise a throwaway server is started once per test session: `initdb` + `pg_ctl` from
  the PostgreSQL binaries (Debian's package `postgresql`: /usr/lib/postgresql/<v>/bin, or
  $STEPWISE_PG_BINDIR), in a temporary folder, on a free loopback port, trust
  authentication, fsync off. PostgreSQL refuses to run as root, so as root the cluster
  folder is given to the `postgres` user (or `nobody`) and the binaries run as that user.
  It is stopped and removed when the session ends.
- No binaries and no URL: the PostgreSQL tests fail, saying how to get a server, unless
  `STEPWISE_SKIP_POSTGRES=1` (which skips them in any case).

Fixtures: `postgres_admin_url` (session), `postgres_url` (a fresh database per test),
`store_backend` (parametrised: "sqlite", "postgresql"), `store_url` and `other_store_url`
(fresh, empty stores on that backend) and `store` (an engine on `store_url`, schema at the
current version). Every test that uses one of the last four runs on both backends.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.pool import NullPool

ENV_URL = "STEPWISE_TEST_POSTGRES_URL"
ENV_SKIP = "STEPWISE_SKIP_POSTGRES"
ENV_BINDIR = "STEPWISE_PG_BINDIR"
BACKENDS = ("sqlite", "postgresql")


def find_bindir() -> Path | None:
    """The folder holding initdb and pg_ctl: $STEPWISE_PG_BINDIR, PATH, then the usual places."""
    candidates: list[Path] = []
    if os.environ.get(ENV_BINDIR):
        candidates.append(Path(os.environ[ENV_BINDIR]))
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", path.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    candidates += [Path("/usr/local/pgsql/bin"), *sorted(Path("/opt/homebrew/opt").glob("postgresql*/bin"))]
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayServer:
    """A PostgreSQL cluster in a temporary folder, on 127.0.0.1 only, for one test session."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="stepwise-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.started = False
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            account = self._unprivileged_account()
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    @staticmethod
    def _unprivileged_account() -> pwd.struct_passwd:
        for name in ("postgres", "nobody"):
            try:
                return pwd.getpwnam(name)
            except KeyError:
                continue
        raise RuntimeError("running as root, and neither a 'postgres' nor a 'nobody' user exists to run "
                           "PostgreSQL as (it refuses root)")

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": f"{self.bindir}:/usr/bin:/bin", "LC_ALL": "C", "LANG": "C", "HOME": str(self.root),
               "TZ": "UTC"}
        proc = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]], cwd=self.root, env=env, capture_output=True, text=True,
            timeout=120, check=False, **self._user,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} exited with {proc.returncode}: {(proc.stderr or proc.stdout).strip()}"
                               + self.log_tail())
        return proc

    def log_tail(self) -> str:
        try:
            lines = self.log.read_text(errors="replace").splitlines()[-15:]
        except OSError:
            return ""
        return "\nserver log:\n" + "\n".join(lines) if lines else ""

    def start(self) -> str:
        """initdb + pg_ctl start; returns the URL of the `postgres` database (superuser `postgres`)."""
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        last: Exception | None = None
        for _ in range(3):  # the free port can be taken between choosing and binding it
            self.port = _free_port()
            options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                       "-c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60",
                          "start")
            except RuntimeError as err:
                last = err
                continue
            self.started = True
            return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def stop(self) -> None:
        try:
            if self.started:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL URL whose role may create databases, for the whole test session."""
    if os.environ.get(ENV_SKIP) == "1":
        pytest.skip(f"PostgreSQL tests skipped ({ENV_SKIP}=1)")
    url = os.environ.get(ENV_URL)
    if url:
        yield url
        return
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: the store tests need a PostgreSQL "
            "server. Install one (Debian: apt-get install -y postgresql; binaries go to "
            f"/usr/lib/postgresql/<version>/bin, or set {ENV_BINDIR}), or point {ENV_URL} at a running "
            f"server, or set {ENV_SKIP}=1 to skip the PostgreSQL tests.",
            pytrace=False,
        )
    try:
        server = ThrowawayServer(bindir)
    except RuntimeError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        url = server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as err:
        server.stop()
        pytest.fail(f"could not start a throwaway PostgreSQL server from {bindir}: {err}", pytrace=False)
    try:
        yield url
    finally:
        server.stop()


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """A new, empty database on the server of `admin_url`, dropped afterwards; yields its URL."""
    base = make_url(admin_url)
    admin: Engine = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"stepwise_test_{uuid.uuid4().hex[:16]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.dispose()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    with fresh_database(postgres_admin_url) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store_backend(request: pytest.FixtureRequest) -> str:
    """Each store test runs once per backend: "sqlite", then "postgresql"."""
    return str(request.param)


@contextmanager
def _empty_store(backend: str, request: pytest.FixtureRequest, folder: Path, name: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / name}.db"
    else:
        with fresh_database(request.getfixturevalue("postgres_admin_url")) as url:
            yield url


@pytest.fixture
def store_url(store_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL: a SQLite file, or a new PostgreSQL database."""
    with _empty_store(store_backend, request, tmp_path, "store") as url:
        yield url


@pytest.fixture
def other_store_url(store_backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second fresh, empty store on the same backend as `store_url`."""
    with _empty_store(store_backend, request, tmp_path, "other") as url:
        yield url


@pytest.fixture
def store(store_url: str) -> Iterator[Engine]:
    """An engine on `store_url` with the schema at the current version."""
    from harness.store import open_store

    engine = open_store(store_url)
    try:
        yield engine
    finally:
        engine.dispose()
