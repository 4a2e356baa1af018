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

Step control (`harness.plugins.SteppingGenerator`): `start(request)` gives one row per seed,
`advance` takes MaskGIT steps on any rows, `preview` decodes a row's full prediction of its last
step (what the official PARM code judges), `fork` copies a row that continues from a fresh seed,
`keep` prunes, reorders or duplicates rows, `finish` takes rows to the last step. `generate()`
is these same steps on every row of a batch, so a row stepped to the end with no fork is the
image `generate()` makes from its seed. Each prompt's text prefix runs once, alone (batch 1),
and its keys and values are kept with the rows (`prefix_cache`), so no row's prefix depends on
other prompts; with `pad_batches=true` every forward and decoder call also has one shape, and a
row's pixels do not depend, even in the last bit, on its batch-mates or on how its steps were
grouped into calls.

Images are made as the reference makes them: codes clamped to the codebook, decoded, then
`clamp((x + 1) / 2, 0, 1) * 255` truncated to uint8. Step previews (when a request asks) are
the decoded full predictions of every step, the last one being the final image.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.plugins import Cost, GenerationRequest, GenerationResult, param

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

    from harness.generators.showo.sampling import MaskGitState

__all__ = ["ShowoGenerator", "ShowoTrajectories", "resolve_dtype"]


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


