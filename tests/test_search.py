"""Search strategies end to end: `stepwise run --strategy NAME --budget B` -> curve -> submit -> validate -> site.

The generator is `shapes-stepper` (a stepping test double: one shape per step from the row's own
stream), the verifiers the real PARM / ORM code on a scripted engine and the channel-mean `scripted`
one, GenEval's evaluator the tiny random detector and CLIP (`runner_plugins.tiny_model_flags`). A
pool run of the same generator (2 candidates: the searches' seeds at budget 2) gives the best-of-n
rows the searches are compared with, and its verdicts are reused for picks that are pool candidates.
To keep the suite fast, the whole-suite runs make one GenEval sample per prompt (`--samples 1`);
the runs on a few prompts use the default, 4.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness.store import open_store

pytest_plugins = ["postgres"]

BUILTINS = {  # strategy -> its --strategy-param values here
    "parm-prune": ["verifier=scripted-parm"],
    "step-beam": ["verifier=scripted", "points=2"],
    "smc": ["verifier=scripted", "points=2", "lam=5"],
    "adaptive-n": ["verifier=scripted-orm", "tau=0.6"],
    "reflect": ["verifier=scripted-orm"],
}
BUDGET = 2
SAMPLES = ("--samples", "1")  # the whole-suite runs: one pick per prompt
SUBSET = "0,80..84"  # for the runs that need not cover the suite (4 samples each)


@dataclass
class Suite:
    root: Path
    db: str
    flags: list[str]
    run_id: str
    submissions: Path


def search_args(strategy: str, db: str | None, out: Path, flags: list[str], *extra: str,
                budget: int = BUDGET) -> list[str]:
    params = [x for value in BUILTINS.get(strategy, []) for x in ("--strategy-param", value)]
    return ["run", "--generator", "shapes-stepper", "--per-task", "1", "--strategy", strategy, *params,
            "--budget", str(budget), *(["--db", db] if db else []), "--out", str(out), *flags, *extra]


def ok(*args: str) -> str:
    code, output = stepwise(*args)
    assert code == 0, output
    return output


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("search")
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        flags = runner_plugins.tiny_model_flags(tmp_path_factory)
        db = f"sqlite:///{root / 's.db'}"
        out = ok("run", "--generator", "shapes-stepper", "--per-task", "1", "--pool", str(BUDGET),
                 "--verifier", "scripted", "--verifier", "scripted-orm", "--db", db, "--out", str(root / "out"), *flags)
        run_id = out.strip().splitlines()[-1]
        for strategy in [*BUILTINS, "peek"]:
            assert ok(*search_args(strategy, db, root / "out", flags, *SAMPLES)).strip().splitlines()[-1] == run_id
        yield Suite(root, db, flags, run_id, root / "submissions")


def picks_of(db: str, strategy: str | None = None) -> dict[tuple[str, int, int, int], tuple[str, int]]:
    """{(strategy, budget, prompt index, sample): (image sha256, generator NFE)} of a store's searches."""
    from harness.store import Prompt, Search, SearchPick

    engine = open_store(db)
    try:
        with Session(engine) as s:
            rows = s.execute(select(Search.strategy, Search.budget, Prompt.index, SearchPick.sample_index,
                                    SearchPick.image_sha256, SearchPick.ledger)
                             .join(SearchPick, SearchPick.search_id == Search.id)
                             .join(Prompt, SearchPick.prompt_id == Prompt.id)).all()
    finally:
        engine.dispose()
    return {(st, b, i, k): (sha, led["generator_nfe"]) for st, b, i, k, sha, led in rows
            if strategy is None or st == strategy}


def test_every_builtin_runs_over_the_suite_within_its_budget(suite: Suite) -> None:
    picks = picks_of(suite.db)
    for strategy in BUILTINS:
        mine = {k: v for k, v in picks.items() if k[0] == strategy}
        assert len(mine) == 85  # every prompt, one GenEval sample
        assert all(nfe <= BUDGET * 4 for _, nfe in mine.values())  # budget x total_steps
    # parm-prune truncates; step-beam and smc run every row to the end
    assert sum(nfe for k, (_, nfe) in picks.items() if k[0] == "parm-prune") < 85 * BUDGET * 4
    assert {nfe for k, (_, nfe) in picks.items() if k[0] in ("step-beam", "smc")} == {BUDGET * 4}


