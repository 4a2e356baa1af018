"""The export of a reproduced entry: one JSON line per candidate, after one header line.

Header (line 1):

    {"format": "stepwise-export", "version": 1, "run_id": "<sha256>",
     "suite": {"name": "geneval", "hash": "<sha256>", "prompts": 553},
     "generator": {"name": "showo", "package": "...", "version": "...", "params": {...}}, "seed": 0,
     "evaluator": {"backend": "mmdet", "settings_hash": "<sha256>", "settings": {...}},
     "verifiers": {"<name>": "<settings sha256>"}, "stepwise_version": "0.1.0",
     "verifier_settings": {"<name>": {"package": "...", "version": "...", "params": {...}, "local": ["model"]}},
     "preparation": {...}}

`verifier_settings` is optional (exports written before it existed lack it): what each verifier was
built with, so a maintainer can build it again and re-score the shipped images
(`harness.submissions.verify`). `params` are the canonical parameters, local files and folders shown
by their names only; `local` names those parameters (a re-check looks them up with `--models DIR`).

`preparation` is optional: present when a strategy's prepare stage trained the checkpoint the run
generated with (`stepwise run --strategy dpo`; the store's `preparations` link), absent otherwise
(and in exports written before it existed):

    {"strategy": "dpo", "settings_hash": "<sha256>", "checkpoint": "<folder, as recorded>",
     "checkpoint_sha256": "<sha256>",
     "training": {"data": {"sha256": "<of the pairs file>", "pairs": 4, "reward_prompts_sha256": "<sha256>"},
                  "parameters": {"beta": 0.1, ..., "reward_verifier": "orm", "reward_params": {...}},
                  "parent": {"model": "...", "model_files": {"config.json": "<sha256>", ...}, ...},
                  "steps": {"done": 2, "total": 2}, "finished": true}}

(`data.pairs` and `data.reward_prompts_sha256` only when recorded; `parameters` holds JSON
scalars and flat objects of strings; `parent` strings (or null) and `<key>_files` objects of
sha256.)

Candidates (every other line), the fields of `model.ImageRecord`, plus an optional cost:

    {"prompt_index": 0, "tag": "single_object", "prompt": "a photo of a bench", "sample_index": 0,
     "sha256": "<of the PNG>", "image": "images/<sha256>.png" or null, "correct": true, "reason": "",
     "detections": {"bench": [{"box": [x1, y1, x2, y2], "score": 0.93}]}, "scores": {"<verifier>": 0.8},
     "cost": {"generator_seconds": 1.9, "verifier_seconds": {"<verifier>": 0.05}},
     "step_scores": {"<verifier>": [0.4, 0.7]}}

A GenEval 2 export (suite.name "geneval2", evaluator backend "soft-tifa") tags candidates with their
prompt's atomicity ("atoms=5"), ships no detections ({}), and adds the per-image figure and its evidence
(`harness.submissions.suites`):

    {..., "tag": "atoms=5", "detections": {}, "score": 0.74,
     "answers": {"soft_scores": [0.98, 0.61, ...], "tifa_scores": [1, 0, ...]}}

`cost` is all or nothing: on every candidate line or on none. `step_scores` is optional: the
per-step scores of verifiers that judged the step previews (the leaderboard's per-step AUROC),
at most MAX_STEPS per verifier. Everything here checks types and
shapes only; `harness.submissions.load` checks the export against its manifest and folder.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness.submissions.manifest import LABEL, check_text
from harness.submissions.model import ImageRecord, PreparedCheckpoint, TrainingRecord
from harness.submissions.suites import tag_problem, view

__all__ = ["EXPORT_FORMAT", "EXPORT_VERSION", "Export", "ExportError", "ExportHeader", "header_json",
           "parse_export", "parse_preparation", "preparation_json", "record_json"]

EXPORT_FORMAT = "stepwise-export"
EXPORT_VERSION = 1
SHA256 = re.compile(r"[0-9a-f]{64}")
MAX_PROBLEMS = 20  # an export broken on every line says so once, not 10,000 times
# Caps of the `preparation` object (a checkpoint's manifest is small; these keep a forged one small too).
MAX_PARAMETERS = 64  # training parameters, and items of an object-valued one (reward_params)
MAX_PARENT_KEYS = 16
MAX_PARENT_FILES = 256  # per `<key>_files` object
MAX_PATH = 512  # a checkpoint folder, a parent model, a file name, a parameter's text
MAX_STEPS = 1024  # step scores per verifier and candidate (Show-o has 18 steps, Janus' previews 8)
MAX_QUESTIONS = 256  # GenEval 2 questions per prompt (the published data has at most 26)
_RECORD_KEYS = ("prompt_index", "tag", "prompt", "sample_index", "sha256", "image", "correct", "reason",
                "detections", "scores")


class ExportError(ValueError):
    """Everything wrong with an export, one line each (numbered as in the file)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ExportHeader:
    run_id: str
    suite: str
    suite_hash: str
    prompts: int  # prompts in the suite: the export must cover all of them
    generator: dict[str, Any]  # name, package, version, params
    seed: int
    evaluator_backend: str
    evaluator_settings_hash: str
    evaluator_settings: dict[str, Any]
    verifiers: dict[str, str]  # name -> settings hash
    stepwise_version: str
    preparation: PreparedCheckpoint | None = None  # the prepared checkpoint the run generated with
    # name -> {"package", "version", "params", "local"}: how to build each verifier again; None when not recorded
    verifier_settings: dict[str, dict[str, Any]] | None = None


