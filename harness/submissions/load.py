"""Load submission folders into `Entry`s, checking everything; or say everything that is wrong.

    entry = load_entry(Path("submissions/show-o-parm"))      # raises SubmissionError
    entries, problems = load_all(Path("submissions"))        # every folder; problems instead of raising

A reported entry's scores are its manifest's. A reproduced entry's are recomputed from its
export (`compute.recompute`), after checking that the export:

- stays inside the folder (so do the images it names), and is at most MAX_EXPORT_BYTES;
- is a run of GenEval's suite: its suite hash is that of GenEval's prompts with the export's
  prompt count, and every candidate's tag and prompt text are those of its prompt index;
- covers every prompt of the suite with the same number m >= system.n of candidates (sample
  indices 0..m-1), each scored by every verifier the header names;
- agrees with the manifest: generator, seed, evaluator backend and settings, m = images_per_prompt,
  and a strategy this harness can recompute (`compute.STRATEGIES`) with its verifier in the export;
  when the header has a `preparation` (the run generated with a checkpoint a strategy trained),
  system.alignment is that strategy and system.reward_guidance names its reward verifier, or is
  "none" when training had none (`preparation_disagreements`);
- names images whose files' sha256 equal the records' (provenance: the pictures are the judged ones);
- is consistent with itself (`harness.submissions.consistency`): verdicts and reasons re-derived from
  the stored detections, detections well-formed, no image standing for two prompts or seeds, scores
  finite and inside their verifiers' declared ranges.

A loaded reproduced entry's `verification` is then "consistent"; `harness.submissions.verify`
re-checks a sample with the models (`stepwise validate`, `stepwise leaderboard build`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

from harness.submissions.compute import STRATEGIES, recompute
from harness.submissions.consistency import Records, checks_of, consistency_problems, declared_ranges
from harness.submissions.export import Export, ExportError, parse_export
from harness.submissions.folder_checks import (
    MAX_EXPORT_BYTES,
    MAX_IMAGE_BYTES,
    SubmissionError,
    check_images,
    folder_error,
    prompt_problem,
    suite_metadata,
    suite_samples,
)
from harness.submissions.manifest import SLUG, read_manifest
from harness.submissions.model import (
    MANIFEST_NAME,
    Entry,
    Manifest,
    PreparedCheckpoint,
    ValidationProblem,
    Verification,
)
from harness.submissions.paths import PathProblem, confined

__all__ = ["MAX_EXPORT_BYTES", "MAX_IMAGE_BYTES", "SubmissionError", "ValidationProblem", "load_all", "load_entry",
           "names_verifier", "preparation_disagreements", "suite_metadata"]



def load_all(root: Path, *, geneval2_data: Path | None = None) -> tuple[list[Entry], list[ValidationProblem]]:
    """Every entry folder under `root` (sorted by slug), and the problems of those that do not load.

    Files directly in `root` (README.md) and hidden folders are not entries. geneval2_data: the
    user's copy of the GenEval 2 data, to check GenEval 2 entries against (`harness.submissions.suites`).
    """
    entries: list[Entry] = []
    problems: list[ValidationProblem] = []
    try:
        children = sorted(root.iterdir())
    except OSError as err:
        return [], [ValidationProblem(root, "", f"cannot list the folder ({err.strerror})")]
    for child in children:
        if child.name.startswith(".") or (child.is_file() and not child.is_symlink()):
            continue
        try:
            entries.append(load_entry(child, geneval2_data=geneval2_data))
        except SubmissionError as err:
            problems.extend(err.problems)
    return entries, problems


def load_entry(folder: Path, *, slug: str | None = None, geneval2_data: Path | None = None) -> Entry:
    """Load and check one submission folder. slug: the entry's name [the folder's name]; given when
    checking a folder before it gets its final name (`stepwise submit` writes SLUG.partial first).
    geneval2_data: the GenEval 2 suite folder or data file [$STEPWISE_GENEVAL2_DATA]."""
    slug = folder.name if slug is None else slug

    def fail(file: str, *messages: str) -> SubmissionError:
        return folder_error(folder, file, *messages)

    if folder.is_symlink():
        raise fail("", "is a symlink; an entry must be a real folder")
    if not folder.is_dir():
        raise fail("", "is not a folder")
    if not SLUG.fullmatch(slug):
        raise fail("", f"the folder name {slug!r} is not a slug: 1 to 64 of a-z, 0-9 and '-', "
                       "starting with a letter or digit")
    try:
        manifest_path = confined(folder, MANIFEST_NAME)
    except PathProblem as err:
        raise fail(MANIFEST_NAME, str(err)) from None
    if not manifest_path.is_file():
        raise fail(MANIFEST_NAME, "missing: every entry folder needs a submission.toml")
    manifest, messages = read_manifest(manifest_path)
    if manifest is None:
        raise fail(MANIFEST_NAME, *messages)
    if manifest.kind == "reported":
        return _reported(folder, slug, manifest)
    return _reproduced(folder, slug, manifest, geneval2_data)


def _reported(folder: Path, slug: str, manifest: Manifest) -> Entry:
    from harness.submissions.suites import view

    groups = view(manifest.suite).groups
    scores = dict(manifest.scores or {})
    if "overall" not in scores and all(t in scores for t in groups):
        # GenEval's overall: the mean over tasks. GenEval 2's (the mean over prompts) is the mean over its
        # atomicities too: the published suite has 100 prompts of each.
        scores["overall"] = sum(scores[t] for t in groups) / len(groups)
    ordered = {t: scores[t] for t in (*groups, "overall") if t in scores}
    return Entry(slug=slug, folder=folder, manifest=manifest, scores=ordered, intervals=None, images=(),
                 curves={}, prompt_correct=None, suite=manifest.suite)


def _reproduced(folder: Path, slug: str, manifest: Manifest, geneval2_data: Path | None = None) -> Entry:
    assert manifest.export is not None
    name = manifest.export
    try:
        path = confined(folder, name)
    except PathProblem as err:
        raise folder_error(folder, MANIFEST_NAME, f"export.path: {err}") from None
    if not path.is_file():
        raise folder_error(folder, MANIFEST_NAME, f"export.path: {name!r} does not exist in the folder")
    size = path.stat().st_size
    if size > MAX_EXPORT_BYTES:
        raise folder_error(folder, name, f"is {size} bytes; an export may have at most {MAX_EXPORT_BYTES}")
    if _is_search_export(path):  # a search strategy's picks, not a pool (harness.submissions.search_load)
        from harness.submissions.search_load import load_search_entry

        return load_search_entry(folder, slug, manifest, path, geneval2_data)
    try:
        with open(path, encoding="utf-8") as fp:
            export = parse_export(fp)
    except UnicodeDecodeError as err:
        raise folder_error(folder, name, f"is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except ExportError as err:
        raise folder_error(folder, name, *err.problems) from None

    # In this order, each step only once the previous passed: agreement needs whole prompts (to know
    # m), and hashing thousands of images is not worth it for an export that is refused anyway.
    try:
        samples, unchecked = suite_samples(export, geneval2_data)
    except ValueError as err:
        raise folder_error(folder, name, str(err)) from None
    problems = [ValidationProblem(folder, name, m) for m in _coverage(export, manifest, samples)]
    if not problems:
        problems += [ValidationProblem(folder, MANIFEST_NAME, m) for m in _agreement(export, manifest)]
    sizes: dict[str, tuple[int, int]] = {}
    if not problems:
        image_problems, sizes = check_images(folder, export.records, name)
        problems += image_problems
    ranges = declared_ranges(list(export.header.verifiers))
    checks = checks_of(export.header.suite)
    if not problems:
        records = Records(export, samples, sizes, ranges)
        problems += [ValidationProblem(folder, name, m) for m in consistency_problems(records, checks)]
    if problems:
        raise SubmissionError(problems)
    numbers = recompute(export, manifest.system)
    images = tuple(sorted(export.records, key=lambda r: (r.prompt_index, r.sample_index)))
    verification = Verification(level="consistent", checks=tuple(n for n, _ in checks),
                                unranged=tuple(sorted(v for v, r in ranges.items() if r is None)),
                                missing=(unchecked,) if unchecked else ())
    return Entry(slug=slug, folder=folder, manifest=manifest, scores=numbers.scores, intervals=numbers.intervals,
                 images=images, curves=numbers.curves, prompt_correct=numbers.prompt_correct,
                 preparation=export.header.preparation, verification=verification, header=export.header,
                 suite=export.header.suite)


def _is_search_export(path: Path) -> bool:
    from harness.submissions.search_export import is_search_header

    try:
        with open(path, encoding="utf-8") as fp:
            return is_search_header(fp.readline(1 << 20))
    except (OSError, UnicodeDecodeError):
        return False  # parse_export says what is wrong


def _coverage(export: Export, manifest: Manifest, samples: list[dict] | None) -> list[str]:
    """The export is a whole run of its suite: every prompt, the same m candidates each, each candidate's
    tag and prompt text those of its prompt index (`samples`; without them, the same within a prompt)."""
    head = export.header
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
        problems.append(f"{len(missing)} prompt(s) of the suite have no candidates, the first {missing[0]:05d}; "
                        "an entry covers the whole suite")
    sizes = {p: len(s) for p, s in by_prompt.items()}
    m = Counter(sizes.values()).most_common(1)[0][0] if sizes else 0
    uneven = sorted(p for p, k in sizes.items() if k != m)
    if uneven:
        problems.append(f"prompt {uneven[0]:05d} has {sizes[uneven[0]]} candidates but most prompts have {m}; "
                        "every prompt needs the same number")
    for p, samples_of in sorted(by_prompt.items()):
        if sorted(samples_of) != list(range(len(samples_of))):
            problems.append(f"prompt {p:05d}: sample indices {sorted(samples_of)[:10]} are not 0..{len(samples_of) - 1}"
                            " without repeats")
            break
    if not problems and m < manifest.system.n:  # (m: every prompt's, now)
        problems.append(f"{m} candidates per prompt, fewer than system.n = {manifest.system.n}")
    return problems


def _agreement(export: Export, manifest: Manifest) -> list[str]:
    """What the manifest says about the run must be what the export says."""
    head = export.header
    system, protocol, evaluator = manifest.system, manifest.protocol, manifest.evaluator
    problems = []
    if manifest.suite != head.suite:
        problems.append(f"suite {manifest.suite!r} is not the export's suite {head.suite!r}")
    if system.generator != head.generator["name"]:
        problems.append(f"system.generator {system.generator!r} is not the export's generator "
                        f"{head.generator['name']!r}")
    if protocol.seed != head.seed:
        problems.append(f"protocol.seed {protocol.seed!r} is not the export's run seed {head.seed}")
    m = len(export.records) // max(1, len({r.prompt_index for r in export.records}))
    if protocol.images_per_prompt != m:
        problems.append(f"protocol.images_per_prompt {protocol.images_per_prompt} is not the export's "
                        f"{m} candidates per prompt")
    if evaluator.backend != head.evaluator_backend:
        problems.append(f"evaluator.backend {evaluator.backend!r} is not the export's {head.evaluator_backend!r}")
    if evaluator.settings != head.evaluator_settings:
        problems.append("evaluator.settings differ from the export header's evaluator settings")
    if system.strategy not in STRATEGIES:
        problems.append(f"system.strategy {system.strategy!r} cannot be recomputed from an export "
                        f"(known: {', '.join(STRATEGIES)})")
    elif system.strategy == "best-of-n":
        if len(system.verifiers) != 1:
            problems.append(f"system.verifiers: best-of-n selects by exactly one verifier, got "
                            f"{list(system.verifiers)}")
        elif system.verifiers[0] not in head.verifiers:
            problems.append(f"system.verifiers: {system.verifiers[0]!r} has no scores in the export "
                            f"(it has {', '.join(head.verifiers) or 'none'})")
    elif system.verifiers or system.n != 1:
        problems.append("system: strategy 'none' means one sample: verifiers = [] and n = 1")
    if head.preparation is not None:
        problems += preparation_disagreements(system.alignment, system.reward_guidance, head.preparation)
    return problems


def names_verifier(label: str, verifier: str) -> bool:
    """Whether a reward-guidance label names `verifier`: the name itself, or a label with it as a
    '-'-separated part ("ft-orm" for the `orm` plug-in loaded with fine-tuned weights)."""
    return (label == verifier or label.startswith(f"{verifier}-") or label.endswith(f"-{verifier}")
            or f"-{verifier}-" in label)


def preparation_disagreements(alignment: str, guidance: str, preparation: PreparedCheckpoint) -> list[str]:
    """Where a manifest's system.alignment and system.reward_guidance contradict the checkpoint its
    export's run generated with: the alignment is the strategy that trained it, the reward guidance
    names the verifier that guided its training ("none" when none did). `stepwise submit` checks its
    flags with this too."""
    problems = []
    strategy, verifier = preparation.strategy, preparation.reward_verifier
    digest = f"{preparation.checkpoint_sha256[:12]}…"
    if alignment != strategy:
        problems.append(f"system.alignment is {alignment!r}, but the export's run generated with checkpoint "
                        f"{digest} prepared by strategy {strategy!r} (the header's preparation): inconsistent; it "
                        f"must be {strategy!r}")
    trained = f"the checkpoint the export's run generated with ({digest}, the header's preparation) was trained"
    if verifier is None and guidance != "none":
        problems.append(f"system.reward_guidance is {guidance!r}, but {trained} without reward guidance (its "
                        "training parameters have no reward_verifier): inconsistent; it must be 'none'")
    elif verifier is not None and not names_verifier(guidance, verifier):
        problems.append(f"system.reward_guidance is {guidance!r}, but {trained} with reward guidance by verifier "
                        f"{verifier!r}: inconsistent; it must name it ({verifier!r}, or a label with it as a "
                        f"'-'-separated part, e.g. 'ft-{verifier}')")
    return problems
