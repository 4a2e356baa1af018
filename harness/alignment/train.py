"""The DPO trainer: policy vs frozen reference on preference pairs, resumable step for step.

Defaults are the official run's (Image-Generation-CoT scripts/dpo.yaml, train_dpo.py): one epoch,
batch size 10, AdamW (lr 1e-5, betas 0.9/0.999, eps 1e-8, weight decay 0.01 except on parameters
whose names contain "bias", "layer_norm.weight", "mlm_ln.weight" or "embeddings.weight" — the
official list, which in Show-o's names leaves only the biases undecayed), transformers'
`get_scheduler("cosine")` with 10% linear warmup over all optimizer steps, β 0.1, no gradient
clipping, pairs in file order, prompt dropout 0.1.

Reward-model guidance (the paper's sec. 2.4, `reward_verifier`): the official code's `reward_coef`
term is `-log p` of an ORM answer on a fresh policy sample, built with `torch.tensor(...)`: it
carries no gradient and only shifts the logged loss. We implement the described method instead as
ONLINE DPO from a verifier plug-in, which does train: per micro-batch the policy samples
`reward_samples` images per batch prompt, the verifier's best and worst make an online pair, and
the micro-batch's objective is `dpo_loss(curated pairs) + reward_coef * dpo_loss(online pairs)`
(harness.alignment.guidance). A step's `loss` stays the curated pairs' DPO loss; `online_loss`,
`online_pairs` and `online_reward` (the verifier's mean score of the step's samples) sit beside it.

Each micro-batch runs the policy once over its chosen and rejected images together (the
official `concatenated_forward`) and the reference likewise under `torch.no_grad()`. The random
draws of a pair (Show-o's token masks, the prompt dropout) come from a CPU generator seeded by
(seed, epoch, pair index), so they do not depend on batch composition or on where a run stopped.

The output folder OUT is the generator's own checkpoint layout plus two files:

    OUT/stepwise-alignment.json   manifest: data file sha256, parameters, parent model and its file
                                  hashes, steps done, metrics, timing (device, seconds per step and
                                  per epoch as measured here; see `manifest`)
    OUT/trainer_state.pt          step, optimizer, scheduler and RNG states, per-step metrics

Every checkpoint (each `save_every` steps, at `stop_after`, at the end) is written whole to
OUT.partial, then swapped in (OUT -> OUT.previous, OUT.partial -> OUT, OUT.previous removed); a
run killed between the two renames finds OUT.previous and takes it back. Resuming reloads the
policy from OUT and the states from trainer_state.pt and skips the steps done: training 2 steps,
stopping and resuming gives the same weights as training straight through (tested), with reward
guidance too (its samples are seeded per pair and candidate; the verifier must be deterministic).
A guided run records reward_verifier, reward_params, reward_coef and reward_samples among the
manifest's parameters, a --reward-prompts file in its data (path, sha256, prompts: resuming compares
the hash) and the online metrics in last/mean; an unguided run's manifest is as before.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The settings live in harness.alignment.config (shared with the reward guidance); re-exported here,
# where callers have always found them.
from harness.alignment.config import SCHEDULERS, AlignmentError, DPOConfig, check_config, draw_pair

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.alignment.models import Family, ImageDraw
    from harness.alignment.pairs import PreferencePair

__all__ = ["MANIFEST_NAME", "SCHEDULERS", "STATE_NAME", "AlignmentError", "DPOConfig", "DPOTrainer", "check_config",
           "draw_pair", "finished_checkpoint", "train_dpo"]

MANIFEST_NAME = "stepwise-alignment.json"
STATE_NAME = "trainer_state.pt"
FORMAT = "stepwise-alignment"
FORMAT_VERSION = 1
#: the official optimizer groups: a parameter whose name contains one of these gets no weight decay
NO_DECAY = ("bias", "layer_norm.weight", "mlm_ln.weight", "embeddings.weight")


# ---------------------------------------------------------------------------------------------
# the plan: which pairs make which step


@dataclass(frozen=True)
class Plan:
    """Micro-batches of pair indices per epoch, grouped into optimizer steps."""

    pairs: int
    batch_size: int
    grad_accumulation: int
    epochs: int

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.pairs / self.batch_size)

    @property
    def steps_per_epoch(self) -> int:
        # a last, shorter accumulation group still makes a step (as the last short batch does)
        return math.ceil(self.batches_per_epoch / self.grad_accumulation)

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def steps(self, order: Sequence[int]) -> list[list[list[int]]]:
        """One epoch's steps, each a list of micro-batches of pair indices, for pairs taken in `order`."""
        batches = [list(order[i:i + self.batch_size]) for i in range(0, len(order), self.batch_size)]
        return [batches[i:i + self.grad_accumulation] for i in range(0, len(batches), self.grad_accumulation)]


