"""The documentation: the site builds with no warnings (broken links included) and the CLI
reference page is what the commands say today."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import docs_reference

REPO = Path(__file__).resolve().parents[1]
MKDOCS = Path(sys.executable).with_name("mkdocs")


def test_generated_reference_pages_match_the_code() -> None:
    for name, render in docs_reference.PAGES.items():
        page = REPO / "docs" / "reference" / name
        assert page.read_text(encoding="utf-8") == render(), f"docs/reference/{name} is out of date: run `make docs`"


def test_store_page_lists_every_table_and_column() -> None:
    from harness.store.models import Base

    text = docs_reference.render_store()
    for table in Base.metadata.tables.values():
        assert f"## {table.name}\n" in text
        for column in table.columns:
            assert f"| `{column.name}` |" in text


def test_cli_reference_covers_every_command() -> None:
    from harness.cli import COMMANDS

    text = docs_reference.render()
    for name in COMMANDS:
        assert f"## stepwise {name} {{#stepwise-{name}}}" in text


def test_reference_check_mode_reports_drift(tmp_path: Path) -> None:
    (tmp_path / "cli.md").write_text("# old\n")
    assert docs_reference.main(["--check", str(tmp_path)]) == 1
    assert docs_reference.main([str(tmp_path)]) == 0
    assert docs_reference.main(["--check", str(tmp_path)]) == 0


@pytest.mark.skipif(not MKDOCS.exists() and shutil.which("mkdocs") is None, reason="mkdocs (dev extra) not installed")
def test_docs_site_builds_without_warnings(tmp_path: Path) -> None:
    mkdocs = str(MKDOCS) if MKDOCS.exists() else "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                            capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "cli.html").is_file()


def _relative_links(markdown: str) -> list[str]:
    links = re.findall(r"\]\(([^)\s]+)\)", markdown)
    return [link for link in links if not re.match(r"[a-z]+:", link) and not link.startswith("#")]


def test_readme_links_point_at_files_that_exist() -> None:
    """The README is not part of the docs site, so mkdocs does not check its links: this does."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [link for link in _relative_links(readme) if not (REPO / link.split("#", 1)[0]).exists()]
    assert not missing, f"README.md links to missing files: {missing}"
