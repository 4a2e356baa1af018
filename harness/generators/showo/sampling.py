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

The loop is written as a state (`MaskGitState`: one row per candidate, each with its own step
count, running temperature and random stream) and one step over any subset of its rows
(`maskgit_step`), so that a search can drive rows step by step, prune, copy and fork them, and
`maskgit_generate` (all rows, every step) is that same step in a loop: a row stepped to the end
on its own gets the tokens it gets in a whole batch. Rows of one call may be at different steps.

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

__all__ = ["MaskGitResult", "MaskGitState", "copy_generator", "mask_lengths", "masked_counts", "maskgit_generate",
           "maskgit_start", "maskgit_step"]

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


def copy_generator(generator: torch.Generator) -> torch.Generator:
    """An independent generator in the same state: it draws the very numbers `generator` would."""
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


@dataclass
class MaskGitState:
    """The decoding state of a batch of rows, one per candidate, stepped by `maskgit_step`.

    Row i: its prompt's ids with the image positions as decoded so far (`ids[i]`), the codebook ids
    kept so far (`current[i]`, mask_id where still masked), its last full prediction (`sampled[i]`,
    mask_id everywhere before its first step), how many steps it took, its running temperature
    and its random stream.
    """

    ids: torch.Tensor  # (B, L) vocabulary ids; image positions hold mask_id or token + offset
    current: torch.Tensor  # (B, N) codebook ids, mask_id where still unknown
    sampled: torch.Tensor  # (B, N) the last step's full prediction (codebook ids)
    generators: list[torch.Generator]
    steps_done: list[int]
    temperature: list[float]  # the running temperature after the row's steps so far

    def __len__(self) -> int:
        return len(self.generators)

    def select(self, rows: Sequence[int]) -> MaskGitState:
        """The state of `rows`, in that order; a row named twice gets an independent copy of its
        random stream in the same position (it continues exactly like the first)."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.ids.device)
        seen: set[int] = set()
        generators = []
        for row in rows:
            generators.append(self.generators[row] if row not in seen else copy_generator(self.generators[row]))
            seen.add(row)
        return MaskGitState(self.ids[index], self.current[index], self.sampled[index], generators,
                            [self.steps_done[r] for r in rows], [self.temperature[r] for r in rows])

    def append(self, other: MaskGitState) -> None:
        """Add `other`'s rows after these."""
        self.ids = torch.cat([self.ids, other.ids])
        self.current = torch.cat([self.current, other.current])
        self.sampled = torch.cat([self.sampled, other.sampled])
        self.generators.extend(other.generators)
        self.steps_done.extend(other.steps_done)
        self.temperature.extend(other.temperature)


def maskgit_start(cond_ids: torch.Tensor, generators: Sequence[torch.Generator], *, num_tokens: int,
                  image_token_offset: int, mask_id: int, temperature: float = 1.0) -> MaskGitState:
    """The state before the first step: `cond_ids` (B, L) with masked image positions, row i drawing from
    `generators[i]`."""
    if len(generators) != cond_ids.shape[0]:
        raise ValueError(f"{len(generators)} generators for {cond_ids.shape[0]} rows")
    ids = cond_ids.clone()
    image = slice(ids.shape[1] - num_tokens - 1, ids.shape[1] - 1)
    current = ids[:, image].clone()
    current = torch.where(current == mask_id, mask_id, current - image_token_offset)
    rows = len(generators)
    return MaskGitState(ids, current, current.clone(), list(generators), [0] * rows, [float(temperature)] * rows)


