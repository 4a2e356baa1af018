"""Writing a generator's samples in GenEval's folder layout, resumable (`stepwise generate`, `harness.api`).

    OUT/stepwise-generate.json          what wrote the folder (generator, params, seed, suite)
    OUT/00012/metadata.jsonl            the suite's record, exactly as GenEval's scripts write it
    OUT/00012/samples/00000.png         sample k as {k:05}.png (GenEval's names)
    OUT/00012/process/00000_step0.png   with --previews: step s of sample k (PARM's names)

Sample k of prompt i comes from `candidate_seed(seed, i, k)`, the seed `stepwise run` gives the
same candidate, so both commands make the same images. Every file is written to a temporary
name in its folder and renamed, metadata before samples and previews before their sample: a
sample file that exists is complete, and re-running generates only what is missing.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

    from harness.plugins import Generator
    from harness.runner import Shard

MANIFEST_NAME = "stepwise-generate.json"
# Our temporary names (`.NAME.PID.tmp`): left behind only by a killed process, removed on resume.
# The leading dot keeps GenEval's `re.match(r"\d+\.png", name)` from taking one for a sample.
TEMP_RE = re.compile(r"\.(?:metadata\.jsonl|\d+\.png|\d+_step\d+\.png)\.\d+\.tmp")


@dataclass(frozen=True)
class GenerateConfig:
    """Everything `stepwise generate` is told."""

    generator: str
    out: Path
    n: int = 4  # samples per prompt
    params: Mapping[str, Any] = field(default_factory=dict)
    suite: str = "geneval"
    per_task: int = 100
    prompts: Sequence[int] | None = None  # suite indices (None: all)
    seed: int = 0
    previews: bool = False
    suite_params: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"data": DIR} for geneval2


@dataclass
class GenerateSummary:
    prompts: int = 0  # prompts of this shard
    written: int = 0  # prompts that needed work
    generated: int = 0  # samples written
    kept: int = 0  # samples already present


# ---------------------------------------------------------------------------------------------
# files


def png_bytes(image: Image) -> bytes:
    """The PNG encoding `stepwise run` stores (runner.save_png), so both give the same sha256."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def write_atomic(path: Path, data: bytes) -> None:
    """Write under a temporary name in the same folder, then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def metadata_bytes(record: Mapping[str, Any]) -> bytes:
    # GenEval's generation script: `json.dump(metadata, fp)`, default separators, no newline.
    return json.dumps(record).encode("utf-8")


def remove_stale_temps(prompt_dir: Path) -> None:
    from harness.generators.folder import PROCESS_DIR, SAMPLES_DIR

    for folder in (prompt_dir, prompt_dir / SAMPLES_DIR, prompt_dir / PROCESS_DIR):
        if folder.is_dir():
            for entry in folder.iterdir():
                if TEMP_RE.fullmatch(entry.name) and entry.is_file():
                    entry.unlink()


def sample_done(prompt_dir: Path, sample: int, previews: bool) -> bool:
    """Its sample file exists (written last) and, when previews are wanted, so does its first preview."""
    from harness.generators.folder import PROCESS_DIR, SAMPLES_DIR, preview_name, sample_name

    if not (prompt_dir / SAMPLES_DIR / sample_name(sample)).is_file():
        return False
    return not previews or (prompt_dir / PROCESS_DIR / preview_name(sample, 0)).is_file()


# ---------------------------------------------------------------------------------------------
# checking the output folder before writing into it


def manifest(config: GenerateConfig, provenance: Mapping[str, str], params: Any) -> dict[str, Any]:
    """What decides the images; a folder is only ever resumed with the same values."""
    from harness.plugins import canonical_json

    # (per_task is GenEval's; another suite's prompts are checked folder by folder against its records.)
    return {"suite": config.suite, "per_task": config.per_task if config.suite == "geneval" else None,
            "generator": provenance["name"], "package": provenance["package"], "version": provenance["version"],
            "params": json.loads(canonical_json(params)), "seed": config.seed}


def check_output(out: Path, expected: Mapping[str, Any], samples: Sequence[Mapping[str, Any]]) -> None:
    """Refuse an OUT that another generator, other settings or another suite wrote (RunError)."""
    from harness.generators.folder import (
        METADATA_NAME,
        format_problems,
        metadata_differences,
        mismatch_problem,
        prompt_folders,
    )
    from harness.geneval.folder import FolderProblem, read_prompt_metadata
    from harness.runner import RunError

    if not out.exists():
        return
    if not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder")
    problems: list[FolderProblem] = []
    folders = prompt_folders(out, len(samples), problems)
    path = out / MANIFEST_NAME
    if path.is_file():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
            raise RunError(f"{path}: not readable JSON ({err}); delete it only if you know what wrote {out}") from None
        changed = [f"{k}: {found.get(k)!r} there, {v!r} now" for k, v in expected.items() if found.get(k) != v]
        if changed:
            raise RunError(f"{out} was generated with other settings ({'; '.join(changed)}); resume it with the "
                           "same ones, or write to another -o")
    elif folders or problems:
        raise RunError(f"{out} holds prompt folders but no {MANIFEST_NAME}: `stepwise generate` did not write "
                       "it, so its samples could come from anything; write to a new or empty -o")
    for index, prompt_dir in folders.items():
        metadata_path = prompt_dir / METADATA_NAME
        if not metadata_path.exists():
            continue  # a run killed right after creating the folder: the metadata is written next
        try:
            metadata = (read_prompt_metadata(metadata_path) if expected["suite"] == "geneval"
                        else _read_record(metadata_path))
        except ValueError as err:
            problems.append(FolderProblem(metadata_path, str(err)))
            continue
        differences = metadata_differences(metadata, samples[index])
        if differences:
            problems.append(mismatch_problem(metadata_path, index, differences, expected["suite"]))
    if problems:
        raise RunError(format_problems(f"{out} holds another suite's prompts; write to another -o:", problems))


def _read_record(path: Path) -> dict[str, Any]:
    """Another suite's record as a prompt folder holds it (one JSON object); ValueError saying why not."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"unreadable metadata ({err})") from None
    if not isinstance(value, dict):
        raise ValueError("metadata is not a JSON object")
    return value