def test_picks_are_stored_relative_to_the_run_folder(suite: Suite) -> None:
    """As pool candidates are: a store and its run folder moved together still find the picks."""
    from harness.store import SearchPick

    engine = open_store(suite.db)
    try:
        with Session(engine) as s:
            paths = s.scalars(select(SearchPick.image_path)).all()
    finally:
        engine.dispose()
    assert paths and all(p == f"images/{Path(p).stem}.png" and (suite.root / "out" / p).is_file() for p in paths)


def test_a_rerun_is_a_no_op(suite: Suite) -> None:
    before = picks_of(suite.db)
    code, output = stepwise(*search_args("parm-prune", suite.db, suite.root / "out", suite.flags, *SAMPLES))
    assert code == 0 and "0 (prompt, budget) searches needed work" in output
    assert picks_of(suite.db) == before


def test_curve_shows_searches_next_to_best_of_n(suite: Suite) -> None:
    data = json.loads(ok("curve", "--run", suite.run_id, "--db", suite.db, *suite.flags, "--verifier", "scripted",
                         "--n", "1..2", "--bootstrap", "200", "--json"))
    assert set(data) >= {"scripted", "random", "oracle", *BUILTINS, "peek"}
    row = data["parm-prune"][str(BUDGET)]
    assert 0.0 <= row["low"] <= row["overall"] <= row["high"] <= 1.0 and 0 < row["nfe"] <= BUDGET * 4
    text = ok("curve", "--run", suite.run_id, "--db", suite.db, *suite.flags, "--verifier", "scripted", "--n", "1..2",
              "--bootstrap", "200", "--plot", str(suite.root / "curve.png"))
    assert "searches (n = budget B" in text and "a best-of-n row costs n x 4 NFE" in text
    assert "reads the benchmark's metadata (declared): strategy:peek" in text
    assert "prompt rewriting: yes for reflect" in text
    assert (suite.root / "curve.png").stat().st_size > 10_000
    from harness.store import Result

    engine = open_store(suite.db)
    try:
        with Session(engine) as s:
            recorded = {(r.strategy, r.n): r for r in s.scalars(select(Result).where(Result.run_id == suite.run_id))}
    finally:
        engine.dispose()
    assert recorded[("parm-prune", BUDGET)].details["search"]["nfe_per_prompt"] == pytest.approx(row["nfe"])
    assert recorded[("parm-prune", BUDGET)].verifier == "scripted-parm"


def test_adaptive_n_exact_rows_from_the_pool(suite: Suite) -> None:
    data = json.loads(ok("curve", "--run", suite.run_id, "--db", suite.db, *suite.flags, "--verifier", "scripted-orm",
                         "--n", "1..2", "--bootstrap", "200", "--json", "--adaptive-n", "scripted-orm",
                         "--adaptive-tau", "0,0.6,inf", "--adaptive-batch", "1"))
    rows = data["adaptive-n(scripted-orm)"]
    assert rows["0.0"]["candidates"] == 1.0 and rows["inf"]["candidates"] == 2.0
    assert 1.0 < rows["0.6"]["candidates"] < 2.0
    assert rows["inf"]["overall"] == pytest.approx(data["scripted-orm"]["2"]["overall"])  # never satisfied: best-of-2
    assert rows["0.0"]["overall"] == pytest.approx(data["random"]["1"]["overall"])  # the first candidate: a random one


@pytest.fixture(scope="module")
def site(suite: Suite) -> Path:
    for strategy in [*BUILTINS, "peek"]:  # images (picks, previews) shipped with one: the trace view's
        ok("submit", suite.run_id, "--search", strategy, "--name", f"Tiny {strategy}", "--slug", f"tiny-{strategy}",
           "--db", suite.db, "--out", str(suite.submissions), *suite.flags,
           *([] if strategy == "parm-prune" else ["--no-images"]))
    ok("submit", suite.run_id, "--name", "Tiny pool", "--slug", "tiny-pool", "--db", suite.db, "--verifier",
       "scripted", "--n", "2", "--out", str(suite.submissions), "--no-images", *suite.flags)
    output = ok("validate", str(suite.submissions))
    assert "7 valid, 0 invalid" in output
    ok("leaderboard", "build", "--submissions", str(suite.submissions), "--out", str(suite.root / "site"))
    return suite.root / "site"


