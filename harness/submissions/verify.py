"""Re-checking a reproduced entry with the models: the images are judged and scored again, here.

The consistency checks (`harness.submissions.consistency`) prove an export agrees with itself; they
cannot tell whether a verdict agrees with its image, or a score with the verifier. This module does:
`stepwise validate` and `stepwise leaderboard build` draw a random sample of each entry's shipped
images (`--recheck N`, default 64 per entry; `all`; `none`) with a fresh seed on every run (printed;
`--recheck-seed` repeats a draw), so a submitter cannot know which images will be looked at, then

- re-judge them with the recorded evaluator (the header's backend, detector, colour model and
  thresholds; model files located by name in `--models` folders, hub ids in the local HF cache):
  a verdict (`correct`) that differs refuses the entry, naming the image;
- re-score the same images with every recorded verifier (the header's `verifier_settings`: the
  installed plug-in of the recorded package version, built with the recorded parameters, local
  model paths located by name in `--models` folders, `--verifier-param` on top): a score more than
  `SCORE_TOLERANCE` away from the stored one refuses the entry, naming the image.

Tolerance, and why: stored scores may come from a GPU in float16/bfloat16 (the VLM verifiers' and
CLIPScore's `dtype=auto` on CUDA) and be re-checked on another device or dtype. On one device and
dtype the scores repeat to float rounding (1e-6; batch composition changes nothing more); half
precision moves them: measured here on the tiny CLIP (CPU, 32 random images), CLIPScore in float16
moved by at most 7e-4 and in bfloat16 by 8.5e-3 against float32. So |re-scored - stored| <= 0.02
(`--score-tolerance`) accepts honest dtype and device differences and refuses any edit that moves a
score by more. (The real models on a GPU were not measured: no GPU was available to this project.)
Verdicts have no tolerance: they are booleans. (On GPU the colour classifier runs under fp16
autocast; a colour decided by a near-tie can flip there, and such an entry is refused for the
maintainer to look at.)

What a sample of k images out of N proves: an export in which a fraction f of the candidates were
edited passes with probability (1 - f)^k, e.g. 0.9^64 = 0.1% for f = 10%.

Parts that cannot be re-checked here do not refuse the entry; they leave it at verification level
"consistent" (shown apart from the ranked table), each with its reason in `Verification.missing`:
a model not found, a verifier not installed or of another version, a verifier that scores step
previews (exports ship final images only), an export without `verifier_settings`, an export that
does not ship every candidate's image (the sample is drawn from the shipped ones; the others could
hide anything), `--recheck none`. Entries of one evaluator or verifier setting share one loaded model (`Rechecker`),
and an image (its bytes checked against its sha256 by the loader) is judged and scored once per
setting however many entries ship it.

The steps are small functions (`sample`, `evaluator_spec`, `rejudge`, `build_verifier`, `rescore`)
over export records and the recorded settings, so other record kinds and suites can reuse them.
"""

from __future__ import annotations

import dataclasses
import json
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.submissions.consistency import where
from harness.submissions.model import Entry, ImageRecord, ValidationProblem, Verification

__all__ = ["DEFAULT_RECHECK", "SCORE_TOLERANCE", "RecheckPlan", "Rechecker", "build_verifier", "describe",
           "evaluator_spec", "fresh_seed", "locate", "parse_recheck", "recheck_all", "rejudge", "rejudge_soft_tifa",
           "rescore", "sample", "soft_tifa_spec"]

DEFAULT_RECHECK = 64
SCORE_TOLERANCE = 0.02
MAX_PROBLEMS = 20


def parse_recheck(text: str) -> int | None:
    """`--recheck`: a count of images per entry, `all` (None) or `none` (0); ValueError otherwise."""
    word = text.strip().lower()
    if word == "all":
        return None
    if word == "none":
        return 0
    try:
        count = int(word)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of images, 'all' or 'none'") from None
    if count < 0:
        raise ValueError(f"{text!r}: the number of images must be >= 0")
    return count


def fresh_seed() -> int:
    """A seed nobody can predict (the operating system's randomness)."""
    return secrets.randbelow(2**32)


