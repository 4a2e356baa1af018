"""Tiny, randomly initialised diffusers pipelines of every class the `diffusers` generator supports.

Each is the real pipeline class assembled from the real component classes (UNet2DConditionModel,
SD3Transformer2DModel, FluxTransformer2DModel, PixArtTransformer2DModel, SanaTransformer2DModel,
AutoencoderKL / AutoencoderDC, transformers' CLIP / T5 / Gemma 2 text encoders) with the real
schedulers and their hub configs, at sizes that run in milliseconds on one CPU thread, and saved
with `save_pretrained`, so the generator loads it through exactly the path it uses for a hub
checkpoint (model_index.json and one folder per component).

The tokenizers are built in code, nothing is downloaded: CLIP's byte-level BPE with no merges
(every character is a token, as CLIP's 512 base tokens), T5's unigram over the GenEval prompts'
words plus single characters, Gemma's BPE with byte fallback over single characters.

    KINDS               the pipelines one can build (keys of TINY_RESOLUTION)
    build_tiny_pipeline(kind) -> DiffusionPipeline (in memory, float32, CPU)
    write_tiny_pipeline(kind, out_dir) -> out_dir, a folder `DiffusionPipeline.from_pretrained` loads
    TINY_RESOLUTION[kind]  an image side the tiny pipeline makes (its VAE and patching fit it)
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "TINY_RESOLUTION", "build_tiny_pipeline", "write_tiny_pipeline"]

#: kind -> a square image side the tiny pipeline takes (small: latents of 8x8 or 16x16)
TINY_RESOLUTION: dict[str, int] = {
    "sd15": 16, "sd21": 16, "sdxl": 16, "sd3": 16, "flux-dev": 16, "flux-schnell": 16,
    "pixart-alpha": 16, "pixart-sigma": 16, "sana": 32,
}
KINDS = tuple(TINY_RESOLUTION)

CLIP_HIDDEN = 16
T5_HIDDEN = 32
GEMMA_HIDDEN = 16
LATENT_CHANNELS = 4
# Characters every tiny vocabulary holds, so that any GenEval prompt tokenizes without unknowns.
CHARACTERS = string.ascii_lowercase + string.ascii_uppercase + string.digits + string.punctuation


# ---------------------------------------------------------------------------------------------
# tokenizers


def _clip_tokenizer(max_length: int = 77):  # -> transformers.CLIPTokenizer
    """CLIP's tokenizer with its 512 base tokens (bytes, with and without the end-of-word mark), no merges."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [*alphabet, *(f"{c}</w>" for c in alphabet), "<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def _prompt_words() -> list[str]:
    from harness.prompts import geneval_suite

    return sorted({word for sample in geneval_suite() for word in sample["prompt"].lower().split()})


def _t5_tokenizer(max_length: int = 512):  # -> transformers.T5Tokenizer
    """T5's unigram tokenizer: the prompts' words as whole pieces, single characters as fallback."""
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    vocab += [(f"▁{word}", -1.0) for word in _prompt_words()]
    vocab += [(c, -4.0) for c in CHARACTERS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def _gemma_tokenizer():  # -> transformers.GemmaTokenizer
    """Gemma's BPE with byte fallback over single characters (no merges)."""
    from transformers import GemmaTokenizer

    tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", *(f"<0x{b:02X}>" for b in range(256)), "▁",
              *CHARACTERS]
    return GemmaTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=[], model_max_length=4096)


# ---------------------------------------------------------------------------------------------
# text encoders


def _clip_text(tokenizer: Any, *, projection: bool, hidden: int = CLIP_HIDDEN):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                            projection_dim=hidden, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _t5_text(tokenizer: Any):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=len(tokenizer), d_model=T5_HIDDEN, d_ff=2 * T5_HIDDEN, d_kv=16, num_layers=1,
                      num_heads=2, relative_attention_num_buckets=8, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    return T5EncoderModel(config).eval()


def _gemma_text(tokenizer: Any):
    from transformers import Gemma2Config, Gemma2Model

    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=GEMMA_HIDDEN, intermediate_size=2 * GEMMA_HIDDEN,
                          num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, head_dim=8,
                          max_position_embeddings=2048, pad_token_id=tokenizer.pad_token_id,
                          bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    return Gemma2Model(config).eval()


# ---------------------------------------------------------------------------------------------
# autoencoders


def _vae(**config: Any):
    """AutoencoderKL with two blocks (8x fewer pixels than the real ones' 3 downsamplings: 2x)."""
    from diffusers import AutoencoderKL

    base = {"in_channels": 3, "out_channels": 3, "down_block_types": ("DownEncoderBlock2D",) * 2,
            "up_block_types": ("UpDecoderBlock2D",) * 2, "block_out_channels": (8, 16), "layers_per_block": 1,
            "latent_channels": LATENT_CHANNELS, "norm_num_groups": 4, "sample_size": 16}
    return AutoencoderKL(**{**base, **config}).eval()


