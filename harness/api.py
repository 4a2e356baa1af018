"""stepwise from Python: the handful of calls a notebook needs, each what a command does.

    from harness import api

    results = api.evaluate("images/", backend="hf", detector="facebook/mask2former-swin-small-coco-instance")
    run_id = api.run({"generator": "showo", "pool": 8, "verifiers": ["orm"], "backend": "hf",
                      "detector": "facebook/mask2former-swin-small-coco-instance", "db": "sqlite:///stepwise.db"})
    rows = api.curves(run_id, db="sqlite:///stepwise.db", verifiers=["orm"], ns=[1, 2, 4, 8],
                      evaluator={"backend": "hf", "detector": "facebook/mask2former-swin-small-coco-instance"})
    report = api.analyze(run_id, db="sqlite:///stepwise.db", verifiers=["orm"], evaluator={...})
    folder = api.submit(run_id, name="Show-o + ORM, best-of-8", slug="showo-orm-n8", verifiers=["orm"], n=8, ...)
    site = api.build_site("submissions/", "site/")

`evaluate`, `run`, `curves` and `analyze` call the library functions the commands call
(`harness.geneval.evaluator`, `harness.run_spec` + `harness.runner`, `harness.curves`,
`harness.analysis`); `submit` and `build_site` run the `stepwise submit` / `stepwise leaderboard
build` commands themselves (their checks are the commands' own), without a subprocess. Every failure
is an `ApiError` with the one-line message the command would print.

Evaluator settings (`evaluator=`) are the `stepwise run` flags as a dict: backend ("mmdet" or "hf"),
detector, detector_config, clip_arch, clip_weights, device and the thresholds (threshold,
counting_threshold, max_objects, max_overlap, position_threshold); what is not given takes the
command's default. Heavy modules are imported inside the calls: `import harness.api` is instant.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ApiError", "analyze", "build_site", "curves", "evaluate", "run", "submit"]

THRESHOLDS = ("threshold", "counting_threshold", "max_objects", "max_overlap", "position_threshold")


class ApiError(Exception):
    """What went wrong, in the one line the matching command prints."""


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """The library's domain errors as ApiError (the same messages the commands print)."""
    from harness import registry
    from harness.curves import CurveError
    from harness.run_spec import SpecError
    from harness.runner import RunError
    from harness.store import StoreError

    try:
        yield
    except (CurveError, SpecError, RunError, StoreError, registry.PluginError) as err:
        raise ApiError(str(err)) from None


def _evaluator(settings: Mapping[str, Any] | None) -> Any:
    """An EvaluatorSpec from `stepwise run`-style settings (defaults for what is missing)."""
    from harness.geneval.evaluator import EvaluatorSpec

    settings = dict(settings or {})
    unknown = sorted(set(settings) - {"backend", "detector", "detector_config", "clip_arch", "clip_weights", "device",
                                      "color_mode", *THRESHOLDS})
    if unknown:
        raise ApiError(f"unknown evaluator setting(s) {', '.join(unknown)}")
    options = _options({k: settings.pop(k) for k in THRESHOLDS if k in settings})
    try:
        return EvaluatorSpec(options=options, **settings)
    except ValueError as err:
        raise ApiError(str(err)) from None


def _options(thresholds: Mapping[str, Any]) -> Any:
    """GenEval's EvalOptions with these thresholds on top of its defaults."""
    from harness.geneval.rules import EvalOptions

    try:
        return EvalOptions.from_strings({k: str(v) for k, v in thresholds.items()})
    except ValueError as err:
        raise ApiError(str(err)) from None


def _verifier_keys(spec: Any, verifiers: Sequence[str], verifier_params: Mapping[str, Mapping[str, Any]] | None,
                   plugins: Sequence[str] = ()) -> dict[str, str]:
    """{verifier: settings hash}: what `stepwise run` filed the scores under (no model is built)."""
    from harness import registry
    from harness.runner import verifier_settings_hashes

    params = {k: {kk: str(vv) for kk, vv in v.items()} for k, v in (verifier_params or {}).items()}
    with _errors(), registry.configured(list(plugins)) if plugins else contextlib.nullcontext():
        return verifier_settings_hashes(tuple(verifiers), params, evaluator_key=spec.key())


# ---------------------------------------------------------------------------------------------
# the calls


