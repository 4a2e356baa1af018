"""What an entry's suite means for its export, its checks, its numbers and its table.

Two suites have leaderboard entries:

- `geneval` (the reference): records are tagged with GenEval's six tasks, a candidate's figure is its
  0/1 verdict, the evidence its detections (re-derived by GenEval's rules), overall = the unweighted
  mean of the task means; its suite is rebuilt here from the code (`folder_checks.geneval_suite_of`).
- `geneval2` (Kamath et al., 2025): records are tagged with the prompt's atomicity ("atoms=3" ..
  "atoms=10", soft_tifa_analysis.py's prompt-level breakdown), a candidate's figure is its Soft-TIFA
  GM (`ImageRecord.score`), the evidence its per-question `soft_scores` and `tifa_scores`
  (`ImageRecord.answers`), the headline figure the mean over prompts (evaluation.py's score, on 0..1).
  Its data is CC BY-NC 4.0 and not shipped: the loader reads the user's copy, given as
  `--geneval2-data DIR` (the folder `stepwise prompts geneval2` writes, or the data file) or in
  $STEPWISE_GENEVAL2_DATA, to check prompt texts and questions; without it only the published
  suite's hash is accepted, and the entry's verification says what could not be checked.

Entries of different suites, or of different evaluators, are never ranked in one table.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.submissions.model import TASK_LABELS, TASKS

__all__ = ["DATA_ENV", "EXPORT_SUITES", "GENEVAL", "GENEVAL2", "PUBLISHED_GENEVAL2_PROMPTS",
           "PUBLISHED_GENEVAL2_SUITE_HASH", "SuiteView",
           "geneval2_records", "tag_problem", "view"]

DATA_ENV = "STEPWISE_GENEVAL2_DATA"
# content_hash of the published geneval2_data.jsonl's 800 records (sha256 09233adb…), as `stepwise run
# --suite geneval2` files its runs: an export naming it is a run of the published suite.
PUBLISHED_GENEVAL2_SUITE_HASH = "69bb249b7b0ad7efdd0cbabd41bccb7f2f7b8c831340094f0d48f7152c2b0200"
PUBLISHED_GENEVAL2_PROMPTS = 800
ATOMS = tuple(range(3, 11))
_ATOMS_TAG = re.compile(r"atoms=([1-9][0-9]?)")


@dataclass(frozen=True)
class SuiteView:
    """A suite as the leaderboard shows it: its columns and how they add up."""

    name: str  # as export headers name it
    title: str  # as headings name it
    overall_label: str  # the headline figure's column heading
    overall_mean: str  # "groups" (GenEval: mean of the task means) or "prompts" (GenEval 2)
    groups: tuple[str, ...]  # the category columns, in order
    group_labels: Mapping[str, str]

    @property
    def keys(self) -> tuple[str, ...]:
        """The score columns: "overall" (the headline figure) first, then the groups."""
        return ("overall", *self.groups)

    def label(self, key: str) -> str:
        return self.overall_label if key == "overall" else self.group_labels.get(key, key)

    @property
    def labels(self) -> dict[str, str]:
        """Every score column's heading, in column order."""
        return {key: self.label(key) for key in self.keys}

    @property
    def figure(self) -> str:
        """The headline figure as axis labels and chart titles name it: "GenEval overall"."""
        return f"{self.title} {self.overall_label.lower() if self.name == 'geneval' else self.overall_label}"

    def order(self, tags: Sequence[str]) -> list[str]:
        """`tags` in column order; unknown ones after, sorted."""
        present = set(tags)
        return [g for g in self.groups if g in present] + sorted(present - set(self.groups))


GENEVAL = SuiteView("geneval", "GenEval", "Overall", "groups", TASKS, TASK_LABELS)
GENEVAL2 = SuiteView("geneval2", "GenEval 2", "Soft-TIFA GM", "prompts", tuple(f"atoms={k}" for k in ATOMS),
                     {f"atoms={k}": f"{k} atoms" for k in ATOMS})
VIEWS = {v.name: v for v in (GENEVAL, GENEVAL2)}
EXPORT_SUITES = tuple(VIEWS)


def view(name: str) -> SuiteView:
    """The view of a suite an export may name (`EXPORT_SUITES`); ValueError for another."""
    try:
        return VIEWS[name]
    except KeyError:
        raise ValueError(f"suite {name!r}: leaderboard entries are of {' or '.join(map(repr, EXPORT_SUITES))} "
                         "runs") from None


def tag_problem(suite: str, tag: str) -> str | None:
    """Why `tag` cannot be a candidate's category in an export of `suite`, or None."""
    if suite == "geneval2":
        return None if _ATOMS_TAG.fullmatch(tag) else f"tag {tag!r} is not a GenEval 2 atomicity ('atoms=3'..)"
    return None if tag in TASKS else f"tag {tag!r} is not one of GenEval's ({', '.join(TASKS)})"


def geneval2_records(suite_hash: str, data: Path | None = None) -> tuple[list[dict[str, Any]] | None, str | None]:
    """The GenEval 2 records an export's `suite.hash` names, read from the user's copy of the data.

    data: the suite folder or data file [$STEPWISE_GENEVAL2_DATA]. Returns (records, None), or
    (None, why they are not checked) when no data is given and the hash is the published suite's.
    ValueError when the data cannot be read, or names another suite than the hash, or when no data
    is given and the hash is not the published suite's (nothing here could check such an entry).
    """
    where = data if data is not None else (Path(os.environ[DATA_ENV]) if os.environ.get(DATA_ENV) else None)
    if where is None:
        if suite_hash != PUBLISHED_GENEVAL2_SUITE_HASH:
            raise ValueError(f"suite.hash {suite_hash[:12]}… is not the published GenEval 2 suite's "
                             f"({PUBLISHED_GENEVAL2_SUITE_HASH[:12]}…); give the data it was run on with "
                             f"--geneval2-data (or ${DATA_ENV}) to check it")
        return None, (f"GenEval 2 data not given (--geneval2-data or ${DATA_ENV}): prompt texts, atomicities and "
                      "questions were not checked against the suite, nor the images re-judged")
    records, digest = _read_records(str(where))
    if digest != suite_hash:
        raise ValueError(f"suite.hash {suite_hash[:12]}… is not that of the GenEval 2 data at {where} "
                         f"({digest[:12]}…)")
    return records, None


@functools.lru_cache(maxsize=4)
def _read_records(where: str) -> tuple[list[dict[str, Any]], str]:
    from harness.geneval2.data import DataError, read_suite
    from harness.store import content_hash

    try:
        records = [dict(r) for r in read_suite(Path(where)).records]
    except DataError as err:
        raise ValueError(f"GenEval 2 data: {err}") from None
    return records, content_hash(records)
