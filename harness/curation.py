"""Ranking data from a judged candidate pool: ORM, DPO and PARM training sets (`stepwise curate`).

The input is a run in the results store whose candidates carry GenEval verdicts by one evaluator
(backend + settings hash, chosen with the same flags as `stepwise curve --run`). The output is one
folder, DIR, written as DIR.partial and renamed when complete:

    DIR/orm.json         ORM ranking data (the official data/orm.json form): a JSON array
    DIR/dpo.jsonl        DPO pairs, one JSON object per line
    DIR/parm.json        PARM ranking data (the official data/parm.json form): a JSON array
                         (written only when the run stored step previews; see "PARM" below)
    DIR/manifest.json    what made the folder, counts, and the sha256 of each file above
    DIR/images/          only with --copy-images: <sha256>.png of every referenced image

Images. Every image is referenced by an ABSOLUTE path: the candidate's stored path (the runner
stores `OUT/images/<sha256>.png`, resolved), or with --copy-images the copy in
DIR/images/<sha256>.png. Absolute paths work with both official loaders: LLaVA's train.py does
`os.path.join(image_folder, image)`, which returns `image` when it is absolute, and
train_dpo.py opens `chosen`/`rejected` as given. Every record also carries the image's sha256
(file names are `<sha256>.png`), so a reader can re-point paths after moving the files and check
that an image is the one that was judged. Curation refuses a final image whose bytes no longer
match its stored sha256 (a preview's sha256 is that of the bytes the evaluator judged), and checks
every copy.

Order. Records are sorted by (prompt_index, sample_index); `prompt_index` is the prompt's
0-based position in the run's suite (GenEval's folder name is f"{index:05d}"). In parm.json a
candidate's records come as: clarity by step, potential by step, then selection.

ORM (orm.json): one record per candidate, LLaVA's conversation format:

    {"id": "orm-00012-0003",                       # orm-<prompt_index:05d>-<sample_index:04d>
     "image": "/abs/path/<sha256>.png",
     "conversations": [
        {"from": "human", "value": harness.verifiers.vlm.orm_question(prompt)},
        {"from": "gpt", "value": "yes"}],           # "yes" iff GenEval's verdict is correct
     "task": "orm", "prompt": "a photo of a cup", "prompt_index": 12, "sample_index": 3,
     "image_sha256": "..."}

  The question is the official ORM question, character for character, exactly what the `orm`
  verifier asks at inference. It starts with "<image> " (not the generic "<image>\\n"): LLaVA's
  `preprocess_multimodal` rewrites the token to "<image>\\n" only when a turn does NOT start with
  it, so training sees the inference text unchanged. Keys after "conversations" are extra:
  LLaVA's loader reads only "image" and "conversations".

DPO (dpo.jsonl): per prompt, one pair of a "yes" image (chosen) and a "no" image (rejected),
each drawn uniformly at random among that prompt's candidates with that verdict, by
`numpy.random.default_rng([seed, prompt_index])` (so a prompt's pair does not depend on which
other prompts are in the run). Prompts whose candidates all share one verdict are dropped, as
in the paper's iterative DPO round. One line:

    {"prompt": "a photo of a cup",                 # the text the generator was given (= metadata["prompt"])
     "metadata": {...},                            # the prompt's GenEval evaluation_metadata line
     "chosen": "/abs/path/<sha256>.png", "rejected": "/abs/path/<sha256>.png",
     "chosen_sha256": "...", "rejected_sha256": "...",
     "prompt_index": 12, "chosen_sample_index": 3, "rejected_sample_index": 7}

  "prompt", "chosen", "rejected" are what the official train_dpo.py reads.

PARM (parm.json): from the candidates' step previews (`stepwise run` stores them in the store when
one of its verifiers needs previews, e.g. prm or parm). Each preview is judged by the
SAME GenEval evaluator as the finals (verdicts come from the verdict cache when present). Labels,
for a candidate with previews p_1..p_T and final image f:

    outcome(x)  = (verdict, reason) of GenEval's evaluator on image x
    clear step  t* = the first step t such that outcome(p_s) == outcome(f) for every s >= t
                     (T + 1 when even p_T's outcome differs from the final's)
    clarity     preview p_t is "yes" iff t >= t*: from t* on, judging the preview already gives
                the final image's judgement (same verdict, for the same reason), so it is
                "clear enough to be assessed"; before t* it is not.
    potential   for each clear preview (t >= t*): "yes" iff the FINAL image's verdict is correct
                (whether this path leads to an image that satisfies the prompt).
    selection   per final image: "yes" iff its verdict is correct (the ORM record's label).

  Why (verdict, reason) and not the verdict alone: an early, blurry preview is judged "no" with
  "expected cup>=1, found 0"; comparing verdicts only would call it clear whenever the final is
  also wrong, for whatever reason. The reason string names what GenEval found wrong.

  Records (LLaVA conversation format, the official PARM questions):

    clarity:   {"id": "clarity-00012-0003-01", "image": preview path,
                "conversations": [{"from": "human", "value": clarity_question(prompt)},
                                  {"from": "gpt", "value": "yes"|"no"}],
                "task": "clarity", "step": 1, ...}
    potential: {"id": "potential-00012-0003-01", "image": preview path,
                "conversations": [{"from": "human", "value": clarity_question(prompt)},
                                  {"from": "gpt", "value": "yes"},
                                  {"from": "human", "value": POTENTIAL_QUESTION},
                                  {"from": "gpt", "value": "yes"|"no"}],
                "task": "potential", "step": 1, ...}
    selection: {"id": "selection-00012-0003", "image": final path,
                "conversations": [{"from": "human", "value": orm_question(prompt)},
                                  {"from": "gpt", "value": "yes"|"no"}],
                "task": "selection", ...}

  `step` is 1-based (p_1 is the first preview). The extra keys are those of the ORM records,
  with image_sha256 the preview's. parm.json holds all three tasks, so it trains PARM on its own;
  its selection records are the ORM records under other ids (do not mix it with orm.json, as
  the official parm.yaml does, unless double weight on selection is wanted).
  `stepwise curate --parm auto` (the default) writes parm.json when some candidate has previews;
  a run without any gets no parm.json, a warning, and "parm": null in the manifest.
  `--parm require` makes that an error; `--parm skip` never judges previews (no models loaded).
  Candidates without previews still get their selection record.

manifest.json:

    {"format": "stepwise-curation", "format_version": 1, "stepwise_version": "...",
     "run_id": "...", "suite": {"name": ..., "hash": ...},   # name: "geneval", or the --suite FILE path
     "evaluator": {"backend": "mmdet", "settings_hash": "...", "settings": {...}},
     "seed": 0, "copy_images": false, "max_samples": null,
     "counts": {"prompts": 553, "candidates": 11060, "yes": ..., "no": ...,
                "orm": 11060, "dpo": 412, "dpo_dropped_all_yes": ..., "dpo_dropped_all_no": ...,
                "parm": {"clarity": ..., "potential": ..., "selection": ...} | null},
     "files": {"orm.json": "<sha256>", "dpo.jsonl": "<sha256>", "parm.json": "<sha256>"}}

Determinism: the same store, run, evaluator settings, seed and options give byte-identical
files (sorted records, `json.dumps(..., ensure_ascii=False)` with fixed key order, LF endings);
the manifest has no timestamps.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.hashing import content_sha256
from harness.verifiers.vlm import POTENTIAL_QUESTION, clarity_question, orm_question

FORMAT = "stepwise-curation"
FORMAT_VERSION = 1
ORM_FILE, DPO_FILE, PARM_FILE, MANIFEST_FILE = "orm.json", "dpo.jsonl", "parm.json", "manifest.json"
IMAGES_DIR = "images"

Record = dict[str, Any]


class CurationError(RuntimeError):
    """Curation cannot go on; the message is meant for the user."""


@dataclass(frozen=True)
class JudgedCandidate:
    """One stored candidate with its GenEval verdict (by the evaluator curation was asked for)."""

    prompt_index: int
    prompt: str
    metadata: dict[str, Any]
    sample_index: int
    image: str  # as stored: the runner stores absolute paths
    sha256: str
    correct: bool
    reason: str
    previews: tuple[str, ...]  # step previews, in step order


@dataclass(frozen=True)
class JudgedPool:
    run_id: str
    suite_name: str
    suite_hash: str
    backend: str
    settings_hash: str
    candidates: tuple[JudgedCandidate, ...]  # sorted by (prompt_index, sample_index)

    @property
    def has_previews(self) -> bool:
        return any(c.previews for c in self.candidates)


@dataclass(frozen=True)
class Outcome:
    """What GenEval's evaluator says of an image: the verdict and the reason ("" when correct)."""

    correct: bool
    reason: str


