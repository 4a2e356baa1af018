"""Probability of a set of first-answer tokens for many questions about many images, batched.

GenEval 2's evaluator asks Qwen3-VL 3 to 11 questions about each image and reads, per question, the
softmax probabilities of a few tokens at the first answer position (and the most likely token).
The reference (`evaluation.py`) runs `generate(max_new_tokens=1)` once per question, so every
question re-encodes the image and re-runs its ~1,000 image positions through the language model.
This engine computes the same numbers with:

* each image preprocessed once (the processor's own image processing, on threads) and encoded once;
* the part of the conversation every question about an image shares, everything up to and
  including the image's tokens (`<|im_start|>user\\n<|vision_start|><|image_pad|>...`), run once per
  image, for a batch of images of equal prefix length in one forward, keeping its key/value cache;
* all questions of those images in ONE further forward over only their own tokens
  (`<|vision_end|>{question}<|im_end|>\\n<|im_start|>assistant\\n`, right-padded), attending to their
  image's cached prefix, with the positions the model's own `get_rope_index` gives the whole row;
* the full-vocabulary softmax of the logits at each row's last real token, in float32, as generate()
  scores them (with do_sample=False no warper touches them).

    engine = AnswerProbEngine("Qwen/Qwen3-VL-8B-Instruct")
    [answer] = engine.answer([AnswerQuery(image, "Is the cup red? Answer in one word.", tokens=(yes_id, ...))])
    answer.probs, answer.argmax

The input is the reference's: the processor's chat template over one user message holding the
image and then the text, with the generation prompt; token ids equal what the processor's
`apply_chat_template(tokenize=True)` gives (tested). Values agree with the reference's
one-at-a-time generate to float rounding: in float32 within 1e-5 over the whole vocabulary (tested,
tiny random Qwen3-VL); in bfloat16 the two orders of computation (prefix then questions, batched,
vs one whole row) round differently, by up to ~1e-2 in a probability on the tiny model.

Scope: Qwen3-VL checkpoints (model_type "qwen3_vl"), loaded with `Qwen3VLForConditionalGeneration`
as the reference loads them, from a local folder or the HF cache (`harness.weights.locate`; nothing
downloads). dtype "auto" is the checkpoint's own dtype (bfloat16 for Qwen3-VL-8B-Instruct), as the
reference's `dtype="auto"`; one device (the reference uses `device_map="auto"`).

Relation to the yes/no engine (`harness.verifiers.engine.YesNoEngine`): both read first-answer-token
probabilities from one forward pass per batch without generate(). That engine keeps whole rows
(left-padded, the image's pixels in every row of the native layout) and returns P("yes")/P("no") and
the top 50; this one shares each image's prefix across its questions and returns the probabilities
of any requested tokens. The yes/no engine could become a client of this one (tokens = yes, no;
multi-turn conversations need a prefix split after the image as here) once both layouts are ported.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from harness.weights import WeightsSpec, locate

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = ["SPEC", "AnswerProbEngine", "AnswerProbs", "AnswerQuery"]

SPEC = WeightsSpec("GenEval 2 VQA model", "Qwen/Qwen3-VL-8B-Instruct", files=("config.json",))
MODEL_TYPES = ("qwen3_vl",)
Dtype = Literal["auto", "float32", "float16", "bfloat16"]


@dataclass(frozen=True)
class AnswerQuery:
    """One question about one image; `tokens` are the first-answer tokens whose probabilities are wanted."""

    image: Image
    text: str  # the user's text after the image, e.g. "Is the cup red? Answer in one word."
    tokens: tuple[int, ...]


@dataclass(frozen=True)
class AnswerProbs:
    probs: tuple[float, ...]  # full-vocabulary softmax at the first answer position, per query token, in order
    argmax: int  # the most likely first answer token


@dataclass
class _Prefix:
    """An image's shared prefix: its token ids and the processor's tensors for it."""

    ids: list[int]
    image_types: list[int]  # mm_token_type_ids: 1 on image tokens
    tensors: dict[str, torch.Tensor]  # pixel_values, image_grid_thw


class AnswerProbEngine:
    """See the module docstring. `image_batch`: images whose prefixes go through one forward; their
    questions then go through forwards of at most `question_batch` rows (each row holds a copy of its
    image's cached prefix: for Qwen3-VL-8B in bfloat16 ~150 MB per 1024x1024 image)."""

    def __init__(self, model: str, *, device: str | None = None, dtype: Dtype = "auto", image_batch: int = 8,
                 question_batch: int = 64, spec: WeightsSpec = SPEC) -> None:
        import torch
        from transformers import AutoConfig, AutoProcessor, Qwen3VLForConditionalGeneration

        from harness.devices import pick_device

        if image_batch < 1 or question_batch < 1:
            raise ValueError(f"image_batch and question_batch must be >= 1, not {image_batch} and {question_batch}")
        if dtype not in ("auto", "float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be auto, float32, float16 or bfloat16, not {dtype!r}")
        folder = locate(model, spec)
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        if config.model_type not in MODEL_TYPES:
            raise ValueError(f"{model}: the GenEval 2 evaluator runs Qwen3-VL (model_type qwen3_vl), as the reference; "
                             f"this checkpoint is {config.model_type!r}")
        self.model_name = str(model)
        self.image_batch = image_batch
        self.question_batch = question_batch
        self.device = torch.device(pick_device(device))
        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        self.tokenizer = self.processor.tokenizer
        self.model = Qwen3VLForConditionalGeneration.from_pretrained(
            folder, dtype="auto" if dtype == "auto" else getattr(torch, dtype), local_files_only=True,
        ).to(self.device).eval()
        self.dtype = self.model.dtype
        self.image_token = self.processor.image_token
        self.image_token_id = int(self.model.config.image_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.tokenizer.eos_token_id)
        forward = inspect.signature(self.model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in forward else "past_key_values"
        self._rope_takes_types = "mm_token_type_ids" in inspect.signature(self.model.model.get_rope_index).parameters
        self._threads = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="vqa-pre")
        self._text_memo: dict[str, tuple[str, list[int]]] = {}
        self.forward_passes = 0  # model forwards so far (prefix and question forwards alike)
        self.images_processed = 0  # images preprocessed so far (each distinct image once per answer() call)

    # -- text -------------------------------------------------------------------------------------

    def first_token(self, text: str) -> int:
        """The reference's `tokenizer.encode(text)[0]`."""
        return int(self.tokenizer.encode(text)[0])

    def decode(self, token_id: int) -> str:
        """The reference's `processor.batch_decode([argmax])[0]`: the one token decoded with the tokenizer's
        defaults (special tokens kept). Called as decode([token]), which newer transformers prefer."""
        return str(self.tokenizer.decode([token_id]))

    def chat_text(self, text: str) -> str:
        """The chat template over one user message: the image, then `text`; the answer turn opened."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        rendered = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if rendered.count(self.image_token) != 1:
            raise ValueError(f"{self.model_name}: the chat template rendered {rendered.count(self.image_token)} image "
                             f"placeholders ({self.image_token!r}) for one image")
        return rendered

    def _split(self, text: str) -> tuple[str, list[int]]:
        """(the template text up to and including the image placeholder, the token ids after it). Memoised."""
        if text not in self._text_memo:
            if len(self._text_memo) >= 4096:
                self._text_memo.clear()
            rendered = self.chat_text(text)
            at = rendered.index(self.image_token) + len(self.image_token)
            # The text after the image starts with a special token (<|vision_end|>), where the tokenizer
            # splits anyway: its ids are those of the whole text's tail (tested against the processor).
            tail = self.tokenizer(rendered[at:], add_special_tokens=False)["input_ids"]
            if not tail:
                raise ValueError(f"{self.model_name}: nothing follows the image in the chat template")
            self._text_memo[text] = (rendered[:at], list(tail))
        return self._text_memo[text]

    # -- images -----------------------------------------------------------------------------------

    def _pixels(self, image: Image) -> dict[str, torch.Tensor]:
        """The processor's image processing of one image: pixel_values and image_grid_thw. Thread-safe
        (tokenizers are not: they are used on the caller's thread only)."""
        encoded = self.processor.image_processor(images=[image], return_tensors="pt")
        return {key: encoded[key] for key in ("pixel_values", "image_grid_thw")}

    def _prefix(self, head: str, tensors: dict[str, torch.Tensor]) -> _Prefix:
        """The prefix ids as the processor builds them: the image placeholder repeated once per merged
        patch (Qwen3VLProcessor.replace_image_token), then the text tokenised as the processor does."""
        n_tokens = int(tensors["image_grid_thw"][0].prod()) // self.processor.image_processor.merge_size ** 2
        ids = self.tokenizer(head.replace(self.image_token, self.image_token * n_tokens))["input_ids"]
        if ids.count(self.image_token_id) != n_tokens:
            raise RuntimeError(f"{self.model_name}: the image placeholder did not tokenise to {n_tokens} image tokens")
        return _Prefix(ids=list(ids), image_types=[int(i == self.image_token_id) for i in ids], tensors=tensors)

    def _positions(self, prefix: _Prefix, tail: list[int]) -> torch.Tensor:
        """(3, len(row)) M-RoPE positions of the whole row, from the model's own rule."""
        import torch

        ids = torch.tensor([prefix.ids + tail], dtype=torch.long)
        kwargs: dict[str, Any] = {"input_ids": ids, "image_grid_thw": prefix.tensors["image_grid_thw"]}
        if self._rope_takes_types:
            kwargs["mm_token_type_ids"] = torch.tensor([prefix.image_types + [0] * len(tail)], dtype=torch.int)
        positions, _ = self.model.model.get_rope_index(**kwargs)
        return positions[:, 0]

    # -- public -----------------------------------------------------------------------------------

    def answer(self, queries: Sequence[AnswerQuery]) -> list[AnswerProbs]:
        """The requested token probabilities and the argmax of each query, in order.

        Every distinct image of the call is preprocessed first (on threads), so a caller with many
        images passes them in bounded batches (the evaluator passes `--batch-size` images at a time).
        """
        if not queries:
            return []
        splits = [self._split(q.text) for q in queries]
        # one prefix per (image, head): every question about an image shares it
        keys = [(id(q.image), head) for q, (head, _) in zip(queries, splits, strict=True)]
        order = list(dict.fromkeys(keys))
        images = {key: q.image for key, q in zip(keys, queries, strict=True)}
        pixels = list(self._threads.map(lambda key: self._pixels(images[key]), order))
        prefixes = {key: self._prefix(key[1], tensors) for key, tensors in zip(order, pixels, strict=True)}
        self.images_processed += len(order)
        # one forward needs prefixes of one length (no padding inside the cache): group, then chunk
        by_length: dict[int, list[tuple[int, str]]] = {}
        for key in order:
            by_length.setdefault(len(prefixes[key].ids), []).append(key)
        results: list[AnswerProbs | None] = [None] * len(queries)
        for group in by_length.values():
            for start in range(0, len(group), self.image_batch):
                chunk = group[start:start + self.image_batch]
                members = set(chunk)
                rows = [i for i, key in enumerate(keys) if key in members]
                answers = self._run(chunk, prefixes, [(keys[i], splits[i][1], queries[i].tokens) for i in rows])
                for i, answer in zip(rows, answers, strict=True):
                    results[i] = answer
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    # -- the forwards -----------------------------------------------------------------------------

    def _run(self, chunk: list[tuple[int, str]], prefixes: dict[tuple[int, str], _Prefix],
             rows: list[tuple[tuple[int, str], list[int], tuple[int, ...]]]) -> list[AnswerProbs]:
        """The chunk's prefixes in one forward, then its rows' questions, `question_batch` rows per forward."""
        import torch
        from transformers import DynamicCache

        (width,) = {len(prefixes[key].ids) for key in chunk}
        positions = [self._positions(prefixes[key], tail) for key, tail, _ in rows]
        first_row = {key: r for r, (key, _, _) in reversed(list(enumerate(rows)))}
        device = self.device
        with torch.inference_mode():
            prefix_out = self.model(
                input_ids=torch.tensor([prefixes[key].ids for key in chunk], dtype=torch.long, device=device),
                attention_mask=torch.ones((len(chunk), width), dtype=torch.long, device=device),
                position_ids=torch.stack([positions[first_row[key]][:, :width] for key in chunk], dim=1).to(device),
                pixel_values=torch.cat([prefixes[key].tensors["pixel_values"] for key in chunk]).to(device, self.dtype),
                image_grid_thw=torch.cat([prefixes[key].tensors["image_grid_thw"] for key in chunk]).to(device),
                use_cache=True, logits_to_keep=1, **{self._cache_kwarg: DynamicCache(config=self.model.config)},
            )
            self.forward_passes += 1
            cache = [(layer.keys, layer.values) for layer in getattr(prefix_out, self._cache_kwarg).layers]
            del prefix_out
            answers: list[AnswerProbs] = []
            for at in range(0, len(rows), self.question_batch):
                part = range(at, min(at + self.question_batch, len(rows)))
                owner = torch.tensor([chunk.index(rows[r][0]) for r in part], dtype=torch.long, device=device)
                answers.extend(self._questions(width, [(k.index_select(0, owner), v.index_select(0, owner))
                                                       for k, v in cache],
                                               [rows[r] for r in part], [positions[r] for r in part]))
        return answers

    def _questions(self, width: int, cache: list[tuple[torch.Tensor, torch.Tensor]],
                   rows: list[tuple[tuple[int, str], list[int], tuple[int, ...]]],
                   positions: list[torch.Tensor]) -> list[AnswerProbs]:
        """One forward over the rows' own tokens (right-padded) after their images' cached prefixes of `width`."""
        import torch
        from transformers import DynamicCache

        device = self.device
        span = max(len(tail) for _, tail, _ in rows)
        ids = torch.full((len(rows), span), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width + span), dtype=torch.long)
        mask[:, :width] = 1
        tail_positions = torch.zeros((3, len(rows), span), dtype=torch.long)
        for r, (_, tail, _) in enumerate(rows):
            ids[r, :len(tail)] = torch.tensor(tail, dtype=torch.long)
            mask[r, width:width + len(tail)] = 1
            tail_positions[:, r, :len(tail)] = positions[r][:, width:]
        last = torch.tensor([len(tail) - 1 for _, tail, _ in rows], dtype=torch.long)
        keep = torch.unique(last)  # sorted; every row's last position among them
        out = self.model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=tail_positions.to(device),
            use_cache=True, logits_to_keep=keep.to(device), **{self._cache_kwarg: DynamicCache(ddp_cache_data=cache)},
        )
        self.forward_passes += 1
        logits = out.logits[torch.arange(len(rows), device=device), torch.searchsorted(keep, last).to(device)].float()
        probs = torch.softmax(logits, dim=-1)
        # only the requested probabilities leave the device (a row of the full vocabulary is ~150k floats)
        row_index = torch.tensor([r for r, (_, _, tokens) in enumerate(rows) for _ in tokens], dtype=torch.long)
        token_index = torch.tensor([t for _, _, tokens in rows for t in tokens], dtype=torch.long)
        wanted = probs[row_index.to(device), token_index.to(device)].tolist()
        argmax = probs.argmax(dim=-1).tolist()
        answers, at = [], 0
        for r, (_, _, tokens) in enumerate(rows):
            answers.append(AnswerProbs(probs=tuple(wanted[at:at + len(tokens)]), argmax=int(argmax[r])))
            at += len(tokens)
        return answers
