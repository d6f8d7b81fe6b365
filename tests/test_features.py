"""ALIKED extraction into features.h5 on real photos."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from kornia.feature import ALIKED

from conftest import DEMO
from lightsfm import extract
from lightsfm.extractors import aliked
from lightsfm.images import load_image
from lightsfm.io import name_to_key
from lightsfm.weights import load_weights

NAMES = ["100_7100.JPG", "100_7101.JPG"]
CONF = {"max_keypoints": 512, "resize_max": 640}


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    out = tmp_path_factory.mktemp("feat")
    path, failed = extract.main(DEMO, NAMES, out, CONF)
    return path, failed


def test_shapes_and_coordinates(features):
    path, failed = features
    assert not failed
    assert path.name == "features-aliked-n16-k512-t0.01-r640-upright.h5"  # orientation detection is on by default
    with h5py.File(path) as f:
        for name in NAMES:
            g = f[name_to_key(name)]
            k, s, d = g["keypoints"][()], g["scores"][()], g["descriptors"][()]
            assert 100 < len(k) <= 512
            assert k.shape == (len(k), 2) and s.shape == (len(k),) and d.shape == (len(k), 128)
            assert np.allclose(np.linalg.norm(d.astype(np.float32), axis=1), 1, atol=1e-2)
            w, h = g["image_size"][()]
            assert (w, h) == (1600, 1202)
            # keypoints are in full-resolution pixels although found at 640 px
            assert k[:, 0].max() > 640 and k[:, 0].max() < w and k[:, 1].min() >= 0


def test_second_run_skips_finished_images(features, monkeypatch):
    path, _ = features
    before = path.stat().st_mtime_ns

    def refuse(*a, **k):
        raise AssertionError("the model was loaded although every image was done")

    monkeypatch.setattr(aliked.AlikedExtractor, "_init", refuse)
    path2, _ = extract.main(DEMO, NAMES, path.parent, CONF)
    assert path2 == path and path.stat().st_mtime_ns == before


def test_bad_image_is_skipped_others_go_on(tmp_path):
    (tmp_path / "broken.jpg").write_bytes((DEMO / NAMES[0]).read_bytes()[:2000])
    (tmp_path / NAMES[0]).write_bytes((DEMO / NAMES[0]).read_bytes())
    path, failed = extract.main(tmp_path, ["broken.jpg", NAMES[0]], tmp_path, CONF)
    assert list(failed) == ["broken.jpg"] and "cannot be" in failed["broken.jpg"]
    with h5py.File(path) as f:
        assert list(f.keys()) == [name_to_key(NAMES[0])]
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("model", ["aliked-n16", "aliked-t16"])
def test_sparse_forward_equals_kornias(model):
    """Our forward (no full-resolution feature map, folded batch norms, row-gathering
    deformable convolutions) against kornia's own: same keypoints, same descriptors."""
    ex = aliked.AlikedExtractor({"model": model, "max_keypoints": 512})
    rgb, _ = load_image(DEMO / NAMES[0], 500)  # 500 × 375: padding on both axes
    ours = ex(rgb)
    kornia_model = ALIKED(model_name=model, max_num_keypoints=512, detection_threshold=0.01, nms_radius=2)
    load_weights(kornia_model, model)
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div(255)
    with torch.inference_mode():
        ref = kornia_model(x)[0]
    k_ref = ref.keypoints.numpy()
    # the same set (ties in score may come in another order)
    dist = np.linalg.norm(k_ref[:, None] - ours["keypoints"][None], axis=-1)
    assert len(ours["keypoints"]) == len(k_ref) == 512
    assert dist.min(axis=1).max() < 1e-3
    j = dist.argmin(axis=1)
    assert np.abs(ref.keypoint_scores.numpy() - ours["scores"][j]).max() < 1e-4
    cos = (ref.descriptors.numpy() * ours["descriptors"][j]).sum(axis=1)
    assert cos.min() > 0.9999


def test_an_image_without_keypoints_gives_empty_features():
    ex = aliked.AlikedExtractor({"max_keypoints": 512})
    out = ex(np.zeros((64, 64, 3), np.uint8))
    assert out["keypoints"].shape == (0, 2) and out["descriptors"].shape == (0, 128) and len(out["scores"]) == 0