def evaluate(folder: str | Path, *, batch_size: int = 8, on_error: str = "fail", cache: bool = True,
             **evaluator: Any) -> list[dict[str, Any]]:
    """GenEval verdicts of a folder in GenEval's layout (`NNNNN/metadata.jsonl`, `NNNNN/samples/*.png`).

    One record per image with GenEval's keys (filename, tag, prompt, correct, reason, metadata,
    details) plus detections, backend, evaluator and sha256, as `stepwise eval` writes them.
    Verdicts are cached by image and settings (`~/.cache/stepwise`) unless `cache=False`;
    `on_error="skip"` leaves out images that cannot be read instead of failing.

        records = api.evaluate("images/", backend="hf", detector="facebook/mask2former-swin-small-coco-instance")
        accuracy = sum(r["correct"] for r in records) / len(records)
    """
    from harness.geneval.cache import VerdictCache, default_cache_path
    from harness.geneval.evaluator import ImageError, Models, evaluate_samples
    from harness.geneval.folder import scan_image_folder

    spec = _evaluator(evaluator)
    try:
        scan = scan_image_folder(Path(folder))
    except (OSError, ValueError) as err:
        raise ApiError(str(err)) from None
    if scan.problems and on_error == "fail":
        raise ApiError(f"{scan.problems[0]} (on_error='skip' evaluates the rest)")
    if not scan.samples:
        raise ApiError(f"{folder}: no images to evaluate")
    verdicts = VerdictCache(default_cache_path()) if cache else None
    try:
        records = evaluate_samples(scan.samples, spec, Models(spec), cache=verdicts, batch_size=batch_size,
                                   on_error=on_error)
        return [r for r in records if not isinstance(r, ImageError)]
    except ValueError as err:  # an image that cannot be decoded names itself
        raise ApiError(str(err)) from None
    finally:
        if verdicts is not None:
            verdicts.close()


def run(spec: Mapping[str, Any] | str | Path, **overrides: Any) -> str:
    """Build (or continue) a run from a run spec; returns its run id.

    `spec` is a TOML run spec file or a dict with the same keys (`docs/reference/run-spec.md`);
    `overrides` are laid on top as the command's flags are. Pools, prepare strategies (dpo) and
    search strategies (with `budget`) all work as with `stepwise run`.

        run_id = api.run("specs/showo-parm-n20.toml", db="sqlite:///paper.db")
        run_id = api.run({"generator": "showo", "pool": 4, "verifiers": ["clipscore"], "backend": "hf"})
    """
    from harness import registry
    from harness.preparation import NotPreparable, PrepareError, has_prepare, run_prepared
    from harness.run_spec import build_config, merged, read_spec, search_from, strategy_from
    from harness.runner import run as run_pool
    from harness.search.runner import run_search

    with _errors():
        values = merged(read_spec(Path(spec)) if isinstance(spec, str | Path) else dict(spec), overrides)
        strategy, strategy_values = strategy_from(values)
        plugins = values.get("plugins") or None
        search = search_from(values, strategy, plugins)
        options = _options({k: values.pop(k) for k in THRESHOLDS if k in values})
        config = build_config(values, options, need_pool=search is None)
        try:
            with registry.configured(plugins) if plugins else contextlib.nullcontext():
                if search is not None and not has_prepare(registry.strategies.get(search.strategy)):
                    return str(run_search(config, search).run_id)
                if strategy is None:
                    return str(run_pool(config).run_id)
                with_search = None if search is None else (
                    lambda cfg, shard, engine: run_search(cfg, search, shard=shard, engine=engine))
                return str(run_prepared(config, strategy, strategy_values, run_with=with_search).summary.run_id)
        except (NotPreparable, PrepareError) as err:
            raise ApiError(" ".join(str(err).split())) from None


