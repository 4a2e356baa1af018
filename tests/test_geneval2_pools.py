"""Pools on GenEval 2: the runner takes the suite plug-in from the run, judges every candidate with
Soft-TIFA on a tiny random Qwen3-VL and stores the verdicts with their scores; the exact best-of-n
curve of a real-valued score; the suite registry; bad suite input as one line."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import runner_plugins
from geneval2_synthetic import RECORDS, write_data
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness import registry
from harness.geneval2.evaluator import SoftTifaSpec, VqaModel
from harness.geneval2.soft_tifa import geometric_mean
from harness.geneval2.suite import EVALUATOR_NAME, SoftTifaEvaluator
from harness.runner import RunConfig, RunError, run
from harness.scaling import curve
from harness.store import Candidate, Evaluation, Prompt, open_store, pool_arrays
from harness.suites import aggregate
from harness.tiny.qwen3_vl import write_tiny_qwen3_vl

POOL = 3


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_qwen3_vl(tmp_path_factory.mktemp("tiny-qwen3vl"))


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    runner_plugins.register_isolated(monkeypatch)
    yield


def config(tmp_path: Path, tiny: Path, **extra: object) -> RunConfig:
    data = write_data(tmp_path / "geneval2_data.jsonl")
    values: dict[str, object] = {"generator": "shapes", "evaluator": None, "pool": POOL, "verifiers": ("plain",),
                                 "suite": "geneval2", "db": f"sqlite:///{tmp_path / 's.db'}", "out": tmp_path / "out",
                                 "suite_params": {"data": str(data), "model": str(tiny), "dtype": "float32",
                                                  "device": "cpu"}}
    values.update(extra)
    return RunConfig(**values)  # type: ignore[arg-type]


def test_a_geneval2_pool_is_judged_by_soft_tifa_and_curves_are_exact(tmp_path: Path, tiny: Path) -> None:
    cfg = config(tmp_path, tiny)
    summary = run(cfg)
    assert (summary.prompts, summary.generated, summary.evaluated) == (3, 3 * POOL, 3 * POOL)
    spec = SoftTifaSpec(model=str(tiny), dtype="float32", device="cpu")
    engine = open_store(cfg.db)
    try:
        with Session(engine) as s:
            tags = list(s.scalars(select(Prompt.tag).order_by(Prompt.index)))
            assert tags == [f"atoms={r['atom_count']}" for r in RECORDS]
            rows = s.execute(select(Evaluation, Candidate, Prompt)
                             .join(Candidate, Evaluation.candidate_id == Candidate.id)
                             .join(Prompt, Candidate.prompt_id == Prompt.id)
                             .order_by(Prompt.index, Candidate.sample_index)).all()
            assert len(rows) == 3 * POOL
            for e, _, p in rows:
                assert (e.backend, e.settings_hash) == (EVALUATOR_NAME, spec.key())
                assert e.score == geometric_mean(e.details["soft_scores"]) == e.details["soft_tifa_gm"]
                assert e.correct == all(e.details["tifa_scores"])
                assert len(e.details["soft_scores"]) == len(RECORDS[p.index]["vqa_list"])
                assert (e.reason == "") == e.correct and e.detections is None
            # the very figures the evaluator gives for the stored image files, judged again one prompt at a time
            again = SoftTifaEvaluator(spec, model=VqaModel(spec))
            first = [(c, p) for _, c, p in rows if p.index == 0]
            verdicts = again.judge([cfg.out / c.image_path for c, _ in first], [RECORDS[0]] * len(first))
            assert [v.score for v in verdicts] == [e.score for e, _, p in rows if p.index == 0]
            pool = pool_arrays(s, summary.run_id, EVALUATOR_NAME, spec.key(), {"plain": _plain_hash()})
    finally:
        engine.dispose()

    assert run(cfg).evaluated == 0  # resumed: nothing left to judge
    check_stored_suite(cfg, summary.run_id, tiny, spec)
    outcome = pool.outcomes
    assert outcome.dtype == np.float64 and not np.isin(outcome, (0.0, 1.0)).all()
    keys = pool.scores["plain"]
    per_prompt = curve(keys, outcome, [1, 2, 3], valid=pool.valid)
    for p in range(3):  # by hand: the mean over n-subsets of the score of the subset's best-keyed candidate
        for k, n in enumerate((1, 2, 3)):
            picks = [outcome[p, max(sub, key=lambda j: keys[p, j])] for sub in combinations(range(POOL), n)]
            assert per_prompt[k, p] == pytest.approx(np.mean(picks), abs=1e-12)
    figures = aggregate(per_prompt[0], pool.tags, overall="soft_tifa_gm", overall_mean="prompts")
    assert figures["soft_tifa_gm"] == pytest.approx(outcome.mean(), abs=1e-12)  # n=1: the pool's mean GM
    assert list(figures) == ["atoms=3", "atoms=4", "atoms=6", "soft_tifa_gm"]


def check_stored_suite(cfg: RunConfig, run_id: str, tiny: Path, spec: SoftTifaSpec) -> None:
    """A reader finds the run's suite and its verdicts: alone, by the suite params, or refuses when unsure."""
    from harness import suite_store
    from harness.store import NewEvaluation, add_evaluations

    def no_flags() -> None:
        raise AssertionError("a geneval2 reader must not build GenEval's evaluator")

    engine = open_store(cfg.db)
    try:
        with Session(engine) as s:
            found = suite_store.resolve(s, run_id, geneval_spec=no_flags, suite_params={})
            assert (found.name, found.backend, found.key) == ("geneval2", EVALUATOR_NAME, spec.key())
            assert (found.overall, found.overall_mean, found.is_geneval_judged) == ("soft_tifa_gm", "prompts", False)
            given = suite_store.resolve(s, run_id, geneval_spec=no_flags, device="cpu",
                                        suite_params={"model": str(tiny), "dtype": "float32"})
            assert given == found
            with pytest.raises(ValueError, match="unknown parameter 'modle'"):
                suite_store.resolve(s, run_id, geneval_spec=no_flags, suite_params={"modle": "x"})
        with Session(engine) as s, s.begin():  # a second judging, e.g. another dtype
            cid = s.scalars(select(Candidate.id).where(Candidate.run_id == run_id)).first()
            add_evaluations(s, EVALUATOR_NAME, "0" * 64, [NewEvaluation(cid, False, "x", score=0.5)])
        with Session(engine) as s:
            with pytest.raises(ValueError, match=r"verdicts by several evaluator settings: soft-tifa .*9 verdicts.*"
                                                 r"give the --suite-param values"):
                suite_store.resolve(s, run_id, geneval_spec=no_flags, suite_params={})
            assert suite_store.resolve(s, run_id, geneval_spec=no_flags, device="cpu",
                                       suite_params={"model": str(tiny), "dtype": "float32"}) == found
    finally:
        engine.dispose()


