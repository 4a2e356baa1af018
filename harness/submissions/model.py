"""The data model of leaderboard submissions: what a manifest says and what the site renders.

One folder per entry under `submissions/<slug>/`, with a `submission.toml` manifest. Two kinds:

- `reported`: numbers typed from a paper, each entry citing where (one or more `[[source]]`
  tables: the same row often appears in two tables of one paper, and is shipped once).
- `reproduced`: a run made here; the folder carries a compact export of the run (one
  `ImageRecord` per candidate) and every score, interval and curve is recomputed from it.
  Nothing typed in a reproduced manifest is trusted, so it may not have a `[scores]` table.

`harness/submissions/load.py` turns a folder into an `Entry` (`load_entry`) or a root into
entries plus `ValidationProblem`s (`load_all`). Everything here is frozen plain data; the
site reads it and never writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "KINDS",
    "MANIFEST_NAME",
    "TASKS",
    "TASK_LABELS",
    "CurvePoint",
    "Entry",
    "Evaluator",
    "ImageRecord",
    "Manifest",
    "PreparedCheckpoint",
    "Protocol",
    "SearchInfo",
    "SearchPickRecord",
    "Source",
    "System",
    "TrainingRecord",
    "ValidationProblem",
    "Verification",
]

# GenEval's tags, in GenEval's column order. "Attribute binding" in papers is `color_attr`.
TASKS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")

# Column headings as papers print them (for the site; not part of any file format).
TASK_LABELS: dict[str, str] = {
    "single_object": "Single object",
    "two_object": "Two object",
    "counting": "Counting",
    "colors": "Colors",
    "position": "Position",
    "color_attr": "Attribute binding",
}

KINDS: tuple[str, ...] = ("reported", "reproduced")

MANIFEST_NAME = "submission.toml"


@dataclass(frozen=True)
class Source:
    """Where a reported entry's numbers were read (one table of one publication)."""

    citation: str
    table: str  # e.g. "Table 3"
    page: int | None  # page of the publication the table is on, when known
    url: str | None  # where the numbers were read (paper, README, repo path)


@dataclass(frozen=True)
class System:
    """What was evaluated: a generator, a reasoning strategy and its verifiers."""

    generator: str
    strategy: str  # "none" (one sample) or a strategy name, e.g. "best-of-n"
    verifiers: tuple[str, ...]  # for best-of-n, verifiers[0] selects; () when none
    n: int  # candidates per prompt the strategy chooses from (1 without a strategy)
    alignment: str  # "none" or a label: "dpo", "iterative-dpo", ...
    reward_guidance: str  # "none" or the reward model guiding alignment: "ft-orm", "parm", ...


@dataclass(frozen=True)
class Protocol:
    """How the benchmark was run."""

    images_per_prompt: int  # GenEval's default is 4
    seed: int | None
    resolution: int | None  # image side in pixels, when known
    prompt_rewriting: bool  # True when prompts were rewritten before generation


@dataclass(frozen=True)
class Evaluator:
    """Who judged the images: "mmdet" (GenEval's own) for published numbers unless stated."""

    backend: str
    settings: dict[str, Any]  # thresholds etc. as `stepwise eval` takes them; {} when unknown


@dataclass(frozen=True)
class Manifest:
    """A parsed and validated `submission.toml`."""

    name: str  # any text up to a length cap, no control characters; the site escapes it
    authors: tuple[str, ...]
    link: str | None
    description: str
    kind: Literal["reported", "reproduced"]
    system: System
    evaluator: Evaluator
    protocol: Protocol
    sources: tuple[Source, ...]  # reported: one or more; reproduced: ()
    scores: dict[str, float] | None  # reported only: TASKS (any may be missing) + optional "overall"
    export: str | None  # reproduced only: path of the export file, relative to the folder
    # The suite judged on (`harness.submissions.suites`): "geneval" unless the manifest says `suite = "geneval2"`
    # (a reported entry's scores are then GenEval 2's: "overall" = Soft-TIFA GM, "atoms=3".."atoms=10").
    suite: str = "geneval"


