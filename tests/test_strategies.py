"""Strategy plug-ins: the built-ins, `stepwise curve --strategy`, the plug-in list groups, the run specs,
and the docs' "your first strategy" example (docs/plugins/), run exactly as printed.

The store is written directly with the store API (no model, no image): a few prompts, candidates
with verdicts, and scores of two scripted verifiers, the oracle and PARM (made by the real `parm`
verifier answering from a scripted engine, so its details are the real ones).
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import runner_plugins
from helpers import install_without_pip, stepwise
from sqlalchemy import select
from sqlalchemy.orm import Session

from harness import registry
from harness.commands.options import options_from_flags
from harness.geneval.evaluator import EvaluatorSpec
from harness.plugins import Strategy, VerifierScore, parse_params
from harness.run_spec import build_config, merged, read_spec, strategy_from
from harness.runner import verifier_settings_hashes
from harness.scaling import curve as scaling_curve
from harness.scaling import task_scores
from harness.store import (
    NewCandidate,
    NewEvaluation,
    NewPrompt,
    NewScore,
    Result,
    RunSpec,
    add_candidates,
    add_evaluations,
    add_prompts,
    add_verifier_scores,
    get_or_create_run,
    get_or_create_suite,
    open_store,
)
from harness.verifiers.engine import YesNoAnswer
from harness.verifiers.vlm import ParmParams, ParmVerifier
from strategies.builtin import parm_key

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
TAGS = ("single_object", "counting", "colors")
N_PROMPTS, N_CANDIDATES = 6, 5
NS = "1..5"
GENEVAL_DEFAULTS = {"threshold": 0.3, "counting_threshold": 0.9, "max_objects": 16, "max_overlap": 1.0,
                    "position_threshold": 0.1}
PARM_FLAGS = ("--verifier-param", "parm:model=m")
BUILTINS = ["baseline", "best-of-n", "dpo", "iterative-dpo", "oracle", "parm", "random"]  # selection rules
# search strategies (test_search.py, test_noise_search.py)
SEARCHES = ["adaptive-n", "noise-search", "parm-prune", "reflect", "smc", "step-beam"]
# what the strategies with a prepare stage require (their selection needs none of it)
REQUIRED = {"dpo": {"pairs": "data/dpo.jsonl"}, "iterative-dpo": {"train_suite": "train/evaluation_metadata.jsonl"}}


# ---------------------------------------------------------------------------------------------
# a stored pool


def answer(p_yes: float, p_no: float) -> YesNoAnswer:
    """A first-token distribution; the rest of the mass on "maybe" (an answer that is neither)."""
    probs = {"yes": p_yes, "no": p_no, "maybe": max(0.0, 1.0 - p_yes - p_no)}
    order = sorted(probs, key=lambda t: -probs[t])
    return YesNoAnswer(p_yes, p_no, tuple(order), tuple(probs[t] for t in order))


class RandomEngine:
    """Answers every question with a seeded draw from a few distributions (stands in for the VLM)."""

    CHOICES = (answer(0.8, 0.1), answer(0.1, 0.8), answer(0.2, 0.2), answer(0.55, 0.4), answer(0.3, 0.65))

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def answer(self, queries: Sequence[Any]) -> list[YesNoAnswer]:
        return [self.rng.choice(self.CHOICES) for _ in queries]


def parm_scores(seed: int, n: int, steps: int = 3) -> list[VerifierScore]:
    """The real `parm` verifier's scores and details for n candidates (sampled answers: some survivors'
    ORM answers are neither yes nor no and score 0 whatever P("yes") was)."""
    from PIL import Image

    images = [Image.new("RGB", (4, 4), (seed, k, 0)) for k in range(n)]
    previews = [[Image.new("RGB", (4, 4), (seed, k, s + 1)) for s in range(steps)] for k in range(n)]
    verifier = ParmVerifier(ParmParams(model="m", sample=True, seed=seed), engine=RandomEngine(seed))  # type: ignore[arg-type]
    return verifier.score("a prompt", images, previews)


@dataclass
class StoredPool:
    db: str
    run_id: str
    correct: np.ndarray  # (P, m) bool, prompts in index order, candidates in sample order
    scores: dict[str, np.ndarray]  # verifier -> (P, m)
    tags: list[str]


def evaluator_key() -> str:
    """The key `stepwise curve --backend hf` computes with default thresholds."""
    options = options_from_flags(**GENEVAL_DEFAULTS)
    return EvaluatorSpec(backend="hf", clip_arch="ViT-L-14-quickgelu", options=options).key()


def write_pool(db: str) -> StoredPool:
    rng = random.Random(0)
    key = evaluator_key()
    hashes = verifier_settings_hashes(["scripted", "plain", "oracle", "parm"], {"parm": {"model": "m"}},
                                      evaluator_key=key)
    correct = np.array([[rng.random() < 0.5 for _ in range(N_CANDIDATES)] for _ in range(N_PROMPTS)])
    # one decimal: ties within prompts, which the harness shares evenly
    scores = {name: np.array([[round(rng.random(), 1) for _ in range(N_CANDIDATES)] for _ in range(N_PROMPTS)])
              for name in ("scripted", "plain")}
    parm = [parm_scores(p, N_CANDIDATES) for p in range(N_PROMPTS)]
    scores["parm"] = np.array([[s.score for s in row] for row in parm])
    scores["oracle"] = correct.astype(float)
    engine = open_store(db)
    try:
        with Session(engine) as s, s.begin():
            suite = get_or_create_suite(s, "tests", "0" * 64)
            prompts = [NewPrompt(i, TAGS[i % len(TAGS)], f"prompt {i}") for i in range(N_PROMPTS)]
            prompt_ids = add_prompts(s, suite.id, prompts)
            run = get_or_create_run(s, RunSpec("tests", "0" * 64, "shapes", runner_plugins.PACKAGE, "1.0", {}, 0),
                                    "test")
            for p, prompt_id in enumerate(prompt_ids):
                news = [NewCandidate(k, f"/images/{p}-{k}.png", f"{p:032x}{k:032x}",
                                     cost={"seconds": 1.0 + k, "forward_passes": 1}) for k in range(N_CANDIDATES)]
                ids = add_candidates(s, run.id, prompt_id, news)
                add_evaluations(s, "hf", key, [NewEvaluation(ids[k], bool(correct[p, k])) for k in ids])
                for name in ("scripted", "plain", "oracle"):
                    add_verifier_scores(s, name, hashes[name], [
                        NewScore(ids[k], float(scores[name][p, k]), (0.5,), {"seconds": 0.25}, {"k": k}) for k in ids])
                add_verifier_scores(s, "parm", hashes["parm"], [
                    NewScore(ids[k], x.score, x.step_scores, {"seconds": 0.5}, x.details)
                    for k, x in zip(ids, parm[p], strict=True)])
            run_id = run.id
    finally:
        engine.dispose()
    return StoredPool(db, run_id, correct, scores, [t.tag for t in prompts])


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's test doubles registered (scripted, plain), and a strategy registry tests may add to."""
    runner_plugins.register_isolated(monkeypatch)
    for table in ("_entries", "_names", "_loaded"):
        monkeypatch.setattr(registry.strategies, table, dict(getattr(registry.strategies, table)))


