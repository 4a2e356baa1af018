"""MAGVIT-v2 image tokenizer: the lookup-free-quantised VQGAN that Show-o uses (showlab/magvitv2).

Our own implementation, written to match the parameter names and constructor defaults of
Show-o's `models/modeling_magvitv2.py` (`MAGVITv2` = `VQGANEncoder` as `encoder`, `VQGANDecoder`
as `decoder`, `LFQuantizer` as `quantize`) so that the published checkpoints load strictly, key
for key, and `decode_code` gives the reference's image for the same token ids.

    vq = MagvitV2.from_pretrained("showlab/magvitv2", device="cuda")
    with torch.no_grad():
        images = vq.decode_code(ids)  # [B, 256] ids in [0, 8192) -> [B, 3, 256, 256], about [-1, 1]

Lookup-free quantisation: a code is `codebook_dim` signs. Id `i` has channel `c` equal to +1
where bit `codebook_dim - 1 - c` of `i` is set and -1 where it is not (channel 0 is the most
significant bit); encoding takes the sign of each channel of the encoder's output (0 counts as
negative). The quantizer's two buffers (`embedding`, the ±1 table; `power_vals`, the bit
weights) are in the reference's state dict, so they are in ours.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from harness.jsonl import read_json_object
from harness.weights import WeightsSpec, load_state_dict, locate, state_fit_problems, weight_files

__all__ = ["MAGVIT_WEIGHTS", "MagvitCheckpointError", "MagvitConfig", "MagvitV2"]

MAGVIT_WEIGHTS = WeightsSpec("MAGVIT-v2 image tokenizer", default_repo="showlab/magvitv2", files=("config.json",))

#: the reference's class name, written into config.json
CLASS_NAME = "MAGVITv2"
WEIGHTS_NAME = "pytorch_model.bin"
SAFETENSORS_NAME = "pytorch_model.safetensors"  # what the reference's ModelMixin writes with safe_serialization

#: GroupNorm as in the reference's `Normalize`: 32 groups, eps 1e-6 (channel counts must divide by 32)
NORM_GROUPS = 32
NORM_EPS = 1e-6

#: how many key names an error message lists


class MagvitCheckpointError(ValueError):
    """A checkpoint or config.json that does not describe the model we build; the message says how."""


@dataclass(frozen=True)
class MagvitConfig:
    """Architecture of MAGVITv2. The defaults are the reference constructors' defaults, i.e. showlab/magvitv2."""

    ch: int = 128  # base channel count of both encoder and decoder
    encoder_ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4)  # VQGANEncoder(ch_mult=...)
    encoder_num_res_blocks: tuple[int, ...] = (4, 3, 4, 3, 4)  # resnet blocks per encoder level
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # VQGANDecoder(ch_mult=...), listed from high resolution down
    decoder_num_res_blocks: tuple[int, ...] = (4, 4, 3, 4, 3)  # resnet blocks per decoder level
    attn_resolutions: tuple[int, ...] = (5,)  # levels whose feature size is listed get attention after each block
    resolution: int = 256  # nominal image size; only decides where attn_resolutions fall
    dropout: float = 0.0
    in_ch: int = 3  # image channels into the encoder
    out_ch: int = 3  # image channels out of the decoder
    z_channels: int = 13  # latent channels between encoder, quantizer and decoder
    codebook_dim: int = 13  # LFQuantizer(codebook_dim=...): bits per code, codebook size 2**codebook_dim

    def __post_init__(self) -> None:
        for name in ("encoder_ch_mult", "encoder_num_res_blocks", "decoder_ch_mult", "decoder_num_res_blocks",
                     "attn_resolutions"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        problems: list[str] = []
        for side in ("encoder", "decoder"):
            mult, blocks = getattr(self, f"{side}_ch_mult"), getattr(self, f"{side}_num_res_blocks")
            if not mult or len(mult) != len(blocks):
                problems.append(f"{side}_ch_mult and {side}_num_res_blocks need the same, non-zero length "
                                f"(got {len(mult)} and {len(blocks)})")
            if any(m < 1 for m in mult) or any(b < 1 for b in blocks):
                problems.append(f"{side}_ch_mult and {side}_num_res_blocks must be positive")
        widths = {self.ch * m for m in (1, *self.encoder_ch_mult, *self.decoder_ch_mult)}
        if self.ch < 1 or any(w % NORM_GROUPS for w in widths):
            problems.append(f"every channel width (ch times a multiplier) must be a multiple of {NORM_GROUPS}, "
                            f"the GroupNorm group count (got ch={self.ch})")
        if self.codebook_dim != self.z_channels:
            problems.append(f"codebook_dim ({self.codebook_dim}) must equal z_channels ({self.z_channels}): "
                            "lookup-free codes are the latent's signs")
        if not 1 <= self.codebook_dim <= 20:  # the code table has 2**codebook_dim rows
            problems.append(f"codebook_dim must be in [1, 20] (got {self.codebook_dim})")
        if min(self.in_ch, self.out_ch, self.resolution) < 1 or not 0.0 <= self.dropout < 1.0:
            problems.append("in_ch, out_ch and resolution must be positive and dropout in [0, 1)")
        if problems:
            raise MagvitCheckpointError("invalid MagvitConfig: " + "; ".join(problems))

    @property
    def codebook_size(self) -> int:
        return 2**self.codebook_dim

    @property
    def downsample_factor(self) -> int:
        """Image pixels per token side (16 for showlab/magvitv2: 256 px <-> 16x16 tokens)."""
        return 2 ** (len(self.encoder_ch_mult) - 1)

    @property
    def upsample_factor(self) -> int:
        return 2 ** (len(self.decoder_ch_mult) - 1)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MagvitConfig:
        """The config of a checkpoint's config.json.

        Keys starting with "_" (`_class_name`, `_diffusers_version`, `_name_or_path`) and the
        quantizer's training-only settings are ignored. Architecture keys are taken either by our
        field names or as the reference constructors' arguments in `encoder` / `decoder` /
        `quantize` sections (e.g. `{"decoder": {"ch_mult": [1, 2]}}`). The real showlab/magvitv2
        config.json names no architecture keys: the reference hard-codes its defaults, which are ours.
        Unknown or ambiguous keys raise MagvitCheckpointError rather than being dropped silently.
        """
        ours = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        unknown: list[str] = []

        def put(field: str, value: Any, source: str) -> None:
            if field in values and _normalised(values[field]) != _normalised(value):
                raise MagvitCheckpointError(
                    f"config gives {field} twice with different values ({values[field]!r}, and {value!r} in {source})"
                )
            values[field] = value

        for key, value in data.items():
            if key.startswith("_") or key in _IGNORED_KEYS:
                continue
            if key in _SECTIONS and isinstance(value, Mapping):
                for sub_key, sub_value in value.items():
                    if sub_key.startswith("_") or sub_key in _IGNORED_KEYS:
                        continue
                    target = _SECTIONS[key].get(sub_key)
                    if target is None:
                        unknown.append(f"{key}.{sub_key}")
                    elif target == "double_z":
                        _check_double_z(sub_value)
                    else:
                        put(target, sub_value, f"{key}.{sub_key}")
            elif key == "double_z":
                _check_double_z(value)
            elif key in ("ch_mult", "num_res_blocks"):
                raise MagvitCheckpointError(
                    f"config key {key!r} is ambiguous: the encoder and decoder differ; give encoder_{key} and "
                    f"decoder_{key} (or {key} inside 'encoder' and 'decoder' sections)"
                )
            elif key in ours:
                put(key, value, key)
            else:
                unknown.append(key)
        if unknown:
            raise MagvitCheckpointError(f"config has keys MagvitConfig does not know: {', '.join(sorted(unknown))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """config.json contents: the reference's class name, then every field (tuples as lists)."""
        return {"_class_name": CLASS_NAME, **{k: _normalised(v) for k, v in asdict(self).items()}}


# Reference constructor arguments -> our fields, per section. Shared arguments map to one field.
_SHARED = {"ch": "ch", "attn_resolutions": "attn_resolutions", "dropout": "dropout", "in_ch": "in_ch",
           "out_ch": "out_ch", "resolution": "resolution", "z_channels": "z_channels", "double_z": "double_z"}
_SECTIONS: dict[str, dict[str, str]] = {
    "encoder": {**_SHARED, "ch_mult": "encoder_ch_mult", "num_res_blocks": "encoder_num_res_blocks"},
    "decoder": {**_SHARED, "ch_mult": "decoder_ch_mult", "num_res_blocks": "decoder_num_res_blocks"},
    "quantize": {"codebook_dim": "codebook_dim"},
}
# LFQuantizer's training-loss weights, and num_codebook_entry, which the reference never reads.
_IGNORED_KEYS = frozenset({"beta", "entropy_multiplier", "commit_loss_multiplier", "num_codebook_entry"})


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _check_double_z(value: Any) -> None:
    # The reference's encoder takes double_z but its quant_conv then gets 2*z_channels it cannot take.
    if value:
        raise MagvitCheckpointError("double_z=True is not supported (the reference model cannot run with it)")


# --------------------------------------------------------------------------------------------
# building blocks (taming-transformers style, as the reference's common_modules)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(NORM_GROUPS, channels, eps=NORM_EPS, affine=True)


class ResnetBlock(nn.Module):
    """norm-swish-conv3x3 twice plus a skip; a 1x1 `nin_shortcut` when the width changes. No time embedding."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return skip + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, with 1x1 convs as projections and a residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        h = self.norm(x)
        # [B, C, H, W] -> [B, 1 head, H*W, C]; the default scale 1/sqrt(C) is the reference's.
        q, k, v = (proj(h).reshape(b, 1, c, height * width).transpose(2, 3) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(2, 3).reshape(b, c, height, width)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve the size: pad right and bottom by one, then a stride-2 3x3 conv (the reference's asymmetric padding)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Double the size: nearest-neighbour interpolation, then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: resnet blocks, each followed by attention where the level has it, then a resampler.

    `attn` is empty or holds one block per resnet block. The resampler is named `downsample` in the
    encoder and `upsample` in the decoder, as in the reference; the last level (encoder) or the
    first (decoder) has none.
    """

    def __init__(self, blocks: Sequence[ResnetBlock], attns: Sequence[AttnBlock]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList(attns)

    def run_blocks(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn) > 0:
                h = self.attn[i](h)
        return h


class Mid(nn.Module):
    """The bottleneck: resnet block, attention, resnet block."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


def _level(widths: tuple[int, int], n_blocks: int, attention: bool, dropout: float) -> Level:
    width_in, width_out = widths
    blocks = [ResnetBlock(width_in if i == 0 else width_out, width_out, dropout) for i in range(n_blocks)]
    attns = [AttnBlock(width_out) for _ in range(n_blocks)] if attention else []
    return Level(blocks, attns)


class Encoder(nn.Module):
    """Image [B, in_ch, H, W] -> latent [B, z_channels, H/f, W/f] (the reference's VQGANEncoder)."""

    def __init__(self, config: MagvitConfig) -> None:
        super().__init__()
        ch, mults = config.ch, config.encoder_ch_mult
        self.conv_in = nn.Conv2d(config.in_ch, ch, kernel_size=3, padding=1)
        self.down = nn.ModuleList()
        width, size = ch, config.resolution
        for i, (mult, n_blocks) in enumerate(zip(mults, config.encoder_num_res_blocks, strict=True)):
            level = _level((width, ch * mult), n_blocks, size in config.attn_resolutions, config.dropout)
            width = ch * mult
            if i != len(mults) - 1:
                level.downsample = Downsample(width)
                size //= 2
            self.down.append(level)
        self.mid = Mid(width, config.dropout)
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, config.z_channels, kernel_size=3, padding=1)
        self.quant_conv = nn.Conv2d(config.z_channels, config.z_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level.run_blocks(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return self.quant_conv(h)


class Decoder(nn.Module):
    """Latent [B, z_channels, h, w] -> image [B, out_ch, h*f, w*f] (the reference's VQGANDecoder).

    `up[i]` is level i counted from the full resolution, as in the reference; they run from the last to the first.
    """

    def __init__(self, config: MagvitConfig) -> None:
        super().__init__()
        ch, mults = config.ch, config.decoder_ch_mult
        width = ch * mults[-1]
        size = config.resolution // 2 ** (len(mults) - 1)
        self.conv_in = nn.Conv2d(config.z_channels, width, kernel_size=3, padding=1)
        self.mid = Mid(width, config.dropout)
        levels: list[Level] = []
        for i in reversed(range(len(mults))):
            level = _level((width, ch * mults[i]), config.decoder_num_res_blocks[i], size in config.attn_resolutions,
                           config.dropout)
            width = ch * mults[i]
            if i != 0:
                level.upsample = Upsample(width)
                size *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, config.out_ch, kernel_size=3, padding=1)
        self.post_quant_conv = nn.Conv2d(config.z_channels, config.z_channels, kernel_size=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(self.post_quant_conv(z)))
        for level in reversed(self.up):
            h = level.run_blocks(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


def lfq_buffers(codebook_dim: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
    """The quantizer's two buffers as the reference builds them: `embedding` [2**d, d] of ±1, `power_vals` [d]."""
    powers = 2 ** torch.arange(codebook_dim - 1, -1, -1, dtype=torch.long, device=device)  # 2**(d-1), ..., 2, 1
    ids = torch.arange(2**codebook_dim, dtype=torch.long, device=device)
    bits = (ids[:, None] // powers) % 2  # bit (d-1-c) of id in column c: most significant first
    return {"embedding": bits.float() * 2 - 1, "power_vals": powers}


class LFQuantizer(nn.Module):
    """Lookup-free quantizer: codes are sign vectors, ids their bits read most significant channel first."""

    embedding: torch.Tensor
    power_vals: torch.Tensor

    def __init__(self, codebook_dim: int) -> None:
        super().__init__()
        self.codebook_dim = codebook_dim
        self.codebook_size = 2**codebook_dim
        for name, tensor in lfq_buffers(codebook_dim).items():
            self.register_buffer(name, tensor)

    def codes(self, ids: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
        """ids [B, h*w] -> code vectors [B, codebook_dim, h, w] (in the embedding's dtype)."""
        b = ids.shape[0]
        h, w = shape
        return self.embedding[ids.reshape(-1)].view(b, h, w, -1).permute(0, 3, 1, 2).contiguous()

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """latent [B, codebook_dim, h, w] -> ids [B, h*w] (row-major), from the signs of z (0 counts as negative)."""
        bits = (z > 0).long()
        ids = (bits * self.power_vals.view(1, -1, 1, 1)).sum(dim=1)
        return ids.reshape(z.shape[0], -1)


# --------------------------------------------------------------------------------------------
# the tokenizer


class MagvitV2(nn.Module):
    """MAGVIT-v2 tokenizer with showlab/magvitv2's module layout: `encoder`, `decoder`, `quantize`."""

    def __init__(self, config: MagvitConfig | None = None) -> None:
        super().__init__()
        self.config = config or MagvitConfig()
        self.encoder = Encoder(self.config)
        self.decoder = Decoder(self.config)
        self.quantize = LFQuantizer(self.config.codebook_dim)

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def decode_code(self, ids: torch.Tensor, shape: tuple[int, int] | None = None) -> torch.Tensor:
        """Token ids [B, N] in [0, codebook_size) -> images [B, out_ch, h*f, w*f], roughly in [-1, 1], not clamped.

        `shape` is the token grid (h, w) with h*w = N; by default N must be a square. The model's
        own dtype and device are used; call under torch.no_grad() (or inference_mode) for inference.
        """
        if ids.dim() != 2:
            raise ValueError(f"decode_code takes token ids of shape [batch, tokens], got {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"decode_code takes integer token ids, got {ids.dtype}")
        n = ids.shape[1]
        if shape is None:
            side = math.isqrt(n)
            if side * side != n:
                raise ValueError(f"{n} tokens are not a square grid; pass shape=(h, w)")
            shape = (side, side)
        elif shape[0] * shape[1] != n:
            raise ValueError(f"shape {tuple(shape)} does not hold {n} tokens")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.codebook_size):
            raise ValueError(f"token ids must lie in [0, {self.codebook_size}); got [{int(ids.min())}, "
                             f"{int(ids.max())}] (text-vocabulary offset not removed?)")
        z = self.quantize.codes(ids.to(self.quantize.embedding.device, torch.long), shape)
        return self.decoder(z)

    def encode_to_ids(self, pixels: torch.Tensor) -> torch.Tensor:
        """Images [B, in_ch, H, W] in [-1, 1] -> token ids [B, (H/f)*(W/f)] (the reference's get_code)."""
        if pixels.dim() != 4 or pixels.shape[1] != self.config.in_ch:
            raise ValueError(
                f"encode_to_ids takes images [batch, {self.config.in_ch}, H, W], got {tuple(pixels.shape)}"
            )
        weight = self.encoder.conv_in.weight
        return self.quantize.indices(self.encoder(pixels.to(weight.device, weight.dtype)))

    # ---------------------------------------------------------------------------- files

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> MagvitV2:
        """Load a checkpoint folder (or a hub id from the local HF cache) strictly, in eval mode, frozen.

        Every checkpoint tensor must fill a module tensor of the same shape and every module tensor
        must be filled; otherwise MagvitCheckpointError names the keys. The quantizer's buffers are
        the exception: they are fixed functions of codebook_dim, so a checkpoint may leave them out
        (they are rebuilt), but if present they must hold exactly those values. `dtype` None keeps
        the checkpoint's floating dtype.
        """
        folder = locate(path, MAGVIT_WEIGHTS)
        config_path = folder / "config.json"
        try:
            raw = read_json_object(config_path)
        except ValueError as err:
            raise MagvitCheckpointError(str(err)) from None
        try:
            config = MagvitConfig.from_dict(raw)
        except MagvitCheckpointError as err:
            raise MagvitCheckpointError(f"{config_path}: {err}") from None
        files = weight_files(folder)
        state = load_state_dict(files)
        with torch.device("meta"):
            model = cls(config)
        state = _checked_state(model, state, config, files)
        model.load_state_dict(state, strict=True, assign=True)
        model.to(device=device, dtype=dtype)
        model.requires_grad_(False)
        return model.eval()

    def save_pretrained(self, folder: str | Path, *, safe_serialization: bool = False) -> Path:
        """Write config.json and the weights (pytorch_model.bin, or .safetensors) in the reference's layout."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in self.state_dict().items()}
        if safe_serialization:
            from safetensors.torch import save_file

            save_file(state, str(folder / SAFETENSORS_NAME), metadata={"format": "pt"})
        else:
            torch.save(state, folder / WEIGHTS_NAME)
        return folder


def _checked_state(
    model: MagvitV2, state: dict[str, torch.Tensor], config: MagvitConfig, files: Sequence[Path]
) -> dict[str, torch.Tensor]:
    """`state` with the quantizer's buffers filled in and checked; MagvitCheckpointError if it does not fit `model`."""
    where = ", ".join(str(f) for f in files)
    state = dict(state)
    for name, expected in lfq_buffers(config.codebook_dim).items():
        key = f"quantize.{name}"
        if key not in state:
            state[key] = expected
        elif state[key].shape != expected.shape or not torch.equal(state[key].to(expected.dtype), expected):
            raise MagvitCheckpointError(
                f"{where}: {key} is not the lookup-free code table for codebook_dim={config.codebook_dim}; "
                "this is not a checkpoint of the reference's LFQuantizer"
            )
    parts = state_fit_problems(model.state_dict(), state)
    if parts:
        raise MagvitCheckpointError(
            f"{where} does not fit MAGVITv2 as config.json describes it: {'; '.join(parts)}. "
            "Is this a showlab/magvitv2 checkpoint (or one saved by MagvitV2.save_pretrained)?"
        )
    return state
