"""Our MAGVIT-v2 tokenizer: shapes, batching, files, showlab's parameter names and the lookup-free code table.

Offline and CPU-only: the model is `harness.tiny.magvit`'s seeded random one; the real
architecture is only instantiated on the meta device, to read its parameter names and shapes.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from harness.generators.showo.magvit import (
    LFQuantizer,
    MagvitCheckpointError,
    MagvitConfig,
    MagvitV2,
    lfq_buffers,
)
from harness.tiny.magvit import TINY_MAGVIT_CONFIG, TINY_MAGVIT_IMAGE_SIZE, TINY_MAGVIT_TOKENS, write_tiny_magvit
from harness.weights import MissingWeightsError

SIDE = TINY_MAGVIT_IMAGE_SIZE // TINY_MAGVIT_CONFIG.downsample_factor  # tokens per image side


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_magvit(tmp_path_factory.mktemp("tiny-magvit"), seed=0)


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path) -> MagvitV2:
    return MagvitV2.from_pretrained(tiny_dir)


def _ids(batch: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY_MAGVIT_CONFIG.codebook_size, (batch, TINY_MAGVIT_TOKENS), generator=generator)


# ----------------------------------------------------------------------------- shapes and batching


def test_decode_and_encode_shapes(tiny: MagvitV2) -> None:
    assert TINY_MAGVIT_TOKENS == SIDE * SIDE == 64
    with torch.no_grad():
        images = tiny.decode_code(_ids(3))
        assert images.shape == (3, 3, TINY_MAGVIT_IMAGE_SIZE, TINY_MAGVIT_IMAGE_SIZE)
        assert images.dtype == torch.float32 and torch.isfinite(images).all()
        ids = tiny.encode_to_ids(images.clamp(-1, 1))
    assert ids.shape == (3, TINY_MAGVIT_TOKENS) and ids.dtype == torch.long
    assert 0 <= int(ids.min()) and int(ids.max()) < TINY_MAGVIT_CONFIG.codebook_size
    assert not tiny.training and not any(p.requires_grad for p in tiny.parameters())


def test_non_square_grid_needs_a_shape(tiny: MagvitV2) -> None:
    ids = torch.zeros(1, 8 * 4, dtype=torch.long)
    with torch.no_grad():
        assert tiny.decode_code(ids, shape=(4, 8)).shape == (1, 3, 4 * 4, 8 * 4)
    with pytest.raises(ValueError, match="not a square"):
        tiny.decode_code(ids)


def test_out_of_range_ids_are_refused(tiny: MagvitV2) -> None:
    ids = _ids(1)
    ids[0, 5] = TINY_MAGVIT_CONFIG.codebook_size
    with pytest.raises(ValueError, match=r"\[0, 64\)"):
        tiny.decode_code(ids)


def test_batch_equals_rows_one_by_one(tiny: MagvitV2) -> None:
    ids = _ids(4, seed=1)
    with torch.no_grad():
        batch = tiny.decode_code(ids)
        rows = torch.cat([tiny.decode_code(ids[i : i + 1]) for i in range(len(ids))])
        torch.testing.assert_close(batch, rows, rtol=1e-5, atol=1e-5)
        encoded = tiny.encode_to_ids(batch)
        assert torch.equal(encoded, torch.cat([tiny.encode_to_ids(batch[i : i + 1]) for i in range(len(ids))]))


@pytest.mark.parametrize("safe", [False, True])
def test_save_and_load_round_trip(tiny: MagvitV2, tmp_path: Path, safe: bool) -> None:
    folder = tiny.save_pretrained(tmp_path / "copy", safe_serialization=safe)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["config.json", "pytorch_model.safetensors" if safe else "pytorch_model.bin"]
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "MAGVITv2"
    again = MagvitV2.from_pretrained(folder)
    assert again.config == TINY_MAGVIT_CONFIG
    ids = _ids(2, seed=2)
    size = TINY_MAGVIT_IMAGE_SIZE
    pixels = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(again.decode_code(ids), tiny.decode_code(ids))
        assert torch.equal(again.encode_to_ids(pixels * 2 - 1), tiny.encode_to_ids(pixels * 2 - 1))


def test_seed_decides_the_weights(tmp_path: Path, tiny: MagvitV2) -> None:
    other = MagvitV2.from_pretrained(write_tiny_magvit(tmp_path / "seed1", seed=1))
    assert not torch.equal(other.decoder.conv_out.weight, tiny.decoder.conv_out.weight)


# ----------------------------------------------------------------------------- the lookup-free code table


def test_index_to_code_mapping_by_hand() -> None:
    # Reference semantics: id i has channel c = +1 if bit (d-1-c) of i is set, else -1 (channel 0 = MSB).
    quantizer = LFQuantizer(codebook_dim=13)
    minus, plus = -1.0, 1.0
    ids = torch.tensor([[0, 1, 2, 4096, 8191, 0b1010000000001]])
    codes = quantizer.codes(ids, shape=(1, 6))[0, :, 0, :].T  # [6 ids, 13 channels]
    assert codes.tolist() == [
        [minus] * 13,
        [minus] * 12 + [plus],
        [minus] * 11 + [plus, minus],
        [plus] + [minus] * 12,
        [plus] * 13,
        [plus, minus, plus] + [minus] * 9 + [plus],
    ]
    assert quantizer.power_vals.tolist() == [4096, 2048, 1024, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1]
    # and back: the signs of a latent give the id; exactly 0 counts as negative
    assert torch.equal(quantizer.indices(codes.T.reshape(1, 13, 1, 6)), ids)
    latent = torch.full((1, 13, 1, 2), -0.5)
    latent[0, 0, 0, 0] = 3.0  # MSB set
    latent[0, 12, 0, 1] = 1e-6  # LSB set
    latent[0, 11, 0, 1] = 0.0  # zero: not set
    assert quantizer.indices(latent).tolist() == [[4096, 1]]


def test_every_code_round_trips() -> None:
    quantizer = LFQuantizer(codebook_dim=6)
    ids = torch.arange(64).reshape(1, 64)
    assert torch.equal(quantizer.indices(quantizer.codes(ids, shape=(8, 8))), ids)
    assert torch.equal(quantizer.indices(quantizer.codes(ids, shape=(4, 16))), ids)  # row-major grid


# ----------------------------------------------------------------------------- showlab's parameter names


def _real_state_shapes() -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = MagvitV2(MagvitConfig())
    return {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}


def test_real_config_defaults() -> None:
    config = MagvitConfig()
    assert (config.ch, config.z_channels, config.codebook_size, config.resolution) == (128, 13, 8192, 256)
    assert config.encoder_ch_mult == (1, 2, 2, 4, 4) and config.encoder_num_res_blocks == (4, 3, 4, 3, 4)
    assert config.decoder_ch_mult == (1, 1, 2, 2, 4) and config.decoder_num_res_blocks == (4, 4, 3, 4, 3)
    assert config.attn_resolutions == (5,) and config.downsample_factor == config.upsample_factor == 16
    # The hub's config.json names the class only; it must give the defaults.
    assert MagvitConfig.from_dict({"_class_name": "MAGVITv2", "_diffusers_version": "0.30.1"}) == config


def test_real_checkpoint_parameter_names() -> None:
    shapes = _real_state_shapes()
    # Counted by hand from the reference modules: encoder 190 (18 resnet blocks, two with a
    # 1x1 shortcut, 4 downsamplers, mid, norm/conv out, quant_conv), decoder 190, quantizer 2 buffers.
    assert len(shapes) == 382
    expected = {
        "encoder.conv_in.weight": (128, 3, 3, 3),
        "encoder.down.0.block.0.norm1.weight": (128,),
        "encoder.down.0.block.3.conv2.bias": (128,),
        "encoder.down.0.downsample.conv.weight": (128, 128, 3, 3),
        "encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "encoder.down.3.block.0.nin_shortcut.weight": (512, 256, 1, 1),
        "encoder.down.4.block.3.norm2.bias": (512,),
        "encoder.mid.block_1.conv1.weight": (512, 512, 3, 3),
        "encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "encoder.mid.attn_1.proj_out.bias": (512,),
        "encoder.mid.attn_1.norm.weight": (512,),
        "encoder.norm_out.weight": (512,),
        "encoder.conv_out.weight": (13, 512, 3, 3),
        "encoder.quant_conv.weight": (13, 13, 1, 1),
        "decoder.post_quant_conv.weight": (13, 13, 1, 1),
        "decoder.conv_in.weight": (512, 13, 3, 3),
        "decoder.mid.block_2.norm1.weight": (512,),
        "decoder.up.4.block.2.conv1.weight": (512, 512, 3, 3),
        "decoder.up.4.upsample.conv.weight": (512, 512, 3, 3),
        "decoder.up.3.block.0.nin_shortcut.weight": (256, 512, 1, 1),
        "decoder.up.1.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "decoder.up.1.block.3.conv2.weight": (128, 128, 3, 3),
        "decoder.up.1.upsample.conv.weight": (128, 128, 3, 3),
        "decoder.norm_out.bias": (128,),
        "decoder.conv_out.weight": (3, 128, 3, 3),
        "quantize.embedding": (8192, 13),
        "quantize.power_vals": (13,),
    }
    assert {name: shapes.get(name) for name in expected} == expected
    absent = [
        "encoder.down.4.downsample.conv.weight",  # the last encoder level does not downsample
        "decoder.up.0.upsample.conv.weight",  # the first decoder level does not upsample
        "decoder.up.2.block.3.conv1.weight",  # decoder level 2 has 3 blocks
        "encoder.down.0.block.0.nin_shortcut.weight",  # 128 -> 128: no shortcut conv
    ]
    assert [name for name in absent if name in shapes] == []
    # attn_resolutions=(5,) matches no level: no per-level attention, no time-embedding projections
    assert [n for n in shapes if re.search(r"\.(down|up)\.\d+\.attn\.|temb_proj", n)] == []
    encoder_blocks = [n for n in shapes if re.fullmatch(r"encoder\.down\.\d+\.block\.\d+\.conv1\.weight", n)]
    assert len(encoder_blocks) == 4 + 3 + 4 + 3 + 4


def test_tiny_model_has_every_block_type(tiny: MagvitV2) -> None:
    names = set(tiny.state_dict())
    for pattern in (r"encoder\.down\.\d+\.attn\.0\.q\.weight", r"decoder\.up\.\d+\.attn\.0\.k\.weight",
                    r"encoder\.down\.\d+\.block\.0\.nin_shortcut\.weight",
                    r"decoder\.up\.\d+\.block\.0\.nin_shortcut\.weight",
                    r"encoder\.down\.\d+\.downsample\.conv\.weight", r"decoder\.up\.\d+\.upsample\.conv\.weight"):
        assert any(re.fullmatch(pattern, name) for name in names), pattern


def test_checkpoint_with_a_missing_and_an_extra_key_names_both(tiny_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_dir, tmp_path / "bad"))
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    del state["decoder.mid.attn_1.v.bias"]
    state["decoder.mid.attn_1.extra.weight"] = torch.zeros(1)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(MagvitCheckpointError) as err:
        MagvitV2.from_pretrained(folder)
    message = str(err.value)
    assert "decoder.mid.attn_1.v.bias" in message and "decoder.mid.attn_1.extra.weight" in message
    assert "missing keys (1)" in message and "unexpected keys (1)" in message
    assert str(folder / "pytorch_model.bin") in message


def test_checkpoint_of_another_shape_is_refused(tiny_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_dir, tmp_path / "wide"))
    config = json.loads((folder / "config.json").read_text())
    config["decoder_num_res_blocks"] = [1, 1, 1]  # weights have 2 blocks in decoder level 0
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(MagvitCheckpointError, match=r"unexpected keys \(\d+\): decoder\.up\.0\.block\.1\."):
        MagvitV2.from_pretrained(folder)


def test_quantizer_buffers_may_be_absent_but_not_different(tiny_dir: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_dir, tmp_path / "buffers"))
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    del state["quantize.embedding"], state["quantize.power_vals"]
    torch.save(state, folder / "pytorch_model.bin")
    model = MagvitV2.from_pretrained(folder)
    assert torch.equal(model.quantize.embedding, lfq_buffers(6)["embedding"])
    state["quantize.embedding"] = -lfq_buffers(6)["embedding"]
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(MagvitCheckpointError, match=r"quantize\.embedding is not the lookup-free code table"):
        MagvitV2.from_pretrained(folder)


# ----------------------------------------------------------------------------- config.json


def test_config_from_reference_constructor_arguments() -> None:
    config = MagvitConfig.from_dict({
        "_class_name": "MAGVITv2",
        "encoder": {"ch": 64, "ch_mult": [1, 2], "num_res_blocks": [1, 1], "z_channels": 4},
        "decoder": {"ch": 64, "ch_mult": [1, 2], "num_res_blocks": [2, 2]},
        "quantize": {"codebook_dim": 4, "beta": 0.25},
        "z_channels": 4,
    })
    assert config.ch == 64 and config.encoder_ch_mult == (1, 2) and config.decoder_num_res_blocks == (2, 2)
    assert config.codebook_size == 16
    assert MagvitConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ch_mult": [1, 2]}, "ambiguous"),
        ({"n_layers": 3}, "n_layers"),
        ({"encoder": {"ch": 64}, "decoder": {"ch": 32}}, "different values"),
        ({"z_channels": 12}, "codebook_dim"),
        ({"ch": 16}, "multiple of 32"),
        ({"double_z": True}, "double_z"),
    ],
)
def test_bad_configs_are_refused(data: dict, message: str) -> None:
    with pytest.raises(MagvitCheckpointError, match=message):
        MagvitConfig.from_dict(data)


# ----------------------------------------------------------------------------- missing checkpoints


def test_empty_folder_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError) as err:
        MagvitV2.from_pretrained(tmp_path)
    message = str(err.value)
    assert "MAGVIT-v2 image tokenizer" in message and "config.json" in message
    assert "`hf download showlab/magvitv2`" in message


@pytest.mark.parametrize("hub_id", ["showlab/magvitv2", "nobody/no-such-magvit"])
def test_hub_id_not_in_cache(hub_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError) as err:
        MagvitV2.from_pretrained(hub_id)
    message = str(err.value)
    assert "config.json" in message and f"`hf download {hub_id}`" in message