@pytest.fixture
def stored(tmp_path: Path, isolated: None) -> StoredPool:
    return write_pool(f"sqlite:///{tmp_path / 'store.db'}")


def curve_json(pool: StoredPool, *args: str) -> dict[str, Any]:
    code, output = stepwise("curve", "--run", pool.run_id, "--db", pool.db, "--backend", "hf", "--n", NS,
                            "--bootstrap", "200", "--json", *args)
    assert code == 0, output
    return json.loads(output)


def expected_overall(keys: np.ndarray, pool: StoredPool) -> dict[str, float]:
    """{n: overall} straight from harness.scaling."""
    ns = list(range(1, N_CANDIDATES + 1))
    overall = task_scores(scaling_curve(keys, pool.correct, ns)[None], pool.tags)["overall"][0]
    return {str(n): float(overall[i]) for i, n in enumerate(ns)}


def results(pool: StoredPool) -> list[Result]:
    engine = open_store(pool.db)
    try:
        with Session(engine) as s:
            return list(s.scalars(select(Result).where(Result.run_id == pool.run_id).order_by(Result.id)))
    finally:
        engine.dispose()


# ---------------------------------------------------------------------------------------------
# the built-in strategies


def test_builtins_load_conform_and_describe_themselves() -> None:
    builtin = [n for n in registry.strategies.names() if registry.strategies.info(n).builtin]
    assert builtin == sorted(BUILTINS + SEARCHES)
    for name in BUILTINS:
        cls = registry.strategies.get(name)
        strategy = cls(parse_params(cls.Params, REQUIRED.get(name, {})))
        assert isinstance(strategy, Strategy)
        assert cls.description == registry.strategies.info(name).description  # one text, two places
    expected = {"baseline": (), "best-of-n": ("orm",), "dpo": (), "iterative-dpo": (), "oracle": ("oracle",),
                "parm": ("parm",), "random": ()}
    for name, verifiers in expected.items():
        cls = registry.strategies.get(name)
        assert cls(parse_params(cls.Params, REQUIRED.get(name, {}))).verifiers == verifiers


