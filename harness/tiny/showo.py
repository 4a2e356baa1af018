"""A tiny, randomly initialised Show-o checkpoint in the layout of showlab/show-o.

Two folders, loaded by the `showo` generator through exactly the path it uses for the real ones:

    out_dir/llm     the "LLM": a Phi config.json (2 layers, 32 wide) and a word-level tokenizer
                    built in code over the GenEval prompts' words, with Phi's <|endoftext|> as
                    bos and eos (stands in for microsoft/phi-1_5)
    out_dir/showo   Show-o's config.json (llm_model_path -> out_dir/llm) and pytorch_model.bin
                    with the reference's key names (showo.model.layers.0.self_attn.q_proj.weight, ...)

The vocabulary is laid out like the real one: the tokenizer's ids, then '[PAD]' and the nine
special tokens, then `codebook_size` image tokens, then the mask token. By default the codebook
and the token grid are the tiny MAGVIT-v2's (`harness.tiny.magvit`: 64 codes, 8x8 tokens), so the
two make 32x32 images together.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["write_tiny_showo"]

ENDOFTEXT = "<|endoftext|>"  # Phi-1.5's bos and eos
UNK = "<unk>"
#: Phi shape: 2 layers, 32 wide, 2 heads of 16 (8 of them rotary, as Phi's partial_rotary_factor 0.5)
PHI_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "partial_rotary_factor": 0.5,
    "hidden_act": "gelu_new",
    "layer_norm_eps": 1e-5,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    # larger than Phi's 0.02 so that a random tiny model's token distributions are not flat
    "initializer_range": 0.5,
}


def _prompt_words() -> list[str]:
    """Every word of the GenEval suite's prompts, sorted: the tiny tokenizer's vocabulary."""
    from harness.prompts import geneval_suite

    return sorted({word for sample in geneval_suite() for word in sample["prompt"].split()})


def write_tiny_tokenizer(out_dir: Path) -> int:
    """A word-level fast tokenizer saved into `out_dir`; returns its size (Show-o's llm_vocab_size)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ENDOFTEXT: 0, UNK: 1}
    for word in _prompt_words():
        vocab.setdefault(word, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT,
                                        unk_token=UNK)
    tokenizer.save_pretrained(str(out_dir))
    # transformers 5 names the class "TokenizersBackend", which 4.x cannot load; the fast-tokenizer
    # class name loads in both.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return len(tokenizer)


def write_tiny_showo(out_dir: Path, seed: int = 0, codebook_size: int | None = None,
                     num_vq_tokens: int | None = None) -> Path:
    """Write `out_dir/llm` and `out_dir/showo` (see the module docstring); return the Show-o folder.

    `codebook_size` and `num_vq_tokens` default to the tiny MAGVIT-v2's.
    """
    import torch
    from transformers import PhiConfig

    from harness.generators.showo.model import Showo, ShowoConfig
    from harness.tiny.magvit import TINY_MAGVIT_CONFIG, TINY_MAGVIT_TOKENS

    codebook_size = TINY_MAGVIT_CONFIG.codebook_size if codebook_size is None else codebook_size
    num_vq_tokens = TINY_MAGVIT_TOKENS if num_vq_tokens is None else num_vq_tokens

    out_dir = Path(out_dir)
    llm_dir, showo_dir = out_dir / "llm", out_dir / "showo"
    llm_dir.mkdir(parents=True, exist_ok=True)
    showo_dir.mkdir(parents=True, exist_ok=True)
    llm_vocab_size = write_tiny_tokenizer(llm_dir)
    PhiConfig(vocab_size=llm_vocab_size, **PHI_CONFIG).save_pretrained(str(llm_dir))

    num_new_special_tokens = 10
    vocab_size = llm_vocab_size + num_new_special_tokens + codebook_size + 1
    config = ShowoConfig(vocab_size=vocab_size, llm_vocab_size=llm_vocab_size, llm_model_path=str(llm_dir.resolve()),
                         codebook_size=codebook_size, num_vq_tokens=num_vq_tokens)
    # Shaped like showlab/show-o's config.json (written by the reference's diffusers-style ConfigMixin).
    (showo_dir / "config.json").write_text(json.dumps({
        "_class_name": "Showo",
        "codebook_size": codebook_size,
        "llm_model_path": config.llm_model_path,
        "llm_vocab_size": llm_vocab_size,
        "load_from_showo": False,
        "mask_token_id": config.mask_token_id,
        "num_vq_tokens": num_vq_tokens,
        "vocab_size": vocab_size,
        "w_clip_vit": False,
    }, indent=2) + "\n")

    phi = PhiConfig(vocab_size=vocab_size, qk_layernorm=True, use_cache=False, **PHI_CONFIG)
    # fork_rng: seed the initialisation without disturbing the caller's random stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Showo(config, phi)
    state = {name: tensor.detach().contiguous() for name, tensor in model.state_dict().items()}
    torch.save(state, showo_dir / "pytorch_model.bin")
    return showo_dir
