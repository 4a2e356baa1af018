"""The `folder` generator: images made elsewhere, read back from a GenEval-layout folder.

    DIR/00012/metadata.jsonl             the suite's record of prompt 12 (one JSON object)
    DIR/00012/samples/00000.png          sample 0; any number of digits (GenEval writes 00000.png,
                                         the paper's code 0000.png), numbered 0, 1, 2, ... without gaps
    DIR/00012/process/00000_step0.png    optional step previews of sample 0, as PARM's code names them
    DIR/00012/grid.png                   tolerated, never read (GenEval's generation script writes it)

So images from any system, diffusion models included, go through the same verifiers, runner and
curves: `stepwise run --generator folder --param path=DIR ...`. `stepwise generate` writes this
layout. No model runs: the generator only reads files, so its cost is zero forward passes.

The folder is checked against the suite when the generator is built (`check=false` skips that):
every problem is collected and reported at once, each naming its file. Whether a prompt has
*enough* samples is known only when a pool size asks for them, so that is checked per request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from harness.geneval.folder import FolderProblem
from harness.plugins import Cost, GenerationRequest, GenerationResult, param
from harness.runner import RunError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "METADATA_NAME",
    "PROCESS_DIR",
    "SAMPLES_DIR",
    "FolderError",
    "FolderGenerator",
    "PromptFolder",
    "check_folder",
    "metadata_differences",
    "preview_name",
    "prompt_dir_name",
    "read_prompt_folder",
    "sample_name",
]

METADATA_NAME = "metadata.jsonl"
SAMPLES_DIR = "samples"
PROCESS_DIR = "process"
SAMPLE_RE = re.compile(r"(\d+)\.png")
PREVIEW_RE = re.compile(r"(\d+)_step(\d+)\.png")
# Files other writers put in a prompt folder that carry nothing we read: GenEval's grid of the
# samples, and the scratch image PARM's search code leaves behind.
TOLERATED_FILES = frozenset({"grid.png", "waiting_for_judge.png"})
PATH_HELP = "The folder: NNNNN/metadata.jsonl, NNNNN/samples/*.png, optional NNNNN/process/<sample>_step<k>.png."
MAX_LISTED = 20  # problems listed in one error; the rest are counted


def prompt_dir_name(index: int) -> str:
    return f"{index:05d}"


def sample_name(sample: int) -> str:
    return f"{sample:05d}.png"


def preview_name(sample: int, step: int) -> str:
    return f"{sample:05d}_step{step}.png"


class FolderError(RunError):
    """A folder that cannot serve as a pool; the message names every offending file."""


def format_problems(header: str, problems: Sequence[FolderProblem | str]) -> str:
    """One message: the header, then up to MAX_LISTED problems, one a line, then how many more."""
    lines = [f"  {p}" for p in problems[:MAX_LISTED]]
    if len(problems) > MAX_LISTED:
        lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
    return "\n".join([header, *lines])


def _ranges(numbers: Iterable[int]) -> str:
    """[0, 1, 2, 5] -> '0..2, 5' (short enough for an error message)."""
    runs: list[list[int]] = []  # [first, last] of each run of consecutive numbers
    for n in sorted(set(numbers)):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}..{b}" for a, b in runs) or "(none)"


# ---------------------------------------------------------------------------------------------
# reading one prompt folder


@dataclass(frozen=True)
class PromptFolder:
    """What one prompt folder holds, in reading order."""

    path: Path
    metadata: dict[str, Any]
    samples: list[Path]  # sample k is samples[k] (numeric order; numbers run 0..n-1)
    previews: dict[int, list[Path]]  # sample number -> its previews in step order


def read_prompt_folder(prompt_dir: Path) -> tuple[PromptFolder | None, list[FolderProblem]]:
    """Read `prompt_dir` strictly: (the folder, None when its metadata is unreadable; every problem found).

    The folder is usable only when there are no problems; it is returned anyway so that a caller
    can also compare its metadata, and report everything at once.
    """
    from harness.geneval.folder import read_prompt_metadata

    problems: list[FolderProblem] = []
    metadata: dict[str, Any] | None = None
    try:
        metadata = read_prompt_metadata(prompt_dir / METADATA_NAME)
    except ValueError as err:
        problems.append(FolderProblem(prompt_dir / METADATA_NAME, str(err)))
    for entry in sorted(prompt_dir.iterdir()):
        if entry.name in (SAMPLES_DIR, PROCESS_DIR):
            if not entry.is_dir():
                problems.append(FolderProblem(entry, "expected a folder, found a file"))
        elif entry.name != METADATA_NAME and entry.name not in TOLERATED_FILES:
            problems.append(FolderProblem(entry, "unexpected entry (a prompt folder holds metadata.jsonl, "
                                                 "samples/ and optionally process/)"))
    samples = _read_samples(prompt_dir / SAMPLES_DIR, problems)
    previews = _read_previews(prompt_dir / PROCESS_DIR, set(samples), problems)
    if metadata is None:
        return None, problems
    return PromptFolder(prompt_dir, metadata, [samples[k] for k in sorted(samples)], previews), problems


def _read_samples(samples_dir: Path, problems: list[FolderProblem]) -> dict[int, Path]:
    """{sample number: path}; gaps, duplicate numbers and stray files become problems."""
    if not samples_dir.is_dir():
        if not samples_dir.exists():
            problems.append(FolderProblem(samples_dir, "missing samples/ folder"))
        return {}
    found: dict[int, Path] = {}
    for entry in sorted(samples_dir.iterdir()):
        match = SAMPLE_RE.fullmatch(entry.name)
        if not (match and entry.is_file()):
            problems.append(FolderProblem(entry, "unexpected entry in samples/ (sample images are named "
                                                 "NNNNN.png, digits only)"))
            continue
        number = int(match.group(1))
        if number in found:
            problems.append(FolderProblem(entry, f"sample {number} twice (also {found[number].name})"))
            continue
        found[number] = entry
    if not found:
        problems.append(FolderProblem(samples_dir, "no sample images (NNNNN.png)"))
        return found
    # Sample k is the k-th image in numeric order; with a gap the k-th is not number k, and
    # pools read from the folder would silently shift, so the numbers must run 0..n-1.
    width = len(found[min(found)].stem)
    for number in sorted(set(range(max(found) + 1)) - set(found)):
        problems.append(FolderProblem(samples_dir / f"{number:0{width}d}.png",
                                      f"missing (samples must be numbered 0..{max(found)} without gaps)"))
    return found


def _read_previews(process_dir: Path, sample_numbers: set[int],
                   problems: list[FolderProblem]) -> dict[int, list[Path]]:
    """{sample number: previews in step order}; every sample has steps 0..m-1, the same m for all."""
    if not process_dir.is_dir():
        return {}
    steps: dict[int, dict[int, Path]] = {}
    for entry in sorted(process_dir.iterdir()):
        match = PREVIEW_RE.fullmatch(entry.name)
        if match and entry.is_file():
            sample, step = int(match.group(1)), int(match.group(2))
            mine = steps.setdefault(sample, {})
            if step in mine:
                problems.append(FolderProblem(entry, f"step {step} of sample {sample} twice (also {mine[step].name})"))
            else:
                mine[step] = entry
        elif not (SAMPLE_RE.fullmatch(entry.name) and entry.is_file()):
            # NNNNN.png in process/ are final images PARM's search copies there: tolerated, not read.
            problems.append(FolderProblem(entry, "unexpected entry in process/ (previews are named "
                                                 "<sample>_step<k>.png)"))
    if not steps:
        return {}
    for sample in sorted(set(steps) - sample_numbers):
        first = steps[sample][min(steps[sample])]
        problems.append(FolderProblem(first, f"previews of sample {sample}, which has no image in samples/"))
    n_steps = max(max(s) + 1 for s in steps.values())
    for sample in sorted(sample_numbers):
        missing = sorted(set(range(n_steps)) - set(steps.get(sample, {})))
        if missing:
            names = ", ".join(preview_name(sample, s) for s in missing[:4]) + (", ..." if len(missing) > 4 else "")
            problems.append(FolderProblem(process_dir, f"missing {names} (every sample needs previews of steps "
                                                       f"0..{n_steps - 1}, as the folder's others have)"))
    return {sample: [by_step[s] for s in sorted(by_step)] for sample, by_step in steps.items()}


def metadata_differences(found: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Which fields of a folder's metadata differ from the suite's record (the prompt first)."""
    keys = ["prompt", *(k for k in expected if k != "prompt"), *(k for k in found if k not in expected)]
    out = []
    for key in dict.fromkeys(keys):
        if key not in found:
            out.append(f"{key!r} is missing (the suite has {expected[key]!r})")
        elif key not in expected:
            out.append(f"{key!r} is not in the suite's record")
        elif found[key] != expected[key]:
            out.append(f"{key!r} is {found[key]!r}, the suite has {expected[key]!r}")
    return out