def test_best_of_n_reads_the_verifier_its_params_name() -> None:
    cls = registry.strategies.get("best-of-n")
    clip, orm = cls(parse_params(cls.Params, {"verifier": "clipscore"})), cls(parse_params(cls.Params, {}))
    assert clip.verifiers == ("clipscore",) and orm.verifiers == ("orm",)  # per instance, from the params
    scores = {"clipscore": [VerifierScore(0.2), VerifierScore(0.9)], "orm": [VerifierScore(0.7), VerifierScore(0.1)]}
    assert clip.select_key(scores) == [0.2, 0.9] and orm.select_key(scores) == [0.7, 0.1]


def test_tied_strategies_and_the_oracle() -> None:
    for name in ("baseline", "random"):
        cls = registry.strategies.get(name)
        assert cls(cls.Params()).select_key({}) == []  # no keys: every candidate ties
    oracle = registry.strategies.get("oracle")
    assert oracle(oracle.Params()).select_key({"oracle": [VerifierScore(1.0), VerifierScore(0.0)]}) == [1.0, 0.0]


def test_parm_key_orders_as_the_parm_verifier() -> None:
    for seed in range(20):
        scores = parm_scores(seed, n=8)
        assert [parm_key(s) for s in scores] == [s.score for s in scores]
        # survivors first by ORM score (in [1, 2]), then the rest by lowest P("no")
        for s in scores:
            if s.details["survivor"]:
                assert 1.0 <= parm_key(s) <= 2.0
            else:
                assert parm_key(s) == -s.details["no_prob"]
    # a score stored without details (an older store) keeps its value
    assert parm_key(VerifierScore(1.4)) == 1.4


# ---------------------------------------------------------------------------------------------
# stepwise curve --strategy


def test_best_of_n_strategy_equals_the_verifier_row(stored: StoredPool) -> None:
    by_verifier = curve_json(stored, "--verifier", "scripted")
    by_strategy = curve_json(stored, "--strategy", "best-of-n", "--strategy-param", "best-of-n:verifier=scripted")
    assert by_strategy["best-of-n"] == by_verifier["scripted"]
    assert {n: row["overall"] for n, row in by_verifier["scripted"].items()} == pytest.approx(
        expected_overall(stored.scores["scripted"], stored))
    both = curve_json(stored, "--verifier", "scripted", "--strategy", "best-of-n",
                      "--strategy-param", "best-of-n:verifier=scripted")
    assert list(both) == ["scripted", "best-of-n", "random", "oracle"]
    assert both["best-of-n"] == both["scripted"] == by_verifier["scripted"]
    # recorded like the verifier's row, with the strategy's provenance and params
    rows = [r for r in results(stored) if r.strategy == "best-of-n"]
    by_hash = {r.verifier_settings_hash for r in rows}
    assert {r.verifier for r in rows} == {"scripted"} and len(by_hash) == 1 and None not in by_hash
    strategy_row = rows[-1]
    assert strategy_row.details["strategy"] == {"kind": "strategy", "name": "best-of-n", "package": "stepwise-bench",
                                                "version": registry.strategies.info("best-of-n").version,
                                                "entry_point": "strategies.builtin:BestOfNStrategy",
                                                "params": {"verifier": "scripted"}}


