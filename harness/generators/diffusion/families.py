"""One adapter per supported diffusers pipeline class: what its `__call__` does around the loop.

An adapter does, with the pipeline's own components and methods, the parts of `__call__` that are
specific to the class, for a batch of rows the sampler (`sampler.py`) assembles:

    encode(prompt)              the pipeline's `encode_prompt` for one prompt (and its negative)
    set_timesteps(scheduler)    `retrieve_timesteps` with the arguments `__call__` gives it
    initial_latents(generator)  the pipeline's `prepare_latents` for one image from that generator
    denoise(x, t, conds)        one denoiser call over the batch, with classifier-free guidance as
                                the class does it: [uncond; cond] halves, guidance, learned-sigma cut
    decode(latents)             un-scaling and the VAE, as after the loop (before postprocessing)

Every argument `__call__` would default (steps, guidance, sequence lengths, negative prompt,
clean_caption, Sana's complex_human_instruction) is read from the installed `__call__`'s own
signature when the user leaves it unset, so a candidate is what `pipeline(prompt, ...)` returns.

Deliberate differences: no resolution binning (PixArt, Sana: images are made at `resolution`;
for a checkpoint's native square size binning is the identity anyway), no safety checker (SD),
and FLUX's true-CFG halves go through one batched transformer call instead of two.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

__all__ = ["FAMILIES", "Conditioning", "Family", "Settings", "call_default", "supported_classes"]


def call_default(pipe: Any, name: str) -> Any:
    """The default of argument `name` of the pipeline class's `__call__` (the installed diffusers')."""
    return inspect.signature(type(pipe).__call__).parameters[name].default


@dataclass(frozen=True)
class Settings:
    """What the user set; None = the pipeline's own default."""

    steps: int | None = None
    guidance: float | None = None
    true_cfg: float = 1.0
    negative_prompt: str | None = None
    resolution: int | None = None
    max_sequence_length: int | None = None


@dataclass
class Conditioning:
    """One prompt's text conditioning: named tensors with a batch dimension of 1, and the
    unconditional (negative prompt) ones when the pipeline guides."""

    prompt: str
    cond: dict[str, torch.Tensor]
    uncond: dict[str, torch.Tensor] | None


def halves(conds: list[Conditioning], key: str) -> torch.Tensor:
    """Tensor `key` of every row's conditioning along the batch: the unconditional half first (as the
    pipelines concatenate them), then the conditional half; only the latter without guidance."""
    import torch

    parts = [c.uncond[key] for c in conds if c.uncond is not None] + [c.cond[key] for c in conds]
    return torch.cat(parts)


