"""GenEval 2 leaderboard entries without a model: the export's records (Soft-TIFA GM and per-question
scores), the loader's checks against the user's data (or, without it, the published suite's hash), and
the recomputed figures. The run -> submit -> validate -> site path with a tiny Qwen3-VL is in
test_geneval2_pools.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from geneval2_synthetic import RECORDS, real_data_file, write_data

from harness.geneval2.soft_tifa import geometric_mean
from harness.geneval2.suite import reason_of
from harness.store import content_hash
from harness.submissions.load import SubmissionError, load_entry
from harness.submissions.manifest import dump_manifest
from harness.submissions.model import Evaluator, Manifest, Protocol, System
from harness.submissions.suites import DATA_ENV, PUBLISHED_GENEVAL2_SUITE_HASH

SAMPLES = 2


@pytest.fixture(autouse=True)
def no_data_in_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)


def soft_scores(prompt: int, sample: int, questions: int) -> list[float]:
    return [round(0.05 + ((7 * prompt + 3 * sample + q) % 19) / 20, 4) for q in range(questions)]


def export_lines(records: list[dict[str, Any]], suite_hash: str) -> list[dict[str, Any]]:
    header = {"format": "stepwise-export", "version": 1, "run_id": "a" * 64,
              "suite": {"name": "geneval2", "hash": suite_hash, "prompts": len(records)},
              "generator": {"name": "shapes", "package": "p", "version": "1", "params": {}}, "seed": 0,
              "evaluator": {"backend": "soft-tifa", "settings_hash": "b" * 64,
                            "settings": {"model": "Qwen3-VL-8B-Instruct", "dtype": "bfloat16", "vqascore": True,
                                         "settings_hash": "b" * 64}},
              "verifiers": {"key": "c" * 64}, "stepwise_version": "0.1.0"}
    lines = [header]
    for p, record in enumerate(records):
        questions = [q for q, _ in record["vqa_list"]]
        for j in range(SAMPLES):
            soft = soft_scores(p, j, len(questions))
            hard = [int(x > 0.5) for x in soft]
            lines.append({"prompt_index": p, "tag": f"atoms={record['atom_count']}", "prompt": record["prompt"],
                          "sample_index": j, "sha256": f"{1000 * p + j:064x}", "image": None,
                          "correct": all(hard), "reason": reason_of(questions, hard), "detections": {},
                          "scores": {"key": float(j)}, "score": geometric_mean(soft),
                          "answers": {"soft_scores": soft, "tifa_scores": hard}})
    return lines


def write_entry(folder: Path, lines: list[dict[str, Any]], n: int = SAMPLES, suite: str = "geneval2") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    head = lines[0]
    manifest = Manifest(
        name="GenEval 2 entry", authors=(), link=None, description="d", kind="reproduced",
        system=System(generator="shapes", strategy="best-of-n", verifiers=("key",), n=n, alignment="none",
                      reward_guidance="none"),
        evaluator=Evaluator(backend="soft-tifa", settings=head["evaluator"]["settings"]),
        protocol=Protocol(images_per_prompt=SAMPLES, seed=0, resolution=None, prompt_rewriting=False),
        sources=(), scores=None, export="export.jsonl", suite=suite)
    (folder / "submission.toml").write_text(dump_manifest(manifest), encoding="utf-8")
    (folder / "export.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return folder


def problems(folder: Path, data: Path | None) -> str:
    with pytest.raises(SubmissionError) as err:
        load_entry(folder, geneval2_data=data)
    return str(err.value)


def test_an_entry_is_recomputed_from_its_soft_tifa_scores(tmp_path: Path) -> None:
    data = write_data(tmp_path / "geneval2_data.jsonl")
    lines = export_lines(RECORDS, content_hash(RECORDS))
    entry = load_entry(write_entry(tmp_path / "g2", lines), geneval2_data=data)
    assert entry.suite == "geneval2"
    assert entry.verification is not None and entry.verification.checks == ("soft-tifa", "images", "scores")
    assert entry.verification.missing == ()
    # best of 2 by "key" (sample 1 scores higher): each prompt's sample-1 Soft-TIFA GM, mean over prompts
    picked = [x["score"] for x in lines[1:] if x["sample_index"] == 1]
    assert entry.scores["overall"] == pytest.approx(sum(picked) / len(picked), abs=1e-12)
    assert list(entry.scores) == ["atoms=3", "atoms=4", "atoms=6", "overall"]
    assert entry.scores["atoms=4"] == pytest.approx(picked[1], abs=1e-12)
    oracle = [max(a["score"], b["score"]) for a, b in zip(lines[1::2], lines[2::2], strict=True)]
    assert entry.curves["oracle"][1].overall == pytest.approx(sum(oracle) / len(oracle), abs=1e-12)
    # Without the data an unpublished suite cannot be checked, so it does not load at all.
    assert "is not the published GenEval 2 suite's" in problems(tmp_path / "g2", None)


def edit(lines: list[dict[str, Any]], index: int, **values: Any) -> list[dict[str, Any]]:
    out = [dict(x) for x in lines]
    out[index].update(values)
    return out


@pytest.mark.parametrize(("change", "message"), [
    (lambda x: edit(x, 1, score=0.99), "is not the geometric mean of its soft_scores"),
    (lambda x: edit(x, 1, correct=not x[1]["correct"]), "but its tifa_scores give"),
    (lambda x: edit(x, 1, reason="made up"), "is not the one its tifa_scores give"),
    (lambda x: edit(x, 1, tag="atoms=5"), "are not the suite's"),
    (lambda x: edit(x, 1, tag="counting"), "is not a GenEval 2 atomicity"),
    (lambda x: edit(x, 1, detections={"cup": [{"box": [0, 0, 1, 1], "score": 0.9}]}), "has none; give {}"),
    (lambda x: edit(x, 1, answers={"soft_scores": [0.5], "tifa_scores": [1, 0]}), "one of each per question"),
    (lambda x: edit(x, 1, answers={"soft_scores": [0.5], "tifa_scores": [2]}), "must be 0 or 1"),
    (lambda x: edit(x, 1, answers={"soft_scores": [0.5], "tifa_scores": [1]}, score=0.5, reason="",
                    correct=True), "questions answered, but the suite's prompt has 3"),
    (lambda x: [x[0], *(r for r in x[1:] if "score" in r and r.pop("score"))], "lacks score"),
])
def test_forged_records_are_refused(tmp_path: Path, change: Any, message: str) -> None:
    data = write_data(tmp_path / "geneval2_data.jsonl")
    folder = write_entry(tmp_path / "g2", change(export_lines(RECORDS, content_hash(RECORDS))))
    text = problems(folder, data)
    assert message in text and "export.jsonl" in text, text


def test_the_data_must_be_the_suite_the_export_names(tmp_path: Path) -> None:
    other = write_data(tmp_path / "other.jsonl", RECORDS[:2])
    folder = write_entry(tmp_path / "g2", export_lines(RECORDS, content_hash(RECORDS)))
    assert "is not that of the GenEval 2 data at" in problems(folder, other)


REAL = real_data_file()


@pytest.mark.skipif(REAL is None, reason="the published geneval2_data.jsonl is not on this machine "
                                         "(../shared/data/geneval2/ or $STEPWISE_GENEVAL2_DATA)")
def test_an_entry_of_the_published_suite_loads_without_the_data_but_is_not_rechecked(tmp_path: Path) -> None:
    from harness.geneval2.data import read_data
    from harness.submissions.verify import Rechecker, RecheckPlan

    assert REAL is not None
    records = [dict(r) for r in read_data(REAL).records]
    assert content_hash(records) == PUBLISHED_GENEVAL2_SUITE_HASH  # the constant is the published suite's
    folder = write_entry(tmp_path / "g2", export_lines(records, PUBLISHED_GENEVAL2_SUITE_HASH))
    entry = load_entry(folder)
    assert entry.verification is not None and "GenEval 2 data not given" in entry.verification.missing[0]
    assert Rechecker(RecheckPlan(count=0)).recheck(entry).verification.level == "consistent"
    assert len(entry.scores) == 9  # atoms=3..10 and overall
    # With the data, the same entry is checked against it: nothing missing any more.
    checked = load_entry(folder, geneval2_data=REAL)
    assert checked.verification is not None and checked.verification.missing == ()
    assert checked.scores == entry.scores


def test_a_reported_geneval2_entry_has_its_own_columns_and_table(tmp_path: Path) -> None:
    from harness.submissions.manifest import parse_manifest
    from leaderboard.build import build_site

    text = """name = "Some model (GenEval 2 paper)"
