"""Suite plug-ins: the docs' example suite (docs/plugins/suite.md) installed as a third-party package,
listed, run as a pool with its own evaluator and aggregated; `harness.suites.aggregate` and `intervals`."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import runner_plugins
from helpers import install_without_pip, stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness import registry
from harness.suites import aggregate, intervals

REPO = Path(__file__).resolve().parents[1]


def docs_example(name: str) -> str:
    page = (REPO / "docs" / "plugins" / "suite.md").read_text()
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w+\n(.*?)```", page, re.S)
    assert match, f"docs/plugins/suite.md has no example {name}"
    return match.group(1)


@pytest.fixture
def colors_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The docs' example package "installed" without pip: its module on sys.path and a dist-info with the
    entry points of its pyproject.toml block (what pip would leave in site-packages)."""
    project = tomllib.loads(docs_example("my_suites/pyproject.toml"))["project"]
    name = install_without_pip(tmp_path, monkeypatch, "my_suites", docs_example("my_suites/__init__.py"), project)
    runner_plugins.register_isolated(monkeypatch)
    registry.reset()
    yield name
    registry.reset()


def test_the_docs_example_suite_lists_runs_and_aggregates(colors_package: str, tmp_path: Path) -> None:
    from harness.runner import RunConfig, run, verifier_settings_hashes
    from harness.scaling import curve
    from harness.store import Evaluation, Prompt, open_store, pool_arrays

    code, output = stepwise("list", "suites", "--plugin", colors_package)
    assert code == 0 and re.search(r"colors\s+my-suites 0\.1\.0\s+my_suites:ColorSuite", output), output
    code, output = stepwise("list", "suites")  # autoload is off in tests: installed, not loaded
    assert code == 0 and "colors" not in output.split("Installed but not loaded")[0]

    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    config = RunConfig(generator="shapes", evaluator=None, pool=3, verifiers=("plain",), suite="colors",
                       suite_params={"pass_mark": "0.6"}, db=db, out=out)
    with registry.configured([colors_package]):
        summary = run(config)
        hashes = verifier_settings_hashes(["plain"], {})
    assert (summary.prompts, summary.evaluated) == (8, 24)
    engine = open_store(db)
    try:
        with Session(engine) as s:
            assert list(s.scalars(select(Prompt.tag).order_by(Prompt.index))) == [
                c for c in ("red", "green", "blue", "white") for _ in range(2)]
            rows = list(s.scalars(select(Evaluation)))
            assert {r.backend for r in rows} == {"mean-color"} and len(rows) == 24
            assert all(0 <= r.score <= 1 and r.correct == (r.score >= 0.6) and len(r.details["mean"]) == 3
                       for r in rows)
            pool = pool_arrays(s, summary.run_id, "mean-color", rows[0].settings_hash, hashes)
    finally:
        engine.dispose()
    per_prompt = curve(pool.scores["plain"], pool.outcomes, [1, 3], valid=pool.valid)
    assert per_prompt[0] == pytest.approx(pool.outcomes.mean(axis=1))  # n=1: the mean score of the pool
    best = pool.outcomes[np.arange(8), pool.scores["plain"].argmax(axis=1)]
    assert per_prompt[1] == pytest.approx(best)  # n=3: the best-keyed candidate's score
    figures = aggregate(per_prompt, pool.tags, overall="color_score", overall_mean="prompts")
    assert list(figures) == ["red", "green", "blue", "white", "color_score"]
    assert figures["color_score"] == pytest.approx(per_prompt.mean(axis=1))


def test_aggregate_and_intervals_weigh_groups_or_prompts() -> None:
    values = np.array([1.0, 0.0, 0.5, 0.5, 0.5])
    groups = ["a", "b", "b", "b", "b"]
    assert aggregate(values, groups) == {"a": 1.0, "b": 0.375, "overall": 0.6875}
    assert aggregate(values, groups, overall="gm", overall_mean="prompts") == {"a": 1.0, "b": 0.375, "gm": 0.5}
    with pytest.raises(ValueError, match="overall_mean must be one of groups, prompts"):
        aggregate(values, groups, overall_mean="images")
    by_groups = intervals(values, groups, np.random.default_rng(0), n_boot=200)
    assert by_groups["a"] == (1.0, 1.0) and by_groups["overall"][0] <= 0.6875 <= by_groups["overall"][1]
    by_prompts = intervals(values, groups, np.random.default_rng(0), n_boot=200, overall="gm", overall_mean="prompts")
    assert by_prompts["b"] == by_groups["b"]  # the same resamples
    low, high = by_prompts["gm"]
    assert low <= 0.5 <= high and high <= (1.0 + 4 * 0.5) / 5 + 1e-12  # "b" can be at most 0.5 on average