# ---------------------------------------------------------------------------------------------
# writing


def write_prompt(generator: Generator, out: Path, index: int, record: Mapping[str, Any], todo: Sequence[int],
                 config: GenerateConfig) -> None:
    """Generate samples `todo` of prompt `index`, then write them: metadata first, each sample after its previews."""
    from harness.generators.folder import (
        METADATA_NAME,
        PROCESS_DIR,
        SAMPLES_DIR,
        preview_name,
        prompt_dir_name,
        sample_name,
    )
    from harness.plugins import GenerationRequest
    from harness.runner import RunError, candidate_seed

    prompt_dir = out / prompt_dir_name(index)
    seeds = tuple(candidate_seed(config.seed, index, k) for k in todo)
    request = GenerationRequest(record["prompt"], seeds, dict(record), previews=config.previews,
                                prompt_index=index, sample_indices=tuple(todo))
    # Generate before touching the folder: a generator that fails leaves no metadata-only folder
    # behind (`stepwise eval` reports a prompt folder without samples).
    (result,) = generator.generate([request])
    if len(result.images) != len(seeds):
        raise RunError(f"generator {config.generator!r} returned {len(result.images)} images for {len(seeds)} "
                       f"seeds (prompt {prompt_dir_name(index)})")
    previews = [result.previews[p] if p < len(result.previews) else [] for p in range(len(todo))]
    if config.previews and not all(previews):
        raise RunError(f"generator {config.generator!r} returned no step previews (prompt "
                       f"{prompt_dir_name(index)}); run without --previews")
    (prompt_dir / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
    remove_stale_temps(prompt_dir)
    if not (prompt_dir / METADATA_NAME).is_file():
        write_atomic(prompt_dir / METADATA_NAME, metadata_bytes(record))
    for sample, image, steps in zip(todo, result.images, previews, strict=True):
        if config.previews:
            (prompt_dir / PROCESS_DIR).mkdir(exist_ok=True)
            for step, preview in enumerate(steps):
                write_atomic(prompt_dir / PROCESS_DIR / preview_name(sample, step), png_bytes(preview))
        write_atomic(prompt_dir / SAMPLES_DIR / sample_name(sample), png_bytes(image))  # last: marks it done


def suite_selection(config: GenerateConfig, shard: Shard) -> tuple[list[dict[str, Any]], list[int]]:
    """(the suite's records, the indices to write) by the same code as `stepwise run`."""
    from harness.geneval.evaluator import EvaluatorSpec
    from harness.runner import RunConfig, selected, suite_samples

    # Nothing is evaluated here; a RunConfig is built only so that the suite and its subset come
    # from `stepwise run`'s own functions (they read suite, per_task and prompts).
    run_config = RunConfig(generator=config.generator, evaluator=EvaluatorSpec(backend="hf"), pool=config.n,
                           suite=config.suite, per_task=config.per_task, prompts=config.prompts, seed=config.seed,
                           suite_params=dict(config.suite_params))
    samples = suite_samples(run_config)
    return samples, selected(run_config, len(samples), shard)


def generate_folder(config: GenerateConfig, *, shard: Shard | None = None) -> GenerateSummary:
    """Write this shard's prompts of the suite into `config.out`; returns what was done."""
    from harness.runner import Bars, RunError, Shard, _plugin, instantiate

    if config.n < 1:
        raise RunError(f"--n must be >= 1, got {config.n}")
    shard = shard or Shard.from_env()
    samples, indices = suite_selection(config, shard)
    cls, params, provenance = _plugin("generator", config.generator, config.params)
    expected = manifest(config, provenance, params)
    check_output(config.out, expected, samples)
    config.out.mkdir(parents=True, exist_ok=True)
    if not (config.out / MANIFEST_NAME).is_file():
        from harness.jsonl import write_atomic as write_text_atomic

        write_text_atomic(config.out / MANIFEST_NAME, json.dumps(expected, indent=2) + "\n")

    from harness.generators.folder import prompt_dir_name

    todo = {i: [k for k in range(config.n)
                if not sample_done(config.out / prompt_dir_name(i), k, config.previews)] for i in indices}
    work = {i: ks for i, ks in todo.items() if ks}
    summary = GenerateSummary(prompts=len(indices), written=len(work),
                              kept=sum(config.n - len(ks) for ks in todo.values()))
    if not work:
        return summary
    # built only when something is missing: a finished folder loads no weights
    generator = instantiate("generator", config.generator, cls, params)
    bars = Bars({"generate": sum(len(ks) for ks in work.values())})
    try:
        for index, samples_todo in work.items():
            write_prompt(generator, config.out, index, samples[index], samples_todo, config)
            summary.generated += len(samples_todo)
            bars.update("generate", len(samples_todo))
    finally:
        bars.close()
    return summary
