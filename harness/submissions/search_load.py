"""Load a search entry (its export is a `stepwise-search-export`): check everything, recompute its numbers.

Checked, in order (each step only once the previous passed), every problem named with its file:

- the export and the traces file stay inside the folder and are at most MAX_EXPORT_BYTES;
- coverage: a run of GenEval's suite (or GenEval 2's, `harness.submissions.suites`), every prompt with
  the same `samples` picks (sample indices 0..samples-1), tag and prompt text those of the suite;
- agreement with the manifest: generator, seed, evaluator backend and settings, system.strategy is the
  search's strategy, system.n its budget, system.verifiers its verifiers, images_per_prompt its
  samples, protocol.prompt_rewriting true exactly when some search generated from a rewritten prompt
  (its trace's start events say);
- every pick's ledger is a ledger, within the budget (generator NFE <= budget x total_steps);
- every pick has a trace in the traces file whose events hash to the sha256 the pick names, and
  whose last event picks the pick's image;
- images: the picks' (and any shipped image a trace names) files hash to their names;
- consistency (`harness.submissions.consistency`, as for pool entries): each pick's verdict and reason
  re-derived from its stored detections, detections well-formed, no image standing for two prompts
  or two samples.

A loaded search entry's `verification` is then "consistent"; `harness.submissions.verify` re-judges a
sample of its picks with the evaluator, but a search stays "not re-checked": whether the picks are
what the search would make (and its ledger what it would spend) is known only by running it again.

Numbers are recomputed from the verdicts: a prompt's score is the mean over its picks, a task's the
mean over its prompts, overall the mean over tasks; intervals are the stratified bootstrap with
seed 0 and 1000 resamples (`harness.submissions.compute`), so everyone gets the same.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.submissions.consistency import Records, checks_of, consistency_problems
from harness.submissions.folder_checks import (
    MAX_EXPORT_BYTES,
    SubmissionError,
    check_images,
    folder_error,
)
from harness.submissions.model import (
    Entry,
    Manifest,
    SearchInfo,
    ValidationProblem,
    Verification,
)
from harness.submissions.paths import PathProblem, confined
from harness.submissions.search_export import SearchExport, parse_search_export, parse_traces

__all__ = ["load_search_entry"]


def load_search_entry(folder: Path, slug: str, manifest: Manifest, path: Path,
                      geneval2_data: Path | None = None) -> Entry:
    """The entry of a search export at `path` (already confined and size-checked by the caller).
    geneval2_data: the GenEval 2 data to check a GenEval 2 search against (`harness.submissions.suites`)."""
    from harness.submissions.export import ExportError
    from harness.submissions.folder_checks import suite_samples

    name = manifest.export or ""
    try:
        with open(path, encoding="utf-8") as fp:
            export = parse_search_export(fp)
    except UnicodeDecodeError as err:
        raise folder_error(folder, name, f"is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except ExportError as err:
        raise folder_error(folder, name, *err.problems) from None
    try:
        traces_path = confined(folder, export.traces)
    except PathProblem as err:
        raise folder_error(folder, name, f"traces: {err}") from None
    if not traces_path.is_file():
        raise folder_error(folder, name, f"traces: {export.traces!r} does not exist in the folder")
    if traces_path.stat().st_size > MAX_EXPORT_BYTES:
        raise folder_error(folder, export.traces, f"is more than {MAX_EXPORT_BYTES} bytes")
    try:
        samples, unchecked = suite_samples(export, geneval2_data)
    except ValueError as err:
        raise folder_error(folder, name, str(err)) from None
    problems = [ValidationProblem(folder, name, m) for m in _coverage(export, samples)]
    if not problems:
        problems += [ValidationProblem(folder, name, m) for m in _ledgers(export)]
    traces: dict[tuple[int, int], tuple[str, list[Any]]] = {}
    if not problems:
        traces, found = _traces(folder, export, traces_path)
        problems += found
    if not problems:
        problems += [ValidationProblem(folder, "submission.toml", m) for m in _agreement(export, manifest, traces)]
    previews: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    if not problems:
        image_problems, sizes = check_images(folder, export.records, name)
        problems += image_problems
        previews, more = _previews(folder, export, traces_path)
        problems += more
    if not problems:
        records = Records(export, samples, sizes, {})  # type: ignore[arg-type]
        problems += [ValidationProblem(folder, name, m)
                     for m in consistency_problems(records, checks_of(export.header.suite))]
    if problems:
        raise SubmissionError(problems)
    return _entry(folder, slug, manifest, export, previews, _rewrote(export, traces), unchecked)


def _coverage(export: SearchExport, samples: list[dict] | None) -> list[str]:
    """Every prompt of the suite with `search.samples` picks, each pick's tag and prompt its prompt's
    (`samples`; a GenEval 2 search checked without its data: the same within a prompt)."""
    from harness.submissions.folder_checks import prompt_problem

    head, m = export.header, export.search.samples
    first: dict[int, tuple[str, str]] = {}
    problems: list[str] = []
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for r in export.records:
        if r.prompt_index >= head.prompts:
            problems.append(f"prompt_index {r.prompt_index} is outside the suite (0..{head.prompts - 1})")
        elif (why := prompt_problem(head.suite, samples, r, first)) is not None:
            problems.append(why)
        by_prompt[r.prompt_index].append(r.sample_index)
        if len(problems) >= 20:
            return problems
    missing = sorted(set(range(head.prompts)) - set(by_prompt))
    if missing:
        problems.append(f"{len(missing)} prompt(s) of the suite have no picks, the first {missing[0]:05d}; an entry "
                        "covers the whole suite")
    for p, picked in sorted(by_prompt.items()):
        if sorted(picked) != list(range(m)):
            problems.append(f"prompt {p:05d}: sample indices {sorted(picked)[:10]} are not 0..{m - 1} (search.samples "
                            f"= {m}) without repeats")
            break
    return problems


def _rewrote(export: SearchExport, traces: dict[tuple[int, int], tuple[str, list[Any]]]) -> bool:
    from harness.search.trace import rewrote_prompt

    return any(rewrote_prompt(traces.get((r.prompt_index, r.sample_index), ("", []))[1], r.prompt)
               for r in export.records)


def _agreement(export: SearchExport, manifest: Manifest,
               traces: dict[tuple[int, int], tuple[str, list[Any]]]) -> list[str]:
    head, search = export.header, export.search
    system, protocol, evaluator = manifest.system, manifest.protocol, manifest.evaluator
    problems = []
    if manifest.suite != head.suite:
        problems.append(f"suite {manifest.suite!r} is not the export's suite {head.suite!r}")
    if system.generator != head.generator["name"]:
        problems.append(f"system.generator {system.generator!r} is not the export's generator "
                        f"{head.generator['name']!r}")
    if protocol.seed != head.seed:
        problems.append(f"protocol.seed {protocol.seed!r} is not the export's run seed {head.seed}")
    if protocol.images_per_prompt != search.samples:
        problems.append(f"protocol.images_per_prompt {protocol.images_per_prompt} is not the search's "
                        f"{search.samples} picks per prompt")
    rewriting = _rewrote(export, traces)
    if protocol.prompt_rewriting != rewriting:
        problems.append(f"protocol.prompt_rewriting is {str(protocol.prompt_rewriting).lower()}, but the traces show "
                        f"{'a search that generated' if rewriting else 'no search generating'} from a rewritten prompt")
    if evaluator.backend != head.evaluator_backend:
        problems.append(f"evaluator.backend {evaluator.backend!r} is not the export's {head.evaluator_backend!r}")
    if evaluator.settings != head.evaluator_settings:
        problems.append("evaluator.settings differ from the export header's evaluator settings")
    if system.strategy != search.strategy:
        problems.append(f"system.strategy {system.strategy!r} is not the search's strategy {search.strategy!r}")
    if system.n != search.budget:
        problems.append(f"system.n {system.n} is not the search's budget {search.budget}")
    if sorted(system.verifiers) != sorted(head.verifiers):
        problems.append(f"system.verifiers {list(system.verifiers)} are not the search's verifiers "
                        f"{sorted(head.verifiers)}")
    return problems


def _ledgers(export: SearchExport) -> list[str]:
    from harness.search.ledger import Ledger

    cap = export.search.budget * export.search.total_steps
    problems = []
    for pick in export.picks:
        where = f"prompt {pick.prompt_index:05d} sample {pick.sample_index}"
        try:
            ledger = Ledger.from_json(pick.ledger)
        except ValueError as err:
            problems.append(f"{where}: {err}")
            continue
        if ledger.generator_nfe > cap:
            problems.append(f"{where}: {ledger.generator_nfe} generator NFE, more than the budget allows "
                            f"({export.search.budget} x {export.search.total_steps} = {cap})")
        if len(problems) >= 20:
            break
    return problems


def _traces(folder: Path, export: SearchExport,
            traces_path: Path) -> tuple[dict[tuple[int, int], tuple[str, list[Any]]], list[ValidationProblem]]:
    """The traces file read, and what is wrong with it (every pick's trace, hashing to its name)."""
    from harness.search.store import trace_sha256
    from harness.submissions.export import ExportError

    name = export.traces
    try:
        with open(traces_path, encoding="utf-8") as fp:
            traces = parse_traces(fp)
    except UnicodeDecodeError as err:
        return {}, [ValidationProblem(folder, name, f"is not UTF-8 text ({err.reason} at byte {err.start})")]
    except ExportError as err:
        return {}, [ValidationProblem(folder, name, m) for m in err.problems]
    problems = []
    for record, pick in zip(export.records, export.picks, strict=True):
        where = f"prompt {pick.prompt_index:05d} sample {pick.sample_index}"
        found = traces.get((pick.prompt_index, pick.sample_index))
        if found is None:
            problems.append(ValidationProblem(folder, name, f"{where}: no trace"))
        elif found[0] != pick.trace_sha256 or trace_sha256(found[1]) != pick.trace_sha256:
            problems.append(ValidationProblem(folder, name, f"{where}: the trace's events do not hash to the "
                                                            f"sha256 the export names ({pick.trace_sha256[:12]}…)"))
        elif not found[1] or not isinstance(found[1][-1], dict) or found[1][-1].get("image") != record.sha256:
            problems.append(ValidationProblem(folder, name, f"{where}: the trace's last event does not pick the "
                                                            "pick's image"))
        if len(problems) >= 20:
            break
    return traces, problems


def _previews(folder: Path, export: SearchExport, traces_path: Path) -> tuple[dict[str, str], list[ValidationProblem]]:
    """{sha256: images/<sha256>.png} of the shipped images the traces name (checked), besides the picks."""
    from harness.hashing import content_sha256
    from harness.submissions.search_build import _named_images

    with open(traces_path, encoding="utf-8") as fp:
        traces = parse_traces(fp)
    picked = {r.sha256 for r in export.records}
    out: dict[str, str] = {}
    problems: list[ValidationProblem] = []
    for _, events in traces.values():
        for sha in _named_images(events):
            if sha in picked or sha in out:
                continue
            relative = f"images/{sha}.png"
            try:
                path = confined(folder, relative)
            except PathProblem:  # pragma: no cover - a sha256 is a plain name
                continue
            if not path.is_file():
                continue  # not shipped (--no-images, or a preview that was gone): the trace view says so
            if content_sha256(path) != sha:
                problems.append(ValidationProblem(folder, relative, "the file's sha256 is not its name: this is not "
                                                                    "the image the search saw"))
                continue
            out[sha] = relative
    return out, problems


def _entry(folder: Path, slug: str, manifest: Manifest, export: SearchExport, previews: dict[str, str],
           rewriting: bool, unchecked: str | None = None) -> Entry:
    import numpy as np

    from harness.search.ledger import Ledger
    from harness.submissions.compute import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED
    from harness.submissions.suites import view
    from harness.suites import aggregate, intervals

    suite = view(export.header.suite)
    by_prompt: dict[int, list[float]] = defaultdict(list)
    tags: dict[int, str] = {}
    for r in export.records:
        by_prompt[r.prompt_index].append(r.outcome)  # GenEval: the verdict; GenEval 2: the Soft-TIFA GM
        tags[r.prompt_index] = r.tag
    order = sorted(by_prompt)
    per_prompt = np.array([np.mean(by_prompt[p]) for p in order])
    tag_list = [tags[p] for p in order]
    scores = aggregate(per_prompt, tag_list, overall_mean=suite.overall_mean)
    boot = intervals(per_prompt, tag_list, np.random.default_rng(BOOTSTRAP_SEED), n_boot=BOOTSTRAP_RESAMPLES,
                     overall_mean=suite.overall_mean)
    names = [*suite.order([t for t in scores if t != "overall"]), "overall"]
    ledgers = [Ledger.from_json(p.ledger) for p in export.picks]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else 0.0

    ranked = sorted(range(len(export.records)), key=lambda i: (export.records[i].prompt_index,
                                                              export.records[i].sample_index))
    search = export.search
    info = SearchInfo(
        strategy=search.strategy, package=search.package, version=search.version, params=search.params,
        settings_hash=search.settings_hash, budget=search.budget, samples=search.samples,
        total_steps=search.total_steps, verifiers=dict(export.header.verifiers),
        reads_metadata=search.reads_metadata, prompt_rewriting=rewriting,
        nfe=mean([float(x.generator_nfe) for x in ledgers]), seconds=mean([x.seconds for x in ledgers]),
        generator_seconds=mean([x.generator_seconds for x in ledgers]),
        verifier_seconds=mean([x.verifier_seconds for x in ledgers]), generator=dict(export.header.generator),
        picks=tuple(export.picks[i] for i in ranked), traces=export.traces, previews=previews)
    return Entry(slug=slug, folder=folder, manifest=manifest, scores={t: float(scores[t]) for t in names},
                 intervals={t: (float(boot[t][0]), float(boot[t][1])) for t in names},
                 images=tuple(export.records[i] for i in ranked), curves={},
                 prompt_correct={p: float(v) for p, v in zip(order, per_prompt, strict=True)}, search=info,
                 verification=Verification(level="consistent", checks=tuple(n for n, _ in checks_of(suite.name)),
                                           missing=(unchecked,) if unchecked else ()),
                 header=export.header, suite=export.header.suite)


def read_traces(entry: Entry) -> dict[tuple[int, int], list[Any]]:
    """{(prompt index, sample index): events} of a loaded search entry (for the site's trace view)."""
    if entry.search is None:
        return {}
    try:
        with open(confined(entry.folder, entry.search.traces), encoding="utf-8") as fp:
            return {key: events for key, (_, events) in parse_traces(fp).items()}
    except (OSError, ValueError, PathProblem):
        return {}
