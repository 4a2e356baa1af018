"""What DPO needs from each image-token generator: its models, tokens, log-likelihood and checkpoint layout.

A `Family` wraps one generator plug-in, built through the plug-in itself so the models, tokenizer
and prompt layout are exactly the ones generation uses. Its model in the generator (frozen, eval)
is the DPO reference; the policy is a trainable copy of it, or a checkpoint being resumed.

    showo   reference = ShowoGenerator.model; images -> MAGVIT-v2 codes; masked-token log-likelihood;
            checkpoint = config.json + pytorch_model.bin with the original parameter names, the
            folder `Showo.from_pretrained` (and so `--param model=DIR`) loads
    janus   reference = JanusGenerator.model; images -> VQ codes; next-token log-likelihood;
            checkpoint = `save_pretrained` of the model and its processor

`Family.sample(policy, requests)` generates with the policy through the generator plug-in's own
`generate()` (the plug-in's model swapped for the policy for the call, then put back): what the
policy makes, as `stepwise run` would make it with the checkpoint. Reward guidance samples so.

The models are kept in float32: AdamW's updates at lr 1e-5 vanish in bfloat16 weights. Mixed
precision (bfloat16 autocast, as the official run's accelerate setting) is the trainer's option.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image
    from torch import nn

    from harness.plugins import GenerationRequest, GenerationResult

__all__ = ["FAMILIES", "Family", "ImageDraw", "JanusFamily", "ShowoFamily", "load_family"]

#: the generators DPO can train: those whose images are token sequences with a likelihood
FAMILIES = ("showo", "janus")


@dataclass(frozen=True)
class ImageDraw:
    """The randomness of one image's log-likelihood: prompt dropped or not, and Show-o's token mask."""

    drop_text: bool
    mask: torch.Tensor | None = None  # (N,) bool for Show-o; None for Janus


class Family(Protocol):
    """One generator's side of DPO training."""

    name: ClassVar[str]
    reference: nn.Module  # frozen, eval
    device: torch.device

    def new_policy(self) -> nn.Module: ...

    def load_policy(self, folder: Path) -> nn.Module: ...

    def trainable(self, policy: nn.Module) -> list[tuple[str, torch.nn.Parameter]]: ...

    def image_tokens(self, images: Sequence[Image]) -> torch.Tensor: ...

    def draw(self, generator: torch.Generator, cond_dropout: float, min_masking_rate: float) -> ImageDraw: ...

    def logp(self, model: nn.Module, prompts: Sequence[str], tokens: torch.Tensor,
             draws: Sequence[ImageDraw]) -> torch.Tensor: ...

    def sample(self, policy: nn.Module, requests: Sequence[GenerationRequest]) -> list[GenerationResult]: ...

    def save(self, policy: nn.Module, folder: Path) -> None: ...

    def parent(self) -> dict[str, Any]: ...


def _drop(generator: torch.Generator, cond_dropout: float) -> bool:
    """The official prompting's condition dropout: the prompt becomes '' when a uniform falls below it."""
    import torch

    return bool(torch.rand((), generator=generator) < cond_dropout)


def _file_hashes(folder: Path, files: Sequence[Path]) -> dict[str, str]:
    from harness.hashing import file_sha256

    return {str(path.relative_to(folder)): file_sha256(path) for path in sorted(files)}


def _float32_params(params: Any, generator: str) -> Any:
    """The generator's params with float32 weights; another explicit dtype is refused (see module docstring)."""
    if params.dtype not in ("auto", "float32"):
        raise ValueError(f"{generator}: DPO keeps the weights in float32 (dtype={params.dtype!r} given); use "
                         "--mixed-precision bf16 to compute in bfloat16")
    return dataclasses.replace(params, dtype="float32")


def _freeze(model: nn.Module) -> nn.Module:
    model.requires_grad_(False)
    return model.eval()


