"""Checks of a reproduced entry that need no model: is the export consistent with itself?

An export carries each candidate's verdict *and* the detections it was judged from, its image and
the verifier scores. A forger who edits one of them has to edit the others to match, and some of
those cannot be made to match at all. Each check here is a small function over the export's records
(`Records`: the export, the suite's prompts and what the loader read from the folder) returning one
line per problem, naming the record (prompt index and sample) and the field:

- `verdicts`: each record's verdict and reason, re-derived from its stored detections by GenEval's
  rules (`harness.geneval.rules.evaluate`, the code the evaluator itself runs, with the thresholds
  the header records), equal the stored ones;
- `detections`: well-formed for the recorded evaluator: GenEval's 80 classes, boxes inside the
  image (x1 <= x2, y1 <= y2, within a pixel of its border), scores in [0, 1] and above the lowest
  recorded threshold (an export keeps only the detections a verdict could use), colours from
  GenEval's set, at most the detector's 100 per image;
- `images`: one image (one sha256) never stands for two prompts, nor for two samples of one prompt
  when the generator draws each sample from its own seed (`samples_differ`); the loader has already
  checked every shipped file's bytes against its sha256;
- `scores`: every verifier score finite and inside its verifier's declared `score_range`
  (`harness.plugins.Verifier`); a verifier that declares none, or is not installed here, is
  checked for finite scores only, and the entry's verification says so.

- `soft-tifa` (GenEval 2, in place of `detections` and `verdicts`): each score is Soft-TIFA GM of its
  per-question soft_scores, `correct` is TIFA = 1 of its tifa_scores, reasons fit (`check_soft_tifa`).

`CHECKS` lists them in order (`checks_of(suite)` a suite's); another record kind (a search run's
picks) or another suite adds its own function to a list of its own. The re-check with the models is
`harness.submissions.verify`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.submissions.export import Export
from harness.submissions.model import ImageRecord

__all__ = ["CHECKS", "GENEVAL2_CHECKS", "MAX_DETECTIONS", "MAX_PROBLEMS", "Records", "checks_of",
           "consistency_problems", "declared_ranges", "options_of", "samples_differ", "where"]

# Mask2Former keeps its top 100 (query, class) pairs per image (mmdet's test_cfg.max_per_image, and
# our hf backend); with another mmdet config the cap is that config's, so it is not checked then.
MAX_DETECTIONS = 100
BOX_SLACK = 1.0  # pixels: boxes come from masks, x2 = last column + 1
MAX_PROBLEMS = 20  # shown per check: a forged export says what is wrong, not 40,000 times
# Generators whose recorded parameters make every seed give the same image (greedy decoding):
# {generator: (parameter, value)}. Two samples of one prompt may then share an image.
GREEDY: dict[str, tuple[str, Any]] = {"janus": ("temperature", 0)}


@dataclass(frozen=True)
class Records:
    """What the checks read: the parsed export, the suite's metadata by prompt index, the shipped images'
    pixel sizes by sha256 (read from their headers), and each verifier's declared score range (None:
    not declared, or the plug-in is not installed here)."""

    export: Export
    samples: Sequence[Mapping[str, Any]] | None  # None: a GenEval 2 export checked without its data
    image_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    ranges: Mapping[str, tuple[float, float] | None] = field(default_factory=dict)


Check = Callable[[Records], list[str]]


def where(record: ImageRecord) -> str:
    return f"prompt {record.prompt_index:05d} sample {record.sample_index}"


def options_of(settings: Mapping[str, Any]) -> Any:
    """The verdict thresholds (`EvalOptions`) the header's evaluator settings record; ValueError naming
    the setting when one is missing or of the wrong type."""
    from harness.geneval.rules import EvalOptions

    values: dict[str, Any] = {}
    for name, kind in (("threshold", float), ("counting_threshold", float), ("max_objects", int),
                       ("max_overlap", float), ("position_threshold", float)):
        value = settings.get(name)
        if value is None:
            raise ValueError(f"evaluator.settings.{name}: missing; the verdicts cannot be re-derived without it")
        wrong_kind = kind is int and not isinstance(value, int)
        if isinstance(value, bool) or not isinstance(value, int | float) or wrong_kind:
            raise ValueError(f"evaluator.settings.{name}: must be {'an integer' if kind is int else 'a number'}, "
                             f"got {value!r:.40}")
        values[name] = value
    try:
        return EvalOptions(**values)
    except ValueError as err:
        raise ValueError(f"evaluator.settings: {err}") from None


def check_detections(data: Records) -> list[str]:
    """Classes, boxes, scores, colours and counts of every record's detections."""
    from harness.geneval.classes import COCO_CLASSES, COLORS

    head = data.export.header
    options = options_of(head.evaluator_settings)
    floor = min(options.threshold, options.counting_threshold)
    capped = not head.evaluator_settings.get("detector_config")
    problems: list[str] = []
    for r in data.export.records:
        size = data.image_sizes.get(r.sha256)
        total = 0
        for name, boxes in r.detections.items():
            field_ = f"detections.{name}"
            if name not in COCO_CLASSES:
                problems.append(f"{where(r)}: {field_}: {name!r:.40} is not one of GenEval's 80 class names")
                continue
            for i, det in enumerate(boxes):
                total += 1
                why = _detection_problem(det, size, floor, COLORS)
                if why:
                    problems.append(f"{where(r)}: {field_}[{i}]: {why}")
        if capped and total > MAX_DETECTIONS:
            problems.append(f"{where(r)}: detections: {total} detections; the detector keeps at most "
                            f"{MAX_DETECTIONS} per image")
    return problems