def test_submissions_recompute_the_curve_s_numbers(suite: Suite, site: Path) -> None:
    from harness.submissions.load import load_entry

    data = json.loads(ok("curve", "--run", suite.run_id, "--db", suite.db, *suite.flags, "--verifier", "scripted",
                         "--n", "1..2", "--json"))
    for strategy in BUILTINS:
        entry = load_entry(suite.submissions / f"tiny-{strategy}")
        assert entry.search is not None and entry.search.budget == BUDGET and entry.manifest.system.n == BUDGET
        assert entry.scores["overall"] == pytest.approx(data[strategy][str(BUDGET)]["overall"])
        assert entry.search.nfe == pytest.approx(data[strategy][str(BUDGET)]["nfe"])
        assert len(entry.images) == 85 and entry.curves == {} and entry.manifest.protocol.images_per_prompt == 1
    assert load_entry(suite.submissions / "tiny-reflect").manifest.protocol.prompt_rewriting is True
    assert load_entry(suite.submissions / "tiny-peek").search.reads_metadata == ("strategy:peek",)
    header = json.loads((suite.submissions / "tiny-parm-prune" / "export.jsonl").read_text().splitlines()[0])
    assert header["format"] == "stepwise-search-export" and header["search"]["total_steps"] == 4


def test_validate_catches_a_forged_search(suite: Suite, site: Path, tmp_path: Path) -> None:
    import shutil

    forged = tmp_path / "forged"
    shutil.copytree(suite.submissions / "tiny-parm-prune", forged)
    lines = (forged / "export.jsonl").read_text().splitlines()
    pick = json.loads(lines[1])
    pick["ledger"]["generator_nfe"] = 99  # more than the budget
    pick["correct"] = not pick["correct"]
    lines[1] = json.dumps(pick)
    (forged / "export.jsonl").write_text("\n".join(lines) + "\n")
    code, output = stepwise("validate", str(forged))
    assert code == 1 and "99 generator NFE, more than the budget allows (2 x 4 = 8)" in output
    traces = (forged / "traces.jsonl").read_text().splitlines()
    pick["ledger"]["generator_nfe"] = 1
    lines[1] = json.dumps(pick)
    (forged / "export.jsonl").write_text("\n".join(lines) + "\n")
    event = json.loads(traces[0])
    event["events"][0]["seeds"] = [1, 2]
    traces[0] = json.dumps(event)
    (forged / "traces.jsonl").write_text("\n".join(traces) + "\n")
    code, output = stepwise("validate", str(forged))
    assert code == 1 and "do not hash to the sha256 the export names" in output
    # a verdict flipped with everything else intact: re-derived from the pick's detections, it is refused
    shutil.rmtree(forged)
    shutil.copytree(suite.submissions / "tiny-parm-prune", forged)
    lines = (forged / "export.jsonl").read_text().splitlines()
    pick = json.loads(lines[1])
    pick["correct"] = not pick["correct"]
    lines[1] = json.dumps(pick)
    (forged / "export.jsonl").write_text("\n".join(lines) + "\n")
    code, output = stepwise("validate", str(forged), "--recheck", "none")
    assert code == 1 and "prompt 00000 sample 0: correct is" in output and "from its stored detections" in output


def test_search_entries_are_consistent_but_not_re_checked(suite: Suite, site: Path) -> None:
    """A search's picks are checked for consistency, never ranked as re-checked: only running the search
    again would show they are what it makes."""
    from harness.submissions.load import load_entry

    entry = load_entry(suite.submissions / "tiny-parm-prune")
    assert entry.verification is not None and entry.verification.level == "consistent"
    data = json.loads((site / "leaderboard.json").read_text())
    search_entries = [e for e in data["entries"] if e.get("search")]
    assert search_entries and {e["table"] for e in search_entries} == {"unverified"}


def test_site_lists_plots_and_traces_search_entries(site: Path) -> None:
    index = (site / "index.html").read_text()
    assert index.count('class="badge search-entry" data-budget="2"') == 6
    assert 'data-mark="reads-metadata"' in index and 'data-mark="prompt-rewriting"' in index
    scaling = (site / "scaling.html").read_text()
    assert 'id="search-shapes-stepper-hf"' in scaling and 'data-pools="tiny-pool"' in scaling
    assert scaling.count('class="search-point"') == 6 * 2  # NFE and seconds charts
    entry = (site / "entry" / "tiny-parm-prune.html").read_text()
    assert 'id="search"' in entry and entry.count('class="trace"') == 85
    assert 'data-fate="stopped"' in entry and 'data-fate="picked"' in entry and "trace-preview" in entry
    data = json.loads((site / "leaderboard.json").read_text())
    by_slug = {e["slug"]: e for e in data["entries"]}
    assert by_slug["tiny-peek"]["marks"] == ["reads metadata"] and by_slug["tiny-pool"]["search"] is None
    assert by_slug["tiny-smc"]["search"]["budget"] == 2


