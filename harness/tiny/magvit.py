"""A tiny, randomly initialised MAGVIT-v2 tokenizer with showlab/magvitv2's structure.

Same classes and the same loading path as the real tokenizer (`MagvitV2.from_pretrained` on a
folder holding config.json and pytorch_model.bin); only the sizes shrink. Every block type of
the real model is here (resnet blocks with and without a 1x1 shortcut, down- and upsampling,
the mid attention) plus the per-level attention the real config places nowhere, so that path
runs too. 32 px images <-> 8x8 tokens from a 64-entry lookup-free codebook.
"""

from __future__ import annotations

from pathlib import Path

from harness.generators.showo.magvit import MagvitConfig, MagvitV2

# Three levels (downsampling by 4). ch=32 is the smallest width GroupNorm(32 groups) allows.
# The encoder's and decoder's block counts differ, as the real ones do, so a swap breaks loading.
TINY_MAGVIT_CONFIG = MagvitConfig(
    ch=32,
    encoder_ch_mult=(1, 1, 2),
    encoder_num_res_blocks=(1, 1, 2),
    decoder_ch_mult=(1, 1, 2),
    decoder_num_res_blocks=(2, 1, 1),
    attn_resolutions=(16,),  # the middle level of each side (32 px -> 16 -> 8)
    resolution=32,
    z_channels=6,
    codebook_dim=6,  # 2**6 = 64 codes
)

TINY_MAGVIT_IMAGE_SIZE = 32
TINY_MAGVIT_TOKENS = (TINY_MAGVIT_IMAGE_SIZE // TINY_MAGVIT_CONFIG.downsample_factor) ** 2  # 64 = 8x8


def write_tiny_magvit(out_dir: Path, seed: int = 0) -> Path:
    """Write a seeded random tiny MAGVIT-v2 (config.json, pytorch_model.bin) into `out_dir`; return `out_dir`."""
    import torch

    out_dir = Path(out_dir)
    # fork_rng: seed the initialisation without disturbing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MagvitV2(TINY_MAGVIT_CONFIG)
    return model.save_pretrained(out_dir)
