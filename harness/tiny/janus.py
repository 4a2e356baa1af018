"""A tiny, randomly initialised Janus-Pro checkpoint in the layout of deepseek-community/Janus-Pro-1B.

Same classes (`JanusForConditionalGeneration`, `JanusProcessor` with a `JanusImageProcessor` and a
fast tokenizer), the same special tokens, chat format and generation config keys as the converted
hub checkpoint, saved with `save_pretrained`, so the `janus` generator loads it through exactly
the path it uses for the real one. Only the sizes shrink: a 4x4 grid of image tokens from a
64-entry codebook, decoded to 16x16 pixels, and a 2-layer, 32-wide language model. The tokenizer is
built in code (byte-level, no merges), so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The real checkpoint's special tokens (DeepSeek's LLM tokenizer plus Janus's image tags).
BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
IMAGE_TOKEN = "<image_placeholder>"
BOI = "<begin_of_image>"
EOI = "<end_of_image>"
SPECIAL_TOKENS = (BOS, EOS, PAD, IMAGE_TOKEN, BOI, EOI, "<|User|>", "<|Assistant|>")

GRID = 4  # image tokens per side: 16 tokens per image
CODEBOOK = 64  # VQ codebook entries (the generation head's vocabulary)
IMAGE_PX = 16  # decoded image side: GRID * 2 ** (levels - 1) with channel_multiplier (1, 1, 1)
TEXT_HIDDEN = 32

# The image-generation part of the real processor's chat template (the converted checkpoint's
# template also handles images and system turns): "<|User|>: {text}\n\n<|Assistant|>:".
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] | lower == 'user' %}<|User|>: {% else %}<|Assistant|>: {% endif %}"
    "{% for content in message['content'] %}{% if content['type'] == 'text' %}{{ content['text'] | trim }}"
    "{% endif %}{% endfor %}"
    "{% if message['role'] | lower == 'user' %}{{ '\n\n' }}{% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|Assistant|>:{% endif %}"
)


def _tokenizer():  # -> transformers.PreTrainedTokenizerFast
    """A byte-level tokenizer (256 byte tokens, no merges) that adds BOS like DeepSeek's LLM tokenizer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *sorted(alphabet)])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.decoder = decoders.ByteLevel()
    # Matched whole, never split into bytes, as in the real tokenizer.
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, vocab[BOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        padding_side="left",
        model_max_length=256,
        # JanusProcessor reads these three as tokenizer attributes.
        extra_special_tokens={"image_token": IMAGE_TOKEN, "boi_token": BOI, "eoi_token": EOI},
    )


def _config(tokenizer: Any):  # -> transformers.JanusConfig
    from transformers import JanusConfig, JanusVisionConfig, JanusVQVAEConfig, LlamaConfig

    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=TEXT_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    # The understanding encoder is unused by image generation but part of the model; its grid
    # (image_size / patch_size) also sets the VQ token grid, as in the real 384 / 16 = 24.
    vision = JanusVisionConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=GRID * 4,
        patch_size=4,
        mlp_ratio=2.0,
        projection_dim=TEXT_HIDDEN,
        num_image_tokens=GRID * GRID,
    )
    vq = JanusVQVAEConfig(
        embed_dim=8,
        num_embeddings=CODEBOOK,
        latent_channels=32,
        base_channels=32,  # the VQ decoder's GroupNorm has 32 groups
        channel_multiplier=(1, 1, 1),
        num_res_blocks=1,
        projection_dim=TEXT_HIDDEN,
        image_token_embed_dim=TEXT_HIDDEN,
    )
    return JanusConfig(
        text_config=text,
        vision_config=vision,
        vq_config=vq,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
    )


def write_tiny_janus(out_dir: Path, seed: int = 0) -> Path:
    """Write a seeded random tiny Janus checkpoint with its processor into `out_dir`; return it.

    `JanusForConditionalGeneration.from_pretrained(out_dir)` and `JanusProcessor.from_pretrained(out_dir)`
    load it offline.
    """
    import torch
    from transformers import GenerationConfig, JanusForConditionalGeneration, JanusImageProcessor, JanusProcessor

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer()
    config = _config(tokenizer)
    # fork_rng: seed the initialisation without disturbing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = JanusForConditionalGeneration(config).eval()
    # What the converted checkpoint's generation config holds (see transformers'
    # convert_janus_weights_to_hf.py); `generate(generation_mode="image")` reads the BOI id
    # from generation_kwargs.
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        temperature=1.0,
        guidance_scale=5.0,
        generation_kwargs={"boi_token_id": tokenizer.convert_tokens_to_ids(BOI)},
    )
    model.save_pretrained(out_dir)
    image_processor = JanusImageProcessor(size={"height": IMAGE_PX, "width": IMAGE_PX},
                                          image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    processor = JanusProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
                               use_default_system_prompt=True, num_image_tokens=GRID * GRID)
    processor.save_pretrained(out_dir)
    return out_dir
