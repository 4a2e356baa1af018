"""A tiny, randomly initialised Qwen3-VL chat model: GenEval 2's VQA model at toy size.

`write_tiny_qwen3_vl` saves transformers' real `Qwen3VLForConditionalGeneration` (vision tower with
DeepStack mergers, interleaved M-RoPE text model) with a `Qwen3VLProcessor`, so the Soft-TIFA engine
(`harness.verifiers.answer_probs`) and the reference's one-at-a-time loop
(`harness.geneval2.reference`) load it through `AutoProcessor` / `Qwen3VLForConditionalGeneration`
exactly as they load Qwen/Qwen3-VL-8B-Instruct. Images are resized to at most 64x64 pixels
(16-pixel patches, 2x2 merge: at most 4 image tokens).

The tokenizer is built in code (`build_tiny_qwen3_tokenizer`) with the structure of Qwen2/Qwen3's:
byte-level BPE after Qwen2's pre-tokenizer split, so digits are single tokens and " 1" is two
pre-tokens (" " and "1") as in Qwen's vocabulary, which is what makes the reference's " 1" answer
variant count P(" "); "Yes", " Yes", "yes", " yes" and the number words in all four of the
reference's spellings are single tokens. Qwen's chat specials; no BOS. The chat template renders a
single user turn as Qwen3-VL's does: no default system message, the image as
`<|vision_start|><|image_pad|><|vision_end|>` where the message has it, then the text.

The language model head's rows of the answer tokens are set from a calibration batch so that the
probabilities the evaluator reads are not ~1/vocab but spread (roughly 0.01..0.9) across images
and questions, with argmax answers that vary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.geneval.classes import COCO_CLASSES, COLORS

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD)

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen2/Qwen2.5/Qwen3): letters with an optional
# leading non-letter, single digits, punctuation runs, newlines, whitespace.
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")

NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
ANSWER_WORDS = ("Yes", "yes", "No", "no", *NUMBER_WORDS, *(w.capitalize() for w in NUMBER_WORDS))

PATCH = 16  # Qwen3-VL's patch size
MERGE = 2  # and its 2x2 spatial merge: one image token per 32x32 pixels
MAX_PIXELS = 64 * 64  # images are resized to <= 64x64: a 4x4 patch grid, 2x2 tokens after merging
MIN_PIXELS = 32 * 32
TEXT_HIDDEN = 32
HEAD_DIM = 16
ANSWER_LOGIT_LIFT = 6.0  # answer tokens sit this far above the rest on average
ANSWER_LOGIT_SPREAD = 2.0  # and move by this much per standard deviation of the hidden state

_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
QWEN3_VL_CHAT_TEMPLATE = _CHAT_TEMPLATE

# GenEval 2-style questions for the BPE corpus and the calibration batch.
_QUESTIONS = (
    "How many {o}s are in the image? Answer in one word.",
    "Are there any {o}s in the image? Answer in one word.",
    "Is the {o} {c}? Answer in one word.",
    "Is the {o} to the left of the {p}? Answer in one word.",
    'Does this image show "a {c} {o}"? Answer the question with Yes or No.',
)


def _training_corpus() -> list[str]:
    """Lines the BPE is trained on; every answer word often, alone and after a space."""
    words = [w for word in ANSWER_WORDS for w in (word, " " + word)]
    questions = [q.format(o=COCO_CLASSES[i], c=COLORS[i % len(COLORS)], p=COCO_CLASSES[i + 1])
                 for i in range(20) for q in _QUESTIONS]
    return [*(words * 40), " ".join(COCO_CLASSES), " ".join(COLORS), *questions]


def build_tiny_qwen3_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """The tiny model's tokenizer: Qwen2's split + byte-level BPE trained in code, Qwen's specials, no BOS."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,  # more than the corpus fills: every corpus word becomes one token
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_training_corpus(), trainer=trainer)
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        padding_side="right",
        model_max_length=4096,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    for word in ANSWER_WORDS:
        for text in (word, " " + word):
            ids = tokenizer.encode(text, add_special_tokens=False)
            if len(ids) != 1:
                raise RuntimeError(f"tiny Qwen3 tokenizer: {text!r} is not one token ({ids}); the corpus changed?")
    return tokenizer


def answer_token_ids(tokenizer: Any) -> list[int]:
    """Every first token the GenEval 2 evaluator reads: the answer words in their spellings, digits, " "."""
    texts = [w for word in ANSWER_WORDS for w in (word, " " + word)] + [str(d) for d in range(10)] + [" "]
    return sorted({tokenizer.encode(text, add_special_tokens=False)[0] for text in texts})