def maskgit_step(
    image_logits: Callable[[Sequence[int], torch.Tensor], torch.Tensor],
    state: MaskGitState,
    rows: Sequence[int],
    uncond_prefix: torch.Tensor | None,
    *,
    num_tokens: int,
    text_len: int,
    image_token_offset: int,
    mask_id: int,
    steps: int,
    guidance: float = 0.0,
) -> None:
    """One decoding step of each of `rows` (distinct; each below `steps`), in place.

    `image_logits(rows, ids)` runs the transformer on ids (R, L) of those rows (2R with guidance:
    the cond rows, then the same rows with the unconditional prefix) and returns float logits
    (R or 2R, N, codebook_size) of the N image positions (the N positions before the last one).
    `uncond_prefix` (1, text_len) is the unconditional text prefix (None without guidance). Row i
    draws N uniforms for its samples and then N for its Gumbel noise from its own generator.
    """
    rows = list(rows)
    if len(set(rows)) != len(rows):
        raise ValueError(f"rows {rows} repeat a row")
    done = [state.steps_done[r] for r in rows]
    if any(d >= steps for d in done):
        raise ValueError(f"rows {[r for r, d in zip(rows, done, strict=True) if d >= steps]} took all {steps} steps")
    guided = guidance > 0
    if guided and uncond_prefix is None:
        raise ValueError("guidance > 0 needs the unconditional prefix")
    device = state.ids.device
    index = torch.tensor(rows, dtype=torch.long, device=device)
    ids = state.ids[index]
    current = state.current[index]
    image = slice(ids.shape[1] - num_tokens - 1, ids.shape[1] - 1)
    generators = [state.generators[r] for r in rows]

    if guided:
        assert uncond_prefix is not None
        uncond = torch.cat([uncond_prefix.expand(len(rows), -1), ids[:, text_len:]], dim=1)
        cond_logits, uncond_logits = image_logits(rows, torch.cat([ids, uncond])).chunk(2)
        logits = (1 + guidance) * cond_logits - guidance * uncond_logits
    else:
        logits = image_logits(rows, ids)
    probs = logits.softmax(dim=-1)

    drawn = sample_rows(probs, row_uniform(generators, (num_tokens,), device))
    unknown = current == mask_id
    sampled = torch.where(unknown, drawn, current)

    chosen = torch.gather(probs, -1, sampled[..., None]).squeeze(-1)
    chosen = torch.where(unknown, chosen, torch.finfo(chosen.dtype).max)  # known tokens stay
    counts = unknown.sum(dim=-1)
    mask_len = torch.empty_like(counts)
    for step in sorted(set(done)):  # rows at one step share the schedule's value
        at = torch.tensor([i for i, d in enumerate(done) if d == step], dtype=torch.long, device=device)
        mask_len[at] = mask_lengths(counts[at], num_tokens, step, steps)
    temperatures = []
    for r, step in zip(rows, done, strict=True):
        state.temperature[r] = state.temperature[r] * (1.0 - 1.0 * (step + 1) / steps)
        temperatures.append(state.temperature[r])
    noise = _gumbel(row_uniform(generators, (num_tokens,), device, dtype=chosen.dtype))
    scale = torch.tensor(temperatures, dtype=chosen.dtype, device=device)[:, None]
    confidence = _log(chosen) + scale * noise
    cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len[:, None])
    masking = confidence < cut_off

    ids[:, image] = torch.where(masking, mask_id, sampled + image_token_offset)
    state.ids[index] = ids
    state.current[index] = torch.where(masking, mask_id, sampled)
    state.sampled[index] = sampled
    for r in rows:
        state.steps_done[r] += 1


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
    """Decode the masked image tokens of `cond_ids` (B, L) in `steps` steps: `maskgit_step` on every row.

    `image_logits(ids)` runs the transformer on (R, L) ids (with the attention mask of exactly those
    rows: B rows without guidance, 2B with) and returns float logits (R, N, codebook_size) of the N
    image positions, which are the N positions before the last one. `uncond_ids` (B, L) holds the
    unconditional prompts; its first `text_len` positions (Show-o's max_seq_length + 1) are the
    prefix that replaces the cond rows' text, as in the reference. Guidance 0 runs no uncond rows.
    `generators[i]` is row i's random stream: per step it draws N uniforms for the samples, then N
    for the Gumbel noise.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    guided = guidance > 0
    if guided and uncond_ids is None:
        raise ValueError("guidance > 0 needs uncond_ids")
    state = maskgit_start(cond_ids, generators, num_tokens=num_tokens, image_token_offset=image_token_offset,
                          mask_id=mask_id, temperature=temperature)
    prefix = uncond_ids[:1, :text_len] if guided and uncond_ids is not None else None
    rows = list(range(len(state)))
    previews: list[torch.Tensor] = []
    for _ in range(steps):
        maskgit_step(lambda _rows, ids: image_logits(ids), state, rows, prefix, num_tokens=num_tokens,
                     text_len=text_len, image_token_offset=image_token_offset, mask_id=mask_id, steps=steps,
                     guidance=guidance)
        previews.append(state.sampled.clone())
    return MaskGitResult(tokens=state.sampled, steps=previews, forward_passes=steps)
