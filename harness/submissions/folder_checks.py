"""Checks an entry folder's loaders share, pool and search exports alike: the error that lists every
problem, size caps, the suite's metadata, and the shipped images (confined, hashed, sized).

Below `load` and `search_load` (each imports this; neither imports the other's helpers).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.hashing import content_sha256
from harness.submissions.model import ImageRecord, ValidationProblem
from harness.submissions.paths import PathProblem, confined

__all__ = ["MAX_EXPORT_BYTES", "MAX_IMAGE_BYTES", "SubmissionError", "check_images", "folder_error", "prompt_problem",
           "suite_metadata", "suite_samples", "tag_and_prompt"]

MAX_EXPORT_BYTES = 50 * 1024 * 1024
MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_IMAGE_PROBLEMS = 20


class SubmissionError(ValueError):
    """A submission folder that does not load; `problems` says every reason found."""

    def __init__(self, problems: list[ValidationProblem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def folder_error(folder: Path, file: str, *messages: str) -> SubmissionError:
    return SubmissionError([ValidationProblem(folder, file, m) for m in messages])


@functools.lru_cache(maxsize=64)
def geneval_per_task_options(prompts: int) -> tuple[int, ...]:
    """The `per_task` values whose GenEval suite has `prompts` prompts. Not simply (prompts - 80) / 5:
    exact duplicate prompts are dropped (the default per_task = 100 gives 553, not 580), so sizes are
    looked up, from the smallest per_task that could give them until the sizes are well past it
    (each per_task adds up to 5 prompts, duplicates take a few away)."""
    from harness.prompts import geneval_suite

    if prompts < 80:
        return ()
    found = []
    per_task = -(-(prompts - 80) // 5)
    while True:
        size = len(geneval_suite(per_task=per_task))
        if size == prompts:
            found.append(per_task)
        elif size > prompts + 25:
            return tuple(found)
        per_task += 1


def geneval_suite_of(prompts: int, suite_hash: str | None = None) -> list[dict] | None:
    """GenEval's suite of `prompts` prompts (with this content hash, when given), or None."""
    from harness.prompts import geneval_suite
    from harness.store import content_hash

    for per_task in geneval_per_task_options(prompts):
        samples = geneval_suite(per_task=per_task)
        if suite_hash is None or content_hash(samples) == suite_hash:
            return samples
    return None


def suite_metadata(prompts: int, suite_hash: str | None = None) -> list[dict]:
    """GenEval's suite of `prompts` prompts (`_coverage` has checked it is one), by prompt index."""
    samples = geneval_suite_of(prompts, suite_hash)
    if samples is None:
        raise ValueError(f"no GenEval suite has {prompts} prompts")
    return samples


def suite_samples(export: Any, geneval2_data: Path | None) -> tuple[list[dict] | None, str | None]:
    """The records of the export's suite by prompt index (None: GenEval 2 without its data here) and,
    then, what could not be checked; ValueError when the header names no suite this harness knows."""
    from harness.submissions.suites import PUBLISHED_GENEVAL2_PROMPTS, geneval2_records

    head = export.header
    if head.suite == "geneval2":
        records, unchecked = geneval2_records(head.suite_hash, geneval2_data)
        size = len(records) if records is not None else PUBLISHED_GENEVAL2_PROMPTS
        if head.prompts != size:
            raise ValueError(f"suite.prompts = {head.prompts}, but the GenEval 2 suite of its hash has {size} prompts")
        return records, unchecked
    if not geneval_per_task_options(head.prompts):
        raise ValueError(f"suite.prompts = {head.prompts} is no size of GenEval's suite (`stepwise prompts geneval "
                         "--per-task K` sizes)")
    found = geneval_suite_of(head.prompts, head.suite_hash)
    if found is None:
        raise ValueError(f"suite.hash {head.suite_hash[:12]}… is not that of GenEval's {head.prompts}-prompt suite")
    return found, None


