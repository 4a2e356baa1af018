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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.plugins import Cost, GenerationRequest, GenerationResult, param
from harness.weights import WeightsSpec, locate

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = ["DEFAULT_MODEL", "JanusGenerator", "JanusParams", "JanusTrajectories", "preview_points"]

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


@dataclass(eq=False)
class _Block:
    """Rows advanced together: one batched KV cache and the last hidden state of each sequence, laid out
    [cond rows; uncond rows] (cond rows only without guidance); `size` rows."""

    cache: Any  # transformers DynamicCache
    hidden: Any  # (sides * size, D): the next token's logits come from these
    size: int


class JanusTrajectories:
    """Janus rows of one prompt under step control (`harness.plugins.Trajectories`).

    Per row: its prompt ids, seed, tokens so far (`tokens[row, :done]`), its uniforms (one per token,
    drawn up front; None when greedy) and where its keys and values are: a position in a `_Block`
    (rows that advance together share one block; the prompt's prefill is one block shared by all
    rows until their first step copies it). `generate` also uses it for batches across prompts.
    """

    def __init__(self, request: GenerationRequest, prompts: list[Any], seeds: list[int], tokens: Any,
                 uniforms: Any, done: list[int], where: list[tuple[_Block, int]]) -> None:
        self.request = request
        self.prompts = prompts
        self.seeds = seeds
        self.tokens = tokens
        self.uniforms = uniforms
        self.done = done
        self.where = where

    def __len__(self) -> int:
        return len(self.seeds)

    def seed(self, row: int) -> int:
        return self.seeds[_rows(self, [row])[0]]

    def steps_done(self, row: int) -> int:
        return self.done[_rows(self, [row])[0]]


def _rows(traj: Any, rows: Sequence[int]) -> list[int]:
    """`rows` as ints, each a row of `traj` (ValueError naming the bad ones)."""
    out = [int(r) for r in rows]
    bad = [r for r in out if not 0 <= r < len(traj)]
    if bad:
        raise ValueError(f"rows {bad} are not rows of these trajectories (0..{len(traj) - 1})")
    return out


