"""Best-of-n scaling curves of a pool: selection rows, exact curves with intervals, compute, comparisons.

The library behind `stepwise curve` (and `harness.api.curves`). Every row is a selection key per
candidate: a verifier's score (best-of-n by that verifier), a strategy's `select_key` over the stored
scores of the verifiers it reads (`strategies.keys`), or a reference point (`random`, `oracle`). All rows
go through the same exact computation (`harness.scaling`) and, for a store run, into the run's
`results` table. Searches of a run (`stepwise run --strategy SEARCH --budget B`) and adaptive-n's exact
rows come alongside.

Errors are `CurveError` (a problem with the data: one line naming it) and `CurveUsageError` (the
request does not fit the pool: which flag, when `param_hint` says).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

T = TypeVar("T")


class CurveError(Exception):
    """The pool, the store or a file cannot give what was asked (one line, naming it)."""


class CurveUsageError(CurveError):
    """The request does not fit: a row that is not in the pool, an n larger than a prompt's pool, ..."""

    def __init__(self, message: str, *, param_hint: str | None = None) -> None:
        super().__init__(message)
        self.param_hint = param_hint


def read_store(db: str | None, read: Callable[[Session], T], errors: tuple[type[Exception], ...] = ()) -> T:
    """`read(session)` on the store at `db`, never upgrading its schema (a reader must not migrate
    someone's store); a StoreError or one of `errors` becomes a CurveError with its message."""
    from sqlalchemy.orm import Session

    from harness.store import StoreError, open_store

    try:
        engine = open_store(db, upgrade_schema=False)
    except StoreError as err:
        raise CurveError(str(err)) from None
    try:
        with Session(engine) as s:
            return read(s)
    except (StoreError, *errors) as err:
        raise CurveError(str(err)) from None
    finally:
        engine.dispose()


class StorePool(NamedTuple):
    pool: Any
    db: str | None
    run_id: str
    backend: str
    evaluator_settings_hash: str
    verifier_settings_hashes: dict[str, str]
    prompt_scores: list[dict[str, list[Any]]]  # per prompt, {verifier: VerifierScores} (strategies.keys)
    overall: str = "overall"  # the suite's headline figure (GenEval 2: soft_tifa_gm)
    overall_mean: str = "groups"  # how it averages: over groups (GenEval's tasks) or over prompts


# Rows that are not "best of n by a verifier": their strategy, and what plays the verifier.
REFERENCE_ROWS = {"random": ("random", "none"), "oracle": ("oracle", "geneval")}


class LoadedStrategy(NamedTuple):
    name: str  # canonical registry name
    instance: Any  # the built plug-in (no model: strategies read stored scores)
    verifiers: tuple[str, ...]  # the verifiers its select_key reads
    about: dict[str, Any]  # recorded with its results: provenance and canonical params


class Row(NamedTuple):
    """One curve: a selection key per candidate, and what the results table records it as."""

    key: Any  # (P, m) floats, higher is better
    strategy: str
    verifier: str  # what plays the verifier: a name, names joined by "+", "none" or "geneval"
    scored_by: tuple[str, ...]  # verifiers whose seconds count in its compute
    settings_hash: str | None  # of the scores it reads
    about: dict[str, Any]  # more to record in the result's details


def run_links(run_id: str, db: str | None) -> list[dict[str, Any]]:
    """The run's recorded preparations (`harness.preparation`), as plain dicts; [] for an unknown run."""
    from harness.store import run_preparations

    return read_store(db, lambda s: [
        {"run_id": x.run_id, "strategy": x.strategy, "settings_hash": x.settings_hash, "params": dict(x.params),
         "checkpoint": x.checkpoint, "checkpoint_sha256": x.checkpoint_sha256} for x in run_preparations(s, run_id)])


def describe_link(link: dict[str, Any]) -> str:
    from harness.preparation import describe

    return describe(link["strategy"], link["settings_hash"], link["checkpoint"], link["checkpoint_sha256"])


