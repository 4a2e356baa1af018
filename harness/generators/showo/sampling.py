"""Show-o's MaskGIT decoding loop (the reference's `Showo.t2i_generate`), with per-candidate randomness.

All N image tokens start masked. Each step:

  1. one forward pass over the batch (cond rows, then, with guidance, the same rows with the
     unconditional text prefix); logits of the image positions over the image-token columns;
     guided logits `(1 + w) * cond - w * uncond`;
  2. a token is sampled at every position from softmax(logits); known positions keep theirs;
  3. `mask_len = max(1, min(unknown - 1, floor(N * cos(pi/2 * (step + 1) / T))))` positions are
     masked again: those with the lowest confidence `log p(token) + temperature * gumbel`, where
     the temperature anneals as the reference's does, `temperature = temperature * (1 - ratio)`
     applied to the running value each step (so it is the product of all factors so far);
  4. the full prediction of the step (`sampled_ids`: known tokens plus this step's samples) is
     kept as that step's preview; the last step's is the result.

Different from the reference on purpose: each candidate (row) draws its categorical samples and
its Gumbel noise from its own `torch.Generator` seeded with its seed, by inverse CDF on uniforms
(`harness.generators.seeding`), instead of `torch.multinomial` and `uniform_` on one generator for
the whole batch. So a candidate's tokens do not depend on which other candidates share its batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from harness.generators.seeding import row_uniform, sample_rows

__all__ = ["MaskGitResult", "mask_lengths", "masked_counts", "maskgit_generate"]

#: the reference's clamp inside log(): log(t.clamp(min=1e-20))
_LOG_EPS = 1e-20


@dataclass(frozen=True)
class MaskGitResult:
    """Codebook ids (not vocabulary ids) per row."""

    tokens: torch.Tensor  # (B, N): the last step's full prediction
    steps: list[torch.Tensor]  # per step, (B, N) full prediction (the step previews decode these)
    forward_passes: int  # batched forward passes run (one per step)


def mask_lengths(unknown: torch.Tensor, num_tokens: int, step: int, steps: int) -> torch.Tensor:
    """How many positions each row masks again after `step`: (B,) from its unknown counts (B,).

    The cosine schedule is computed as the reference computes it (a float32 tensor on the CPU), so
    that `floor(N * cos(...))` lands on the same integer."""
    ratio = torch.tensor(1.0 * (step + 1) / steps)
    target = (num_tokens * torch.cos(ratio * math.pi * 0.5)).floor().to(unknown.device)
    return torch.clamp(torch.minimum(unknown.to(target.dtype) - 1, target), min=1).long()


def masked_counts(num_tokens: int, steps: int) -> list[int]:
    """Masked positions left after each step when starting from all `num_tokens` masked (ties aside)."""
    counts = []
    unknown = torch.tensor([num_tokens])
    for step in range(steps):
        unknown = mask_lengths(unknown, num_tokens, step, steps)
        counts.append(int(unknown[0]))
    return counts


def _log(t: torch.Tensor) -> torch.Tensor:
    return torch.log(t.clamp(min=_LOG_EPS))


def _gumbel(uniform: torch.Tensor) -> torch.Tensor:
    """The reference's gumbel_noise from given uniforms: -log(-log(u)), both logs clamped at 1e-20."""
    return -_log(-_log(uniform))


def maskgit_generate(
    image_logits: Callable[[torch.Tensor], torch.Tensor],
    cond_ids: torch.Tensor,
    uncond_ids: torch.Tensor | None,
    generators: Sequence[torch.Generator],
    *,
    num_tokens: int,
    text_len: int,
    image_token_offset: int,
    mask_id: int,
    steps: int = 18,
    guidance: float = 0.0,
    temperature: float = 1.0,
) -> MaskGitResult:
    """Decode the masked image tokens of `cond_ids` (B, L) in `steps` steps.

    `image_logits(ids)` runs the transformer on (R, L) ids (with the attention mask of exactly those
    rows: B rows without guidance, 2B with) and returns float logits (R, N, codebook_size) of the N
    image positions, which are the N positions before the last one. `uncond_ids` (B, L) holds the
    unconditional prompts; its first `text_len` positions (Show-o's max_seq_length + 1) are the
    prefix that replaces the cond rows' text, as in the reference. Guidance 0 runs no uncond rows.
    `generators[i]` is row i's random stream: per step it draws N uniforms for the samples, then N
    for the Gumbel noise.
    """
    if len(generators) != cond_ids.shape[0]:
        raise ValueError(f"{len(generators)} generators for {cond_ids.shape[0]} rows")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    guided = guidance > 0
    if guided and uncond_ids is None:
        raise ValueError("guidance > 0 needs uncond_ids")
    device = cond_ids.device
    ids = cond_ids.clone()
    image = slice(ids.shape[1] - num_tokens - 1, ids.shape[1] - 1)
    # codebook ids of the image positions, mask_id where still unknown
    current = ids[:, image].clone()
    current = torch.where(current == mask_id, mask_id, current - image_token_offset)
    uncond_prefix = uncond_ids[:, :text_len] if guided and uncond_ids is not None else None

    previews: list[torch.Tensor] = []
    sampled = current
    for step in range(steps):
        if uncond_prefix is not None:
            uncond = torch.cat([uncond_prefix, ids[:, text_len:]], dim=1)
            cond_logits, uncond_logits = image_logits(torch.cat([ids, uncond])).chunk(2)
            logits = (1 + guidance) * cond_logits - guidance * uncond_logits
        else:
            logits = image_logits(ids)
        probs = logits.softmax(dim=-1)

        drawn = sample_rows(probs, row_uniform(generators, (num_tokens,), device))
        unknown = current == mask_id
        sampled = torch.where(unknown, drawn, current)

        ratio = 1.0 * (step + 1) / steps
        chosen = torch.gather(probs, -1, sampled[..., None]).squeeze(-1)
        chosen = torch.where(unknown, chosen, torch.finfo(chosen.dtype).max)  # known tokens stay
        mask_len = mask_lengths(unknown.sum(dim=-1), num_tokens, step, steps)
        temperature = temperature * (1.0 - ratio)
        noise = _gumbel(row_uniform(generators, (num_tokens,), device, dtype=chosen.dtype))
        confidence = _log(chosen) + temperature * noise
        cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len[:, None])
        masking = confidence < cut_off

        ids[:, image] = torch.where(masking, mask_id, sampled + image_token_offset)
        current = torch.where(masking, mask_id, sampled)
        previews.append(sampled)
    return MaskGitResult(tokens=sampled, steps=previews, forward_passes=steps)
