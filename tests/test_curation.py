"""`stepwise curate`: ORM records, DPO pairs and PARM examples from a judged pool.

Most tests use a SCRIPTED pool: rows inserted with harness.store's functions, so every verdict
(and, through a scripted judge, every preview's outcome) is chosen by the test. One test runs the
whole path for real: `prompts train`, `run --suite` (shapes generator, tiny GenEval models), `curate`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import runner_plugins
from helpers import stepwise

from harness.curation import (
    CurationError,
    CurationOptions,
    JudgedPool,
    Outcome,
    PreviewRequest,
    PreviewVerdict,
    clear_step,
    curate,
    read_pool,
)
from harness.geneval.evaluator import EvaluatorSpec
from harness.verifiers.vlm import POTENTIAL_QUESTION, clarity_question, orm_question

CUP_MISSING = "expected cup>=1, found 0"
CUP_TOO_MANY = "expected cup<2, found 2"
YES, NO = Outcome(True, ""), Outcome(False, CUP_MISSING)
SETTINGS = {"detector": "facebook/mask2former-swin-small-coco-instance"}

# prompt index -> (text, metadata, verdicts of samples 0..n-1 as Outcomes)
PROMPTS: dict[int, tuple[str, dict[str, Any], list[Outcome]]] = {
    0: ("a photo of a cup", {"tag": "single_object", "include": [{"class": "cup", "count": 1}],
                             "prompt": "a photo of a cup"},
        [NO, YES, Outcome(False, CUP_TOO_MANY), YES, YES, NO]),
    1: ("a photo of a dog", {"tag": "single_object", "include": [{"class": "dog", "count": 1}],
                             "prompt": "a photo of a dog"}, [YES, YES, YES]),
    2: ("a photo of two cats", {"tag": "counting", "include": [{"class": "cat", "count": 2}],
                                "exclude": [{"class": "cat", "count": 3}], "prompt": "a photo of two cats"},
        [NO, NO, NO]),
}
# (prompt, sample) -> outcomes of its 3 previews; unlisted candidates' previews all equal their final's
PREVIEWS: dict[tuple[int, int], list[Outcome]] = {
    (0, 0): [NO, YES, NO],                                      # final NO: clear from step 3 (t* = 3)
    (0, 1): [NO, YES, YES],                                     # final YES: t* = 2
    (0, 2): [NO, NO, NO],                                       # final NO for another reason: never clear
    (0, 3): [YES, YES, NO],                                     # final YES but the last preview differs: never
}
STEPS = 3


@dataclass
class Scripted:
    db: str
    run_id: str
    root: Path
    outcomes: dict[str, Outcome]  # preview path -> its scripted outcome


def png(path: Path, seed: int) -> tuple[str, str]:
    from PIL import Image

    color = ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)
    Image.new("RGB", (8, 8), color).save(path)
    return str(path.resolve()), hashlib.sha256(path.read_bytes()).hexdigest()


def spec() -> EvaluatorSpec:
    return EvaluatorSpec(backend="hf")  # what `--backend hf` with default thresholds means


def build_store(root: Path, *, previews: bool = True) -> Scripted:
    from sqlalchemy.orm import Session

    from harness.store import (
        NewCandidate,
        NewEvaluation,
        NewPrompt,
        RunSpec,
        add_candidates,
        add_evaluations,
        add_prompts,
        content_hash,
        get_or_create_run,
        get_or_create_suite,
        open_store,
    )

    images = root / "images"
    images.mkdir(parents=True)
    db = f"sqlite:///{root / 's.db'}"
    engine = open_store(db)
    metadata = [PROMPTS[i][1] for i in sorted(PROMPTS)]
    run_spec = RunSpec("scripted", content_hash(metadata), "shapes", "tests", "1.0", {}, 0)
    outcomes: dict[str, Outcome] = {}
    seed = 0
    with Session(engine) as s, s.begin():
        suite = get_or_create_suite(s, "scripted", run_spec.suite_hash)
        ids = add_prompts(s, suite.id, [NewPrompt(i, m["tag"], m["prompt"], m) for i, m in enumerate(metadata)])
        get_or_create_run(s, run_spec, "test")
        for index, (_text, _meta, verdicts) in sorted(PROMPTS.items()):
            candidates, evaluations = [], []
            for sample, verdict in enumerate(verdicts):
                seed += 1
                path, digest = png(images / f"{index}-{sample}.png", seed)
                steps = []
                for step, outcome in enumerate(PREVIEWS.get((index, sample), [verdict] * STEPS)):
                    seed += 1
                    preview, _ = png(images / f"{index}-{sample}-step{step}.png", seed)
                    steps.append(preview)
                    outcomes[preview] = outcome
                candidates.append(NewCandidate(sample, path, digest, steps if previews else []))
                evaluations.append((sample, verdict))
            cids = add_candidates(s, run_spec.run_id, ids[index], candidates)
            add_evaluations(s, "hf", spec().key(), [NewEvaluation(cids[sample], v.correct, v.reason)
                                                    for sample, v in evaluations])
    engine.dispose()
    return Scripted(db, run_spec.run_id, root, outcomes)


def scripted_judge(outcomes: Mapping[str, Outcome]) -> Any:
    def judge(requests: Sequence[PreviewRequest]) -> dict[tuple[str, int], PreviewVerdict]:
        return {(r.path, r.prompt_index): PreviewVerdict(outcomes[r.path], hashlib.sha256(
            Path(r.path).read_bytes()).hexdigest()) for r in requests}

    return judge


def load_pool(store: Scripted, max_samples: int | None = None) -> JudgedPool:
    from sqlalchemy.orm import Session

    from harness.store import open_store

    engine = open_store(store.db, upgrade_schema=False)
    try:
        with Session(engine) as s:
            return read_pool(s, store.run_id, spec(), max_samples=max_samples)
    finally:
        engine.dispose()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture()
def store(tmp_path: Path) -> Scripted:
    return build_store(tmp_path / "run")


@pytest.fixture()
def written(store: Scripted, tmp_path: Path) -> Path:
    out = tmp_path / "curated"
    curate(load_pool(store), out, CurationOptions(seed=0), judge=scripted_judge(store.outcomes),
           evaluator_settings=SETTINGS)
    return out


# ---------------------------------------------------------------------------------------------
# ORM


def test_orm_records_are_llava_conversations_with_the_official_question(written: Path, store: Scripted) -> None:
    records = read_json(written / "orm.json")
    assert len(records) == 12
    assert [(r["prompt_index"], r["sample_index"]) for r in records] == [
        (i, k) for i in sorted(PROMPTS) for k in range(len(PROMPTS[i][2]))]
    first = records[0]
    assert list(first) == ["id", "image", "conversations", "task", "prompt", "prompt_index", "sample_index",
                           "image_sha256"]
    assert first["id"] == "orm-00000-0000" and first["task"] == "orm"
    assert first["image"] == str((store.root / "images" / "0-0.png").resolve())
    assert first["conversations"] == [
        {"from": "human", "value": "<image> This image is generated by a prompt: a photo of a cup. Does this image "
                                   "accurately represent the prompt? Please answer yes or no without explanation."},
        {"from": "gpt", "value": "no"}]
    for r in records:
        verdict = PROMPTS[r["prompt_index"]][2][r["sample_index"]]
        assert r["conversations"] == [{"from": "human", "value": orm_question(r["prompt"])},
                                      {"from": "gpt", "value": "yes" if verdict.correct else "no"}]
        assert hashlib.sha256(Path(r["image"]).read_bytes()).hexdigest() == r["image_sha256"]


# ---------------------------------------------------------------------------------------------
# DPO


def test_dpo_pairs_one_yes_and_one_no_and_drop_all_same_prompts(written: Path) -> None:
    pairs = read_lines(written / "dpo.jsonl")
    assert len(pairs) == 1  # prompt 1 is all yes, prompt 2 all no: both dropped
    (pair,) = pairs
    assert list(pair) == ["prompt", "metadata", "chosen", "rejected", "chosen_sha256", "rejected_sha256",
                          "prompt_index", "chosen_sample_index", "rejected_sample_index"]
    assert pair["prompt"] == "a photo of a cup" and pair["metadata"] == PROMPTS[0][1] and pair["prompt_index"] == 0
    verdicts = PROMPTS[0][2]
    assert verdicts[pair["chosen_sample_index"]].correct and not verdicts[pair["rejected_sample_index"]].correct
    assert pair["chosen"].endswith(f"0-{pair['chosen_sample_index']}.png")
    assert hashlib.sha256(Path(pair["rejected"]).read_bytes()).hexdigest() == pair["rejected_sha256"]
    manifest = read_json(written / "manifest.json")
    assert manifest["counts"]["dpo"] == 1
    assert manifest["counts"]["dpo_dropped_all_yes"] == 1 and manifest["counts"]["dpo_dropped_all_no"] == 1


def test_dpo_choice_follows_the_seed(store: Scripted) -> None:
    from harness.curation import dpo_pairs

    pool = load_pool(store)

    def choice(seed: int) -> tuple[int, int]:
        (pair,) = dpo_pairs(pool.candidates, seed, lambda path, sha: path).pairs
        return pair["chosen_sample_index"], pair["rejected_sample_index"]

    assert choice(0) == choice(0)
    assert len({choice(seed) for seed in range(30)}) > 1  # 3 yes x 3 no: the seed does pick
    assert {c for seed in range(30) for c in choice(seed)} <= {0, 1, 2, 3, 4, 5}
    with pytest.raises(ValueError, match="seed"):
        dpo_pairs(pool.candidates, -1, lambda path, sha: path)


# ---------------------------------------------------------------------------------------------
# PARM


def test_clear_step() -> None:
    assert clear_step([NO, YES, YES], YES) == 2
    assert clear_step([YES, YES, YES], YES) == 1
    assert clear_step([YES, YES, NO], YES) == 4  # the last preview disagrees: none is clear
    assert clear_step([NO, NO], Outcome(False, CUP_TOO_MANY)) == 3  # same verdict, other reason: not clear
    assert clear_step([], YES) == 1


def test_parm_examples_from_previews(written: Path, store: Scripted) -> None:
    records = read_json(written / "parm.json")
    by_candidate: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in records:
        by_candidate.setdefault((r["prompt_index"], r["sample_index"]), []).append(r)

    def labels(key: tuple[int, int], task: str) -> list[tuple[int, str]]:
        return [(r["step"], r["conversations"][-1]["value"]) for r in by_candidate[key] if r["task"] == task]

    assert labels((0, 0), "clarity") == [(1, "no"), (2, "no"), (3, "yes")]
    assert labels((0, 0), "potential") == [(3, "no")]
    assert labels((0, 1), "clarity") == [(1, "no"), (2, "yes"), (3, "yes")]
    assert labels((0, 1), "potential") == [(2, "yes"), (3, "yes")]
    assert labels((0, 2), "clarity") == [(1, "no"), (2, "no"), (3, "no")] and labels((0, 2), "potential") == []
    assert labels((0, 3), "potential") == []
    assert labels((1, 0), "clarity") == [(1, "yes"), (2, "yes"), (3, "yes")]
    assert labels((2, 0), "potential") == [(1, "no"), (2, "no"), (3, "no")]
    # Record order within a candidate: clarity by step, potential by step, selection.
    assert [r["task"] for r in by_candidate[(0, 1)]] == ["clarity"] * 3 + ["potential"] * 2 + ["selection"]

    clarity = by_candidate[(0, 1)][1]
    assert clarity["id"] == "clarity-00000-0001-02"
    assert clarity["image"] == str((store.root / "images" / "0-1-step1.png").resolve())
    assert clarity["image_sha256"] == hashlib.sha256(Path(clarity["image"]).read_bytes()).hexdigest()
    assert clarity["conversations"] == [{"from": "human", "value": clarity_question("a photo of a cup")},
                                        {"from": "gpt", "value": "yes"}]
    assert clarity["conversations"][0]["value"].startswith(
        "<image> \n The above image is a certain step  in the text to image generation process.")
    potential = by_candidate[(0, 1)][3]
    assert potential["id"] == "potential-00000-0001-02" and potential["image"] == clarity["image"]
    assert potential["conversations"] == [
        {"from": "human", "value": clarity_question("a photo of a cup")}, {"from": "gpt", "value": "yes"},
        {"from": "human", "value": POTENTIAL_QUESTION}, {"from": "gpt", "value": "yes"}]
    selection = by_candidate[(0, 1)][-1]
    orm = {r["id"]: r for r in read_json(written / "orm.json")}["orm-00000-0001"]
    assert selection["id"] == "selection-00000-0001"
    assert {**selection, "id": orm["id"], "task": "orm"} == orm  # the ORM record under another id

    counts = read_json(written / "manifest.json")["counts"]["parm"]
    assert counts == {"clarity": 36, "potential": sum(r["task"] == "potential" for r in records), "selection": 12}


def test_no_previews_gives_no_parm_data_and_the_cli_warns_or_fails(tmp_path: Path) -> None:
    store = build_store(tmp_path / "run", previews=False)
    manifest = curate(load_pool(store), tmp_path / "lib", CurationOptions(), judge=scripted_judge({}),
                      evaluator_settings=SETTINGS)
    assert manifest["counts"]["parm"] is None and "parm.json" not in manifest["files"]
    assert not (tmp_path / "lib" / "parm.json").exists()
    code, output = stepwise("curate", "--run", store.run_id, "--db", store.db, "--backend", "hf",
                            "-o", str(tmp_path / "cli"))
    assert code == 0, output
    assert "warning: run" in output and "stored no step previews" in output
    assert "12 ORM records (6 yes, 6 no), 1 DPO pairs" in output
    code, output = stepwise("curate", "--run", store.run_id, "--db", store.db, "--backend", "hf", "--parm",
                            "require", "-o", str(tmp_path / "cli2"))
    assert code != 0 and "stored no step previews" in output and not (tmp_path / "cli2").exists()


# ---------------------------------------------------------------------------------------------
# the folder


def test_manifest(written: Path, store: Scripted) -> None:
    manifest = read_json(written / "manifest.json")
    assert manifest["format"] == "stepwise-curation" and manifest["format_version"] == 1
    assert manifest["run_id"] == store.run_id and manifest["suite"]["name"] == "scripted"
    assert manifest["evaluator"] == {"backend": "hf", "settings_hash": spec().key(), "settings": SETTINGS}
    assert manifest["seed"] == 0 and manifest["copy_images"] is False
    assert {k: manifest["counts"][k] for k in ("prompts", "candidates", "yes", "no", "orm")} == {
        "prompts": 3, "candidates": 12, "yes": 6, "no": 6, "orm": 12}
    assert sorted(manifest["files"]) == ["dpo.jsonl", "orm.json", "parm.json"]
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((written / name).read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in written.iterdir()) == ["dpo.jsonl", "manifest.json", "orm.json", "parm.json"]


def test_deterministic_under_the_seed(store: Scripted, tmp_path: Path) -> None:
    def files(out: Path, seed: int) -> dict[str, bytes]:
        curate(load_pool(store), out, CurationOptions(seed=seed), judge=scripted_judge(store.outcomes),
               evaluator_settings=SETTINGS)
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}

    a, b = files(tmp_path / "a", 0), files(tmp_path / "b", 0)
    assert a == b
    seeds = [files(tmp_path / f"s{seed}", seed)["dpo.jsonl"] for seed in range(1, 8)]
    assert len(set(seeds)) > 1


def test_copy_images(store: Scripted, tmp_path: Path) -> None:
    out = tmp_path / "copied"
    curate(load_pool(store), out, CurationOptions(copy_images=True), judge=scripted_judge(store.outcomes),
           evaluator_settings=SETTINGS)
    referenced = [r["image"] for r in read_json(out / "orm.json") + read_json(out / "parm.json")]
    referenced += [p[k] for p in read_lines(out / "dpo.jsonl") for k in ("chosen", "rejected")]
    assert all(Path(path).parent == out.resolve() / "images" for path in referenced)
    copied = sorted((out / "images").iterdir())
    assert len(copied) == 12 + 12 * STEPS  # every final and preview once
    for path in copied:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == path.stem
    assert read_json(out / "manifest.json")["copy_images"] is True


def test_pool_limit(store: Scripted, tmp_path: Path) -> None:
    manifest = curate(load_pool(store, max_samples=2), tmp_path / "o", CurationOptions(max_samples=2), judge=None,
                      evaluator_settings=SETTINGS)
    assert manifest["counts"]["candidates"] == 6 and manifest["max_samples"] == 2
    assert manifest["counts"]["dpo"] == 1 and manifest["counts"]["parm"] is None  # judge=None: no PARM data


# ---------------------------------------------------------------------------------------------
# errors


def test_errors(store: Scripted, tmp_path: Path) -> None:
    def curate_cli(*extra: str) -> tuple[int, str]:
        return stepwise("curate", "--db", store.db, "--backend", "hf", "--parm", "skip", *extra)

    code, output = curate_cli("--run", "f" * 64, "-o", str(tmp_path / "x"))
    assert code != 0 and "no run 'ffff" in output and "in the store" in output
    code, output = curate_cli("--run", store.run_id, "--threshold", "0.4", "-o", str(tmp_path / "x"))
    assert code != 0 and "12 candidate(s) have no verdict by hf with these evaluator settings" in output
    code, output = curate_cli("--run", store.run_id, "-o", str(tmp_path / "ok"))
    assert code == 0, output
    code, output = curate_cli("--run", store.run_id, "-o", str(tmp_path / "ok"))
    assert code != 0 and "exists; choose another -o or pass --force" in output
    code, output = curate_cli("--run", store.run_id, "-o", str(tmp_path / "ok"), "--force")
    assert code == 0, output

    (store.root / "images" / "0-3.png").write_bytes(b"tampered")
    with pytest.raises(CurationError, match=r"0-3\.png: its sha256 is .* the file changed since it was judged"):
        curate(load_pool(store), tmp_path / "y", CurationOptions(), judge=None, evaluator_settings=SETTINGS)
    (store.root / "images" / "0-3.png").unlink()
    code, output = curate_cli("--run", store.run_id, "-o", str(tmp_path / "z"))
    assert code != 0 and "0-3.png: cannot read" in output
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()
    assert not list(tmp_path.glob("*.partial"))


# ---------------------------------------------------------------------------------------------
# the whole path, for real


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Training prompts (1 per task: 5), a pool of 3 with step previews, judged by tiny GenEval models."""
    with pytest.MonkeyPatch.context() as mp:
        runner_plugins.register_isolated(mp)
        mp.setenv("STEPWISE_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        flags = runner_plugins.tiny_model_flags(tmp_path_factory)
        base = tmp_path_factory.mktemp("real")
        code, output = stepwise("prompts", "train", "--per-task", "1", "-o", str(base / "prompts"))
        assert code == 0, output
        db = f"sqlite:///{base / 's.db'}"
        code, output = stepwise("run", "--generator", "shapes", "--suite", str(base / "prompts" /
                                "evaluation_metadata.jsonl"), "--pool", "3", "--verifier", "scripted",
                                "--db", db, "--out", str(base / "out"), *flags)
        assert code == 0, output
        yield {"db": db, "run_id": output.strip().splitlines()[-1], "flags": flags, "base": base}


def test_curate_a_real_run(real_run: dict[str, Any], tmp_path: Path) -> None:
    args = ["curate", "--run", real_run["run_id"], "--db", real_run["db"], *real_run["flags"]]
    code, output = stepwise(*args, "-o", str(tmp_path / "a"))
    assert code == 0, output
    assert "15 ORM records" in output and "PARM: clarity 30" in output
    manifest = read_json(tmp_path / "a" / "manifest.json")
    assert manifest["suite"]["name"].endswith("evaluation_metadata.jsonl")
    orm = read_json(tmp_path / "a" / "orm.json")
    parm = read_json(tmp_path / "a" / "parm.json")
    labels = {(r["prompt_index"], r["sample_index"]): r["conversations"][-1]["value"] for r in orm}
    for pair in read_lines(tmp_path / "a" / "dpo.jsonl"):
        assert labels[(pair["prompt_index"], pair["chosen_sample_index"])] == "yes"
        assert labels[(pair["prompt_index"], pair["rejected_sample_index"])] == "no"
    for r in parm:
        if r["task"] == "potential":  # the final's verdict, read off the preview's path
            assert r["conversations"][-1]["value"] == labels[(r["prompt_index"], r["sample_index"])]
    assert sum(r["task"] == "selection" for r in parm) == 15
    # Again: the previews' verdicts now come from the cache, and the files are the same bytes.
    code, output = stepwise(*args, "-o", str(tmp_path / "b"))
    assert code == 0, output
    assert {p.name: p.read_bytes() for p in (tmp_path / "a").iterdir()} == \
        {p.name: p.read_bytes() for p in (tmp_path / "b").iterdir()}