def recorded_params(cls: Any, name: str, given: dict[str, str], links: list[dict[str, Any]]) -> dict[str, Any]:
    """A strategy's params for a run it prepared: the recorded ones (the one setting that agrees with the
    given values, or the only one), with the given values on top; the given values alone otherwise."""
    from harness.plugins import ParamsError, parse_params

    rows = [x for x in links if x["strategy"] == name]
    if not rows:
        return given

    def agrees(recorded: dict[str, Any]) -> bool:
        try:
            return bool(parse_params(cls.Params, {**recorded, **given}) == parse_params(cls.Params, recorded))
        except ParamsError:
            return False

    pick = [x for x in rows if agrees(x["params"])] or rows
    if len(pick) > 1:
        differ = sorted({k for x in pick for k in x["params"] if x["params"][k] != pick[0]["params"].get(k)})
        raise CurveUsageError(f"run {pick[0]['run_id'][:12]}… was prepared by strategy {name!r} with {len(pick)} "
                               f"settings (they differ in {', '.join(differ)}); choose one with "
                               f"--strategy-param {name}:KEY=VALUE")
    return {**pick[0]["params"], **given}


def load_strategies(names: tuple[str, ...], params: dict[str, dict[str, str]],
                    plugins: tuple[str, ...], links: list[dict[str, Any]] | None = None) -> list[LoadedStrategy]:
    """Build each strategy with its params ({name: {key: value}}, checked against its Params); for a
    strategy that prepared the run (`links`), its recorded params fill in what is not given."""
    from harness import registry
    from harness.plugins import ParamsError, canonical_json, parse_params

    unknown = sorted(set(params) - set(names))
    if unknown:
        raise CurveUsageError(f"--strategy-param for {', '.join(unknown)}, which is not a --strategy")
    if len(set(names)) != len(names):
        raise CurveUsageError(f"a strategy is named twice: {', '.join(names)}")
    out = []
    try:
        with registry.configured(plugins) if plugins else contextlib.nullcontext():
            for name in names:
                cls = registry.strategies.get(name)
                info = registry.strategies.info(name)
                if not callable(getattr(cls, "select_key", None)):
                    raise CurveUsageError(
                        f"strategy {info.name!r} is a search strategy (no select_key): it makes its own images, with "
                        f"`stepwise run --strategy {info.name} --budget B`, and `stepwise curve --run RUN` shows its "
                        "searches next to the pool's rows")
                values = recorded_params(cls, info.name, params.get(name, {}), links or [])
                parsed = parse_params(cls.Params, values, owner=f"strategy {info.name!r}")
                instance = cls(parsed)
                verifiers = tuple(instance.verifiers)
                if not all(isinstance(v, str) and v for v in verifiers):
                    raise CurveError(f"strategy {info.name!r}: verifiers must be names, got {verifiers!r}")
                about = {"strategy": {**info.provenance(), "params": json.loads(canonical_json(parsed))}}
                out.append(LoadedStrategy(info.name, instance, verifiers, about))
    except ParamsError as err:
        raise CurveUsageError(str(err)) from None
    except (registry.PluginError, ValueError) as err:
        raise CurveError(str(err)) from None
    return out


def selection_rows(pool: Any, verifiers: list[str], strategies: list[LoadedStrategy],
                   prompt_scores: list[dict[str, list[Any]]], hashes: dict[str, str]) -> dict[str, Row]:
    """The table's rows by label: the verifiers, the strategies, then `random` and `oracle` unless taken."""
    import numpy as np

    from harness.store import content_hash
    from strategies.keys import strategy_keys

    rows: dict[str, Row] = {}
    for name in verifiers:
        strategy, plays = REFERENCE_ROWS.get(name, ("best-of-n", name))
        scored_by = () if name in REFERENCE_ROWS else (name,)
        rows[name] = Row(pool.scores[name], strategy, plays, scored_by, hashes.get(name), {})
    for st in strategies:
        if st.name in rows:
            raise CurveUsageError(f"strategy {st.name!r} and verifier {st.name!r} would both be row {st.name!r}: "
                                   "compute them in separate calls")
        try:
            key = strategy_keys(st.name, st.instance, prompt_scores, pool)
        except ValueError as err:
            raise CurveError(str(err)) from None
        own = {v: hashes[v] for v in st.verifiers if v in hashes}  # none for a JSONL pool
        # One hash names the scores a row was computed from: the verifier's own for one verifier (so a
        # best-of-n strategy row matches the verifier's row), a hash of them all for several.
        settings_hash = None
        if len(own) == 1:
            settings_hash = next(iter(own.values()))
        elif own:
            settings_hash = content_hash(own)
        scored_by = tuple(v for v in st.verifiers if v not in REFERENCE_ROWS)
        rows[st.name] = Row(key, st.name, "+".join(st.verifiers) or "none", scored_by, settings_hash,
                            {**st.about, "verifier_settings_hashes": own})
    for name, key in (("random", np.zeros_like(pool.correct, dtype=float)), ("oracle", pool.outcomes.astype(float))):
        if name not in rows:
            rows[name] = Row(key, *REFERENCE_ROWS[name], (), None, {})
    return rows