def _vae_dc():
    from diffusers import AutoencoderDC

    return AutoencoderDC(in_channels=3, latent_channels=LATENT_CHANNELS, attention_head_dim=4,
                         encoder_block_types=("ResBlock", "EfficientViTBlock"),
                         decoder_block_types=("ResBlock", "EfficientViTBlock"),
                         encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                         encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
                         encoder_qkv_multiscales=((), (5,)), decoder_qkv_multiscales=((), (5,)),
                         upsample_block_type="interpolate", downsample_block_type="Conv",
                         decoder_norm_types="rms_norm", decoder_act_fns="silu", scaling_factor=0.41407).eval()


# ---------------------------------------------------------------------------------------------
# schedulers, with the hub checkpoints' configs


def _ddpm_betas() -> dict[str, Any]:
    return {"num_train_timesteps": 1000, "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def _scheduler(kind: str):
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        FlowMatchEulerDiscreteScheduler,
        PNDMScheduler,
    )

    if kind == "sd15":  # stable-diffusion-v1-5
        return PNDMScheduler(**_ddpm_betas(), skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1)
    if kind == "sd21":  # stable-diffusion-2-1: v-prediction
        return DDIMScheduler(**_ddpm_betas(), clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                             prediction_type="v_prediction")
    if kind == "sdxl":  # stable-diffusion-xl-base-1.0
        return EulerDiscreteScheduler(**_ddpm_betas(), interpolation_type="linear", timestep_spacing="leading",
                                      steps_offset=1, use_karras_sigmas=False)
    if kind == "sd3":  # stable-diffusion-3-medium-diffusers
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    if kind == "flux-dev":  # FLUX.1-dev: resolution-dependent shift
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                               base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                               max_image_seq_len=4096)
    if kind == "flux-schnell":
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    if kind in ("pixart-alpha", "pixart-sigma"):  # PixArt-XL-2-1024-MS, PixArt-Sigma-XL-2-1024-MS
        return DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.0001, beta_end=0.02,
                                           beta_schedule="linear", solver_order=2, prediction_type="epsilon",
                                           algorithm_type="dpmsolver++", lower_order_final=True)
    if kind == "sana":  # Sana_1600M_1024px_diffusers: DPM-Solver++ on flow sigmas
        return DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="linear", solver_order=2,
                                           prediction_type="flow_prediction", algorithm_type="dpmsolver++",
                                           flow_shift=3.0, use_flow_sigmas=True, final_sigmas_type="zero",
                                           lower_order_final=True)
    raise ValueError(f"no tiny scheduler for {kind!r}")


# ---------------------------------------------------------------------------------------------
# pipelines


def _unet(**config: Any):
    from diffusers import UNet2DConditionModel

    base = {"sample_size": 8, "in_channels": LATENT_CHANNELS, "out_channels": LATENT_CHANNELS,
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"), "block_out_channels": (8, 16),
            "layers_per_block": 1, "norm_num_groups": 4, "cross_attention_dim": CLIP_HIDDEN,
            "attention_head_dim": (2, 4)}
    return UNet2DConditionModel(**{**base, **config}).eval()


def _sd(kind: str):
    from diffusers import StableDiffusionPipeline

    tokenizer = _clip_tokenizer()
    unet = _unet(use_linear_projection=kind == "sd21")  # SD 2.x uses linear projections, as its hub config
    return StableDiffusionPipeline(vae=_vae(scaling_factor=0.18215),
                                   text_encoder=_clip_text(tokenizer, projection=False), tokenizer=tokenizer,
                                   unet=unet, scheduler=_scheduler(kind), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def _sdxl():
    from diffusers import StableDiffusionXLPipeline

    tokenizer, tokenizer_2 = _clip_tokenizer(), _clip_tokenizer()
    time_dim = 8
    unet = _unet(cross_attention_dim=2 * CLIP_HIDDEN, addition_embed_type="text_time",
                 addition_time_embed_dim=time_dim, projection_class_embeddings_input_dim=6 * time_dim + CLIP_HIDDEN,
                 transformer_layers_per_block=(1, 1), use_linear_projection=True)
    return StableDiffusionXLPipeline(vae=_vae(scaling_factor=0.13025, force_upcast=True),
                                     text_encoder=_clip_text(tokenizer, projection=False),
                                     text_encoder_2=_clip_text(tokenizer_2, projection=True),
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet,
                                     scheduler=_scheduler("sdxl"), force_zeros_for_empty_prompt=True,
                                     add_watermarker=False)


def _sd3():
    from diffusers import SD3Transformer2DModel, StableDiffusion3Pipeline

    tokenizer, tokenizer_2, tokenizer_3 = _clip_tokenizer(), _clip_tokenizer(), _t5_tokenizer()
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=LATENT_CHANNELS, num_layers=1,
                                        attention_head_dim=8, num_attention_heads=2, joint_attention_dim=T5_HIDDEN,
                                        caption_projection_dim=16, pooled_projection_dim=2 * CLIP_HIDDEN,
                                        out_channels=LATENT_CHANNELS, pos_embed_max_size=16).eval()
    vae = _vae(scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False)
    return StableDiffusion3Pipeline(transformer=transformer, scheduler=_scheduler("sd3"), vae=vae,
                                    text_encoder=_clip_text(tokenizer, projection=True), tokenizer=tokenizer,
                                    text_encoder_2=_clip_text(tokenizer_2, projection=True), tokenizer_2=tokenizer_2,
                                    text_encoder_3=_t5_text(tokenizer_3), tokenizer_3=tokenizer_3)


