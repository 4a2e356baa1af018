"""The VLM yes/no engine behind the `orm`, `prm` and `parm` verifiers.

The paper's reward models (ZiyuGuo99/Image-Generation-CoT, `selector.py`) ask LLaVA-OneVision
(`lmms-lab/llava-onevision-qwen2-7b-ov`) a yes/no question about an image and read the
probability of the first answer token. This engine asks many such questions at once:

    engine = YesNoEngine("llava-hf/llava-onevision-qwen2-7b-ov-hf")     # layout="pad": the official input
    query = YesNoQuery(turns=(Turn("user", "<image> Does this image ...? Please answer yes or no."),), image=img)
    [answer] = engine.answer([query])
    answer.p_yes, answer.argmax_answer(), answer.sample_answer(random.Random(0))

Two input layouts:

* `pad` (default; LLaVA-OneVision only) reproduces the official input token for token:
  - text: the `qwen_1_5` conversation template (llava/conversation.py `conv_qwen`, CHATML) with the
    turns and an open assistant turn, e.g. for one question
    "<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n<|im_start|>user\\n{question}<|im_end|>\\n
    <|im_start|>assistant\\n" (`qwen_1_5_prompt`), tokenised as llava/mm_utils.py
    `tokenizer_image_token` does: each piece between "<image>"s on its own.
  - image: `process_images` with image_aspect_ratio "pad" (selector.py overrides the checkpoint's
    "anyres_max_9"): `expand2square` onto the image processor's mean colour as ints
    (int(0.5 * 255) = 127 for SigLIP), then LLaVA's SigLipImageProcessor steps (PIL bicubic resize to
    one 384x384 tile, rescale 1/255, normalise by mean/std) with the processor's parameters.
  - features: one tile through the vision tower (the last layer's hidden states, as transformers'
    `get_image_features` selects them) and the projector: (384 / 14)^2 = 729 features, then the
    model's `image_newline` appended. llava_arch.py `prepare_inputs_labels_for_multimodal` takes
    that branch for a single-tile image when mm_patch_merge_type contains "unpad", and the
    OneVision checkpoints have "spatial_unpad": so "<image>" becomes 730 positions. transformers'
    processor cannot be told to use one tile (it always splits into an anyres grid plus a base
    tile and unpads), so the engine builds `inputs_embeds` itself and runs the language model
    through the model's own forward.
* `native`: the processor's own chat template and image processing (any-resolution tiles for
  LLaVA-OneVision, dynamic resolution for Qwen2-VL / Qwen2.5-VL) and the model's own forward.

Speed: one forward pass to the first answer position per query, not `generate`; up to
`batch_size` queries in one left-padded forward; each distinct image (by identity) is
preprocessed and, in the pad layout, encoded once per `answer()` call however many questions
ask about it (in the native layout the processor runs once per image, but each query's row
still carries the image's pixels through the vision tower). In the pad layout the images are
preprocessed on worker threads, the next batch's while the current batch's forward runs. Where
the time goes (benchmarks/verifier_throughput.py, tiny model, 256 px images, CPU): about half in
PIL's bicubic resize of the official preprocessing, which the official per-image loop pays too,
the rest in the vision tower and the language model's forward; building the answers is a few
percent (one `tolist` per tensor and memoised token names, not per-row tensor iteration).

Deviations from the official code (selector.py), on purpose:

* One forward pass to the first answer token instead of `generate(max_new_tokens=100)`: the
  official score reads only the first step's distribution (and the first token of the answer),
  which the forward computes exactly; the remaining 99 steps change neither.
* `p_yes`/`p_no` are the full-vocabulary softmax of the raw logits. The official code's
  `softmax(cont.scores)` reads generate()'s *processed* scores: with do_sample=True the
  top-k=50 warper (transformers' default; more if the checkpoint's generation_config sets
  top_k/top_p) has set every other token to -inf, so the official probability is renormalised
  among the 50 likeliest tokens. `YesNoAnswer.top_k_prob(token)` gives that value.
* The official answer is *sampled* (do_sample=True, temperature 1); `argmax_answer()` is the
  deterministic most likely first token, `sample_answer(rng)` the official sampling (top-50,
  temperature 1) with an explicit seeded generator.
* Batched, padded forwards (left padding, positions counted from the attention mask as
  generate() does) instead of one image at a time; results agree with the unbatched forward to
  float rounding.
* dtype "auto" is float16 on CUDA, as the official code loads the model, but float32 on CPU
  (half precision on CPU is slow and partly unsupported). The official code also asks for
  flash_attention_2; here it is transformers' default attention (sdpa): same maths, other rounding.
* Images that are neither RGB nor RGBA are converted to RGB before padding (the official
  `expand2square` would fail on a 3-tuple background for e.g. mode "L").
"""