def _detection_problem(det: Mapping[str, Any], size: tuple[int, int] | None, floor: float,
                       colors: Sequence[str]) -> str | None:
    x1, y1, x2, y2 = (float(v) for v in det["box"])
    if not (x1 <= x2 and y1 <= y2):
        return f"box {[x1, y1, x2, y2]} is not [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2"
    if min(x1, y1) < -BOX_SLACK:
        return f"box {[x1, y1, x2, y2]} leaves the image (negative coordinates)"
    if size is not None and (x2 > size[0] + BOX_SLACK or y2 > size[1] + BOX_SLACK):
        return f"box {[x1, y1, x2, y2]} leaves the {size[0]} x {size[1]} image"
    score = float(det["score"])
    if not 0.0 <= score <= 1.0:
        return f"score {score} is not in [0, 1]"
    if score <= floor:
        return (f"score {score} is not above the recorded threshold {floor}: an export keeps only the "
                "detections a verdict could use")
    color = det.get("color")
    if color is not None and color not in colors:
        return f"colour {color!r:.40} is not one of GenEval's ({', '.join(colors)})"
    return None


def check_verdicts(data: Records) -> list[str]:
    """Each record's `correct` and `reason` equal GenEval's rules applied to its stored detections."""
    from harness.geneval.rescore import parse_detections
    from harness.geneval.rules import MissingColorError, evaluate

    options = options_of(data.export.header.evaluator_settings)
    problems: list[str] = []
    for r in data.export.records:
        metadata = data.samples[r.prompt_index]
        try:
            verdict = evaluate(metadata, parse_detections(r.detections), options)
        except MissingColorError as err:
            problems.append(f"{where(r)}: detections: {err}, so its verdict cannot be re-derived")
        except ValueError as err:
            problems.append(f"{where(r)}: detections: {err}")
        else:
            if verdict.correct != r.correct:
                because = f" ({verdict.reason.splitlines()[0]})" if verdict.reason else ""
                problems.append(f"{where(r)}: correct is {str(r.correct).lower()}, but GenEval's rules give "
                                f"{str(verdict.correct).lower()} from its stored detections{because}")
            elif verdict.reason != r.reason:
                problems.append(f"{where(r)}: reason {r.reason!r:.80} is not the one GenEval's rules give from its "
                                f"stored detections ({verdict.reason!r:.80})")
    return problems


def samples_differ(generator: Mapping[str, Any]) -> bool:
    """Whether different samples (seeds) of one prompt must be different images: True unless the
    recorded generator parameters make it greedy (`GREEDY`)."""
    rule = GREEDY.get(str(generator.get("name")))
    params = generator.get("params")
    if rule is None or not isinstance(params, Mapping):
        return True
    key, value = rule
    return params.get(key) != value


def check_image_reuse(data: Records) -> list[str]:
    """No image stands for two prompts, nor (when seeds matter) for two samples of one prompt."""
    first: dict[str, ImageRecord] = {}
    distinct = samples_differ(data.export.header.generator)
    problems: list[str] = []
    for r in sorted(data.export.records, key=lambda x: (x.prompt_index, x.sample_index)):
        seen = first.setdefault(r.sha256, r)
        if seen is r:
            continue
        if seen.prompt_index != r.prompt_index:
            problems.append(f"{where(r)}: sha256 {r.sha256[:12]}… is also the image of {where(seen)}: one image "
                            "cannot stand for two prompts")
        elif distinct:
            problems.append(f"{where(r)}: sha256 {r.sha256[:12]}… is also the image of sample {seen.sample_index}: "
                            "each sample is drawn from its own seed, so two samples of a prompt are two images")
    return problems


