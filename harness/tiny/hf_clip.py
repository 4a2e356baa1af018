"""Tiny, randomly initialised CLIP checkpoints for the preference verifiers `pickscore` and `hpsv2`.

* `write_tiny_pickscore`: a transformers `CLIPModel` in the layout of yuvalkirstain/PickScore_v1
  (a CLIP ViT-H-14: GELU, pre-LayerNorm towers, projections, `logit_scale`) saved with
  `save_pretrained`, and beside it a processor folder in the layout of
  laion/CLIP-ViT-H-14-laion2B-s32B-b79K (the processor PickScore's README loads): the
  `CLIPImageProcessor` settings of that repo (resize the shortest edge, bicubic, centre crop,
  OpenAI mean/std) at the tiny tile size, and CLIP's real BPE tokenizer (49,408 tokens), built in
  code from the vocabulary file that ships inside open_clip, so token ids are the real ones.
* `write_tiny_hps`: an open_clip model shaped like `ViT-H-14` (GELU, not QuickGELU), registered
  with open_clip's config registry, and its weights saved as HPS v2 publishes its checkpoints
  (`torch.save({"state_dict": ...})` under the published file name) in a folder laid out like the
  xswu/HPSv2 hub repo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TINY_TILE = 28  # image side in pixels; 2 x 2 patches of 14 px
TINY_HPS_ARCH = "stepwise-tiny-vit-h-14"
# ViT-H-14.json scaled down; vocab_size and context_length are CLIP's, so that
# open_clip.get_tokenizer(arch) is the usual SimpleTokenizer (it ships with open_clip).
TINY_HPS_CONFIG: dict[str, Any] = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": TINY_TILE, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's BPE vocabulary and merges as transformers' `CLIPTokenizer` takes them, from open_clip's copy
    of OpenAI's file (the same 49,408 tokens; only the two special tokens are spelled differently)."""
    from open_clip.tokenizer import SimpleTokenizer

    simple = SimpleTokenizer()
    renamed = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {renamed.get(token, token): index for token, index in simple.encoder.items()}
    merges = [pair for pair, _ in sorted(simple.bpe_ranks.items(), key=lambda item: item[1])]
    return vocab, merges


def build_clip_tokenizer() -> Any:
    """transformers' CLIPTokenizer with CLIP's real vocabulary (model_max_length 77, as the laion repo's)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def write_tiny_pickscore(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write OUT/model (a tiny CLIPModel) and OUT/processor (laion's CLIP-H processor settings at the tiny
    size, CLIP's tokenizer); return (model folder, processor folder)."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel

    out_dir = Path(out_dir)
    tokenizer = build_clip_tokenizer()
    config = CLIPConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 77,
                     "hidden_act": "gelu", "bos_token_id": tokenizer.bos_token_id,
                     "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": TINY_TILE, "patch_size": 14, "hidden_act": "gelu"},
        projection_dim=16,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    model.save_pretrained(out_dir / "model")
    # laion/CLIP-ViT-H-14-laion2B-s32B-b79K's preprocessor_config.json, with 224 -> TINY_TILE.
    image_processor = CLIPImageProcessorPil(
        do_resize=True, size={"shortest_edge": TINY_TILE}, resample=3, do_center_crop=True,
        crop_size={"height": TINY_TILE, "width": TINY_TILE}, do_rescale=True, rescale_factor=1 / 255,
        do_normalize=True, image_mean=OPENAI_MEAN, image_std=OPENAI_STD, do_convert_rgb=True)
    # Saved as the laion repo holds them: preprocessor_config.json and the tokenizer files, both naming
    # processor_class CLIPProcessor (so AutoProcessor, as PickScore's README calls it, builds one).
    folder = out_dir / "processor"
    image_processor.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        config = json.loads((folder / name).read_text())
        (folder / name).write_text(json.dumps({**config, "processor_class": "CLIPProcessor"}, indent=2))
    return out_dir / "model", out_dir / "processor"


def register_tiny_hps(config_path: Path) -> None:
    """Make TINY_HPS_ARCH known to open_clip, through its supported config registry."""
    import open_clip

    if TINY_HPS_ARCH not in open_clip.list_models():
        open_clip.add_model_config(config_path)


def write_tiny_hps(out_dir: Path, seed: int = 0, version: str = "v2.1") -> Path:
    """Write OUT/<arch>.json and OUT/HPS_v2(.1)_compressed.pt (`{"state_dict": ...}`); return OUT.

    `hpsv2` loads it with `checkpoint=OUT`, `arch=TINY_HPS_ARCH` (the JSON beside the checkpoint
    registers the arch in a process that did not call this function).
    """
    import open_clip
    import torch

    from harness.verifiers.preference import HPS_FILES

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_path = out_dir / f"{TINY_HPS_ARCH}.json"
    config_path.write_text(json.dumps(TINY_HPS_CONFIG, indent=2))
    register_tiny_hps(config_path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(TINY_HPS_ARCH, pretrained=None, device="cpu")
    torch.save({"state_dict": model.state_dict()}, out_dir / HPS_FILES[version])
    return out_dir