def tag_and_prompt(suite: str, record: dict) -> tuple[str, str]:
    """A suite record's category and prompt text, as an export's candidates carry them."""
    if suite == "geneval2":
        return f"atoms={record['atom_count']}", record["prompt"]
    return record["tag"], record["prompt"]


def prompt_problem(suite: str, samples: Sequence[dict] | None, record: ImageRecord,
                   first: dict[int, tuple[str, str]]) -> str | None:
    """Why a record's tag and prompt text are not those of its prompt index (pool candidates and search
    picks alike), or None: the suite's (`samples`), else, for GenEval 2 checked without its data, the
    same on every line of the prompt (`first` remembers them) and an atomicity of the published suite."""
    from harness.submissions.suites import GENEVAL2

    where = f"prompt {record.prompt_index:05d}"
    if samples is not None:
        tag, prompt = tag_and_prompt(suite, samples[record.prompt_index])
        if (record.tag, record.prompt) != (tag, prompt):
            return f"{where}: tag/prompt {record.tag!r}/{record.prompt!r:.60} are not the suite's ({tag!r}/{prompt!r})"
    if first.setdefault(record.prompt_index, (record.tag, record.prompt)) != (record.tag, record.prompt):
        return (f"{where} sample {record.sample_index}: tag/prompt {record.tag!r}/{record.prompt!r:.60} are not "
                "those of the prompt's other samples")
    if samples is None and record.tag not in GENEVAL2.groups:
        return (f"{where}: tag {record.tag!r} is not an atomicity of the published GenEval 2 suite "
                f"({GENEVAL2.groups[0]}..{GENEVAL2.groups[-1]})")
    return None


def check_images(folder: Path, records: Sequence[ImageRecord],
                 export_name: str) -> tuple[list[ValidationProblem], dict[str, tuple[int, int]]]:
    """Each named image is a file in the folder whose sha256 is its record's, and a readable image of
    at most MAX_PIXELS; returns the problems and {sha256: (width, height)} of the shipped images."""
    from harness.images import ImageFileError, image_size

    problems: list[ValidationProblem] = []
    digests: dict[str, str] = {}  # path -> sha256 (identical images share a file)
    sizes: dict[str, tuple[int, int]] = {}
    for r in records:
        if r.image is None:
            continue
        if len(problems) >= MAX_IMAGE_PROBLEMS:
            problems.append(ValidationProblem(folder, "", f"stopped after {MAX_IMAGE_PROBLEMS} image problems"))
            break
        where = f"prompt {r.prompt_index:05d} sample {r.sample_index}"
        if r.image not in digests:
            try:
                digests[r.image] = _sha256(confined(folder, r.image))
            except PathProblem as err:  # named by the export: the path itself may point anywhere
                problems.append(ValidationProblem(folder, export_name, f"{where}: image {err}"))
                continue
            except ValueError as err:
                problems.append(ValidationProblem(folder, r.image, f"{where}: {err}"))
                continue
        if digests[r.image] != r.sha256:
            problems.append(ValidationProblem(
                folder, r.image, f"{where}: the file's sha256 is {digests[r.image][:12]}…, the record says "
                                 f"{r.sha256[:12]}…; this is not the image that was judged"))
        elif r.sha256 not in sizes:
            try:
                sizes[r.sha256] = image_size(folder / r.image)
            except ImageFileError as err:
                problems.append(ValidationProblem(folder, r.image, f"{where}: {str(err).split(': ', 1)[-1]}"))
    return problems, sizes


def _sha256(path: Path) -> str:
    """sha256 of a regular file of at most MAX_IMAGE_BYTES; ValueError saying why not."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ValueError("the image file does not exist") from None
    except OSError as err:
        raise ValueError(f"cannot read the image ({err.strerror})") from None
    if not os.path.isfile(path):
        raise ValueError("is not a regular file")
    if info.st_size > MAX_IMAGE_BYTES:
        raise ValueError(f"the image is {info.st_size} bytes; at most {MAX_IMAGE_BYTES}")
    return content_sha256(path)
