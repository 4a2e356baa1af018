"""The Show-o transformer: Phi-1.5 with QK-layernorm and a vocabulary grown by image tokens.

Show-o's `Showo` module holds a `PhiForCausalLM` under the attribute `showo` (plus, for the
CLIP-ViT variants, an unused-here `mm_projector`), so its checkpoint keys are
`showo.model.embed_tokens.weight`, `showo.model.layers.N.self_attn.q_proj.weight`, ...,
`showo.lm_head.weight`. We build transformers' own `PhiForCausalLM`, whose parameter names are
the same, with the two changes Show-o's modified Phi makes: `qk_layernorm=True` (its
`PhiForCausalLM.__init__` forces it) and `vocab_size` from Show-o's config (it resizes the
embeddings). The Phi config and the tokenizer come from `llm_model_path` (microsoft/phi-1_5).

The vocabulary, for showlab/show-o (vocab_size 58498, llm_vocab_size 50295, codebook 8192):

    [0, 50295)        Phi-1.5's tokenizer
    [50295, 50305)    '[PAD]' and the nine special tokens (num_new_special_tokens = 10)
    [50305, 58497)    image token k is id 50305 + k
    58497             the mask token (vocab_size - 1)

    model, tokenizer, tokens = Showo.from_pretrained("showlab/show-o", device="cuda")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.generators.showo.prompting import PromptTokens, add_showo_tokens
from harness.jsonl import read_json_object
from harness.weights import MissingWeightsError, WeightsSpec, load_state_dict, locate, state_fit_problems, weight_files

__all__ = ["LLM_WEIGHTS", "SHOWO_WEIGHTS", "Showo", "ShowoCheckpointError", "ShowoConfig", "load_tokenizer"]

SHOWO_WEIGHTS = WeightsSpec("Show-o transformer", default_repo="showlab/show-o", files=("config.json",))
LLM_WEIGHTS = WeightsSpec("Phi-1.5 tokenizer and config", "microsoft/phi-1_5", files=("config.json",), weights=False)



class ShowoCheckpointError(ValueError):
    """A Show-o checkpoint whose config or tensors do not fit the model; the message says which."""


@dataclass(frozen=True)
class ShowoConfig:
    """The fields of a Show-o checkpoint's config.json that generation needs.

    `num_new_special_tokens` and `max_seq_length` are not in the published config.json (they are in
    the reference's YAML config); the defaults are the values every Show-o checkpoint was trained with.
    """

    vocab_size: int
    llm_vocab_size: int
    llm_model_path: str = "microsoft/phi-1_5"
    codebook_size: int = 8192
    num_vq_tokens: int = 256
    w_clip_vit: bool = False
    num_new_special_tokens: int = 10
    max_seq_length: int = 128

    def __post_init__(self) -> None:
        # The reference slices image logits as columns [llm_vocab + specials, vocab_size - 1): that
        # must be exactly the codebook, or token k would not mean code k.
        columns = self.vocab_size - 1 - self.image_token_offset
        if columns != self.codebook_size:
            raise ShowoCheckpointError(
                f"inconsistent Show-o config: vocab_size {self.vocab_size} - 1 - (llm_vocab_size {self.llm_vocab_size}"
                f" + num_new_special_tokens {self.num_new_special_tokens}) = {columns} image columns, but "
                f"codebook_size is {self.codebook_size}")
        if self.num_vq_tokens < 1 or self.max_seq_length < 1:
            raise ShowoCheckpointError("num_vq_tokens and max_seq_length must be positive")

    @property
    def mask_token_id(self) -> int:
        """The reference registers `mask_token_id = vocab_size - 1`, whatever config.json says."""
        return self.vocab_size - 1

    @property
    def image_token_offset(self) -> int:
        """Id of image token 0."""
        return self.llm_vocab_size + self.num_new_special_tokens

    @property
    def max_text_len(self) -> int:
        """Positions of the text part: max_seq_length plus the task token."""
        return self.max_seq_length + 1

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ShowoConfig:
        missing = [key for key in ("vocab_size", "llm_vocab_size") if key not in data]
        if missing:
            raise ShowoCheckpointError(f"Show-o config lacks {', '.join(missing)}")
        known = {"vocab_size", "llm_vocab_size", "llm_model_path", "codebook_size", "num_vq_tokens", "w_clip_vit",
                 "num_new_special_tokens", "max_seq_length"}
        # other keys (_class_name, _diffusers_version, load_from_showo, mask_token_id, ...) do not change inference
        return cls(**{key: data[key] for key in known if key in data})

    @classmethod
    def from_file(cls, path: Path) -> ShowoConfig:
        try:
            data = read_json_object(path)
        except ValueError as err:
            raise ShowoCheckpointError(str(err)) from None
        try:
            return cls.from_dict(data)
        except (ShowoCheckpointError, TypeError) as err:
            raise ShowoCheckpointError(f"{path}: {err}") from None


def _no_init_weights() -> Any:
    """transformers' context that skips random initialisation (the weights are loaded right after)."""
    try:
        from transformers.initialization import no_init_weights  # transformers 5
    except ImportError:  # transformers 4.x
        from transformers.modeling_utils import no_init_weights
    return no_init_weights()


def phi_config(llm_folder: Path, config: ShowoConfig, attn_implementation: str) -> Any:
    """The LLM's config with Show-o's changes: its vocabulary, QK-layernorm, no KV cache."""
    from transformers import AutoConfig

    phi = AutoConfig.from_pretrained(str(llm_folder), local_files_only=True)
    if phi.model_type != "phi":
        raise ShowoCheckpointError(f"{llm_folder}: Show-o needs a Phi LLM config, got model_type {phi.model_type!r}")
    phi.vocab_size = config.vocab_size
    phi.qk_layernorm = True  # Show-o's PhiForCausalLM.__init__ forces it
    phi.use_cache = False
    phi._attn_implementation = attn_implementation
    return phi


def load_tokenizer(llm_folder: Path) -> tuple[Any, PromptTokens]:
    """The LLM's tokenizer (left padding, as the reference loads it) with Show-o's tokens added."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(llm_folder), padding_side="left", local_files_only=True)
    except (OSError, ValueError) as err:
        raise MissingWeightsError(f"{LLM_WEIGHTS.what}: no loadable tokenizer in {llm_folder} ({err}); fetch it "
                                  f"with `hf download {LLM_WEIGHTS.default_repo}`") from err
    return tokenizer, add_showo_tokens(tokenizer)


class Showo(nn.Module):
    """Show-o's transformer with the reference's module layout (`showo` = PhiForCausalLM)."""

    def __init__(self, config: ShowoConfig, phi: Any) -> None:
        super().__init__()
        from transformers import PhiForCausalLM

        self.config = config
        self.showo = PhiForCausalLM(phi)
        if config.w_clip_vit:
            # Only multimodal understanding uses it; built so those checkpoints load strictly.
            self.mm_projector = nn.Sequential(nn.Linear(1024, 2048), nn.GELU(), nn.Linear(2048, 2048))

    @property
    def device(self) -> torch.device:
        return self.showo.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.showo.lm_head.weight.dtype

    def _mask_for_attention(self, mask: torch.Tensor) -> torch.Tensor:
        """SDPA takes the boolean mask; eager attention *adds* the mask, so it gets 0 / dtype-min."""
        if self.showo.config._attn_implementation == "sdpa":
            return mask
        bias = torch.zeros(mask.shape, dtype=self.dtype, device=mask.device)
        return bias.masked_fill_(~mask, torch.finfo(self.dtype).min)

    def hidden_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last hidden states (B, L, D) under a boolean (B, 1, L, L) mask, positions 0..L-1.

        Positions ignore the left padding, as in the reference (it passes no position ids).
        """
        length = input_ids.shape[1]
        positions = torch.arange(length, device=input_ids.device).unsqueeze(0)
        out = self.showo.model(input_ids=input_ids, attention_mask=self._mask_for_attention(attention_mask),
                               position_ids=positions, use_cache=False)
        return out.last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Float32 logits over the whole vocabulary (B, L, vocab_size), as the reference's forward."""
        return self.showo.lm_head(self.hidden_states(input_ids, attention_mask)).float()

    def image_logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Float32 logits (B, N, codebook_size) of the N image positions over the image-token columns.

        The reference computes all logits and slices `[:, -(N + 1):-1, offset:-1]`; projecting only
        those positions onto those columns gives the same numbers at a fraction of the memory
        (the full tensor is 58498 columns x 387 positions per row).
        """
        n = self.config.num_vq_tokens
        return self._image_projection(self.hidden_states(input_ids, attention_mask)[:, -(n + 1):-1])

    def _image_projection(self, hidden: torch.Tensor) -> torch.Tensor:
        first, last = self.config.image_token_offset, self.config.vocab_size - 1
        head = self.showo.lm_head
        bias = head.bias[first:last] if head.bias is not None else None
        return nn.functional.linear(hidden, head.weight[first:last], bias).float()

    def prefix_cache(self, prefix_ids: torch.Tensor, prefix_mask: torch.Tensor) -> Any:
        """Keys and values of the text prefixes (B, P) under their (B, 1, P, P) mask, as a transformers cache.

        Show-o's text positions attend causally to text only, never to image positions, so their
        keys and values are the same at every decoding step: computing them once per prompt and
        running only the image segment per step gives the full forward's numbers (up to float
        rounding) with far fewer tokens per step (the prefix is 129 of the 387 positions).
        """
        from transformers import DynamicCache

        positions = torch.arange(prefix_ids.shape[1], device=prefix_ids.device).unsqueeze(0)
        out = self.showo.model(input_ids=prefix_ids, attention_mask=self._mask_for_attention(prefix_mask),
                               position_ids=positions, past_key_values=DynamicCache(), use_cache=True)
        return out.past_key_values

    def image_logits_after_prefix(self, cache: Any, segment_ids: torch.Tensor,
                                  segment_mask: torch.Tensor) -> torch.Tensor:
        """`image_logits` for rows whose prefix is in `cache` (one cache row per row).

        `segment_ids` (B, S) are the positions after the prefix (<|soi|>, the N image tokens,
        <|eoi|>) and `segment_mask` their (B, 1, S, P + S) rows of the full attention mask. The
        cache is cropped back to the prefix afterwards, ready for the next step.
        """
        prefix = cache.get_seq_length()
        length = prefix + segment_ids.shape[1]
        positions = torch.arange(prefix, length, device=segment_ids.device).unsqueeze(0)
        out = self.showo.model(input_ids=segment_ids, attention_mask=self._mask_for_attention(segment_mask),
                               position_ids=positions, past_key_values=cache, use_cache=True)
        cache.crop(-segment_ids.shape[1])  # drop this step's keys and values: back to the prefix
        n = self.config.num_vq_tokens
        return self._image_projection(out.last_hidden_state[:, -(n + 1):-1])

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def from_pretrained(cls, model: str | Path, *, llm: str | Path | None = None,
                        device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                        attn_implementation: str = "sdpa") -> tuple[Showo, Any, PromptTokens]:
        """Load a Show-o checkpoint (local folder or hub id in the HF cache) and its tokenizer.

        `llm` (default: the checkpoint's `llm_model_path`) is where the Phi config and tokenizer
        are found. Every checkpoint tensor must fill a model tensor and every model tensor must be
        filled (`lm_head.weight` may be absent only when the Phi config ties it to the embeddings).
        Returns (model in eval mode on `device`/`dtype`, tokenizer, its Show-o token ids).
        """
        if attn_implementation not in ("sdpa", "eager"):
            # flash attention takes no custom 4D mask, and Show-o's mask is not causal
            raise ValueError(f"attn_implementation must be 'sdpa' or 'eager', got {attn_implementation!r}")
        folder = locate(model, SHOWO_WEIGHTS)
        config = ShowoConfig.from_file(folder / "config.json")
        llm_folder = locate(llm if llm is not None else config.llm_model_path, LLM_WEIGHTS)
        tokenizer, tokens = load_tokenizer(llm_folder)
        _check_tokens(tokens, len(tokenizer), config, llm_folder)

        phi = phi_config(llm_folder, config, attn_implementation)
        with _no_init_weights():
            net = cls(config, phi)
        files = weight_files(folder)
        state = _checked_state(net, load_state_dict(files), files)
        net.load_state_dict(state, strict=True, assign=True)
        if phi.tie_word_embeddings:
            net.showo.tie_weights()
        net.to(device=device, dtype=dtype)
        net.requires_grad_(False)
        return net.eval(), tokenizer, tokens


def _check_tokens(tokens: PromptTokens, tokenizer_size: int, config: ShowoConfig, llm_folder: Path) -> None:
    """The tokenizer must put '[PAD]' and the specials exactly between the LLM vocabulary and the image tokens."""
    if tokenizer_size != config.image_token_offset or tokens.pad != config.llm_vocab_size:
        raise ShowoCheckpointError(
            f"the tokenizer in {llm_folder} does not fit this Show-o checkpoint: with '[PAD]' and the special "
            f"tokens it has {tokenizer_size} ids ('[PAD]' = {tokens.pad}); the checkpoint expects "
            f"{config.image_token_offset} ('[PAD]' = llm_vocab_size = {config.llm_vocab_size})")


def _checked_state(net: Showo, state: dict[str, torch.Tensor], files: list[Path]) -> dict[str, torch.Tensor]:
    """`state` if its keys and shapes are exactly the model's; else ShowoCheckpointError naming the keys."""
    expected = net.state_dict()
    head, embed = "showo.lm_head.weight", "showo.model.embed_tokens.weight"
    if head not in state and net.showo.config.tie_word_embeddings and embed in state:
        state = {**state, head: state[embed]}  # a tied head is saved once, under the embeddings
    parts = state_fit_problems(expected, state)
    if parts:
        where = ", ".join(str(f) for f in files)
        raise ShowoCheckpointError(f"{where} does not fit the Show-o model: " + "; ".join(parts))
    return state
