"""What `stepwise eval --suite geneval2` reads: the images and the record of each image's prompt.

Two inputs, the same result:

* an image folder in the layout `stepwise generate` writes (GenEval's):

      IMAGES/00012/metadata.jsonl     the GenEval 2 record of prompt 12 (one JSON object)
      IMAGES/00012/samples/00000.png  its images, any number of them, NNNN.png in numeric order

  Other files are ignored and counted, as `stepwise eval` does for GenEval. With `--prompts SUITE`
  each folder's record must equal the suite's record of that index;
* the reference's mapping, a JSON object {prompt: image path} (`--image_filepath_data`), with
  `--prompts SUITE`: one image per suite prompt, in the suite's order. As in the reference every
  prompt needs an entry and relative paths are relative to the current directory; entries for
  prompts outside the suite are ignored (and counted).

Problems are collected, each naming its file, so that `--on-error skip` can evaluate the rest.
Images are read as the reference's processor reads an image path (transformers `load_image`):
PIL, EXIF orientation applied, converted to RGB; any format PIL reads.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.geneval.folder import SAMPLE_NAME, FolderProblem
from harness.geneval2.data import Record, SuiteData, record_problems

if TYPE_CHECKING:
    from PIL.Image import Image

METADATA_NAME = "metadata.jsonl"
SAMPLES_DIR = "samples"


class InputError(ValueError):
    """Input that cannot be read at all (not a folder or mapping, a malformed mapping); names the file."""


class ImageDecodeError(ValueError):
    """An image file that cannot be decoded; the message names it."""


@dataclass(frozen=True)
class PromptImage:
    """One image to evaluate, with its prompt's record and index."""

    path: Path
    record: Record
    prompt_index: int


@dataclass
class InputScan:
    images: list[PromptImage] = field(default_factory=list)
    problems: list[FolderProblem] = field(default_factory=list)  # --on-error decides
    ignored: list[Path] = field(default_factory=list)  # files that are not samples
    notes: list[str] = field(default_factory=list)  # things worth saying that stop nothing


@dataclass(frozen=True)
class LoadedImage:
    image: Image  # RGB, fully loaded
    sha256: str  # of the file's bytes


def scan_inputs(images: Path, suite: SuiteData | None) -> InputScan:
    """The images and records of `images`: a GenEval-layout folder, or a {prompt: path} JSON mapping."""
    images = Path(images)
    if images.is_dir():
        return scan_folder(images, suite)
    if images.is_file():
        if suite is None:
            raise InputError(f"{images}: a prompt -> image mapping needs the suite: add --prompts SUITE_DIR "
                             "(written by `stepwise prompts geneval2`)")
        return read_mapping(images, suite)
    raise InputError(f"{images}: no such folder or file")


def scan_folder(image_dir: Path, suite: SuiteData | None) -> InputScan:
    scan = InputScan()
    prompt_dirs = sorted((p for p in image_dir.iterdir() if p.name.isdigit()), key=lambda p: (int(p.name), p.name))
    if not prompt_dirs:
        raise InputError(f"{image_dir}: no prompt folders found (expected NNNNN/metadata.jsonl and "
                         "NNNNN/samples/NNNN.png, as `stepwise generate` writes them)")
    for prompt_dir in prompt_dirs:
        index = int(prompt_dir.name)
        if not prompt_dir.is_dir():
            scan.problems.append(FolderProblem(prompt_dir, "a prompt folder name, but a file"))
            continue
        record = _folder_record(prompt_dir / METADATA_NAME, index, suite, scan.problems)
        samples_dir = prompt_dir / SAMPLES_DIR
        if not samples_dir.is_dir():
            scan.problems.append(FolderProblem(samples_dir, "missing samples/ folder"))
            continue
        samples = []
        for entry in samples_dir.iterdir():
            if entry.is_file() and SAMPLE_NAME.fullmatch(entry.name):
                samples.append(entry)
            else:
                scan.ignored.append(entry)
        if not samples:
            scan.problems.append(FolderProblem(samples_dir, "no NNNN.png sample images"))
        if record is None:
            continue
        for path in sorted(samples, key=lambda p: (int(p.stem), p.name)):
            scan.images.append(PromptImage(path, record, index))
    if suite is not None:
        covered = {image.prompt_index for image in scan.images}
        if len(covered) < len(suite.records):
            scan.notes.append(f"{image_dir}: images for {len(covered)} of the suite's {len(suite.records)} prompts; "
                              "figures over part of the suite are not comparable with the full suite's")
    return scan


