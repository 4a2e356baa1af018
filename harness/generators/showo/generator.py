"""The `showo` generator plug-in: Show-o text-to-image generation, the paper's baseline.

Our own implementation of the reference's generation (Image-Generation-CoT `baseline.py`, Show-o
`inference_t2i.py`): the t2i prompt layout and attention mask (`prompting`), the Phi transformer
loaded with its original parameter names (`model`), MaskGIT decoding with classifier-free
guidance (`sampling`) and the MAGVIT-v2 decoder (`magvit`). A DPO-aligned checkpoint of the same
architecture is just another `model` folder.

Batching: the candidates of all requests of one `generate()` call are cut into batches of
`batch_size`; each decoding step is one forward pass over a batch (its cond rows and, with
guidance, as many uncond rows). Each candidate draws its randomness from its own seed only, so
an image does not depend on the batch it was made in.

Images are made as the reference makes them: codes clamped to the codebook, decoded, then
`clamp((x + 1) / 2, 0, 1) * 255` truncated to uint8. Step previews (when a request asks) are
the decoded full predictions of every step, the last one being the final image.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from harness.plugins import Cost, GenerationRequest, GenerationResult, param

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = ["ShowoGenerator", "resolve_dtype"]


def resolve_dtype(name: str) -> torch.dtype:
    """The torch dtype for the `dtype` parameter. "auto" is float32 on every device: the reference
    loads Show-o and MAGVIT-v2 with no dtype (float32) and runs them so on GPU too."""
    import torch

    return {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16,
            "float16": torch.float16}[name]


@dataclass(frozen=True)
class _Row:
    """One candidate: request `request`, candidate `candidate` of it."""

    request: int
    candidate: int
    prompt: str
    seed: int
    previews: bool


class ShowoGenerator:
    """Show-o (Phi-1.5 + MAGVIT-v2 tokens), MaskGIT decoding with classifier-free guidance."""

    description: ClassVar[str] = ("Show-o (Phi-1.5 + MAGVIT-v2 tokens, MaskGIT decoding), the paper's baseline; "
                                  "DPO checkpoints are a `model` parameter.")

    @dataclass(frozen=True, kw_only=True)
    class Params:
        model: str = param("showlab/show-o", help="Show-o weights (or a same-architecture DPO checkpoint): a local "
                                                  "folder or a hub id in the HF cache.")
        vq_model: str = param("showlab/magvitv2", help="MAGVIT-v2 image tokenizer weights: a local folder or a hub id "
                                                       "in the HF cache.")
        llm: str | None = param(None, help="Phi tokenizer and config: a local folder or hub id; default: the "
                                           "checkpoint's llm_model_path (microsoft/phi-1_5).")
        steps: int = param(18, help="MaskGIT decoding steps (one forward pass each).")
        guidance: float = param(1.75, help="Classifier-free guidance w: logits (1 + w) * cond - w * uncond; 0 turns "
                                           "it off (no uncond rows).")
        temperature: float = param(1.0, help="Initial temperature of the Gumbel noise on the re-masking confidence "
                                             "(each step multiplies it by 1 - (step + 1) / steps, as the reference).")
        resolution: int = param(256, help="Image side in pixels; must be what the checkpoints make (token grid x "
                                          "the decoder's upsampling), checked at load.")
        batch_size: int = param(20, help="Candidates per forward pass (twice as many rows with guidance).")
        prefix_cache: bool = param(True, help="Run each prompt's text prefix once and only the image positions per "
                                              "step (same numbers up to float rounding); false recomputes the whole "
                                              "sequence every step, as the reference does.")
        pad_batches: bool = param(False, help="Pad partial batches to batch_size so every forward and decoder call "
                                              "has one shape: a candidate's pixels then do not depend, even in the "
                                              "last bit, on its batch-mates. Costs compute on small requests.")
        device: str | None = param(None, help="Torch device; default cuda when available, else cpu.")
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = param(
            "auto", help="Weights and activations; auto = float32 everywhere, as the reference runs (also on GPU).")

    def __init__(self, params: Params) -> None:
        from harness.devices import pick_device
        from harness.generators.showo.magvit import MagvitV2
        from harness.generators.showo.model import Showo

        _check_params(params)
        self.params = params
        self.device = pick_device(params.device)
        self.dtype = resolve_dtype(params.dtype)
        self.model, self.tokenizer, self.tokens = Showo.from_pretrained(
            params.model, llm=params.llm, device=self.device, dtype=self.dtype)
        self.vq = MagvitV2.from_pretrained(params.vq_model, device=self.device, dtype=self.dtype)
        config = self.model.config
        if self.vq.codebook_size != config.codebook_size:
            raise ValueError(f"the MAGVIT-v2 tokenizer {params.vq_model!r} has {self.vq.codebook_size} codes, the "
                             f"Show-o checkpoint {params.model!r} predicts {config.codebook_size}")
        side = math.isqrt(config.num_vq_tokens)
        if side * side != config.num_vq_tokens:
            raise ValueError(f"the Show-o checkpoint's {config.num_vq_tokens} image tokens are not a square grid")
        pixels = side * self.vq.config.upsample_factor
        if pixels != params.resolution:
            raise ValueError(f"resolution={params.resolution}, but {params.model!r} with {params.vq_model!r} makes "
                             f"{pixels}x{pixels} images ({side}x{side} tokens)")
        # The unconditional prompt is '' for every candidate: its row is built once.
        self._uncond = self._prompt_ids([""])

    def _prompt_ids(self, prompts: list[str]) -> torch.Tensor:
        from harness.generators.showo.prompting import t2i_prompt_ids

        config = self.model.config
        return t2i_prompt_ids(self.tokenizer, prompts, self.tokens, max_text_len=config.max_text_len,
                              num_image_tokens=config.num_vq_tokens, mask_id=config.mask_token_id,
                              device=self.device)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        started = time.perf_counter()
        rows = [_Row(r, c, request.prompt, seed, request.previews)
                for r, request in enumerate(requests) for c, seed in enumerate(request.seeds)]
        images: dict[tuple[int, int], Image] = {}
        previews: dict[tuple[int, int], list[Image]] = {}
        batches_of: list[set[int]] = [set() for _ in requests]  # batches each request took part in
        size = self.params.batch_size
        for number, first in enumerate(range(0, len(rows), size)):
            batch = rows[first:first + size]
            # Optionally pad to a full batch: every forward and decoder call then has the same shapes,
            # and kernels (chosen by shape) give a candidate the same numbers whoever its batch-mates
            # are. Unpadded, a different batch can move a decoded pixel by one level (seen on CPU).
            missing = size - len(batch) if self.params.pad_batches else 0
            padding = [dataclasses.replace(batch[0], previews=False)] * missing
            finals, steps = self._generate_batch(batch + padding)
            for i, row in enumerate(batch):
                images[row.request, row.candidate] = finals[i]
                previews[row.request, row.candidate] = steps[i]
                batches_of[row.request].add(number)
        seconds = time.perf_counter() - started
        results = []
        for r, request in enumerate(requests):
            n = request.n_candidates
            # A batched pass counts once for each request it served; time is shared by candidates.
            cost = Cost(forward_passes=self.params.steps * len(batches_of[r]),
                        tokens=self.model.config.num_vq_tokens * n, seconds=seconds * n / len(rows))
            results.append(GenerationResult(images=[images[r, c] for c in range(n)],
                                            previews=[previews[r, c] for c in range(n)], cost=cost))
        return results

    def _generate_batch(self, batch: list[_Row]) -> tuple[list[Image], list[list[Image]]]:
        """Final images and per-row step previews ([] for rows whose request wants none)."""
        import torch

        from harness.generators.seeding import row_generators
        from harness.generators.showo.prompting import attention_mask
        from harness.generators.showo.sampling import maskgit_generate
        params, config = self.params, self.model.config
        with torch.inference_mode():
            cond = self._prompt_ids([row.prompt for row in batch])
            uncond = self._uncond.expand(len(batch), -1) if params.guidance > 0 else None
            mask = attention_mask(cond if uncond is None else torch.cat([cond, uncond]), self.tokens)
            if params.prefix_cache:
                image_logits = self._cached_logits(cond, uncond, mask)
            else:
                def image_logits(ids: torch.Tensor) -> torch.Tensor:
                    return self.model.image_logits(ids, mask)
            result = maskgit_generate(
                image_logits, cond, uncond,
                row_generators([row.seed for row in batch], self.device),
                num_tokens=config.num_vq_tokens, text_len=config.max_text_len,
                image_token_offset=config.image_token_offset, mask_id=config.mask_token_id,
                steps=params.steps, guidance=params.guidance, temperature=params.temperature)
            finals = self._decode(result.tokens)
            wanted = [i for i, row in enumerate(batch) if row.previews]
            steps: list[list[Image]] = [[] for _ in batch]
            if wanted:
                # steps before the last, all of them through the decoder in batch_size chunks
                earlier = torch.stack(result.steps[:-1], dim=1)[wanted] if params.steps > 1 else None
                decoded = self._decode(earlier.reshape(-1, config.num_vq_tokens)) if earlier is not None else []
                per_row = params.steps - 1
                for k, i in enumerate(wanted):
                    steps[i] = [*decoded[k * per_row:(k + 1) * per_row], finals[i]]
        return finals, steps

    def _cached_logits(self, cond: torch.Tensor, uncond: torch.Tensor | None,
                       mask: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """`image_logits` over the rows [cond; uncond] computing each distinct text prefix once.

        Rows of one prompt share a prefix (and every uncond row has the same one), so the prefix
        runs once per distinct prompt and the cache rows are then gathered to the batch's rows.
        """
        import torch

        rows = cond if uncond is None else torch.cat([cond, uncond])
        text_len = self.model.config.max_text_len
        distinct, row_of = torch.unique(rows[:, :text_len], dim=0, return_inverse=True)
        first_row = torch.zeros(len(distinct), dtype=torch.long, device=rows.device)
        first_row.scatter_(0, row_of, torch.arange(len(rows), device=rows.device))  # any row with that prefix
        cache = self.model.prefix_cache(distinct, mask[first_row, :, :text_len, :text_len])
        cache.reorder_cache(row_of)  # one cache row per batch row
        segment_mask = mask[:, :, text_len:, :]

        def image_logits(ids: torch.Tensor) -> torch.Tensor:
            if not torch.equal(ids[:, :text_len], rows[:, :text_len]):
                raise RuntimeError("the decoding loop changed a text prefix the cache was built for")
            return self.model.image_logits_after_prefix(cache, ids[:, text_len:], segment_mask)

        return image_logits

    def _decode(self, codes: torch.Tensor) -> list[Image]:
        """Codebook ids (R, N) -> R PIL images, decoded `batch_size` at a time; pixels as the reference makes them."""
        import torch
        from PIL import Image as PILImage
        size = self.params.batch_size
        codes = codes.clamp(min=0, max=self.model.config.codebook_size - 1)
        out: list[Image] = []
        for first in range(0, codes.shape[0], size):
            chunk = codes[first:first + size]
            padded = chunk
            if self.params.pad_batches:  # like the forward passes: every decoder call has one shape
                padded = torch.cat([chunk, chunk.new_zeros(size - chunk.shape[0], chunk.shape[1])])
            pixels = self.vq.decode_code(padded)[:chunk.shape[0]].float()
            pixels = torch.clamp((pixels + 1.0) / 2.0, min=0.0, max=1.0) * 255.0
            arrays = pixels.permute(0, 2, 3, 1).to("cpu").numpy().astype("uint8")
            out.extend(PILImage.fromarray(array) for array in arrays)
        return out


def _check_params(params: ShowoGenerator.Params) -> None:
    problems = []
    if params.steps < 1:
        problems.append(f"steps must be at least 1, got {params.steps}")
    if params.batch_size < 1:
        problems.append(f"batch_size must be at least 1, got {params.batch_size}")
    if params.guidance < 0:
        problems.append(f"guidance must be >= 0, got {params.guidance}")
    if params.temperature < 0:
        problems.append(f"temperature must be >= 0, got {params.temperature}")
    if problems:
        raise ValueError("; ".join(problems))