from __future__ import annotations

import functools
import os
import random
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from harness.weights import WeightsSpec, locate

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL.Image import Image

__all__ = [
    "IMAGE_PLACEHOLDER",
    "TOP_K",
    "GeneratedAnswer",
    "Turn",
    "YesNoAnswer",
    "YesNoEngine",
    "YesNoQuery",
    "expand2square",
    "official_pixels",
    "pad_background",
    "qwen_1_5_prompt",
    "tokenizer_image_token",
]

SPEC = WeightsSpec("VLM verifier", "llava-hf/llava-onevision-qwen2-7b-ov-hf", files=("config.json",))

IMAGE_PLACEHOLDER = "<image>"  # llava/constants.py DEFAULT_IMAGE_TOKEN
IMAGE_TOKEN_INDEX = -200  # llava/constants.py: the id tokenizer_image_token puts where the image goes
TOP_K = 50  # transformers' default top_k, which the official generate(do_sample=True) samples within

# llava/conversation.py conv_qwen ("qwen_1_5"), SeparatorStyle.CHATML
QWEN_1_5_SYSTEM = "<|im_start|>system\nYou are a helpful assistant."
QWEN_1_5_ROLES = {"user": "<|im_start|>user", "assistant": "<|im_start|>assistant"}
QWEN_1_5_SEP = "<|im_end|>"

Layout = Literal["pad", "native"]
Answer = Literal["yes", "no", "other"]


@dataclass(frozen=True)
class Turn:
    """One message of the conversation."""

    role: Literal["user", "assistant"]
    text: str  # the first user turn holds "<image>" once: where the image goes


@dataclass(frozen=True)
class YesNoQuery:
    """A conversation about one image, ending with the user's question; the engine opens the answer."""

    turns: tuple[Turn, ...]
    image: Image


@dataclass(frozen=True)
class YesNoAnswer:
    """The model's distribution over the first answer token."""

    p_yes: float  # full-vocabulary softmax at the first answer position, token "yes" (the engine's yes_token)
    p_no: float  # same, token "no" (the engine's no_token)
    top_tokens: tuple[str, ...]  # the TOP_K likeliest first tokens (convert_ids_to_tokens), most likely first
    top_probs: tuple[float, ...]  # their full-softmax probabilities (not renormalised)

    def argmax_answer(self) -> Answer:
        """The most likely first token as an answer; "Yes" counts as yes, as in the official check."""
        return _as_answer(self.top_tokens[0])

    def sample_answer(self, rng: random.Random) -> Answer:
        """A first token drawn as the official generate(do_sample=True, temperature=1, top_k=50) draws it."""
        total = sum(self.top_probs)
        threshold = rng.random() * total
        cumulative = 0.0
        for token, prob in zip(self.top_tokens, self.top_probs, strict=True):
            cumulative += prob
            if threshold < cumulative:
                return _as_answer(token)
        return _as_answer(self.top_tokens[-1])  # threshold == total up to rounding

    def top_k_prob(self, token: str) -> float:
        """P(`token`) renormalised among the top TOP_K tokens (0 outside them): the official
        `softmax(cont.scores)[token]`, since generate()'s scores come after the top-k warper."""
        if token not in self.top_tokens:
            return 0.0
        return self.top_probs[self.top_tokens.index(token)] / sum(self.top_probs)


@dataclass(frozen=True)
class GeneratedAnswer:
    """A generated answer (`YesNoEngine.generate_text`): the first token's distribution and the text."""

    first: YesNoAnswer  # what `answer` gives for the same query
    text: str  # the greedy continuation, special tokens skipped, stripped
    tokens: int  # tokens generated (up to the end-of-turn token or max_new_tokens)


