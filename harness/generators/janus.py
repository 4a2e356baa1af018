"""Janus-Pro text-to-image through transformers' `JanusForConditionalGeneration`, with our own sampling loop.

Janus-Pro writes an image as a raster-order sequence of VQ tokens (24 x 24 = 576 for the real
models), one language-model forward per token. We use transformers' modules as they are (text
embeddings, the Llama language model with its KV cache, `generation_head`,
`prepare_embeddings_for_image_generation`, `decode_image_tokens`) and the processor's prompt
format (chat template + image-start tag), but run the token loop ourselves instead of
`model.generate(generation_mode="image")`: there, all rows of a batch draw from one random stream
(`torch.multinomial`), so a candidate's image would depend on which other candidates share its
batch. Here each candidate samples from its own seeded generator (`harness.generators.seeding`).

One step, as transformers does it: the batch holds every candidate twice, conditional rows then
unconditional rows (the prompt with every token but BOS and the image-start tag replaced by pad);
the generation head's logits are combined as `uncond + (cond - uncond) * guidance`, divided by the
temperature, cut to the top-k, and sampled; the token's generation embedding is fed back to both
rows. Deliberate differences from transformers' `generate`:

* per-candidate random streams, sampled by inverse CDF from uniforms drawn up front (the same
  distribution as `torch.multinomial`, not the same numbers);
* guidance, temperature and softmax in float32 even when the model runs in bfloat16;
* `guidance == 1` runs conditional rows only (transformers requires guidance > 1 for images);
  `temperature == 0` is greedy (argmax), transformers' `do_sample=False`;
* only prompts of equal token length share a batch, so there is never padding (transformers
  left-pads a mixed batch, which shifts the padded prompts' positions);
* a dynamic KV cache instead of a static one (equal up to float rounding).

Step previews: Janus has no denoising steps, so a preview is the partial canvas after n of the T
tokens: the tokens so far, the rest filled with token 0, decoded, and then every pixel whose token
is not yet generated (the rows below and the tail of the current row) painted gray (128, 128, 128).
Previews come after ceil(k * T / K) tokens for k = 1..K; the last is the final image.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.plugins import Cost, GenerationRequest, GenerationResult, param
from harness.weights import WeightsSpec, locate

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = ["DEFAULT_MODEL", "JanusGenerator", "JanusParams", "preview_points"]

DEFAULT_MODEL = "deepseek-community/Janus-Pro-1B"  # transformers' converted checkpoint; 7B: ...-Janus-Pro-7B
WEIGHTS = WeightsSpec("Janus-Pro", DEFAULT_MODEL, files=("config.json", "tokenizer_config.json"))
GRAY = 128  # fill of the not-yet-generated part of a preview canvas


@dataclass(frozen=True, kw_only=True)
class JanusParams:
    model: str = param(DEFAULT_MODEL, help="Converted Janus-Pro checkpoint: a local folder or a hub id in the HF "
                                           "cache (deepseek-community/Janus-Pro-1B or -7B).")
    guidance: float = param(5.0, help="Classifier-free guidance scale (Janus's default 5); 1 = no guidance.")
    temperature: float = param(1.0, help="Sampling temperature; 0 = greedy (argmax), the same image for every seed.")
    top_k: int = param(0, help="Sample among the k likeliest tokens; 0 = the whole codebook, as DeepSeek's "
                               "reference code (the Janus-Pro paper's numbers) does. transformers' generate uses 50.")
    preview_points: int = param(8, help="Step previews per candidate (partial canvases), when a verifier asks.")
    batch_size: int = param(16, help="Candidates per forward pass (each is two rows with guidance).")
    device: str | None = param(None, help="Torch device; default cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = param(
        "auto", help="Model dtype; auto = bfloat16 on CUDA (as DeepSeek runs it), float32 elsewhere.")


def preview_points(n_tokens: int, k: int) -> list[int]:
    """How many tokens each of the `k` previews shows: ceil(i * n_tokens / k) for i = 1..k (the last is all)."""
    return [-(-i * n_tokens // k) for i in range(1, k + 1)]


def _split(total: int, weights: list[int]) -> list[int]:
    """`total` split in proportion to `weights` as integers that add up to `total` (cumulative rounding)."""
    whole = sum(weights)
    bounds = [round(total * sum(weights[: i + 1]) / whole) for i in range(len(weights))]
    return [b - a for a, b in zip([0, *bounds[:-1]], bounds, strict=True)]


@dataclass(frozen=True)
class _Row:
    """One candidate: request `request`, its `index`-th seed."""

    request: int
    index: int
    seed: int
    previews: bool


class JanusGenerator:
    """Janus-Pro image generation with per-candidate seeds, batched across candidates and prompts."""

    Params: ClassVar[type] = JanusParams
    description: ClassVar[str] = "Janus-Pro 1B/7B through transformers (raster-order image tokens, CFG)."

    def __init__(self, params: JanusParams) -> None:
        import torch
        from transformers import JanusForConditionalGeneration, JanusProcessor

        from harness.devices import pick_device

        _check(params)
        self.params = params
        self.guided = params.guidance != 1.0  # with guidance 1 the unconditional rows cancel out
        folder = locate(params.model, WEIGHTS)
        self.device = torch.device(pick_device(params.device))
        dtype = params.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        self.model = JanusForConditionalGeneration.from_pretrained(
            folder, dtype=getattr(torch, dtype), local_files_only=True).to(self.device).eval()
        self.processor = JanusProcessor.from_pretrained(folder, local_files_only=True)
        self.grid: tuple[int, int] = tuple(self.model.model.vqmodel.quantize.quant_state_dims)  # type: ignore[assignment]
        # transformers' loop runs for the vision config's num_image_tokens; decoding needs the VQ grid's.
        self.n_tokens = self.model.model.vision_model.config.num_image_tokens
        if self.n_tokens != self.grid[0] * self.grid[1]:
            raise ValueError(f"{folder}: num_image_tokens {self.n_tokens} does not fill the {self.grid} token grid")
        # Token ids as `generate(generation_mode="image")` takes them: BOS and pad from the
        # generation config (the tokenizer's as fallback), the image-start tag from the processor.
        tokenizer = self.processor.tokenizer
        config = self.model.generation_config
        self.bos_id = config.bos_token_id if config.bos_token_id is not None else tokenizer.bos_token_id
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else tokenizer.pad_token_id
        self.boi_id = tokenizer.convert_tokens_to_ids(self.processor.image_start_token)
        image_processor = self.processor.image_processor
        self.pixel_mean = torch.tensor(image_processor.image_mean, dtype=torch.float32, device=self.device)
        self.pixel_std = torch.tensor(image_processor.image_std, dtype=torch.float32, device=self.device)

    # -- prompts ---------------------------------------------------------------------------------

    def prompt_ids(self, prompt: str) -> torch.Tensor:
        """The conditional prompt's token ids: chat template, image-start tag, BOS (1-D, on CPU)."""
        text = prompt
        if self.processor.chat_template:
            messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
        return self.processor(text=text, generation_mode="image", return_tensors="pt")["input_ids"][0]

    def _unconditional(self, ids: torch.Tensor) -> torch.Tensor:
        """The prompt with every token except BOS and the image-start tag replaced by pad."""
        keep = (ids == self.bos_id) | (ids == self.boi_id)
        return ids.masked_fill(~keep, self.pad_id)

    # -- sampling --------------------------------------------------------------------------------

    def guide(self, logits: torch.Tensor) -> torch.Tensor:
        """Guided float32 logits (B, V) from the generation head's (2B, V): `uncond + (cond - uncond) * w`."""
        logits = logits.float()
        if not self.guided:
            return logits
        cond, uncond = logits.chunk(2)
        return uncond + (cond - uncond) * self.params.guidance

    def warp(self, logits: torch.Tensor) -> torch.Tensor:
        """Sampling logits: divided by the temperature, then all but the top-k set to -inf (transformers' order)."""
        import torch

        logits = logits / self.params.temperature
        if self.params.top_k:
            kth = torch.topk(logits, min(self.params.top_k, logits.shape[-1])).values[..., -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        return logits

    def sample_tokens(self, ids: torch.Tensor, seeds: list[int]) -> torch.Tensor:
        """Image tokens (B, T) for prompt ids (B, L) of equal length, row i sampled from `seeds[i]` alone.

        Call under `torch.inference_mode()` (as `generate` does).
        """
        import torch

        from harness.generators.seeding import row_generators, row_uniform, sample_rows

        model, lm = self.model, self.model.model.language_model
        ids = ids.to(self.device)
        rows = torch.cat([ids, self._unconditional(ids)]) if self.guided else ids
        uniforms = None
        if self.params.temperature > 0:
            # All of a row's uniforms up front: one draw per candidate instead of one per token.
            uniforms = row_uniform(row_generators(seeds, self.device), (self.n_tokens,), self.device)
        tokens = torch.empty((len(seeds), self.n_tokens), dtype=torch.long, device=self.device)
        out = lm(inputs_embeds=model.get_input_embeddings()(rows), use_cache=True)
        for t in range(self.n_tokens):
            logits = self.guide(model.model.generation_head(out.last_hidden_state[:, -1, :]))
            if uniforms is None:
                tokens[:, t] = logits.argmax(-1)
            else:
                tokens[:, t] = sample_rows(torch.softmax(self.warp(logits), dim=-1), uniforms[:, t])
            if t + 1 < self.n_tokens:
                step = torch.cat([tokens[:, t], tokens[:, t]]) if self.guided else tokens[:, t]
                embeds = model.prepare_embeddings_for_image_generation(step.unsqueeze(-1))
                out = lm(inputs_embeds=embeds, past_key_values=out.past_key_values, use_cache=True)
        return tokens

    # -- decoding --------------------------------------------------------------------------------

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (B, H, W, 3), on the CPU, of image tokens (B, T); decoded `batch_size` at a time.

        Un-normalised as the processor's `postprocess` does: (x * std + mean) * 255, clipped, truncated.
        Call under `torch.inference_mode()`.
        """
        import torch

        chunks = []
        for start in range(0, len(tokens), self.params.batch_size):
            x = self.model.decode_image_tokens(tokens[start:start + self.params.batch_size]).float()
            chunks.append(((x * self.pixel_std + self.pixel_mean) * 255).clip(0, 255).to(torch.uint8).cpu())
        return torch.cat(chunks)

    def _token_index_map(self, pixels_hw: tuple[int, int]) -> torch.Tensor:
        """(H, W) map from each pixel to the raster index of the token it belongs to."""
        import torch

        (gh, gw), (h, w) = self.grid, pixels_hw
        rows = torch.arange(h) * gh // h
        cols = torch.arange(w) * gw // w
        return rows[:, None] * gw + cols[None, :]

    def previews(self, tokens: torch.Tensor, final: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per row of `tokens`, `preview_points` partial canvases (H, W, 3) uint8; the last is `final`'s row."""
        import torch

        points = preview_points(self.n_tokens, self.params.preview_points)
        partial = []
        for n in points[:-1]:
            filled = tokens.clone()
            filled[:, n:] = 0  # any valid token: these pixels are painted over below
            partial.append(filled)
        out: list[list[torch.Tensor]] = [[] for _ in range(len(tokens))]
        if partial:
            pixels = self.decode(torch.cat(partial)).view(len(partial), len(tokens), *final.shape[1:])
            token_of_pixel = self._token_index_map(tuple(final.shape[1:3]))
            for k, n in enumerate(points[:-1]):
                pixels[k][:, token_of_pixel >= n] = GRAY
                for i in range(len(tokens)):
                    out[i].append(pixels[k, i])
        for i in range(len(tokens)):
            out[i].append(final[i])
        return out

    # -- the plug-in interface -------------------------------------------------------------------

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        import torch

        prompt_ids = [self.prompt_ids(r.prompt) for r in requests]
        images: list[list[Any]] = [[None] * r.n_candidates for r in requests]  # filled batch by batch
        previews: list[list[list[Image]]] = [[[] for _ in r.seeds] for r in requests]
        costs = [Cost() for _ in requests]
        with torch.inference_mode():
            for batch in self._batches(requests, prompt_ids):
                started = time.perf_counter()
                tokens = self.sample_tokens(torch.stack([prompt_ids[row.request] for row in batch]),
                                            [row.seed for row in batch])
                final = self.decode(tokens)
                want = [i for i, row in enumerate(batch) if row.previews]
                steps = self.previews(tokens[want], final[want]) if want else []
                for i, row in enumerate(batch):
                    images[row.request][row.index] = _to_pil(final[i])
                for i, frames in zip(want, steps, strict=True):
                    previews[batch[i].request][batch[i].index] = [_to_pil(f) for f in frames]
                self._charge(costs, batch, time.perf_counter() - started)
        return [GenerationResult(images=ims, previews=pre, cost=cost)
                for ims, pre, cost in zip(images, previews, costs, strict=True)]

    def _batches(self, requests: list[GenerationRequest], prompt_ids: list[torch.Tensor]) -> list[list[_Row]]:
        """Candidates in request order, grouped by prompt length (no padding), cut into `batch_size` pieces."""
        by_length: dict[int, list[_Row]] = {}
        for r, request in enumerate(requests):
            rows = [_Row(r, i, seed, request.previews) for i, seed in enumerate(request.seeds)]
            by_length.setdefault(len(prompt_ids[r]), []).extend(rows)
        size = self.params.batch_size
        return [rows[i:i + size] for rows in by_length.values() for i in range(0, len(rows), size)]

    def _charge(self, costs: list[Cost], batch: list[_Row], seconds: float) -> None:
        """Add a batch's cost to its requests: one forward pass per token, shared by row count."""
        owners = sorted({row.request for row in batch})
        counts = [sum(row.request == r for row in batch) for r in owners]
        passes = _split(self.n_tokens, counts)
        for r, n, p in zip(owners, counts, passes, strict=True):
            costs[r] = costs[r] + Cost(forward_passes=p, tokens=n * self.n_tokens, seconds=seconds * n / len(batch))


def _check(params: JanusParams) -> None:
    problems = []
    if params.guidance < 0:
        problems.append(f"guidance must be >= 0, got {params.guidance}")
    if params.temperature < 0:
        problems.append(f"temperature must be >= 0 (0 = greedy), got {params.temperature}")
    if params.top_k < 0:
        problems.append(f"top_k must be >= 0 (0 = off), got {params.top_k}")
    if params.preview_points < 1:
        problems.append(f"preview_points must be >= 1, got {params.preview_points}")
    if params.batch_size < 1:
        problems.append(f"batch_size must be >= 1, got {params.batch_size}")
    if problems:
        raise ValueError("; ".join(problems))


def _to_pil(pixels: Any) -> Image:
    from PIL import Image as PILImage

    return PILImage.fromarray(pixels.cpu().numpy())
