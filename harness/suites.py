"""What a suite plug-in looks like: its prompts, its evaluator and its aggregation.

A suite is the benchmark a run is judged on. Three things make one (`Suite`, a Protocol, so a
plug-in needs no stepwise base class):

    suite.records()                   -> the prompts, in order, each a JSON object with "prompt"
    suite.group(record)               -> the category a prompt's figure is reported under
    suite.evaluator(context)          -> a `SuiteEvaluator`: images + records -> one `Verdict` each

and two class attributes that say how per-prompt figures add up (`aggregate`): `overall`, the
name of the suite's headline figure ("overall" for GenEval, "soft_tifa_gm" for GenEval 2), and
`overall_mean`, "groups" (the unweighted mean of the groups' means: GenEval's overall, whatever
a task's size) or "prompts" (the mean over prompts: GenEval 2's Soft-TIFA GM).

Optional: `geneval_evaluator: ClassVar[bool] = True` says that the suite is judged by GenEval's
detector evaluator, configured by the run's GenEval flags (`--backend`, `--detector`, thresholds),
which the runner then builds and hands over as `context.geneval`; readers of stored verdicts
(`harness.suite_store`) take those flags for it too. Without it the flags are not read.

A `Verdict` holds the per-image `score` (what best-of-n curves take the expectation of: GenEval's
0/1 correctness, GenEval 2's Soft-TIFA GM), a `correct` flag (GenEval's verdict; GenEval 2: every
question's most likely answer right, TIFA = 1), a `reason` ("" when correct) and JSON `details`.
The store files verdicts under the evaluator's `name` and `key()` (the settings hash), so one
run's pool can be judged by several evaluators, and curves read the one asked for.

The built-ins are `geneval` (`harness.geneval.suite`; evaluator: the detector backend and the
thresholds of `stepwise run`'s flags) and `geneval2` (`harness.geneval2.suite`; prompts from the
user's copy of the data, `--suite-param data=PATH`; evaluator: Soft-TIFA on Qwen3-VL). Third-party
suites come through the entry-point group `stepwise.suites`, like the other plug-in kinds.

Nothing heavy is imported here: `stepwise list suites` imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "OVERALL_MEANS",
    "EvaluatorContext",
    "Suite",
    "SuiteEvaluator",
    "Verdict",
    "aggregate",
    "check_verdict",
    "intervals",
]

OVERALL_MEANS = ("groups", "prompts")


@dataclass(frozen=True)
class Verdict:
    """A suite evaluator's judgement of one image."""

    score: float  # the per-image figure best-of-n takes the expectation of (higher is better, >= 0)
    correct: bool  # the suite's pass/fail, where it has one (else: score >= its pass mark)
    reason: str = ""  # why not correct ("" when correct)
    details: Mapping[str, Any] = field(default_factory=dict)  # JSON-able, stored with the verdict
    detections: Mapping[str, Any] | None = None  # GenEval: the raw detections (re-scoring without a model)


@dataclass(frozen=True)
class EvaluatorContext:
    """What a run tells a suite's evaluator besides the suite's own params.

    geneval: the GenEval evaluator settings of the run's flags (--backend, --detector, thresholds),
        None when the run's suite is not judged by GenEval's detector.
    batch_size: images per evaluator call. device: the run's --device (None: cuda when available).
    """

    geneval: Any = None  # harness.geneval.evaluator.EvaluatorSpec | None
    batch_size: int = 8
    device: str | None = None


@runtime_checkable
class SuiteEvaluator(Protocol):
    """Judges a batch of images of a suite's prompts. Load models on first use, not when built."""

    name: str  # what the store files verdicts under (evaluations.backend): "mmdet", "hf", "soft-tifa"

    def key(self) -> str:
        """sha256 of everything that decides a verdict (settings and model files)."""
        ...

    def judge(self, images: Sequence[Path], records: Sequence[Mapping[str, Any]]) -> list[Verdict]:
        """One verdict per image, same order; `records[i]` is the suite record of image i's prompt."""
        ...