class ShowoTrajectories:
    """Show-o rows of one prompt under step control (`harness.plugins.Trajectories`).

    Per row: its MaskGIT state (ids, kept tokens, last prediction, step count, running temperature,
    random stream: `state`), its seed, its attention-mask row and its prompt's text-prefix keys and
    values (shared by the rows of the prompt, not copied). `generate` also uses it internally for a
    batch whose rows belong to several prompts.
    """

    def __init__(self, request: GenerationRequest, state: MaskGitState, seeds: list[int], masks: torch.Tensor,
                 prefixes: list[Any]) -> None:
        self.request = request
        self.state = state
        self.seeds = seeds
        self.masks = masks  # (B, 1, L, L) the cond rows' attention masks
        self.prefixes = prefixes  # per row: its prompt's prefix keys/values (None without prefix_cache)

    def __len__(self) -> int:
        return len(self.seeds)

    def seed(self, row: int) -> int:
        return self.seeds[_rows(self, [row])[0]]

    def steps_done(self, row: int) -> int:
        return self.state.steps_done[_rows(self, [row])[0]]


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
        # The unconditional prompt is '' for every candidate: its row, mask and prefix are built once.
        from harness.generators.showo.prompting import attention_mask

        self._uncond = self._prompt_ids([""])
        self._uncond_mask = attention_mask(self._uncond, self.tokens)
        self._uncond_cache: list[tuple[torch.Tensor, torch.Tensor]] | None = None

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
            finals, steps = self._generate_batch(batch)
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
        """Final images and per-row step previews ([] for rows whose request wants none): the rows
        started together and stepped to the end, one `_step` over all of them per MaskGIT step."""
        import torch

        params, config = self.params, self.model.config
        with torch.inference_mode():
            traj = self._start([row.prompt for row in batch], [row.seed for row in batch], None)
            wanted = [i for i, row in enumerate(batch) if row.previews]
            every = list(range(len(batch)))
            kept: list[torch.Tensor] = []
            for _ in range(params.steps):
                self._step(traj, every)
                if wanted:
                    kept.append(traj.state.sampled[wanted].clone())
            finals = self._decode(traj.state.sampled)
            steps: list[list[Image]] = [[] for _ in batch]
            if wanted:
                # steps before the last, all of them through the decoder in batch_size chunks
                earlier = torch.stack(kept[:-1], dim=1) if params.steps > 1 else None
                decoded = self._decode(earlier.reshape(-1, config.num_vq_tokens)) if earlier is not None else []
                per_row = params.steps - 1
                for k, i in enumerate(wanted):
                    steps[i] = [*decoded[k * per_row:(k + 1) * per_row], finals[i]]
        return finals, steps

    # -- step control (harness.plugins.SteppingGenerator) ----------------------------------------

    @property
    def total_steps(self) -> int:
        """MaskGIT steps from all-masked to a finished image."""
        return self.params.steps

    def start(self, request: GenerationRequest) -> ShowoTrajectories:
        """One row per seed of `request`, in seed order, each at step 0."""
        import torch

        with torch.inference_mode():
            return self._start([request.prompt] * request.n_candidates, list(request.seeds), request)

    def advance(self, traj: ShowoTrajectories, rows: Sequence[int], steps: int = 1) -> None:
        """`steps` MaskGIT steps on each of `rows` (one batched forward pass per step)."""
        import torch

        rows = _distinct_rows(traj, rows)
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        over = [r for r in rows if traj.steps_done(r) + steps > self.total_steps]
        if over:
            raise ValueError(f"rows {over} would pass the last step ({self.total_steps}) with {steps} more")
        with torch.inference_mode():
            for _ in range(steps):
                self._step(traj, rows)

    def preview(self, traj: ShowoTrajectories, rows: Sequence[int]) -> list[Image]:
        """Each row's full prediction of its last step, decoded (its final image at the last step)."""
        import torch

        rows = _rows(traj, rows)
        early = [r for r in rows if traj.steps_done(r) == 0]
        if early:
            raise ValueError(f"rows {early} took no step yet: there is no prediction to preview")
        with torch.inference_mode():
            return self._decode(traj.state.sampled[rows]) if rows else []

    def fork(self, traj: ShowoTrajectories, row: int, seed: int) -> int:
        """Append a copy of `row` whose remaining steps draw from a generator seeded with `seed`."""
        import torch

        from harness.generators.seeding import row_generators

        (row,) = _rows(traj, [row])
        with torch.inference_mode():
            copy = traj.state.select([row])
            copy.generators = row_generators([seed], self.device)
            traj.state.append(copy)
            traj.masks = torch.cat([traj.masks, traj.masks[row:row + 1]])
        traj.seeds.append(int(seed))
        traj.prefixes.append(traj.prefixes[row])
        return len(traj) - 1

    def keep(self, traj: ShowoTrajectories, rows: Sequence[int]) -> None:
        """Keep `rows` in that order (a row named twice is duplicated with its random stream)."""
        import torch

        rows = _rows(traj, rows)
        with torch.inference_mode():
            traj.state = traj.state.select(rows)
            traj.masks = traj.masks[torch.tensor(rows, dtype=torch.long, device=traj.masks.device)]
        traj.seeds = [traj.seeds[r] for r in rows]
        traj.prefixes = [traj.prefixes[r] for r in rows]

    def finish(self, traj: ShowoTrajectories, rows: Sequence[int]) -> list[Image]:
        """Take `rows` to the last step (rows at different steps share forward passes) and decode them."""
        import torch

        rows = _rows(traj, rows)
        with torch.inference_mode():
            while True:
                pending = [r for r in dict.fromkeys(rows) if traj.steps_done(r) < self.total_steps]
                if not pending:
                    break
                self._step(traj, pending)
            return self._decode(traj.state.sampled[rows]) if rows else []

    # -- the shared machinery ----------------------------------------------------------------------

    def _start(self, prompts: list[str], seeds: list[int], request: GenerationRequest | None) -> ShowoTrajectories:
        """Rows for (prompt, seed) pairs at step 0 (call under inference mode); prompts may differ
        (`generate` starts a batch across requests), `start` gives one prompt's."""
        import torch

        from harness.generators.seeding import row_generators
        from harness.generators.showo.prompting import attention_mask
        from harness.generators.showo.sampling import maskgit_start

        config = self.model.config
        distinct = list(dict.fromkeys(prompts))
        ids_of = {prompt: self._prompt_ids([prompt]) for prompt in distinct}
        cond = torch.cat([ids_of[prompt] for prompt in prompts])
        state = maskgit_start(cond, row_generators(seeds, self.device), num_tokens=config.num_vq_tokens,
                              image_token_offset=config.image_token_offset, mask_id=config.mask_token_id,
                              temperature=self.params.temperature)
        prefixes: list[Any] = [None] * len(prompts)
        if self.params.prefix_cache:
            cached = {prompt: self._prefix(ids_of[prompt]) for prompt in distinct}
            prefixes = [cached[prompt] for prompt in prompts]
        request = request or GenerationRequest(prompts[0], tuple(seeds))
        return ShowoTrajectories(request, state, [int(s) for s in seeds], attention_mask(cond, self.tokens),
                                 prefixes)

    def _prefix(self, ids: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer, the keys and values of one sequence's text prefix, computed alone (batch 1), so
        they do not depend on which other prompts share a batch."""
        from harness.generators.showo.prompting import attention_mask

        text_len = self.model.config.max_text_len
        mask = attention_mask(ids, self.tokens)[:, :, :text_len, :text_len]
        cache = self.model.prefix_cache(ids[:, :text_len], mask)
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _uncond_prefix(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._uncond_cache is None:
            self._uncond_cache = self._prefix(self._uncond)
        return self._uncond_cache

    def _step(self, traj: ShowoTrajectories, rows: list[int]) -> None:
        """One MaskGIT step of `rows` (call under inference mode)."""
        from harness.generators.showo.sampling import maskgit_step

        params, config = self.params, self.model.config
        prefix = self._uncond[:, :config.max_text_len] if params.guidance > 0 else None
        maskgit_step(lambda rs, ids: self._logits(traj, rs, ids), traj.state, rows, prefix,
                     num_tokens=config.num_vq_tokens, text_len=config.max_text_len,
                     image_token_offset=config.image_token_offset, mask_id=config.mask_token_id,
                     steps=params.steps, guidance=params.guidance)

    def _logits(self, traj: ShowoTrajectories, rows: Sequence[int], ids: torch.Tensor) -> torch.Tensor:
        """Image logits of `ids` ([cond rows; uncond rows] with guidance, else cond rows) for traj's
        `rows`, in forward passes of at most `batch_size` rows each (padded to it with pad_batches)."""
        import torch

        count = len(rows)
        guided = ids.shape[0] == 2 * count
        size = self.params.batch_size
        cond_out, uncond_out = [], []
        for first in range(0, count, size):
            chunk = list(range(first, min(first + size, count)))
            # Optionally pad to a full batch: every forward then has the same shapes, and kernels
            # (chosen by shape) give a row the same numbers whoever its batch-mates are.
            chunk_padded = chunk + [chunk[0]] * (size - len(chunk) if self.params.pad_batches else 0)
            cond_ids = ids[chunk_padded]
            owners = [rows[i] for i in chunk_padded]
            masks = traj.masks[owners]
            stack = cond_ids
            if guided:
                stack = torch.cat([cond_ids, ids[[count + i for i in chunk_padded]]])
                masks = torch.cat([masks, self._uncond_mask.expand(len(owners), -1, -1, -1)])
            if self.params.prefix_cache:
                layers = [traj.prefixes[r] for r in owners]
                if guided:
                    layers += [self._uncond_prefix()] * len(owners)
                logits = self._logits_after_prefix(layers, stack, masks)
            else:
                logits = self.model.image_logits(stack, masks)
            n, width = len(chunk), len(chunk_padded)
            cond_out.append(logits[:n])
            if guided:
                uncond_out.append(logits[width:width + n])
        return torch.cat(cond_out + uncond_out)

    def _logits_after_prefix(self, prefixes: list[list[tuple[torch.Tensor, torch.Tensor]]], ids: torch.Tensor,
                             masks: torch.Tensor) -> torch.Tensor:
        """Image logits of rows whose text prefixes' keys and values are `prefixes` (one per row)."""
        import torch
        from transformers import DynamicCache

        text_len = self.model.config.max_text_len
        layers = [(torch.cat([p[layer][0] for p in prefixes]), torch.cat([p[layer][1] for p in prefixes]))
                  for layer in range(len(prefixes[0]))]
        return self.model.image_logits_after_prefix(DynamicCache(ddp_cache_data=layers), ids[:, text_len:],
                                                    masks[:, :, text_len:, :])

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
