"""`stepwise doctor`: what this machine can run, and what to do about what it cannot."""

from __future__ import annotations

from pathlib import Path

import click

MMDET_CHECKPOINT = "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco_20220504_001756-c9d0c4f2.pth"


def _line(ok: bool, what: str, detail: str) -> None:
    mark = click.style("ok  ", fg="green") if ok else click.style("MISS", fg="yellow")
    click.echo(f"[{mark}] {what}: {detail}")


@click.command()
@click.option("--detector", "mmdet_checkpoint", type=click.Path(path_type=Path), default=None,
              help=f"mmdet checkpoint to check (GenEval's: {MMDET_CHECKPOINT}).")
@click.option("--hf-detector", default="facebook/mask2former-swin-small-coco-instance", show_default=True,
              help="transformers detector to look for (local folder or hub id in the HF cache).")
def doctor(mmdet_checkpoint: Path | None, hf_detector: str) -> None:
    """Report torch/CUDA, which detector backends import, and which weights are found locally."""
    from harness.devices import hub_offline

    try:
        import torch

        cuda = torch.cuda.is_available()
        detail = f"torch {torch.__version__}, " + (
            f"CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): "
            f"{torch.cuda.get_device_name(0)}" if cuda else "no CUDA device: models run on CPU (slow)"
        )
        _line(True, "torch", detail)
    except ImportError as err:
        _line(False, "torch", f"not importable ({err}); run `make install`")
    _line(True, "hub", "offline (HF_HUB_OFFLINE set): only local files are used" if hub_offline()
          else "online allowed; set HF_HUB_OFFLINE=1 to forbid downloads")

    from harness.geneval.backends.mmdet_backend import mmdet_status

    ok, detail = mmdet_status()
    _line(ok, "backend mmdet", detail)
    if mmdet_checkpoint is None:
        _line(False, "mmdet weights", f"not given; pass --detector PATH to check {MMDET_CHECKPOINT} "
              "(download it from OpenMMLab's model zoo, mask2former section)")
    elif mmdet_checkpoint.is_file():
        size_mb = mmdet_checkpoint.stat().st_size / 2**20
        _line(True, "mmdet weights", f"{mmdet_checkpoint} ({size_mb:.0f} MB)")
    else:
        _line(False, "mmdet weights", f"{mmdet_checkpoint} does not exist")

    from harness.geneval.backends.hf_backend import hf_status

    ok, detail = hf_status(hf_detector)
    _line(ok, "backend hf", detail)

    from harness.geneval.colors import clip_status

    ok, detail = clip_status()
    _line(ok, "colour classifier", detail)

    _plugin_weights()


def _plugin_weights() -> None:
    """One line per checkpoint a built-in plug-in loads by default (found locally, or what to fetch)."""
    from harness.generators.janus import WEIGHTS as JANUS_WEIGHTS
    from harness.generators.showo.magvit import MAGVIT_WEIGHTS
    from harness.generators.showo.model import LLM_WEIGHTS, SHOWO_WEIGHTS
    from harness.verifiers.engine import SPEC as VLM_WEIGHTS
    from harness.weights import MissingWeightsError, locate

    for plugin, spec, flag in (("generator showo", SHOWO_WEIGHTS, "--param"),
                               ("generator showo", MAGVIT_WEIGHTS, "--param"),
                               ("generator showo", LLM_WEIGHTS, "--param"),
                               ("generator janus", JANUS_WEIGHTS, "--param"),
                               ("verifier orm/prm", VLM_WEIGHTS, "--verifier-param")):
        try:
            folder = locate(spec.default_repo, spec)
        except MissingWeightsError:
            _line(False, plugin, f"{spec.what} ({spec.default_repo}) not in the Hugging Face cache; on a connected "
                  f"machine: `hf download {spec.default_repo}`, or pass {flag} with a local folder")
        else:
            _line(True, plugin, f"{spec.what}: {folder}")
