"""The results store: generated candidates, their verdicts and verifier scores, and results.

    from sqlalchemy.orm import Session
    from harness.store import open_store, get_or_create_suite, add_prompts, ...

    engine = open_store(url)                # make_engine + migrate to the current schema
    with Session(engine) as s, s.begin():   # the caller owns the transaction
        suite = get_or_create_suite(s, "geneval", suite_hash)
        ...

- `engine.py`: `make_engine(url)`; URL from the argument, $STEPWISE_DB, or
  `sqlite:///stepwise.db`. SQLite gets WAL, foreign keys, a busy timeout and BEGIN IMMEDIATE;
  PostgreSQL (`postgresql://...`, psycopg 3) is used as is.
- `models.py`: the tables (typed SQLAlchemy 2.0 models).
- `migrations.py`: the schema version and the ordered migration steps; `upgrade(engine)`.
- `data.py`: idempotent writes and the reads a runner and `stepwise curve` need, and the link
  from a run to the checkpoint a strategy's prepare stage made (`add_preparation`).
- the search tables' data functions live with searches, in `harness.search.store`.
"""

from __future__ import annotations

from harness.store.data import (
    NewCandidate,
    NewEvaluation,
    NewPreparation,
    NewPrompt,
    NewScore,
    PreparationConflict,
    RunSpec,
    add_candidates,
    add_evaluations,
    add_preparation,
    add_prompts,
    add_result,
    add_verifier_scores,
    check_preparation,
    get_or_create_run,
    get_or_create_suite,
    missing_evaluations,
    missing_scores,
    pool_arrays,
    run_preparations,
    stored_samples,
)
from harness.store.engine import StoreError, make_engine, mask_url, resolve_url
from harness.store.migrations import SCHEMA_VERSION, StoreVersionError, upgrade
from harness.store.models import (
    Base,
    Candidate,
    Evaluation,
    Preparation,
    Prompt,
    Result,
    Run,
    SchemaVersion,
    Search,
    SearchEvaluation,
    SearchPick,
    SearchTrace,
    Suite,
    VerifierScore,
)
from harness.store.opening import open_store
from harness.store.types import canonical_json, content_hash

__all__ = [
    "SCHEMA_VERSION",
    "Base",
    "Candidate",
    "Evaluation",
    "NewCandidate",
    "NewEvaluation",
    "NewPreparation",
    "NewPrompt",
    "NewScore",
    "Preparation",
    "PreparationConflict",
    "Prompt",
    "Result",
    "Run",
    "RunSpec",
    "SchemaVersion",
    "Search",
    "SearchEvaluation",
    "SearchPick",
    "SearchTrace",
    "StoreError",
    "StoreVersionError",
    "Suite",
    "VerifierScore",
    "add_candidates",
    "add_evaluations",
    "add_preparation",
    "add_prompts",
    "add_result",
    "add_verifier_scores",
    "canonical_json",
    "check_preparation",
    "content_hash",
    "get_or_create_run",
    "get_or_create_suite",
    "make_engine",
    "mask_url",
    "missing_evaluations",
    "missing_scores",
    "open_store",
    "pool_arrays",
    "resolve_url",
    "run_preparations",
    "stored_samples",
    "upgrade",
]