def declared_ranges(names: Sequence[str]) -> dict[str, tuple[float, float] | None]:
    """Each verifier's `score_range` as its installed plug-in declares it; None when it declares none,
    declares something that is not two numbers low <= high, or is not installed (or not loadable) here."""
    from harness import registry

    out: dict[str, tuple[float, float] | None] = {}
    for name in names:
        try:
            declared = getattr(registry.verifiers.get(name), "score_range", None)
        except registry.PluginError:
            declared = None
        ok = (isinstance(declared, tuple) and len(declared) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in declared)
              and declared[0] <= declared[1])
        out[name] = (float(declared[0]), float(declared[1])) if ok else None
    return out


def check_scores(data: Records) -> list[str]:
    """Every score finite and inside its verifier's declared range."""
    problems: list[str] = []
    for r in data.export.records:
        for name, value in r.scores.items():
            bounds = data.ranges.get(name)
            if not math.isfinite(value):
                problems.append(f"{where(r)}: scores.{name}: {value} is not a finite number")
            elif bounds is not None and not bounds[0] <= value <= bounds[1]:
                problems.append(f"{where(r)}: scores.{name}: {value} is outside the range its verifier declares "
                                f"([{bounds[0]:g}, {bounds[1]:g}])")
    return problems


def check_soft_tifa(data: Records) -> list[str]:
    """GenEval 2: each record's score is the geometric mean of its soft_scores (scipy's gmean, the very
    computation of the evaluator, so equal to the last bit), `correct` is every tifa_score being 1, the
    reason is "" exactly when correct; every sample of a prompt answers as many questions. With the
    suite's data (`Records.samples`), the prompt's question count and the reason's wording are its."""
    from harness.geneval2.soft_tifa import geometric_mean
    from harness.geneval2.suite import reason_of

    problems: list[str] = []
    questions: dict[int, int] = {}
    for r in sorted(data.export.records, key=lambda x: (x.prompt_index, x.sample_index)):
        soft, hard = r.answers["soft_scores"], r.answers["tifa_scores"]
        expected = geometric_mean(soft)
        if r.score != expected:
            problems.append(f"{where(r)}: score {r.score!r} is not the geometric mean of its soft_scores "
                            f"({expected!r}), which is Soft-TIFA GM")
        if r.correct != all(hard):
            problems.append(f"{where(r)}: correct is {str(r.correct).lower()}, but its tifa_scores give "
                            f"{str(all(hard)).lower()} (TIFA = 1 when every question is answered right)")
        record = data.samples[r.prompt_index] if data.samples else None
        if record is not None:
            asked = [q for q, _ in record["vqa_list"]]
            if len(asked) != len(hard):
                problems.append(f"{where(r)}: {len(hard)} questions answered, but the suite's prompt has "
                                f"{len(asked)}")
            elif r.reason != reason_of(asked, hard):
                problems.append(f"{where(r)}: reason {r.reason!r:.80} is not the one its tifa_scores give "
                                f"({reason_of(asked, hard)!r:.80})")
        elif (r.reason == "") != r.correct:
            problems.append(f"{where(r)}: reason {r.reason!r:.80} does not fit correct = {str(r.correct).lower()}")
        first = questions.setdefault(r.prompt_index, len(hard))
        if first != len(hard):
            problems.append(f"{where(r)}: {len(hard)} questions answered, but sample 0 of the prompt answered {first}")
    return problems


CHECKS: tuple[tuple[str, Check], ...] = (
    ("detections", check_detections),
    ("verdicts", check_verdicts),
    ("images", check_image_reuse),
    ("scores", check_scores),
)
# GenEval 2's: its verdict's evidence is the per-question scores, not detections.
GENEVAL2_CHECKS: tuple[tuple[str, Check], ...] = (
    ("soft-tifa", check_soft_tifa),
    ("images", check_image_reuse),
    ("scores", check_scores),
)


def checks_of(suite: str) -> tuple[tuple[str, Check], ...]:
    """The consistency checks of an export of `suite`."""
    return GENEVAL2_CHECKS if suite == "geneval2" else CHECKS


def consistency_problems(data: Records, checks: Sequence[tuple[str, Check]] = CHECKS) -> list[str]:
    """Every problem the checks find, in check order; a check whose input is itself malformed (the
    header's thresholds) reports that once and the checks that need it are skipped."""
    problems: list[str] = []
    broken: set[str] = set()
    for _name, check in checks:
        try:
            found = check(data)
        except ValueError as err:  # e.g. the header's evaluator settings lack a threshold
            text = str(err)
            if text not in broken:
                broken.add(text)
                problems.append(text)
            continue
        problems += found[:MAX_PROBLEMS]
        if len(found) > MAX_PROBLEMS:
            problems.append(f"... and {len(found) - MAX_PROBLEMS} more problems like the ones above")
    return problems
