"""Converting LLaVA-NeXT checkpoints (the lmms-lab layout) into transformers' LLaVA-OneVision layout.

The paper's fine-tuned ORM and PARM were trained with the LLaVA-NeXT code from
lmms-lab/llava-onevision-qwen2-7b-ov and are published in that code's layout: one Qwen2 config
with `mm_*` fields added (model_type "llava"/"llava_qwen", `LlavaQwenForCausalLM`), weights named
after LLaVA's own modules, a plain Qwen2 tokenizer. transformers cannot load that; it loads
`LlavaOnevisionForConditionalGeneration`, which computes the same function with other names:

    lmms-lab (LLaVA-NeXT)                                transformers (LlavaOnevision)
    model.embed_tokens.* / model.layers.* / model.norm.*  model.language_model.*
    lm_head.*                                             lm_head.*
    model.vision_tower.vision_tower.vision_model.*        model.vision_tower.*  (SigLIP, no head)
    model.mm_projector.0.* / model.mm_projector.2.*       model.multi_modal_projector.linear_1.* / linear_2.*
    model.image_newline                                   model.image_newline
    *.rotary_emb.inv_freq (old checkpoints only)          dropped: recomputed from the config

Why the settings are what they are (LLaVA-NeXT's llava_arch.py and siglip_encoder.py):
- LLaVA deletes SigLIP's last encoder layer and its pooling head, then takes the last hidden
  state of what is left (it ignores `mm_vision_select_layer`). So: a vision config with as many
  layers as the checkpoint holds, `vision_use_head=False`, `vision_feature_layer=-1`, and
  "full" feature selection (SigLIP has no CLS token to drop).
- `mlp2x_gelu` is Linear, exact GELU, Linear: `projector_hidden_act="gelu"` with biases.
- `spatial_unpad` appends `image_newline` after each row of the unpadded grid (and once after
  a single image), and `anyres_max_N` downsizes grids over N tiles: transformers' LlavaOnevision
  does both, with `vision_aspect_ratio="anyres_max_N"` and the same `image_grid_pinpoints`.
- LLaVA marks images with token id -200 and never adds "<image>" to the tokenizer; transformers'
  processor needs a real token. "<image>" and "<video>" are appended to the tokenizer and must
  fall inside the embedding matrix (Qwen2's has spare rows): the matrix is not resized, so the
  softmax over the vocabulary, and with it P("yes"), is the one the original model computes.

The paper's selector.py loads ORM/PARM with `image_aspect_ratio` overridden to "pad" (the image
padded to a square with the mean colour, one 384 px tile: 729 features and one image_newline).
The converted config keeps the checkpoint's own "anyres_max_9"; preprocessing like the paper is
the verifier's choice (the original value is in stepwise-conversion.json).

The lmms-lab config names the vision tower (`mm_vision_tower`) but does not hold its config:
for google/siglip-so400m-patch14-384 the values are built in here (SO400M_VISION_CONFIG);
any other tower needs `vision_config=` (a JSON file, a folder with config.json, or a hub id in
the local cache).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.weights import MissingWeightsError, WeightsSpec, load_state_dict, locate, weight_files

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHAT_TEMPLATE",
    "CONVERSION_RECORD",
    "DTYPES",
    "KEY_RENAMES",
    "SO400M_REPO",
    "SO400M_VISION_CONFIG",
    "ConversionError",
    "build_config",
    "build_tokenizer",
    "checkpoint_vision_config",
    "convert_llava_checkpoint",
    "grid_pinpoints",
    "load_converted_weights",
    "load_vision_config",
    "rename_key",
]

SO400M_REPO = "google/siglip-so400m-patch14-384"
# google/siglip-so400m-patch14-384's vision config as LLaVA-NeXT uses it: 27 layers less the
# last one, no pooling head. transformers' LlavaOnevisionConfig defaults to the same values.
SO400M_VISION_CONFIG: dict[str, Any] = {
    "model_type": "siglip_vision_model",
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 26,
    "num_attention_heads": 16,
    "num_channels": 3,
    "image_size": 384,
    "patch_size": 14,
    "hidden_act": "gelu_pytorch_tanh",
    "layer_norm_eps": 1e-6,
    "attention_dropout": 0.0,
    "vision_use_head": False,
}
SIGLIP_MEAN = (0.5, 0.5, 0.5)  # SigLIP normalises to [-1, 1]; LLaVA's SigLipImageProcessor too
SIGLIP_STD = (0.5, 0.5, 0.5)
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
CONVERSION_RECORD = "stepwise-conversion.json"
DTYPES = ("keep", "float16", "bfloat16", "float32")

# Qwen2's ChatML, as LLaVA-NeXT's "qwen_1_5" conversation writes it: the default system prompt
# when the first message is not a system message, then each message's parts in their order
# (an image part becomes "<image>", so [image, " This image is ..."] gives LLaVA's
# "<image> This image is ..."), and "<|im_start|>assistant\n" for the generation prompt.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '" + IMAGE_TOKEN + "' }}"
    "{%- elif part['type'] == 'video' -%}{{ '" + VIDEO_TOKEN + "' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] }}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)

# Qwen2 fields of the lmms-lab config that make up the text config. `rope_scaling` is left out
# on purpose: LlavaQwenForCausalLM sets it to None whatever the file says.
TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
    "use_cache", "tie_word_embeddings", "rope_theta", "use_sliding_window", "sliding_window",
    "max_window_layers", "attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id",
)
REQUIRED_TEXT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                        "num_attention_heads")
# The lmms-lab fields kept in the conversion record: what the converted config cannot hold.
LMMS_FIELDS = (
    "model_type", "architectures", "mm_vision_tower", "mm_hidden_size", "mm_projector_type",
    "mm_vision_select_layer", "mm_vision_select_feature", "mm_patch_merge_type", "image_aspect_ratio",
    "image_grid_pinpoints", "mm_newline_position", "mm_spatial_pool_mode", "mm_resampler_type",
    "tokenizer_padding_side", "tokenizer_model_max_length", "torch_dtype",
)

VISION_SOURCE = "model.vision_tower.vision_tower.vision_model."  # LLaVA's SigLipVisionTower(SiglipVisionModel)
VISION_TARGET = "{vision}"  # replaced by the installed transformers' vision-tower prefix
# (lmms-lab prefix, transformers prefix); a key is renamed by the first rule whose prefix it has.
KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (VISION_SOURCE, VISION_TARGET),
    ("model.mm_projector.0.", "model.multi_modal_projector.linear_1."),
    ("model.mm_projector.2.", "model.multi_modal_projector.linear_2."),
    ("model.image_newline", "model.image_newline"),
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("lm_head.", "lm_head."),
)
DROPPED_SUFFIXES = (".rotary_emb.inv_freq",)  # buffers some old transformers versions saved
LAYER_RE = re.compile(re.escape(VISION_SOURCE) + r"encoder\.layers\.(\d+)\.")
GRID_RE = re.compile(r"\((\d+)x(\d+)\)")
ANYRES_MAX_RE = re.compile(r"anyres_max_\d+")


class ConversionError(ValueError):
    """The checkpoint cannot be converted; the message names the file and the problem."""


# --- reading the lmms-lab folder ----------------------------------------------------------------

def read_lmms_config(src: Path) -> dict[str, Any]:
    """The lmms-lab config.json, checked to be a LLaVA-NeXT checkpoint this converter understands."""
    path = src / "config.json"
    if not src.is_dir():
        raise ConversionError(f"{src}: not a folder (expected an lmms-lab LLaVA-NeXT checkpoint folder)")
    if not path.is_file():
        raise ConversionError(f"{path}: missing; an lmms-lab checkpoint folder holds config.json, "
                              "the weights and the tokenizer files")
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise ConversionError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: expected a JSON object")
    if config.get("model_type") == "llava_onevision" or "vision_config" in config:
        raise ConversionError(f"{path}: already a transformers LlavaOnevision checkpoint; load it as it is")
    if "mm_vision_tower" not in config:
        raise ConversionError(f"{path}: not an lmms-lab LLaVA-NeXT checkpoint (no mm_vision_tower field)")
    missing = [name for name in REQUIRED_TEXT_FIELDS if name not in config]
    if missing:
        raise ConversionError(f"{path}: lacks the Qwen2 field(s) {', '.join(missing)}")
    checks = {
        "mm_projector_type": (config.get("mm_projector_type", "linear") == "mlp2x_gelu",
                              "only mlp2x_gelu maps onto LlavaOnevision's projector"),
        "mm_patch_merge_type": ("unpad" in str(config.get("mm_patch_merge_type", "flat")),
                                "only spatial_unpad (image_newline) maps onto LlavaOnevision"),
        "image_aspect_ratio": (bool(ANYRES_MAX_RE.fullmatch(str(config.get("image_aspect_ratio", "")))),
                               "only anyres_max_N maps onto LlavaOnevision's vision_aspect_ratio"),
        "mm_vision_tower": ("siglip" in str(config["mm_vision_tower"]).lower(),
                            "only SigLIP vision towers are supported"),
        "mm_resampler_type": (config.get("mm_resampler_type") in (None, "", "identity"),
                              "vision resamplers have no LlavaOnevision equivalent"),
    }
    for name, (ok, why) in checks.items():
        if not ok:
            raise ConversionError(f"{path}: {name} = {config.get(name)!r}: {why}")
    return config


def text_config_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The Qwen2 text config inside an lmms-lab config."""
    return {"model_type": "qwen2", **{name: config[name] for name in TEXT_FIELDS if name in config}}


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as err:
        raise ConversionError(f"{path}: cannot read the {what} ({err})") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path}: the {what} is not a JSON object")
    return data


