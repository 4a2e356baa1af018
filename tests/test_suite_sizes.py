"""A submission names its GenEval suite by size and hash; every size `stepwise prompts geneval` makes is found.

GenEval drops exact duplicate prompts, so sizes are not 80 + 5 x per-task: the published 553-prompt
suite is per-task 100. The loaders once took (553 - 80) / 5 and refused every full-suite entry.
"""

from __future__ import annotations

import pytest

from harness.prompts import geneval_suite
from harness.store import content_hash
from harness.submissions.folder_checks import geneval_per_task_options, geneval_suite_of, suite_metadata


@pytest.mark.parametrize("per_task", [0, 1, 10, 94, 100])
def test_each_suite_is_found_by_its_size_and_hash(per_task: int) -> None:
    samples = geneval_suite(per_task=per_task)
    assert per_task in geneval_per_task_options(len(samples))
    assert geneval_suite_of(len(samples), content_hash(samples)) == samples
    assert suite_metadata(len(samples), content_hash(samples)) == samples


def test_the_published_suite_and_sizes_that_are_none() -> None:
    assert geneval_per_task_options(553) == (100,)
    assert geneval_per_task_options(79) == () and geneval_per_task_options(86) == ()
    assert geneval_suite_of(553, "0" * 64) is None
    with pytest.raises(ValueError, match="no GenEval suite has 86 prompts"):
        suite_metadata(86)