authors = ["A. B."]
description = "Typed from a table."
kind = "reported"
suite = "geneval2"

[system]
generator = "some-model"
strategy = "none"
verifiers = []
n = 1
alignment = "none"
reward_guidance = "none"

[evaluator]
backend = "soft-tifa"

[protocol]
images_per_prompt = 1
prompt_rewriting = false

[[source]]
citation = "Kamath et al., GenEval 2 (2025)"
table = "Table 2"

[scores]
overall = 0.4
"atoms=3" = 0.62
"""
    manifest, problems = parse_manifest(text)
    assert problems == [] and manifest is not None and manifest.suite == "geneval2"
    assert parse_manifest(dump_manifest(manifest)) == (manifest, [])  # "atoms=3" written as a quoted key
    wrong, problems = parse_manifest(text.replace('"atoms=3"', "counting"))
    assert wrong is None and "scores.counting: unknown task (GenEval 2's atomicities" in problems[0]
    wrong, problems = parse_manifest(text.replace('suite = "geneval2"', 'suite = "geneval3"'))
    assert wrong is None and "suite: must be one of 'geneval', 'geneval2'" in problems[0]

    folder = tmp_path / "subs" / "some-model"
    folder.mkdir(parents=True)
    (folder / "submission.toml").write_text(text, encoding="utf-8")
    entry = load_entry(folder)
    assert entry.suite == "geneval2" and entry.scores == {"atoms=3": 0.62, "overall": 0.4}
    site = tmp_path / "site"
    build_site([entry], site)
    index = (site / "index.html").read_text()
    assert 'id="reported-geneval2-soft-tifa"' in index and ">Soft-TIFA GM</button>" in index
    assert json.loads((site / "leaderboard.json").read_text())["entries"][0]["suite"] == "geneval2"


def test_a_reproduced_manifest_names_its_exports_suite(tmp_path: Path) -> None:
    data = write_data(tmp_path / "geneval2_data.jsonl")
    folder = write_entry(tmp_path / "g2", export_lines(RECORDS, content_hash(RECORDS)), suite="geneval")
    assert "suite 'geneval' is not the export's suite 'geneval2'" in problems(folder, data)
