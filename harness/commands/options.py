"""Option decorators shared by several commands."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

F = Callable[..., Any]


def apply_options(f: F, decorators: list[Callable[[F], F]]) -> F:
    """`f` decorated with `decorators` as if they were stacked in list order (the first is outermost,
    so `--help` lists the options in that order)."""
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def threshold_options(f: F) -> F:
    """GenEval's --options thresholds, as flags (defaults are GenEval's)."""
    decorators = [
        click.option("--threshold", type=float, default=0.3, show_default=True,
                     help="Detection score threshold (strictly greater)."),
        click.option("--counting-threshold", type=float, default=0.9, show_default=True,
                     help="Score threshold for every class when the tag is 'counting'."),
        click.option("--max-objects", type=click.IntRange(min=0), default=16, show_default=True,
                     help="At most this many objects per class, highest scores first."),
        click.option("--max-overlap", type=float, default=1.0, show_default=True,
                     help="Drop a box whose IoU with a better one of its class reaches this (1.0 = off)."),
        click.option("--position-threshold", type=float, default=0.1, show_default=True,
                     help="Share of the objects' sizes an offset must exceed to count as a relation."),
    ]
    return apply_options(f, decorators)


def stored_evaluator_options(scope: str = "") -> Callable[[F], F]:
    """The evaluator flags as `stepwise run` takes them, for commands that read a run's stored
    verdicts (they are filed under the settings hash these flags make), plus the thresholds."""
    lead = f"{scope}: " if scope else ""

    def apply(f: F) -> F:
        decorators = [
            click.option("--backend", type=click.Choice(["mmdet", "hf"]), default="mmdet", show_default=True,
                         help=f"{lead}the GenEval detector whose stored verdicts to read."),
            click.option("--detector", default=None, metavar="PATH|ID", help=f"{lead}as given to `stepwise run`."),
            click.option("--detector-config", default=None, help=f"{lead}as given to `stepwise run`."),
            click.option("--clip-arch", default="ViT-L-14-quickgelu", show_default=True,
                         help=f"{lead}as given to `stepwise run`."),
            click.option("--clip-weights", default=None, help=f"{lead}as given to `stepwise run`."),
            click.option("--device", default=None, help=f"{lead}as given to `stepwise run`."),
        ]
        return threshold_options(apply_options(f, decorators))

    return apply


THRESHOLD_FLAGS = ("threshold", "counting_threshold", "max_objects", "max_overlap", "position_threshold")


def evaluator_from_flags(flags: dict[str, Any]) -> Any:
    """The EvaluatorSpec of `stored_evaluator_options`' flags (a UsageError when they do not fit)."""
    from harness.geneval.evaluator import EvaluatorSpec

    settings = {k: v for k, v in flags.items() if k not in THRESHOLD_FLAGS}
    try:
        return EvaluatorSpec(options=options_from_flags(**{k: flags[k] for k in THRESHOLD_FLAGS}), **settings)
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def stored_settings(flags: dict[str, Any], verifiers: tuple[str, ...], verifier_params: tuple[str, ...],
                    plugins: tuple[str, ...]) -> tuple[Any, dict[str, str]]:
    """(EvaluatorSpec, {verifier: settings hash}): the keys `stepwise run` filed a run's verdicts and
    scores under, from `stored_evaluator_options`' flags and the --verifier/--verifier-param values.
    The verifiers are not built, so no reward model loads; errors become one click line."""
    spec = evaluator_from_flags(flags)
    return spec, verifier_keys(verifiers, verifier_params, plugins, spec.key())


def verifier_keys(verifiers: tuple[str, ...], verifier_params: tuple[str, ...], plugins: tuple[str, ...],
                  evaluator_key: str) -> dict[str, str]:
    """{verifier: settings hash} as `stepwise run` filed the scores, for verdicts filed under `evaluator_key`
    (a verifier that reads verdicts has it in its hash); errors become one click line."""
    import contextlib

    from harness import registry
    from harness.runner import RunError, verifier_settings_hashes

    try:
        with registry.configured(plugins) if plugins else contextlib.nullcontext():
            return verifier_settings_hashes(verifiers, parse_verifier_params(verifier_params),
                                            evaluator_key=evaluator_key)
    except (RunError, registry.PluginError) as err:
        raise click.ClickException(str(err)) from None


def options_from_flags(threshold: float, counting_threshold: float, max_objects: int,
                       max_overlap: float, position_threshold: float,
                       extra: tuple[str, ...] = ()) -> Any:
    """EvalOptions from the flags, then GenEval-style KEY=VALUE --options on top."""
    from harness.geneval.rules import EvalOptions

    values: dict[str, str] = {
        "threshold": str(threshold), "counting_threshold": str(counting_threshold),
        "max_objects": str(max_objects), "max_overlap": str(max_overlap),
        "position_threshold": str(position_threshold),
    }
    for item in extra:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--options")
        key, value = item.split("=", 1)
        values[key] = value
    try:
        return EvalOptions.from_strings(values)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--options") from None


def parse_pairs(items: tuple[str, ...], hint: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=hint)
        out[key.strip()] = value
    return out