def _distinct_rows(traj: Any, rows: Sequence[int]) -> list[int]:
    out = _rows(traj, rows)
    if len(set(out)) != len(out):
        raise ValueError(f"rows {out} name a row twice; advance each row once per call")
    return out


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
        """Image tokens (B, T) for prompt ids (B, L) of equal length, row i sampled from `seeds[i]` alone:
        the rows started together and stepped to the end (`generate`'s loop). Call under
        `torch.inference_mode()` (as `generate` does)."""
        traj = self._start_rows([row for row in ids.to(self.device)], [int(s) for s in seeds], None)
        self._advance_rows(traj, list(range(len(seeds))), self.n_tokens)
        return traj.tokens

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

    # -- step control (harness.plugins.SteppingGenerator) ----------------------------------------

    @property
    def total_steps(self) -> int:
        """Image tokens per image: one step samples one token (and runs one forward for the next)."""
        return int(self.n_tokens)

    def start(self, request: GenerationRequest) -> JanusTrajectories:
        """One row per seed, in seed order, at step 0; the prompt's forward (prefill) runs once for all."""
        import torch

        ids = self.prompt_ids(request.prompt).to(self.device)
        with torch.inference_mode():
            return self._start_rows([ids] * request.n_candidates, list(request.seeds), request)

    def advance(self, traj: JanusTrajectories, rows: Sequence[int], steps: int = 1) -> None:
        """`steps` more tokens for each of `rows` (rows at one step share each forward pass)."""
        import torch

        rows = _distinct_rows(traj, rows)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        over = [r for r in rows if traj.done[r] + steps > self.n_tokens]
        if over:
            raise ValueError(f"rows {over} would pass the last step ({self.n_tokens}) with {steps} more")
        with torch.inference_mode():
            self._advance_rows(traj, rows, steps)

    def preview(self, traj: JanusTrajectories, rows: Sequence[int]) -> list[Image]:
        """Each row's partial canvas: its tokens so far decoded, the rest painted gray (the final image
        once all tokens are there), as `generate`'s step previews."""
        import torch

        rows = _rows(traj, rows)
        early = [r for r in rows if traj.done[r] == 0]
        if early:
            raise ValueError(f"rows {early} took no step yet: there is no canvas to preview")
        if not rows:
            return []
        with torch.inference_mode():
            filled = traj.tokens[rows].clone()
            for i, r in enumerate(rows):
                filled[i, traj.done[r]:] = 0  # any valid token: painted over below
            pixels = self.decode(filled)
            token_of_pixel = self._token_index_map(tuple(pixels.shape[1:3]))
            for i, r in enumerate(rows):
                if traj.done[r] < self.n_tokens:
                    pixels[i][token_of_pixel >= traj.done[r]] = GRAY
            return [_to_pil(p) for p in pixels]

    def fork(self, traj: JanusTrajectories, row: int, seed: int) -> int:
        """Append a copy of `row` whose remaining tokens are sampled from uniforms drawn from `seed`."""
        import torch

        (row,) = _rows(traj, [row])
        if traj.uniforms is None:
            raise ValueError("temperature 0 samples greedily: the remaining tokens draw no randomness, so a fork "
                             "would be a copy (use keep to duplicate a row)")
        from harness.generators.seeding import row_generators, row_uniform

        with torch.inference_mode():
            done = traj.done[row]
            fresh = row_uniform(row_generators([seed], self.device), (self.n_tokens - done,), self.device)
            uniforms = torch.cat([traj.uniforms[row:row + 1, :done], fresh], dim=1)
            traj.uniforms = torch.cat([traj.uniforms, uniforms])
            traj.tokens = torch.cat([traj.tokens, traj.tokens[row:row + 1]])
        traj.prompts.append(traj.prompts[row])
        traj.seeds.append(int(seed))
        traj.done.append(traj.done[row])
        traj.where.append(traj.where[row])  # shares the cache position until it is advanced
        return len(traj) - 1

    def keep(self, traj: JanusTrajectories, rows: Sequence[int]) -> None:
        """Keep `rows` in that order; a row named twice is duplicated (its uniforms too)."""
        import torch

        rows = _rows(traj, rows)
        with torch.inference_mode():
            index = torch.tensor(rows, dtype=torch.long, device=traj.tokens.device)
            traj.tokens = traj.tokens[index]
            if traj.uniforms is not None:
                traj.uniforms = traj.uniforms[index]
        traj.prompts = [traj.prompts[r] for r in rows]
        traj.seeds = [traj.seeds[r] for r in rows]
        traj.done = [traj.done[r] for r in rows]
        traj.where = [traj.where[r] for r in rows]  # duplicates share a position until advanced

    def finish(self, traj: JanusTrajectories, rows: Sequence[int]) -> list[Image]:
        """Take `rows` to the last token and decode them."""
        import torch

        rows = _rows(traj, rows)
        with torch.inference_mode():
            self._advance_rows(traj, list(dict.fromkeys(rows)), None)
            return [_to_pil(p) for p in self.decode(traj.tokens[rows])] if rows else []

    # -- the shared machinery ----------------------------------------------------------------------

    def _start_rows(self, prompts: list[torch.Tensor], seeds: list[int],
                    request: GenerationRequest | None) -> JanusTrajectories:
        """Rows for (prompt ids, seed) pairs at step 0 (call under inference mode). Each distinct
        prompt's forward runs once, alone (its cond and uncond rows), and its rows share the result."""
        import torch

        from harness.generators.seeding import row_generators, row_uniform

        model, lm = self.model, self.model.model.language_model
        prefills: dict[tuple[int, ...], _Block] = {}
        where = []
        for ids in prompts:
            key = tuple(int(x) for x in ids.tolist())
            if key not in prefills:
                ids = ids.to(self.device)[None]
                rows = torch.cat([ids, self._unconditional(ids)]) if self.guided else ids
                out = lm(inputs_embeds=model.get_input_embeddings()(rows), use_cache=True)
                prefills[key] = _Block(out.past_key_values, out.last_hidden_state[:, -1, :], 1)
            where.append((prefills[key], 0))
        uniforms = None
        if self.params.temperature > 0:
            # All of a row's uniforms up front: one draw per candidate instead of one per token.
            uniforms = row_uniform(row_generators(seeds, self.device), (self.n_tokens,), self.device)
        tokens = torch.zeros((len(seeds), self.n_tokens), dtype=torch.long, device=self.device)
        if request is None:
            request = GenerationRequest("", tuple(seeds))  # generate's internal batches
        return JanusTrajectories(request, list(prompts), [int(s) for s in seeds], tokens, uniforms,
                                 [0] * len(seeds), where)

    def _advance_rows(self, traj: JanusTrajectories, rows: list[int], steps: int | None) -> None:
        """`steps` tokens for each of `rows` (None: up to the last token); rows whose sequences have one
        length share each forward pass (call under inference mode)."""
        target = {r: self.n_tokens if steps is None else traj.done[r] + steps for r in rows}
        while True:
            pending = [r for r in rows if traj.done[r] < target[r]]
            if not pending:
                return
            # The shortest sequences first, batched together, until they catch up with the next ones.
            length = min(len(traj.prompts[r]) + traj.done[r] for r in pending)
            group = [r for r in pending if len(traj.prompts[r]) + traj.done[r] == length]
            longer = [len(traj.prompts[r]) + traj.done[r] for r in pending if r not in group]
            block = self._block_of(traj, group)
            for _ in range(min([target[r] - traj.done[r] for r in group] + [n - length for n in longer])):
                self._step(traj, group, block)

    def _block_of(self, traj: JanusTrajectories, group: list[int]) -> _Block:
        """A cache block holding exactly `group`'s rows, positions 0.. in group order: the block they
        are in when it holds them alone (no copy: the usual case, rows advancing together), else a
        new block gathered from theirs (after pruning, forking, or advancing a subset)."""
        import torch
        from transformers import DynamicCache

        blocks = {id(traj.where[r][0]) for r in group}
        block, _ = traj.where[group[0]]
        users = sum(1 for w in traj.where if w[0] is block)
        if (len(blocks) == 1 and block.size == len(group) == users
                and [traj.where[r][1] for r in group] == list(range(len(group)))):
            return block
        sides = 2 if self.guided else 1

        def pick(tensor_of: Any) -> torch.Tensor:
            parts = [tensor_of(b)[side * b.size + p:side * b.size + p + 1]
                     for side in range(sides) for b, p in (traj.where[r] for r in group)]
            return torch.cat(parts)

        layers = [(pick(lambda b, i=i: b.cache.layers[i].keys), pick(lambda b, i=i: b.cache.layers[i].values))
                  for i in range(len(block.cache.layers))]
        new = _Block(DynamicCache(ddp_cache_data=layers), pick(lambda b: b.hidden), len(group))
        for position, r in enumerate(group):
            traj.where[r] = (new, position)
        return new

    def _step(self, traj: JanusTrajectories, group: list[int], block: _Block) -> None:
        """One token for each row of `group` (all in `block`, in order), then the forward for the next."""
        import torch

        from harness.generators.seeding import sample_rows

        model, lm = self.model, self.model.model.language_model
        t = traj.done[group[0]]
        index = torch.tensor(group, dtype=torch.long, device=self.device)
        logits = self.guide(model.model.generation_head(block.hidden))
        if traj.uniforms is None:
            token = logits.argmax(-1)
        else:
            token = sample_rows(torch.softmax(self.warp(logits), dim=-1), traj.uniforms[index, t])
        traj.tokens[index, t] = token
        if t + 1 < self.n_tokens:
            step = torch.cat([token, token]) if self.guided else token
            embeds = model.prepare_embeddings_for_image_generation(step.unsqueeze(-1))
            out = lm(inputs_embeds=embeds, past_key_values=block.cache, use_cache=True)
            block.hidden = out.last_hidden_state[:, -1, :]
        for r in group:
            traj.done[r] += 1

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