@dataclass(frozen=True)
class PreviewRequest:
    path: str
    metadata: dict[str, Any]
    prompt_index: int


@dataclass(frozen=True)
class PreviewVerdict:
    outcome: Outcome
    sha256: str  # of the preview file's bytes, as judged


# Judges step previews: one PreviewVerdict per request, keyed by (path, prompt_index).
PreviewJudge = Callable[[Sequence[PreviewRequest]], Mapping[tuple[str, int], PreviewVerdict]]


# ---------------------------------------------------------------------------------------------
# reading the pool


def read_pool(s: Any, run_id: str, spec: Any, *, max_samples: int | None = None,
              run_dir: Path | None = None) -> JudgedPool:
    """A run's candidates with their verdicts by `spec` (an EvaluatorSpec), image paths resolved against
    where the run folder is now (`run_dir`, else where the store finds it: `harness.store.folders`);
    CurationError when the run is unknown, has no candidates, lacks a verdict by these settings
    anywhere, or its folder is not found."""
    from harness.store import Run
    from harness.store.data import judged_candidates
    from harness.store.folders import RunFolderError, locate_run_folder

    try:
        rows = judged_candidates(s, run_id, spec.backend, spec.key(), max_samples)
        folder = locate_run_folder(s, run_id, run_dir)
    except (ValueError, RunFolderError) as err:
        raise CurationError(str(err)) from None
    run = s.get(Run, run_id)

    def located(path: str) -> str:
        return path if Path(path).is_absolute() else str(folder / path)

    candidates = tuple(
        JudgedCandidate(prompt_index=int(r.index), prompt=r.text, metadata=dict(r.meta),
                        sample_index=int(r.sample_index), image=located(r.image_path), sha256=r.image_sha256,
                        correct=bool(r.correct), reason=r.reason or "",
                        previews=tuple(located(p) for p in r.step_previews))
        for r in rows)
    return JudgedPool(run.id, run.suite.name, run.suite.hash, spec.backend, spec.key(), candidates)