def parse_verifier_params(items: tuple[str, ...]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, pair = item.partition(":")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not VERIFIER:KEY=VALUE", param_hint="--verifier-param")
        out.setdefault(name, {}).update(parse_pairs((pair,), "--verifier-param"))
    return out


def parse_prompts(text: str | list[int] | None) -> list[int] | None:
    """'0,80..84' (or a TOML list) -> suite indices (`harness.run_spec.prompt_indices`), as a flag's error."""
    from harness.run_spec import SpecUsageError, prompt_indices

    try:
        return prompt_indices(text)
    except SpecUsageError as err:
        raise click.BadParameter(str(err), param_hint=err.param_hint) from None


def recheck_options(f: F) -> F:
    """The flags of the re-check with the models (`harness.submissions.verify`), for `validate` and
    `leaderboard build`; `recheck_plan` turns them into a RecheckPlan."""
    decorators = [
        click.option("--recheck", default="64", show_default=True, metavar="N|all|none",
                     help="Re-judge and re-score this many of each entry's images with the recorded evaluator "
                          "and verifiers (a random sample, drawn afresh each run), all of them, or none."),
        click.option("--recheck-seed", type=click.IntRange(0, 2**32 - 1), default=None,
                     help="Seed of the re-check's sample, to repeat a draw [fresh each run; printed]."),
        click.option("--models", "models", multiple=True, metavar="DIR",
                     type=click.Path(file_okay=False, exists=True, path_type=Path),
                     help="A folder holding the model files and folders the exports name (detector checkpoint, "
                          "colour model weights, verifier checkpoints), looked up by name. Repeatable."),
        click.option("--verifier-param", "recheck_params", multiple=True, metavar="V:KEY=VALUE",
                     help="Override a recorded parameter of verifier V for the re-check (e.g. its model path). "
                          "Repeatable."),
        click.option("--device", default=None, help="Device of the re-check's models [cuda if available]."),
        click.option("--score-tolerance", type=click.FloatRange(min=0), default=0.02, show_default=True,
                     help="Largest accepted |re-scored - stored| verifier score (device and dtype noise)."),
        click.option("--plugin", "plugins", multiple=True, metavar="PKG[==VER]",
                     help="Allow this plug-in package (a recorded third-party verifier). Repeatable."),
        click.option("--geneval2-data", "geneval2_data", default=None, metavar="PATH",
                     type=click.Path(exists=True, path_type=Path),
                     help="Your copy of the GenEval 2 data (the folder `stepwise prompts geneval2` wrote, or "
                          "geneval2_data.jsonl), to check GenEval 2 entries' prompts and questions and re-judge "
                          "their images [$STEPWISE_GENEVAL2_DATA]."),
    ]
    return apply_options(f, decorators)


RECHECK_FLAGS = ("recheck", "recheck_seed", "models", "recheck_params", "device", "score_tolerance", "plugins",
                 "geneval2_data")


def recheck_plan(flags: dict[str, Any]) -> Any:
    """The RecheckPlan of `recheck_options`' flags, popped from `flags` (a seed drawn when none given)."""
    from harness.submissions.verify import RecheckPlan, fresh_seed, parse_recheck

    values = {k: flags.pop(k) for k in RECHECK_FLAGS}
    try:
        count = parse_recheck(values["recheck"])
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--recheck") from None
    seed = values["recheck_seed"] if values["recheck_seed"] is not None else fresh_seed()
    plan = RecheckPlan(count=count, seed=seed, models=tuple(values["models"]),
                       verifier_params=parse_verifier_params(values["recheck_params"]), device=values["device"],
                       tolerance=values["score_tolerance"], geneval2_data=values["geneval2_data"])
    return plan, tuple(values["plugins"])


def parse_ns(text: str) -> list[int]:
    """'1..20', '1,2,4,8' or '4' -> sorted distinct positive ints."""
    values: set[int] = set()
    try:
        for part in text.split(","):
            if ".." in part:
                low, high = (int(x) for x in part.split("..", 1))
                values.update(range(low, high + 1))
            else:
                values.add(int(part))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use e.g. 1..20 or 1,2,4,8", param_hint="--n") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"{text!r}: n must be >= 1", param_hint="--n")
    return sorted(values)


@contextlib.contextmanager
def click_errors(domain: type[Exception], usage: type[Exception]) -> Iterator[None]:
    """A library's errors as click's: `usage` ones (with their `param_hint` flag, if any) as usage
    errors, other `domain` ones as one line (`harness.curves`, `harness.run_spec`)."""
    try:
        yield
    except usage as err:
        hint = getattr(err, "param_hint", None)
        if hint:
            raise click.BadParameter(str(err), param_hint=hint) from None
        raise click.UsageError(str(err)) from None
    except domain as err:
        raise click.ClickException(str(err)) from None


# Readers of a stored run (curve, analyze): the suite's parameters for a suite judged otherwise than by
# GenEval's evaluator (`harness.suite_store.resolve`).
suite_param_option = click.option(
    "--suite-param", "suite_params", multiple=True, metavar="KEY=VALUE",
    help="With --run on a suite not judged by GenEval's evaluator (geneval2): the suite's parameters the run "
         "used (e.g. model=PATH), needed when its verdicts are by several settings. Repeatable.")