def mismatch_problem(path: Path, index: int, differences: Sequence[str], suite: str) -> FolderProblem:
    hint = ""
    if index >= 80 and suite == "geneval":  # the 80 single objects come first whatever per_task is
        hint = " (was the folder made with another --per-task? then pass the same per_task)"
    return FolderProblem(path, f"metadata differs from prompt {prompt_dir_name(index)} of the {suite} suite: "
                               f"{'; '.join(differences)}{hint}")


# ---------------------------------------------------------------------------------------------
# checking a whole folder against a suite


def prompt_folders(root: Path, n_prompts: int, problems: list[FolderProblem]) -> dict[int, Path]:
    """{suite index: folder} of the digit-named entries of `root`; other names are ignored, as GenEval does."""
    out: dict[int, Path] = {}
    for entry in sorted(root.iterdir()):
        if not entry.name.isdigit():
            continue
        index = int(entry.name)
        if not entry.is_dir():
            problems.append(FolderProblem(entry, "a prompt folder name, but a file"))
        elif entry.name != prompt_dir_name(index):
            problems.append(FolderProblem(entry, f"malformed prompt folder name (prompt {index} is "
                                                 f"{prompt_dir_name(index)})"))
        elif index >= n_prompts:
            problems.append(FolderProblem(entry, f"prompt {index} is not in the suite (prompts 0..{n_prompts - 1})"))
        else:
            out[index] = entry
    return out


