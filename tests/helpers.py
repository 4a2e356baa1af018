"""Small helpers shared by test modules (imported as `helpers`; pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def stepwise(*args: str) -> tuple[int, str]:
    """Run the CLI in-process: (exit code, output); an unexpected exception is raised, not swallowed."""
    from click.testing import CliRunner

    from harness.cli import main

    result = CliRunner().invoke(main, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def write_pairs(folder: Path, pairs: Sequence[tuple[str, Image, Image]], name: str = "dpo.jsonl") -> Path:
    """FOLDER/NAME as `stepwise curate` writes dpo.jsonl: one line per (prompt, chosen image, rejected
    image), the images saved beside it as <sha256>.png with their hashes."""
    import hashlib
    import io
    import json

    lines = []
    for prompt, *images in pairs:
        record: dict[str, Any] = {"prompt": prompt, "metadata": {"prompt": prompt}, "prompt_index": len(lines)}
        for key, image in zip(("chosen", "rejected"), images, strict=True):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            digest = hashlib.sha256(buffer.getvalue()).hexdigest()
            (folder / f"{digest}.png").write_bytes(buffer.getvalue())
            record[key], record[f"{key}_sha256"] = str(folder / f"{digest}.png"), digest
        lines.append(json.dumps(record))
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_showo_with_pairs(root: Path, prompts: Sequence[str]) -> tuple[dict[str, str], Path]:
    """A tiny Show-o (ROOT/showo, ROOT/magvit) and its generator params (32 px, 2 steps, CPU), and
    ROOT/data/dpo.jsonl: one pair per prompt of two of its own images (seeds 1 and 2)."""
    from harness.generators.showo.generator import ShowoGenerator
    from harness.plugins import GenerationRequest, parse_params
    from harness.tiny.magvit import write_tiny_magvit
    from harness.tiny.showo import write_tiny_showo

    params = {"model": str(write_tiny_showo(root / "showo")), "vq_model": str(write_tiny_magvit(root / "magvit")),
              "resolution": "32", "steps": "2", "guidance": "0", "device": "cpu"}
    generator = ShowoGenerator(parse_params(ShowoGenerator.Params, params))
    results = generator.generate([GenerationRequest(prompt, (1, 2), {}) for prompt in prompts])
    (root / "data").mkdir()
    pairs = write_pairs(root / "data", [(p, *r.images) for p, r in zip(prompts, results, strict=True)])
    return params, pairs


# A valid reported leaderboard entry (the paper's PARM row), for tests that edit or write one.
REPORTED_MANIFEST = """\
name = "Show-o + PARM, best-of-20"
authors = ["Ziyu Guo"]
link = "https://arxiv.org/abs/2501.13926"
description = "Best of 20 by PARM."
kind = "reported"

[system]
generator = "show-o"
strategy = "best-of-n"
verifiers = ["parm"]
n = 20
alignment = "none"
reward_guidance = "none"

[evaluator]
backend = "mmdet"

[protocol]
images_per_prompt = 4
prompt_rewriting = false

[[source]]
citation = "Guo et al. (2025)"
table = "Table 3"

[scores]
single_object = 0.99
two_object = 0.77
counting = 0.68
colors = 0.86
position = 0.29
color_attr = 0.45
"""


def install_without_pip(root: Path, monkeypatch: Any, module: str, code: str, project: dict[str, Any]) -> str:
    """A package "installed" without pip, as the docs' example packages are: `module` (its `code`) on
    sys.path, and a dist-info with the entry points of its pyproject `project` table (what pip would
    leave in site-packages). Returns the distribution's name."""
    (root / "src" / module).mkdir(parents=True)
    (root / "src" / module / "__init__.py").write_text(code)
    info = root / "site" / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n")
    lines = [f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items())
             for group, eps in project["entry-points"].items()]
    (info / "entry_points.txt").write_text("\n".join(lines))
    monkeypatch.syspath_prepend(str(root / "src"))
    monkeypatch.syspath_prepend(str(root / "site"))
    return str(project["name"])



def script_verdicts(monkeypatch: Any) -> None:
    """Judged verdicts scripted: even sample indices "yes", odd ones "no" (the detector still runs), for
    tests that need both kinds from a tiny detector that says "no" to everything."""
    import dataclasses

    import harness.runner

    real = harness.runner._judge

    def scripted(*args: Any, **kwargs: Any) -> list[tuple[Any, Any]]:
        return [(item, dataclasses.replace(verdict, correct=item.sample_index % 2 == 0,
                                           score=float(item.sample_index % 2 == 0), reason="scripted"))
                for item, verdict in real(*args, **kwargs)]

    monkeypatch.setattr(harness.runner, "_judge", scripted)