def load_vision_config(spec: str | Path | None, tower: str) -> tuple[dict[str, Any], str]:
    """The SigLIP vision config and where it came from.

    `spec`: None (the built-in so400m values, when the checkpoint's tower is that one), a JSON
    file or a folder with config.json (a SigLIP vision config, a full SigLIP config, or any
    config with a `vision_config`, such as a LlavaOnevision one), or a hub id in the local cache.
    """
    if spec is None:
        if tower == SO400M_REPO:
            return dict(SO400M_VISION_CONFIG), f"built-in values for {SO400M_REPO}"
        raise ConversionError(f"the checkpoint's vision tower is {tower!r}, whose config is not built in; "
                              "pass --vision-config with its config.json (a file, folder or cached hub id)")
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / "config.json"
    elif not path.is_file():
        try:
            path = locate(str(spec), WeightsSpec("vision tower config", default_repo=str(spec),
                                                 files=("config.json",), weights=False)) / "config.json"
        except MissingWeightsError as err:
            raise ConversionError(f"--vision-config: {err}") from None
    if not path.is_file():
        raise ConversionError(f"{path}: missing (--vision-config)")
    data = _read_json(path, "vision config")
    nested = data.get("model_type") != "siglip_vision_model" and "vision_config" in data
    vision = data["vision_config"] if nested else data
    if not isinstance(vision, dict) or vision.get("model_type", "siglip_vision_model") != "siglip_vision_model":
        raise ConversionError(f"{path}: not a SigLIP vision config (model_type siglip_vision_model)")
    return _complete_vision_config(vision, path), str(path)


