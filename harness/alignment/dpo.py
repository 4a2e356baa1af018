"""The DPO loss and the image log-likelihoods it compares, for Show-o and Janus-Pro.

DPO (Rafailov et al. 2023), as the official Image-Generation-CoT `training/train_dpo.py` computes it:

    logits = (log π(chosen) − log π(rejected)) − (log π_ref(chosen) − log π_ref(rejected))
    loss   = mean over pairs of −log σ(β · logits)

with the rewards β · (log π − log π_ref) of each image reported alongside.

Show-o's log-likelihood of an image is not autoregressive: Show-o is trained by masked-token
prediction, and the official DPO code scores an image with that objective. Per image:

  1. the image is tokenised by MAGVIT-v2 (`encode_to_ids`), codebook id k -> vocabulary id
     `image_token_offset + k` (the reference adds `len(tokenizer)`, the same number);
  2. a mask is drawn with the training schedule (`mask_or_random_replace_tokens`): t ~ U(0, 1),
     ratio = cos(π/2 · t) clipped below at `min_masking_rate` (0.0), n = round(N · ratio)
     clamped to >= 1, and the n positions whose uniform noise ranks lowest are masked;
  3. the t2i sequence (`UniversalPrompting.t2i_prompt`) holds the masked image, and with
     probability `cond_dropout` (0.1 in the official config) the prompt is replaced by the
     empty one, as the official prompting object (built with cond_dropout_prob) does;
  4. one forward pass under Show-o's attention mask; log p is the full-vocabulary log-softmax
     of the logits, and the log-likelihood is the SUM of log p(label) over the positions from
     <|soi|> on whose label is not ignored (`get_batch_logps`, average_log_prob=False). Those
     are the masked image positions plus <|soi|> and <|eoi|>, whose labels are themselves (the
     reference's labels keep them); we count them too, to give the same numbers.

Policy and reference score an image on the same masked sequence (the official code feeds both
the same `input_ids`). Our masks come from a per-pair generator the caller seeds, not from the
global stream, so a pair's masks do not depend on batch composition and training resumes
exactly. As in the official code, chosen and rejected get independent draws unless
`shared_mask` asks for one mask (and one dropout decision) for both.

Janus-Pro is autoregressive: its log-likelihood of an image is the teacher-forced sum of
log-softmax(generation_head(h_t))[token_t] over the image tokens, after the prompt laid out as
the `janus` generator lays it out (chat template, image-start tag). There is no official DPO
code for Janus; this is the standard sequence log-likelihood of the model's own sampling
distribution (guidance 1, temperature 1, no top-k).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from harness.generators.showo.model import Showo, ShowoConfig
    from harness.generators.showo.prompting import PromptTokens

__all__ = [
    "IGNORE",
    "dpo_loss",
    "draw_showo_mask",
    "janus_image_tokens",
    "janus_logp",
    "showo_logp",
    "showo_training_ids",
]

IGNORE = -100  # the reference's ignore_id: labels that count for nothing


def dpo_loss(policy_chosen_logp: torch.Tensor, policy_rejected_logp: torch.Tensor, ref_chosen_logp: torch.Tensor,
             ref_rejected_logp: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, chosen rewards, rejected rewards) of a batch of pairs; each log-likelihood is (B,).

    The loss is the mean over the batch of −log σ(β · ((π_c − π_r) − (ref_c − ref_r))); the
    rewards β · (π − ref) are detached (B,) tensors for logging.
    """
    chosen_ratio = policy_chosen_logp - ref_chosen_logp
    rejected_ratio = policy_rejected_logp - ref_rejected_logp
    # logsigmoid, not log(sigmoid): stays finite for large negative margins
    loss = -F.logsigmoid(beta * (chosen_ratio - rejected_ratio)).mean()
    return loss, (beta * chosen_ratio).detach(), (beta * rejected_ratio).detach()


# ---------------------------------------------------------------------------------------------
# Show-o: masked-token log-likelihood


def draw_showo_mask(num_tokens: int, generator: torch.Generator, min_masking_rate: float = 0.0) -> torch.Tensor:
    """A (num_tokens,) bool mask drawn with Show-o's training schedule from `generator` (a CPU generator).

    Draws one uniform for the timestep, then `num_tokens` for the positions, as
    `mask_or_random_replace_tokens` does per image (cosine schedule, float32).
    """
    timestep = torch.rand((), generator=generator)
    ratio = torch.cos(timestep * math.pi * 0.5).clip(min=min_masking_rate)
    masked = (num_tokens * ratio).round().clamp(min=1)
    ranks = torch.rand(num_tokens, generator=generator).argsort()
    return ranks < masked