def curves(run_id: str | None = None, *, pool: str | Path | None = None, db: str | None = None,
           verifiers: Sequence[str] = (), verifier_params: Mapping[str, Mapping[str, Any]] | None = None,
           strategies: Sequence[str] = (), strategy_params: Mapping[str, Mapping[str, Any]] | None = None,
           evaluator: Mapping[str, Any] | None = None, ns: Sequence[int] = tuple(range(1, 21)),
           max_samples: int | None = None, seed: int = 0, n_boot: int = 2000, record: bool = True,
           plugins: Sequence[str] = (), as_dataframe: bool = False) -> Any:
    """Exact best-of-n curves of a run (or of a JSONL pool file, `pool=`), as `stepwise curve` computes them.

    Returns one row per (verifier or strategy, n): row, strategy, verifier, n, overall, low, high
    (the 95% bootstrap interval), one column per GenEval task and, when the pool knows its costs,
    seconds_per_prompt; `random` and `oracle` rows come too. A list of dicts, or a pandas DataFrame
    with `as_dataframe=True` (pandas is not a dependency of stepwise: install it to use this).
    For a store run the rows are also recorded in its `results` table, unless `record=False`.

        rows = api.curves(run_id, db="sqlite:///stepwise.db", verifiers=["orm", "clipscore"], ns=[1, 4, 8],
                          evaluator={"backend": "hf", "detector": "facebook/mask2former-swin-small-coco-instance"})
        best = max(rows, key=lambda r: r["overall"])
    """
    from harness import curves as lib

    if (pool is None) == (run_id is None):
        raise ApiError("give exactly one of run_id and pool=")
    wanted_ns = sorted({int(n) for n in ns})
    if not wanted_ns or wanted_ns[0] < 1:
        raise ApiError(f"ns must be positive integers, got {list(ns)!r}")
    with _errors():
        links = lib.run_links(run_id, db) if run_id is not None else []
        params = {k: {kk: str(vv) for kk, vv in v.items()} for k, v in (strategy_params or {}).items()}
        loaded = lib.load_strategies(tuple(strategies), params, tuple(plugins), links)
        verifier_rows = list(verifiers)
        read_by = tuple(dict.fromkeys(v for st in loaded for v in st.verifiers))
        stored = None
        if run_id is not None:
            spec = _evaluator(evaluator)
            wanted = tuple(dict.fromkeys([*verifier_rows, *read_by]))
            keys = _verifier_keys(spec, wanted, verifier_params, plugins)
            stored = lib.read_store_pool(db, run_id, spec.backend, spec.key(), keys, max_samples=max_samples,
                                         strategy_verifiers=read_by)
            the_pool, prompt_scores = stored.pool, stored.prompt_scores
        else:
            the_pool = lib.read_jsonl_pool(Path(pool or ""))
            verifier_rows, prompt_scores = lib.jsonl_rows(the_pool, Path(pool or ""), verifier_rows, loaded)
        lib.check_ns(the_pool, wanted_ns)
        rows = lib.selection_rows(the_pool, verifier_rows, loaded, prompt_scores,
                                  stored.verifier_settings_hashes if stored is not None else {})
        result = lib.exact_curves(the_pool, rows, wanted_ns, seed=seed, n_boot=n_boot)
        if stored is not None and record:
            lib.record_results(stored, rows, result.table, result.intervals, result.tag_intervals, result.compute,
                               n_boot, seed)
    table = result.as_rows()
    if not as_dataframe:
        return table
    try:
        import pandas as pd
    except ImportError:
        raise ApiError("as_dataframe=True needs pandas (pip install pandas); without it, curves returns a "
                       "list of dicts") from None
    return pd.DataFrame(table)


def analyze(run_id: str | None = None, *, pool: str | Path | None = None, db: str | None = None,
            verifiers: Sequence[str] = (), verifier_params: Mapping[str, Mapping[str, Any]] | None = None,
            evaluator: Mapping[str, Any] | None = None, ns: Sequence[int] | None = None,
            max_samples: int | None = None, seed: int = 0, n_boot: int = 1000, n_bins: int = 10,
            plugins: Sequence[str] = ()) -> dict[str, Any]:
    """Verifier analytics of a run or a JSONL pool, as `stepwise analyze --json` writes them.

    Per verifier: AUROC (per prompt and pooled), average precision, reliability bins and ECE for
    verifiers whose scores are probabilities, per-task figures, regret against the oracle at each n,
    per-step discrimination of step scores, and the agreement between verifiers.

        report = api.analyze(run_id, db="sqlite:///stepwise.db", verifiers=["orm", "parm"], evaluator={"backend": "hf"})
        report["verifiers"]["orm"]["auroc"]
    """
    import numpy as np

    from harness import curves as lib
    from harness.analysis.report import analysis_json, score_probabilities, with_stored_scores
    from harness.analysis.report import analyze as analyze_pool

    if (pool is None) == (run_id is None):
        raise ApiError("give exactly one of run_id and pool=")
    with _errors():
        if run_id is not None:
            if not verifiers:
                raise ApiError("a run needs the verifiers (and verifier_params) it used")
            spec = _evaluator(evaluator)
            keys = _verifier_keys(spec, tuple(verifiers), verifier_params, plugins)
            stored = lib.read_store_pool(db, run_id, spec.backend, spec.key(), keys, max_samples=max_samples,
                                         strategy_verifiers=tuple(verifiers))
            the_pool = with_stored_scores(stored.pool, stored.prompt_scores)
            names = list(verifiers)
        else:
            the_pool = lib.read_jsonl_pool(Path(pool or ""))
            names = list(verifiers) or list(the_pool.scores)
            missing = [v for v in names if v not in the_pool.scores]
            if missing:
                raise ApiError(f"{pool}: no scores by {', '.join(missing)}; the pool has {', '.join(the_pool.scores)}")
    try:
        report = analyze_pool(the_pool, rng=np.random.default_rng(seed), verifiers=names,
                              ns=sorted(ns) if ns else None, n_boot=n_boot, n_bins=n_bins, seed=seed,
                              probabilities=score_probabilities(names))
    except ValueError as err:
        raise ApiError(str(err)) from None
    data: dict[str, Any] = json.loads(json.dumps(analysis_json(report)))
    return data


