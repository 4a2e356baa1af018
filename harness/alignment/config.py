"""What a DPO training run is told (`DPOConfig`), its checks, and the pair draws it decides.

Shared by the trainer (`harness.alignment.train`) and the reward guidance it uses
(`harness.alignment.guidance`); kept apart from both so that neither imports the other's module
for its settings (the trainer uses the guidance, never the reverse).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from harness.alignment.models import Family, ImageDraw

__all__ = ["SCHEDULERS", "AlignmentError", "DPOConfig", "check_config", "draw_pair"]

#: transformers schedules that need only warmup and total steps
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")


class AlignmentError(ValueError):
    """Settings or an output folder that training cannot go on with; the message says what to change."""


@dataclass(frozen=True)
class DPOConfig:
    """Everything `stepwise align dpo` is told. The fields up to `mixed_precision` decide the result
    (a resumed run must repeat them); the rest only say how this invocation runs."""

    generator: str  # "showo" or "janus"
    pairs: Path
    out: Path
    params: Mapping[str, str] = field(default_factory=dict)  # the generator's --param values
    beta: float = 0.1
    lr: float = 1e-5
    batch_size: int = 10
    epochs: int = 1
    grad_accumulation: int = 1
    seed: int = 0
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    scheduler: str = "cosine"
    max_grad_norm: float | None = None
    cond_dropout: float = 0.1
    min_masking_rate: float = 0.0
    shared_mask: bool = False  # chosen and rejected share one mask and one dropout draw
    shuffle: bool = False  # shuffle pairs per epoch (seeded); the official loader keeps file order
    mixed_precision: Literal["no", "bf16"] = "no"
    # reward-model guidance (harness.alignment.guidance): online DPO pairs judged by this verifier
    reward_verifier: str | None = None  # a verifier plug-in name ("orm", "parm", "clipscore", ...)
    reward_params: Mapping[str, str] = field(default_factory=dict)  # its --param values
    reward_coef: float = 0.1  # the official config's reward_coef: weight of the online DPO loss
    reward_samples: int = 2  # policy samples per prompt; best vs worst make the online pair
    reward_prompts: Path | None = None  # metadata JSONL of prompts to sample (default: the pairs' prompts)
    # -- how this invocation runs
    resume: bool = False  # continue OUT's checkpoint (else OUT must not hold one)
    save_every: int = 0  # optimizer steps between checkpoints; 0: only at the end (and at stop_after)
    stop_after: int | None = None  # stop (with a checkpoint) once this many steps are done in total
    progress: bool = True

    def training_parameters(self) -> dict[str, Any]:
        """The fields that decide the trained weights (recorded; compared on resume)."""
        names = ("beta", "lr", "batch_size", "epochs", "grad_accumulation", "seed", "weight_decay", "warmup_ratio",
                 "scheduler", "max_grad_norm", "cond_dropout", "min_masking_rate", "shared_mask", "shuffle",
                 "mixed_precision")
        values = asdict(self)
        recorded = {name: values[name] for name in names}
        if self.reward_verifier is not None:  # absent: no guidance (checkpoints from before it resume)
            recorded.update(reward_verifier=self.reward_verifier,
                            reward_params=dict(sorted((str(k), str(v)) for k, v in self.reward_params.items())),
                            reward_coef=self.reward_coef, reward_samples=self.reward_samples)
        return recorded


def check_config(config: DPOConfig) -> None:
    """AlignmentError listing every value out of range."""
    problems = []
    if config.beta <= 0:
        problems.append(f"beta must be > 0, got {config.beta}")
    if config.lr <= 0:
        problems.append(f"lr must be > 0, got {config.lr}")
    for name in ("batch_size", "epochs", "grad_accumulation"):
        if getattr(config, name) < 1:
            problems.append(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("warmup_ratio", "cond_dropout", "min_masking_rate"):
        if not 0 <= getattr(config, name) <= 1:
            problems.append(f"{name} must lie in [0, 1], got {getattr(config, name)}")
    if config.weight_decay < 0:
        problems.append(f"weight_decay must be >= 0, got {config.weight_decay}")
    if config.scheduler not in SCHEDULERS:
        problems.append(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {config.scheduler!r}")
    if config.max_grad_norm is not None and config.max_grad_norm <= 0:
        problems.append(f"max_grad_norm must be > 0 (or unset), got {config.max_grad_norm}")
    if config.mixed_precision not in ("no", "bf16"):
        problems.append(f"mixed_precision must be 'no' or 'bf16', got {config.mixed_precision!r}")
    if config.save_every < 0:
        problems.append(f"save_every must be >= 0, got {config.save_every}")
    if config.stop_after is not None and config.stop_after < 1:
        problems.append(f"stop_after must be >= 1, got {config.stop_after}")
    if config.reward_samples < 2:
        problems.append(f"--reward-samples must be >= 2 (best vs worst make a pair), got {config.reward_samples}")
    if not config.reward_coef >= 0:
        problems.append(f"--reward-coef must be >= 0, got {config.reward_coef}")
    if config.reward_verifier is None:
        defaults = DPOConfig(generator=config.generator, pairs=config.pairs, out=config.out)
        unused = [flag for flag, given in (
            ("--reward-param", bool(config.reward_params)), ("--reward-prompts", config.reward_prompts is not None),
            ("--reward-samples", config.reward_samples != defaults.reward_samples),
            ("--reward-coef", config.reward_coef != defaults.reward_coef)) if given]
        problems.extend(f"{flag} needs --reward-verifier" for flag in unused)
    if problems:
        raise AlignmentError("; ".join(problems))




def draw_pair(family: Family, config: DPOConfig, seed: int) -> tuple[ImageDraw, ImageDraw]:
    """A pair's (chosen, rejected) draws from a CPU generator seeded by `seed`; one shared with shared_mask."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    first = family.draw(generator, config.cond_dropout, config.min_masking_rate)
    return first, (first if config.shared_mask else family.draw(generator, config.cond_dropout,
                                                                 config.min_masking_rate))