def showo_training_ids(codes: torch.Tensor, text_ids: Sequence[Sequence[int]], masks: torch.Tensor, *,
                       tokens: PromptTokens, config: ShowoConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, labels), both (B, L), of masked t2i training sequences.

    `codes` (B, N) are MAGVIT-v2 codebook ids, `text_ids` each row's prompt token ids ([] for the
    empty prompt: dropped condition), `masks` (B, N) the positions to mask. The layout is the
    generator's (`t2i_sequence`); labels are IGNORE except <|soi|>, the masked image positions
    (their true vocabulary ids) and <|eoi|>: what the reference's `get_batch_logps` counts.
    """
    from harness.generators.showo.prompting import t2i_sequence

    n = config.num_vq_tokens
    if codes.shape[1] != n or masks.shape != codes.shape or len(text_ids) != codes.shape[0]:
        raise ValueError(f"codes {tuple(codes.shape)}, masks {tuple(masks.shape)} and {len(text_ids)} prompts do not "
                         f"fit {n} image tokens per row")
    device = codes.device
    rows = [t2i_sequence(ids, tokens, max_text_len=config.max_text_len, num_image_tokens=n,
                         mask_id=config.mask_token_id) for ids in text_ids]
    input_ids = torch.tensor(rows, dtype=torch.long, device=device)
    image = slice(config.max_text_len + 1, config.max_text_len + 1 + n)  # after <|soi|>
    vocab_ids = codes.to(device) + config.image_token_offset
    masks = masks.to(device)
    input_ids[:, image] = torch.where(masks, config.mask_token_id, vocab_ids)
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, config.max_text_len] = tokens.soi
    labels[:, image] = torch.where(masks, vocab_ids, IGNORE)
    labels[:, -1] = tokens.eoi
    return input_ids, labels


def showo_logp(model: Showo, input_ids: torch.Tensor, labels: torch.Tensor, tokens: PromptTokens) -> torch.Tensor:
    """(B,) sums of full-vocabulary log p(label) over the positions whose label is not IGNORE.

    Only those positions go through the LM head: the same numbers as the reference's log-softmax
    over all (B, L, vocab_size) logits, without materialising them (58498 columns x 387 positions
    per row, twice per pair, with gradients).
    """
    from harness.generators.showo.prompting import attention_mask

    hidden = model.hidden_states(input_ids, attention_mask(input_ids, tokens))
    counted = labels != IGNORE
    logits = model.showo.lm_head(hidden[counted]).float()  # (K, vocab_size)
    picked = logits.log_softmax(dim=-1).gather(-1, labels[counted].unsqueeze(-1)).squeeze(-1)
    rows = counted.nonzero()[:, 0]  # the row of each counted position, in `hidden[counted]` order
    return torch.zeros(input_ids.shape[0], dtype=picked.dtype, device=picked.device).index_add(0, rows, picked)


# ---------------------------------------------------------------------------------------------
# Janus-Pro: next-token log-likelihood


def janus_image_tokens(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    """VQ token ids (B, T) of images (B, 3, H, W), normalised as the processor normalises them.

    DeepSeek's VQ (LlamaGen's `VectorQuantizer`, codebook_l2_norm=True) L2-normalises the latent and
    the codebook before the nearest-neighbour search; transformers' `JanusVQVAE.encode` skips that
    step (its `decode` does normalise the codebook), so it can pick other codes than the ones the
    model generates in. We run its encoder and quant_conv and search as the reference does.
    """
    vq = model.model.vqmodel
    weight = vq.quant_conv.weight
    latent = vq.quant_conv(vq.encoder(pixels.to(weight.device, weight.dtype)))  # (B, C, h, w)
    z = F.normalize(latent.permute(0, 2, 3, 1).reshape(-1, latent.shape[1]), p=2, dim=-1)
    codebook = F.normalize(vq.quantize.embedding.weight, p=2, dim=-1)
    distances = (z**2).sum(dim=1, keepdim=True) + (codebook**2).sum(dim=1) - 2 * z @ codebook.T
    return distances.argmin(dim=1).reshape(latent.shape[0], -1)


def janus_logp(model: Any, prompt_ids: Sequence[torch.Tensor], image_tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B,) teacher-forced sums of log p(image token t | prompt, tokens < t) under `model`.

    `prompt_ids` are the rows' 1-D prompt ids as `JanusGenerator.prompt_ids` makes them (or its
    unconditional form); rows of different lengths are left-padded with `pad_id`, masked out of
    attention, and given positions that start at 0 on their first real token, so each row's
    numbers are those of running it alone. The inputs are the prompt's text embeddings followed by
    the generation embeddings of tokens 0..T-2; the hidden state before token t predicts it through
    the generation head (float32 log-softmax over the codebook).
    """
    device = image_tokens.device
    count, length = image_tokens.shape
    longest = max(len(ids) for ids in prompt_ids)
    text = torch.full((count, longest), pad_id, dtype=torch.long, device=device)
    real = torch.zeros((count, longest + length - 1), dtype=torch.long, device=device)
    for row, ids in enumerate(prompt_ids):
        text[row, longest - len(ids):] = ids.to(device)
        real[row, longest - len(ids):] = 1
    embeds = torch.cat([model.get_input_embeddings()(text),
                        model.prepare_embeddings_for_image_generation(image_tokens[:, :-1])], dim=1)
    positions = (real.cumsum(dim=1) - 1).clamp(min=0)
    out = model.model.language_model(inputs_embeds=embeds, attention_mask=real, position_ids=positions,
                                     use_cache=False)
    hidden = out.last_hidden_state[:, longest - 1:]  # the state before each image token
    logits = model.model.generation_head(hidden).float()
    return logits.log_softmax(dim=-1).gather(-1, image_tokens.unsqueeze(-1)).squeeze(-1).sum(dim=1)
