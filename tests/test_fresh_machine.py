"""A fresh machine needs only the README's two commands: `make test` does all the set-up CI does.

CI runs `.ci/run` on a clean checkout. If `.ci/run` did any set-up of its own (installing
chromium, PostgreSQL, ...), a newcomer typing `make test` would not get it. So `.ci/run` must be
`make test` and nothing else, `make test` must run the system-package step before the tests, and
that step must either install what is missing or stop with one line that says what to do.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SYSTEM_DEPS = REPO / "scripts" / "system_deps.sh"


def _commands(script: Path) -> list[str]:
    """The shell commands of a script: no comments, no blank lines, no shebang."""
    lines = [line.strip() for line in script.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    commands = _commands(REPO / ".ci" / "run")
    setup = {"set -euo pipefail", 'cd "$(dirname "$0")/.."'}
    assert [c for c in commands if c not in setup] == ["make test"]
    readme = (REPO / "README.md").read_text()
    two_commands = readme.split("## The two commands", 1)[1].split("```", 2)[1]
    assert re.search(r"^make test\b", two_commands, re.M), "the README's test command is `make test`"
    assert re.search(r"^make demo\b", two_commands, re.M)


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_test_installs_system_packages_before_testing() -> None:
    # A dry run (-n) prints the recipes it would run, in order, without running them.
    dry = subprocess.run(["make", "-n", "-C", str(REPO), "test"],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    deps = next(i for i, line in enumerate(dry) if "scripts/system_deps.sh test" in line)
    tests = next(i for i, line in enumerate(dry) if "pytest" in line)
    assert deps < tests
    # Creating the venv checks Python's venv module first (for `make demo` as for `make test`).
    makefile = (REPO / "Makefile").read_text()
    venv_rule = makefile.split("$(BIN)/python:", 1)[1].split("\n\n", 1)[0]
    assert venv_rule.index("system_deps.sh python") < venv_rule.index("-m venv")


def _system_deps(*parts: str, env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash") or "/bin/bash"
    return subprocess.run([bash, str(SYSTEM_DEPS), *parts], capture_output=True, text=True,
                          env={"PATH": str(path), **env}, timeout=30)


@pytest.fixture
def bare_path(tmp_path: Path) -> Path:
    """A PATH with `id` only: no chromium, no chromedriver, no initdb, no apt-get."""
    folder = tmp_path / "bin"
    folder.mkdir()
    os.symlink(shutil.which("id") or "/usr/bin/id", folder / "id")
    return folder


def test_missing_packages_stop_with_one_line_naming_them_and_the_switch(bare_path: Path) -> None:
    result = _system_deps("browser", path=bare_path,
                          env={"STEPWISE_APT_GET": "no-such-apt-get", "STEPWISE_SKIP_POSTGRES": "1"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "chromium chromium-driver" in lines[0]
    assert "STEPWISE_SKIP_BROWSER=1" in lines[0]
    assert "apt-get install chromium chromium-driver" in lines[0]


def test_skip_switches_need_nothing(bare_path: Path) -> None:
    result = _system_deps("test", path=bare_path, env={"STEPWISE_APT_GET": "no-such-apt-get",
                                                       "STEPWISE_SKIP_BROWSER": "1",
                                                       "STEPWISE_SKIP_POSTGRES": "1"})
    assert (result.returncode, result.stderr) == (0, "")


def test_a_missing_python_venv_names_debian_packages(bare_path: Path) -> None:
    result = _system_deps("python", path=bare_path, env={"STEPWISE_APT_GET": "no-such-apt-get",
                                                         "PYTHON": "python3.99"})
    assert result.returncode == 1
    assert "python3.99 python3.99-venv" in result.stderr


def test_an_unknown_part_is_refused(bare_path: Path) -> None:
    result = _system_deps("gpu", path=bare_path, env={})
    assert result.returncode == 2
    assert "unknown part 'gpu'" in result.stderr


def test_this_machine_has_what_make_test_needs() -> None:
    """Where the tests run, the step is satisfied (it exits at once without installing anything)."""
    env = {k: v for k, v in os.environ.items() if k != "STEPWISE_APT_GET"}
    env["STEPWISE_APT_GET"] = "no-such-apt-get"  # must not need to install
    result = subprocess.run(["bash", str(SYSTEM_DEPS), "test"], capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 0, shlex.join(["system_deps.sh", "test"]) + ": " + result.stderr


def test_license_is_the_one_pyproject_declares() -> None:
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert 'license = { text = "Apache-2.0" }' in (REPO / "pyproject.toml").read_text()
