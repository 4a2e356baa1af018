"""Run specs: the TOML file and flags of `stepwise run`, merged, checked and turned into a RunConfig.

The library behind `stepwise run` (and `harness.api.run`): `read_spec` reads and checks a spec file,
`merged` lays flags over it, `strategy_from` / `search_from` / `build_config` make the strategy, the
search and the `harness.runner.RunConfig` of the merged values. Errors are `SpecError` (a file that
cannot be used: one line naming it) and `SpecUsageError` (values that do not fit together).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class SpecError(Exception):
    """A spec file that cannot be read or used (one line, naming the file)."""


class SpecUsageError(SpecError):
    """Values that do not fit together (a missing generator, --budget without a search strategy, ...)."""

    def __init__(self, message: str, *, param_hint: str | None = None) -> None:
        super().__init__(message)
        self.param_hint = param_hint


def prompt_indices(text: str | list[int] | None) -> list[int] | None:
    """'0,80..84' (or a TOML list) -> suite indices."""
    if text is None or isinstance(text, list):
        return text
    values: list[int] = []
    try:
        for part in text.split(","):
            if ".." in part:
                low, high = (int(x) for x in part.split("..", 1))
                values.extend(range(low, high + 1))
            elif part.strip():
                values.append(int(part))
    except ValueError:
        raise SpecUsageError(f"{text!r}: use e.g. 0..9 or 0,80,81", param_hint="--prompts") from None
    return values


# Keys a TOML run spec may hold (the flags' names, with underscores); flags override them.
SPEC_KEYS = {
    "generator", "params", "suite", "per_task", "prompts", "pool", "verifiers", "verifier_params", "backend",
    "detector", "detector_config", "clip_arch", "clip_weights", "db", "out", "seed", "plugins", "batch_size",
    "device", "strategy", "strategy_params", "budget", "samples", "suite_params",
}
DEFAULTS: dict[str, Any] = {"suite": "geneval", "per_task": 100, "seed": 0, "backend": "mmdet",
                            "clip_arch": "ViT-L-14-quickgelu", "batch_size": 8}


def read_spec(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fp:
            spec = tomllib.load(fp)
    except OSError as err:
        raise SpecError(f"{path}: cannot read ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise SpecError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: not valid TOML ({err})") from None
    except RecursionError:
        raise SpecError(f"{path}: not valid TOML (nested too deeply to read)") from None
    if not spec:
        raise SpecError(f"{path}: empty; a run spec gives at least generator and pool")
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise SpecError(f"{path}: unknown key(s) {', '.join(unknown)}; "
                                   f"accepted: {', '.join(sorted(SPEC_KEYS))}")
    return spec


def merged(spec: Mapping[str, Any], flags: Mapping[str, Any]) -> dict[str, Any]:
    """Spec values, then flags that were given on top; params tables merge key by key."""
    out = {**DEFAULTS, **spec}
    for key, value in flags.items():
        if value is None or value == () or value == {}:
            continue
        if key in ("params", "verifier_params", "strategy_params", "suite_params"):
            base = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in dict(out.get(key, {})).items()}
            for k, v in value.items():
                base[k] = {**base.get(k, {}), **v} if isinstance(v, Mapping) else v
            out[key] = base
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def default_db(db: str | None, out: Path) -> str | None:
    """Under torchrun with no --db (and no $STEPWISE_DB), each rank writes OUT/stepwise-rank{R}.db."""
    if db or os.environ.get("STEPWISE_DB") or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return db
    out.mkdir(parents=True, exist_ok=True)
    rank = int(os.environ.get("RANK", "0"))
    return f"sqlite:///{(out / f'stepwise-rank{rank}.db').resolve()}"


def budgets_of(values: Mapping[str, Any]) -> list[int]:
    """The budgets from --budget flags or a spec's `budget` (an integer or a list of them)."""
    raw = values.get("budget")
    if raw is None:
        return []
    items = raw if isinstance(raw, list | tuple) else [raw]
    if not all(isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in items):
        raise SpecUsageError(f"`budget` must be an integer >= 1 or a list of them, got {raw!r}")
    return list(items)


