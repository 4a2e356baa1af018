"""Opening image files that may come from anyone: the size is checked before any pixel is decoded.

A PNG header can claim 100,000 x 100,000 pixels in a few hundred bytes (a decompression bomb):
decoding it would take 30 GB. Pillow refuses past twice its `MAX_IMAGE_PIXELS` with its own
exception, which names no file; here every image is refused past `MAX_PIXELS` with a
`ImageFileError` (a ValueError) that names the file and its claimed size, so `--on-error skip`,
the folder generator and the leaderboard treat it as the bad input it is.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["MAX_PIXELS", "ImageFileError", "check_png", "check_size", "decoded", "image_size", "open_image",
           "png_size"]

# 8192 x 8192: far above any generated image (GenEval's are 512 or 1024 px), far below a bomb.
MAX_PIXELS = 8192 * 8192


class ImageFileError(ValueError):
    """An image file that cannot be used: unreadable, corrupt, or claiming too many pixels."""


def check_size(width: int, height: int, where: str) -> None:
    """ImageFileError when a header claims more than MAX_PIXELS (or no pixels at all)."""
    if width <= 0 or height <= 0 or width * height > MAX_PIXELS:
        raise ImageFileError(f"{where}: the image claims {width} x {height} pixels; at most {MAX_PIXELS} "
                             "(8192 x 8192) are decoded (a decompression bomb?)")


def png_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG's IHDR chunk (bytes 16..24), read before Pillow sees the file; None
    when `data` is not a PNG with an IHDR first."""
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def check_png(data: bytes, where: str) -> None:
    """ImageFileError when a PNG's header claims more than MAX_PIXELS (see `check_size`)."""
    size = png_size(data)
    if size is not None:
        check_size(*size, where)


def open_image(source: Path | bytes, where: str | None = None) -> Image:
    """The image in `source` (a path or its bytes), opened lazily with its size checked: the caller
    decodes it (`.load()`, `.convert()`) inside a `with`. ImageFileError names `where` (or the path)."""
    from PIL import Image, UnidentifiedImageError

    name = where or str(source if isinstance(source, Path) else "<image>")
    try:
        data = source if isinstance(source, bytes) else source.read_bytes()
    except OSError as err:
        raise ImageFileError(f"{name}: cannot read ({err.strerror})") from None
    check_png(data, name)  # before Pillow: its own bomb check names no file and no size
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageFileError(f"{name}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageFileError(f"{name}: not a readable image ({err})") from None
    try:
        check_size(*image.size, name)
    except ImageFileError:
        image.close()
        raise
    return image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it; ImageFileError naming the file."""
    with open_image(path) as image:
        return image.size


def decoded(image: Any, where: str) -> Any:
    """`image.load()`, with what a truncated or corrupt file raises turned into ImageFileError."""
    from PIL import Image

    try:
        image.load()
    except Image.DecompressionBombError as err:
        raise ImageFileError(f"{where}: {err}") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise ImageFileError(f"{where}: corrupt or unreadable image ({err})") from None
    return image