def _command(args: Sequence[str]) -> str:
    """Run a `stepwise` command in this process; its stdout, or ApiError with what it printed."""
    import click

    from harness.cli import main

    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main.main(list(args), prog_name="stepwise", standalone_mode=False)
    except click.ClickException as error:
        raise ApiError(error.format_message()) from None
    except click.exceptions.Exit as exit_:
        if exit_.exit_code:
            raise ApiError(err.getvalue().strip() or f"stepwise {args[0]} exited with {exit_.exit_code}") from None
    return out.getvalue()


def _flags(evaluator: Mapping[str, Any] | None, verifiers: Sequence[str],
           verifier_params: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    args: list[str] = []
    for key, value in (evaluator or {}).items():
        if value is not None:
            args += [f"--{key.replace('_', '-')}", str(value)]
    for name in verifiers:
        args += ["--verifier", name]
    for name, params in (verifier_params or {}).items():
        for key, value in params.items():
            args += ["--verifier-param", f"{name}:{key}={value}"]
    return args


def submit(run_id: str, *, name: str, slug: str, db: str | None = None, verifiers: Sequence[str] = (),
           verifier_params: Mapping[str, Mapping[str, Any]] | None = None, evaluator: Mapping[str, Any] | None = None,
           n: int | None = None, out: str | Path = "submissions", search: str | None = None,
           budget: int | None = None, extra: Sequence[str] = ()) -> Path:
    """Write a leaderboard entry for a run (`stepwise submit`); returns its folder (`out/slug`).

    A pool entry is best-of-`n` by the first verifier; `search=NAME` (and `budget`) submits a search
    of the run instead. `extra` takes any other `stepwise submit` flags (e.g. ["--authors", "A. B."]).

        folder = api.submit(run_id, name="Show-o + ORM, best-of-8", slug="showo-orm-n8", db="sqlite:///stepwise.db",
                            verifiers=["orm"], n=8, evaluator={"backend": "hf"})
    """
    args = ["submit", run_id, "--name", name, "--slug", slug, "--out", str(out)]
    if db is not None:
        args += ["--db", db]
    if search is not None:
        args += ["--search", search] + (["--budget", str(budget)] if budget is not None else [])
    if n is not None:
        args += ["--n", str(n)]
    _command([*args, *_flags(evaluator, verifiers, verifier_params), *extra])
    return Path(out) / slug


def build_site(submissions: str | Path = "submissions", out: str | Path = "site", *, recheck: str | int = 64,
               models: Sequence[str | Path] = (), strict: bool = False, extra: Sequence[str] = ()) -> Path:
    """Build the static leaderboard (`stepwise leaderboard build`) from a submissions folder; returns `out`.

    Reproduced entries are consistency-checked and, with `recheck` (a number of images, "all" or
    "none") and the models found under `models`, re-checked against their images.

        site = api.build_site("submissions/", "site/", recheck="none")
        (site / "index.html").exists()
    """
    args = ["leaderboard", "build", "--submissions", str(submissions), "--out", str(out), "--recheck", str(recheck)]
    for folder in models:
        args += ["--models", str(folder)]
    if strict:
        args.append("--strict")
    _command([*args, *extra])
    return Path(out)