def record_results(stored: StorePool, rows: dict[str, Row], table: dict[str, dict[int, dict[str, float]]],
                   intervals: dict[str, dict[int, tuple[float, float]]],
                   tag_intervals: dict[str, dict[int, dict[str, list[float]]]],
                   compute: dict[str, dict[int, float]] | None, n_boot: int, seed: int) -> str | None:
    """Store every computed row in the run's `results`, in one transaction (newest rows win). On a store
    this process cannot write, return a note saying so: the curves are computed and shown all the same."""
    from sqlalchemy.orm import Session

    from harness.store import StoreError, add_result, open_store
    from harness.store.engine import read_only_path

    try:
        engine = open_store(stored.db, upgrade_schema=False)
    except StoreError as err:
        raise CurveError(str(err)) from None
    if read_only_path(engine) is not None:
        note = f"note: could not record the results in the store: store is read-only: {read_only_path(engine)}"
        engine.dispose()
        return note
    try:
        with Session(engine) as s, s.begin():
            for label, by_n in table.items():
                selection = rows[label]
                for n, row in by_n.items():
                    details: dict[str, Any] = {**selection.about, "intervals": tag_intervals[label][n],
                                               "bootstrap": n_boot, "seed": seed, "level": 0.95}
                    if compute is not None:
                        details["seconds_per_prompt"] = compute[label][n]
                    add_result(s, stored.run_id, strategy=selection.strategy, verifier=selection.verifier, n=n,
                               scores={t: v for t, v in row.items() if t != "overall"}, overall=row["overall"],
                               low=intervals[label][n][0], high=intervals[label][n][1],
                               evaluator=stored.backend, evaluator_settings_hash=stored.evaluator_settings_hash,
                               verifier_settings_hash=selection.settings_hash, details=details)
    finally:
        engine.dispose()
    return None


class Comparison(NamedTuple):
    difference: float  # overall(A) - overall(B)
    low: float
    high: float
    p_value: float


def compare_strategies(key_a: Any, key_b: Any, pool: Any, ns: list[int], rng: Any,
                       n_boot: int, overall_mean: str = "groups") -> dict[int, Comparison]:
    """{n: overall(A) - overall(B), 95% paired bootstrap interval and two-sided p-value}.

    overall_mean: the suite's headline figure: "groups" (GenEval: the mean of task means, prompts
    resampled within tasks) or "prompts" (GenEval 2: the mean over prompts, one stratum)."""
    from harness.scaling import curve as scaling_curve
    from harness.scaling import paired_comparison

    per_a = scaling_curve(key_a, pool.outcomes, ns, valid=pool.valid)
    per_b = scaling_curve(key_b, pool.outcomes, ns, valid=pool.valid)
    strata = pool.tags if overall_mean == "groups" else ["all"] * len(pool.tags)
    out = {}
    for i, n in enumerate(ns):
        r = paired_comparison(per_a[i], per_b[i], strata, rng, n_boot=n_boot)
        out[n] = Comparison(r.difference, r.low, r.high, r.p_value)
    return out


def render_comparison(a: str, b: str, results: dict[int, Comparison]) -> str:
    header = f"{'n':>3}  {'difference':>10}  {'95% interval':<17}  {'p-value':>7}"
    lines = ["", f"{a} vs {b}: overall({a}) - overall({b}), paired bootstrap over prompts", header,
             "-" * len(header)]
    for n, r in results.items():
        lines.append(f"{n:>3}  {r.difference:>+10.4f}  [{r.low:+.4f}, {r.high:+.4f}]  {r.p_value:>7.4f}")
    return "\n".join(lines)


def _per_candidate(pool: Any, values: Any) -> float:
    """Mean of a (P, m) cost array over the pool's real candidates (padding excluded)."""
    return float(values[pool.valid].mean())