def _calibration_inputs(processor: Any) -> Any:
    """A right-padded batch of GenEval 2-style questions about seeded noise images and plain colours."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1234)
    sizes = [(64, 64), (64, 32), (32, 64), (48, 48), (40, 60), (60, 40)]
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes * 2]
    images += [Image.new("RGB", (48, 48), colour) for colour in [(255, 0, 0), (0, 0, 255), (255, 255, 255)]]
    texts = []
    for i in range(len(images)):
        question = _QUESTIONS[i % len(_QUESTIONS)].format(o=COCO_CLASSES[i], c=COLORS[i % len(COLORS)],
                                                          p=COCO_CLASSES[i + 1])
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        texts.append(processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return processor(text=texts, images=images, padding=True, padding_side="left", return_tensors="pt")


def _calibrate_answer_rows(model: Any, processor: Any) -> None:
    """Set lm_head's rows of the answer tokens so that their probabilities spread across inputs.

    A random tiny model's last hidden state barely depends on its input, so random rows give every
    token ~1/vocab. Each answer row is a shared part that lifts its logit ~ANSWER_LOGIT_LIFT above
    the rest, plus its own random mix of the directions along which the calibration batch's hidden
    states vary most, scaled to ~ANSWER_LOGIT_SPREAD logits per standard deviation.
    """
    import torch

    ids = answer_token_ids(processor.tokenizer)
    with torch.no_grad():
        hidden = model(**_calibration_inputs(processor), output_hidden_states=True).hidden_states[-1][:, -1]
        mean = hidden.mean(dim=0)
        _, _, vh = torch.linalg.svd(hidden - mean, full_matrices=False)
        directions = vh[:4] - (vh[:4] @ mean)[:, None] * mean / (mean @ mean)  # orthogonal to the lift
        generator = torch.Generator().manual_seed(0)
        head = model.get_output_embeddings().weight
        lift = ANSWER_LOGIT_LIFT * mean / (mean @ mean)
        for token_id in ids:
            mix = torch.randn(directions.shape[0], generator=generator) @ directions
            spread = ((hidden - mean) @ mix).std()
            shift = torch.randn((), generator=generator) * 0.5
            head[token_id] = lift * (1 + shift / ANSWER_LOGIT_LIFT) + ANSWER_LOGIT_SPREAD * mix / spread


def write_tiny_qwen3_vl(out_dir: Path, seed: int = 0, max_pixels: int = MAX_PIXELS) -> Path:
    """Write a seeded random tiny Qwen3-VL checkpoint with its processor into `out_dir`; return it.

    `Qwen3VLForConditionalGeneration.from_pretrained(out_dir)` and `AutoProcessor.from_pretrained(out_dir)`
    load it offline. Saved in float32, so dtype="auto" loads float32. `max_pixels` caps the processor's
    image size (one image token per 32x32 pixels): larger for benchmarks with realistic prefix lengths.
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_qwen3_tokenizer()
    text_config = {
        "vocab_size": len(tokenizer),
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": HEAD_DIM,
        "max_position_embeddings": 4096,
        # interleaved M-RoPE over the head's HEAD_DIM / 2 frequencies (time, height, width), as Qwen3-VL
        "rope_parameters": {"rope_type": "default", "rope_theta": 5000000.0, "mrope_interleaved": True,
                            "mrope_section": [4, 2, 2]},
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision_config = {
        "depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "patch_size": PATCH,
        "spatial_merge_size": MERGE, "temporal_patch_size": 2, "out_hidden_size": TEXT_HIDDEN,
        "num_position_embeddings": 16,  # a 4x4 grid of learned positions, interpolated per image
        "deepstack_visual_indexes": [0, 1],  # both vision blocks feed the first two text layers
    }
    config = Qwen3VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_PAD),
        video_token_id=tokenizer.convert_tokens_to_ids(VIDEO_PAD),
        vision_start_token_id=tokenizer.convert_tokens_to_ids(VISION_START),
        vision_end_token_id=tokenizer.convert_tokens_to_ids(VISION_END),
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3VLForConditionalGeneration(config).eval()
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(size=size, patch_size=PATCH, merge_size=MERGE, temporal_patch_size=2,
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    video_processor = Qwen3VLVideoProcessor(size=size, patch_size=PATCH, merge_size=MERGE,
                                            image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = Qwen3VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                 video_processor=video_processor, chat_template=QWEN3_VL_CHAT_TEMPLATE)
    _calibrate_answer_rows(model, processor)
    # Sampling defaults of the kind Qwen's Instruct checkpoints ship; the reference's
    # generate(do_sample=False) turns them off, which the engine tests check.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.convert_tokens_to_ids(ENDOFTEXT),
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=True, top_k=20, top_p=0.8, temperature=0.7,
    )
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
