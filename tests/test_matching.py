"""LightGlue on real features: overlapping pairs match, unrelated ones hardly do."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import FOUNTAIN, TEMPLE
from lightsfm import matching
from lightsfm.features import aliked
from lightsfm.io import pair_to_key
from lightsfm.matching import lightglue

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    out = tmp_path_factory.mktemp("match")
    conf = {"max_keypoints": 1024, "resize_max": 640}
    # Two folders into one features file: link the images side by side.
    imgs = out / "imgs"
    imgs.mkdir()
    for src in [TEMPLE / "templeSR0001.png", TEMPLE / "templeSR0002.png", FOUNTAIN / "0000.jpg"]:
        (imgs / src.name).symlink_to(src)
    path, _ = aliked.main(imgs, ["templeSR0001.png", "templeSR0002.png", "0000.jpg"], out, conf)
    return out, path


def test_overlapping_pair_has_more_matches(feats):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "templeSR0001.png")]
    mpath = matching.main(pairs, fpath, out)
    with h5py.File(mpath) as f:
        good = (f[pair_to_key(*pairs[0])]["matches0"][()] > -1).sum()
        bad = (f[pair_to_key(*pairs[1])]["matches0"][()] > -1).sum()
    assert good > 200
    assert good > 5 * bad


def test_finished_pairs_are_skipped(feats, monkeypatch):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png")]
    matching.main(pairs, fpath, out)

    def refuse(*a, **k):
        raise AssertionError("LightGlue was loaded although the pair was done")

    monkeypatch.setattr(lightglue, "LightGlueMatcher", refuse)
    # also in the other order
    matching.main([("templeSR0002.png", "templeSR0001.png")], fpath, out)


def test_mutual_nn_matcher_plugs_in(feats):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "templeSR0001.png")]
    mpath = matching.main(pairs, fpath, out, {"model": "mnn"})
    assert mpath.name.endswith("-mnn.h5")
    with h5py.File(mpath) as f:
        m_good = f[pair_to_key(*pairs[0])]["matches0"][()]
        m_bad = f[pair_to_key(*pairs[1])]["matches0"][()]
    assert (m_good > -1).sum() > 3 * (m_bad > -1).sum()
    valid = m_good[m_good > -1]
    assert len(np.unique(valid)) == len(valid)  # mutual: each keypoint of image 1 used once