def compute_per_candidate(pool: Any, scored_by: dict[str, tuple[str, ...]]) -> dict[str, float] | None:
    """Seconds per candidate of each row: generator + the verifiers it reads (None without costs)."""
    if pool.generator_seconds is None:
        return None
    generator = _per_candidate(pool, pool.generator_seconds)
    verifier_seconds = pool.verifier_seconds or {}
    return {label: generator + sum(_per_candidate(pool, verifier_seconds[v]) for v in names if v in verifier_seconds)
            for label, names in scored_by.items()}


def compute_document(pool: Any, per_candidate: dict[str, float],
                     compute: dict[str, dict[int, float]]) -> dict[str, Any]:
    passes = pool.generator_forward_passes
    return {
        "generator_seconds_per_candidate": _per_candidate(pool, pool.generator_seconds),
        "generator_forward_passes_per_candidate": _per_candidate(pool, passes) if passes is not None else None,
        "verifier_seconds_per_candidate": {v: _per_candidate(pool, x)
                                           for v, x in (pool.verifier_seconds or {}).items()},
        "seconds_per_candidate": per_candidate,
        "seconds_per_prompt": {v: {str(n): s for n, s in rows.items()} for v, rows in compute.items()},
        "note": "seconds_per_prompt = n x seconds_per_candidate; random and oracle count the generator only "
                "(the oracle is the evaluator, not a real cost)",
    }


def write_json(path: Path, data: Any) -> None:
    from harness.jsonl import write_atomic

    try:
        write_atomic(path, json.dumps(data, indent=2) + "\n")
    except OSError as err:
        raise CurveError(f"{path}: cannot write ({err.strerror})") from None


def read_jsonl_pool(pool_path: Path) -> Any:
    from harness.pools import read_pool

    try:
        with open(pool_path, encoding="utf-8") as fp:
            return read_pool(fp, str(pool_path))
    except OSError as err:
        raise CurveError(f"{pool_path}: cannot read ({err.strerror})") from None
    except (ValueError, UnicodeDecodeError) as err:
        raise CurveError(str(err)) from None


def read_store_pool(db: str | None, run_id: str, backend: str, evaluator_key: str, verifier_keys: dict[str, str],
                    *, max_samples: int | None = None, strategy_verifiers: tuple[str, ...] = (),
                    overall: str = "overall", overall_mean: str = "groups") -> StorePool:
    """A run's pool from the store: verdicts filed under `evaluator_key`, scores under `verifier_keys`
    ({verifier: settings hash}, as `harness.runner.verifier_settings_hashes` gives them; those of
    `strategy_verifiers` also whole, with details, for strategies); with what names those settings, so
    that the computed results can be recorded against them."""
    from harness.store import pool_arrays
    from strategies.keys import store_scores

    def read(s: Session) -> StorePool:
        pool = pool_arrays(s, run_id, backend, evaluator_key, verifier_keys, max_samples=max_samples)
        prompt_scores = store_scores(s, run_id, pool, {v: verifier_keys[v] for v in strategy_verifiers},
                                     max_samples=max_samples)
        return StorePool(pool, db, run_id, backend, evaluator_key, verifier_keys, prompt_scores, overall,
                         overall_mean)

    return read_store(db, read, (ValueError,))


def render_table(table: dict[str, dict[int, dict[str, float]]],
                 intervals: dict[str, dict[int, tuple[float, float]]], n_prompts: int, n_candidates: int,
                 compute: dict[str, dict[int, float]] | None = None) -> str:
    first = next(iter(table.values()))
    tags = [t for t in next(iter(first.values())) if t != "overall"]
    header = (f"{'verifier':<14} {'n':>3}  {'overall':>7}  {'95% interval':<15}"
              + (f" {'s/prompt':>10}" if compute is not None else "")
              + "".join(f" {t[:13]:>13}" for t in tags))
    lines = [f"{n_prompts} prompts, {n_candidates} candidates", header, "-" * len(header)]
    for verifier, rows in table.items():
        for n, row in rows.items():
            low, high = intervals[verifier][n]
            lines.append(f"{verifier:<14} {n:>3}  {row['overall']:>7.4f}  [{low:.4f}, {high:.4f}]"
                         + (f" {compute[verifier][n]:>10.4g}" if compute is not None else "")
                         + "".join(f" {row[t]:>13.4f}" for t in tags))
    if compute is not None:
        lines.append("s/prompt: expected seconds per selection = n x (generator + verifier seconds per "
                     "candidate); random and oracle count the generator only (the oracle is not a real cost)")
    return "\n".join(lines)


