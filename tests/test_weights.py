"""Locating checkpoints (local folder / HF cache, never the network) and reading their weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.weights import MissingWeightsError, WeightsSpec, load_state_dict, locate, weight_files

SPEC = WeightsSpec("Test model", default_repo="owner/test-model", files=("config.json",))


def _checkpoint(folder: Path, *, safetensors: bool = True) -> Path:
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    state = {"a.weight": torch.arange(6.0).reshape(2, 3), "b.bias": torch.ones(2)}
    if safetensors:
        from safetensors.torch import save_file

        save_file(state, str(folder / "model.safetensors"))
    else:
        torch.save(state, folder / "pytorch_model.bin")
    return folder


@pytest.mark.parametrize("safetensors", [True, False])
def test_local_folder_is_found_and_read(tmp_path: Path, safetensors: bool) -> None:
    folder = _checkpoint(tmp_path / "ckpt", safetensors=safetensors)
    assert locate(folder, SPEC) == folder
    state = load_state_dict(weight_files(folder))
    assert sorted(state) == ["a.weight", "b.bias"]
    assert state["a.weight"][1, 2].item() == 5.0


def test_sharded_index_lists_its_shards(tmp_path: Path) -> None:
    import torch

    folder = tmp_path / "sharded"
    folder.mkdir()
    torch.save({"x": torch.zeros(1)}, folder / "pytorch_model-00001-of-00002.bin")
    torch.save({"y": torch.ones(1)}, folder / "pytorch_model-00002-of-00002.bin")
    index = {"weight_map": {"x": "pytorch_model-00001-of-00002.bin", "y": "pytorch_model-00002-of-00002.bin"}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    assert sorted(load_state_dict(weight_files(folder))) == ["x", "y"]


def test_missing_hub_checkpoint_says_what_where_and_how(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(MissingWeightsError) as err:
        locate("owner/test-model", SPEC)
    message = str(err.value)
    assert "Test model checkpoint 'owner/test-model' not found" in message
    assert "config.json" in message and "weights" in message
    assert "Hugging Face cache" in message
    assert "`hf download owner/test-model`" in message


def test_folder_lacking_weights_names_the_folder_and_the_default_repo(tmp_path: Path) -> None:
    folder = tmp_path / "half"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError) as err:
        locate(folder, SPEC)
    message = str(err.value)
    assert str(folder) in message and "missing weights" in message
    assert "`hf download owner/test-model`" in message  # a path: suggest the default checkpoint


def test_nonexistent_local_path_is_not_taken_for_a_hub_id(tmp_path: Path) -> None:
    with pytest.raises(MissingWeightsError, match="does not exist"):
        locate(tmp_path / "nowhere", SPEC)


def test_corrupt_weight_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle")
    with pytest.raises(MissingWeightsError, match=r"pytorch_model\.bin: could not read weights"):
        load_state_dict(weight_files(folder))


def test_weights_only_loading_refuses_code(tmp_path: Path) -> None:
    import pickle

    folder = tmp_path / "evil"
    folder.mkdir()

    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pwned",))

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": Boom()}))
    with pytest.raises(MissingWeightsError, match="could not read weights"):
        load_state_dict(weight_files(folder))
