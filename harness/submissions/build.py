"""Build a reproduced entry's folder from a run in the store (what `stepwise submit` does).

The evaluator is named the way `stepwise curve --run` names it (backend, detector, thresholds,
...: an `EvaluatorSpec`), because its key is what the stored verdicts are filed under; the
verifiers likewise by name and parameters. Everything else comes from the store: the run's
generator and seed, the suite, each candidate's verdict, detections, scores and costs, and the
links to the checkpoint a strategy's prepare stage trained for it (`preparations`; one becomes
the header's `preparation`: `choose_preparation`, `prepared_checkpoint`).
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.submissions.export import Cost, ExportHeader, header_json, parse_preparation, record_json
from harness.submissions.model import ImageRecord, PreparedCheckpoint

__all__ = ["RunExport", "SubmitError", "check_exportable_suite", "choose_preparation", "evaluator_settings",
           "prepared_checkpoint", "read_run", "recorded_verifiers", "soft_tifa_settings", "write_folder"]

IMAGES_DIR = "images"
EXPORT_NAME = "export.jsonl"


class SubmitError(ValueError):
    """Why a run cannot be exported (names the run and what is missing)."""


@dataclass(frozen=True)
class RunExport:
    header: ExportHeader
    records: list[ImageRecord]  # image = None: `write_folder` decides whether images are shipped
    costs: list[Cost] | None
    image_paths: list[str]  # per record: the run's PNG as the store has it (relative to the run folder)
    resolution: int | None
    # the store's links from the run to prepared checkpoints (harness.store.NewPreparation copies), oldest first
    preparations: tuple[Any, ...] = ()
    run_folder: Path | None = None  # where the run's images are now (harness.store.folders), when found
    folder_problem: str | None = None  # why it was not found (images cannot be shipped then)


def evaluator_settings(spec: Any) -> dict[str, Any]:
    """The settings of an `EvaluatorSpec` for the manifest and export: flat, and without local paths
    (a file's name is kept, its folder is nobody's business)."""
    from harness.geneval.evaluator import DEFAULT_HF_DETECTOR

    def shown(path_or_id: str | None) -> str | None:
        if not path_or_id:
            return None
        path = Path(path_or_id)
        return path.name if path.exists() else path_or_id  # a hub id is shown as is

    settings: dict[str, Any] = {"detector": shown(spec.detector) or DEFAULT_HF_DETECTOR}
    if spec.detector_config:
        settings["detector_config"] = shown(spec.detector_config)
    settings["clip_arch"] = spec.clip_arch
    settings["clip_weights"] = shown(spec.clip_weights) or "openai"
    settings.update(spec.options.to_dict())
    settings["color_mode"] = spec.color_mode
    settings["settings_hash"] = spec.key()
    return settings


def _shown_path(value: str) -> str:
    """A local file or folder as its name (its folder is nobody's business), anything else as is."""
    return Path(value).name if Path(value).exists() else value


def recorded_verifiers(names: tuple[str, ...] | list[str], params: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """What an export's header records of each verifier, so a maintainer can build it again and re-score
    the shipped images: {name: {"package", "version", "params", "local"}}. `params` are the parsed,
    canonical parameters with local paths shown by their names (as `evaluator_settings` shows the
    detector); `local` lists those parameters, which a re-check looks up by name (`--models DIR`).
    ValueError on an unknown verifier or parameters that do not fit it (`stored_settings` checked both)."""
    import json

    from harness import registry
    from harness.plugins import canonical_json, parse_params

    out: dict[str, Any] = {}
    for name in names:
        cls = registry.verifiers.get(name)
        provenance = registry.verifiers.info(name).provenance()
        parsed = json.loads(canonical_json(parse_params(cls.Params, dict(params.get(name, {})))))
        local = sorted(k for k, v in parsed.items() if isinstance(v, str) and v and Path(v).exists())
        shown = {k: _shown_path(v) if k in local else v for k, v in parsed.items()}
        out[name] = {"package": provenance["package"], "version": provenance["version"], "params": shown,
                     "local": local}
    return out


def _seconds(cost: Any) -> float | None:
    value = cost.get("seconds") if isinstance(cost, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0:
        return float(value)
    return None


def _kept_detections(detections: Mapping[str, Any] | None, floor: float) -> dict[str, list[dict[str, Any]]]:
    """The detections a verdict could have used (score above the lowest threshold), in the detector's
    order: what the site draws, without the low-score boxes a detector also returns. The numbers are
    kept exactly as stored (float32 values, which JSON writes and reads back bit for bit), so the
    leaderboard can re-derive every verdict and reason from them with GenEval's rules: rounded, a
    score just above a threshold could fall on it and flip the verdict."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, boxes in (detections or {}).items():
        kept = []
        for det in boxes:
            if float(det["score"]) <= floor:
                continue
            item: dict[str, Any] = {"box": [float(x) for x in det["box"]], "score": float(det["score"])}
            if isinstance(det.get("color"), str):
                item["color"] = det["color"]
            kept.append(item)
        if kept:
            out[str(name)] = kept
    return out


def check_exportable_suite(s: Any, run_id: str) -> str:
    """The suite view (`harness.submissions.suites`) of a run's entry: "geneval" for a run judged by
    GenEval's evaluator, "geneval2"; SubmitError for a run of any other suite (the leaderboard has no
    checks and no table for it)."""
    from harness import suite_store
    from harness.submissions.suites import EXPORT_SUITES

    try:
        name = suite_store.run_suite_name(s, run_id)
    except ValueError as err:
        raise SubmitError(str(err)) from None
    plugin = suite_store.plugin_name(name)
    if suite_store.uses_geneval_evaluator(suite_store.suite_class(name)):
        return "geneval"
    if plugin in EXPORT_SUITES:
        return plugin
    raise SubmitError(f"run {run_id[:12]}… is on suite {name!r}; leaderboard entries are of "
                      f"{' or '.join(map(repr, EXPORT_SUITES))} runs (curves and analyze work on any suite)")


def soft_tifa_settings(first: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A GenEval 2 export's evaluator settings, from a stored verdict's details (`first`): the VQA model
    (a local folder by its name), dtype, whether VQAScore was asked, and the settings hash."""
    model = first.get("model")
    if not isinstance(model, str):
        raise SubmitError("the run's Soft-TIFA verdicts do not record their VQA model; judge the run again")
    return {"model": _shown_path(model), "dtype": str(first.get("dtype")),
            "vqascore": first.get("vqascore") is not None, "settings_hash": key}


def soft_tifa_record(*, prompt_index: int, tag: str, prompt: str, sample_index: int, sha256: str, correct: bool,
                     reason: str, score: float | None, details: Mapping[str, Any] | None,
                     scores: dict[str, float] | None = None,
                     step_scores: dict[str, tuple[float, ...]] | None = None) -> ImageRecord:
    """A GenEval 2 candidate's (or pick's) record from its stored verdict; SubmitError when the verdict
    lacks Soft-TIFA's per-question scores."""
    details = details or {}
    soft, hard = details.get("soft_scores"), details.get("tifa_scores")
    if not isinstance(soft, list) or not isinstance(hard, list) or score is None:
        raise SubmitError(f"prompt {prompt_index:05d} sample {sample_index}: its stored verdict lacks Soft-TIFA's "
                          "per-question scores; judge the run again")
    return ImageRecord(prompt_index=prompt_index, tag=tag, prompt=prompt, sample_index=sample_index, sha256=sha256,
                       image=None, correct=bool(correct), reason=reason or "", detections={}, scores=scores or {},
                       step_scores=step_scores or {}, score=float(score),
                       answers={"soft_scores": [float(x) for x in soft], "tifa_scores": [int(x) for x in hard]})


def verdict_settings(s: Any, run_id: str, spec: Any, suite_params: Mapping[str, Any] | None) -> tuple[str, str, str]:
    """(suite view, evaluator name, key) of the verdicts a run's entry holds: the GenEval flags' (`spec`)
    for a GenEval-judged run, else the ones `suite_params` name, or the run's only ones."""
    from harness import suite_store

    suite = check_exportable_suite(s, run_id)
    if suite == "geneval":
        return suite, spec.backend, spec.key()
    try:
        stored = suite_store.resolve(s, run_id, geneval_spec=lambda: spec, suite_params=suite_params or {})
    except ValueError as err:
        raise SubmitError(str(err)) from None
    return suite, stored.backend, stored.key


def read_run(s: Any, run_id: str, spec: Any, verifiers: Mapping[str, str], *,
             max_samples: int | None = None, verifier_settings: Mapping[str, Any] | None = None,
             run_dir: Path | None = None, suite_params: Mapping[str, Any] | None = None) -> RunExport:
    """A run's candidates with their verdicts by `spec` and scores by `verifiers` ({name: settings hash}).

    spec: the GenEval evaluator settings (`EvaluatorSpec`) for a GenEval-judged run. A GenEval 2 run's
    verdicts are the ones its `suite_params` name (`harness.suite_store.resolve`: the VQA model the run
    used), or its only ones; `spec` is not read then.

    verifier_settings: what the header records of each verifier (`recorded_verifiers`), so that the
    leaderboard can re-score the images with it; None leaves it out (the entry then cannot be re-checked).
    run_dir: the run's folder, when it is not where the store finds it (`harness.store.folders`).
    Refuses (SubmitError) a run that lacks a verdict or a score anywhere: an entry is whole.
    """
    from sqlalchemy import func, select

    from harness import __version__
    from harness.store import Candidate, NewPreparation, Prompt, Run, VerifierScore, run_preparations
    from harness.store.data import judged_candidates
    from harness.store.folders import RunFolderError, locate_run_folder

    suite, backend, key = verdict_settings(s, run_id, spec, suite_params)
    try:
        rows = judged_candidates(s, run_id, backend, key, max_samples)
    except ValueError as err:
        raise SubmitError(str(err)) from None
    run = s.get(Run, run_id)
    n_prompts = int(s.scalar(select(func.count()).select_from(Prompt).where(Prompt.suite_id == run.suite_id)) or 0)
    scores: dict[int, dict[str, float]] = {r.id: {} for r in rows}
    step_scores: dict[int, dict[str, tuple[float, ...]]] = {r.id: {} for r in rows}
    verifier_seconds: dict[int, dict[str, float | None]] = {r.id: {} for r in rows}
    for name, digest in verifiers.items():
        for cid, score, steps, cost in s.execute(
            select(VerifierScore.candidate_id, VerifierScore.score, VerifierScore.step_scores, VerifierScore.cost)
            .join(Candidate, VerifierScore.candidate_id == Candidate.id)
            .where(Candidate.run_id == run_id, VerifierScore.verifier == name, VerifierScore.settings_hash == digest)
        ):
            if cid in scores:
                scores[cid][name] = float(score)
                if steps:  # previews' scores (prm, parm): the leaderboard's per-step AUROC
                    step_scores[cid][name] = tuple(float(x) for x in steps)
                verifier_seconds[cid][name] = _seconds(cost)
        unscored = [r for r in rows if name not in scores[r.id]]
        if unscored:
            raise SubmitError(f"run {run_id[:12]}…: {len(unscored)} candidate(s) have no score by {name!r} with these "
                              f"parameters ({digest[:12]}…), the first prompt {unscored[0].index:05d}; run "
                              "`stepwise run` with that --verifier, or give the --verifier-param it used")

    if suite == "geneval":
        floor = min(spec.options.threshold, spec.options.counting_threshold)
        records = [ImageRecord(prompt_index=int(r.index), tag=r.tag, prompt=r.text, sample_index=int(r.sample_index),
                               sha256=r.image_sha256, image=None, correct=bool(r.correct), reason=r.reason or "",
                               detections=_kept_detections(r.detections, floor), scores=scores[r.id],
                               step_scores=step_scores[r.id])
                   for r in rows]
        settings = evaluator_settings(spec)
    else:
        records = [soft_tifa_record(prompt_index=int(r.index), tag=r.tag, prompt=r.text,
                                    sample_index=int(r.sample_index), sha256=r.image_sha256, correct=r.correct,
                                    reason=r.reason, score=r.score, details=r.details, scores=scores[r.id],
                                    step_scores=step_scores[r.id]) for r in rows]
        settings = soft_tifa_settings(rows[0].details or {}, key)
    generator = [_seconds(r.cost) for r in rows]
    costs: list[Cost] | None = None
    if all(g is not None for g in generator) and all(
            v is not None for r in rows for v in verifier_seconds[r.id].values()):
        costs = [Cost(g, dict(verifier_seconds[r.id])) for g, r in zip(generator, rows, strict=True)]  # type: ignore[arg-type]
    header = ExportHeader(
        run_id=run.id, suite=run.suite.name, suite_hash=run.suite.hash, prompts=n_prompts,
        generator={"name": run.generator, "package": run.generator_package, "version": run.generator_version,
                   "params": dict(run.params)},
        seed=int(run.seed), evaluator_backend=backend, evaluator_settings_hash=key,
        evaluator_settings=settings, verifiers=dict(verifiers), stepwise_version=__version__,
        verifier_settings=dict(verifier_settings) if verifier_settings is not None else None)
    resolution = run.params.get("resolution")
    links = tuple(NewPreparation(p.strategy, p.settings_hash, dict(p.params), p.checkpoint, p.checkpoint_sha256,
                                 dict(p.manifest)) for p in run_preparations(s, run_id))
    try:
        folder, problem = locate_run_folder(s, run_id, run_dir), None
    except RunFolderError as err:
        folder, problem = None, str(err)
    return RunExport(header, records, costs, [r.image_path for r in rows],
                     resolution if isinstance(resolution, int) and not isinstance(resolution, bool) else None,
                     links, folder, problem)


def _reward_verifier(link: Any) -> str | None:
    value = link.params.get("reward_verifier") if isinstance(link.params, Mapping) else None
    return value if isinstance(value, str) else None


def choose_preparation(run_id: str, links: tuple[Any, ...], verifier: str | None) -> Any | None:
    """The link that becomes the export's `preparation`: None without one; with several (strategy
    settings that differ only in selection share a run), they must name one checkpoint (strategy,
    weights sha256, reward verifier), and the one whose selection `verifier` is the entry's is
    taken (else the oldest). SubmitError, listing them, when they name different checkpoints."""
    if not links:
        return None
    if len({(x.strategy, x.checkpoint_sha256, _reward_verifier(x)) for x in links}) > 1:
        listed = "; ".join(f"strategy {x.strategy} (settings {x.settings_hash[:12]}…): {x.checkpoint}, sha256 "
                           f"{x.checkpoint_sha256[:12]}…, reward verifier {_reward_verifier(x) or 'none'}"
                           for x in links)
        raise SubmitError(f"run {run_id[:12]}… is linked to {len(links)} prepared checkpoints that differ ({listed}); "
                          "its images came from one set of weights, and the store cannot say which: this run cannot "
                          "be submitted")
    for link in links:
        if isinstance(link.params, Mapping) and link.params.get("verifier") == verifier:
            return link
    return links[0]


def prepared_checkpoint(run_id: str, link: Any) -> PreparedCheckpoint:
    """The export header's `preparation` from a store link and its checkpoint's stepwise-alignment.json:
    strategy, settings hash, checkpoint and its sha256; training data sha256, parameters, parent model
    files, steps. SubmitError when the recorded manifest lacks what an export needs."""
    import json

    manifest = link.manifest if isinstance(link.manifest, Mapping) else {}

    def part(key: str) -> Any:
        value = manifest.get(key)
        return value if isinstance(value, Mapping) else {}

    data, steps = part("data"), part("steps")
    record: dict[str, Any] = {"sha256": data.get("sha256")}
    if "pairs" in data:
        record["pairs"] = data["pairs"]
    reward_prompts = data.get("reward_prompts")
    if isinstance(reward_prompts, Mapping):
        record["reward_prompts_sha256"] = reward_prompts.get("sha256")
    value = {"strategy": link.strategy, "settings_hash": link.settings_hash, "checkpoint": link.checkpoint,
             "checkpoint_sha256": link.checkpoint_sha256,
             "training": {"data": record, "parameters": manifest.get("parameters"), "parent": manifest.get("parent"),
                          "steps": {"done": steps.get("done"), "total": steps.get("total")},
                          "finished": manifest.get("finished")}}
    try:
        return parse_preparation(json.loads(json.dumps(value)))
    except (TypeError, ValueError) as err:
        raise SubmitError(f"run {run_id[:12]}…: the recorded manifest of its prepared checkpoint {link.checkpoint} "
                          f"does not fit an export's preparation: {err}") from None


def write_folder(folder: Path, export: RunExport, manifest_text: str, *, images: bool) -> None:
    """Write a fresh entry folder: images/<sha256>.png (when `images`), export.jsonl, submission.toml.

    Each copied image is hashed on the way: a file that is missing from the run folder, or changed
    since the run, is refused naming it, so an entry's pictures are the judged ones.
    """
    import json

    from harness.store.folders import ImageProblem, resolve_image
    from harness.submissions.model import MANIFEST_NAME

    if images and export.run_folder is None:
        raise SubmitError(f"{export.folder_problem} (or submit with --no-images)")
    folder.mkdir(parents=True)
    records = export.records
    if images:
        assert export.run_folder is not None
        (folder / IMAGES_DIR).mkdir()
        shipped = []
        for record, source in zip(records, export.image_paths, strict=True):
            name = f"{IMAGES_DIR}/{record.sha256}.png"
            target = folder / name
            if not target.exists():
                where = f"prompt {record.prompt_index:05d} sample {record.sample_index}"
                try:
                    path = resolve_image(export.run_folder, source, record.sha256, where)
                except ImageProblem as err:
                    raise SubmitError(f"{err}; give the run folder that holds the judged images with --run-dir "
                                      "(or submit with --no-images)") from None
                target.write_bytes(path.read_bytes())
            shipped.append(_with_image(record, name))
        records = shipped
    lines = [json.dumps(header_json(export.header), sort_keys=False)]
    costs = export.costs or [None] * len(records)
    lines += [json.dumps(record_json(r, c)) for r, c in zip(records, costs, strict=True)]
    (folder / EXPORT_NAME).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / MANIFEST_NAME).write_text(manifest_text, encoding="utf-8")


def _with_image(record: ImageRecord, image: str) -> ImageRecord:
    from dataclasses import replace

    return replace(record, image=image)


def replace_folder(partial: Path, final: Path) -> None:
    """Move a checked `partial` folder to `final`, replacing an existing one (--force) only at the end."""
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    try:
        partial.rename(final)
    except OSError:
        if old.exists():
            old.rename(final)  # put the previous entry back
        raise
    if old.exists():
        shutil.rmtree(old)