@dataclass(frozen=True)
class ImageRecord:
    """One candidate of a reproduced entry, as its export line holds it."""

    prompt_index: int
    tag: str
    prompt: str
    sample_index: int
    sha256: str  # of the PNG file's bytes
    image: str | None  # relative path inside the folder (png or thumbnail), or None when not shipped
    correct: bool  # the suite's verdict (GenEval's; GenEval 2: TIFA = 1, every question answered right)
    reason: str  # the suite's reason string ("" when correct)
    detections: dict[str, list[dict[str, Any]]]  # GenEval: class -> [{"box": [x1, y1, x2, y2], "score": ...}]
    scores: dict[str, float]  # verifier -> score
    # verifier -> per-step scores (step previews), for the verifiers that have them (optional in exports)
    step_scores: dict[str, tuple[float, ...]] = field(default_factory=dict)
    # Suites other than GenEval: the per-image figure (GenEval 2: Soft-TIFA GM) and the answers it was
    # made of (GenEval 2: "soft_scores" and "tifa_scores", one per question). GenEval: None and {} (its
    # figure is `correct`, its evidence the detections).
    score: float | None = None
    answers: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> float:
        """What best-of-n takes the expectation of: the suite's per-image score, GenEval's 0/1 verdict."""
        return float(self.correct) if self.score is None else self.score


@dataclass(frozen=True)
class TrainingRecord:
    """How a prepared checkpoint was trained: the parts of its stepwise-alignment.json an entry shows."""

    data_sha256: str  # of the DPO pairs file (iterative DPO: the last round's)
    pairs: int | None  # pairs in it, when recorded
    reward_prompts_sha256: str | None  # of the reward-guidance prompts file, when one was given
    parameters: dict[str, Any]  # the trainer's parameters: JSON scalars, and flat objects of strings
    parent: dict[str, Any]  # the model trained from: "model" (and e.g. "vq_model"), "<key>_files": {file: sha256}
    steps_done: int
    steps_total: int
    finished: bool


@dataclass(frozen=True)
class PreparedCheckpoint:
    """The generator checkpoint a reproduced run generated with: the export header's `preparation`,
    from the store's link between the run and the strategy prepare stage that trained it."""

    strategy: str  # the strategy that trained it: "dpo", "iterative-dpo", ...
    settings_hash: str  # sha256 of the strategy's canonical params
    checkpoint: str  # the folder the run's generator loaded, as recorded
    checkpoint_sha256: str  # harness.preparation.checkpoint_sha256: its config.json and weight files
    training: TrainingRecord

    @property
    def reward_verifier(self) -> str | None:
        """The verifier that guided training (reward guidance), or None."""
        value = self.training.parameters.get("reward_verifier")
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class CurvePoint:
    """One n of a best-of-n curve (exact expected accuracy), with its 95% bootstrap interval."""

    n: int
    overall: float
    low: float
    high: float
    tasks: dict[str, float]
    seconds: float | None  # expected seconds per selection, when the export knows costs


@dataclass(frozen=True)
class Verification:
    """What was checked of a reproduced entry before the site showed its numbers (`level`):

    - "rechecked": the model-free consistency checks passed (`harness.submissions.consistency`),
      and a random sample of its images was re-judged by the recorded evaluator and re-scored by
      every recorded verifier (`harness.submissions.verify`), all agreeing;
    - "consistent": the consistency checks passed, but some part could not be re-checked (a model
      not found here, a verifier that scores step previews, no images shipped, `--recheck none`):
      `missing` says what and why. Shown apart from the ranked table, labelled as such.

    An entry that fails a check is refused: it never gets a Verification.
    """

    level: Literal["rechecked", "consistent"]
    checks: tuple[str, ...]  # the consistency checks it passed, by name
    unranged: tuple[str, ...] = ()  # verifiers whose scores' range could not be checked (none declared here)
    images: tuple[int, int] = (0, 0)  # images re-judged by the evaluator, of the export's candidates
    scores: dict[str, tuple[int, int]] = field(default_factory=dict)  # verifier -> candidates re-scored, of all
    missing: tuple[str, ...] = ()  # what could not be re-checked, one reason each
    seed: int | None = None  # the re-check's sample seed (`--recheck-seed` repeats the draw)
    tolerance: float | None = None  # largest accepted |re-scored - stored| verifier score