def search_from(values: Mapping[str, Any], strategy: str | None, plugins: list[str] | None) -> Any:
    """A SearchConfig when `strategy` is a search strategy (then --budget is required), else None
    (then --budget and --samples are refused)."""
    import contextlib

    from harness import registry
    from harness.plugins import is_search_strategy
    from harness.search.runner import SearchConfig

    budgets = budgets_of(values)
    is_search = False
    if strategy is not None:
        try:
            with registry.configured(plugins) if plugins else contextlib.nullcontext():
                is_search = is_search_strategy(registry.strategies.get(strategy))
        except registry.PluginError as err:
            raise SpecError(str(err)) from None
    if not is_search:
        if budgets or values.get("samples") is not None:
            raise SpecUsageError("--budget and --samples (or `budget` / `samples` in the spec) are for search "
                                 "strategies (--strategy parm-prune, step-beam, smc, adaptive-n, reflect, "
                                 "noise-search)")
        return None
    if not budgets:
        raise SpecUsageError(f"search strategy {strategy!r} needs --budget B (or `budget` in the --spec file): at "
                               "most best-of-B's generator compute per GenEval sample")
    samples = values.get("samples")
    if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool) or samples < 1):
        raise SpecUsageError(f"`samples` must be an integer >= 1, got {samples!r}")
    assert strategy is not None
    return SearchConfig(strategy, dict(values.get("strategy_params") or {}), tuple(budgets),
                        int(samples) if samples is not None else 4)


def strategy_from(values: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """(strategy name or None, its params) from the merged spec and flags."""
    strategy = values.get("strategy")
    params = values.get("strategy_params") or {}
    if not isinstance(params, Mapping):
        raise SpecUsageError("`strategy_params` in the --spec file must be a table")
    if strategy is None and params:
        raise SpecUsageError("--strategy-param (or `strategy_params`) needs --strategy (or `strategy`)")
    if strategy is not None and (not isinstance(strategy, str) or not strategy):
        raise SpecUsageError(f"`strategy` must be a strategy name, got {strategy!r}")
    return strategy, dict(params)


def suite_params_of(values: Mapping[str, Any]) -> dict[str, Any]:
    """The suite plug-in's parameters (`--suite-param` / `suite_params`), e.g. geneval2's data and model."""
    params = values.get("suite_params") or {}
    if not isinstance(params, Mapping):
        raise SpecUsageError("`suite_params` in the --spec file must be a table")
    return dict(params)


def judged_by_geneval(suite: str) -> bool:
    """Whether the suite's candidates are judged by GenEval's evaluator (the detector flags apply): `geneval`,
    a GenEval-format metadata .jsonl, or a suite plug-in that declares it. An unknown name counts as GenEval's
    here; the runner names the suites there are."""
    from harness import registry
    from harness.suite_store import suite_class, uses_geneval_evaluator

    try:
        return uses_geneval_evaluator(suite_class(suite))
    except (registry.PluginError, ValueError):
        return True


def build_config(values: Mapping[str, Any], options: Any, *, need_pool: bool = True) -> Any:
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.runner import RunConfig

    for key in ("generator", "pool") if need_pool else ("generator",):
        if values.get(key) is None:
            raise SpecUsageError(f"--{key} is required (or `{key}` in the --spec file)")
    evaluator = None
    if judged_by_geneval(str(values["suite"])):  # another suite's evaluator takes --suite-param, not these flags
        try:
            evaluator = EvaluatorSpec(backend=values["backend"], detector=values.get("detector"),
                                      detector_config=values.get("detector_config"), clip_arch=values["clip_arch"],
                                      clip_weights=values.get("clip_weights"), options=options,
                                      device=values.get("device"))
        except ValueError as err:
            raise SpecUsageError(str(err)) from None
    out = Path(values.get("out") or "stepwise-out")
    return RunConfig(
        generator=values["generator"], evaluator=evaluator, pool=int(values.get("pool") or 1),
        params=dict(values.get("params") or {}), verifiers=tuple(values.get("verifiers") or ()),
        verifier_params={k: dict(v) for k, v in dict(values.get("verifier_params") or {}).items()},
        suite=values["suite"], suite_params=suite_params_of(values), per_task=int(values["per_task"]),
        prompts=prompt_indices(values.get("prompts")),
        seed=int(values["seed"]), db=default_db(values.get("db"), out), out=out,
        batch_size=int(values["batch_size"]), device=values.get("device"),
    )