def write_plot(path: Path, table: dict[str, dict[int, dict[str, float]]],
               intervals: dict[str, dict[int, tuple[float, float]]],
               compute: dict[str, dict[int, float]] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: write files only
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from harness.figures import save_figure

    # A log axis needs positive compute: a pool whose costs are all 0 gets the n panel only.
    if compute is not None and not all(s > 0 for rows in compute.values() for s in rows.values()):
        compute = None
    if compute is None:
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        axes = [ax]
    else:
        fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2), sharey=True)
    for verifier, rows in table.items():
        ns = list(rows)
        overall = [rows[n]["overall"] for n in ns]
        low = [intervals[verifier][n][0] for n in ns]
        high = [intervals[verifier][n][1] for n in ns]
        style = "--" if verifier in REFERENCE_ROWS else "-"
        xs_of = [ns] if compute is None else [ns, [compute[verifier][n] for n in ns]]
        for ax, xs in zip(axes, xs_of, strict=True):
            (line,) = ax.plot(xs, overall, style, marker="o", markersize=3, label=verifier)
            ax.fill_between(xs, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    axes[0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_xlabel("n (candidates per selection)")
    axes[0].set_ylabel("GenEval overall (mean over tasks)")
    if compute is not None:
        axes[1].set_xscale("log")
        axes[1].set_xlabel("compute per prompt (seconds; generator + verifier)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)  # atomically: an interrupted plot leaves no half file


# ---------------------------------------------------------------------------------------------
# searches and adaptive-n


class Searched(NamedTuple):
    rows: list[Any]  # harness.search.report.SearchRow
    has_pool: bool  # the run has pool candidates (best-of-n rows)
    db: str | None
    run_id: str
    backend: str
    evaluator_settings_hash: str


def read_searches(db: str | None, run_id: str, backend: str, evaluator_key: str, seed: int, n_boot: int, *,
                  overall_mean: str = "groups") -> Searched:
    """The run's search rows by these evaluator settings (the suite's `overall_mean`), and whether it has a pool."""
    from sqlalchemy import func, select

    from harness.search.report import search_rows
    from harness.store import Candidate

    def read(s: Session) -> Searched:
        count = int(s.scalar(select(func.count()).select_from(Candidate).where(Candidate.run_id == run_id)) or 0)
        rows = search_rows(s, run_id, backend, evaluator_key, seed=seed, n_boot=n_boot, overall_mean=overall_mean)
        return Searched(rows, count > 0, db, run_id, backend, evaluator_key)

    return read_store(db, read, (ValueError,))


def record_searches(searched: Searched, n_boot: int, seed: int) -> None:
    """Record the search rows in the run's `results` (one transaction)."""
    from sqlalchemy.orm import Session

    from harness.search.report import record_search_results
    from harness.store import StoreError, open_store

    try:
        engine = open_store(searched.db, upgrade_schema=False)
    except StoreError as err:
        raise CurveError(str(err)) from None
    try:
        with Session(engine) as s, s.begin():
            record_search_results(s, searched.run_id, searched.rows, searched.backend,
                                  searched.evaluator_settings_hash, n_boot, seed)
    finally:
        engine.dispose()


class AdaptiveRow(NamedTuple):
    tau: float
    tasks: dict[str, float]
    low: float
    high: float
    candidates: float  # expected candidates drawn per prompt
    seconds: float | None  # expected seconds per prompt (candidates x generator + verifier seconds each)


def adaptive_rows(pool: Any, verifier: str, taus_text: str | None, batch: int, n_max: int,
                  per_candidate: dict[str, float] | None, seed: int, n_boot: int,
                  overall_mean: str = "groups") -> list[AdaptiveRow]:
    """adaptive-n's exact rows over the pool (`harness.search.adaptive`), one per threshold: the expected
    outcome of its pick (GenEval: correctness; GenEval 2: Soft-TIFA GM), with the suite's aggregation."""
    import numpy as np

    from harness.search.adaptive import adaptive_n_exact
    from harness.suites import aggregate, intervals

    if verifier not in pool.scores:
        raise CurveUsageError(f"--adaptive-n: no scores by {verifier!r} in the pool (give it as --verifier); "
                               f"the pool has {', '.join(pool.scores) or 'none'}")
    if n_max > int(pool.sizes.min()):
        raise CurveUsageError(f"--adaptive-n-max {n_max} is more than the smallest prompt's pool "
                               f"({int(pool.sizes.min())})")
    scores = pool.scores[verifier]
    if taus_text:
        try:
            taus = [float(t) for t in taus_text.split(",") if t.strip()]
        except ValueError:
            raise CurveUsageError(f"{taus_text!r}: numbers separated by commas",
                                  param_hint="--adaptive-tau") from None
    else:
        taus = [*sorted({float(np.quantile(scores[pool.valid], q)) for q in np.linspace(0, 1, 11)}), float("inf")]
    accuracy, cost = adaptive_n_exact(scores, pool.outcomes, taus, batch=batch, n_max=n_max, valid=pool.valid)
    boot = intervals(accuracy, pool.tags, np.random.default_rng(seed), n_boot=n_boot, overall_mean=overall_mean)
    found = aggregate(accuracy, pool.tags, overall_mean=overall_mean)
    each = per_candidate.get(verifier) if per_candidate else None
    out = []
    for t, tau in enumerate(taus):
        candidates = float(cost[t].mean())
        out.append(AdaptiveRow(tau, {k: float(v[t]) for k, v in found.items()}, float(boot["overall"][0][t]),
                               float(boot["overall"][1][t]), candidates,
                               candidates * each if each is not None else None))
    return out


def render_adaptive(verifier: str, rows: list[AdaptiveRow], batch: int, n_max: int) -> str:
    header = f"{'tau':>10}  {'overall':>7}  {'95% interval':<15} {'cand/prompt':>11} {'s/prompt':>9}"
    lines = ["", f"adaptive-n by {verifier} (batch {batch}, n_max {n_max}): exact over random candidate orders",
             header, "-" * len(header)]
    for r in rows:
        seconds = f"{r.seconds:>9.4g}" if r.seconds is not None else f"{'':>9}"
        lines.append(f"{r.tau:>10.4g}  {r.tasks['overall']:>7.4f}  [{r.low:.4f}, {r.high:.4f}] {r.candidates:>11.3f} "
                     f"{seconds}")
    return "\n".join(lines)


def adaptive_json(verifier: str, rows: list[AdaptiveRow]) -> dict[str, Any]:
    return {f"adaptive-n({verifier})": {repr(r.tau): {**r.tasks, "low": r.low, "high": r.high,
                                                      "candidates": r.candidates, "seconds": r.seconds}
                                        for r in rows}}


# ---------------------------------------------------------------------------------------------
# the curves themselves


@dataclass
class Curves:
    """Every row's exact curve over `ns`, with 95% bootstrap intervals and, when the pool knows its
    costs, the expected seconds per prompt."""

    ns: list[int]
    rows: dict[str, Row]  # by label: the selection key and what the results table records it as
    table: dict[str, dict[int, dict[str, float]]]  # {label: {n: {"overall": ..., "<tag>": ...}}}
    intervals: dict[str, dict[int, tuple[float, float]]]  # overall's
    tag_intervals: dict[str, dict[int, dict[str, list[float]]]]  # each task's
    per_candidate: dict[str, float] | None  # seconds per candidate of each row (None without costs)
    compute: dict[str, dict[int, float]] | None  # {label: {n: n x per_candidate}}

    def as_rows(self) -> list[dict[str, Any]]:
        """One flat dict per (row, n): label, strategy, verifier, n, overall, low, high, the tasks and,
        with costs, seconds_per_prompt (what `harness.api.curves` returns)."""
        out = []
        for label, by_n in self.table.items():
            row = self.rows[label]
            for n, scores in by_n.items():
                low, high = self.intervals[label][n]
                item: dict[str, Any] = {"row": label, "strategy": row.strategy, "verifier": row.verifier, "n": n,
                                        "overall": scores["overall"], "low": low, "high": high,
                                        **{t: v for t, v in scores.items() if t != "overall"}}
                if self.compute is not None:
                    item["seconds_per_prompt"] = self.compute[label][n]
                out.append(item)
        return out


def check_ns(pool: Any, ns: list[int], extra: tuple[int, ...] = ()) -> None:
    """Every n (of the curve and of a comparison) fits the smallest prompt's pool."""
    smallest = int(pool.sizes.min())
    largest = max([ns[-1], *extra])
    if largest > smallest:
        prompt = pool.prompt_ids[int(pool.sizes.argmin())]
        raise CurveError(f"n = {largest} is larger than the pool of prompt {prompt!r} "
                         f"({smallest} candidates); use --n up to {smallest}")


def jsonl_rows(pool: Any, pool_path: Path, verifier_rows: list[str], strategies: list[LoadedStrategy]
               ) -> tuple[list[str], list[dict[str, list[Any]]]]:
    """(the verifier rows, per-prompt scores for the strategies) of a JSONL pool: its verifiers are its
    rows unless told otherwise; every verifier asked for must be in it."""
    from strategies.keys import jsonl_scores

    read_by_strategies = tuple(dict.fromkeys(v for st in strategies for v in st.verifiers))
    if not strategies and not verifier_rows:
        verifier_rows = list(pool.scores)
    missing = [v for v in [*verifier_rows, *read_by_strategies] if v not in pool.scores]
    if missing:
        raise CurveError(f"{pool_path}: no scores by {', '.join(dict.fromkeys(missing))}; "
                         f"the pool has {', '.join(pool.scores)}")
    return verifier_rows, jsonl_scores(pool, read_by_strategies)


def exact_curves(pool: Any, rows: dict[str, Row], ns: list[int], *, seed: int, n_boot: int,
                 overall_mean: str = "groups") -> Curves:
    """Every row's curve at once (one bootstrap shares its resamples across them), group scores as means
    over prompts, overall as the mean over groups (GenEval's definition) or, for a suite that says so
    (`overall_mean="prompts"`, GenEval 2), over prompts. Outcomes are the pool's: GenEval's 0/1 verdict
    or a suite's real-valued score (the closed form of best-of-n holds for both)."""
    import numpy as np

    from harness.scaling import curve as scaling_curve
    from harness.suites import aggregate
    from harness.suites import intervals as suite_intervals

    keys = {label: row.key for label, row in rows.items()}
    # (rows, len(ns), P): every curve at once
    per_prompt = np.stack([scaling_curve(key, pool.outcomes, ns, valid=pool.valid) for key in keys.values()])
    scores = aggregate(per_prompt, pool.tags, overall_mean=overall_mean)
    boot = suite_intervals(per_prompt, pool.tags, np.random.default_rng(seed), n_boot=n_boot,
                           overall_mean=overall_mean)
    low, high = boot["overall"]
    tags = [t for t in scores if t != "overall"]
    table: dict[str, dict[int, dict[str, float]]] = {}
    intervals: dict[str, dict[int, tuple[float, float]]] = {}
    for v, label in enumerate(keys):
        table[label] = {n: {"overall": float(scores["overall"][v, i]),
                            **{t: float(scores[t][v, i]) for t in tags}} for i, n in enumerate(ns)}
        intervals[label] = {n: (float(low[v, i]), float(high[v, i])) for i, n in enumerate(ns)}
    tag_intervals = {v: {n: {t: [float(boot[t][0][k, i]), float(boot[t][1][k, i])] for t in tags}
                         for i, n in enumerate(ns)} for k, v in enumerate(keys)}
    per_candidate = compute_per_candidate(pool, {label: row.scored_by for label, row in rows.items()})
    compute = ({v: {n: n * per_candidate[v] for n in ns} for v in keys} if per_candidate is not None else None)
    return Curves(ns, rows, table, intervals, tag_intervals, per_candidate, compute)


def comparison_json(a: str, b: str, results: dict[int, Comparison], n_boot: int, seed: int) -> dict[str, Any]:
    return {"a": a, "b": b, "method": "paired stratified bootstrap over prompts", "bootstrap": n_boot, "seed": seed,
            "n": {str(n): r._asdict() for n, r in results.items()}}


def curves_json(curves: Curves) -> dict[str, Any]:
    return {v: {str(n): row for n, row in rows.items()} for v, rows in curves.table.items()}


def check_compare(compare: tuple[str, str], rows: dict[str, Row]) -> None:
    unknown = [name for name in compare if name not in rows]
    if unknown:
        raise CurveUsageError(f"--compare: no verifier {', '.join(map(repr, unknown))} in the pool; "
                              f"available: {', '.join(rows)}")
