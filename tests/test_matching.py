"""Matchers on real features: overlapping pairs match, unrelated ones hardly do; LightGlue goes where MNN is weak."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import FOUNTAIN, TEMPLE
from lightsfm import matching
from lightsfm.features import aliked
from lightsfm.io import pair_to_key
from lightsfm.matching import hybrid, lightglue

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def feats(tmp_path_factory):
    out = tmp_path_factory.mktemp("match")
    conf = {"max_keypoints": 1024, "resize_max": 640}
    # Two folders into one features file: link the images side by side.
    imgs = out / "imgs"
    imgs.mkdir()
    for src in [TEMPLE / "templeSR0001.png", TEMPLE / "templeSR0002.png", FOUNTAIN / "0000.jpg", FOUNTAIN / "0001.jpg"]:
        (imgs / src.name).symlink_to(src)
    path, _ = aliked.main(imgs, ["templeSR0001.png", "templeSR0002.png", "0000.jpg", "0001.jpg"], out, conf)
    return out, path


def test_overlapping_pair_has_more_matches(feats):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "templeSR0001.png")]
    mpath = matching.main(pairs, fpath, out, {"model": "lightglue"})
    with h5py.File(mpath) as f:
        good = (f[pair_to_key(*pairs[0])]["matches0"][()] > -1).sum()
        bad = (f[pair_to_key(*pairs[1])]["matches0"][()] > -1).sum()
    assert good > 200
    assert good > 5 * bad


def test_finished_pairs_are_skipped(feats, monkeypatch):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png")]
    matching.main(pairs, fpath, out, {"model": "lightglue"})

    def refuse(*a, **k):
        raise AssertionError("LightGlue was loaded although the pair was done")

    monkeypatch.setattr(lightglue, "LightGlueMatcher", refuse)
    # also in the other order
    matching.main([("templeSR0002.png", "templeSR0001.png")], fpath, out, {"model": "lightglue"})


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


STRONG = [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "0001.jpg")]
WEAK = [("0000.jpg", "templeSR0001.png")]


def test_hybrid_keeps_mnn_where_strong_and_asks_lightglue_where_weak(feats):
    out, fpath = feats
    feats_ = matching.FeatureCache(fpath)
    m = hybrid.HybridMatcher({"lightglue_max_keypoints": 256, "lightglue_enough": 0})
    written = {}
    m.match_all(STRONG + WEAK, feats_, lambda a, b, r: written.__setitem__((a, b), r))
    assert set(written) == set(STRONG + WEAK) and m.refined == 1  # only the unrelated pair
    for a, b in STRONG:  # MNN's matches, as they were
        assert np.array_equal(written[(a, b)]["matches0"], m.mnn_matcher(feats_[a], feats_[b])["matches0"])
    # LightGlue ran on the 256 strongest keypoints; its matches index the full sets
    a, b = WEAK[0]
    m0 = written[(a, b)]["matches0"]
    assert len(m0) == len(feats_[a]["keypoints"]) > 256
    top0 = set(np.argsort(-feats_[a]["scores"])[:256])
    top1 = set(np.argsort(-feats_[b]["scores"])[:256])
    assert set(np.nonzero(m0 > -1)[0]) <= top0 and set(m0[m0 > -1]) <= top1
    feats_.close()


def test_hybrid_spends_no_lightglue_on_images_with_enough_strong_pairs(feats):
    out, fpath = feats
    feats_ = matching.FeatureCache(fpath)
    m = hybrid.HybridMatcher({"lightglue_enough": 1})
    written = {}
    m.match_all(STRONG + WEAK, feats_, lambda a, b, r: written.__setitem__((a, b), r))
    # both images of the weak pair already have a strong partner: it keeps MNN's matches
    assert m.refined == 0 and set(written) == set(STRONG + WEAK)
    feats_.close()
    mpath = matching.main(STRONG + WEAK, fpath, out)  # the default matcher is this one
    assert mpath.name.endswith("-mnn+lightglue.h5")


def test_hybrid_resumed_run_counts_the_pairs_already_matched(feats, tmp_path, monkeypatch):
    _, fpath = feats
    conf = {"model": "mnn+lightglue", "lightglue_enough": 1}
    matching.main(STRONG, fpath, tmp_path, conf)  # a run stopped after the strong pairs

    def refuse(*a, **k):
        raise AssertionError("LightGlue was loaded although both images have a strong pair")

    monkeypatch.setattr(lightglue, "LightGlueMatcher", refuse)
    # as uninterrupted: both images of the weak pair already have their strong pair
    mpath = matching.main(STRONG + WEAK, fpath, tmp_path, conf)
    with h5py.File(mpath) as f:
        assert pair_to_key(*WEAK[0]) in f