# ---------------------------------------------------------------------------------------------
# records (pure: candidates and verdicts in, dicts out)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def conversation(*turns: tuple[str, str]) -> list[dict[str, str]]:
    """LLaVA's turns: ("human" | "gpt", text)."""
    return [{"from": who, "value": text} for who, text in turns]


def _record(task: str, ident: str, image: str, turns: list[dict[str, str]], c: JudgedCandidate,
            sha256: str, step: int | None = None) -> Record:
    record: Record = {"id": f"{task}-{ident}", "image": image, "conversations": turns, "task": task,
                      "prompt": c.prompt, "prompt_index": c.prompt_index, "sample_index": c.sample_index}
    if step is not None:
        record["step"] = step
    record["image_sha256"] = sha256
    return record


def outcome_record(c: JudgedCandidate, image: str, task: str = "orm") -> Record:
    """The ORM question on the final image, answered with GenEval's verdict ("orm" or PARM's "selection")."""
    turns = conversation(("human", orm_question(c.prompt)), ("gpt", yes_no(c.correct)))
    return _record(task, f"{c.prompt_index:05d}-{c.sample_index:04d}", image, turns, c, c.sha256)


def orm_records(candidates: Iterable[JudgedCandidate], locate: Callable[[str, str], str]) -> list[Record]:
    """One ORM record per candidate; `locate(stored path, sha256)` gives the path to write."""
    return [outcome_record(c, locate(c.image, c.sha256)) for c in candidates]


@dataclass(frozen=True)
class DpoResult:
    pairs: list[Record]
    dropped_all_yes: int  # prompts whose candidates were all judged correct
    dropped_all_no: int


def dpo_pairs(candidates: Sequence[JudgedCandidate], seed: int, locate: Callable[[str, str], str]) -> DpoResult:
    """Per prompt, a random "yes" image (chosen) and a random "no" image (rejected).

    Each prompt draws from its own `default_rng([seed, prompt_index])`, so its pair does not depend
    on which other prompts the run holds. Prompts whose candidates all share one verdict are dropped.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    by_prompt: dict[int, list[JudgedCandidate]] = {}
    for c in candidates:
        by_prompt.setdefault(c.prompt_index, []).append(c)
    pairs: list[Record] = []
    all_yes = all_no = 0
    for index in sorted(by_prompt):
        group = sorted(by_prompt[index], key=lambda c: c.sample_index)
        yes = [c for c in group if c.correct]
        no = [c for c in group if not c.correct]
        if not no:
            all_yes += 1
            continue
        if not yes:
            all_no += 1
            continue
        rng = np.random.default_rng([seed, index])
        chosen = yes[int(rng.integers(len(yes)))]
        rejected = no[int(rng.integers(len(no)))]
        pairs.append({"prompt": chosen.prompt, "metadata": chosen.metadata,
                      "chosen": locate(chosen.image, chosen.sha256),
                      "rejected": locate(rejected.image, rejected.sha256),
                      "chosen_sha256": chosen.sha256, "rejected_sha256": rejected.sha256,
                      "prompt_index": index, "chosen_sample_index": chosen.sample_index,
                      "rejected_sample_index": rejected.sample_index})
    return DpoResult(pairs, all_yes, all_no)


def clear_step(steps: Sequence[Outcome], final: Outcome) -> int:
    """The 1-based first step from which every preview's outcome equals the final image's;
    len(steps) + 1 when even the last preview's differs (no preview is clear)."""
    t = len(steps)
    while t > 0 and steps[t - 1] == final:
        t -= 1
    return t + 1