def _flux(kind: str):
    from diffusers import FluxPipeline, FluxTransformer2DModel

    tokenizer, tokenizer_2 = _clip_tokenizer(), _t5_tokenizer()
    # Packed latents: 2x2 patches of the VAE's channels; rotary axes (4, 6, 6) add up to the head size.
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=1,
                                         num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                                         joint_attention_dim=T5_HIDDEN, pooled_projection_dim=CLIP_HIDDEN,
                                         guidance_embeds=kind == "flux-dev", axes_dims_rope=(4, 6, 6)).eval()
    vae = _vae(scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False)
    return FluxPipeline(scheduler=_scheduler(kind), vae=vae, text_encoder=_clip_text(tokenizer, projection=False),
                        tokenizer=tokenizer, text_encoder_2=_t5_text(tokenizer_2), tokenizer_2=tokenizer_2,
                        transformer=transformer)


def _pixart(kind: str):
    from diffusers import PixArtAlphaPipeline, PixArtSigmaPipeline, PixArtTransformer2DModel

    tokenizer = _t5_tokenizer()
    # PixArt-alpha 1024's transformer (sample_size 128) takes resolution and aspect-ratio micro-conditions;
    # sample_size only sizes the default position grid, so the tiny one keeps 128 to take that path.
    alpha = kind == "pixart-alpha"
    # 3 heads: the micro-conditions take a third of the width each (1152 = 3 x 384 in the real model).
    transformer = PixArtTransformer2DModel(sample_size=128 if alpha else 8, num_layers=1, attention_head_dim=8,
                                           num_attention_heads=3, in_channels=LATENT_CHANNELS,
                                           out_channels=2 * LATENT_CHANNELS, patch_size=2, cross_attention_dim=24,
                                           caption_channels=T5_HIDDEN, norm_type="ada_norm_single",
                                           norm_elementwise_affine=False, norm_eps=1e-6,
                                           use_additional_conditions=alpha).eval()
    cls = PixArtAlphaPipeline if alpha else PixArtSigmaPipeline
    return cls(tokenizer=tokenizer, text_encoder=_t5_text(tokenizer), vae=_vae(scaling_factor=0.18215),
               transformer=transformer, scheduler=_scheduler(kind))


def _sana():
    from diffusers import SanaPipeline, SanaTransformer2DModel

    tokenizer = _gemma_tokenizer()
    transformer = SanaTransformer2DModel(in_channels=LATENT_CHANNELS, out_channels=LATENT_CHANNELS,
                                         num_attention_heads=2, attention_head_dim=4, num_layers=1,
                                         num_cross_attention_heads=2, cross_attention_head_dim=4,
                                         cross_attention_dim=8, caption_channels=GEMMA_HIDDEN, mlp_ratio=2.5,
                                         sample_size=16, patch_size=1).eval()
    return SanaPipeline(tokenizer=tokenizer, text_encoder=_gemma_text(tokenizer), vae=_vae_dc(),
                        transformer=transformer, scheduler=_scheduler("sana"))


def build_tiny_pipeline(kind: str, seed: int = 0):  # -> diffusers.DiffusionPipeline
    """A seeded random tiny pipeline of `kind` (one of KINDS), float32 on the CPU."""
    import torch

    builders = {"sd15": lambda: _sd("sd15"), "sd21": lambda: _sd("sd21"), "sdxl": _sdxl, "sd3": _sd3,
                "flux-dev": lambda: _flux("flux-dev"), "flux-schnell": lambda: _flux("flux-schnell"),
                "pixart-alpha": lambda: _pixart("pixart-alpha"), "pixart-sigma": lambda: _pixart("pixart-sigma"),
                "sana": _sana}
    if kind not in builders:
        raise ValueError(f"unknown tiny pipeline {kind!r}; kinds: {', '.join(KINDS)}")
    # fork_rng: seed the initialisation without disturbing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe = builders[kind]()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_tiny_pipeline(kind: str, out_dir: Path, seed: int = 0) -> Path:
    """Save a seeded random tiny pipeline of `kind` into `out_dir` (model_index.json + components); return it."""
    out_dir = Path(out_dir)
    build_tiny_pipeline(kind, seed).save_pretrained(out_dir)
    return out_dir