# ---------------------------------------------------------------------------------------------
# resuming, sharding, merging


def test_kill_9_during_a_search_then_resume_gives_the_same_picks(suite: Suite, tmp_path: Path) -> None:
    db, ref = f"sqlite:///{tmp_path / 'killed.db'}", f"sqlite:///{tmp_path / 'ref.db'}"
    args = search_args("parm-prune", db, tmp_path / "out", suite.flags, "--prompts", SUBSET)
    env = {**os.environ, "STEPWISE_TEST_KILL_AT": "a photo of four snowboards", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "runner_plugins", *args], env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    done = picks_of(db)
    assert 0 < len(done) < 6 * 4 and len(done) % 4 == 0  # whole prompts only: one transaction each
    ok(*args)  # resume, in this process (no kill)
    ok(*search_args("parm-prune", ref, tmp_path / "ref", suite.flags, "--prompts", SUBSET))
    assert picks_of(db) == picks_of(ref) and len(picks_of(db)) == 6 * 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_torchrun_two_ranks_then_merge(suite: Suite, tmp_path: Path) -> None:
    out = tmp_path / "ranks"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    env.pop("STEPWISE_DB", None)
    args = search_args("step-beam", None, out, suite.flags, "--prompts", SUBSET)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
                           str(_free_port()), "--module", "runner_plugins", *args], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = sorted(out.glob("stepwise-rank*.db"))
    assert [p.name for p in ranks] == ["stepwise-rank0.db", "stepwise-rank1.db"]
    assert {k[2] for k in picks_of(f"sqlite:///{ranks[0]}")} == {0, 80, 82, 84}  # index % 2 == rank
    merged = f"sqlite:///{tmp_path / 'merged.db'}"
    for _ in range(2):  # merging twice adds nothing
        ok("merge", *map(str, ranks), "--db", merged)
    single = f"sqlite:///{tmp_path / 'single.db'}"
    ok(*search_args("step-beam", single, tmp_path / "single", suite.flags, "--prompts", SUBSET))
    assert picks_of(merged) == picks_of(single) and len(picks_of(merged)) == 6 * 4
    data = json.loads(ok("curve", "--run", suite.run_id, "--db", merged, *suite.flags, "--json", "--bootstrap", "200"))
    assert set(data) == {"step-beam"}  # a run with searches and no pool: the searches alone


# ---------------------------------------------------------------------------------------------
# the command line