def parm_records(candidates: Sequence[JudgedCandidate], verdicts: Mapping[tuple[str, int], PreviewVerdict],
                 locate: Callable[[str, str], str]) -> list[Record]:
    """PARM's three tasks per candidate: clarity records by step, potential records for the clear
    steps, then the selection record on the final image (labels: see the module docstring)."""
    out: list[Record] = []
    for c in candidates:
        final = Outcome(c.correct, c.reason)
        judged = [verdicts[(p, c.prompt_index)] for p in c.previews]
        first_clear = clear_step([v.outcome for v in judged], final)
        steps = list(enumerate(zip(c.previews, judged, strict=True), start=1))
        for step, (path, v) in steps:
            turns = conversation(("human", clarity_question(c.prompt)), ("gpt", yes_no(step >= first_clear)))
            out.append(_record("clarity", f"{c.prompt_index:05d}-{c.sample_index:04d}-{step:02d}",
                               locate(path, v.sha256), turns, c, v.sha256, step))
        for step, (path, v) in steps:
            if step < first_clear:
                continue
            turns = conversation(("human", clarity_question(c.prompt)), ("gpt", "yes"),
                                 ("human", POTENTIAL_QUESTION), ("gpt", yes_no(c.correct)))
            out.append(_record("potential", f"{c.prompt_index:05d}-{c.sample_index:04d}-{step:02d}",
                               locate(path, v.sha256), turns, c, v.sha256, step))
        out.append(outcome_record(c, locate(c.image, c.sha256), task="selection"))
    return out


# ---------------------------------------------------------------------------------------------
# judging previews with GenEval's evaluator


def preview_requests(candidates: Iterable[JudgedCandidate]) -> list[PreviewRequest]:
    """Each (preview, prompt) once, in pool order: a preview is judged against its prompt's metadata."""
    seen: set[tuple[str, int]] = set()
    out = []
    for c in candidates:
        for path in c.previews:
            if (path, c.prompt_index) not in seen:
                seen.add((path, c.prompt_index))
                out.append(PreviewRequest(path, c.metadata, c.prompt_index))
    return out


def evaluator_judge(spec: Any, *, cache_path: Path | None, batch_size: int = 8) -> PreviewJudge:
    """A PreviewJudge running GenEval's evaluator `spec` (models loaded on first miss; verdicts cached
    by image sha256 + settings, as `stepwise eval` does)."""

    def judge(requests: Sequence[PreviewRequest]) -> dict[tuple[str, int], PreviewVerdict]:
        from harness.geneval.cache import VerdictCache
        from harness.geneval.evaluator import ImageError, Models, evaluate_samples
        from harness.geneval.folder import ImageDecodeError, SampleImage

        samples = [SampleImage(Path(r.path), r.metadata, r.prompt_index) for r in requests]
        cache = VerdictCache(cache_path) if cache_path is not None else None
        out: dict[tuple[str, int], PreviewVerdict] = {}
        try:
            records = evaluate_samples(samples, spec, Models(spec), cache, batch_size=batch_size)
            for request, record in zip(requests, records, strict=True):
                assert not isinstance(record, ImageError)  # on_error="fail" raises instead
                out[(request.path, request.prompt_index)] = PreviewVerdict(
                    Outcome(bool(record["correct"]), record["reason"]), record["sha256"])
        except ImageDecodeError as err:  # names the file
            raise CurationError(f"step preview {err}") from None
        finally:
            if cache is not None:
                cache.close()
        return out

    return judge


# ---------------------------------------------------------------------------------------------
# the folder