@dataclass(frozen=True)
class Cost:
    generator_seconds: float
    verifier_seconds: dict[str, float]


@dataclass(frozen=True)
class Export:
    header: ExportHeader
    records: tuple[ImageRecord, ...]  # in file order
    costs: tuple[Cost, ...] | None  # one per record, or None when the export has none


def header_json(header: ExportHeader) -> dict[str, Any]:
    out = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "run_id": header.run_id,
           "suite": {"name": header.suite, "hash": header.suite_hash, "prompts": header.prompts},
           "generator": header.generator, "seed": header.seed,
           "evaluator": {"backend": header.evaluator_backend, "settings_hash": header.evaluator_settings_hash,
                         "settings": header.evaluator_settings},
           "verifiers": header.verifiers, "stepwise_version": header.stepwise_version}
    if header.verifier_settings is not None:
        out["verifier_settings"] = header.verifier_settings
    if header.preparation is not None:  # absent otherwise: exports of other runs stay as they were
        out["preparation"] = preparation_json(header.preparation)
    return out


def preparation_json(preparation: PreparedCheckpoint) -> dict[str, Any]:
    """The header's `preparation` object (module docstring); `parse_preparation` reads it back."""
    training = preparation.training
    data: dict[str, Any] = {"sha256": training.data_sha256}
    if training.pairs is not None:
        data["pairs"] = training.pairs
    if training.reward_prompts_sha256 is not None:
        data["reward_prompts_sha256"] = training.reward_prompts_sha256
    return {"strategy": preparation.strategy, "settings_hash": preparation.settings_hash,
            "checkpoint": preparation.checkpoint, "checkpoint_sha256": preparation.checkpoint_sha256,
            "training": {"data": data, "parameters": training.parameters, "parent": training.parent,
                         "steps": {"done": training.steps_done, "total": training.steps_total},
                         "finished": training.finished}}


def record_json(record: ImageRecord, cost: Cost | None) -> dict[str, Any]:
    out: dict[str, Any] = {key: getattr(record, key) for key in _RECORD_KEYS}
    if cost is not None:
        out["cost"] = {"generator_seconds": cost.generator_seconds, "verifier_seconds": cost.verifier_seconds}
    if record.step_scores:
        out["step_scores"] = {name: list(steps) for name, steps in sorted(record.step_scores.items())}
    if record.score is not None:  # suites other than GenEval (GenEval's lines stay as they were)
        out["score"] = record.score
        out["answers"] = record.answers
    return out


# ---------------------------------------------------------------------------------------------
# reading