def test_reference_strategies_equal_the_reference_rows(stored: StoredPool) -> None:
    reference = curve_json(stored, "--verifier", "scripted")
    strategies = curve_json(stored, "--strategy", "oracle", "--strategy", "random", "--strategy", "baseline")
    assert list(strategies) == ["oracle", "random", "baseline"]  # oracle and random take the reference rows' place
    assert strategies["oracle"] == reference["oracle"]
    assert strategies["random"] == reference["random"] == strategies["baseline"]
    mean_accuracy = expected_overall(np.zeros_like(stored.correct, dtype=float), stored)
    assert {n: row["overall"] for n, row in strategies["baseline"].items()} == pytest.approx(mean_accuracy)
    recorded = {(r.strategy, r.verifier) for r in results(stored)[-3 * N_CANDIDATES:]}
    assert recorded == {("oracle", "oracle"), ("random", "none"), ("baseline", "none")}


def test_parm_strategy_equals_the_parm_verifier_row(stored: StoredPool) -> None:
    by_verifier = curve_json(stored, "--verifier", "parm", *PARM_FLAGS)
    by_strategy = curve_json(stored, "--strategy", "parm", *PARM_FLAGS)
    assert by_strategy["parm"] == by_verifier["parm"]
    assert {n: r["overall"] for n, r in by_strategy["parm"].items()} == pytest.approx(
        expected_overall(stored.scores["parm"], stored))


def test_strategy_rows_know_their_compute(stored: StoredPool, tmp_path: Path) -> None:
    code, output = stepwise("curve", "--run", stored.run_id, "--db", stored.db, "--backend", "hf", "--n", "1,2",
                            "--bootstrap", "200", "--strategy", "parm", *PARM_FLAGS, "--strategy", "baseline",
                            "--compute-json", str(tmp_path / "c.json"))
    assert code == 0, output
    per_candidate = json.loads((tmp_path / "c.json").read_text())["seconds_per_candidate"]
    assert per_candidate == pytest.approx({"parm": 3.0 + 0.5, "baseline": 3.0, "random": 3.0, "oracle": 3.0})


def test_strategies_on_a_jsonl_pool(stored: StoredPool, tmp_path: Path) -> None:
    path = tmp_path / "pool.jsonl"
    with open(path, "w") as fp:
        for p in range(N_PROMPTS):
            for k in range(N_CANDIDATES):
                scores = {v: float(stored.scores[v][p, k]) for v in ("scripted", "parm")}
                fp.write(json.dumps({"prompt_id": f"{p:05d}", "tag": stored.tags[p],
                                     "correct": bool(stored.correct[p, k]), "scores": scores}) + "\n")
    base = ["curve", "--from-jsonl", str(path), "--n", NS, "--bootstrap", "200", "--json"]
    code, output = stepwise(*base)
    assert code == 0 and list(json.loads(output)) == ["parm", "scripted", "random", "oracle"]
    every_verifier = json.loads(output)
    code, output = stepwise(*base, "--strategy", "best-of-n", "--strategy-param", "best-of-n:verifier=scripted",
                            "--strategy", "parm")
    assert code == 0, output
    data = json.loads(output)
    assert list(data) == ["best-of-n", "parm", "random", "oracle"]  # strategies replace the pool's verifier rows
    assert data["best-of-n"] == every_verifier["scripted"] and data["parm"] == every_verifier["parm"]
    code, output = stepwise(*base, "--strategy", "best-of-n")
    assert code == 1 and "no scores by orm; the pool has parm, scripted" in output


