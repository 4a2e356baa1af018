"""The diffusers schedulers the `diffusers` generator steps, what each one's noise level is, and x0.

Each supported scheduler is listed with how its state says how noisy a sample is, which decides
the formula of the model's prediction of the clean latents (x0, the step previews):

    "alphas"  DDIM, PNDM, DDPM: samples in DDPM space, noise level alphas_cumprod[t] at the
              (integer) timestep t: x_t = sqrt(a) x0 + sqrt(1 - a) noise
    "ve"      Euler, Euler ancestral, LMS: samples in sigma space, x = x0 + sigma noise with
              sigma = sigmas[step index]; the model sees x / sqrt(sigma^2 + 1)
    "dpm"     DPM-Solver++ and UniPC: alpha_t, sigma_t from the scheduler's own
              `_sigma_to_alpha_sigma_t(sigmas[step index])`, which is the flow-matching
              (1 - sigma, sigma) when `use_flow_sigmas` is set (Sana)
    "flow"    flow-matching Euler (SD3, FLUX): x = (1 - sigma) x0 + sigma noise

and whether `step` draws noise (a *stochastic* sampler: then a candidate's later noise comes from
its own generator too, and a search strategy can `fork` a trajectory). Deterministic ones are
refused by `fork`: continuing a copy with another seed would give the same image.

Other schedulers are refused (with this list): for one not listed we could not say whether it
draws noise, nor what its x0 is. Second-order ones (Heun, KDPM2) are left out: they take two
model calls per step, and their state between the two is not a finished step.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["SCHEDULERS", "SchedulerKind", "build_scheduler", "check_choice", "is_flow", "is_stochastic", "kind_of",
           "parse_overrides", "predict_x0", "step_kwargs"]

Space = Literal["alphas", "ve", "dpm", "flow"]


@dataclass(frozen=True)
class SchedulerKind:
    space: Space
    stochastic: Callable[[Mapping[str, Any]], bool]  # from the scheduler's config
    note: str = ""  # when it draws noise, for messages


def _never(_: Mapping[str, Any]) -> bool:
    return False


def _always(_: Mapping[str, Any]) -> bool:
    return True


SCHEDULERS: dict[str, SchedulerKind] = {
    "DDIMScheduler": SchedulerKind("alphas", _never, "eta 0, as the pipelines call it"),
    "PNDMScheduler": SchedulerKind("alphas", _never),
    "DDPMScheduler": SchedulerKind("alphas", _always),
    "EulerDiscreteScheduler": SchedulerKind("ve", _never, "s_churn 0, as the pipelines call it"),
    "EulerAncestralDiscreteScheduler": SchedulerKind("ve", _always),
    "LMSDiscreteScheduler": SchedulerKind("ve", _never),
    "DPMSolverMultistepScheduler": SchedulerKind(
        "dpm", lambda c: str(c.get("algorithm_type", "")).startswith("sde"),
        "stochastic with algorithm_type=sde-dpmsolver++ or sde-dpmsolver"),
    "UniPCMultistepScheduler": SchedulerKind("dpm", _never),
    "FlowMatchEulerDiscreteScheduler": SchedulerKind(
        "flow", lambda c: bool(c.get("stochastic_sampling", False)), "stochastic with stochastic_sampling=true"),
}


def supported_list() -> str:
    return ", ".join(SCHEDULERS)


def kind_of(scheduler: Any) -> SchedulerKind:
    name = type(scheduler).__name__
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler {name} is not supported by the diffusers generator; supported: "
                         f"{supported_list()}")
    return SCHEDULERS[name]


def is_stochastic(scheduler: Any) -> bool:
    """Whether `scheduler.step` draws noise (then the row's generator is passed to it)."""
    return kind_of(scheduler).stochastic(scheduler.config)


def is_flow(scheduler: Any) -> bool:
    """Whether the scheduler integrates a flow-matching model (velocity prediction on x = (1-s) x0 + s noise)."""
    config = scheduler.config
    return kind_of(scheduler).space == "flow" or bool(config.get("use_flow_sigmas", False))


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """KEY=VALUE texts -> config values; VALUE is read as JSON (true, 3.0, "x") and else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"scheduler_config: {item!r} is not KEY=VALUE")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        out[key.strip()] = value
    return out


def check_choice(name: str | None, overrides: Mapping[str, Any], current: str) -> str:
    """The scheduler class to sample with (`name`, else the pipeline's `current`), refusing unsupported
    classes and config keys the class does not have; needs no weights (checked before loading them)."""
    import diffusers

    chosen = name or current
    if chosen not in SCHEDULERS:
        what = f"scheduler={chosen}" if name else f"the pipeline's scheduler {chosen}"
        raise ValueError(f"{what} is not supported by the diffusers generator; supported: {supported_list()}")
    accepted = set(inspect.signature(getattr(diffusers, chosen).__init__).parameters) - {"self", "kwargs"}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ValueError(f"scheduler_config: {chosen} has no setting {', '.join(unknown)}; its settings: "
                         f"{', '.join(sorted(accepted))}")
    return chosen


def build_scheduler(current: Any, name: str | None, overrides: Mapping[str, Any]) -> Any:
    """The scheduler to sample with: `current` (the pipeline's), or class `name` made from its config,
    with `overrides` applied to the config."""
    import diffusers

    chosen = check_choice(name, overrides, type(current).__name__)
    if name is None and not overrides:
        return current
    return getattr(diffusers, chosen).from_config(current.config, **overrides)


def step_kwargs(scheduler: Any, generator: torch.Generator) -> dict[str, Any]:
    """What `step` gets besides (output, t, sample): the row's generator wherever `step` takes one.

    The SD, SDXL, PixArt and Sana pipelines pass their generator the same way
    (`prepare_extra_step_kwargs`); SD3 and FLUX pass none, which matters only for
    `stochastic_sampling`, where they would draw from torch's global stream instead.
    """
    if "generator" in inspect.signature(scheduler.step).parameters:
        return {"generator": generator}
    return {}


def predict_x0(scheduler: Any, sample: torch.Tensor, output: torch.Tensor, timestep: torch.Tensor,
               index: int | None) -> torch.Tensor:
    """The model's prediction of the clean latents (float32) from one step's `output` on `sample`.

    `sample` is the latents before the step (not scaled for the model), `timestep` the step's
    timestep and `index` its position in the scheduler's sigmas (the step index it just used; None
    for the "alphas" schedulers, which have none).
    """
    x0 = _raw_x0(scheduler, sample.float(), output.float(), timestep, index)
    config = scheduler.config
    # As the schedulers finish their own x0: Imagen's dynamic thresholding, or clipping (DDIM, DDPM).
    if config.get("thresholding", False):
        return scheduler._threshold_sample(x0)
    if config.get("clip_sample", False):
        bound = config.get("clip_sample_range", 1.0)
        return x0.clamp(-bound, bound)
    return x0


def _raw_x0(scheduler: Any, x: torch.Tensor, out: torch.Tensor, timestep: torch.Tensor, index: int | None
            ) -> torch.Tensor:
    import torch

    space = kind_of(scheduler).space
    prediction = scheduler.config.get("prediction_type", "flow_prediction" if space == "flow" else "epsilon")
    if prediction == "sample":
        return out
    if space == "flow":
        sigma = scheduler.sigmas[index].to(x.device, torch.float32)
        return x - sigma * out
    if space == "ve":  # Euler's own pred_original_sample formulas
        sigma = scheduler.sigmas[index].to(x.device, torch.float32)
        if prediction == "epsilon":
            return x - sigma * out
        if prediction == "v_prediction":
            return out * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)
        raise ValueError(f"{type(scheduler).__name__}: no x0 for prediction_type {prediction!r}")
    if space == "alphas":
        alpha_prod = scheduler.alphas_cumprod[int(timestep)].to(x.device, torch.float32)
        alpha, sigma = alpha_prod**0.5, (1 - alpha_prod) ** 0.5
    else:
        alpha, sigma = (v.to(x.device, torch.float32)
                        for v in scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[index]))
    if prediction == "epsilon":
        return (x - sigma * out) / alpha
    if prediction == "v_prediction":
        return alpha * x - sigma * out
    if prediction == "flow_prediction":
        return x - sigma * out
    raise ValueError(f"{type(scheduler).__name__}: no x0 for prediction_type {prediction!r}")