def _check_image(path: str, sha256: str, what: str) -> None:
    try:
        actual = content_sha256(Path(path))
    except OSError as err:
        raise CurationError(f"{what} {path}: cannot read ({err.strerror}); if the run's folder moved, give it with "
                            "--run-dir") from None
    if actual != sha256:
        raise CurationError(f"{what} {path}: its sha256 is {actual[:12]}…, the store says {sha256[:12]}…; the file "
                            "changed since it was judged")


def _json_array(records: Sequence[Record]) -> str:
    # One record per line: large files stay greppable and diff line by line.
    if not records:
        return "[]\n"
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def _json_lines(records: Sequence[Record]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


@dataclass(frozen=True)
class CurationOptions:
    seed: int = 0
    copy_images: bool = False
    max_samples: int | None = None


def curate(pool: JudgedPool, out: Path, options: CurationOptions, *, judge: PreviewJudge | None,
           evaluator_settings: Mapping[str, Any], force: bool = False) -> dict[str, Any]:
    """Write the folder described in the module docstring; returns the manifest.

    judge: how step previews are judged (None: no PARM data). Written as OUT.partial, renamed at
    the end: an interrupted curation leaves no half folder under OUT's name.
    """
    from harness import __version__

    out = out.resolve()
    partial = out.with_name(out.name + ".partial")
    if out.exists() and not force:
        raise CurationError(f"{out} exists; choose another -o or pass --force to replace it")
    for c in pool.candidates:
        _check_image(c.image, c.sha256, f"image of prompt {c.prompt_index:05d} sample {c.sample_index}")
    verdicts = judge(preview_requests(pool.candidates)) if judge is not None and pool.has_previews else None

    copies: dict[str, str] = {}  # sha256 -> source path, for --copy-images

    def locate(path: str, sha256: str) -> str:
        if not options.copy_images:
            return str(Path(path).resolve())
        copies.setdefault(sha256, path)
        return str(out / IMAGES_DIR / f"{sha256}.png")

    orm = orm_records(pool.candidates, locate)
    dpo = dpo_pairs(pool.candidates, options.seed, locate)
    parm = parm_records(pool.candidates, verdicts, locate) if verdicts is not None else None

    if partial.exists():
        shutil.rmtree(partial)  # what an interrupted curation left
    try:
        partial.mkdir(parents=True)
        texts = {ORM_FILE: _json_array(orm), DPO_FILE: _json_lines(dpo.pairs)}
        if parm is not None:
            texts[PARM_FILE] = _json_array(parm)
        for name, text in texts.items():
            (partial / name).write_text(text, encoding="utf-8", newline="\n")
        if copies:
            (partial / IMAGES_DIR).mkdir()
            for sha256, source in sorted(copies.items()):
                target = partial / IMAGES_DIR / f"{sha256}.png"
                shutil.copyfile(source, target)
                _check_image(str(target), sha256, "copied image")  # the bytes that were judged
        manifest = _manifest(pool, options, evaluator_settings, orm, dpo, parm, __version__,
                             {name: hashlib.sha256(text.encode("utf-8")).hexdigest() for name, text in texts.items()})
        (partial / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n",
                                             encoding="utf-8", newline="\n")
        if out.exists():
            shutil.rmtree(out)  # --force
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _manifest(pool: JudgedPool, options: CurationOptions, evaluator_settings: Mapping[str, Any],
              orm: list[Record], dpo: DpoResult, parm: list[Record] | None, version: str,
              files: dict[str, str]) -> dict[str, Any]:
    yes = sum(c.correct for c in pool.candidates)
    parm_counts = None
    if parm is not None:
        parm_counts = {task: sum(r["task"] == task for r in parm) for task in ("clarity", "potential", "selection")}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "stepwise_version": version,
        "run_id": pool.run_id, "suite": {"name": pool.suite_name, "hash": pool.suite_hash},
        "evaluator": {"backend": pool.backend, "settings_hash": pool.settings_hash,
                      "settings": dict(evaluator_settings)},
        "seed": options.seed, "copy_images": options.copy_images, "max_samples": options.max_samples,
        "counts": {"prompts": len({c.prompt_index for c in pool.candidates}), "candidates": len(pool.candidates),
                   "yes": yes, "no": len(pool.candidates) - yes, "orm": len(orm), "dpo": len(dpo.pairs),
                   "dpo_dropped_all_yes": dpo.dropped_all_yes, "dpo_dropped_all_no": dpo.dropped_all_no,
                   "parm": parm_counts},
        "files": files,
    }