def test_curve_strategy_errors(stored: StoredPool) -> None:
    base = ["curve", "--run", stored.run_id, "--db", stored.db, "--backend", "hf", "--n", NS]
    code, output = stepwise(*base, "--strategy", "best-of-m")
    assert code == 1 and "unknown strategy 'best-of-m'; available: adaptive-n, baseline, best-of-n" in output
    assert "did you mean 'best-of-n'" in output
    code, output = stepwise(*base, "--strategy", "best-of-n", "--strategy-param", "best-of-n:verfier=plain")
    assert code == 2 and "strategy 'best-of-n': unknown parameter 'verfier'" in output
    code, output = stepwise(*base, "--strategy", "random", "--strategy-param", "parm:x=1")
    assert code == 2 and "--strategy-param for parm, which is not a --strategy" in output
    code, output = stepwise(*base, "--strategy", "random", "--strategy-param", "random")
    assert code == 2 and "is not NAME:KEY=VALUE" in output
    code, output = stepwise(*base, "--verifier", "parm", "--strategy", "parm", *PARM_FLAGS)
    assert code == 2 and "would both be row 'parm'" in output
    code, output = stepwise(*base, "--strategy", "best-of-n", "--strategy-param", "best-of-n:verifier=clipscore")
    assert code == 1 and "no score by clipscore" in output


def test_a_strategy_giving_the_wrong_number_of_keys_is_named(stored: StoredPool) -> None:
    class OneKey:
        description: ClassVar[str] = "broken"
        verifiers = ("plain",)

        @dataclass(frozen=True)
        class Params:
            pass

        def __init__(self, params: Params) -> None:
            pass

        def select_key(self, scores: Mapping[str, Sequence[VerifierScore]]) -> list[float]:
            return [1.0]

    registry.strategies.register("one-key", OneKey, package="tests", version="0")
    code, output = stepwise("curve", "--run", stored.run_id, "--db", stored.db, "--backend", "hf", "--n", NS,
                            "--strategy", "one-key")
    assert code == 1 and "strategy 'one-key' gave 1 keys for the 5 candidates of prompt 00000" in output


# ---------------------------------------------------------------------------------------------
# stepwise strategies|verifiers|generators list


def test_plugin_groups_list_with_parameters() -> None:
    code, output = stepwise("strategies", "list")
    assert code == 0, output
    for name in BUILTINS:
        assert re.search(rf"\n  {re.escape(name)} +stepwise-bench \S+  \S", output), name
    assert "verifier: str = 'orm'  The verifier whose score is the key." in output
    assert "backends" not in output and "orm  " not in output
    code, output = stepwise("verifiers", "list", "--json")
    assert code == 0, output
    rows = {r["name"]: r for r in json.loads(output)["plugins"]}
    assert {"orm", "prm", "parm", "clipscore", "oracle", "random"} <= set(rows)
    assert rows["parm"]["package"] == "stepwise-bench" and rows["parm"]["description"].startswith("PARM")
    model = rows["parm"]["parameters"][0]
    assert (model["name"], model["type"], model["required"], model["default"]) == ("model", "str", True, None)
    code, output = stepwise("generators", "list")
    assert code == 0 and "model: str = 'showlab/show-o'" in output
    code, output = stepwise("strategies", "--help")
    assert code == 0 and "list" in output


def test_lists_and_specs_import_no_model_code() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from harness.cli import main\n"
        "for kind in ('strategies', 'verifiers', 'generators'):\n"
        "    for extra in ([], ['--json']):\n"
        "        r = CliRunner().invoke(main, [kind, 'list', *extra])\n"
        "        assert r.exit_code == 0, r.output\n"
        "        assert 'stepwise-bench' in r.output, r.output\n"
        "import test_strategies\n"
        "for path in sorted(test_strategies.SPECS.glob('*.toml')):\n"
        "    test_strategies.check_spec(path)\n"
        "heavy = [m for m in ('torch', 'transformers', 'open_clip', 'mmdet') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)])}
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True, timeout=120)


# ---------------------------------------------------------------------------------------------
# run specs


def spec_header(path: Path) -> dict[str, str]:
    """The `# key: value` lines of a spec's leading comment."""
    out = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(": ")
        if sep and key in ("test-time verifier", "alignment", "reward guidance"):
            out[key] = value
    return out


