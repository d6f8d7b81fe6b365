"""RANSAC keeps the matches that fit one epipolar geometry and rejects planted outliers."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from lightsfm.verify import ransac_fundamental


def _project(K, R, t, X):
    x = (K @ (R @ X.T + t[:, None])).T
    return x[:, :2] / x[:, 2:]


def test_magsac_rejects_planted_outliers():
    rng = np.random.default_rng(0)
    K = np.array([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]])
    X = rng.uniform([-2, -2, 6], [2, 2, 10], size=(300, 3))
    a = np.radians(8)
    R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    p0 = _project(K, np.eye(3), np.zeros(3), X) + rng.normal(0, 0.3, (300, 2))
    p1 = _project(K, R, np.array([-1.0, 0.1, 0]), X) + rng.normal(0, 0.3, (300, 2))
    out = 150  # a third of the matches are wrong
    q0 = np.vstack([p0, rng.uniform([0, 0], [640, 480], (out, 2))])
    q1 = np.vstack([p1, rng.uniform([0, 0], [640, 480], (out, 2))])
    F, inl = ransac_fundamental(q0, q1, threshold=1.0)
    assert F is not None
    assert inl[:300].mean() > 0.9  # true matches kept
    assert inl[300:].mean() < 0.1  # planted outliers rejected


def test_too_few_matches():
    F, inl = ransac_fundamental(np.zeros((5, 2)), np.zeros((5, 2)), 1.0)
    assert F is None and not inl.any()


@pytest.mark.data
@pytest.mark.parametrize("method", ["magsac", "colmap"])
def test_both_verifiers_fill_the_database(temple_run, tmp_path, method):
    from conftest import TEMPLE
    from lightsfm import verify
    from lightsfm.images import list_images, read_infos
    from lightsfm.pairs import read_pairs

    out, _, _ = temple_run
    scene = out / "middlebury" / "templeSparseRing"
    infos, _ = read_infos(TEMPLE, list_images(TEMPLE))
    pair_list = read_pairs(scene / "pairs-exhaustive-prematch25.txt")  # pairs the pre-matching kept
    assert 20 <= len(pair_list) < 120
    stats = verify.main(
        infos,
        pair_list,
        next(scene.glob("features-*.h5")),
        next(scene.glob("matches-*.h5")),
        tmp_path / "db.db",
        {"method": method},
    )
    assert stats["pairs"] == len(pair_list) and 20 <= stats["verified"] <= len(pair_list)
    db = pycolmap.Database.open(tmp_path / "db.db")
    assert db.num_verified_image_pairs() == stats["verified"] and db.num_images() == 16
    db.close()