@dataclass(frozen=True)
class RecheckPlan:
    """How to re-check: sample size per entry (None: all; 0: none), its seed, where model files are
    looked up by their recorded names, verifier parameters to override, device and score tolerance."""

    count: int | None = DEFAULT_RECHECK
    seed: int = 0
    models: tuple[Path, ...] = ()
    verifier_params: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    device: str | None = None
    tolerance: float = SCORE_TOLERANCE
    batch_size: int = 8
    geneval2_data: Path | None = None  # the GenEval 2 suite folder or data file [$STEPWISE_GENEVAL2_DATA]


def sample(entry: Entry, count: int | None, seed: int) -> list[ImageRecord]:
    """The records whose images are re-checked: `count` of those with a shipped image (all when None),
    drawn uniformly by a generator seeded with (seed, slug), in prompt and sample order."""
    shipped = sorted((r for r in entry.images if r.image is not None), key=lambda r: (r.prompt_index, r.sample_index))
    k = len(shipped) if count is None else min(count, len(shipped))
    picked = random.Random(f"stepwise-recheck:{seed}:{entry.slug}").sample(shipped, k)
    return sorted(picked, key=lambda r: (r.prompt_index, r.sample_index))


def locate(name: str, models: Sequence[Path]) -> str | None:
    """A recorded model file or folder name found in one of `models` (the first), or None."""
    if not name or "/" in name or name in (".", ".."):
        return None
    for folder in models:
        candidate = folder / name
        if candidate.exists():
            return str(candidate)
    return None


def _hub_or_located(value: str, models: Sequence[Path], what: str) -> str:
    """A recorded detector: a name in the --models folders, else a hub id cached here; ValueError why not."""
    from harness.weights import looks_like_path, model_folder

    found = locate(value, models)
    if found is not None:
        return found
    if not looks_like_path(value):
        if model_folder(value) is not None:
            return value
        raise ValueError(f"{what} {value!r} is not in the local Hugging Face cache")
    raise ValueError(f"{what} {value!r} is not in the --models folders"
                     + ("" if models else " (none given)"))


def evaluator_spec(header: Any, plan: RecheckPlan) -> Any:
    """The `EvaluatorSpec` of the header's recorded evaluator with its model files located here;
    ValueError saying what is missing."""
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.submissions.consistency import options_of

    settings = header.evaluator_settings
    detector = settings.get("detector")
    if not isinstance(detector, str):
        raise ValueError("the header records no detector")
    config = settings.get("detector_config")
    clip_weights = settings.get("clip_weights", "openai")
    located_config = None
    if isinstance(config, str) and config:
        located_config = locate(config, plan.models)
        if located_config is None:
            raise ValueError(f"detector config {config!r} is not in the --models folders")
    weights = None
    if clip_weights != "openai":
        weights = locate(str(clip_weights), plan.models)
        if weights is None:
            raise ValueError(f"colour model weights {clip_weights!r} are not in the --models folders"
                             + ("" if plan.models else " (none given)"))
    return EvaluatorSpec(backend=header.evaluator_backend,
                         detector=_hub_or_located(detector, plan.models, "detector"),
                         detector_config=located_config, clip_arch=str(settings.get("clip_arch")),
                         clip_weights=weights, options=options_of(settings),
                         color_mode=str(settings.get("color_mode", "needed")), device=plan.device)