@runtime_checkable
class Suite(Protocol):
    """A benchmark: prompts with structured records, an evaluator, an aggregation. Built as `cls(params)`."""

    Params: ClassVar[type]  # frozen dataclass of the suite's settings (harness.plugins.param fields)
    description: ClassVar[str]
    overall: ClassVar[str]  # the headline figure's name
    overall_mean: ClassVar[str]  # "groups" or "prompts" (see the module docstring)

    def __init__(self, params: Any) -> None:
        ...

    def records(self) -> list[dict[str, Any]]:
        """The prompts in order; each a JSON object with at least "prompt" (what a generator is given)."""
        ...

    def group(self, record: Mapping[str, Any]) -> str:
        """The category of a prompt (GenEval: its task tag), stored as the prompt's tag."""
        ...

    def evaluator(self, context: EvaluatorContext) -> SuiteEvaluator:
        """The evaluator of this suite's settings and the run's context; builds no model yet."""
        ...


def check_verdict(verdict: Any, where: str) -> Verdict:
    """`verdict` if it is a Verdict with a finite score >= 0; ValueError naming `where` otherwise."""
    if not isinstance(verdict, Verdict):
        raise ValueError(f"{where}: the evaluator returned {type(verdict).__name__}, not a harness.suites.Verdict")
    score = verdict.score
    if isinstance(score, bool) or not isinstance(score, int | float) or not math.isfinite(score) or score < 0:
        raise ValueError(f"{where}: the evaluator's score {score!r} is not a finite number >= 0")
    return verdict


def overall_mean_of(suite: Any) -> Literal["groups", "prompts"]:
    mean = getattr(suite, "overall_mean", "groups")
    if mean not in OVERALL_MEANS:
        raise ValueError(f"suite {type(suite).__name__}: overall_mean must be one of {', '.join(OVERALL_MEANS)}, "
                         f"not {mean!r}")
    return mean  # type: ignore[no-any-return]


def aggregate(per_prompt: np.ndarray | Sequence[float], groups: Sequence[str], *, overall: str = "overall",
              overall_mean: str = "groups") -> dict[str, Any]:
    """The suite's figures from per-prompt values: each group's mean over its prompts, then `overall`.

    per_prompt: (..., P), e.g. (P,) expected scores or (K, P) for K subset sizes. overall_mean
    "groups": the unweighted mean of the group means (GenEval's "overall"); "prompts": the mean over
    all prompts (GenEval 2's Soft-TIFA GM). Floats for 1-D input, else (...) arrays.

    >>> aggregate([1.0, 0.0, 0.5], ["a", "b", "b"])
    {'a': 1.0, 'b': 0.25, 'overall': 0.625}
    >>> aggregate([1.0, 0.0, 0.5], ["a", "b", "b"], overall="gm", overall_mean="prompts")
    {'a': 1.0, 'b': 0.25, 'gm': 0.5}
    """
    import numpy as np

    from harness.scaling import task_scores

    if overall_mean not in OVERALL_MEANS:
        raise ValueError(f"overall_mean must be one of {', '.join(OVERALL_MEANS)}, not {overall_mean!r}")
    figures = task_scores(per_prompt, groups)  # "groups": its overall, the very floats GenEval's tables show
    mean = figures.pop("overall")
    if overall_mean == "prompts":
        mean = np.asarray(per_prompt, dtype=float).mean(axis=-1)
        mean = float(mean) if np.ndim(mean) == 0 else mean
    figures[overall] = mean
    return figures


def intervals(per_prompt: np.ndarray, groups: Sequence[str], rng: np.random.Generator, n_boot: int = 2000,
              level: float = 0.95, *, overall: str = "overall", overall_mean: str = "groups") -> dict[str, Any]:
    """Percentile bootstrap intervals of `aggregate`'s figures (prompts resampled within each group,
    so every resample keeps the groups' sizes; the overall figure is then a fixed weighting of the
    group means: equal weights, or the groups' shares of the prompts)."""
    import numpy as np

    from harness.scaling import bootstrap_intervals, bootstrap_means

    if overall_mean == "groups":
        out = bootstrap_intervals(per_prompt, groups, rng, n_boot=n_boot, level=level)
        out[overall] = out.pop("overall")
        return out
    names, means, sizes = bootstrap_means(per_prompt, groups, rng, n_boot)  # (B, R, T)
    weights = sizes / sizes.sum()
    stats = np.concatenate([means, (means * weights).sum(axis=-1, keepdims=True)], axis=-1)
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2], axis=0)
    values = np.asarray(per_prompt, dtype=float)
    keys = [*names, overall]
    if values.ndim == 1:
        return {name: (float(low[0, i]), float(high[0, i])) for i, name in enumerate(keys)}
    lead = values.shape[:-1]
    return {name: (low[:, i].reshape(lead), high[:, i].reshape(lead)) for i, name in enumerate(keys)}
