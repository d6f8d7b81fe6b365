"""A feature ensemble (ALIKED + DISK, each matched on its own) merged before verification."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import FOUNTAIN
from lightsfm import config, pipeline
from lightsfm.io import name_to_key, pair_to_key

pytestmark = pytest.mark.data
NAMES = ["0003.jpg", "0004.jpg", "0005.jpg", "0006.jpg"]


def test_aliked_and_disk_merge_into_one_model(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for n in NAMES:
        (images / n).symlink_to(FOUNTAIN / n)
    conf = config.load(
        overrides={
            "features": {"ensemble": "disk", "max_keypoints": 512, "resize_max": 320, "upright": False},
            "mapping": {"init_min_tri_angle": 4.0},
        },
    )
    out = tmp_path / "out"
    result = pipeline.reconstruct(images, out, conf)
    files = result.stats["files"]
    assert files["features"] == "features-aliked-n16-k512-t0.01-r320+disk-k512-t0-w5-r320.h5"
    assert files["matches"].endswith("-ensemble.h5")
    with (
        h5py.File(out / "features-aliked-n16-k512-t0.01-r320.h5") as fa,
        h5py.File(out / "features-disk-k512-t0-w5-r320.h5") as fd,
        h5py.File(out / files["features"]) as fm,
        h5py.File(out / files["matches"]) as mm,
        h5py.File(out / "matches-disk-k512-t0-w5-r320-hybrid.h5") as md,
    ):
        a, b = NAMES[0], NAMES[1]
        na, nd = len(fa[name_to_key(a)]["keypoints"]), len(fd[name_to_key(a)]["keypoints"])
        merged = fm[name_to_key(a)]["keypoints"][()]
        assert len(merged) == na + nd  # ALIKED's keypoints, then DISK's
        assert np.array_equal(merged[na:], fd[name_to_key(a)]["keypoints"][()])
        m0 = mm[pair_to_key(a, b)]["matches0"][()]
        # DISK's matches, shifted past ALIKED's keypoints in both images
        nb = len(fa[name_to_key(b)]["keypoints"])
        disk = md[pair_to_key(a, b)]["matches0"][()]
        assert np.array_equal(m0[na:], np.where(disk > -1, disk + nb, -1))
        assert (m0[:na] > -1).sum() > 50 and (m0[na:] > -1).sum() > 50
    assert result.models and result.models[0].num_reg_images() == len(NAMES)