def _plain_hash() -> str:
    from harness.runner import verifier_settings_hashes

    return verifier_settings_hashes(["plain"], {})["plain"]


def test_bad_suite_input_is_one_line(tmp_path: Path, tiny: Path) -> None:
    cfg = config(tmp_path, tiny)
    with pytest.raises(RunError, match="suite 'geneval2': missing required parameter 'data'"):
        run(config(tmp_path, tiny, suite_params={"model": str(tiny)}))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a cat", "atom_count": 3, "vqa_list": [], "skills": []}\n')
    with pytest.raises(RunError, match=r"bad\.jsonl:1: 'vqa_list' must be a non-empty list"):
        run(config(tmp_path, tiny, suite_params={**cfg.suite_params, "data": str(bad)}))
    with pytest.raises(RunError, match="unknown suite 'geneval3'; available: geneval, geneval2"):
        run(config(tmp_path, tiny, suite="geneval3"))
    with pytest.raises(RunError, match="geneval suite needs the GenEval evaluator settings"):
        run(config(tmp_path, tiny, suite="geneval", suite_params={}))


def test_a_search_on_geneval2_is_judged_by_soft_tifa_and_shown_by_curve(tmp_path: Path, tiny: Path) -> None:
    import json

    from helpers import stepwise

    from harness.search.store import read_picks, run_searches

    data = write_data(tmp_path / "geneval2_data.jsonl")
    db = f"sqlite:///{tmp_path / 's.db'}"
    code, output = stepwise(
        "run", "--suite", "geneval2", "--suite-param", f"data={data}", "--suite-param", f"model={tiny}",
        "--suite-param", "dtype=float32", "--device", "cpu", "--generator", "shapes-stepper", "--strategy",
        "step-beam", "--strategy-param", "verifier=plain", "--strategy-param", "points=2", "--budget", "2",
        "--samples", "2", "--db", db, "--out", str(tmp_path / "out"))
    assert code == 0, output
    run_id = output.strip().splitlines()[-1]
    spec = SoftTifaSpec(model=str(tiny), dtype="float32", device="cpu")
    engine = open_store(db)
    try:
        with Session(engine) as s:
            (search,) = run_searches(s, run_id)
            picks, _ = read_picks(s, search.id, EVALUATOR_NAME, spec.key())
    finally:
        engine.dispose()
    assert len(picks) == 2 * len(RECORDS) and all(p.score is not None for p in picks)
    # Each pick's stored score is the Soft-TIFA GM the evaluator gives its image, and its verdict TIFA = 1.
    fresh = SoftTifaEvaluator(spec).judge([tmp_path / "out" / p.image_path for p in picks],
                                          [RECORDS[p.prompt_index] for p in picks])
    assert [p.score for p in picks] == pytest.approx([v.score for v in fresh], abs=1e-5)
    assert [p.correct for p in picks] == [v.correct for v in fresh]
    # curve --run: the search row's figure is the suite's (mean over prompts of the mean pick score).
    code, output = stepwise("curve", "--run", run_id, "--db", db, "--json")
    assert code == 0, output
    row = json.loads(output[output.index("{"):])["step-beam"]["2"]
    per_prompt = [np.mean([p.score for p in picks if p.prompt_index == i]) for i in range(len(RECORDS))]
    assert row["overall"] == pytest.approx(np.mean(per_prompt), abs=1e-12)
    assert row[f"atoms={RECORDS[0]['atom_count']}"] == pytest.approx(per_prompt[0], abs=1e-12)
    # `stepwise merge` carries the picks' Soft-TIFA scores, not their 0/1 correctness.
    merged = f"sqlite:///{tmp_path / 'merged.db'}"
    code, output = stepwise("merge", str(tmp_path / "s.db"), "--db", merged)
    assert code == 0, output
    engine = open_store(merged)
    try:
        with Session(engine) as s:
            (copied,) = run_searches(s, run_id)
            again, _ = read_picks(s, copied.id, EVALUATOR_NAME, spec.key())
    finally:
        engine.dispose()
    assert [p.score for p in again] == [p.score for p in picks]

    # submit --search -> validate (picks re-judged with the tiny Qwen3-VL) -> site, in GenEval 2's table.
    subs, suite = tmp_path / "subs", tmp_path / "suite"
    code, output = stepwise("prompts", "geneval2", "--from", str(data), "-o", str(suite))
    assert code == 0, output
    code, output = stepwise("submit", run_id, "--db", db, "--name", "Step beam", "--slug", "beam", "--search",
                            "step-beam", "--out", str(subs), "--suite-param", f"data={suite}")
    assert code == 0, output
    assert f"soft_tifa_gm {row['overall']:.4f}" in output, output
    lines = [json.loads(x) for x in (subs / "beam" / "export.jsonl").read_text().splitlines()]
    assert lines[1]["score"] == geometric_mean(lines[1]["answers"]["soft_scores"]) and lines[1]["detections"] == {}
    code, output = stepwise("validate", str(subs), "--geneval2-data", str(suite), "--models", str(tiny.parent),
                            "--recheck", "all", "--device", "cpu")
    assert code == 0 and f"{2 * len(RECORDS)} of {2 * len(RECORDS)} images re-judged" in output, output
    site = tmp_path / "site"
    code, output = stepwise("leaderboard", "build", "--submissions", str(subs), "--out", str(site), "--recheck",
                            "none", "--geneval2-data", str(suite))
    assert code == 0, output
    (entry,) = json.loads((site / "leaderboard.json").read_text())["entries"]
    assert entry["suite"] == "geneval2" and entry["search"] is not None
    assert entry["scores"]["overall"] == pytest.approx(row["overall"], abs=1e-12)
    assert 'data-suite="geneval2"' in (site / "index.html").read_text()