def parse_export(lines: Iterable[str]) -> Export:
    """Parse an export's lines; raises ExportError listing what is wrong (line numbers 1-based)."""
    problems: list[str] = []
    header: ExportHeader | None = None
    records: list[ImageRecord] = []
    costs: list[Cost | None] = []
    for lineno, line in enumerate(lines, 1):
        if len(problems) >= MAX_PROBLEMS:
            problems.append(f"stopped after {MAX_PROBLEMS} problems")
            break
        if not line.strip():
            continue
        try:
            value = json.loads(line, parse_constant=_refuse_constant)
        except (ValueError, RecursionError) as err:
            why = "nested too deeply to read" if isinstance(err, RecursionError) else str(err)
            problems.append(f"line {lineno}: not valid JSON ({why})")
            if header is None:
                raise ExportError(problems) from None
            continue
        if header is None:
            try:
                header = _header(value)
            except ValueError as err:
                # Without a header the candidates cannot be checked (which verifiers?): stop here.
                raise ExportError([*problems, f"line {lineno} (the header): {err}"]) from None
            continue
        try:
            record, cost = _record(value, header.verifiers, header.suite)
        except ValueError as err:
            problems.append(f"line {lineno}: {err}")
            continue
        records.append(record)
        costs.append(cost)
    if header is None and not problems:
        problems.append("empty: expected a header line and one line per candidate")
    elif header is not None and not records and not problems:
        problems.append("no candidates after the header")
    with_cost = sum(c is not None for c in costs)
    if 0 < with_cost < len(costs):
        problems.append(f"{with_cost} of {len(costs)} candidates carry a cost; give it on every line or on none")
    if problems or header is None:
        raise ExportError(problems)
    all_costs = tuple(c for c in costs if c is not None) if with_cost else None
    return Export(header, tuple(records), all_costs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON object")
    return value


def _only(value: dict[str, Any], keys: Iterable[str], what: str, optional: Iterable[str] = ()) -> None:
    keys = tuple(keys)
    missing = [k for k in keys if k not in value]
    if missing:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    unknown = sorted(set(value) - set(keys) - set(optional))
    if unknown:
        raise ValueError(f"{what} has unknown key(s) {', '.join(unknown)}")


def _str(value: Any, what: str, max_length: int = 200, pattern: re.Pattern[str] | None = None,
         multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    why = check_text(value, max_length=max_length, multiline=multiline)
    if why is not None:
        raise ValueError(f"{what} {why}")
    if pattern is not None and not pattern.fullmatch(value):
        raise ValueError(f"{what} is malformed: {value[:80]!r}")
    return value


def _int(value: Any, what: str, minimum: int = 0) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}")
    return value


def _number(value: Any, what: str, minimum: float | None = None) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum}")
    return float(value)


def _header(value: Any) -> ExportHeader:
    head = _obj(value, "the header")
    _only(head, ("format", "version", "run_id", "suite", "generator", "seed", "evaluator", "verifiers",
                 "stepwise_version"), "the header", optional=("preparation", "verifier_settings"))
    if head["format"] != EXPORT_FORMAT:
        raise ValueError(f"format must be {EXPORT_FORMAT!r}, got {head['format']!r:.80}")
    if head["version"] != EXPORT_VERSION:
        raise ValueError(f"version {head['version']!r:.20} is not one this harness reads ({EXPORT_VERSION})")
    suite = _obj(head["suite"], "suite")
    _only(suite, ("name", "hash", "prompts"), "suite")
    view(_str(suite["name"], "suite.name", 64))  # ValueError naming the suites entries can be of
    generator = _obj(head["generator"], "generator")
    _only(generator, ("name", "package", "version", "params"), "generator")
    for key in ("name", "package", "version"):
        _str(generator[key], f"generator.{key}")
    _obj(generator["params"], "generator.params")
    evaluator = _obj(head["evaluator"], "evaluator")
    _only(evaluator, ("backend", "settings_hash", "settings"), "evaluator")
    settings = _obj(evaluator["settings"], "evaluator.settings")
    for key, item in settings.items():
        if not isinstance(item, str | int | float | bool):
            raise ValueError(f"evaluator.settings.{key} must be a string, number or boolean")
    verifiers = _obj(head["verifiers"], "verifiers")
    for name, digest in verifiers.items():
        _str(name, "a verifier name", 64)
        _str(digest, f"the settings hash of verifier {name!r}", 64, SHA256)
    return ExportHeader(
        run_id=_str(head["run_id"], "run_id", 64, SHA256),
        suite=_str(suite["name"], "suite.name", 64),
        suite_hash=_str(suite["hash"], "suite.hash", 64, SHA256),
        prompts=_int(suite["prompts"], "suite.prompts", 1),
        generator=generator,
        seed=_int(head["seed"], "seed", -(2**63)),
        evaluator_backend=_str(evaluator["backend"], "evaluator.backend", 64),
        evaluator_settings_hash=_str(evaluator["settings_hash"], "evaluator.settings_hash", 64, SHA256),
        evaluator_settings=settings,
        verifiers=dict(verifiers),
        stepwise_version=_str(head["stepwise_version"], "stepwise_version", 64),
        preparation=parse_preparation(head["preparation"]) if "preparation" in head else None,
        verifier_settings=(_verifier_settings(head["verifier_settings"], verifiers)
                           if "verifier_settings" in head else None),
    )