def check_spec(path: Path) -> None:
    """`stepwise run --spec PATH --detector X` would start: the spec builds a run config, and its generator,
    verifier and strategy parameters fit their plug-ins (nothing is built, no model loads).

    A spec that trains (`strategy` with a prepare stage, e.g. dpo) starts from showlab/show-o; its header
    says so, its reward guidance is the strategy's `reward_verifier`, and the verifier its selection
    reads is one the run scores with."""
    from harness.preparation import has_prepare

    values = merged(read_spec(path), {"detector": "mask2former.pth"})
    config = build_config(values, options_from_flags(**GENEVAL_DEFAULTS))
    generator = registry.generators.get(config.generator)
    parse_params(generator.Params, config.params, owner=str(path))
    verifier_settings_hashes(config.verifiers, config.verifier_params)
    header = spec_header(path)
    assert set(header) == {"test-time verifier", "alignment", "reward guidance"}, (path, header)
    assert (header["test-time verifier"] == "none") == (not config.verifiers), path
    assert config.pool == (80 if config.verifiers else 4), path  # 4 GenEval samples (x best-of-20)
    assert config.suite == "geneval" and config.per_task == 100, path
    strategy, strategy_params = strategy_from(values)
    if strategy is None:
        assert header["alignment"].startswith("none") == (config.params["model"] == "showlab/show-o"), path
        return
    cls = registry.strategies.get(strategy)
    assert has_prepare(cls), path
    params = parse_params(cls.Params, strategy_params, owner=str(path))
    assert config.params["model"] == "showlab/show-o" and "trained by this spec" in header["alignment"], path
    assert (header["reward guidance"] == "none") == (params.reward_verifier is None), path
    assert set(cls(params).verifiers) == set(config.verifiers), path  # selection reads what the run scores


def test_specs_cover_the_papers_combinations() -> None:
    names = {p.stem for p in SPECS.glob("*.toml")}
    assert {"showo-baseline", "showo-orm-ft-n20", "showo-parm-n20", "showo-itdpo-parm-n20",
            "showo-itdpo-parmguide-parm-n20", "showo-itdpo-ormguide-orm-ft-n20"} <= names
    # the same combinations trained by the spec itself (strategy dpo / iterative-dpo), not from released checkpoints
    assert {"showo-dpo", "showo-dpo-orm-ft-n20", "showo-dpo-ormguide", "showo-dpo-ormguide-orm-ft-n20",
            "showo-itdpo-train", "showo-itdpo-train-orm-ft-n20", "showo-itdpo-train-ormguide",
            "showo-itdpo-train-ormguide-orm-ft-n20", "showo-itdpo-train-parm-n20", "showo-itdpo-train-parmguide",
            "showo-itdpo-train-parmguide-parm-n20"} <= names
    combos = {tuple(spec_header(SPECS / f"{n}.toml").values()) for n in names}
    assert len(combos) == len(names)  # no two specs say the same thing


@pytest.mark.parametrize("path", sorted(SPECS.glob("*.toml")), ids=lambda p: p.stem)
def test_every_spec_parses(path: Path) -> None:
    check_spec(path)


def test_training_specs_with_one_out_share_one_checkpoint() -> None:
    """Specs that differ only in selection (the strategy's `verifier`) and name the same `out` train into one
    work folder (`harness.preparation.work_folder`), so they share the checkpoint and the run; other outs don't."""
    from harness.preparation import load_strategy, work_folder

    folders: dict[str, set[Path]] = {}
    for path in sorted(SPECS.glob("*.toml")):
        values = merged(read_spec(path), {})
        strategy, params = strategy_from(values)
        if strategy is not None:
            choice = load_strategy(strategy, params)
            folder = work_folder(Path(values["out"]), choice, values["generator"], int(values["seed"]))
            folders.setdefault(values["out"], set()).add(folder)
    assert len(folders) == 5 and all(len(f) == 1 for f in folders.values()), folders


# ---------------------------------------------------------------------------------------------
# the docs' first strategy (docs/plugins/strategy.md), exactly as printed


def docs_example(name: str) -> str:
    """The code block that follows `<!-- example: NAME -->` in the plug-in author's guide (docs/plugins/)."""
    pages = "".join(page.read_text() for page in sorted((REPO / "docs" / "plugins").glob("*.md")))
    match = re.search(rf"<!-- example: {re.escape(name)} -->\n```\w+\n(.*?)```", pages, re.S)
    assert match, f"docs/plugins/ has no example {name}"
    return match.group(1)