def _sample_with(generator: Any, policy: nn.Module, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
    """`generator.generate(requests)` with `policy` in place of its model (eval mode, no grad); the
    generator's own model and the policy's train/eval mode are restored whatever happens."""
    import torch

    model, training = generator.model, policy.training
    generator.model = policy.eval()
    try:
        with torch.no_grad():
            return generator.generate(list(requests))
    finally:
        generator.model = model
        policy.train(training)


class ShowoFamily:
    """Show-o: the masked-token log-likelihood of harness.alignment.dpo, MAGVIT-v2 tokens."""

    name: ClassVar[str] = "showo"

    def __init__(self, params: Any) -> None:
        from harness.generators.showo.generator import ShowoGenerator
        from harness.generators.showo.model import SHOWO_WEIGHTS
        from harness.weights import locate

        self.params = _float32_params(params, self.name)
        # checks the checkpoint, tokenizer, VQ and resolution agree; kept to sample with the policy
        self.generator = ShowoGenerator(self.params)
        self.reference = _freeze(self.generator.model)
        self.vq, self.tokenizer, self.tokens = self.generator.vq, self.generator.tokenizer, self.generator.tokens
        self.device = self.reference.device
        self.folder = locate(self.params.model, SHOWO_WEIGHTS)

    def new_policy(self) -> nn.Module:
        policy = copy.deepcopy(self.reference)
        policy.requires_grad_(True)
        return policy.train()

    def load_policy(self, folder: Path) -> nn.Module:
        import torch

        from harness.generators.showo.model import Showo

        policy, _, _ = Showo.from_pretrained(folder, llm=self.params.llm, device=self.device, dtype=torch.float32)
        policy.requires_grad_(True)
        return policy.train()

    def trainable(self, policy: nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        return [(name, p) for name, p in policy.named_parameters() if p.requires_grad]  # all of Show-o, as official

    def image_tokens(self, images: Sequence[Image]) -> torch.Tensor:
        import torch

        from harness.alignment.pairs import pixel_batch

        pixels = pixel_batch(images, self.params.resolution, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        with torch.no_grad():
            return self.vq.encode_to_ids(pixels.to(self.device))

    def draw(self, generator: torch.Generator, cond_dropout: float, min_masking_rate: float) -> ImageDraw:
        from harness.alignment.dpo import draw_showo_mask

        # the official order: the mask (mask_or_random_replace_tokens), then the dropout (t2i_prompt)
        mask = draw_showo_mask(self.reference.config.num_vq_tokens, generator, min_masking_rate)
        return ImageDraw(drop_text=_drop(generator, cond_dropout), mask=mask)

    def logp(self, model: nn.Module, prompts: Sequence[str], tokens: torch.Tensor,
             draws: Sequence[ImageDraw]) -> torch.Tensor:
        import torch

        from harness.alignment.dpo import showo_logp, showo_training_ids

        # tokenised as the reference's prompting does: the whole batch in one call, then the
        # dropped rows' ids replaced by the empty prompt's
        text_ids = self.tokenizer(list(prompts))["input_ids"]
        text_ids = [[] if draw.drop_text else ids for ids, draw in zip(text_ids, draws, strict=True)]
        masks = torch.stack([draw.mask for draw in draws if draw.mask is not None])
        input_ids, labels = showo_training_ids(tokens, text_ids, masks, tokens=self.tokens,
                                               config=self.reference.config)
        return showo_logp(model, input_ids, labels, self.tokens)

    def sample(self, policy: nn.Module, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return _sample_with(self.generator, policy, requests)

    def save(self, policy: nn.Module, folder: Path) -> None:
        import torch

        from harness.jsonl import read_json_object

        config = read_json_object(self.folder / "config.json")
        if self.params.llm is not None:
            config["llm_model_path"] = self.params.llm  # so the checkpoint loads with no --param llm
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        # the reference's own format (its save_pretrained with safe_serialization=False)
        state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in policy.state_dict().items()}
        torch.save(state, folder / "pytorch_model.bin")

    def parent(self) -> dict[str, Any]:
        from harness.generators.showo.magvit import MAGVIT_WEIGHTS
        from harness.weights import locate, weight_files

        vq_folder = locate(self.params.vq_model, MAGVIT_WEIGHTS)
        return {"model": self.params.model, "model_files": _file_hashes(
                    self.folder, [self.folder / "config.json", *weight_files(self.folder)]),
                "vq_model": self.params.vq_model, "vq_model_files": _file_hashes(
                    vq_folder, [vq_folder / "config.json", *weight_files(vq_folder)])}


class JanusFamily:
    """Janus-Pro: teacher-forced next-token log-likelihood of the VQ tokens after the generator's prompt."""

    name: ClassVar[str] = "janus"
    #: the modules image generation runs through (the understanding encoder and the VQ stay frozen)
    TRAINED: ClassVar[tuple[str, ...]] = ("language_model", "generation_embeddings", "generation_aligner",
                                          "generation_head")

    def __init__(self, params: Any) -> None:
        from harness.generators.janus import WEIGHTS, JanusGenerator
        from harness.weights import locate

        self.params = _float32_params(params, self.name)
        self.generator = JanusGenerator(self.params)
        self.reference = _freeze(self.generator.model)
        self.device = self.generator.device
        self.folder = locate(self.params.model, WEIGHTS)
        vq = self.reference.model.vqmodel
        # the side of the images the VQ decodes to (and so encodes from): grid x 2 per downsampling level
        self.resolution = self.generator.grid[0] * 2 ** (len(vq.config.channel_multiplier) - 1)
        self._prompt_ids: dict[str, torch.Tensor] = {}

    def _set_trainable(self, policy: nn.Module) -> nn.Module:
        policy.requires_grad_(False)
        for name in self.TRAINED:
            getattr(policy.model, name).requires_grad_(True)
        return policy.train()

    def new_policy(self) -> nn.Module:
        return self._set_trainable(copy.deepcopy(self.reference))

    def load_policy(self, folder: Path) -> nn.Module:
        import torch
        from transformers import JanusForConditionalGeneration

        policy = JanusForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, local_files_only=True)
        return self._set_trainable(policy.to(self.device))

    def trainable(self, policy: nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
        return [(name, p) for name, p in policy.named_parameters() if p.requires_grad]

    def image_tokens(self, images: Sequence[Image]) -> torch.Tensor:
        import torch

        from harness.alignment.dpo import janus_image_tokens
        from harness.alignment.pairs import pixel_batch

        processor = self.generator.processor.image_processor
        pixels = pixel_batch(images, self.resolution, processor.image_mean, processor.image_std)
        with torch.no_grad():
            return janus_image_tokens(self.reference, pixels.to(self.device))

    def draw(self, generator: torch.Generator, cond_dropout: float, min_masking_rate: float) -> ImageDraw:
        return ImageDraw(drop_text=_drop(generator, cond_dropout))

    def unconditional(self, ids: torch.Tensor) -> torch.Tensor:
        """The generator's unconditional prompt (as JanusGenerator._unconditional): all but BOS and the
        image-start tag replaced by pad."""
        keep = (ids == self.generator.bos_id) | (ids == self.generator.boi_id)
        return ids.masked_fill(~keep, self.generator.pad_id)

    def logp(self, model: nn.Module, prompts: Sequence[str], tokens: torch.Tensor,
             draws: Sequence[ImageDraw]) -> torch.Tensor:
        from harness.alignment.dpo import janus_logp

        rows = []
        for prompt, draw in zip(prompts, draws, strict=True):
            if prompt not in self._prompt_ids:
                self._prompt_ids[prompt] = self.generator.prompt_ids(prompt)
            ids = self._prompt_ids[prompt]
            rows.append(self.unconditional(ids) if draw.drop_text else ids)
        return janus_logp(model, rows, tokens, self.generator.pad_id)

    def sample(self, policy: nn.Module, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return _sample_with(self.generator, policy, requests)

    def save(self, policy: nn.Module, folder: Path) -> None:
        policy.save_pretrained(folder)
        self.generator.processor.save_pretrained(folder)  # the janus generator loads both from one folder

    def parent(self) -> dict[str, Any]:
        from harness.weights import weight_files

        return {"model": self.params.model, "model_files": _file_hashes(
            self.folder, [self.folder / "config.json", *weight_files(self.folder)])}


def load_family(generator: str, values: dict[str, str]) -> Family:
    """The family of generator plug-in `generator` built from its `--param` values; RunError on bad ones."""
    from harness.runner import RunError, _plugin, instantiate

    if generator not in FAMILIES:
        raise RunError(f"DPO trains image-token generators with a likelihood: {', '.join(FAMILIES)}; "
                       f"got {generator!r}")
    _, params, _ = _plugin("generator", generator, values)
    family_cls: type = ShowoFamily if generator == "showo" else JanusFamily
    return instantiate("generator", generator, family_cls, params)