def check_folder(root: Path, samples: Sequence[Mapping[str, Any]], suite: str = "geneval") -> list[FolderProblem]:
    """Every problem of `root` as a pool of `samples` (the suite's records); [] when it is sound."""
    problems: list[FolderProblem] = []
    folders = prompt_folders(root, len(samples), problems)
    if not folders and not problems:
        problems.append(FolderProblem(root, "no prompt folders (NNNNN/metadata.jsonl, NNNNN/samples/NNNNN.png)"))
    for index, prompt_dir in folders.items():
        folder, found = read_prompt_folder(prompt_dir)
        problems.extend(found)
        if folder is not None:
            differences = metadata_differences(folder.metadata, samples[index])
            if differences:
                problems.append(mismatch_problem(prompt_dir / METADATA_NAME, index, differences, suite))
    return problems


# ---------------------------------------------------------------------------------------------
# the plug-in


def load_image(path: Path) -> Image:
    """The image fully in memory, RGB, as `stepwise eval` decodes it; a bad file names itself."""
    from PIL import Image

    from harness.geneval.folder import ImageDecodeError, decode_image

    try:
        return Image.fromarray(decode_image(path).rgb, mode="RGB")
    except ImageDecodeError as err:
        raise FolderError(str(err)) from None


class FolderGenerator:
    """Reads the samples (and previews) of a GenEval-layout folder instead of generating them.

    Requests name their images by suite position (`prompt_index`, `sample_indices`): sample k of
    prompt i is the k-th image of DIR/{i:05d}/samples in numeric order. The request's seeds are
    ignored: the folder already fixes every image, so no seed could change one. (A run over the
    folder still records them; they just carry no randomness here.)
    """

    description: ClassVar[str] = "Images made elsewhere, read from a GenEval-layout folder (no model runs)."

    @dataclass(frozen=True, kw_only=True)
    class Params:
        # RUF009: a Path is immutable, which ruff cannot tell from the annotation.
        path: Path = param(help=PATH_HELP)  # noqa: RUF009
        suite: Literal["geneval"] = param("geneval", help="The suite the folder's prompts come from.")
        per_task: int = param(100, help="The suite's prompts per task (the run's --per-task).")
        check: bool = param(True, help="Check the whole folder against the suite when the run starts.")

    def __init__(self, params: Params) -> None:
        from harness.prompts import geneval_suite

        self.params = params
        self.root = Path(params.path)
        if not self.root.is_dir():
            raise FolderError(f"{self.root}: not a folder (the folder generator reads NNNNN/metadata.jsonl "
                              "and NNNNN/samples/*.png, as `stepwise generate` writes them)")
        self.records = geneval_suite(per_task=params.per_task)  # the suite, by index
        if params.check:
            problems = check_folder(self.root, self.records, params.suite)
            if problems:
                raise FolderError(format_problems(f"{self.root}: {len(problems)} problem(s) with this folder "
                                                  "as a pool:", problems))

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        out = []
        for request in requests:
            started = time.perf_counter()
            images, previews = self._read(request)
            # The images were made elsewhere: no forward passes here; seconds are reading time only.
            out.append(GenerationResult(images, previews, Cost(seconds=time.perf_counter() - started)))
        return out

    def _read(self, request: GenerationRequest) -> tuple[list[Image], list[list[Image]]]:
        if request.prompt_index is None or not request.sample_indices:
            raise FolderError("the folder generator finds images by suite position: the request needs "
                              "prompt_index and sample_indices (stepwise run and stepwise generate set them)")
        folder = self._folder(request.prompt_index, request.sample_indices)
        if folder.metadata.get("prompt") != request.prompt:
            raise FolderError(f"{folder.path / METADATA_NAME}: prompt {folder.metadata.get('prompt')!r}, but the "
                              f"request is for {request.prompt!r}")
        if request.metadata:
            differences = metadata_differences(folder.metadata, request.metadata)
            if differences:
                raise FolderError(str(mismatch_problem(folder.path / METADATA_NAME, request.prompt_index,
                                                       differences, self.params.suite)))
        images = [load_image(folder.samples[k]) for k in request.sample_indices]
        if not request.previews:
            return images, [[] for _ in request.sample_indices]
        previews = []
        for k in request.sample_indices:
            paths = folder.previews.get(k)
            if not paths:
                raise FolderError(f"{folder.path / PROCESS_DIR}: no step previews of sample {k} "
                                  f"({preview_name(k, 0)}, ...), and this run's verifiers need them")
            previews.append([load_image(p) for p in paths])
        return images, previews

    def _folder(self, index: int, needed: Sequence[int]) -> PromptFolder:
        prompt_dir = self.root / prompt_dir_name(index)
        if not prompt_dir.is_dir():
            raise FolderError(f"{prompt_dir}: no such prompt folder (prompt {index} needs samples "
                              f"{_ranges(needed)})")
        folder, problems = read_prompt_folder(prompt_dir)
        if folder is None or problems:
            raise FolderError(format_problems(f"{prompt_dir}: cannot be read as a prompt folder:", problems))
        if min(needed) < 0:
            raise FolderError(f"sample indices must be >= 0, got {min(needed)} (prompt {index})")
        have = len(folder.samples)
        missing = [k for k in sorted(set(needed)) if k >= have]
        if missing:
            width = len(folder.samples[0].stem)
            names = ", ".join(f"{prompt_dir / SAMPLES_DIR / f'{k:0{width}d}.png'}" for k in missing[:4])
            more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
            raise FolderError(f"{names}{more} missing: {prompt_dir.name} has {have} samples "
                              f"({_ranges(range(have))}), the pool needs samples {_ranges(needed)}")
        return folder