def _chunks(items: Sequence[ImageRecord], size: int) -> list[Sequence[ImageRecord]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def rejudge(models: Any, spec: Any, folder: Path, picked: Sequence[ImageRecord],
            samples: Sequence[Mapping[str, Any]], batch_size: int = 8,
            memo: dict[tuple[str, int], tuple[bool, str]] | None = None) -> list[tuple[str, str]]:
    """(image, problem) for each picked record whose image the evaluator judges otherwise now.

    memo: verdicts these models gave before, by (image sha256, prompt index): an image whose bytes
    the loader checked against its sha256 is the same image, so the same models judge it the same."""
    from harness.geneval.evaluator import judge_batch
    from harness.geneval.folder import decode_image
    from harness.submissions.paths import confined

    memo = {} if memo is None else memo
    todo = [r for r in picked if (r.sha256, r.prompt_index) not in memo]
    for batch in _chunks(todo, batch_size):
        arrays = [decode_image(confined(folder, str(r.image))).rgb for r in batch]
        judged = judge_batch(models, arrays, [dict(samples[r.prompt_index]) for r in batch], spec)
        for r, (_detections, verdict) in zip(batch, judged, strict=True):
            memo[(r.sha256, r.prompt_index)] = (bool(verdict.correct), verdict.reason)
    problems: list[tuple[str, str]] = []
    for r in picked:
        correct, reason = memo[(r.sha256, r.prompt_index)]
        if correct != r.correct:
            because = f" ({reason.splitlines()[0]})" if reason else ""
            problems.append((str(r.image), f"{where(r)}: the recorded evaluator judges this image "
                                           f"{str(correct).lower()}{because} when re-checked, "
                                           f"but the export says correct = {str(r.correct).lower()}"))
    return problems


def soft_tifa_spec(header: Any, plan: RecheckPlan) -> Any:
    """The `SoftTifaSpec` of a GenEval 2 header's recorded evaluator, its VQA model located here (a name
    in the --models folders, or a hub id in the local HF cache); ValueError saying what is missing."""
    from harness.geneval2.evaluator import SoftTifaSpec

    settings = header.evaluator_settings
    model = settings.get("model")
    if not isinstance(model, str) or not model:
        raise ValueError("the header records no VQA model")
    return SoftTifaSpec(model=_hub_or_located(model, plan.models, "VQA model"),
                        dtype=str(settings.get("dtype", "auto")), device=plan.device,
                        vqascore=bool(settings.get("vqascore", True)))


def rejudge_soft_tifa(evaluator: Any, folder: Path, picked: Sequence[ImageRecord],
                      records: Sequence[Mapping[str, Any]], tolerance: float,
                      memo: dict[tuple[str, int], tuple[bool, float]] | None = None) -> list[tuple[str, str]]:
    """(image, problem) for each picked GenEval 2 record whose image the Soft-TIFA evaluator judges
    otherwise now: another TIFA verdict, or a Soft-TIFA GM more than `tolerance` away (bfloat16 on a
    GPU and float32 here give slightly different probabilities; a verdict has no tolerance)."""
    from harness.submissions.paths import confined

    memo = {} if memo is None else memo
    todo = [r for r in picked if (r.sha256, r.prompt_index) not in memo]
    if todo:
        verdicts = evaluator.judge([confined(folder, str(r.image)) for r in todo],
                                   [records[r.prompt_index] for r in todo])
        for r, verdict in zip(todo, verdicts, strict=True):
            memo[(r.sha256, r.prompt_index)] = (bool(verdict.correct), float(verdict.score))
    problems: list[tuple[str, str]] = []
    for r in picked:
        correct, score = memo[(r.sha256, r.prompt_index)]
        if correct != r.correct:
            problems.append((str(r.image), f"{where(r)}: the recorded evaluator judges this image TIFA = "
                                           f"{int(correct)} when re-checked, but the export says correct = "
                                           f"{str(r.correct).lower()}"))
        elif not abs(score - r.outcome) <= tolerance:
            problems.append((str(r.image), f"{where(r)}: the recorded evaluator gives this image Soft-TIFA GM "
                                           f"{score:.6g} when re-checked, but the export says {r.outcome:.6g} "
                                           f"(tolerance {tolerance:g})"))
    return problems


def build_verifier(name: str, header: Any, plan: RecheckPlan) -> tuple[Any, Any]:
    """(class, parsed params) of the recorded verifier `name`, installed here at the recorded package
    version, its local model paths located in the --models folders and --verifier-param on top;
    ValueError saying why it cannot be built."""
    from harness import registry
    from harness.plugins import ParamsError, parse_params

    recorded = (header.verifier_settings or {}).get(name)
    if recorded is None:
        raise ValueError("the export does not record its parameters (exported by an older stepwise)")
    try:
        cls = registry.verifiers.get(name)
        info = registry.verifiers.info(name)
    except registry.PluginError as err:
        raise ValueError(f"not installed here ({str(err).splitlines()[0]})") from None
    if (info.package, info.version) != (recorded["package"], recorded["version"]):
        raise ValueError(f"the export's scores come from {recorded['package']} {recorded['version']}, this "
                         f"machine has {info.package} {info.version}")
    if bool(getattr(cls, "needs_previews", False)):
        raise ValueError("it scores step previews, which exports do not ship")
    values: dict[str, Any] = {}
    for key, value in recorded["params"].items():
        if key in recorded["local"]:
            found = locate(str(value), plan.models)
            if found is None and key not in plan.verifier_params.get(name, {}):
                raise ValueError(f"its {key} {value!r} is not in the --models folders"
                                 + ("" if plan.models else " (none given)"))
            value = found
        values[key] = tuple(value) if isinstance(value, list) else value
    if plan.device is not None and "device" in values:
        values["device"] = plan.device
    values.update(plan.verifier_params.get(name, {}))
    try:
        return cls, parse_params(cls.Params, values, owner=f"verifier {name!r}")
    except ParamsError as err:
        raise ValueError(str(err)) from None


def rescore(verifier: Any, folder: Path, picked: Sequence[ImageRecord], name: str, tolerance: float,
            memo: dict[tuple[str, str, bool], float] | None = None) -> list[tuple[str, str]]:
    """(image, problem) for each picked record whose stored score of `name` the verifier does not give
    again within `tolerance`. A verifier that reads verdicts (`needs_verdicts`) gets the stored ones.

    memo: scores this verifier gave before, by (image sha256, prompt, the verdict it was given)."""
    from harness.images import decoded, open_image
    from harness.submissions.paths import confined

    memo = {} if memo is None else memo
    by_prompt: dict[int, list[ImageRecord]] = {}
    for r in picked:
        if (r.sha256, r.prompt, r.correct) not in memo:
            by_prompt.setdefault(r.prompt_index, []).append(r)
    reads_verdicts = bool(getattr(type(verifier), "needs_verdicts", False))
    for records in by_prompt.values():
        images = []
        for r in records:
            path = confined(folder, str(r.image))
            with open_image(path) as image:
                images.append(decoded(image, str(path)).convert("RGB"))
        extra = {"verdicts": [r.correct for r in records]} if reads_verdicts else {}
        scores = verifier.score(records[0].prompt, images, None, **extra)
        if len(scores) != len(records):
            raise RuntimeError(f"verifier {name!r} returned {len(scores)} scores for {len(records)} images")
        for r, fresh in zip(records, scores, strict=True):
            memo[(r.sha256, r.prompt, r.correct)] = float(fresh.score)
    problems: list[tuple[str, str]] = []
    for r in picked:
        fresh_score, stored = memo[(r.sha256, r.prompt, r.correct)], r.scores[name]
        if not abs(fresh_score - stored) <= tolerance:
            problems.append((str(r.image), f"{where(r)}: verifier {name!r} scores this image {fresh_score:.6g} "
                                           f"when re-checked, but the export says {stored:.6g} (tolerance "
                                           f"{tolerance:g})"))
    return problems


class Rechecker:
    """Re-checks entries with one plan; models and verifiers are built once per recorded setting."""

    def __init__(self, plan: RecheckPlan, log: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.log = log or (lambda message: None)
        self._evaluators: dict[str, Any] = {}  # spec key -> Models, or the reason they cannot be built
        self._verifiers: dict[str, Any] = {}  # name + params -> instance, or the reason
        # What those models said about an image before (entries may share images): by setting key
        self._verdicts: dict[str, dict[tuple[str, int], tuple[bool, str]]] = {}
        self._scores: dict[str, dict[tuple[str, str, bool], float]] = {}

    def _models(self, header: Any) -> tuple[Any, Any, dict[tuple[str, int], tuple[bool, str]]]:
        """(spec, Models, verdict memo) for the header's evaluator; ValueError why not (remembered per setting)."""
        from harness.geneval.evaluator import Models

        spec = evaluator_spec(header, self.plan)  # ValueError: a file not found
        key = json.dumps([spec.backend, spec.detector, spec.detector_config, spec.clip_arch, spec.clip_weights,
                          spec.options.to_dict(), spec.color_mode, spec.device], sort_keys=True)
        if key not in self._evaluators:
            models = Models(spec)
            try:
                models.detector  # noqa: B018 (building them here: a missing model is reported, not raised later)
                models.colors  # noqa: B018
                self._evaluators[key] = models
            except (OSError, ValueError, ImportError, RuntimeError) as err:
                self._evaluators[key] = f"{' '.join(str(err).split())}"
        models = self._evaluators[key]
        if isinstance(models, str):
            raise ValueError(models)
        return spec, models, self._verdicts.setdefault(key, {})

    def _soft_tifa(self, header: Any) -> tuple[Any, Any, dict[tuple[str, int], Any]]:
        """(spec, evaluator, verdict memo) for a GenEval 2 header's evaluator; ValueError why not."""
        from harness.geneval2.suite import SoftTifaEvaluator

        spec = soft_tifa_spec(header, self.plan)
        key = f"soft-tifa:{json.dumps([spec.model, spec.dtype, spec.device, spec.vqascore])}"
        if key not in self._evaluators:
            try:
                evaluator = SoftTifaEvaluator(spec, batch_size=self.plan.batch_size)
                evaluator.model.engine  # noqa: B018 (loading it here: a missing model is reported, not raised later)
                self._evaluators[key] = evaluator
            except (OSError, ValueError, ImportError, RuntimeError) as err:
                self._evaluators[key] = " ".join(str(err).split())
        evaluator = self._evaluators[key]
        if isinstance(evaluator, str):
            raise ValueError(evaluator)
        return spec, evaluator, self._verdicts.setdefault(key, {})

    def _rejudge(self, entry: Entry, picked: Sequence[ImageRecord], missing: list[str]) -> list[tuple[str, str]] | None:
        """The problems of re-judging the picked images with the entry's recorded evaluator, or None when
        they could not be re-judged (why goes to `missing`, unless the loader's verification says it)."""
        from harness.submissions.folder_checks import suite_metadata
        from harness.submissions.suites import geneval2_records

        header = entry.header
        if entry.suite == "geneval2":
            try:
                records, _unchecked = geneval2_records(header.suite_hash, self.plan.geneval2_data)
                if records is None:
                    return None  # the loader's verification already says the data was not given
                spec, evaluator, memo = self._soft_tifa(header)
            except ValueError as err:
                missing.append(f"evaluator ({header.evaluator_backend}): {err}")
                return None
            self.log(f"{entry.slug}: re-judging {len(picked)} of {len(entry.images)} images with Soft-TIFA "
                     f"({spec.model})")
            return rejudge_soft_tifa(evaluator, entry.folder, picked, records, self.plan.tolerance, memo)
        try:
            spec, models, verdicts = self._models(header)
        except ValueError as err:
            missing.append(f"evaluator ({header.evaluator_backend}): {err}")
            return None
        self.log(f"{entry.slug}: re-judging {len(picked)} of {len(entry.images)} images with {spec.backend}")
        suite = suite_metadata(header.prompts, header.suite_hash)
        return rejudge(models, spec, entry.folder, picked, suite, self.plan.batch_size, verdicts)

    def _verifier(self, name: str, header: Any) -> tuple[Any, dict[tuple[str, str, bool], float]]:
        from harness.plugins import canonical_json
        from harness.runner import RunError, instantiate

        cls, params = build_verifier(name, header, self.plan)
        key = f"{name}:{canonical_json(params)}"
        if key not in self._verifiers:
            try:
                self._verifiers[key] = instantiate("verifier", name, cls, params)
            except RunError as err:
                self._verifiers[key] = " ".join(str(err).split())
            except (ImportError, RuntimeError) as err:
                self._verifiers[key] = f"verifier {name!r}: {' '.join(str(err).split())}"
        verifier = self._verifiers[key]
        if isinstance(verifier, str):
            raise ValueError(verifier)
        return verifier, self._scores.setdefault(key, {})

    def recheck(self, entry: Entry) -> Entry:
        """`entry` with its verification filled in; SubmissionError (naming the images) when a re-judged
        verdict differs or a re-scored score leaves the tolerance. Reported entries are returned as they are."""
        from harness.submissions.folder_checks import SubmissionError

        base = entry.verification
        if entry.manifest.kind != "reproduced" or base is None or entry.header is None:
            return entry
        header = entry.header
        total = len(entry.images)
        missing: list[str] = []
        problems: list[tuple[str, str]] = []
        picked = sample(entry, self.plan.count, self.plan.seed) if self.plan.count != 0 else []
        unshipped = sum(r.image is None for r in entry.images)
        if self.plan.count == 0:
            missing.append("re-check skipped (--recheck none)")
        elif unshipped == total:
            missing.append("no images shipped (submitted with --no-images): nothing to re-judge or re-score")
        elif unshipped:  # a sample of the shipped ones says nothing about the others
            missing.append(f"{unshipped} of {total} candidates ship no image, so they cannot be re-judged or re-scored")
        images_done = 0
        if picked:
            found = self._rejudge(entry, picked, missing)
            if found is not None:
                problems += found
                images_done = len(picked)
        scores: dict[str, tuple[int, int]] = {}
        if entry.search is not None:
            # A search's verifier calls and compute are in its traces and ledgers, not in per-image scores:
            # only running the search again on the recorded seeds shows its picks are what it makes.
            missing.append(f"search {entry.search.strategy}: its picks, traces and ledgers are checked for "
                           "consistency only; confirming them means running the search again")
        for name in sorted(header.verifiers) if entry.search is None else ():
            done = 0
            if picked:
                try:
                    verifier, memo = self._verifier(name, header)
                except ValueError as err:
                    missing.append(f"verifier {name}: {err}")
                else:
                    self.log(f"{entry.slug}: re-scoring {len(picked)} of {total} candidates with {name}")
                    problems += rescore(verifier, entry.folder, picked, name, self.plan.tolerance, memo)
                    done = len(picked)
            scores[name] = (done, total)
        if problems:
            shown = problems[:MAX_PROBLEMS]
            listed = [ValidationProblem(entry.folder, image, message) for image, message in shown]
            if len(problems) > MAX_PROBLEMS:
                listed.append(ValidationProblem(entry.folder, "", f"and {len(problems) - MAX_PROBLEMS} more "
                                                                  "re-check failures"))
            raise SubmissionError(listed)
        complete = not missing and not base.missing and images_done > 0 and all(k > 0 for k, _ in scores.values())
        verification = dataclasses.replace(
            base, level="rechecked" if complete else "consistent", images=(images_done, total), scores=scores,
            missing=(*base.missing, *missing), seed=self.plan.seed if self.plan.count != 0 else None,
            tolerance=self.plan.tolerance if scores else None)
        return dataclasses.replace(entry, verification=verification)


def recheck_all(entries: Sequence[Entry], plan: RecheckPlan, log: Callable[[str], None] | None = None
                ) -> tuple[list[Entry], list[ValidationProblem]]:
    """Every entry re-checked (reported ones as they are); the refused ones' problems instead of them."""
    from harness.submissions.folder_checks import SubmissionError

    checker = Rechecker(plan, log)
    kept: list[Entry] = []
    problems: list[ValidationProblem] = []
    for entry in entries:
        try:
            kept.append(checker.recheck(entry))
        except SubmissionError as err:
            problems += err.problems
    return kept, problems


def describe(verification: Verification | None) -> str:
    """One line: what was checked of an entry (for `stepwise validate` and the site)."""
    if verification is None:
        return "reported (numbers from its sources, not recomputed)"
    k, n = verification.images
    parts = [f"{k} of {n} images re-judged"] + [f"{a} of {b} re-scored by {v}" for v, (a, b) in
                                                 sorted(verification.scores.items())]
    head = "re-checked" if verification.level == "rechecked" else "consistency checked, NOT re-checked"
    text = f"{head}: {', '.join(parts)}"
    if verification.missing:
        text += "; " + "; ".join(verification.missing)
    return text