def epoch_order(pairs: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    """File order, or a permutation seeded by (seed, epoch)."""
    if not shuffle:
        return list(range(pairs))
    import numpy as np

    return [int(i) for i in np.random.default_rng([seed, epoch]).permutation(pairs)]


def pair_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of a pair's draws in an epoch: stable across runs, batchings and Python versions."""
    digest = hashlib.sha256(f"stepwise-dpo:{seed}:{epoch}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


# ---------------------------------------------------------------------------------------------
# checkpoint files


def _sibling(out: Path, suffix: str) -> Path:
    return out.with_name(out.name + suffix)


def recover_checkpoint(out: Path) -> None:
    """Finish a checkpoint swap a killed run left half done (see the module docstring)."""
    previous = _sibling(out, ".previous")
    if previous.is_dir():
        if out.exists():
            shutil.rmtree(previous)  # the new checkpoint was already in place
        else:
            os.replace(previous, out)


def write_checkpoint(out: Path, write: Callable[[Path], None]) -> None:
    """Have `write` fill a fresh OUT.partial, then swap it in for OUT."""
    partial, previous = _sibling(out, ".partial"), _sibling(out, ".previous")
    if partial.exists():
        shutil.rmtree(partial)  # left by a killed run
    partial.mkdir(parents=True)
    write(partial)
    if out.exists():
        os.replace(out, previous)
    os.replace(partial, out)
    if previous.exists():
        shutil.rmtree(previous)


def read_manifest(out: Path) -> dict[str, Any] | None:
    """OUT's manifest, None when OUT is absent or empty; AlignmentError when OUT holds something else."""
    if not out.exists():
        return None
    if not out.is_dir():
        raise AlignmentError(f"{out}: exists and is not a folder")
    path = out / MANIFEST_NAME
    if not path.is_file():
        if any(out.iterdir()):
            raise AlignmentError(f"{out} holds files but no {MANIFEST_NAME}: not a DPO checkpoint; write to a new or "
                                 "empty -o")
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise AlignmentError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise AlignmentError(f"{path}: not a {FORMAT} manifest")
    return manifest


def _differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """What differs between a checkpoint's manifest and this run, by key (the pairs file may have moved)."""
    def unplaced(value: Any) -> Any:
        return {k: unplaced(v) for k, v in value.items() if k != "path"} if isinstance(value, dict) else value

    def comparable(manifest: Mapping[str, Any]) -> dict[str, Any]:
        data = unplaced(dict(manifest.get("data") or {}))
        return {"generator": manifest.get("generator"), "data": data, "parameters": manifest.get("parameters"),
                "parent": manifest.get("parent")}

    there, now = comparable(found), comparable(expected)
    return [f"{key}: {there[key]!r} there, {now[key]!r} now" for key in now if there[key] != now[key]]


def _rng_states() -> dict[str, Any]:
    import torch

    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


# ---------------------------------------------------------------------------------------------
# the trainer


@dataclass
class StepMetrics:
    """One optimizer step's means over its pairs."""

    step: int
    loss: float
    chosen_reward: float
    rejected_reward: float
    margin: float  # chosen_reward - rejected_reward
    accuracy: float  # share of pairs with margin > 0
    lr: float
    # reward guidance (defaults: steps without it, and histories written before it existed)
    online_loss: float | None = None  # DPO loss of the step's online pairs (mean over them); None: none
    online_pairs: int = 0
    online_reward: float | None = None  # the verifier's mean score of all the step's policy samples
    seconds: float = 0.0  # wall-clock time of the step (forward, backward, optimizer); 0.0 in older histories


#: the StepMetrics fields that only guided runs report
ONLINE_METRICS = ("online_loss", "online_pairs", "online_reward")


class DPOTrainer:
    """Build with a DPOConfig (loads pairs, models, optimizer and any checkpoint), then `train()`."""

    def __init__(self, config: DPOConfig, family: Family | None = None) -> None:
        """`family` may be passed in to reuse loaded models (tests); it must match config.generator/params."""
        from harness.alignment.models import load_family
        from harness.alignment.pairs import check_images, read_pairs
        from harness.hashing import file_sha256

        check_config(config)
        self.config = config
        self.pairs = read_pairs(config.pairs)
        self.data: dict[str, Any] = {"path": str(config.pairs.resolve()), "sha256": file_sha256(config.pairs),
                                     "pairs": len(self.pairs)}
        reward_prompts = None
        if config.reward_verifier is not None:
            from harness.alignment.guidance import check_verifier, read_reward_prompts

            check_verifier(config.reward_verifier, config.reward_params)  # before any model is loaded
            if config.reward_prompts is not None:
                reward_prompts = read_reward_prompts(config.reward_prompts)
                self.data["reward_prompts"] = {"path": str(config.reward_prompts.resolve()),
                                               "sha256": file_sha256(config.reward_prompts),
                                               "prompts": len(reward_prompts)}
        recover_checkpoint(config.out)
        self.previous = read_manifest(config.out)
        if self.previous is not None and not config.resume:
            steps = self.previous.get("steps") or {}
            raise AlignmentError(f"{config.out} already holds a DPO checkpoint ({steps.get('done')} of "
                                 f"{steps.get('total')} steps done); pass --resume to continue it, or write to "
                                 "another -o")
        check_images(self.pairs, config.pairs)
        self.family = family if family is not None else load_family(config.generator, dict(config.params))
        self.plan = Plan(len(self.pairs), config.batch_size, config.grad_accumulation, config.epochs)
        self.parent = self.family.parent()
        if self.previous is not None:
            changed = _differences(self.previous, self._identity())
            if changed:
                raise AlignmentError(f"{config.out} was trained with other settings; resume it with the same ones "
                                     f"or write to another -o: {'; '.join(changed)}")
        self.policy = (self.family.load_policy(config.out) if self.previous is not None
                       else self.family.new_policy())
        self.optimizer = self._optimizer()
        self.scheduler = self._scheduler()
        self.step = 0
        self.history: list[StepMetrics] = []
        if self.previous is not None:
            self._load_state()
        self.guidance = None
        if config.reward_verifier is not None:
            from harness.alignment.guidance import RewardGuidance

            self.guidance = RewardGuidance(config, self.family, reward_prompts)

    # -- setup -------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        """What decides the weights: compared with a checkpoint's manifest before resuming it."""
        return {"generator": self.config.generator, "data": self.data,
                "parameters": self.config.training_parameters(), "parent": self.parent}

    def _optimizer(self) -> torch.optim.Optimizer:
        import torch

        named = self.family.trainable(self.policy)
        decay = [p for name, p in named if not any(key in name for key in NO_DECAY)]
        no_decay = [p for name, p in named if any(key in name for key in NO_DECAY)]
        groups = [{"params": decay, "weight_decay": self.config.weight_decay},
                  {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.config.lr, betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=self.config.weight_decay)

    def _scheduler(self) -> Any:
        from transformers import get_scheduler

        total = self.plan.total_steps
        return get_scheduler(self.config.scheduler, optimizer=self.optimizer,
                             num_warmup_steps=int(self.config.warmup_ratio * total), num_training_steps=total)

    def _load_state(self) -> None:
        import torch

        path = self.config.out / STATE_NAME
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as err:
            raise AlignmentError(f"{path}: cannot read the trainer state ({err})") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state["rng"])
        self.step = int(state["step"])
        self.history = [StepMetrics(**row) for row in state["history"]]

    # -- log-likelihoods ---------------------------------------------------------------------

    def _autocast(self) -> Any:
        import torch

        return torch.autocast(device_type=self.family.device.type, dtype=torch.bfloat16,
                              enabled=self.config.mixed_precision == "bf16")

    def pair_draws(self, batch: Sequence[PreferencePair], epoch: int) -> tuple[list[ImageDraw], list[ImageDraw]]:
        """(chosen draws, rejected draws) of a batch's pairs in `epoch`."""
        chosen, rejected = [], []
        for pair in batch:
            first, second = draw_pair(self.family, self.config, pair_seed(self.config.seed, epoch, pair.index))
            chosen.append(first)
            rejected.append(second)
        return chosen, rejected

    def batch_tokens(self, batch: Sequence[PreferencePair]) -> torch.Tensor:
        """Image tokens (2B, N): the chosen images, then the rejected ones."""
        from harness.alignment.pairs import load_image

        where = str(self.config.pairs)
        images = ([load_image(p.chosen, p.chosen_sha256, f"{where}:{p.line}") for p in batch]
                  + [load_image(p.rejected, p.rejected_sha256, f"{where}:{p.line}") for p in batch])
        return self.family.image_tokens(images)

    def logps(self, model: nn.Module, batch: Sequence[PreferencePair], tokens: torch.Tensor,
              draws: tuple[list[ImageDraw], list[ImageDraw]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) log-likelihoods (B,) under `model`: one forward over both halves."""
        return self.prompt_logps(model, [p.prompt for p in batch], tokens, draws)

    def prompt_logps(self, model: nn.Module, prompts: Sequence[str], tokens: torch.Tensor,
                     draws: tuple[list[ImageDraw], list[ImageDraw]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(chosen, rejected) log-likelihoods (B,) of B prompts' images `tokens` (2B, N) under `model`."""
        with self._autocast():
            both = self.family.logp(model, [*prompts, *prompts], tokens, [*draws[0], *draws[1]])
        return both[:len(prompts)], both[len(prompts):]

    def margins(self, batch: Sequence[PreferencePair], epoch: int = 0) -> torch.Tensor:
        """(B,) DPO logits (π_c − π_r) − (ref_c − ref_r) of the policy now, with the draws of `epoch`."""
        import torch

        tokens, draws = self.batch_tokens(batch), self.pair_draws(batch, epoch)
        with torch.no_grad():
            policy = self.logps(self.policy, batch, tokens, draws)
            reference = self.logps(self.family.reference, batch, tokens, draws)
        return (policy[0] - policy[1]) - (reference[0] - reference[1])

    # -- training ----------------------------------------------------------------------------

    def _micro_batch(self, batch: Sequence[PreferencePair], epoch: int, share: float) -> dict[str, torch.Tensor]:
        """Forward and backward of one micro-batch; `share` scales its loss within the step."""
        import torch

        from harness.alignment.dpo import dpo_loss

        tokens, draws = self.batch_tokens(batch), self.pair_draws(batch, epoch)
        chosen, rejected = self.logps(self.policy, batch, tokens, draws)
        with torch.no_grad():
            ref_chosen, ref_rejected = self.logps(self.family.reference, batch, tokens, draws)
        loss, chosen_reward, rejected_reward = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.config.beta)
        (loss * share).backward()
        part: dict[str, Any] = {"loss": loss.detach(), "chosen": chosen_reward, "rejected": rejected_reward}
        if self.guidance is not None:
            part.update(self._online(batch, epoch, share))
        return part

    def _online(self, batch: Sequence[PreferencePair], epoch: int, share: float) -> dict[str, Any]:
        """Reward guidance: online pairs from policy samples, `reward_coef * their DPO loss` backward."""
        import torch

        from harness.alignment.dpo import dpo_loss

        assert self.guidance is not None
        online = self.guidance.pairs(self.policy, batch, epoch)
        if online.tokens is None:
            return {"online_loss": None, "online_pairs": 0, "online_scores": online.scores}
        coef = self.config.reward_coef
        with torch.set_grad_enabled(coef > 0):  # coef 0: logged only
            chosen, rejected = self.prompt_logps(self.policy, online.prompts, online.tokens, online.draws)
        with torch.no_grad():
            ref_chosen, ref_rejected = self.prompt_logps(self.family.reference, online.prompts, online.tokens,
                                                         online.draws)
        loss, _, _ = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.config.beta)
        if coef > 0:
            (loss * (coef * share)).backward()
        return {"online_loss": float(loss.detach()), "online_pairs": len(online.prompts),
                "online_scores": online.scores}

    def _optimizer_step(self, step: list[list[int]], epoch: int) -> StepMetrics:
        import time

        import torch

        started = time.perf_counter()
        pairs = sum(len(batch) for batch in step)
        parts = [self._micro_batch([self.pairs[i] for i in batch], epoch, len(batch) / pairs) for batch in step]
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in self.family.trainable(self.policy)],
                                           self.config.max_grad_norm)
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        chosen = torch.cat([part["chosen"] for part in parts]).float()
        rejected = torch.cat([part["rejected"] for part in parts]).float()
        loss = sum(float(part["loss"]) * len(batch) for part, batch in zip(parts, step, strict=True)) / pairs
        online: dict[str, Any] = {}
        if self.guidance is not None:
            count = sum(part["online_pairs"] for part in parts)
            scores = [score for part in parts for score in part["online_scores"]]
            online = {"online_pairs": count,
                      "online_loss": (sum(part["online_loss"] * part["online_pairs"] for part in parts
                                          if part["online_pairs"]) / count) if count else None,
                      "online_reward": sum(scores) / len(scores) if scores else None}
        return StepMetrics(step=self.step + 1, loss=loss, chosen_reward=float(chosen.mean()),
                           rejected_reward=float(rejected.mean()), margin=float((chosen - rejected).mean()),
                           accuracy=float((chosen > rejected).float().mean()), lr=lr, **online,
                           seconds=time.perf_counter() - started)  # the float()s above waited for the device

    def train(self) -> dict[str, Any]:
        """Train until done (or `stop_after`); returns the manifest written with the last checkpoint."""
        from tqdm import tqdm

        total, stop = self.plan.total_steps, self.config.stop_after
        if self.step >= total or (stop is not None and self.step >= stop):
            return self.previous if self.previous is not None else self.save()
        self.policy.train()
        bar = tqdm(total=total, initial=self.step, desc="dpo", unit="step",
                   disable=None if self.config.progress else True)
        try:
            for epoch in range(self.step // self.plan.steps_per_epoch, self.config.epochs):
                steps = self.plan.steps(epoch_order(len(self.pairs), self.config.seed, epoch, self.config.shuffle))
                for number, step in enumerate(steps):
                    if epoch * self.plan.steps_per_epoch + number < self.step:
                        continue  # done before the resume
                    metrics = self._optimizer_step(step, epoch)
                    self.step += 1
                    self.history.append(metrics)
                    bar.update(1)
                    postfix = {"loss": f"{metrics.loss:.4f}", "acc": f"{metrics.accuracy:.2f}"}
                    if self.guidance is not None:
                        postfix["online"] = "-" if metrics.online_loss is None else f"{metrics.online_loss:.4f}"
                    bar.set_postfix(postfix)
                    if self.step == total or self.step == stop:
                        return self.save()
                    if self.config.save_every and self.step % self.config.save_every == 0:
                        self.save()
        finally:
            bar.close()
        raise AssertionError(f"the loop ended at step {self.step} of {total} without reaching its last step")

    # -- saving ------------------------------------------------------------------------------

    def manifest(self) -> dict[str, Any]:
        """The manifest of the checkpoint as it stands (see the module docstring)."""
        from harness import __version__

        guided = self.config.reward_verifier is not None
        # metrics are what training computed (equal on a resumed run); time goes to "timing"
        left_out = {"seconds", *(() if guided else ONLINE_METRICS)}
        last = ({key: value for key, value in asdict(self.history[-1]).items() if key not in left_out}
                if self.history else None)
        keys = ("loss", "chosen_reward", "rejected_reward", "margin", "accuracy", *(ONLINE_METRICS if guided else ()))
        mean = {key: _mean([getattr(m, key) for m in self.history]) for key in keys} if self.history else None
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "stepwise_version": __version__,
                "method": "dpo", **self._identity(),
                "generator_params": dict(self.config.params),
                "steps": {"done": self.step, "total": self.plan.total_steps,
                          "per_epoch": self.plan.steps_per_epoch},
                "finished": self.step >= self.plan.total_steps,
                "metrics": {"last": last, "mean": mean},
                "timing": self.timing()}

    def timing(self) -> dict[str, Any]:
        """Measured speed on this machine: mean seconds per optimizer step and the epoch it implies."""
        import torch

        timed = [m.seconds for m in self.history if m.seconds > 0]
        per_step = sum(timed) / len(timed) if timed else None
        device = self.family.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
        return {"device": name, "measured_steps": len(timed), "seconds_per_step": per_step,
                "seconds_per_epoch": per_step * self.plan.steps_per_epoch if per_step is not None else None}

    def save(self) -> dict[str, Any]:
        """Write the checkpoint (weights, trainer state, manifest) atomically; returns the manifest."""
        import torch

        manifest = self.manifest()
        state = {"step": self.step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": _rng_states(), "history": [asdict(m) for m in self.history]}

        def write(folder: Path) -> None:
            self.family.save(self.policy, folder)
            torch.save(state, folder / STATE_NAME)
            (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")

        write_checkpoint(self.config.out, write)
        self.previous = manifest
        return manifest


def _mean(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None (steps without online pairs have no online loss)."""
    present = [value for value in values if value is not None]
    return sum(present) / len(present) if present else None


# ---------------------------------------------------------------------------------------------
# a finished checkpoint, checked without loading a model

# The keys `DPOTrainer.manifest` writes: a manifest with any other (written by a newer trainer that
# records more of what decides the weights) is left to the trainer itself to judge.
_MANIFEST_KEYS = {"format", "format_version", "stepwise_version", "method", "generator", "data", "parameters",
                  "parent", "generator_params", "steps", "finished", "metrics", "timing"}
_DATA_KEYS = {"path", "sha256", "pairs", "reward_prompts"}


def _same_file(recorded: Any, path: Path | None) -> bool:
    """Whether a manifest's {"path", "sha256", ...} entry (or its absence, None) describes `path` (or none)."""
    from harness.hashing import file_sha256

    if recorded is None or path is None:
        return recorded is None and path is None
    return isinstance(recorded, dict) and path.is_file() and recorded.get("sha256") == file_sha256(path)


def finished_checkpoint(config: DPOConfig) -> dict[str, Any] | None:
    """The manifest of a finished checkpoint at `config.out` trained exactly as `config` says, checked
    without loading a model (data file hashes, parameters, generator params, parent file hashes); None
    when it is absent, unfinished, or anything differs or cannot be checked so (the trainer decides then)."""
    from harness.hashing import file_sha256
    from harness.weights import model_folder

    try:
        manifest = read_manifest(config.out)
    except AlignmentError:
        return None  # the trainer says what is wrong with the folder
    if manifest is None or manifest.get("finished") is not True or set(manifest) - _MANIFEST_KEYS:
        return None
    data = manifest.get("data") or {}
    parent = manifest.get("parent") or {}
    if (manifest.get("method") != "dpo" or manifest.get("generator") != config.generator
            or manifest.get("generator_params") != dict(config.params)
            or manifest.get("parameters") != json.loads(json.dumps(config.training_parameters()))
            or not isinstance(data, dict) or set(data) - _DATA_KEYS or not isinstance(parent, dict)
            or not _same_file(data, config.pairs)
            or not _same_file(data.get("reward_prompts"), config.reward_prompts)):
        return None
    for key, files in parent.items():
        if not key.endswith("_files"):
            continue
        folder = model_folder(str(parent.get(key.removesuffix("_files"), "")))
        if folder is None or not isinstance(files, dict):
            return None
        for name, digest in files.items():
            path = folder / name
            if not path.is_file() or file_sha256(path) != digest:
                return None
    return manifest


def train_dpo(config: DPOConfig) -> dict[str, Any]:
    """Train (or resume) as `config` says; returns the final manifest. Resuming a checkpoint that is
    already finished with these settings returns its manifest without loading a model."""
    if config.resume:
        finished = finished_checkpoint(config)
        if finished is not None:
            return finished
    return DPOTrainer(config).train()