class Family:
    """The class-specific part of a pipeline's `__call__`; see the module docstring."""

    pipeline_class: ClassVar[str]
    flow: ClassVar[bool] = False  # a flow-matching model: needs a flow scheduler
    scales_input: ClassVar[bool] = False  # the loop calls scheduler.scale_model_input
    begin_index_zero: ClassVar[bool] = False  # the loop calls scheduler.set_begin_index(0)
    cuda_dtype: ClassVar[str] = "float16"  # dtype=auto on CUDA
    uses_sequence_length: ClassVar[bool] = False  # has a max_sequence_length argument
    load_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, pipe: Any, settings: Settings) -> None:
        self.pipe = pipe
        self.device = pipe._execution_device
        given = settings
        self.steps = given.steps if given.steps is not None else call_default(pipe, "num_inference_steps")
        self.guidance = given.guidance if given.guidance is not None else call_default(pipe, "guidance_scale")
        self.negative_prompt = (given.negative_prompt if given.negative_prompt is not None
                                else call_default(pipe, "negative_prompt"))
        self.max_sequence_length = None
        if self.uses_sequence_length:
            self.max_sequence_length = (given.max_sequence_length if given.max_sequence_length is not None
                                        else call_default(pipe, "max_sequence_length"))
        elif given.max_sequence_length is not None:
            raise ValueError(f"max_sequence_length: {self.pipeline_class} has no such setting (its CLIP prompts "
                             "are 77 tokens)")
        if given.true_cfg != 1.0 and not isinstance(self, Flux):
            raise ValueError(f"true_cfg is FLUX's setting; {self.pipeline_class} guides with `guidance`")
        self.resolution = given.resolution if given.resolution is not None else self.default_resolution()
        self.check_resolution(self.resolution, self.vae_scale_factor, self.patch_size())
        self.guided = self.guidance > 1.0  # do_classifier_free_guidance

    # -- geometry --------------------------------------------------------------------------------

    @property
    def vae_scale_factor(self) -> int:
        return int(self.pipe.vae_scale_factor)

    def patch_size(self) -> int:
        transformer = getattr(self.pipe, "transformer", None)
        return int(transformer.config.patch_size) if transformer is not None else 1

    def default_resolution(self) -> int:
        return int(self.pipe.default_sample_size) * self.vae_scale_factor

    @classmethod
    def resolution_multiple(cls, vsf: int, patch: int) -> tuple[int, str]:
        """What an image side must be a multiple of, and why, for a VAE downsampling by `vsf` and a
        denoiser taking `patch` x `patch` patches."""
        return math.lcm(8, vsf), f"the pipeline checks multiples of 8; the VAE downsamples by {vsf}"

    @classmethod
    def check_resolution(cls, resolution: int, vsf: int, patch: int) -> None:
        """Refuse, in one line with the nearest sides that work, a side the VAE or the patching cannot take."""
        multiple, why = cls.resolution_multiple(vsf, patch)
        if resolution < multiple or resolution % multiple:
            low = max(multiple, resolution // multiple * multiple)
            raise ValueError(f"resolution={resolution}: {cls.pipeline_class} makes images whose side is a multiple "
                             f"of {multiple} ({why}); try {low} or {low + multiple}")

    # -- the loop's parts ------------------------------------------------------------------------

    def set_timesteps(self, scheduler: Any) -> None:
        from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import retrieve_timesteps

        retrieve_timesteps(scheduler, self.steps, self.device)

    def encode(self, prompt: str) -> Conditioning:
        raise NotImplementedError

    def latent_dtype(self, cond: Conditioning) -> torch.dtype:
        return cond.cond["embeds"].dtype  # `prepare_latents(..., prompt_embeds.dtype, ...)`

    def initial_latents(self, generator: torch.Generator, cond: Conditioning) -> torch.Tensor:
        r = self.resolution
        return self.pipe.prepare_latents(1, self.latent_channels(), r, r, self.latent_dtype(cond), self.device,
                                         generator)

    def latent_channels(self) -> int:
        return int(self.pipe.transformer.config.in_channels)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def guide(self, out: torch.Tensor, scale: float | None = None) -> torch.Tensor:
        """`uncond + scale * (cond - uncond)` over the [uncond; cond] halves (scale: `guidance`)."""
        if not self.guided:
            return out
        uncond, cond = out.chunk(2)
        return uncond + (self.guidance if scale is None else scale) * (cond - uncond)

    def doubled(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        return torch.cat([x, x]) if self.guided else x


class StableDiffusion(Family):
    pipeline_class = "StableDiffusionPipeline"
    scales_input = True
    # GenEval-style generation runs without the NSFW filter (it would black out flagged images).
    load_kwargs: ClassVar[dict[str, Any]] = {"safety_checker": None, "feature_extractor": None,
                                             "requires_safety_checker": False}

    def __init__(self, pipe: Any, settings: Settings) -> None:
        super().__init__(pipe, settings)
        if pipe.unet.config.time_cond_proj_dim is not None:
            raise ValueError(f"{self.pipeline_class}: UNets with guidance embeddings (time_cond_proj_dim, "
                             "LCM-distilled) are not supported")

    def default_resolution(self) -> int:
        size = self.pipe.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0]) * self.vae_scale_factor

    def latent_channels(self) -> int:
        return int(self.pipe.unet.config.in_channels)

    def encode(self, prompt: str) -> Conditioning:
        embeds, negative = self.pipe.encode_prompt(prompt, self.device, 1, self.guided, self.negative_prompt)
        return Conditioning(prompt, {"embeds": embeds}, {"embeds": negative} if self.guided else None)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> torch.Tensor:
        out = self.pipe.unet(self.doubled(x), self.doubled(t), encoder_hidden_states=halves(conds, "embeds"),
                             return_dict=False)[0]
        return self.guide(out)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]