def test_clear_errors(suite: Suite, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    base = ["--per-task", "1", "--prompts", "0", "--db", db, "--out", str(tmp_path), *suite.flags]
    code, output = stepwise("run", "--generator", "shapes-stepper", "--strategy", "parm-prune", *base)
    assert code == 2 and "search strategy 'parm-prune' needs --budget B" in output
    code, output = stepwise("run", "--generator", "shapes-stepper", "--pool", "2", "--budget", "2", *base)
    assert code == 2 and "--budget and --samples (or `budget` / `samples` in the spec) are for search" in output
    code, output = stepwise("run", "--generator", "shapes", "--strategy", "parm-prune", "--budget", "2", *base)
    assert code == 1 and "generator 'shapes' cannot be driven step by step" in output
    code, output = stepwise("run", "--generator", "shapes-stepper", "--strategy", "step-beam", "--budget", "1",
                            "--strategy-param", "verifier=scripted", *base)
    assert code == 1 and "width 1 x children 2 = 2 rows, more than the budget 1" in output
    code, output = stepwise("curve", "--run", suite.run_id, "--db", suite.db, *suite.flags, "--strategy", "smc")
    assert code == 2 and "strategy 'smc' is a search strategy (no select_key)" in output
    code, output = stepwise("submit", suite.run_id, "--search", "smc", "--budget", "9", "--name", "x", "--slug", "x",
                            "--db", suite.db, "--out", str(tmp_path), *suite.flags)
    assert code == 1 and "has no search 'smc' at budget 9; it has:" in output


def test_a_search_can_select_with_the_oracle_and_is_marked(suite: Suite, tmp_path: Path) -> None:
    """The oracle (GenEval's verdicts, computed by the run's evaluator on the images it is shown) drives a
    search like any verifier (the leaderboard marks entries whose verifiers include it, `search_view.marks`)."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    ok("run", "--generator", "shapes-stepper", "--per-task", "1", "--prompts", "0,80", "--strategy", "step-beam",
       "--strategy-param", "verifier=oracle", "--strategy-param", "points=1", "--budget", "2", "--samples", "1",
       "--db", db, "--out", str(tmp_path / "out"), *suite.flags)
    picks = picks_of(db)
    assert len(picks) == 2
    from harness.store import SearchTrace

    engine = open_store(db)
    try:
        with Session(engine) as s:
            events = [e for t in s.scalars(select(SearchTrace)) for e in t.events]
    finally:
        engine.dispose()
    scored = [e for e in events if e["event"] == "score" and e["verifier"] == "oracle"]
    assert scored and all(r["score"] in (0.0, 1.0) for e in scored for r in e["results"])


def test_a_spec_file_takes_budgets_and_samples(suite: Suite, tmp_path: Path) -> None:
    get = dict(zip(suite.flags[::2], suite.flags[1::2], strict=True))
    spec = tmp_path / "search.toml"
    spec.write_text(f"""
generator = "shapes-stepper"
per_task = 1
prompts = [0, 80]
strategy = "adaptive-n"
budget = [1, 3]
samples = 2
backend = "hf"
detector = "{get['--detector']}"
clip_arch = "{get['--clip-arch']}"
clip_weights = "{get['--clip-weights']}"
db = "sqlite:///{tmp_path / 's.db'}"
out = "{tmp_path / 'out'}"
[strategy_params]
verifier = "scripted-orm"
tau = 0.9
""")
    output = ok("run", "--spec", str(spec), "--threshold", "0.05")
    assert "budget 1" in output and "budget 3" in output and "8 picks" in output  # 2 prompts x 2 samples x 2 budgets
    assert {(k[1], k[3]) for k in picks_of(f"sqlite:///{tmp_path / 's.db'}")} == {(1, 0), (1, 1), (3, 0), (3, 1)}


# ---------------------------------------------------------------------------------------------
# migration 5


def test_migration_5_adds_the_search_tables_and_keeps_older_rows(store_url: str) -> None:
    from sqlalchemy import inspect

    from harness.search.store import NewPick, SearchSpec, add_picks, get_or_create_search
    from harness.store import (
        NewPrompt,
        Run,
        RunSpec,
        SearchPick,
        SearchTrace,
        add_prompts,
        get_or_create_run,
        get_or_create_suite,
        make_engine,
        upgrade,
    )
    from harness.store.migrations import SCHEMA_VERSION

    engine = make_engine(store_url)
    try:
        assert upgrade(engine, target=4) == 4
        with engine.connect() as conn:
            assert "searches" not in inspect(conn).get_table_names()
        spec = RunSpec("geneval", "a" * 64, "toy", "pkg", "1", {}, 0)
        with Session(engine) as s, s.begin():
            suite_id = get_or_create_suite(s, "geneval", "a" * 64).id
            (prompt_id,) = add_prompts(s, suite_id, [NewPrompt(0, "counting", "two cats")])
            run_id = get_or_create_run(s, spec, "old").id
        assert upgrade(engine) == SCHEMA_VERSION >= 5
        with Session(engine) as s, s.begin():
            assert s.get(Run, run_id).code_version == "old"
            search = get_or_create_search(s, run_id, SearchSpec("parm-prune", "pkg", "1", {}, {}, 4, 2, 18))
            events = [{"event": "pick", "image": "b" * 64, "path": None}]
            ids = add_picks(s, search.id, prompt_id, [NewPick(0, "x.png", "b" * 64, {"generator_nfe": 3}, events)])
            assert add_picks(s, search.id, prompt_id, [NewPick(0, "y.png", "c" * 64, {}, [])]) == ids  # first wins
        with Session(engine) as s, s.begin():
            assert s.get(SearchPick, ids[0]).image_path == "x.png"
            s.delete(s.get(Run, run_id))  # a run's searches, picks and traces go with it
        with Session(engine) as s:
            assert s.scalars(select(SearchPick)).all() == [] and s.scalars(select(SearchTrace)).all() == []
    finally:
        engine.dispose()
