"""A small GenEval 2-format data file, written by the tests (the real one is CC BY-NC 4.0 and never committed).

The records are made up here in the published file's format: one JSON object per line with prompt,
atom_count, vqa_list ([question, answer] pairs) and skills (one per pair), written with
`json.dumps` as the published file is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

RECORDS: list[dict[str, Any]] = [
    {"prompt": "three red cups", "atom_count": 3,
     "vqa_list": [["How many cups are in the image?", "three"], ["Are the cups red?", "Yes"],
                  ["Are there any cups in the image?", "Yes"]],
     "skills": ["count", "attribute", "object"]},
    {"prompt": "a dog riding a wooden bicycle", "atom_count": 4,
     "vqa_list": [["How many dogs are in the image?", "one"], ["Are there any dogs in the image?", "Yes"],
                  ["Is the dog riding the bicycle?", "Yes"], ["Is the bicycle wooden?", "Yes"],
                  ["How many bicycles are in the image?", "one"], ["Are there any bicycles in the image?", "Yes"]],
     "skills": ["count", "object", "verb", "attribute", "count", "object"]},
    {"prompt": "ten blue balloons above two cats", "atom_count": 6,
     "vqa_list": [["How many balloons are in the image?", "ten"], ["Are the balloons blue?", "Yes"],
                  ["Are there any balloons in the image?", "Yes"], ["Are the balloons above the cats?", "Yes"],
                  ["How many cats are in the image?", "two"], ["Are there any cats in the image?", "Yes"]],
     "skills": ["count", "attribute", "object", "position", "count", "object"]},
]


def data_text(records: list[dict[str, Any]] | None = None) -> str:
    return "".join(json.dumps(r) + "\n" for r in (RECORDS if records is None else records))


def write_data(path: Path, records: list[dict[str, Any]] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data_text(records), encoding="utf-8")
    return path


def real_data_file() -> Path | None:
    """The published geneval2_data.jsonl when this machine has it: $STEPWISE_GENEVAL2_DATA, else
    ../shared/data/geneval2/ beside the checkout (or beside the folder of worktrees)."""
    if os.environ.get("STEPWISE_GENEVAL2_DATA"):
        path = Path(os.environ["STEPWISE_GENEVAL2_DATA"])
        return path if path.is_file() else None
    root = Path(__file__).resolve().parents[1]
    for base in (root.parent, root.parent.parent):
        path = base / "shared" / "data" / "geneval2" / "geneval2_data.jsonl"
        if path.is_file():
            return path
    return None
