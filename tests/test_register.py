"""Adding photos to a finished model: the new ones register, the old poses stay put."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import FOUNTAIN
from lightsfm import colmap, config, pipeline, register
from lightsfm.errors import LightsfmError

pytestmark = pytest.mark.data
FIRST = [f"{i:04d}.jpg" for i in range(7)]
LATER = [f"{i:04d}.jpg" for i in range(7, 11)]


def test_new_photos_register_into_the_fixed_model(tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    for folder, names in ((first, FIRST), (later, LATER)):
        folder.mkdir()
        for n in names:
            (folder / n).symlink_to(FOUNTAIN / n)
    conf = config.load(overrides={"features": {"max_keypoints": 1024, "resize_max": 480}})
    out = tmp_path / "out"
    before = pipeline.reconstruct(first, out, conf).models[0]
    old = {im.name: im.cam_from_world().matrix() for im in before.images.values() if im.has_pose}
    assert len(old) == len(FIRST)

    record = register.main(out, later)
    assert set(record["added"]) == {f"later/{n}" for n in LATER}
    assert len(record["registered"]) >= 3, record
    grown = colmap.read_model(out / "sparse" / "0")
    poses = {im.name: im.cam_from_world().matrix() for im in grown.images.values() if im.has_pose}
    for name, pose in old.items():  # held fixed
        assert np.abs(poses[name] - pose).max() < 1e-9
    assert set(record["registered"]) <= set(poses)
    with pytest.raises(LightsfmError, match="no photo that the model does not already have"):
        register.main(out, later)


def test_refine_all_adjusts_the_whole_grown_model(tmp_path):
    first, later = tmp_path / "first", tmp_path / "later"
    for folder, names in ((first, FIRST), (later, LATER)):
        folder.mkdir()
        for n in names:
            (folder / n).symlink_to(FOUNTAIN / n)
    conf = config.load(overrides={"features": {"max_keypoints": 1024, "resize_max": 480}})
    out = tmp_path / "out"
    before = pipeline.reconstruct(first, out, conf).models[0]
    old = {im.name: im.cam_from_world().matrix() for im in before.images.values() if im.has_pose}
    record = register.main(out, later, refine_all=True)
    grown = colmap.read_model(out / "sparse" / "0")
    poses = {im.name: im.cam_from_world().matrix() for im in grown.images.values() if im.has_pose}
    # the old poses moved with the rest (the gauge held by three points, not by them) ...
    assert max(np.abs(poses[n] - p).max() for n, p in old.items()) > 1e-6
    # ... and the principal-point rule saw the grown camera: 7 views before, all 11 now
    (decision,) = record["refined_all"]["principal_points"]["cameras"].values()
    assert decision["views"] == len(poses) >= 10
    assert grown.compute_mean_reprojection_error() < 1.5