class StableDiffusionXL(StableDiffusion):
    pipeline_class = "StableDiffusionXLPipeline"
    begin_index_zero = True
    load_kwargs: ClassVar[dict[str, Any]] = {}

    def __init__(self, pipe: Any, settings: Settings) -> None:
        import torch

        super().__init__(pipe, settings)
        vae = pipe.vae
        # The pipeline decodes in float32 when the VAE is float16 and its config says it overflows
        # (`force_upcast`); holding it in float32 from the start gives the same numbers.
        self.upcast = vae.dtype == torch.float16 and bool(vae.config.force_upcast)
        if self.upcast:
            vae.to(dtype=torch.float32)

    def default_resolution(self) -> int:
        return Family.default_resolution(self)

    def encode(self, prompt: str) -> Conditioning:
        pipe = self.pipe
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            prompt=prompt, device=self.device, num_images_per_prompt=1, do_classifier_free_guidance=self.guided,
            negative_prompt=self.negative_prompt)
        projection = (int(pooled.shape[-1]) if pipe.text_encoder_2 is None
                      else pipe.text_encoder_2.config.projection_dim)
        size = (self.resolution, self.resolution)
        time_ids = pipe._get_add_time_ids(size, (0, 0), size, dtype=embeds.dtype,
                                          text_encoder_projection_dim=projection).to(self.device)
        cond = {"embeds": embeds, "pooled": pooled, "time_ids": time_ids}
        uncond = {"embeds": negative, "pooled": negative_pooled, "time_ids": time_ids} if self.guided else None
        return Conditioning(prompt, cond, uncond)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> torch.Tensor:
        added = {"text_embeds": halves(conds, "pooled"), "time_ids": halves(conds, "time_ids")}
        out = self.pipe.unet(self.doubled(x), self.doubled(t), encoder_hidden_states=halves(conds, "embeds"),
                             added_cond_kwargs=added, return_dict=False)[0]
        return self.guide(out)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        import torch

        pipe, vae = self.pipe, self.pipe.vae
        if self.upcast:
            latents = latents.to(torch.float32)
        config = vae.config
        if getattr(config, "latents_mean", None) is not None and getattr(config, "latents_std", None) is not None:
            mean = torch.tensor(config.latents_mean).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            std = torch.tensor(config.latents_std).view(1, 4, 1, 1).to(latents.device, latents.dtype)
            latents = latents * std / config.scaling_factor + mean
        else:
            latents = latents / config.scaling_factor
        image = vae.decode(latents, return_dict=False)[0]
        if pipe.watermark is not None:
            image = pipe.watermark.apply_watermark(image)
        return image


class StableDiffusion3(Family):
    pipeline_class = "StableDiffusion3Pipeline"
    flow = True
    uses_sequence_length = True

    @classmethod
    def resolution_multiple(cls, vsf: int, patch: int) -> tuple[int, str]:
        return vsf * patch, f"the VAE downsamples by {vsf}, the transformer takes {patch}x{patch} patches"

    def set_timesteps(self, scheduler: Any) -> None:
        from diffusers.pipelines.stable_diffusion_3.pipeline_stable_diffusion_3 import (
            calculate_shift,
            retrieve_timesteps,
        )

        extra = {}
        if scheduler.config.get("use_dynamic_shifting", None):
            side = self.resolution // self.vae_scale_factor // self.pipe.transformer.config.patch_size
            get = scheduler.config.get
            extra["mu"] = calculate_shift(side * side, get("base_image_seq_len", 256), get("max_image_seq_len", 4096),
                                          get("base_shift", 0.5), get("max_shift", 1.16))
        retrieve_timesteps(scheduler, self.steps, self.device, sigmas=None, **extra)

    def encode(self, prompt: str) -> Conditioning:
        embeds, negative, pooled, negative_pooled = self.pipe.encode_prompt(
            prompt=prompt, prompt_2=None, prompt_3=None, negative_prompt=self.negative_prompt,
            do_classifier_free_guidance=self.guided, device=self.device, num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length)
        uncond = {"embeds": negative, "pooled": negative_pooled} if self.guided else None
        return Conditioning(prompt, {"embeds": embeds, "pooled": pooled}, uncond)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> torch.Tensor:
        out = self.pipe.transformer(hidden_states=self.doubled(x), timestep=self.doubled(t),
                                    encoder_hidden_states=halves(conds, "embeds"),
                                    pooled_projections=halves(conds, "pooled"), return_dict=False)[0]
        return self.guide(out)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor, return_dict=False)[0]


