"""Masks: no keypoints where a mask says ignore, in extraction and turn detection, from a
masks folder (COLMAP's convention) or the photos' alpha; a changed mask recomputes."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import TEMPLE
from lightsfm import extract, masks, pipeline
from lightsfm.errors import ImageError, LightsfmError
from lightsfm.io import name_to_key

pytestmark = pytest.mark.data
BOX = (slice(120, 360), slice(160, 480))  # rows, columns of the 640×480 temple photos


def _photos(tmp_path, n=3):
    names = sorted(os.listdir(TEMPLE))[:n]
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in names:
        (folder / name).symlink_to(TEMPLE / name)
    return folder, names


def _mask_folder(tmp_path, names, rgba=False):
    folder = tmp_path / "masks"
    folder.mkdir(exist_ok=True)
    for name in names:
        keep = np.full((480, 640), 255, np.uint8)
        keep[BOX] = 0
        im = Image.fromarray(np.dstack([keep * 0 + 128] * 3 + [keep])) if rgba else Image.fromarray(keep)
        im.save(folder / f"{name}.png")
    return folder


def _keypoints(path, name):
    with h5py.File(path, "r") as f:
        return f[name_to_key(name)]["keypoints"][()]


def _in_box(kpts):
    x, y = np.round(kpts[:, 0]), np.round(kpts[:, 1])
    return (y >= BOX[0].start) & (y < BOX[0].stop) & (x >= BOX[1].start) & (x < BOX[1].stop)


@pytest.mark.parametrize("rgba", [False, True])
def test_masked_pixels_get_no_keypoints(tmp_path, rgba):
    photos, names = _photos(tmp_path)
    conf = {"max_keypoints": 512, "masks": str(_mask_folder(tmp_path, names, rgba))}
    for d in ("plain", "masked"):
        (tmp_path / d).mkdir()
    plain, _ = extract.main(photos, names, tmp_path / "plain", {"max_keypoints": 512})
    masked, failed = extract.main(photos, names, tmp_path / "masked", conf)
    assert not failed and masked.name != plain.name  # the masks are part of the file's name
    for name in names:
        assert _in_box(_keypoints(plain, name)).sum() > 100  # the temple sits in the box
        kpts = _keypoints(masked, name)
        assert not _in_box(kpts).any() and len(kpts) > 20
    # turn detection saw the masks too (its record names them)
    assert masks.fingerprint(conf["masks"]) in (tmp_path / "masked" / "orientation.json").read_text()


def test_photo_alpha_and_a_changed_mask(tmp_path):
    photos, names = _photos(tmp_path, 2)
    rgba = tmp_path / "rgba"
    rgba.mkdir()
    for name in names:
        rgb = np.asarray(Image.open(photos / name).convert("RGB"))
        alpha = np.full(rgb.shape[:2], 255, np.uint8)
        alpha[BOX] = 0
        Image.fromarray(np.dstack([rgb, alpha])).save(rgba / name)
    (tmp_path / "alpha").mkdir()
    conf = {"max_keypoints": 512, "masks": "alpha", "upright": False}
    feats, _ = extract.main(rgba, names, tmp_path / "alpha", conf)
    assert all(not _in_box(_keypoints(feats, n)).any() for n in names)

    folder = _mask_folder(tmp_path, names)
    before = extract.feature_path(tmp_path, {"masks": str(folder)})
    keep = np.full((480, 640), 255, np.uint8)
    Image.fromarray(keep).save(folder / f"{names[0]}.png")  # one mask changes
    assert extract.feature_path(tmp_path, {"masks": str(folder)}) != before


def test_bad_masks_are_one_line_errors(tmp_path):
    photos, names = _photos(tmp_path, 2)
    folder = tmp_path / "masks"
    folder.mkdir()
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(folder / f"{names[0]}.png")
    with pytest.raises(ImageError, match=rf"{names[0]}.png: mask is 100×100, its photo 640×480"):
        masks.load(str(folder), photos, names[0], (640, 480))
    (folder / f"{names[1]}.png").write_bytes(b"not a png")
    with pytest.raises(ImageError, match="mask cannot be read"):
        masks.load(str(folder), photos, names[1], (640, 480))
    with pytest.raises(LightsfmError, match="masks folder not found"):
        pipeline.reconstruct(photos, tmp_path / "out", {"features": {"masks": str(tmp_path / "nowhere")}})