def test_suites_are_a_plugin_kind_listed_without_imports() -> None:
    import subprocess
    import sys

    assert registry.GROUPS["suite"] == "stepwise.suites"
    assert registry.suites.names() == ["geneval", "geneval2"]
    code = ("import sys; from harness import registry; registry.suites.infos(); "
            "registry.suites.get('geneval2'); registry.suites.get('geneval'); "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------
# the commands: prompts -> run -> curve -> analyze on GenEval 2


def test_run_curve_analyze_submit_site_on_geneval2(tmp_path: Path, tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from helpers import stepwise

    source = write_data(tmp_path / "geneval2_data.jsonl")
    code, output = stepwise("prompts", "geneval2", "--from", str(source), "-o", str(tmp_path / "suite"))
    assert code == 0, output
    db, out = f"sqlite:///{tmp_path / 's.db'}", tmp_path / "out"
    args = ["run", "--suite", "geneval2", "--suite-param", f"data={tmp_path / 'suite'}", "--suite-param",
            f"model={tiny}", "--suite-param", "dtype=float32", "--device", "cpu", "--generator", "shapes",
            "--pool", str(POOL), "--verifier", "plain", "--verifier", "oracle", "--db", db, "--out", str(out)]
    code, output = stepwise(*args)
    assert code == 0, output
    run_id = output.strip().splitlines()[-1]
    assert "3 prompts" in output and f"{3 * POOL} evaluated" in output

    spec = SoftTifaSpec(model=str(tiny), dtype="float32", device="cpu")
    engine = open_store(db)
    try:
        with Session(engine) as s:
            pool = pool_arrays(s, run_id, EVALUATOR_NAME, spec.key(), {"plain": _plain_hash()})
    finally:
        engine.dispose()
    code, output = stepwise("curve", "--run", run_id, "--db", db, "--verifier", "plain", "--n", "1..3", "--json")
    assert code == 0, output
    table = json.loads(output[output.index("{"):])
    expected = curve(pool.scores["plain"], pool.outcomes, [1, 2, 3], valid=pool.valid)
    for k, n in enumerate((1, 2, 3)):
        row = table["plain"][str(n)]
        assert row["overall"] == pytest.approx(expected[k].mean(), abs=1e-12)  # Soft-TIFA GM: mean over prompts
        assert [row[f"atoms={r['atom_count']}"] for r in RECORDS] == pytest.approx(expected[k].tolist(), abs=1e-12)
    assert table["oracle"]["3"]["overall"] == pytest.approx(pool.outcomes.max(axis=1).mean(), abs=1e-12)
    assert table["random"]["2"]["overall"] == pytest.approx(pool.outcomes.mean(), abs=1e-12)
    # the same with the suite's params given, and a table that names the figure
    code, text = stepwise("curve", "--run", run_id, "--db", db, "--verifier", "plain", "--n", "1,3",
                          "--suite-param", f"model={tiny}", "--suite-param", "dtype=float32", "--device", "cpu")
    assert code == 0, text
    assert "overall: soft_tifa_gm" in text and "atoms=3" in text
    code, text = stepwise("curve", "--run", run_id, "--db", db, "--verifier", "plain", "--suite-param", "modle=x")
    assert code == 1 and "unknown parameter 'modle'" in text

    # --compare and --adaptive-n weigh the suite's way: the difference is of Soft-TIFA GM (mean over prompts),
    # and adaptive-n that never stops early (tau = inf) is best-of-n_max.
    code, text = stepwise("curve", "--run", run_id, "--db", db, "--verifier", "plain", "--n", "1..3", "--json",
                          "--compare", "plain", "random", "--compare-json", str(tmp_path / "cmp.json"),
                          "--adaptive-n", "plain", "--adaptive-tau", "inf", "--adaptive-n-max", "3")
    assert code == 0, text
    compared = json.loads((tmp_path / "cmp.json").read_text())["n"]["2"]
    assert compared["difference"] == pytest.approx(table["plain"]["2"]["overall"] - table["random"]["2"]["overall"],
                                                   abs=1e-12)
    adaptive = json.loads(text[text.index("{"):text.rindex("}") + 1])["adaptive-n(plain)"]["inf"]
    assert adaptive["overall"] == pytest.approx(table["plain"]["3"]["overall"], abs=1e-12)
    assert adaptive["candidates"] == pytest.approx(3.0)

    code, text = stepwise("analyze", "--run", run_id, "--db", db, "--verifier", "plain", "--bootstrap", "100")
    assert code == 0, text
    assert "plain" in text

    monkeypatch.delenv("STEPWISE_GENEVAL2_DATA", raising=False)  # the data is given where it is meant to be
    check_entry_and_site(tmp_path, db, run_id, tiny, table)


def check_entry_and_site(tmp_path: Path, db: str, run_id: str, tiny: Path, table: dict) -> None:
    """submit -> validate (re-judged with the tiny Qwen3-VL) -> site, on GenEval 2; forgeries refused."""
    import json
    import shutil

    from helpers import stepwise

    from harness.submissions.suites import PUBLISHED_GENEVAL2_SUITE_HASH

    subs, suite = tmp_path / "subs", tmp_path / "suite"
    code, text = stepwise("submit", run_id, "--db", db, "--name", "Shapes + plain, best of 2", "--slug", "g2",
                          "--verifier", "plain", "--n", "2", "--out", str(subs), "--backend", "hf")
    assert code == 2 and "not judged by GenEval's evaluator" in text, text  # detector flags mean nothing here
    code, text = stepwise("submit", run_id, "--db", db, "--name", "Shapes + plain, best of 2", "--slug", "g2",
                          "--verifier", "plain", "--n", "2", "--out", str(subs), "--suite-param", f"data={suite}")
    assert code == 0, text
    assert f"soft_tifa_gm {table['plain']['2']['overall']:.4f}" in text, text  # the curve's figure at n = 2
    lines = (subs / "g2" / "export.jsonl").read_text().splitlines()
    header, first = json.loads(lines[0]), json.loads(lines[1])
    assert header["suite"]["name"] == "geneval2" and header["evaluator"]["backend"] == "soft-tifa"
    assert header["evaluator"]["settings"]["model"] == tiny.name  # a local folder by its name only
    assert first["tag"].startswith("atoms=") and first["detections"] == {}
    assert first["score"] == geometric_mean(first["answers"]["soft_scores"])

    # Re-checked: every image judged again by Soft-TIFA on the model found by name, every score again.
    code, text = stepwise("validate", str(subs), "--geneval2-data", str(suite), "--models", str(tiny.parent),
                          "--recheck", "all", "--device", "cpu")
    assert code == 0, text
    assert f"re-checked: {3 * POOL} of {3 * POOL} images re-judged" in text, text
    # Without the data a run of another suite than the published one cannot be checked at all.
    code, text = stepwise("validate", str(subs), "--recheck", "none")
    assert code == 1 and "is not the published GenEval 2 suite's" in text and PUBLISHED_GENEVAL2_SUITE_HASH[:12] in text

    site = tmp_path / "site"
    code, text = stepwise("leaderboard", "build", "--submissions", str(subs), "--out", str(site), "--recheck", "all",
                          "--geneval2-data", str(suite), "--models", str(tiny.parent), "--device", "cpu", "--strict")
    assert code == 0, text
    index = (site / "index.html").read_text()
    assert ('id="rechecked-geneval2-soft-tifa" data-backend="soft-tifa" data-board="rechecked" '
            'data-suite="geneval2"') in index
    assert ">Soft-TIFA GM</button>" in index and ">3 atoms</button>" in index and 'id="suites-note"' in index
    data = json.loads((site / "leaderboard.json").read_text())
    (entry,) = data["entries"]
    assert entry["suite"] == "geneval2" and entry["table"] == "rechecked"
    assert entry["scores"]["overall"] == pytest.approx(table["plain"]["2"]["overall"], abs=1e-12)
    assert data["suites"]["geneval2"]["groups"][0] == "atoms=3"
    page = (site / "entry" / "g2.html").read_text()
    assert "GenEval 2 scores of" in page and 'class="suite-score"' in page

    # Forgeries: a score that is not its soft scores' geometric mean; a verdict its TIFA scores contradict.
    for edit, message in ((lambda r: r.update(score=min(1.0, r["score"] + 0.1)), "is not the geometric mean"),
                          (lambda r: r.update(correct=not r["correct"]), "but its tifa_scores give")):
        forged = tmp_path / "forged" / "g2"
        shutil.rmtree(forged.parent, ignore_errors=True)
        shutil.copytree(subs / "g2", forged)
        rows = [json.loads(x) for x in lines]
        edit(rows[1])
        (forged / "export.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        code, text = stepwise("validate", str(forged), "--geneval2-data", str(suite), "--recheck", "none")
        assert code == 1 and message in text, text