def _verifier_settings(value: Any, verifiers: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """The header's `verifier_settings`: one object per verifier the header names, type-checked."""
    what = "verifier_settings"
    settings = _obj(value, what)
    if sorted(settings) != sorted(verifiers):
        raise ValueError(f"{what} describe {sorted(settings)}, but the header names verifiers {sorted(verifiers)}")
    out = {}
    for name, item in settings.items():
        entry = _obj(item, f"{what}.{name}")
        _only(entry, ("package", "version", "params", "local"), f"{what}.{name}")
        _str(entry["package"], f"{what}.{name}.package", 200)
        _str(entry["version"], f"{what}.{name}.version", 64)
        params = _obj(entry["params"], f"{what}.{name}.params")
        if len(params) > MAX_PARAMETERS:
            raise ValueError(f"{what}.{name}.params has {len(params)} keys; at most {MAX_PARAMETERS}")
        for key, param in params.items():
            _str(key, f"a key of {what}.{name}.params", 64)
            _plain_value(param, f"{what}.{name}.params.{key}")
        local = entry["local"]
        if not isinstance(local, list) or not all(isinstance(x, str) and x in params for x in local):
            raise ValueError(f"{what}.{name}.local must list names of its params")
        out[name] = {"package": entry["package"], "version": entry["version"], "params": dict(params),
                     "local": list(local)}
    return out


def _plain_value(value: Any, what: str) -> None:
    """A plug-in parameter as canonical JSON holds it: a scalar, or a short flat list of scalars."""
    if isinstance(value, list):
        if len(value) > MAX_PARAMETERS:
            raise ValueError(f"{what} has {len(value)} items; at most {MAX_PARAMETERS}")
        for item in value:
            if isinstance(item, list | dict):
                raise ValueError(f"{what} must be a flat list of strings, numbers or booleans")
            _parameter(item, what)
        return
    if isinstance(value, dict):
        raise ValueError(f"{what} must be a string, number, boolean, null or a flat list")
    _parameter(value, what)


def parse_preparation(value: Any) -> PreparedCheckpoint:
    """The header's `preparation` object, type-checked (ValueError naming the field)."""
    prep = _obj(value, "preparation (leave the key out for a run without one)")
    _only(prep, ("strategy", "settings_hash", "checkpoint", "checkpoint_sha256", "training"), "preparation")
    training = _obj(prep["training"], "preparation.training")
    _only(training, ("data", "parameters", "parent", "steps", "finished"), "preparation.training")
    data = _obj(training["data"], "preparation.training.data")
    _only(data, ("sha256",), "preparation.training.data", optional=("pairs", "reward_prompts_sha256"))
    steps = _obj(training["steps"], "preparation.training.steps")
    _only(steps, ("done", "total"), "preparation.training.steps")
    finished = training["finished"]
    if not isinstance(finished, bool):
        raise ValueError("preparation.training.finished must be true or false")
    return PreparedCheckpoint(
        strategy=_str(prep["strategy"], "preparation.strategy", 64, LABEL),
        settings_hash=_str(prep["settings_hash"], "preparation.settings_hash", 64, SHA256),
        checkpoint=_str(prep["checkpoint"], "preparation.checkpoint", MAX_PATH),
        checkpoint_sha256=_str(prep["checkpoint_sha256"], "preparation.checkpoint_sha256", 64, SHA256),
        training=TrainingRecord(
            data_sha256=_str(data["sha256"], "preparation.training.data.sha256", 64, SHA256),
            pairs=_int(data["pairs"], "preparation.training.data.pairs") if "pairs" in data else None,
            reward_prompts_sha256=(_str(data["reward_prompts_sha256"], "preparation.training.data."
                                        "reward_prompts_sha256", 64, SHA256)
                                   if "reward_prompts_sha256" in data else None),
            parameters=_parameters(training["parameters"]),
            parent=_parent(training["parent"]),
            steps_done=_int(steps["done"], "preparation.training.steps.done"),
            steps_total=_int(steps["total"], "preparation.training.steps.total"),
            finished=finished,
        ),
    )


def _parameters(value: Any) -> dict[str, Any]:
    what = "preparation.training.parameters"
    parameters = _obj(value, what)
    if len(parameters) > MAX_PARAMETERS:
        raise ValueError(f"{what} has {len(parameters)} keys; at most {MAX_PARAMETERS}")
    for key, item in parameters.items():
        _str(key, f"a key of {what}", 64)
        _parameter(item, f"{what}.{key}")
    return parameters


def _parameter(value: Any, what: str) -> None:
    """A training parameter: a JSON scalar (short string, finite number, boolean, null) or a flat object
    of strings (reward_params)."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _str(value, what, MAX_PATH)
    elif isinstance(value, int | float):
        _number(value, what)
    elif isinstance(value, dict):
        if len(value) > MAX_PARAMETERS:
            raise ValueError(f"{what} has {len(value)} keys; at most {MAX_PARAMETERS}")
        for name, text in value.items():
            _str(name, f"a key of {what}", 64)
            _str(text, f"{what}.{name}", MAX_PATH)
    else:
        raise ValueError(f"{what} must be a string, number, boolean, null or a flat object of strings")


def _parent(value: Any) -> dict[str, Any]:
    what = "preparation.training.parent"
    parent = _obj(value, what)
    if len(parent) > MAX_PARENT_KEYS:
        raise ValueError(f"{what} has {len(parent)} keys; at most {MAX_PARENT_KEYS}")
    for key, item in parent.items():
        _str(key, f"a key of {what}", 64)
        if key.endswith("_files"):
            files = _obj(item, f"{what}.{key}")
            if len(files) > MAX_PARENT_FILES:
                raise ValueError(f"{what}.{key} names {len(files)} files; at most {MAX_PARENT_FILES}")
            for name, digest in files.items():
                _str(name, f"a file name of {what}.{key}", MAX_PATH)
                _str(digest, f"the sha256 of {what}.{key}.{name}", 64, SHA256)
        elif item is not None:
            _str(item, f"{what}.{key}", MAX_PATH)
    return parent


def _record(value: Any, verifiers: Mapping[str, str], suite: str = "geneval") -> tuple[ImageRecord, Cost | None]:
    rec = _obj(value, "a candidate line")
    _only(rec, (*_RECORD_KEYS, *suite_keys(suite)), "the candidate", optional=("cost", "step_scores"))
    tag = suite_tag(rec, suite)
    image = rec["image"]
    if image is not None:
        image = _str(image, "image", 512)
    correct = rec["correct"]
    if not isinstance(correct, bool):
        raise ValueError("correct must be true or false")
    scores = _obj(rec["scores"], "scores")
    if sorted(scores) != sorted(verifiers):
        raise ValueError(f"scores are for {sorted(scores)}, but the header names verifiers {sorted(verifiers)}")
    detections = _detections(rec["detections"])
    score, answers = suite_verdict(rec, suite, detections)
    record = ImageRecord(
        prompt_index=_int(rec["prompt_index"], "prompt_index"),
        tag=tag,
        prompt=_str(rec["prompt"], "prompt", 500),
        sample_index=_int(rec["sample_index"], "sample_index"),
        sha256=_str(rec["sha256"], "sha256", 64, SHA256),
        image=image,
        correct=correct,
        reason=suite_reason(rec, suite),
        detections=detections,
        scores={name: _number(x, f"the score of {name!r}") for name, x in scores.items()},
        step_scores=_step_scores(rec.get("step_scores"), verifiers),
        score=score,
        answers=answers,
    )
    return record, _cost(rec.get("cost"), verifiers)


# What a line of an export (pool or search) holds besides GenEval's fields, by suite: GenEval's
# per-image figure is its verdict and its evidence the detections; another suite's (GenEval 2) line
# adds its figure and answers and has no detections. `search_export` reads its pick lines with these too.


def suite_keys(suite: str) -> tuple[str, ...]:
    """The keys a line of `suite` adds to GenEval's."""
    return () if suite == "geneval" else ("score", "answers")


def suite_tag(rec: Mapping[str, Any], suite: str) -> str:
    """The line's tag, checked to be one of the suite's categories."""
    tag = _str(rec["tag"], "tag", 32)
    why = tag_problem(suite, tag)
    if why is not None:
        raise ValueError(why)
    return tag


def suite_reason(rec: Mapping[str, Any], suite: str) -> str:
    # GenEval joins its failures with newlines; GenEval 2 lists every question answered otherwise.
    return _str(rec["reason"], "reason", 2000 if suite == "geneval" else 20000, multiline=True)


def suite_verdict(rec: Mapping[str, Any], suite: str, detections: Mapping[str, Any]) -> tuple[float | None, dict]:
    """(score, answers) of a line: (None, {}) for GenEval's; another suite's, checked (it has no detections)."""
    if suite == "geneval":
        return None, {}
    if detections:
        raise ValueError(f"detections: a {suite} verdict has none; give {{}}")
    return _number(rec["score"], "score", 0.0), soft_tifa_answers(rec["answers"])


def soft_tifa_answers(value: Any) -> dict[str, Any]:
    """GenEval 2's evidence: one Soft-TIFA probability (finite, >= 0) and one TIFA 0/1 per question."""
    answers = _obj(value, "answers")
    _only(answers, ("soft_scores", "tifa_scores"), "answers")
    soft, hard = answers["soft_scores"], answers["tifa_scores"]
    for name, items in (("soft_scores", soft), ("tifa_scores", hard)):
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_QUESTIONS:
            raise ValueError(f"answers.{name} must be a list of 1 to {MAX_QUESTIONS} numbers, one per question")
    if len(soft) != len(hard):
        raise ValueError(f"answers: {len(soft)} soft_scores but {len(hard)} tifa_scores; one of each per question")
    if any(isinstance(x, bool) or x not in (0, 1) for x in hard):
        raise ValueError("answers.tifa_scores must be 0 or 1 per question")
    return {"soft_scores": [_number(x, "a soft score", 0.0) for x in soft], "tifa_scores": [int(x) for x in hard]}


def _step_scores(value: Any, verifiers: Mapping[str, str]) -> dict[str, tuple[float, ...]]:
    if value is None:
        return {}
    out = {}
    for name, steps in _obj(value, "step_scores").items():
        if name not in verifiers:
            raise ValueError(f"step_scores for {name!r}, which the header does not name as a verifier")
        if not isinstance(steps, list) or len(steps) > MAX_STEPS:
            raise ValueError(f"step_scores of {name!r} must be a list of at most {MAX_STEPS} numbers")
        out[name] = tuple(_number(x, f"a step score of {name!r}") for x in steps)
    return out


def _detections(value: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, boxes in _obj(value, "detections").items():
        _str(name, "a detection class", 64)
        if not isinstance(boxes, list):
            raise ValueError(f"detections of {name!r} must be a list")
        for box in boxes:
            det = _obj(box, f"a detection of {name!r}")
            _only(det, ("box", "score"), f"a detection of {name!r}", optional=("color",))
            coords = det["box"]
            if not isinstance(coords, list) or len(coords) != 4:
                raise ValueError(f"a detection of {name!r} needs box [x1, y1, x2, y2]")
            for x in coords:
                _number(x, f"a box coordinate of {name!r}")
            _number(det["score"], f"a detection score of {name!r}")
            if "color" in det:
                _str(det["color"], f"a detection colour of {name!r}", 32)
        out[name] = boxes
    return out


def _cost(value: Any, verifiers: Mapping[str, str]) -> Cost | None:
    if value is None:
        return None
    cost = _obj(value, "cost")
    _only(cost, ("generator_seconds", "verifier_seconds"), "cost")
    seconds = _obj(cost["verifier_seconds"], "cost.verifier_seconds")
    if sorted(seconds) != sorted(verifiers):
        raise ValueError("cost.verifier_seconds must give a time for every verifier of the header")
    return Cost(_number(cost["generator_seconds"], "cost.generator_seconds", 0.0),
                {name: _number(x, f"cost.verifier_seconds of {name!r}", 0.0) for name, x in seconds.items()})
