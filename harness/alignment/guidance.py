"""DPO with reward-model guidance: online preference pairs on policy samples judged by a verifier.

The paper (sec. 2.4) adds "online objectives" to the DPO loss, with the fine-tuned ORM as an
explicit reward model on prompts of the training data. The official train_dpo.py samples one
image per batch prompt, asks the ORM and adds `reward_coef * -log(p)` built with `torch.tensor`:
a constant with no gradient, so it only changes the logged loss. Here the described method is
implemented as ONLINE DPO, which does move the weights. Per micro-batch and per batch pair:

1. the prompt is the pair's own, or with a reward-prompts file (metadata JSONL, as
   `stepwise prompts train` writes) `prompts[pair.index % len(prompts)]`;
2. the CURRENT policy generates K = `reward_samples` candidates through the generator plug-in's
   own `generate()` (`Family.sample`: eval mode, no grad), candidate k seeded by `sample_seed`
   (sha256 of seed, epoch, pair index, k: stable across runs, batchings and resumes);
3. the verifier plug-in scores them; the highest-scored one is chosen, the lowest-scored one
   rejected (`online_pair`, first index on ties); a prompt whose K scores are all equal gives
   no pair;
4. the online pairs' images are decoded and re-encoded to tokens (`Family.image_tokens`), as
   curated pairs are, and their random draws (Show-o's masks, prompt dropout) come from a CPU
   generator seeded by `online_seed`, a stream apart from the curated pairs' `pair_seed`.

The trainer adds `reward_coef * dpo_loss(policy vs frozen reference on the online pairs)` to the
micro-batch's loss (see harness.alignment.train). Verifiers that need GenEval's verdicts
(`needs_verdicts`, e.g. `oracle`) are refused: guidance needs a reward model, not ground truth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image
    from torch import nn

    from harness.alignment.config import DPOConfig
    from harness.alignment.models import Family, ImageDraw
    from harness.alignment.pairs import PreferencePair

__all__ = ["OnlinePairs", "RewardGuidance", "check_verifier", "online_pair", "online_seed", "read_reward_prompts",
           "sample_seed"]


def _seed(text: str) -> int:
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def sample_seed(seed: int, epoch: int, index: int, k: int) -> int:
    """The generation seed of online candidate k for pair `index` in `epoch`."""
    return _seed(f"stepwise-dpo-sample:{seed}:{epoch}:{index}:{k}")


def online_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the draws (masks, prompt dropout) of pair `index`'s online pair in `epoch`."""
    return _seed(f"stepwise-dpo-online:{seed}:{epoch}:{index}")


def online_pair(scores: Sequence[float]) -> tuple[int, int] | None:
    """(chosen, rejected) indices: the highest and the lowest score (first of equals); None when all are equal."""
    if not scores:
        return None
    best = max(range(len(scores)), key=lambda i: scores[i])
    worst = min(range(len(scores)), key=lambda i: scores[i])
    if not scores[best] > scores[worst]:
        return None
    return best, worst


def check_verifier(name: str, params: Mapping[str, str]) -> tuple[Any, Any]:
    """(class, parsed params) of verifier plug-in `name`, built as the runner builds it; nothing is loaded.

    RunError on an unknown name or bad params; AlignmentError for a verifier that needs GenEval's verdicts.
    """
    from harness.alignment.config import AlignmentError
    from harness.runner import _plugin, needs_verdicts

    cls, parsed, _ = _plugin("verifier", name, dict(params))
    if needs_verdicts(cls):
        raise AlignmentError(f"--reward-verifier {name!r} scores by GenEval's verdicts (ground truth), which "
                             "policy samples do not have; reward guidance needs a reward model (e.g. orm, parm, "
                             "clipscore)")
    return cls, parsed


def read_reward_prompts(path: Path) -> list[dict[str, Any]]:
    """The prompts of a metadata JSONL (`stepwise prompts train`), read as `stepwise run --suite FILE` reads it."""
    from harness.alignment.config import AlignmentError
    from harness.prompts import read_metadata

    try:
        samples = read_metadata(path)
    except OSError as err:
        raise AlignmentError(f"cannot read --reward-prompts file {path}: {err.strerror}") from None
    except ValueError as err:  # names the file and line
        raise AlignmentError(f"--reward-prompts: {err}") from None
    if not samples:
        raise AlignmentError(f"--reward-prompts file {path} holds no prompts")
    return samples


@dataclass
class OnlinePairs:
    """One micro-batch's online pairs: prompts, tokens (2P, N: chosen then rejected), draws; every score."""

    prompts: list[str]
    tokens: torch.Tensor | None  # None when no prompt gave a pair
    draws: tuple[list[ImageDraw], list[ImageDraw]]
    scores: list[float]  # the verifier's scores of all the micro-batch's samples


class RewardGuidance:
    """The verifier and prompts of a guided run; `pairs()` makes a micro-batch's online pairs."""

    def __init__(self, config: DPOConfig, family: Family, prompts: Sequence[Mapping[str, Any]] | None) -> None:
        from harness.runner import instantiate

        assert config.reward_verifier is not None
        cls, parsed = check_verifier(config.reward_verifier, config.reward_params)
        self.config = config
        self.family = family
        self.prompts = list(prompts) if prompts is not None else None
        self.needs_previews = bool(getattr(cls, "needs_previews", False))
        self.verifier = instantiate("verifier", config.reward_verifier, cls, parsed)

    def prompt_of(self, pair: PreferencePair) -> tuple[str, Mapping[str, Any]]:
        """The prompt (and its metadata) the policy samples for `pair`."""
        if self.prompts is None:
            return pair.prompt, {}
        sample = self.prompts[pair.index % len(self.prompts)]
        return str(sample["prompt"]), sample

    def pairs(self, policy: nn.Module, batch: Sequence[PreferencePair], epoch: int) -> OnlinePairs:
        """Sample K candidates per batch pair with `policy`, score them, keep best vs worst."""
        from harness.alignment.config import draw_pair
        from harness.plugins import GenerationRequest

        config = self.config
        asked = [self.prompt_of(pair) for pair in batch]
        requests = [GenerationRequest(prompt, tuple(sample_seed(config.seed, epoch, pair.index, k)
                                                    for k in range(config.reward_samples)),
                                      metadata=metadata, previews=self.needs_previews)
                    for pair, (prompt, metadata) in zip(batch, asked, strict=True)]
        results = self.family.sample(policy, requests)
        prompts: list[str] = []
        chosen: list[Image] = []
        rejected: list[Image] = []
        draws: tuple[list[ImageDraw], list[ImageDraw]] = ([], [])
        scores: list[float] = []
        for pair, request, result in zip(batch, requests, results, strict=True):
            judged = self.verifier.score(request.prompt, list(result.images),
                                         [list(p) for p in result.previews] if self.needs_previews else None)
            values = [float(s.score) for s in judged]
            scores.extend(values)
            picked = online_pair(values)
            if picked is None:
                continue
            prompts.append(request.prompt)
            chosen.append(result.images[picked[0]])
            rejected.append(result.images[picked[1]])
            first, second = draw_pair(self.family, config, online_seed(config.seed, epoch, pair.index))
            draws[0].append(first)
            draws[1].append(second)
        tokens = self.family.image_tokens(chosen + rejected) if prompts else None
        return OnlinePairs(prompts=prompts, tokens=tokens, draws=draws, scores=scores)