@dataclass(frozen=True)
class SearchPickRecord:
    """What a search export says about one pick besides its image and verdict (`ImageRecord`)."""

    prompt_index: int
    sample_index: int
    ledger: dict[str, Any]  # the compute the harness counted (harness.search.ledger.Ledger JSON)
    trace_sha256: str  # sha256 of the pick's trace events (canonical JSON), in the traces file
    prompt_used: str | None  # the rewritten prompt the image came from, or None (the original)
    details: dict[str, Any]  # what the strategy returned with it


@dataclass(frozen=True)
class SearchInfo:
    """A reproduced entry made by a search strategy (`stepwise run --strategy NAME --budget B`)."""

    strategy: str
    package: str
    version: str
    params: dict[str, Any]
    settings_hash: str
    budget: int  # B: at most best-of-B's generator compute per sample
    samples: int  # picks per prompt
    total_steps: int  # the generator's steps per image (a best-of-n selection costs n x total_steps NFE)
    verifiers: dict[str, str]  # name -> settings hash
    reads_metadata: tuple[str, ...]  # plug-ins that declared reading the suite's metadata
    prompt_rewriting: bool  # some pick came from a rewritten prompt
    nfe: float  # mean generator candidate-steps per pick
    seconds: float  # mean seconds per pick (the whole search)
    generator_seconds: float
    verifier_seconds: float
    generator: dict[str, Any]  # the export header's generator (name, package, version, params)
    picks: tuple[SearchPickRecord, ...]  # in (prompt, sample) order
    traces: str  # the traces file, relative to the folder
    previews: dict[str, str]  # sha256 -> shipped image path, for images the traces name (previews seen)


@dataclass(frozen=True)
class Entry:
    """What the site renders for one submission folder."""

    slug: str
    folder: Path
    manifest: Manifest
    # TASKS + "overall". Reported: as typed, overall = mean of the six when not given (absent
    # when neither is available, e.g. a row with only some tasks). Reproduced: recomputed.
    scores: dict[str, float]
    intervals: dict[str, tuple[float, float]] | None  # reproduced: 95% bootstrap, TASKS + "overall"
    images: tuple[ImageRecord, ...]  # reproduced only (else ())
    curves: dict[str, tuple[CurvePoint, ...]]  # reproduced: per verifier, "random", "oracle"; n = 1..N
    # Reproduced: per prompt index, the *expected* correctness (0..1) of the candidate the
    # system's strategy selects at n = system.n (exact, ties shared; 0 or 1 unless ties or
    # N > n make the choice random). Reported: None.
    prompt_correct: dict[int, float] | None
    # Reproduced: the checkpoint the run generated with when a strategy prepared it (the export
    # header's `preparation`); None otherwise.
    preparation: PreparedCheckpoint | None = None
    # Reproduced: what was checked before its numbers are shown (None: reported, or never checked).
    verification: Verification | None = None
    # Reproduced: the export's header (run, evaluator and verifier settings), for the re-check; else None.
    header: Any = None
    # Reproduced by a search strategy: its settings, compute and picks (`images` are the picks); None otherwise.
    search: SearchInfo | None = None
    # The suite the entry was judged on (`harness.submissions.suites`): GenEval unless its export says otherwise.
    suite: str = "geneval"


@dataclass(frozen=True)
class ValidationProblem:
    """One reason a submission folder is rejected."""

    folder: Path
    file: str  # the file inside the folder at fault, e.g. "submission.toml" or "export.jsonl"
    message: str

    def __str__(self) -> str:
        return f"{self.folder / self.file}: {self.message}"