def _as_answer(token: str) -> Answer:
    word = token.lower()
    return "yes" if word == "yes" else "no" if word == "no" else "other"


# --- the official prompt ------------------------------------------------------------------------


def check_turns(turns: Sequence[Turn]) -> None:
    """Raise ValueError unless `turns` alternate user/assistant from a user turn to a user turn, with
    "<image>" exactly once, in the first turn."""
    if not turns:
        raise ValueError("a YesNoQuery needs at least one turn")
    for i, turn in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if turn.role != expected:
            raise ValueError(f"turn {i} has role {turn.role!r}; turns must alternate user/assistant from a user turn")
        if not turn.text:
            # conv_qwen renders an empty message as an open turn: never what a caller means
            raise ValueError(f"turn {i} is empty")
    if turns[-1].role != "user":
        raise ValueError("the last turn must be the user's question (the engine adds the open assistant turn)")
    counts = [turn.text.count(IMAGE_PLACEHOLDER) for turn in turns]
    if counts[0] != 1 or sum(counts) != 1:
        raise ValueError(f"{IMAGE_PLACEHOLDER!r} must appear exactly once, in the first turn; found {counts}")


def qwen_1_5_prompt(turns: Sequence[Turn]) -> str:
    """The text `conv_templates["qwen_1_5"].get_prompt()` builds from `turns` plus an open assistant turn."""
    check_turns(turns)
    text = QWEN_1_5_SYSTEM + QWEN_1_5_SEP + "\n"
    for turn in turns:
        text += QWEN_1_5_ROLES[turn.role] + "\n" + turn.text + QWEN_1_5_SEP + "\n"
    return text + QWEN_1_5_ROLES["assistant"] + "\n"


