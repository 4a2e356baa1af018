"""Writing a transformers LLaVA-OneVision checkpoint back out in the lmms-lab (LLaVA-NeXT) layout.

The paper's ORM and PARM checkpoints are in that layout, and `stepwise convert-llava` turns it
into transformers'. To test the converter without the 7B originals, `write_lmms_layout` takes a
small LlavaOnevision folder (e.g. `harness.tiny.vlm.write_tiny_llava_onevision`) and writes what
LLaVA-NeXT's training code would have saved for the same model:

- weights named after LLaVA-NeXT's modules (`LlavaQwenForCausalLM`: `model` is a Qwen2Model
  carrying `vision_tower` (a SigLipVisionTower wrapping SiglipVisionModel, hence
  `vision_tower.vision_tower.vision_model`), `mm_projector` (nn.Sequential(Linear, GELU,
  Linear): indices 0 and 2) and `image_newline`), in safetensors shards with an index;
- one config.json: the Qwen2 fields at top level plus LLaVA's `mm_*` fields, as the
  lmms-lab/llava-onevision-qwen2-7b-ov config has them (the vision tower is only named);
- the tokenizer files.

The names are spelled out here from LLaVA-NeXT's module tree, not derived from the converter's
table, so a wrong name on either side fails the round trip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LMMS_VISION = "model.vision_tower.vision_tower.vision_model."
TINY_VISION_TOWER = "stepwise/tiny-siglip"  # LLaVA picks SigLipVisionTower for any name containing "siglip"


def lmms_name(key: str) -> str:
    """The LLaVA-NeXT name of a transformers LlavaOnevision weight (in-memory names, transformers 4.5x-5.x)."""
    for prefix in ("model.vision_tower.vision_model.", "model.vision_tower."):
        if key.startswith(prefix):
            return LMMS_VISION + key[len(prefix):]
    if key.startswith("model.multi_modal_projector.linear_1."):
        return "model.mm_projector.0." + key.removeprefix("model.multi_modal_projector.linear_1.")
    if key.startswith("model.multi_modal_projector.linear_2."):
        return "model.mm_projector.2." + key.removeprefix("model.multi_modal_projector.linear_2.")
    if key == "model.image_newline" or key.startswith("lm_head."):
        return key
    if key.startswith("model.language_model."):
        return "model." + key.removeprefix("model.language_model.")
    raise ValueError(f"no lmms-lab name for {key!r}")


def lmms_config(config: Any) -> dict[str, Any]:
    """An lmms-lab config.json for a LlavaOnevisionConfig: Qwen2 fields flat, plus LLaVA's mm_* fields."""
    text = config.text_config
    vision = config.vision_config
    rope = dict(getattr(text, "rope_parameters", None) or {})
    return {
        "architectures": ["LlavaQwenForCausalLM"],
        "model_type": "llava",
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "hidden_act": text.hidden_act,
        "max_position_embeddings": text.max_position_embeddings,
        "initializer_range": text.initializer_range,
        "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": rope.get("rope_theta", getattr(text, "rope_theta", 10000.0)),
        "rope_scaling": None,
        "use_sliding_window": False,
        "sliding_window": 131072,
        "max_window_layers": text.max_window_layers,
        "attention_dropout": text.attention_dropout,
        "bos_token_id": text.bos_token_id,
        "eos_token_id": text.eos_token_id,
        "tie_word_embeddings": bool(config.tie_word_embeddings),
        "use_cache": True,
        "torch_dtype": "float32",
        "transformers_version": "4.40.0.dev0",
        # LLaVA-NeXT's fields, with the values the paper's training scripts set.
        "mm_vision_tower": TINY_VISION_TOWER,
        "mm_hidden_size": vision.hidden_size,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "spatial_unpad",
        "mm_newline_position": "grid",
        "mm_spatial_pool_mode": "bilinear",
        "mm_resampler_type": None,
        "mm_tunable_parts": "mm_vision_tower,mm_mlp_adapter,mm_language_model",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "use_mm_proj": True,
        "image_aspect_ratio": config.vision_aspect_ratio,
        "image_grid_pinpoints": [list(p) for p in config.image_grid_pinpoints],
        "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": 4096,
    }


def write_lmms_layout(model_folder: Path, out: Path, *, shards: int = 2) -> Path:
    """Write the LlavaOnevision checkpoint in `model_folder` into `out` in the lmms-lab layout; return `out`.

    Weights keep their dtype and are split into `shards` safetensors files listed in
    model.safetensors.index.json, as LLaVA-NeXT's trainer saves them.
    """
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlavaOnevisionForConditionalGeneration

    model_folder, out = Path(model_folder), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(model_folder)
    state = {lmms_name(k): v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # tied: saved once, as the embedding
    names = sorted(state)
    per_shard = -(-len(names) // shards)
    weight_map: dict[str, str] = {}
    for i in range(shards):
        part = names[i * per_shard:(i + 1) * per_shard]
        file_name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        save_file({k: state[k] for k in part}, str(out / file_name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file_name))
    index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in state.values())},
             "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    (out / "config.json").write_text(json.dumps(lmms_config(model.config), indent=2))
    AutoTokenizer.from_pretrained(model_folder).save_pretrained(out)
    return out
