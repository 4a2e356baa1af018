import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.geneval.folder import ImageDecodeError, decode_image, scan_image_folder

META = {"tag": "single_object", "include": [{"class": "cup", "count": 1}], "prompt": "a photo of a cup"}


def make_prompt_dir(root: Path, index: int, metadata: object = META, n_images: int = 2) -> Path:
    folder = root / f"{index:05d}"
    (folder / "samples").mkdir(parents=True)
    (folder / "metadata.jsonl").write_text(json.dumps(metadata))
    for i in range(n_images):
        Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(folder / "samples" / f"{i:04d}.png")
    return folder


def test_scan_sorts_numerically_and_reports_ignored_files(tmp_path: Path) -> None:
    for index in (10, 2, 1):
        make_prompt_dir(tmp_path, index)
    (tmp_path / "00002" / "samples" / "grid.jpg").write_bytes(b"x")
    (tmp_path / "notes").mkdir()
    scan = scan_image_folder(tmp_path)
    assert [(s.prompt_index, s.path.name) for s in scan.samples] == [
        (1, "0000.png"), (1, "0001.png"), (2, "0000.png"), (2, "0001.png"), (10, "0000.png"), (10, "0001.png")]
    assert [p.name for p in scan.ignored] == ["grid.jpg"]
    assert scan.problems == []


def test_empty_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no GenEval prompt folders found"):
        scan_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        scan_image_folder(tmp_path / "missing")


@pytest.mark.parametrize("content,message", [
    (None, "missing metadata.jsonl"),
    ("{not json", "is not one JSON object"),
    ('{"tag": "counting", "prompt": "x", "include": [{"class": "cup", "count": "two"}]}', "'count' must be"),
    ('{"tag": "position", "prompt": "x", "include": [{"class": "cup", "count": 1, "position": ["near", 0]}]}',
     "'position' must be"),
    ('[1, 2]', "metadata must be a JSON object"),
])
def test_bad_metadata_is_reported_per_folder(tmp_path: Path, content: str | None, message: str) -> None:
    make_prompt_dir(tmp_path, 0)
    bad = make_prompt_dir(tmp_path, 1)
    if content is None:
        (bad / "metadata.jsonl").unlink()
    else:
        (bad / "metadata.jsonl").write_text(content)
    scan = scan_image_folder(tmp_path)
    assert len(scan.samples) == 2  # the good folder is still there
    assert len(scan.problems) == 1
    assert scan.problems[0].path == bad / "metadata.jsonl"
    assert message in scan.problems[0].message


def test_missing_samples_folder_and_empty_samples(tmp_path: Path) -> None:
    folder = make_prompt_dir(tmp_path, 0, n_images=0)
    scan = scan_image_folder(tmp_path)
    assert "no NNNN.png sample images" in str(scan.problems[0])
    (folder / "samples").rmdir()
    scan = scan_image_folder(tmp_path)
    assert "missing samples/ folder" in str(scan.problems[0])


def test_modes_decode_to_rgb8(tmp_path: Path) -> None:
    gray = tmp_path / "gray.png"
    Image.new("L", (8, 6), 200).save(gray)
    rgba = tmp_path / "rgba.png"
    Image.new("RGBA", (8, 6), (10, 20, 30, 0)).save(rgba)
    wide = tmp_path / "wide.png"
    Image.fromarray(np.full((6, 8), 0xABCD, dtype=np.uint16)).save(wide)
    palette = tmp_path / "p.png"
    Image.new("RGB", (8, 6), (1, 2, 3)).convert("P", palette=Image.Palette.ADAPTIVE).save(palette)
    for path, expected in [(gray, (200, 200, 200)), (rgba, (10, 20, 30)), (wide, (0xAB, 0xAB, 0xAB)),
                           (palette, (1, 2, 3))]:
        decoded = decode_image(path)
        assert decoded.rgb.dtype == np.uint8 and decoded.rgb.shape == (6, 8, 3), path
        assert tuple(decoded.rgb[0, 0]) == expected, path


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "rotated.png"
    image = Image.new("RGB", (20, 10), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    image.save(path, exif=exif)
    assert decode_image(path).rgb.shape == (20, 10, 3)


def test_hash_is_of_the_file_bytes(tmp_path: Path) -> None:
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(a)
    b.write_bytes(a.read_bytes())
    assert decode_image(a).sha256 == decode_image(b).sha256
    Image.new("RGB", (8, 8), (1, 2, 4)).save(b)
    assert decode_image(a).sha256 != decode_image(b).sha256


@pytest.mark.parametrize("data,message", [
    (b"", "not a PNG file"),
    (b"GIF89a....", "not a PNG file"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "corrupt or unreadable PNG"),
])
def test_corrupt_files_name_the_file(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "0000.png"
    path.write_bytes(data)
    with pytest.raises(ImageDecodeError, match=message) as info:
        decode_image(path)
    assert str(path) in str(info.value)


def test_truncated_png_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "0000.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ImageDecodeError, match="corrupt or unreadable PNG"):
        decode_image(path)