def _complete_vision_config(vision: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """`vision` with SiglipVisionConfig's defaults for the fields it leaves out."""
    from transformers import SiglipVisionConfig

    fields = {k: v for k, v in vision.items() if k not in ("model_type", "transformers_version")}
    try:
        return {**SiglipVisionConfig(**fields).to_dict(), "model_type": "siglip_vision_model"}
    except (TypeError, ValueError) as err:
        raise ConversionError(f"{path}: not a valid SigLIP vision config ({err})") from None


def grid_pinpoints(config: Mapping[str, Any], tile: int, source: Path) -> list[list[int]]:
    """`image_grid_pinpoints` in pixels: stored as pairs, or as LLaVA's "(1x1),...,(6x6)" tile range."""
    value = config.get("image_grid_pinpoints")
    if isinstance(value, str):
        found = GRID_RE.findall(value)
        if not found:
            raise ConversionError(f"{source}: image_grid_pinpoints {value!r} is not a list or '(AxB),...,(CxD)'")
        (r0, c0), (r1, c1) = (tuple(map(int, pair)) for pair in (found[0], found[-1]))
        # LLaVA-NeXT's train.py: every grid from the first to the last, times the tile size.
        return [[i * tile, j * tile] for i in range(r0, r1 + 1) for j in range(c0, c1 + 1)]
    if (isinstance(value, list) and value
            and all(isinstance(p, list | tuple) and len(p) == 2 and all(isinstance(x, int) for x in p)
                    for p in value)):
        return [list(p) for p in value]
    raise ConversionError(f"{source}: image_grid_pinpoints {value!r} is missing or not a list of [h, w] pairs")


def read_weights(src: Path) -> dict[str, torch.Tensor]:
    files = weight_files(src)  # raises MissingWeightsError (naming the index) for a broken index
    if not files:
        raise ConversionError(f"{src}: no weights (*.safetensors or pytorch_model*.bin)")
    absent = [str(f) for f in files if not f.is_file()]
    if absent:
        raise ConversionError(f"{src}: the shard index names missing file(s): {', '.join(absent)}")
    return load_state_dict(files)  # raises MissingWeightsError naming a truncated or corrupt file


# --- renaming ---------------------------------------------------------------------------------------

def rename_key(key: str, vision_prefix: str = "model.vision_tower.") -> str | None:
    """The transformers name of an lmms-lab weight; "" for a key that is dropped; None if unknown."""
    if key.endswith(DROPPED_SUFFIXES):
        return ""
    for source, target in KEY_RENAMES:
        if key == source or (source.endswith(".") and key.startswith(source)):
            return target.replace(VISION_TARGET, vision_prefix) + key[len(source):]
    return None


def rename_state_dict(state: Mapping[str, torch.Tensor], vision_prefix: str,
                      source: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
    """(renamed weights, {new name: lmms-lab name}, dropped keys).

    Every key is renamed once or dropped; unknown keys and two keys with one new name are errors.
    """
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for key, tensor in state.items():
        target = rename_key(key, vision_prefix)
        if target is None:
            unknown.append(key)
        elif target == "":
            dropped.append(key)
        elif target in renamed:
            raise ConversionError(f"{source}: {origin[target]!r} and {key!r} both become {target!r}")
        else:
            renamed[target] = tensor
            origin[target] = key
    if unknown:
        raise ConversionError(f"{source}: {len(unknown)} weight(s) the converter does not know: "
                              f"{_listing(unknown)}")
    return renamed, origin, dropped


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(sorted(keys)[:limit])
    return shown + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def vision_layers(state: Mapping[str, Any]) -> int:
    """How many SigLIP encoder layers the checkpoint holds."""
    indices = {int(m.group(1)) for key in state if (m := LAYER_RE.match(key))}
    return max(indices) + 1 if indices else 0


# --- building the transformers checkpoint -----------------------------------------------------------

def build_tokenizer(src: Path, text_config: Mapping[str, Any]) -> Any:
    """The checkpoint's tokenizer with "<image>" and "<video>" added (when absent) inside the embedding rows."""
    from transformers import AddedToken, AutoTokenizer, Qwen2Config

    if not any((src / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json")):
        raise ConversionError(f"{src}: no tokenizer files (tokenizer.json, tokenizer_config.json or vocab.json)")
    try:
        # Given the Qwen2 config, AutoTokenizer does not parse config.json, whose lmms-lab
        # model_type ("llava_qwen") transformers may not know.
        qwen2 = Qwen2Config(**{k: v for k, v in text_config.items() if k != "model_type"})
        tokenizer = AutoTokenizer.from_pretrained(str(src), config=qwen2)
    except Exception as err:  # transformers raises many kinds; the file is what the user needs
        raise ConversionError(f"{src}: cannot load the tokenizer ({type(err).__name__}: {err})") from None
    for token in (IMAGE_TOKEN, VIDEO_TOKEN):
        if token not in tokenizer.get_vocab():
            tokenizer.add_tokens([AddedToken(token, special=True, normalized=False)], special_tokens=True)
    vocab_rows = int(text_config["vocab_size"])
    for token in (IMAGE_TOKEN, VIDEO_TOKEN):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id >= vocab_rows:
            raise ConversionError(f"{src}: the tokenizer gives {token} id {token_id}, outside the "
                                  f"{vocab_rows} embedding rows (resizing would change the model's softmax)")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer: Any, vision: Mapping[str, Any], pinpoints: list[list[int]],
                    aspect_ratio: str) -> Any:
    """LlavaOnevisionProcessor with SigLIP's preprocessing (bicubic resize, mean = std = 0.5)."""
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor
    from transformers.image_utils import PILImageResampling

    side = int(vision["image_size"])
    pixels = {"size": {"height": side, "width": side}, "image_mean": list(SIGLIP_MEAN),
              "image_std": list(SIGLIP_STD), "resample": PILImageResampling.BICUBIC}
    return LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(image_grid_pinpoints=pinpoints, do_pad=True, **pixels),
        video_processor=LlavaOnevisionVideoProcessor(**pixels),
        tokenizer=tokenizer,
        num_image_tokens=(side // int(vision["patch_size"])) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
        vision_aspect_ratio=aspect_ratio,
    )


def build_config(lmms: Mapping[str, Any], vision: Mapping[str, Any], pinpoints: list[list[int]],
                 image_token_id: int, video_token_id: int) -> Any:
    """The LlavaOnevisionConfig computing what LLaVA-NeXT computes with `lmms` (see the module docstring)."""
    from transformers import LlavaOnevisionConfig

    text = text_config_fields(lmms)
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=dict(vision),
        image_token_index=image_token_id,
        video_token_index=video_token_id,
        projector_hidden_act="gelu",  # nn.GELU(): exact
        multimodal_projector_bias=True,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=pinpoints,
        vision_aspect_ratio=str(lmms["image_aspect_ratio"]),
        tie_word_embeddings=bool(text.get("tie_word_embeddings", False)),
    )


def _check_against_model(renamed: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor],
                         origin: Mapping[str, str], tied: bool, source: Path) -> None:
    """Every weight the model has comes from the checkpoint, with its shape; nothing is left over."""
    wanted = {k for k in expected if not (tied and k == "lm_head.weight")}
    missing = sorted(wanted - renamed.keys())
    extra = sorted(renamed.keys() - expected.keys())
    if missing:
        raise ConversionError(f"{source}: the checkpoint lacks {len(missing)} weight(s) the model needs: "
                              f"{_listing(missing)}")
    if extra:
        raise ConversionError(f"{source}: {len(extra)} weight(s) the model has no place for: "
                              f"{_listing([origin[k] for k in extra])}")
    wrong = [f"{origin[k]} {tuple(renamed[k].shape)} (expected {tuple(expected[k].shape)})"
             for k in sorted(wanted) if tuple(renamed[k].shape) != tuple(expected[k].shape)]
    if wrong:
        raise ConversionError(f"{source}: {len(wrong)} weight(s) of the wrong shape: {_listing(wrong, 4)}")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConversionError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConversionError(f"{out}: not empty; pass --force to replace it")


def _write_atomically(out: Path, force: bool, write: Callable[[Path], None]) -> None:
    """`write(folder)` into `out.partial`, then put it in `out`'s place: `out` is never half written."""
    _check_out(out, force)
    partial = out.with_name(out.name + ".partial")
    if partial.exists():  # left by a conversion that was killed
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    try:
        write(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _check_out(out, force)  # again: something may have written there meanwhile
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)


def checkpoint_vision_config(lmms: Mapping[str, Any], state: Mapping[str, Any], spec: str | Path | None,
                             src: Path) -> tuple[dict[str, Any], str]:
    """The vision config that fits the checkpoint's tower, and where it came from.

    LLaVA deletes SigLIP's last encoder layer and its head, so the checkpoint holds exactly the
    layers it runs: the config gets that many layers (fewer than a full SigLIP config names).
    """
    vision, source = load_vision_config(spec, str(lmms["mm_vision_tower"]))
    layers = vision_layers(state)
    if layers == 0:
        raise ConversionError(f"{src}: no vision tower weights ({VISION_SOURCE}*); checkpoints saved with a "
                              "frozen tower leave it out and cannot be converted alone")
    if layers > int(vision["num_hidden_layers"]):
        raise ConversionError(f"{src}: the checkpoint has {layers} vision layers, the vision config "
                              f"({source}) only {vision['num_hidden_layers']}")
    if "mm_hidden_size" in lmms and lmms["mm_hidden_size"] != vision["hidden_size"]:
        raise ConversionError(f"{src / 'config.json'}: mm_hidden_size {lmms['mm_hidden_size']} differs from the "
                              f"vision config's hidden_size {vision['hidden_size']} ({source})")
    return {**vision, "num_hidden_layers": layers, "vision_use_head": False}, source


def load_converted_weights(model: Any, state: dict[str, torch.Tensor], dtype: str,
                           src: Path) -> tuple[dict[str, str], list[str]]:
    """Rename `state` (emptied on the way, to free memory) into the meta-device `model`.

    Returns ({new name: lmms-lab name}, dropped keys). Every weight of the model must come from
    the checkpoint with its shape, and every checkpoint weight must find its place.
    """
    import torch

    expected = model.state_dict()
    vision_prefix = ("model.vision_tower.vision_model."  # transformers 4.x keeps SiglipVisionModel's prefix
                     if any(k.startswith("model.vision_tower.vision_model.") for k in expected)
                     else "model.vision_tower.")
    renamed, origin, dropped = rename_state_dict(state, vision_prefix, src)
    state.clear()
    tied = bool(model.config.tie_word_embeddings)
    _check_against_model(renamed, expected, origin, tied, src)
    if tied and "lm_head.weight" in renamed:
        if not torch.equal(renamed["lm_head.weight"], renamed["model.language_model.embed_tokens.weight"]):
            raise ConversionError(f"{src / 'config.json'}: tie_word_embeddings is true but lm_head.weight "
                                  "differs from model.embed_tokens.weight")
        del renamed["lm_head.weight"]
    if dtype != "keep":
        target = getattr(torch, dtype)
        for key in list(renamed):  # one tensor at a time: the old one is freed as it is replaced
            if renamed[key].is_floating_point():
                renamed[key] = renamed[key].to(target)
    model.load_state_dict(renamed, strict=not tied, assign=True)
    if tied:
        model.tie_weights()
    model.config.dtype = next(v.dtype for v in renamed.values() if v.is_floating_point())
    return origin, dropped


def convert_llava_checkpoint(src: Path, out: Path, *, dtype: str = "keep", vision_config: str | Path | None = None,
                             force: bool = False) -> Path:
    """Convert the lmms-lab LLaVA-NeXT checkpoint in `src` into a transformers folder `out`; return `out`.

    `out` then loads with `AutoModelForImageTextToText.from_pretrained(out)` and
    `AutoProcessor.from_pretrained(out)`. `dtype`: "keep" (the checkpoint's) or a torch dtype
    name for the floating-point weights. `vision_config`: see `load_vision_config`. The folder
    is written as `out.partial` and renamed when complete; a non-empty `out` is replaced only
    with `force`. Raises ConversionError (or MissingWeightsError for unreadable weight files).
    """
    import torch
    from transformers import LlavaOnevisionForConditionalGeneration

    src, out = Path(src), Path(out)
    if dtype not in DTYPES:
        raise ConversionError(f"dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    lmms = read_lmms_config(src)
    _check_out(out, force)  # before the slow part
    state = read_weights(src)
    vision, vision_source = checkpoint_vision_config(lmms, state, vision_config, src)
    pinpoints = grid_pinpoints(lmms, int(vision["image_size"]), src / "config.json")
    tokenizer = build_tokenizer(src, text_config_fields(lmms))
    image_id, video_id = tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, VIDEO_TOKEN])
    with torch.device("meta"):  # names and shapes only; the weights come from the checkpoint
        model = LlavaOnevisionForConditionalGeneration(build_config(lmms, vision, pinpoints, image_id, video_id))
    origin, dropped = load_converted_weights(model, state, dtype, src)
    if (src / "generation_config.json").is_file():  # keep the checkpoint's stop tokens and defaults
        from transformers import GenerationConfig

        try:
            model.generation_config = GenerationConfig.from_pretrained(str(src))
        except Exception as err:  # a malformed file: say which one
            raise ConversionError(f"{src / 'generation_config.json'}: unreadable ({err})") from None
    processor = build_processor(tokenizer, vision, pinpoints, str(lmms["image_aspect_ratio"]))
    record = {
        "source": str(src.resolve()),
        "converter": "harness.verifiers.convert",
        "vision_config": vision_source,
        "dtype": str(model.config.dtype).removeprefix("torch."),
        "renamed": len(origin),
        "dropped": sorted(dropped),
        "lmms_config": {name: lmms[name] for name in LMMS_FIELDS if name in lmms},
    }

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        (folder / CONVERSION_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    _write_atomically(out, force, write)
    return out
