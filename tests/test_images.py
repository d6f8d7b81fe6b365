"""Reading photos: orientation, EXIF focal, odd formats and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO
from lightsfm.errors import ImageError, LightsfmError
from lightsfm.images import list_images, load_image, read_info, read_infos


def _jpeg_with_orientation(path, orientation, size=(200, 100)):
    im = Image.new("RGB", size, (200, 10, 10))
    im.paste((10, 200, 10), (0, 0, size[0] // 2, size[1] // 2))  # marks the top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    im.save(path, exif=exif)


def test_exif_orientation_is_applied(tmp_path):
    _jpeg_with_orientation(tmp_path / "rot.jpg", 6)
    info = read_info(tmp_path, "rot.jpg")
    assert (info.width, info.height) == (100, 200)
    rgb, size = load_image(tmp_path / "rot.jpg")
    assert rgb.shape == (200, 100, 3) and size == (100, 200)
    # orientation 6 = rotate 90° clockwise to display: the green corner goes top-right
    assert rgb[5, 95, 1] > 150 and rgb[5, 5, 0] > 150


def test_exif_focal_prior_from_demo_photo():
    info = read_info(DEMO, "100_7100.JPG")
    assert info.make.startswith("EASTMAN KODAK")
    # 35 mm equivalent 35 mm → 35/36 of the long side
    assert info.focal_px == pytest.approx(35 / 36 * 1600, rel=1e-3)


def test_a_cropped_photo_loses_its_focal_prior_and_a_resized_one_keeps_it(tmp_path):
    """EXIF gives the focal of the whole frame the camera took (2832x2128 here): it still fits
    a resized copy, not a crop of another shape."""
    im = Image.open(DEMO / "100_7100.JPG")
    exif = im.getexif()
    im.resize((800, 601)).save(tmp_path / "resized.jpg", exif=exif)
    im.crop((200, 0, 1400, 1202)).save(tmp_path / "cropped.jpg", exif=exif)
    resized, cropped = read_info(tmp_path, "resized.jpg"), read_info(tmp_path, "cropped.jpg")
    assert resized.focal_px == pytest.approx(35 / 36 * 800, rel=1e-3)
    assert cropped.focal_px is None and cropped.make.startswith("EASTMAN KODAK")
    assert cropped.cropped and not resized.cropped
    # two crops of one size (at different places: different principal points) are two cameras
    im.crop((0, 0, 1200, 1202)).save(tmp_path / "cropped2.jpg", exif=exif)
    assert read_info(tmp_path, "cropped2.jpg").camera_key != cropped.camera_key


@pytest.mark.parametrize(
    "mode,make",
    [
        ("L", lambda: Image.new("L", (80, 70), 128)),
        ("RGBA", lambda: Image.new("RGBA", (80, 70), (255, 0, 0, 0))),
        ("I;16", lambda: Image.fromarray(np.full((70, 80), 65535, np.uint16))),
        ("P", lambda: Image.new("RGB", (80, 70), (1, 2, 3)).convert("P")),
    ],
)
def test_odd_pixel_formats_become_rgb8(tmp_path, mode, make):
    make().save(tmp_path / "x.png")
    rgb, size = load_image(tmp_path / "x.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (70, 80, 3) and size == (80, 70)
    if mode == "I;16":
        assert rgb.max() == 255
    if mode == "RGBA":
        assert rgb.max() == 0  # fully transparent → black


def test_cmyk_jpeg(tmp_path):
    Image.new("CMYK", (90, 90), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
    rgb, _ = load_image(tmp_path / "c.jpg")
    assert rgb.shape == (90, 90, 3) and rgb[..., 0].mean() > 200


def test_resize_keeps_original_size(tmp_path):
    Image.new("RGB", (3000, 1000)).save(tmp_path / "big.jpg")
    rgb, size = load_image(tmp_path / "big.jpg", 600)
    assert max(rgb.shape[:2]) == 600 and size == (3000, 1000)


def test_bad_files_get_one_line_reasons(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    Image.new("RGB", (32, 32)).save(tmp_path / "tiny.png")
    Image.new("RGB", (400, 300)).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 3])
    infos, skipped = read_infos(tmp_path, list_images(tmp_path))
    # the whole file is decoded (at reduced size) when read: truncation shows there
    assert {i.name for i in infos} == {"good.jpg"}
    assert set(skipped) == {"text.jpg", "empty.png", "tiny.png", "trunc.jpg"}
    assert "too small" in skipped["tiny.png"]
    assert "truncated" in skipped["trunc.jpg"]
    with pytest.raises(ImageError, match="trunc.jpg: cannot be decoded"):
        load_image(tmp_path / "trunc.jpg")
    assert all("\n" not in r for r in skipped.values())


def test_empty_folder_and_missing_folder(tmp_path):
    with pytest.raises(LightsfmError, match="no images found"):
        list_images(tmp_path)
    with pytest.raises(LightsfmError, match="not a folder"):
        list_images(tmp_path / "nope")


def test_nested_names_are_relative(tmp_path):
    (tmp_path / "a b").mkdir()
    Image.new("RGB", (100, 100)).save(tmp_path / "a b" / "é.png")
    assert list_images(tmp_path) == ["a b/é.png"]
