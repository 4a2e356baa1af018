"""DPO preference pairs on disk: reading the JSONL file, checking its images, loading them.

One pair per line, as `stepwise curate` writes DIR/dpo.jsonl (see harness/curation.py):

    {"prompt": "a photo of a cup", "metadata": {...},
     "chosen": "/abs/path/<sha256>.png", "rejected": "/abs/path/<sha256>.png",
     "chosen_sha256": "...", "rejected_sha256": "...", "prompt_index": 12, ...}

"prompt", "chosen" and "rejected" are required (what the official train_dpo.py reads); the two
sha256 keys are checked when present, so an image replaced after curation is refused instead of
trained on. A relative image path is taken relative to the pairs file's folder. Other keys are
ignored. Every problem names the file (and line) it is about.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from PIL.Image import Image

__all__ = ["PairsError", "PreferencePair", "check_images", "load_image", "pixel_batch", "read_pairs"]


class PairsError(ValueError):
    """A pairs file, or an image it names, that cannot be trained on; the message names the file."""


@dataclass(frozen=True)
class PreferencePair:
    """One line of the pairs file."""

    line: int  # 1-based line number in the pairs file (for messages)
    index: int  # 0-based position among the pairs: seeds this pair's random draws
    prompt: str
    chosen: Path
    rejected: Path
    chosen_sha256: str | None
    rejected_sha256: str | None


def _path(value: Any, key: str, where: str, folder: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise PairsError(f"{where}: {key!r} must be an image path, got {value!r}")
    path = Path(value).expanduser()
    return path if path.is_absolute() else folder / path


def _sha256(value: Any, key: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise PairsError(f"{where}: {key!r} must be a lowercase hex sha256, got {value!r}")
    return value


def read_pairs(path: Path) -> list[PreferencePair]:
    """The pairs of a JSONL file, in file order; PairsError on a missing file or a malformed line."""
    from harness.jsonl import iter_json_lines

    if not path.is_file():
        raise PairsError(f"{path}: no such pairs file")
    pairs: list[PreferencePair] = []
    with open(path, encoding="utf-8") as handle:
        try:
            for line, record in iter_json_lines(handle, str(path)):
                where = f"{path}:{line}"
                if not isinstance(record, dict):
                    raise PairsError(f"{where}: expected a JSON object, got {type(record).__name__}")
                missing = [key for key in ("prompt", "chosen", "rejected") if key not in record]
                if missing:
                    raise PairsError(f"{where}: missing {', '.join(missing)}")
                if not isinstance(record["prompt"], str):
                    raise PairsError(f"{where}: 'prompt' must be a string, got {record['prompt']!r}")
                pairs.append(PreferencePair(
                    line=line, index=len(pairs), prompt=record["prompt"],
                    chosen=_path(record["chosen"], "chosen", where, path.parent),
                    rejected=_path(record["rejected"], "rejected", where, path.parent),
                    chosen_sha256=_sha256(record.get("chosen_sha256"), "chosen_sha256", where),
                    rejected_sha256=_sha256(record.get("rejected_sha256"), "rejected_sha256", where)))
        except PairsError:
            raise
        except UnicodeDecodeError as err:
            raise PairsError(f"{path}: not UTF-8 text ({err})") from None
        except ValueError as err:  # bad JSON, named by file and line
            raise PairsError(str(err)) from None
    if not pairs:
        raise PairsError(f"{path}: holds no pairs")
    return pairs


def load_image(path: Path, sha256: str | None, where: str = "") -> Image:
    """The RGB image at `path`, after checking its bytes against `sha256` (when given)."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    lead = f"{where}: " if where else ""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PairsError(f"{lead}image {path} does not exist") from None
    except OSError as err:
        raise PairsError(f"{lead}image {path} cannot be read ({err})") from None
    if sha256 is not None:
        found = hashlib.sha256(data).hexdigest()
        if found != sha256:
            raise PairsError(f"{lead}image {path} has sha256 {found}, the pairs file says {sha256}: it changed "
                             "after the pairs were made")
    try:
        with PILImage.open(io.BytesIO(data)) as image:
            return image.convert("RGB")  # convert() decodes the whole file: a truncated one fails here
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise PairsError(f"{lead}image {path} is not a readable image ({err})") from None


def check_images(pairs: Sequence[PreferencePair], source: Path) -> None:
    """Load every image once before training starts, so a bad one fails now and not hours in."""
    for pair in pairs:
        where = f"{source}:{pair.line}"
        load_image(pair.chosen, pair.chosen_sha256, where)
        load_image(pair.rejected, pair.rejected_sha256, where)


def pixel_batch(images: Sequence[Image], resolution: int, mean: Sequence[float],
                std: Sequence[float]) -> torch.Tensor:
    """(B, 3, resolution, resolution) float tensor: the official DPODataset's transform.

    Resize the short side to `resolution` (bicubic), centre-crop a square, scale to [0, 1], then
    normalise by `mean`/`std` (0.5/0.5 for Show-o: [-1, 1], what MAGVIT-v2 takes).
    """
    import torch
    from torchvision import transforms

    transform = transforms.Compose([
        transforms.Resize(resolution, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop((resolution, resolution)),
        transforms.ToTensor(),
        transforms.Normalize(mean=list(mean), std=list(std)),
    ])
    return torch.stack([transform(image) for image in images])
