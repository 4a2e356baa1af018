"""Show-o's text-to-image prompt layout and attention mask, as its reference code builds them.

A t2i sequence (Show-o's `UniversalPrompting.t2i_gen_prompt`) is, for max_seq_length 128:

    [PAD ... PAD] <|t2i|> <bos> text ... <eos>  <|soi|> [MASK x N] <|eoi|>
    |<-------------- max_text_len = 129 ------->|

left-padded with the tokenizer's '[PAD]' to `max_text_len = max_seq_length + 1` positions (the
+1 is the task token), then the image part. A prompt too long for that keeps its first
`max_text_len - 1` ids and ends with <eos>. The unconditional prompt is the same layout for ''.

The mask (Show-o's `create_attention_mask_predict_next(..., rm_pad_in_image=True)`): text
positions attend causally and never to the left padding; the image part (<|soi|> to <|eoi|>)
attends to every non-pad position, both ways. Ours is a boolean (B, 1, L, L) tensor, True where
attention is allowed; the reference's additive int64 form (0 / int64 min) gives the same softmax.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "PromptTokens",
    "add_showo_tokens",
    "attention_mask",
    "t2i_prompt_ids",
    "t2i_sequence",
]

#: added after '[PAD]', in this order, so their ids follow the LLM's vocabulary (Show-o's training order)
SPECIAL_TOKENS = ("<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>", "<|t2v|>", "<|v2v|>", "<|lvg|>")
PAD_TOKEN = "[PAD]"


@dataclass(frozen=True)
class PromptTokens:
    """The token ids the t2i layout uses."""

    pad: int
    bos: int
    eos: int
    t2i: int
    soi: int
    eoi: int


def add_showo_tokens(tokenizer: Any) -> PromptTokens:
    """Add '[PAD]' and Show-o's nine special tokens to `tokenizer` (in place) and return their ids.

    Same calls as the reference's UniversalPrompting: '[PAD]' as the pad token, the others with
    `add_tokens` (ordinary added tokens), so a Phi-1.5 tokenizer gives '[PAD]' = 50295, <|soi|> =
    50296, ... <|lvg|> = 50304: the ten ids between the LLM's vocabulary and the image tokens.
    """
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    tokenizer.add_tokens(list(SPECIAL_TOKENS))
    ids = dict(zip(SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)), strict=True))
    if tokenizer.bos_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError("the Show-o tokenizer needs a bos and an eos token (Phi-1.5's are both <|endoftext|>)")
    return PromptTokens(pad=int(tokenizer.convert_tokens_to_ids(PAD_TOKEN)), bos=int(tokenizer.bos_token_id),
                        eos=int(tokenizer.eos_token_id), t2i=int(ids["<|t2i|>"]), soi=int(ids["<|soi|>"]),
                        eoi=int(ids["<|eoi|>"]))


def t2i_sequence(text_ids: Sequence[int], tokens: PromptTokens, *, max_text_len: int, num_image_tokens: int,
                 mask_id: int) -> list[int]:
    """One t2i sequence from a prompt's token ids: padded text part, <|soi|>, N mask ids, <|eoi|>.

    `max_text_len` is Show-o's (max_seq_length + 1). Mirrors `t2i_gen_prompt`: <bos> is prepended
    unless the ids already start with it (an empty prompt becomes just <bos>).
    """
    ids = list(text_ids)
    if not ids or ids[0] != tokens.bos:
        ids = [tokens.bos, *ids]
    ids = [tokens.t2i, *ids, tokens.eos]
    if len(ids) <= max_text_len:
        ids = [tokens.pad] * (max_text_len - len(ids)) + ids
    else:
        ids = [*ids[: max_text_len - 1], tokens.eos]
    return [*ids, tokens.soi, *([mask_id] * num_image_tokens), tokens.eoi]


def t2i_prompt_ids(tokenizer: Any, prompts: Sequence[str], tokens: PromptTokens, *, max_text_len: int,
                   num_image_tokens: int, mask_id: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(len(prompts), max_text_len + N + 2) ids; the tokenizer is called as the reference calls it
    (whole batch, its default special-token handling, no truncation)."""
    import torch

    text_ids = tokenizer(list(prompts))["input_ids"]
    rows = [t2i_sequence(ids, tokens, max_text_len=max_text_len, num_image_tokens=num_image_tokens,
                         mask_id=mask_id) for ids in text_ids]
    return torch.tensor(rows, dtype=torch.long, device=device)


def attention_mask(ids: torch.Tensor, tokens: PromptTokens) -> torch.Tensor:
    """Boolean (B, 1, L, L) mask, True = may attend, for t2i sequences `ids` (B, L).

    Equal to the reference's `create_attention_mask_predict_next(ids, pad, soi, eoi,
    rm_pad_in_image=True)` (which marks allowed entries 0 and the rest int64 min), vectorised:
      * outside <|soi|>..<|eoi|>: causal, and positions after the last pad see no position up to it;
      * inside <|soi|>..<|eoi|> (both included): every position that is not a pad.
    """
    import torch

    _, length = ids.shape
    device = ids.device
    is_pad = ids == tokens.pad
    starts = torch.cumsum(ids == tokens.soi, dim=1)
    ends = torch.cumsum(ids == tokens.eoi, dim=1)
    in_image = (starts > ends) | (ids == tokens.soi) | (ids == tokens.eoi)

    positions = torch.arange(length, device=device)
    causal = positions[None, :, None] >= positions[None, None, :]  # (1, L, L): row attends to column
    # index of each row's last pad, -1 when it has none (then nothing is cut off)
    last_pad = torch.where(is_pad, positions[None, :], torch.full_like(ids, -1)).max(dim=1).values
    after_pad = positions[None, :] > last_pad[:, None]  # (B, L) rows
    up_to_pad = positions[None, :] <= last_pad[:, None]  # (B, L) columns
    text = causal & ~(after_pad[:, :, None] & up_to_pad[:, None, :])
    image = (~is_pad)[:, None, :].expand(-1, length, -1)
    return torch.where(in_image[:, :, None], image, text).unsqueeze(1)