def _folder_record(path: Path, index: int, suite: SuiteData | None, problems: list[FolderProblem]) -> Record | None:
    """The record in a prompt folder's metadata.jsonl, checked (and compared with the suite's); None on a problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.append(FolderProblem(path, "missing metadata.jsonl"))
        return None
    except UnicodeDecodeError:
        problems.append(FolderProblem(path, "not UTF-8 text"))
        return None
    except OSError as err:
        problems.append(FolderProblem(path, f"cannot read ({err.strerror})"))
        return None
    try:
        record = json.loads(text)
    except RecursionError:
        problems.append(FolderProblem(path, "JSON nested too deeply to read"))
        return None
    except json.JSONDecodeError as err:
        problems.append(FolderProblem(path, f"not one JSON object ({err.msg}, line {err.lineno})"))
        return None
    found = record_problems(record)
    if found:
        problems.append(FolderProblem(path, "not a GenEval 2 record: " + "; ".join(found)))
        return None
    if suite is not None:
        if index >= len(suite.records):
            problems.append(FolderProblem(path.parent, f"prompt {index} is not in the suite (prompts 0.."
                                                       f"{len(suite.records) - 1})"))
            return None
        expected = suite.records[index]
        if record != expected:
            differing = [k for k in dict.fromkeys([*expected, *record]) if record.get(k) != expected.get(k)]
            problems.append(FolderProblem(path, f"differs from prompt {index} of the suite in "
                                                f"{', '.join(repr(k) for k in differing)} (the suite's prompt is "
                                                f"{expected['prompt']!r})"))
            return None
    return record


def read_mapping(path: Path, suite: SuiteData) -> InputScan:
    """The reference's {prompt: image path} JSON, in the suite's order."""
    try:
        mapping = json.loads(path.read_bytes())
    except RecursionError:
        raise InputError(f"{path}: JSON nested too deeply to read") from None
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError, bad UTF-8
        raise InputError(f"{path}: not a JSON object of prompt -> image path ({err})") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(mapping, dict):
        raise InputError(f"{path}: expected a JSON object of prompt -> image path, got {type(mapping).__name__}")
    bad = [key for key, value in mapping.items() if not isinstance(value, str) or not value]
    if bad:
        raise InputError(f"{path}: the image path of prompt {bad[0]!r} is not a non-empty string "
                         f"({len(bad)} such entr{'y' if len(bad) == 1 else 'ies'})")
    missing = [r["prompt"] for r in suite.records if r["prompt"] not in mapping]
    if missing:
        shown = "; ".join(repr(p) for p in missing[:3]) + ("; ..." if len(missing) > 3 else "")
        raise InputError(f"{path}: no image path for {len(missing)} of the suite's {len(suite.records)} prompts "
                         f"({shown}); the reference needs one per prompt")
    scan = InputScan()
    for index, record in enumerate(suite.records):
        image = Path(mapping[record["prompt"]]).expanduser()
        if not image.is_file():
            scan.problems.append(FolderProblem(image, f"image of prompt {index} ({record['prompt']!r}) named in "
                                                      f"{path}: no such file"))
            continue
        scan.images.append(PromptImage(image, record, index))
    extra = len(mapping) - len(suite.records)
    if extra:
        scan.notes.append(f"{path}: {extra} entr{'y' if extra == 1 else 'ies'} for prompts outside the suite ignored")
    return scan


def load_image(path: Path) -> LoadedImage:
    """The image as transformers' `load_image` gives it to the reference's processor: EXIF-transposed RGB."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read ({err.strerror})") from None
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: corrupt or unreadable image (not a format PIL can identify)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"{path}: corrupt or unreadable image ({err})") from None
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"{path}: {err}") from None
    if image.width < 2 or image.height < 2:
        raise ImageDecodeError(f"{path}: image is too small ({image.width}x{image.height})")
    return LoadedImage(image=image, sha256=hashlib.sha256(data).hexdigest())
