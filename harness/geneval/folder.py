"""GenEval's image-folder layout, read strictly, and image decoding.

    IMAGE_DIR/00000/metadata.jsonl      one GenEval metadata object
    IMAGE_DIR/00000/samples/0000.png    the generated samples
    IMAGE_DIR/00000/process/...         optional (previews; ignored by the evaluator)

GenEval lists folders with `os.listdir` (arbitrary order); we sort numerically so that
results come out in a stable order. Unexpected files are reported, not silently skipped.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.geneval.rules import check_metadata

SAMPLE_NAME = re.compile(r"\d+\.png")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class SampleImage:
    """One image to evaluate, with the metadata of its prompt folder."""

    path: Path
    metadata: dict[str, Any]
    prompt_index: int


@dataclass(frozen=True)
class FolderProblem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class FolderScan:
    samples: list[SampleImage] = field(default_factory=list)
    problems: list[FolderProblem] = field(default_factory=list)  # errors: --on-error decides
    ignored: list[Path] = field(default_factory=list)  # files GenEval would skip too


def scan_image_folder(image_dir: Path) -> FolderScan:
    """Find every sample image and its metadata; collect problems instead of stopping at the first."""
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir}: not a directory")
    scan = FolderScan()
    prompt_dirs = sorted(
        (p for p in image_dir.iterdir() if p.is_dir() and p.name.isdigit()),
        key=lambda p: (int(p.name), p.name),
    )
    if not prompt_dirs:
        raise ValueError(
            f"{image_dir}: no GenEval prompt folders found (expected NNNNN/metadata.jsonl and "
            "NNNNN/samples/NNNN.png, as written by `stepwise generate` or GenEval's generation scripts)"
        )
    for prompt_dir in prompt_dirs:
        _scan_prompt_dir(prompt_dir, scan)
    return scan


def _scan_prompt_dir(prompt_dir: Path, scan: FolderScan) -> None:
    metadata_path = prompt_dir / "metadata.jsonl"
    try:
        metadata = read_prompt_metadata(metadata_path)
    except ValueError as err:
        scan.problems.append(FolderProblem(metadata_path, str(err)))
        return
    samples_dir = prompt_dir / "samples"
    if not samples_dir.is_dir():
        scan.problems.append(FolderProblem(samples_dir, "missing samples/ folder"))
        return
    images = []
    for entry in samples_dir.iterdir():
        if entry.is_file() and SAMPLE_NAME.fullmatch(entry.name):
            images.append(entry)
        else:
            scan.ignored.append(entry)
    if not images:
        scan.problems.append(FolderProblem(samples_dir, "no NNNN.png sample images"))
    for path in sorted(images, key=lambda p: (int(p.stem), p.name)):
        scan.samples.append(SampleImage(path, metadata, int(prompt_dir.name)))


def read_prompt_metadata(path: Path) -> dict[str, Any]:
    """The single metadata object of a prompt folder (GenEval reads it with `json.load`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError("missing metadata.jsonl") from None
    except UnicodeDecodeError:
        raise ValueError("metadata.jsonl is not UTF-8 text") from None
    if not text.strip():
        raise ValueError("metadata.jsonl is empty: it holds the prompt's GenEval metadata object")
    try:
        metadata = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"metadata.jsonl is not one JSON object ({err.msg}, line {err.lineno})") from None
    except RecursionError:
        raise ValueError("metadata.jsonl is JSON nested too deeply to read (thousands of levels)") from None
    problems = check_metadata(metadata)
    if problems:
        raise ValueError("invalid metadata: " + "; ".join(problems))
    return metadata


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray  # uint8 (H, W, 3), EXIF orientation applied
    sha256: str


class ImageDecodeError(ValueError):
    pass


def decode_image(path: Path) -> DecodedImage:
    """Read a sample as GenEval's pipeline sees it: RGB, 8 bits, EXIF orientation applied.

    GenEval opens samples with `ImageOps.exif_transpose(Image.open(...)).convert("RGB")`
    for the colour crops (alpha dropped, not composited). We feed the same array to the
    detector too, so boxes and masks always match the crops. 16-bit images are reduced to
    8 bits by dropping the low byte, as OpenCV (mmcv's reader) does; Pillow's own
    conversion would clip them instead.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    from harness.images import ImageFileError, check_png, check_size

    data = _read_bytes(path)
    if not data.startswith(PNG_SIGNATURE):
        raise ImageDecodeError(f"{path}: not a PNG file (GenEval samples are NNNN.png)")
    try:
        check_png(data, str(path))  # from the header bytes: a decompression bomb is never handed to Pillow
        import io

        with Image.open(io.BytesIO(data)) as image:
            check_size(*image.size, str(path))  # from the header: a decompression bomb is never decoded
            image.load()
            image = ImageOps.exif_transpose(image)
            rgb = _to_rgb8(image)
    except ImageFileError as err:
        raise ImageDecodeError(str(err)) from None
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(f"{path}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageDecodeError(f"{path}: corrupt or unreadable PNG ({err})") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise ImageDecodeError(f"{path}: image is too small ({rgb.shape[1]}x{rgb.shape[0]})")
    return DecodedImage(rgb=rgb, sha256=hashlib.sha256(data).hexdigest())


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ImageDecodeError(f"{path}: cannot read ({err.strerror})") from None


def _to_rgb8(image: Any) -> np.ndarray:
    from PIL import Image

    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        wide = np.asarray(image, dtype=np.uint32)
        # 16-bit data sits in the low 16 bits of mode "I" too; keep its high byte.
        gray = (wide >> 8).clip(0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[..., None], 3, axis=2))
    if image.mode == "RGB":
        return np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
    if image.mode in ("F",):
        raise ValueError("floating-point images are not supported")
    converted: Image.Image = image.convert("RGB")
    return np.ascontiguousarray(np.asarray(converted, dtype=np.uint8))