@pytest.fixture
def docs_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: None) -> Iterator[str]:
    """The docs' example package "installed" without pip: its module on sys.path and a dist-info with the
    entry points of its pyproject.toml block (what pip would leave in site-packages)."""
    project = tomllib.loads(docs_example("pyproject.toml"))["project"]
    name = install_without_pip(tmp_path, monkeypatch, "my_strategies", docs_example("my_strategies/__init__.py"),
                               project)
    registry.reset()
    yield name
    registry.reset()
    sys.modules.pop("my_strategies", None)


def test_docs_first_strategy_runs_as_printed(docs_package: str, stored: StoredPool) -> None:
    assert len(docs_example("my_strategies/__init__.py").splitlines()) <= 20  # the heading's promise
    with registry.configured([docs_package]):
        cls = registry.strategies.get("mean-of-two")
        assert registry.strategies.info("mean-of-two").package == docs_package
        strategy = cls(parse_params(cls.Params, {"first": "scripted", "second": "plain"}))
        assert isinstance(strategy, Strategy) and strategy.verifiers == ("scripted", "plain")

    code, output = stepwise("strategies", "list", "--plugin", docs_package)
    assert code == 0, output
    assert re.search(r"mean-of-two +my-strategies 0\.1\.0", output)
    assert "first: str = 'orm'  One verifier." in output

    data = curve_json(stored, "--plugin", docs_package, "--strategy", "mean-of-two",
                      "--strategy-param", "mean-of-two:first=scripted", "--strategy-param", "mean-of-two:second=plain")
    mean = (stored.scores["scripted"] + stored.scores["plain"]) / 2
    assert {n: r["overall"] for n, r in data["mean-of-two"].items()} == pytest.approx(expected_overall(mean, stored))
    recorded = [r for r in results(stored) if r.strategy == "mean-of-two"]
    assert {r.verifier for r in recorded} == {"scripted+plain"} and len(recorded) == N_CANDIDATES
    assert recorded[0].details["strategy"]["package"] == docs_package
    assert set(recorded[0].details["verifier_settings_hashes"]) == {"scripted", "plain"}


# ---------------------------------------------------------------------------------------------
# the docs' first search strategy (docs/plugins/search-strategy.md), exactly as printed


@pytest.fixture
def docs_search_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated: None) -> Iterator[str]:
    """The docs' search example "installed" without pip, like `docs_package`."""
    from helpers import install_without_pip

    project = tomllib.loads(docs_example("search-pyproject.toml"))["project"]
    name = install_without_pip(tmp_path, monkeypatch, "my_search", docs_example("my_search/__init__.py"), project)
    registry.reset()
    yield name
    registry.reset()
    sys.modules.pop("my_search", None)


def test_docs_first_search_strategy_runs_as_printed(docs_search_package: str, tmp_path: Path,
                                                      tmp_path_factory: pytest.TempPathFactory) -> None:
    from harness.plugins import SearchStrategy

    code = docs_example("my_search/__init__.py")
    assert len(code.splitlines()) <= 32  # "in about 30 lines"
    with registry.configured([docs_search_package]):
        cls = registry.strategies.get("halve-at-half")
        assert isinstance(cls(cls.Params()), SearchStrategy)
    output = stepwise("strategies", "list", "--plugin", docs_search_package)[1]
    assert re.search(r"halve-at-half +my-search 0\.1\.0", output)

    flags = runner_plugins.tiny_model_flags(tmp_path_factory)
    db = f"sqlite:///{tmp_path / 's.db'}"
    code_, output = stepwise("run", "--plugin", docs_search_package, "--generator", "shapes-stepper",
                             "--per-task", "1", "--prompts", "0,80", "--strategy", "halve-at-half",
                             "--strategy-param", "verifier=scripted", "--budget", "4", "--db", db,
                             "--out", str(tmp_path / "out"), *flags)
    assert code_ == 0, output
    run_id = output.strip().splitlines()[-1]
    code_, output = stepwise("curve", "--run", run_id, "--db", db, *flags, "--json", "--bootstrap", "200")
    assert code_ == 0, output
    row = json.loads(output)["halve-at-half"]["4"]
    assert row["nfe"] == 0.75 * 4 * 4  # B x T/2 + B/2 x T/2 with T = 4 steps