class Flux(Family):
    """FLUX.1: guidance is distilled into the transformer (a guidance embedding, `guidance`; none in
    schnell); true CFG (`true_cfg` > 1 with a `negative_prompt`) adds a negative-prompt half."""

    pipeline_class = "FluxPipeline"
    flow = True
    begin_index_zero = True
    cuda_dtype = "bfloat16"
    uses_sequence_length = True

    def __init__(self, pipe: Any, settings: Settings) -> None:
        super().__init__(pipe, settings)
        self.true_cfg = settings.true_cfg
        self.guided = self.true_cfg > 1 and self.negative_prompt is not None  # do_true_cfg
        if self.true_cfg > 1 and self.negative_prompt is None:
            raise ValueError("true_cfg > 1 needs a negative_prompt (FLUX's true CFG guides against it)")
        self._image_ids: dict[Any, torch.Tensor] = {}

    @classmethod
    def resolution_multiple(cls, vsf: int, patch: int) -> tuple[int, str]:
        return 2 * vsf, f"the VAE downsamples by {vsf}, the latents are packed in 2x2 patches"

    def latent_side(self) -> int:
        return 2 * (self.resolution // (self.vae_scale_factor * 2))

    def set_timesteps(self, scheduler: Any) -> None:
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

        n = self.steps
        sigmas = None if scheduler.config.get("use_flow_sigmas", False) else np.linspace(1.0, 1 / n, n)
        get = scheduler.config.get
        mu = calculate_shift((self.latent_side() // 2) ** 2, get("base_image_seq_len", 256),
                             get("max_image_seq_len", 4096), get("base_shift", 0.5), get("max_shift", 1.15))
        retrieve_timesteps(scheduler, n, self.device, sigmas=sigmas, mu=mu)

    def latent_channels(self) -> int:
        return int(self.pipe.transformer.config.in_channels) // 4

    def initial_latents(self, generator: torch.Generator, cond: Conditioning) -> torch.Tensor:
        return super().initial_latents(generator, cond)[0]  # (packed latents, image ids)

    def _encode_one(self, text: str) -> dict[str, torch.Tensor]:
        embeds, pooled, text_ids = self.pipe.encode_prompt(prompt=text, prompt_2=None, device=self.device,
                                                           num_images_per_prompt=1,
                                                           max_sequence_length=self.max_sequence_length)
        return {"embeds": embeds, "pooled": pooled, "text_ids": text_ids}

    def encode(self, prompt: str) -> Conditioning:
        uncond = self._encode_one(self.negative_prompt) if self.guided else None
        return Conditioning(prompt, self._encode_one(prompt), uncond)

    def image_ids(self, dtype: torch.dtype) -> torch.Tensor:
        if dtype not in self._image_ids:
            half = self.latent_side() // 2
            self._image_ids[dtype] = self.pipe._prepare_latent_image_ids(1, half, half, self.device, dtype)
        return self._image_ids[dtype]

    def denoise(self, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> torch.Tensor:
        import torch

        rows = self.doubled(x)
        guidance = None
        if self.pipe.transformer.config.guidance_embeds:
            guidance = torch.full([rows.shape[0]], self.guidance, device=self.device, dtype=torch.float32)
        embeds = halves(conds, "embeds")
        out = self.pipe.transformer(hidden_states=rows, timestep=self.doubled(t).to(x.dtype) / 1000,
                                    guidance=guidance, pooled_projections=halves(conds, "pooled"),
                                    encoder_hidden_states=embeds, txt_ids=conds[0].cond["text_ids"],
                                    img_ids=self.image_ids(embeds.dtype), joint_attention_kwargs={},
                                    return_dict=False)[0]
        return self.guide(out, self.true_cfg)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        pipe, vae = self.pipe, self.pipe.vae
        latents = pipe._unpack_latents(latents, self.resolution, self.resolution, self.vae_scale_factor)
        return vae.decode(latents / vae.config.scaling_factor + vae.config.shift_factor, return_dict=False)[0]


class PixArtSigma(Family):
    pipeline_class = "PixArtSigmaPipeline"
    scales_input = True
    uses_sequence_length = True

    def default_resolution(self) -> int:
        return int(self.pipe.transformer.config.sample_size) * self.vae_scale_factor

    @classmethod
    def resolution_multiple(cls, vsf: int, patch: int) -> tuple[int, str]:
        return math.lcm(8, vsf * patch), (f"the pipeline checks multiples of 8; the VAE downsamples by {vsf}, the "
                                          f"transformer takes {patch}x{patch} patches")

    def encode(self, prompt: str) -> Conditioning:
        embeds, mask, negative, negative_mask = self.pipe.encode_prompt(
            prompt, self.guided, negative_prompt=self.negative_prompt, num_images_per_prompt=1, device=self.device,
            clean_caption=call_default(self.pipe, "clean_caption"), max_sequence_length=self.max_sequence_length)
        uncond = {"embeds": negative, "mask": negative_mask} if self.guided else None
        return Conditioning(prompt, {"embeds": embeds, "mask": mask}, uncond)

    def added_conditions(self, rows: int, dtype: torch.dtype) -> dict[str, Any]:
        return {"resolution": None, "aspect_ratio": None}

    def denoise(self, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> torch.Tensor:
        transformer = self.pipe.transformer
        rows = self.doubled(x)
        embeds = halves(conds, "embeds")
        added = self.added_conditions(rows.shape[0], embeds.dtype)
        out = transformer(rows, encoder_hidden_states=embeds, encoder_attention_mask=halves(conds, "mask"),
                          timestep=self.doubled(t), added_cond_kwargs=added, return_dict=False)[0]
        out = self.guide(out)
        if transformer.config.out_channels // 2 == x.shape[1]:  # learned sigma: keep the noise half
            out = out.chunk(2, dim=1)[0]
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]


class PixArtAlpha(PixArtSigma):
    pipeline_class = "PixArtAlphaPipeline"
    begin_index_zero = True

    def encode(self, prompt: str) -> Conditioning:
        from diffusers.utils.torch_utils import maybe_adjust_dtype_for_device

        out = super().encode(prompt)
        for half in (out.cond, *([out.uncond] if out.uncond is not None else [])):  # as __call__ adjusts the mask
            mask = half["mask"]
            half["mask"] = mask.to(maybe_adjust_dtype_for_device(mask.dtype, mask.device))
        return out

    def added_conditions(self, rows: int, dtype: torch.dtype) -> dict[str, Any]:
        """PixArt-alpha 1024 (transformer sample_size 128) is conditioned on the size and aspect ratio."""
        import torch

        if self.pipe.transformer.config.sample_size != 128:
            return super().added_conditions(rows, dtype)
        side = self.resolution
        resolution = torch.tensor([side, side]).repeat(rows, 1).to(dtype=dtype, device=self.device)
        aspect_ratio = torch.tensor([float(side / side)]).repeat(rows, 1).to(dtype=dtype, device=self.device)
        return {"resolution": resolution, "aspect_ratio": aspect_ratio}

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]


class Sana(Family):
    pipeline_class = "SanaPipeline"
    flow = True
    cuda_dtype = "bfloat16"
    uses_sequence_length = True

    def default_resolution(self) -> int:
        return int(call_default(self.pipe, "height"))

    @classmethod
    def resolution_multiple(cls, vsf: int, patch: int) -> tuple[int, str]:
        return math.lcm(32, vsf * patch), f"the pipeline checks multiples of 32; the VAE downsamples by {vsf}"

    def encode(self, prompt: str) -> Conditioning:
        pipe = self.pipe
        embeds, mask, negative, negative_mask = pipe.encode_prompt(
            prompt, self.guided, negative_prompt=self.negative_prompt, num_images_per_prompt=1, device=self.device,
            clean_caption=call_default(pipe, "clean_caption"), max_sequence_length=self.max_sequence_length,
            complex_human_instruction=call_default(pipe, "complex_human_instruction"))
        uncond = {"embeds": negative, "mask": negative_mask} if self.guided else None
        return Conditioning(prompt, {"embeds": embeds, "mask": mask}, uncond)

    def latent_dtype(self, cond: Conditioning) -> torch.dtype:
        import torch

        return torch.float32  # Sana keeps its latents in float32 whatever the transformer's dtype

    def denoise(self, x: torch.Tensor, t: torch.Tensor, conds: list[Conditioning]) -> torch.Tensor:
        transformer = self.pipe.transformer
        dtype = transformer.dtype
        embeds = halves(conds, "embeds").to(dtype=dtype)
        out = transformer(self.doubled(x).to(dtype=dtype), encoder_hidden_states=embeds,
                          encoder_attention_mask=halves(conds, "mask"),
                          timestep=self.doubled(t) * transformer.config.timestep_scale, return_dict=False)[0]
        out = self.guide(out.float())
        if transformer.config.out_channels // 2 == x.shape[1]:
            out = out.chunk(2, dim=1)[0]
        return out

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        return vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]


FAMILIES: dict[str, type[Family]] = {cls.pipeline_class: cls for cls in (
    StableDiffusion, StableDiffusionXL, StableDiffusion3, Flux, PixArtAlpha, PixArtSigma, Sana)}


def supported_classes() -> str:
    return ", ".join(FAMILIES)