def tokenizer_image_token(prompt: str, tokenizer: Any, image_token_index: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """llava/mm_utils.py `tokenizer_image_token`: each piece between "<image>"s tokenised on its own
    (so no token spans the image), `image_token_index` in between, a leading BOS kept once."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split(IMAGE_PLACEHOLDER)]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for i, chunk in enumerate(chunks):
        if i > 0:
            ids.append(image_token_index)
        ids.extend(chunk[offset:])
    return ids


# --- the official image preprocessing ------------------------------------------------------------


def pad_background(image_mean: Sequence[float]) -> tuple[int, ...]:
    """The padding colour `process_images` uses: the processor's mean as ints (truncated, not rounded)."""
    return tuple(int(x * 255) for x in image_mean)


def expand2square(image: Image, background: tuple[int, ...]) -> Image:
    """llava/mm_utils.py `expand2square`: paste onto a square of `background`, centred on the short side."""
    from PIL import Image as PILImage

    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    square = PILImage.new(image.mode, (side, side), background)
    square.paste(image, (0, (width - height) // 2) if width > height else ((height - width) // 2, 0))
    return square


def official_pixels(image: Image, image_processor: Any) -> np.ndarray:
    """One (3, H, W) float32 tile as the official `process_images(..., image_aspect_ratio="pad")` makes it:
    expand2square, then LLaVA's SigLipImageProcessor (PIL resize, rescale, normalise), with the
    size, resample, rescale factor, mean and std of `image_processor`.

    Written with PIL and numpy directly rather than through transformers' array helpers (which
    round-trip through PIL for the resize): the same operations in the same dtypes, bitwise equal
    (tested), a third faster.
    """
    import numpy as np
    from PIL import Image as PILImage

    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    square = expand2square(image, pad_background(image_processor.image_mean))
    if square.mode != "RGB":
        square = square.convert("RGB")
    height, width = image_processor.size["height"], image_processor.size["width"]
    resample = PILImage.Resampling(int(image_processor.resample))
    array = np.asarray(square.resize((width, height), resample=resample, reducing_gap=None))
    table = _normalise_table(float(image_processor.rescale_factor), tuple(image_processor.image_mean),
                             tuple(image_processor.image_std))
    # One lookup per pixel and channel, straight into the (3, H, W) layout: the table holds, for every
    # uint8 value, what rescale + normalise make of it, so the result is the same numbers.
    return np.stack([table[channel][array[..., channel]] for channel in range(3)])


@functools.lru_cache(maxsize=8)
def _normalise_table(rescale_factor: float, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: transformers' rescale (multiply in float64, store float32) then normalise (in
    float32) of each uint8 value, per channel: the same operations on the same values as applying
    them to the image, elementwise, so a lookup gives bitwise the same pixels, four times faster."""
    import numpy as np

    values = (np.arange(256, dtype=np.float64) * rescale_factor).astype(np.float32)
    mean_f = np.asarray(mean, dtype=np.float32)[:, None]
    std_f = np.asarray(std, dtype=np.float32)[:, None]
    table = (values[None, :] - mean_f) / std_f
    table.flags.writeable = False
    return table


# --- the engine -----------------------------------------------------------------------------------


@dataclass
class _Batch:
    """Model inputs for one padded forward; `kwargs` go to the model's forward as they are."""

    kwargs: dict[str, Any]
    attention_mask: torch.Tensor
    input_ids: torch.Tensor  # the token ids behind the rows (pad layout: image positions hold the image token)


class YesNoEngine:
    """Answers YesNoQuery batches with one forward pass per batch; see the module docstring.

    `model`: a local folder or a hub id in the HF cache (MissingWeightsError otherwise); any
    image-text-to-text chat model for layout="native", a llava_onevision one for "pad".
    `device`: None picks cuda when available. `dtype`: "auto" is float16 on CUDA, float32 elsewhere.
    `batch_size`: queries per forward pass. `padding_side`: "left" (every row ends at its answer
    position) or "right" (answer positions gathered per row); the results agree to float rounding.
    `yes_token` / `no_token`: the tokens whose probabilities are `p_yes` / `p_no` (VQAScore reads "Yes").
    """

    def __init__(self, model: str, *, layout: Layout = "pad", device: str | None = None,
                 dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto", batch_size: int = 16,
                 padding_side: Literal["left", "right"] = "left", yes_token: str = "yes",
                 no_token: str = "no") -> None:
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

        from harness.devices import pick_device

        if layout not in ("pad", "native"):
            raise ValueError(f"layout must be 'pad' or 'native', not {layout!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', not {padding_side!r}")
        folder = locate(model, SPEC)
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if layout == "pad" and config.model_type != "llava_onevision":
            raise ValueError(
                f"{model}: layout='pad' reproduces the official LLaVA-OneVision input and needs a llava_onevision "
                f"checkpoint; this one is {config.model_type!r}. Use layout='native' for other models."
            )
        self.model_name = str(model)
        self.layout: Layout = layout
        self.batch_size = batch_size
        self.padding_side = padding_side
        self.device = torch.device(pick_device(device))
        if dtype == "auto":
            dtype = "float16" if self.device.type == "cuda" else "float32"
        self.dtype = getattr(torch, dtype)
        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        self.tokenizer = self.processor.tokenizer
        self.model = AutoModelForImageTextToText.from_pretrained(
            folder, dtype=self.dtype, local_files_only=True).to(self.device).eval()
        self.yes_token, self.no_token = yes_token, no_token
        self.yes_id = self._token_id(yes_token)
        self.no_id = self._token_id(no_token)
        self.forward_passes = 0  # batched forward passes so far (for Cost)
        self._ids_memo: dict[tuple[tuple[Turn, ...], int], list[int]] = {}
        self._token_names: dict[int, str] = {}  # token id -> its token string (convert_ids_to_tokens), memoised
        from concurrent.futures import ThreadPoolExecutor

        self._threads = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="vlm-pre")
        self.images_processed = 0  # images preprocessed so far (each distinct image once per answer() call)
        # M-RoPE models (Qwen2-VL, Qwen2.5-VL) compute their 3-D positions from input_ids, image grid and
        # attention mask; the others get 1-D positions counted from the attention mask, as generate() does.
        text_config = self.model.config.get_text_config()
        rope = getattr(text_config, "rope_parameters", None) or getattr(text_config, "rope_scaling", None) or {}
        self._own_positions = "mrope_section" not in rope
        self._template_separates_image = layout == "native" and self._probe_image_separator()

    def _token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == self.tokenizer.unk_token_id:
            raise ValueError(f"{self.model_name}: the tokenizer has no token {token!r}, so P({token!r}) cannot be read")
        return int(token_id)

    # -- public ---------------------------------------------------------------------------------

    def answer(self, queries: Sequence[YesNoQuery]) -> list[YesNoAnswer]:
        """The first-answer-token distribution of each query, in order; `batch_size` queries per forward."""
        for i, query in enumerate(queries):
            try:
                check_turns(query.turns)
            except ValueError as err:
                raise ValueError(f"query {i}: {err}") from None
        batches = [list(queries[i:i + self.batch_size]) for i in range(0, len(queries), self.batch_size)]
        # Per distinct image: its preprocessed form, kept until the last batch that needs it.
        last_use = {id(q.image): b for b, batch in enumerate(batches) for q in batch}
        cache: dict[int, Any] = {}
        pending: dict[int, Future[np.ndarray]] = {}  # pad layout: pixels being made on the threads
        answers: list[YesNoAnswer] = []
        self._prefetch(batches[:1], cache, pending)
        for b, batch in enumerate(batches):
            # The next batch's images are preprocessed on the threads while this batch's forward runs.
            self._prefetch(batches[b + 1:b + 2], cache, pending)
            if self.layout == "pad":
                prepared = self._pad_batch(batch, cache, pending)
            else:
                prepared = self._native_batch(batch, cache)
            answers.extend(self._answers(self._first_answer_logits(prepared)))
            for key in [key for key, last in last_use.items() if last == b]:
                cache.pop(key, None)
        return answers

    def _prefetch(self, batches: list[list[YesNoQuery]], cache: dict[int, Any],
                  pending: dict[int, Future[np.ndarray]]) -> None:
        """Start the official preprocessing of the images of `batches` not yet encoded or started (pad layout)."""
        if self.layout != "pad":
            return
        for batch in batches:
            for query in batch:
                key = id(query.image)
                if key not in cache and key not in pending:
                    pending[key] = self._threads.submit(official_pixels, query.image, self.processor.image_processor)

    def input_ids(self, queries: Sequence[YesNoQuery]) -> list[list[int]]:
        """The token ids each query puts before the model, padding removed, in order (the image's
        positions hold the model's image token): what `answer` feeds it, for checking prompts."""
        out: list[list[int]] = []
        for i in range(0, len(queries), self.batch_size):
            batch = list(queries[i:i + self.batch_size])
            prepared = self._pad_batch(batch, {}) if self.layout == "pad" else self._native_batch(batch, {})
            for row, mask in zip(prepared.input_ids.tolist(), prepared.attention_mask.tolist(), strict=True):
                out.append([token for token, real in zip(row, mask, strict=True) if real])
        return out

    def generate_text(self, queries: Sequence[YesNoQuery], max_new_tokens: int = 40) -> list[GeneratedAnswer]:
        """Greedy answers of up to `max_new_tokens` tokens (stopping at the end of the turn), with the
        first token's distribution; `batch_size` queries per batch. The pad layout decodes with the
        model's forward and its KV cache (positions counted from the mask, as `answer` does); the
        native layout calls transformers' `generate(do_sample=False)`."""
        import torch

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        for i, query in enumerate(queries):
            try:
                check_turns(query.turns)
            except ValueError as err:
                raise ValueError(f"query {i}: {err}") from None
        if self.padding_side != "left":
            raise ValueError("generate_text needs left padding (every row ends at its answer position)")
        stop = {t for t in (self.tokenizer.convert_tokens_to_ids(QWEN_1_5_SEP), self.tokenizer.eos_token_id)
                if isinstance(t, int) and t != self.tokenizer.unk_token_id}
        out: list[GeneratedAnswer] = []
        cache: dict[int, Any] = {}
        for first in range(0, len(queries), self.batch_size):
            batch = list(queries[first:first + self.batch_size])
            prepared = self._pad_batch(batch, cache) if self.layout == "pad" else self._native_batch(batch, cache)
            with torch.inference_mode():
                steps = self._greedy(prepared, max_new_tokens)
            answers = self._answers(steps[0])
            ids = torch.stack([step.argmax(-1) for step in steps], dim=1).tolist()
            for answer, row in zip(answers, ids, strict=True):
                cut = next((i for i, t in enumerate(row) if t in stop), len(row))
                text = self.tokenizer.decode(row[:cut], skip_special_tokens=True).strip()
                out.append(GeneratedAnswer(answer, text, min(cut + 1, len(row))))
            cache.clear()
        return out

    def _greedy(self, batch: _Batch, max_new_tokens: int) -> list[torch.Tensor]:
        """Per generated position, the (B, vocab) float32 logits of greedy decoding (call under inference mode)."""
        import torch

        if self.layout == "native":
            kwargs = {k: v for k, v in batch.kwargs.items() if k != "position_ids"}
            result = self.model.generate(**kwargs, max_new_tokens=max_new_tokens, do_sample=False,
                                         output_logits=True, return_dict_in_generate=True)
            self.forward_passes += len(result.logits)
            return [step.float() for step in result.logits]
        kwargs = dict(batch.kwargs)
        mask = batch.attention_mask
        positions = kwargs["position_ids"]
        result = self.model(**kwargs, logits_to_keep=1, use_cache=True)
        self.forward_passes += 1
        steps = [result.logits[:, -1].float()]
        embed = self.model.get_input_embeddings()
        for _ in range(max_new_tokens - 1):
            token = steps[-1].argmax(-1, keepdim=True)
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            positions = positions[:, -1:] + 1
            result = self.model(inputs_embeds=embed(token), attention_mask=mask, position_ids=positions,
                                past_key_values=result.past_key_values, logits_to_keep=1, use_cache=True)
            self.forward_passes += 1
            steps.append(result.logits[:, -1].float())
        return steps

    # -- the pad layout -------------------------------------------------------------------------

    def pad_layout_ids(self, turns: Sequence[Turn], n_image_tokens: int) -> list[int]:
        """The official token ids for `turns`, with `n_image_tokens` copies of the image token id where
        the image features go. Memoised: a verifier asks the same question of every candidate."""
        key = (tuple(turns), n_image_tokens)
        if key not in self._ids_memo:
            if len(self._ids_memo) >= 4096:  # questions embed the prompt: bound the memo over a long run
                self._ids_memo.clear()
            ids = tokenizer_image_token(qwen_1_5_prompt(turns), self.tokenizer)
            at = ids.index(IMAGE_TOKEN_INDEX)
            self._ids_memo[key] = [*ids[:at], *[self.model.config.image_token_id] * n_image_tokens, *ids[at + 1:]]
        return list(self._ids_memo[key])

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) single tiles -> (N, tokens + 1, hidden): vision tower, the configured layer and
        feature selection, projector, then `image_newline`, as the official single-image branch does."""
        import torch

        inner = self.model.model
        config = self.model.config
        outputs = inner.vision_tower(pixel_values.to(self.device, self.dtype), output_hidden_states=True)
        layer = config.vision_feature_layer
        if isinstance(layer, int):
            hidden = outputs.hidden_states[layer]
        else:
            hidden = torch.cat([outputs.hidden_states[i] for i in layer], dim=-1)
        if config.vision_feature_select_strategy == "default":
            hidden = hidden[:, 1:]
        features = inner.multi_modal_projector(hidden)
        newline = inner.image_newline.to(features.dtype).expand(features.shape[0], 1, -1)
        return torch.cat([features, newline], dim=1)

    def _pad_features(self, images: list[Image], cache: dict[int, Any],
                      pending: dict[int, Future[np.ndarray]] | None = None) -> None:
        """Encode the images not yet in `cache` (one vision-tower pass for all of them); their pixels come
        from `pending` where `answer` started them, else are made now."""
        import numpy as np
        import torch

        new = list({id(image): image for image in images if id(image) not in cache}.values())
        if not new:
            return
        pending = {} if pending is None else pending
        for image in new:
            if id(image) not in pending:  # PIL's resize and numpy release the GIL: preprocessed on threads
                pending[id(image)] = self._threads.submit(official_pixels, image, self.processor.image_processor)
        pixels = np.stack([pending.pop(id(image)).result() for image in new])
        self.images_processed += len(new)
        features = self.image_features(torch.from_numpy(pixels))
        for image, feature in zip(new, features, strict=True):
            cache[id(image)] = feature

    def _pad_batch(self, batch: list[YesNoQuery], cache: dict[int, Any],
                   pending: dict[int, Future[np.ndarray]] | None = None) -> _Batch:
        import torch

        with torch.inference_mode():
            self._pad_features([q.image for q in batch], cache, pending)
        features = [cache[id(q.image)] for q in batch]
        rows = [self.pad_layout_ids(q.turns, f.shape[0]) for q, f in zip(batch, features, strict=True)]
        ids, mask = self._pad_rows(rows)
        with torch.inference_mode():
            embeds = self.model.get_input_embeddings()(ids)
            image_positions = ids == self.model.config.image_token_id
            embeds[image_positions] = torch.cat(features).to(embeds.dtype)
        return _Batch({"inputs_embeds": embeds, "attention_mask": mask, "position_ids": positions_from_mask(mask)},
                      mask, ids)

    def _pad_rows(self, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad token-id rows to one length on `padding_side` with the pad token; (ids, attention mask)."""
        import numpy as np
        import torch

        width = max(len(row) for row in rows)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = np.full((len(rows), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if self.padding_side == "left" else slice(0, len(row))
            ids[i, span] = row
            mask[i, span] = 1
        return torch.from_numpy(ids).to(self.device), torch.from_numpy(mask).to(self.device)

    # -- the native layout ----------------------------------------------------------------------

    def native_text(self, turns: Sequence[Turn]) -> str:
        """The processor's chat template over `turns`, the image where "<image>" is, answer turn opened.

        A turn's text is split at "<image>" into text, image, text parts. The questions are written
        in LLaVA's convention, "<image>" then a separator (" " or "\\n") then the question; when the chat
        template itself puts whitespace between an image part and the text after it (llava-hf's
        OneVision template writes "<image>\\n"), the question's own separator is dropped, so the model
        sees the template's separator once, as the HF processor renders an image part then the question
        text. A template that writes the image and the text side by side (Qwen2-VL's; the qwen_1_5
        template `convert-llava` writes) keeps the question's separator: "<image> This image ...", the
        official string.
        """
        check_turns(turns)
        messages: list[dict[str, Any]] = []
        for turn in turns:
            before, found, after = turn.text.partition(IMAGE_PLACEHOLDER)
            parts = [{"type": "text", "text": before}] if before else []
            if found:
                parts.append({"type": "image"})
                if self._template_separates_image:
                    after = after.lstrip()
                if after:
                    parts.append({"type": "text", "text": after})
            messages.append({"role": turn.role, "content": parts})
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if text.count(self.processor.image_token) != 1:
            raise ValueError(f"{self.model_name}: the chat template rendered {text.count(self.processor.image_token)} "
                             f"image tokens ({self.processor.image_token!r}) for one image")
        return text

    def _probe_image_separator(self) -> bool:
        """Whether the chat template renders whitespace (and only whitespace) between an image part and
        the text part that follows it; see `native_text`."""
        sentinel = "stepwise-separator-probe"
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": sentinel}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        image = self.processor.image_token
        if text.count(image) != 1 or sentinel not in text:
            return False
        between = text[text.index(image) + len(image):text.index(sentinel)]
        return bool(between) and not between.strip()

    def _native_image(self, image: Image) -> tuple[str, dict[str, torch.Tensor]]:
        """The processor's work on one image: its placeholder text and its tensors (pixels, sizes, grid)."""
        token = self.processor.image_token
        encoded = self.processor(images=[image], text=[token], return_text_replacement_offsets=True,
                                 return_tensors="pt")
        self.images_processed += 1
        if "text_replacement_offsets" not in encoded:
            raise RuntimeError(f"{self.model_name}: this transformers' processor does not report how it expands the "
                               "image placeholder (return_text_replacement_offsets); layout='native' needs "
                               "transformers 5")
        replacement = encoded["text_replacement_offsets"][0][0]["replacement"]
        text_keys = {"input_ids", "attention_mask", "mm_token_type_ids", "text_replacement_offsets"}
        tensors = {key: value for key, value in encoded.items() if key not in text_keys}
        return replacement, tensors

    def _native_batch(self, batch: list[YesNoQuery], cache: dict[int, Any]) -> _Batch:
        import torch

        for query in batch:
            if id(query.image) not in cache:
                cache[id(query.image)] = self._native_image(query.image)
        token = self.processor.image_token
        texts = [self.native_text(q.turns).replace(token, cache[id(q.image)][0], 1) for q in batch]
        encoded = self.tokenizer(texts, padding=True, padding_side=self.padding_side, return_tensors="pt")
        kwargs: dict[str, Any] = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
        if getattr(type(self.processor), "return_mm_token_type_ids", False):
            type_ids = self.processor.create_mm_token_type_ids(encoded["input_ids"].tolist())
            kwargs["mm_token_type_ids"] = torch.tensor(type_ids, dtype=torch.long)
        for key in cache[id(batch[0].image)][1]:
            kwargs[key] = concat_padded([cache[id(q.image)][1][key] for q in batch])
        kwargs = {key: value.to(self.device) for key, value in kwargs.items()}
        if "pixel_values" in kwargs:
            kwargs["pixel_values"] = kwargs["pixel_values"].to(self.dtype)
        mask = kwargs["attention_mask"]
        if self._own_positions:
            kwargs["position_ids"] = positions_from_mask(mask)
        return _Batch(kwargs, mask, kwargs["input_ids"])

    # -- the forward ----------------------------------------------------------------------------

    def _first_answer_logits(self, batch: _Batch) -> torch.Tensor:
        """(B, vocab) float32 logits at each row's last real position, from one forward pass."""
        import torch

        mask = batch.attention_mask
        if self.padding_side == "left":
            if not bool(mask[:, -1].all()):
                raise RuntimeError("left padding expected: every row's last position must be a real token")
            keep: int | torch.Tensor = 1
            last = torch.zeros(mask.shape[0], dtype=torch.long, device=mask.device)
        else:
            positions = mask.sum(dim=1) - 1
            keep = torch.unique(positions)  # sorted; every row's last position among them
            last = torch.searchsorted(keep, positions)
        with torch.inference_mode():
            logits = self.model(**batch.kwargs, logits_to_keep=keep, use_cache=False).logits
        self.forward_passes += 1
        rows = torch.arange(mask.shape[0], device=mask.device)
        return logits[rows, last].float()

    def _answers(self, logits: torch.Tensor) -> list[YesNoAnswer]:
        """One YesNoAnswer per row of (B, vocab) logits. Each tensor crosses to Python once (`tolist`) and
        the top tokens of the whole batch are named in one tokenizer call: per-row tensor iteration and
        per-element float() cost more than the forward on a small model (profiled)."""
        import torch

        probs = torch.softmax(logits, dim=-1)
        top = torch.topk(probs, k=min(TOP_K, probs.shape[-1]), dim=-1)
        p_yes = probs[:, self.yes_id].tolist()
        p_no = probs[:, self.no_id].tolist()
        values = top.values.tolist()
        ids = top.indices.tolist()
        names = self._token_names
        unseen = sorted({i for row in ids for i in row if i not in names})
        if unseen:  # a few new ids per call: the likeliest first tokens repeat across questions
            names.update(zip(unseen, self.tokenizer.convert_ids_to_tokens(unseen), strict=True))
        return [YesNoAnswer(p_yes=p_yes[r], p_no=p_no[r], top_tokens=tuple(names[i] for i in ids[r]),
                            top_probs=tuple(values[r])) for r in range(len(ids))]


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counted over real tokens only (0 on padding), as generate() derives them."""
    positions = mask.long().cumsum(-1) - 1
    return positions.masked_fill(mask == 0, 0)


def concat_padded(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate along dim 0, zero-padding the other dims to the largest (LLaVA's per-image tile
    stacks differ in tile count; the model reads only each image's own tiles)."""
    import torch

    shape = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    padded = []
    for tensor in tensors:
        if list(tensor.shape[1:]) != shape:
            grown = tensor.new_zeros((tensor.shape[0], *shape))
            grown[tuple(slice(0, n) for n in tensor.shape)] = tensor
            tensor = grown
        padded.append(tensor)
    return torch.cat(padded, dim=0)

