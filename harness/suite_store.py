"""Which suite a stored run was made on, and which of its stored verdicts a reader (curve, analyze) takes.

A run's suite is in the store (`runs.suite_id` -> `suites.name`: a suite plug-in's name, or the
path of a GenEval-format metadata .jsonl). Its verdicts are filed under an evaluator name and key
(`evaluations.backend`, `.settings_hash`). A reader finds them so:

* a suite whose evaluator is GenEval's (`geneval_evaluator = True`: `geneval`, and a metadata
  .jsonl) takes the GenEval flags, as before: `--backend`, `--detector`, the thresholds make the key;
* any other suite, with `--suite-param` values: the suite plug-in is built with them and its
  evaluator's `key()` names the verdicts (give the params the run used: for geneval2 at least the
  model, e.g. `model=/models/Qwen3-VL-8B-Instruct`; `data` is not needed to read);
* any other suite without them: the run's verdicts, when they are all by one evaluator and key
  (the usual case); several are an error that lists them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass(frozen=True)
class StoredSuite:
    """A run's suite as a reader needs it: the plug-in, and the verdicts to read."""

    name: str  # the plug-in's name ("geneval" for a metadata .jsonl)
    stored_name: str  # as the store has it
    backend: str  # the evaluator's name
    key: str  # its settings hash
    overall: str  # the headline figure's name
    overall_mean: str  # "groups" or "prompts"
    geneval_spec: Any = None  # the EvaluatorSpec when the suite is judged by GenEval's evaluator

    @property
    def is_geneval_judged(self) -> bool:
        return self.geneval_spec is not None


def plugin_name(stored_name: str) -> str:
    """The suite plug-in of a stored suite name (a metadata .jsonl is a GenEval-format suite)."""
    return "geneval" if stored_name.endswith(".jsonl") else stored_name


def suite_class(name: str) -> Any:
    """The plug-in of a stored suite name. A name no installed plug-in has (a store written by a script,
    or before suites were plug-ins, when every suite was GenEval-format) is read as GenEval's."""
    from harness import registry

    try:
        return registry.suites.get(plugin_name(name))
    except registry.PluginError:
        if plugin_name(name) in registry.suites.names():
            raise  # installed but broken: say so
        return registry.suites.get("geneval")


def uses_geneval_evaluator(cls: Any) -> bool:
    """Whether a suite class is judged by GenEval's evaluator, configured by the GenEval flags."""
    return getattr(cls, "geneval_evaluator", False) is True


def run_suite_name(s: Session, run_id: str) -> str:
    from harness.store.models import Run

    run = s.get(Run, run_id)
    if run is None:
        raise ValueError(f"no run {run_id!r} in the store (`stepwise run` prints the id)")
    return run.suite.name


def stored_evaluators(s: Session, run_id: str) -> list[tuple[str, str, int]]:
    """(evaluator name, key, verdicts) of a run's stored verdicts (its pool's and its searches' picks'),
    most verdicts first."""
    from collections import Counter

    from sqlalchemy import func, select

    from harness.store.models import Candidate, Evaluation, Search, SearchEvaluation, SearchPick

    counts: Counter[tuple[str, str]] = Counter()
    pool = (select(Evaluation.backend, Evaluation.settings_hash, func.count())
            .join(Candidate, Evaluation.candidate_id == Candidate.id).where(Candidate.run_id == run_id)
            .group_by(Evaluation.backend, Evaluation.settings_hash))
    picks = (select(SearchEvaluation.backend, SearchEvaluation.settings_hash, func.count())
             .join(SearchPick, SearchEvaluation.pick_id == SearchPick.id)
             .join(Search, SearchPick.search_id == Search.id).where(Search.run_id == run_id)
             .group_by(SearchEvaluation.backend, SearchEvaluation.settings_hash))
    for query in (pool, picks):
        for b, k, n in s.execute(query).all():
            counts[(str(b), str(k))] += int(n)
    return sorted(((b, k, n) for (b, k), n in counts.items()), key=lambda r: (-r[2], r[0], r[1]))


def resolve(s: Session, run_id: str, *, geneval_spec: Callable[[], Any], suite_params: Mapping[str, Any],
            device: str | None = None) -> StoredSuite:
    """The run's suite and the verdicts to read (see the module docstring); ValueError saying what to give.

    geneval_spec: builds the EvaluatorSpec of the GenEval flags (called only for a GenEval-judged suite,
    so that another suite's reader needs no --detector).
    """
    from harness.plugins import ParamsError, parse_params
    from harness.suites import EvaluatorContext, overall_mean_of

    stored = run_suite_name(s, run_id)
    name = plugin_name(stored)
    cls = suite_class(stored)
    overall, mean = str(getattr(cls, "overall", "overall")), overall_mean_of(cls)
    if uses_geneval_evaluator(cls):
        if suite_params:
            raise ValueError(f"run {run_id[:12]}… is on suite {stored!r}, judged by GenEval's evaluator: give its "
                             "settings with the evaluator flags (--backend, --detector, ...), not --suite-param")
        spec = geneval_spec()
        return StoredSuite(name, stored, spec.backend, spec.key(), overall, mean, spec)
    if suite_params:
        values = dict(suite_params)
        params_cls = cls.Params
        fields = getattr(params_cls, "__dataclass_fields__", {})
        if "data" in fields and "data" not in values:
            values["data"] = ""  # reading verdicts needs no prompts: the store has them
        try:
            params = parse_params(params_cls, values, owner=f"suite {name!r}")
        except ParamsError as err:
            raise ValueError(str(err)) from None
        evaluator = cls(params).evaluator(EvaluatorContext(device=device))
        return StoredSuite(name, stored, evaluator.name, evaluator.key(), overall, mean)
    found = stored_evaluators(s, run_id)
    if not found:
        raise ValueError(f"run {run_id[:12]}… (suite {stored!r}) has no verdicts yet")
    if len(found) > 1:
        listed = ", ".join(f"{b} {k[:12]}… ({n} verdicts)" for b, k, n in found)
        raise ValueError(f"run {run_id[:12]}… (suite {stored!r}) has verdicts by several evaluator settings: "
                         f"{listed}; give the --suite-param values the run used (e.g. model=...)")
    backend, key, _ = found[0]
    return StoredSuite(name, stored, backend, key, overall, mean)
