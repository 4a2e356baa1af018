"""Test-wide settings: offline, single-threaded, no plug-in autoload, no user cache."""

from __future__ import annotations

import os

# Never reach a model hub from the tests; everything is built locally.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["STEPWISE_DISABLE_PLUGIN_AUTOLOAD"] = "1"

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The verdict cache defaults to ~/.cache; tests must neither read nor pollute it.
    monkeypatch.setenv("STEPWISE_CACHE_DIR", str(tmp_path_factory.mktemp("stepwise-cache")))


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> None:
    # On 2 shared cores, tiny models run ~100x slower with torch's default thread pool.
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)
