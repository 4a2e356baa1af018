"""Training prompts (`stepwise prompts train`): GenEval's templates, disjoint from evaluation suites."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import stepwise

from harness.geneval.classes import TAGS
from harness.geneval.rules import check_metadata
from harness.prompts import (
    TASK_SPACES,
    geneval_suite,
    overlapping,
    read_metadata,
    requirement_key,
    training_suite,
)
from harness.runner import RunConfig, RunError, suite_samples


@pytest.fixture(scope="module")
def geneval() -> list[dict]:
    return geneval_suite()


@pytest.fixture(scope="module")
def large(geneval: list[dict]) -> list[dict]:
    """More per task than counting and colors have left: their spaces run out."""
    return training_suite(per_task=1000, seed=0, exclude=geneval)


def test_disjoint_from_all_553_geneval_prompts(geneval: list[dict], large: list[dict]) -> None:
    assert len(geneval) == 553
    texts = {s["prompt"] for s in geneval}
    requirements = {requirement_key(s) for s in geneval}
    assert not [s for s in large if s["prompt"] in texts]
    assert not [s for s in large if requirement_key(s) in requirements]
    assert overlapping(large, geneval) == []
    assert len({s["prompt"] for s in large}) == len(large)  # no text twice


def test_per_task_counts_and_exhausted_spaces(geneval: list[dict], large: list[dict]) -> None:
    counts = Counter(s["tag"] for s in large)
    left = {space.tag: space.size - sum(s["tag"] == space.tag for s in geneval) for space in TASK_SPACES}
    # single_object: GenEval's suite holds all 80 "a photo of a X"; counting 240 - 80, colors 790 - 94.
    assert left["single_object"] == 0 and left["counting"] == 160 and left["colors"] == 696
    assert {tag: counts[tag] for tag in TAGS} == {tag: min(1000, left[tag]) for tag in TAGS}
    small = Counter(s["tag"] for s in training_suite(per_task=7, seed=3, exclude=geneval))
    assert dict(small) == {"two_object": 7, "counting": 7, "colors": 7, "position": 7, "color_attr": 7}
    assert list(small) == [t for t in TAGS if t != "single_object"]  # GenEval's task order
    assert training_suite(per_task=0, seed=0, exclude=geneval) == []
    with pytest.raises(ValueError, match="per_task"):
        training_suite(per_task=-1, seed=0, exclude=[])


def test_deterministic_under_the_seed(geneval: list[dict]) -> None:
    a = training_suite(per_task=20, seed=5, exclude=geneval)
    assert a == training_suite(per_task=20, seed=5, exclude=geneval)
    assert a != training_suite(per_task=20, seed=6, exclude=geneval)
    # Without exclusions single_object is a permutation of the 80 classes.
    assert sum(s["tag"] == "single_object" for s in training_suite(per_task=100, seed=0, exclude=[])) == 80


def test_records_are_what_geneval_s_evaluator_accepts(large: list[dict]) -> None:
    for sample in large:
        assert check_metadata(sample) == [], sample
        expected_keys = ["tag", "include", "exclude", "prompt"] if sample["tag"] == "counting" else \
            ["tag", "include", "prompt"]
        assert list(sample) == expected_keys  # GenEval's key order
    position = next(s for s in large if s["tag"] == "position")
    assert isinstance(position["include"][1]["position"][1], int)
    counting = next(s for s in large if s["tag"] == "counting")
    assert counting["exclude"][0]["count"] == counting["include"][0]["count"] + 1
    assert 2 <= counting["include"][0]["count"] <= 4


def test_the_spaces_hold_every_geneval_prompt(geneval: list[dict]) -> None:
    """The spaces are GenEval's generator's: each of its 553 records is one of them, byte for byte."""
    for space in TASK_SPACES:
        index = {space.record(i)["prompt"]: i for i in range(space.size)}
        assert len(index) == space.size  # all distinct
        for sample in (s for s in geneval if s["tag"] == space.tag):
            assert json.dumps(space.record(index[sample["prompt"]])) == json.dumps(sample)


def test_cli_writes_geneval_files_and_honours_exclude(tmp_path: Path) -> None:
    code, output = stepwise("prompts", "train", "--per-task", "5", "--seed", "1", "-o", str(tmp_path / "a"))
    assert code == 0, output
    assert "wrote 25 prompts" in output and "single_object 0" in output
    assert "warning: single_object: only 0 of 5" in output
    first = read_metadata(tmp_path / "a" / "evaluation_metadata.jsonl")
    lines = (tmp_path / "a" / "generation_prompts.txt").read_text().splitlines()
    assert lines == [s["prompt"] for s in first] and len(first) == 25
    # Same seed again, but excluding the first set: nothing of it comes back.
    code, output = stepwise("prompts", "train", "--per-task", "5", "--seed", "1", "-o", str(tmp_path / "b"),
                            "--exclude", str(tmp_path / "a" / "evaluation_metadata.jsonl"))
    assert code == 0, output
    second = read_metadata(tmp_path / "b" / "evaluation_metadata.jsonl")
    assert len(second) == 25 and overlapping(second, first) == []


def test_cli_names_a_bad_exclude_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"tag": "single_object", "prompt": "x", "include": [{"class": "unicorn", "count": 1}]}\n')
    code, output = stepwise("prompts", "train", "--per-task", "1", "--exclude", str(bad), "-o", str(tmp_path / "o"))
    assert code != 0 and f"{bad}:1:" in output and "unicorn" in output


def test_the_runner_takes_a_metadata_file_as_suite(tmp_path: Path) -> None:
    from harness.geneval.evaluator import EvaluatorSpec

    code, output = stepwise("prompts", "train", "--per-task", "2", "-o", str(tmp_path))
    assert code == 0, output
    path = tmp_path / "evaluation_metadata.jsonl"
    config = RunConfig(generator="shapes", evaluator=EvaluatorSpec(backend="hf"), pool=1, suite=str(path))
    assert suite_samples(config) == read_metadata(path)
    missing = RunConfig(generator="shapes", evaluator=EvaluatorSpec(backend="hf"), pool=1,
                        suite=str(tmp_path / "none.jsonl"))
    with pytest.raises(RunError, match=r"cannot read suite file .*none\.jsonl"):
        suite_samples(missing)
