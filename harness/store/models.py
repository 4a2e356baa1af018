"""The results store's tables, as typed SQLAlchemy 2.0 models.

    suites ─< prompts ─< candidates >─ runs >─ suites
                          │
                          ├─< evaluations      (one per evaluator backend + settings hash)
                          └─< verifier_scores  (one per verifier + settings hash)
    runs ─< results                            (a strategy x verifier x n, computed from the above)
    runs ─< preparations                       (the checkpoint a strategy's prepare stage trained
                                                and the run generated with: `stepwise run --strategy`)
    runs ─ run_folders                         (where the run's images folder is: image paths are
                                                relative to it)
    runs ─< searches ─< search_picks ─┬─ search_traces       (a search strategy's picks, one per
                                      └─< search_evaluations  GenEval sample, with their ledgers,
                                                              traces and verdicts: `harness.search`)

Expensive work is stored once per candidate: a candidate is one generated image of one
prompt in one run; its GenEval verdict and its verifier scores are keyed by what produced
them (backend or verifier name, plus a hash of their settings), so adding a verifier or
changing a threshold adds rows and reuses everything else.

Deleting a run deletes its candidates, their evaluations and scores, its results, its
preparations and its searches with their picks (ON DELETE CASCADE). A suite or prompt that a
run still uses cannot be deleted (RESTRICT).

Changing a model here needs a migration in `harness.store.migrations` (the test
`test_store_migrations.py::test_migrations_build_the_models` compares the two).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, ForeignKey, Index, MetaData, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from harness.store.types import NAMING_CONVENTION, JSONType, UTCDateTime, utcnow

__all__ = ["Base", "Candidate", "Evaluation", "Preparation", "Prompt", "Result", "Run", "RunFolder", "SchemaVersion",
           "Search", "SearchEvaluation", "SearchPick", "SearchTrace", "Suite", "VerifierScore"]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSONType,
        dict[str, float]: JSONType,
        list[str]: JSONType,
        list[float]: JSONType,
        datetime: UTCDateTime,
    }


class SchemaVersion(Base):
    """One row: the migration the store is at (see `harness.store.migrations`)."""

    __tablename__ = "schema_version"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    version: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Suite(Base):
    """A prompt suite, e.g. GenEval's 553 prompts. `hash` names its exact contents."""

    __tablename__ = "suites"
    __table_args__ = (UniqueConstraint("name", "hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    hash: Mapped[str]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    prompts: Mapped[list[Prompt]] = relationship(
        back_populates="suite", order_by="Prompt.index", passive_deletes=True, cascade="all, delete-orphan"
    )


class Prompt(Base):
    """One prompt of a suite: its position, GenEval task tag, text and evaluation metadata."""

    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("suite_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    suite_id: Mapped[int] = mapped_column(ForeignKey("suites.id", ondelete="CASCADE"))
    index: Mapped[int]  # 0-based position in the suite; GenEval's folder name is f"{index:05d}"
    tag: Mapped[str]
    text: Mapped[str]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata")  # GenEval's evaluation_metadata line

    suite: Mapped[Suite] = relationship(back_populates="prompts")


class Run(Base):
    """One generator configuration over one suite. `id` = sha256 of the canonical run spec.

    The spec (`spec`) holds what decides the images: suite, generator name/package/version,
    parameters and seed. The pool size and the verifiers are not part of it, so raising N
    or adding a verifier later extends the same run.
    """

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(primary_key=True)
    suite_id: Mapped[int] = mapped_column(ForeignKey("suites.id", ondelete="RESTRICT"), index=True)
    generator: Mapped[str]
    generator_package: Mapped[str]
    generator_version: Mapped[str]
    params: Mapped[dict[str, Any]]
    seed: Mapped[int] = mapped_column(BigInteger)
    code_version: Mapped[str]  # of the harness that created the run (not part of the id)
    spec: Mapped[dict[str, Any]]  # the canonical spec that `id` hashes
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    suite: Mapped[Suite] = relationship()


class RunFolder(Base):
    """Where a run's folder (`stepwise run --out`: images/<sha256>.png) was when last written or migrated.

    path: absolute. store_relative: the same folder relative to the folder of the SQLite store file
    (None for a server store, or when unknown), so a store copied together with its run folder (a
    cluster's project folder to a laptop) finds it where it now is (`harness.store.folders`).
    """

    __tablename__ = "run_folders"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str]
    store_relative: Mapped[str | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Candidate(Base):
    """One generated image: run x prompt x sample index.

    image_path: relative to the run folder ("images/<sha256>.png", the runner's layout; schema 4
        made older absolute paths relative), named by content hash; `harness.store.folders`
        resolves it against where the run folder is now.
    step_previews: paths of intermediate previews (reasoning steps), in step order, relative likewise.
    cost: generation cost, e.g. {"forward_passes": 50, "tokens": 0, "seconds": 1.9}.
    seed: the seed this sample was drawn with, when the generator takes one.
    """

    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("run_id", "prompt_id", "sample_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="RESTRICT"), index=True)
    sample_index: Mapped[int]
    image_path: Mapped[str]
    image_sha256: Mapped[str]
    step_previews: Mapped[list[str]]
    cost: Mapped[dict[str, Any]]
    seed: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship()
    prompt: Mapped[Prompt] = relationship()


class Evaluation(Base):
    """A suite evaluator's verdict on a candidate, by one evaluator with one settings hash.

    backend: the evaluator's name (`harness.suites.SuiteEvaluator.name`): GenEval's detector backend
        ("mmdet", "hf"), or another suite's evaluator ("soft-tifa").
    settings_hash: the evaluator's `key()` (settings + model files; GenEval: `EvaluatorSpec.key()`).
    correct: the suite's pass/fail. score: its per-image figure, what best-of-n curves take the
        expectation of (GenEval: 1.0 or 0.0, as `correct`; GenEval 2: Soft-TIFA GM); always written
        (migration 6 filled older rows from `correct`).
    details: the rest of the result record (e.g. per-clause outcomes, colours).
    detections: the raw detections the verdict was judged from (for re-scoring without a model).
    """

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("candidate_id", "backend", "settings_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    backend: Mapped[str]
    settings_hash: Mapped[str]
    correct: Mapped[bool]
    reason: Mapped[str]  # "" when correct
    details: Mapped[dict[str, Any]]
    detections: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Last: migration 6 appended it. The suite's per-image figure (GenEval: 1.0 when correct, else 0.0).
    score: Mapped[float | None]

    candidate: Mapped[Candidate] = relationship()


class VerifierScore(Base):
    """A verifier's score of a candidate (higher is better) with one settings hash.

    step_scores: per reasoning step, when the verifier scores intermediate steps (PARM).
    cost: e.g. {"forward_passes": 1, "seconds": 0.04}.
    details: what the score was made of, as the plug-in reported it (`plugins.VerifierScore.details`),
        e.g. a VLM's answer probabilities or CLIPScore's raw cosine; {} for rows older than schema 2.
    """

    __tablename__ = "verifier_scores"
    __table_args__ = (UniqueConstraint("candidate_id", "verifier", "settings_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    candidate_id: Mapped[int] = mapped_column(ForeignKey("candidates.id", ondelete="CASCADE"))
    verifier: Mapped[str]
    settings_hash: Mapped[str]
    score: Mapped[float]
    step_scores: Mapped[list[float]]
    cost: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Last: migration 2 appended it, and the migrated and declared column orders must agree.
    details: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")

    candidate: Mapped[Candidate] = relationship()


class Result(Base):
    """A computed score: best-of-n with a verifier (or a strategy) over a run's pool.

    scores: per GenEval task, in task order; overall: their mean; low/high: its interval.
    evaluator / evaluator_settings_hash and verifier_settings_hash say which stored verdicts
    and scores it was computed from; details holds the rest (intervals per task, bootstrap
    size and seed, compute per selection).
    """

    __tablename__ = "results"
    __table_args__ = (Index(None, "run_id", "strategy", "verifier", "n"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    strategy: Mapped[str]
    verifier: Mapped[str]
    n: Mapped[int]
    scores: Mapped[dict[str, float]]
    overall: Mapped[float]
    low: Mapped[float]
    high: Mapped[float]
    evaluator: Mapped[str]
    evaluator_settings_hash: Mapped[str]
    verifier_settings_hash: Mapped[str | None]
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Preparation(Base):
    """A run's generator checkpoint and the strategy prepare stage that made it (`harness.preparation`).

    strategy / settings_hash / params: the strategy plug-in (`dpo`, `iterative-dpo`, ...), the sha256
        of its canonical params and those params; one run may have several (settings that differ only
        in selection share a checkpoint, and so the run).
    checkpoint: the folder the run's generator loaded (its `model` param), as given.
    checkpoint_sha256: `harness.preparation.checkpoint_sha256`: the content of its config.json and
        weight files. A later run on the same path with other weights is refused.
    manifest: the checkpoint's stepwise-alignment.json (data sha256, parameters, parent hashes, metrics).
    """

    __tablename__ = "preparations"
    __table_args__ = (UniqueConstraint("run_id", "strategy", "settings_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str]
    settings_hash: Mapped[str]
    params: Mapped[dict[str, Any]]
    checkpoint: Mapped[str]
    checkpoint_sha256: Mapped[str]
    manifest: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship()


class Search(Base):
    """A search strategy's settings on a run, at one budget (`harness.search`; `stepwise run --strategy NAME
    --budget B`). The run is the generator configuration, shared with pool runs of it.

    strategy / strategy_package / strategy_version / params: the plug-in and its canonical params.
    verifiers: {name: settings hash} of the verifiers it was given.
    settings_hash: sha256 of all of that and `samples` (`harness.search.store.SearchSpec`); with the
        budget it names the search. budget: B, at most best-of-B's generator compute per sample.
    samples: GenEval samples per prompt (picks per prompt). total_steps: the generator's steps per image.
    reads_metadata: the plug-ins ("strategy:NAME", "verifier:NAME", "generator:NAME") that declared
        `reads_metadata` and were handed the suite's structured records.
    """

    __tablename__ = "searches"
    __table_args__ = (UniqueConstraint("run_id", "settings_hash", "budget"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    strategy: Mapped[str]
    strategy_package: Mapped[str]
    strategy_version: Mapped[str]
    params: Mapped[dict[str, Any]]
    verifiers: Mapped[dict[str, Any]]
    settings_hash: Mapped[str]
    budget: Mapped[int]
    samples: Mapped[int]
    total_steps: Mapped[int]
    reads_metadata: Mapped[list[str]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    run: Mapped[Run] = relationship()


class SearchPick(Base):
    """The image a search made for one GenEval sample of a prompt, and what it cost.

    image_path / image_sha256: the picked image, saved as the runner saves candidates.
    prompt_text: the prompt the image was generated from when the strategy rewrote it (else None).
    ledger: the compute the harness counted (`harness.search.ledger.Ledger.to_json`).
    details: what the strategy returned with the pick (JSON).
    """

    __tablename__ = "search_picks"
    __table_args__ = (UniqueConstraint("search_id", "prompt_id", "sample_index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("searches.id", ondelete="CASCADE"))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id", ondelete="RESTRICT"), index=True)
    sample_index: Mapped[int]
    image_path: Mapped[str]
    image_sha256: Mapped[str]
    prompt_text: Mapped[str | None]
    ledger: Mapped[dict[str, Any]]
    details: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    search: Mapped[Search] = relationship()
    prompt: Mapped[Prompt] = relationship()


class SearchTrace(Base):
    """A pick's trace: the JSON events of its search (`harness.search.ledger`), and their sha256."""

    __tablename__ = "search_traces"

    id: Mapped[int] = mapped_column(primary_key=True)
    pick_id: Mapped[int] = mapped_column(ForeignKey("search_picks.id", ondelete="CASCADE"), unique=True)
    sha256: Mapped[str]
    events: Mapped[list[Any]] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SearchEvaluation(Base):
    """GenEval's verdict on a pick, by one evaluator backend and settings hash (as `Evaluation`)."""

    __tablename__ = "search_evaluations"
    __table_args__ = (UniqueConstraint("pick_id", "backend", "settings_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    pick_id: Mapped[int] = mapped_column(ForeignKey("search_picks.id", ondelete="CASCADE"))
    backend: Mapped[str]
    settings_hash: Mapped[str]
    correct: Mapped[bool]
    reason: Mapped[str]
    details: Mapped[dict[str, Any]]
    detections: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    score: Mapped[float | None]  # as `Evaluation.score` (migration 6)
