"""Matchers on real features: overlapping pairs match, unrelated ones hardly do; LightGlue goes where MNN is weak."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import FOUNTAIN, TEMPLE
from lightsfm import extract, match, matchers
from lightsfm.executor import LocalExecutor
from lightsfm.io import pair_to_key
from lightsfm.matchers.hybrid import HybridMatcher
from lightsfm.store import FeatureReader

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
    path, _ = extract.main(imgs, ["templeSR0001.png", "templeSR0002.png", "0000.jpg", "0001.jpg"], out, conf)
    return out, path


def test_overlapping_pair_has_more_matches(feats):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "templeSR0001.png")]
    mpath = match.main(pairs, fpath, out, {"name": "lightglue"})
    with h5py.File(mpath) as f:
        good = (f[pair_to_key(*pairs[0])]["matches0"][()] > -1).sum()
        bad = (f[pair_to_key(*pairs[1])]["matches0"][()] > -1).sum()
    assert good > 200
    assert good > 5 * bad


def test_finished_pairs_are_skipped(feats, monkeypatch):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png")]
    match.main(pairs, fpath, out, {"name": "lightglue"})

    def refuse(*a, **k):
        raise AssertionError("a pair was matched again although it was done")

    monkeypatch.setattr(match.MatchTask, "__call__", refuse)
    # also in the other order
    match.main([("templeSR0002.png", "templeSR0001.png")], fpath, out, {"name": "lightglue"})


def _mutual_nn_reference(d0: np.ndarray, d1: np.ndarray, min_similarity: float, ratio: float) -> np.ndarray:
    """Mutual nearest neighbours by their definition, in float64: argmax both ways, ratio test."""
    sim = d0.astype(np.float64) @ d1.astype(np.float64).T
    nn01, nn10 = sim.argmax(1), sim.argmax(0)
    order = np.sort(sim, axis=1)
    dist = np.sqrt(np.clip(2 - 2 * order[:, ::-1][:, :2], 0, None))
    keep = (nn10[nn01] == np.arange(len(d0))) & (order[:, -1] > min_similarity) & (dist[:, 0] <= ratio * dist[:, 1])
    return np.where(keep, nn01, -1)


def test_mutual_nn_matches_its_definition(feats):
    """The fast mutual test (a column's maximum, not its argmax) keeps the same matches."""
    _, fpath = feats
    mnn = matchers.get("mnn")()
    with FeatureReader(fpath) as reader:
        f = {n: reader[n] for n in ("templeSR0001.png", "templeSR0002.png", "0000.jpg", "0001.jpg")}
    for a, b in [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "0001.jpg"), ("0000.jpg", "templeSR0001.png")]:
        got = mnn(f[a], f[b])["matches0"]
        want = _mutual_nn_reference(f[a]["descriptors"], f[b]["descriptors"], **mnn.default_conf)
        # float32 against float64 similarities: a near-tie may fall either way
        assert (got != want).sum() <= 2, (a, b)
        if a[0] == b[0]:  # the overlapping pairs
            assert (got > -1).sum() > 30


def test_mutual_nn_matcher_plugs_in(feats):
    out, fpath = feats
    pairs = [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "templeSR0001.png")]
    mpath = match.main(pairs, fpath, out, {"name": "mnn"})
    assert mpath.name.endswith("-mnn.h5")
    with h5py.File(mpath) as f:
        m_good = f[pair_to_key(*pairs[0])]["matches0"][()]
        m_bad = f[pair_to_key(*pairs[1])]["matches0"][()]
    assert (m_good > -1).sum() > 3 * (m_bad > -1).sum()
    valid = m_good[m_good > -1]
    assert len(np.unique(valid)) == len(valid)  # mutual: each keypoint of image 1 used once


STRONG = [("templeSR0001.png", "templeSR0002.png"), ("0000.jpg", "0001.jpg")]
WEAK = [("0000.jpg", "templeSR0001.png")]


def _plan(fpath, conf, pairs, done=()):
    """The hybrid's plan run in this process: {pair: matches} and the pairs LightGlue matched."""
    conf = match.full_conf({"name": "hybrid", **conf})
    task = match.MatchTask(fpath, "hybrid", conf)
    asked: list = []

    def run(t, items, **kw):
        if t.matcher == "lightglue":
            asked.extend(items)
        return LocalExecutor().map(t, items)

    written = {(a, b): m for a, b, m in HybridMatcher.plan(conf, pairs, task, run, done)}
    return written, asked


def test_hybrid_keeps_mnn_where_strong_and_asks_lightglue_where_weak(feats):
    out, fpath = feats
    written, asked = _plan(fpath, {"second_max_keypoints": 256, "strong_enough": 0}, STRONG + WEAK)
    assert set(written) == set(STRONG + WEAK) and asked == WEAK  # only the unrelated pair
    mnn = matchers.get("mnn")()
    with FeatureReader(fpath) as feats_:
        for a, b in STRONG:  # MNN's matches, as they were
            assert np.array_equal(written[(a, b)]["matches0"], mnn(feats_[a], feats_[b])["matches0"])
        # LightGlue ran on the 256 strongest keypoints; its matches index the full sets
        a, b = WEAK[0]
        m0 = written[(a, b)]["matches0"]
        assert len(m0) == len(feats_[a]["keypoints"]) > 256
        top0 = set(np.argsort(-feats_[a]["scores"])[:256])
        top1 = set(np.argsort(-feats_[b]["scores"])[:256])
    assert set(np.nonzero(m0 > -1)[0]) <= top0 and set(m0[m0 > -1]) <= top1


def test_hybrid_spends_no_lightglue_on_images_with_enough_strong_pairs(feats):
    out, fpath = feats
    written, asked = _plan(fpath, {"strong_enough": 1}, STRONG + WEAK)
    # both images of the weak pair already have a strong partner: it keeps MNN's matches
    assert asked == [] and set(written) == set(STRONG + WEAK)
    mpath = match.main(STRONG + WEAK, fpath, out)  # the default matcher is this one
    assert mpath.name.endswith("-hybrid.h5")


def test_hybrid_result_does_not_depend_on_pair_order_or_waves_of_one(feats):
    _, fpath = feats
    forward, _ = _plan(fpath, {"strong_enough": 1}, STRONG + WEAK)
    backward, _ = _plan(fpath, {"strong_enough": 1}, (STRONG + WEAK)[::-1])
    assert forward.keys() == backward.keys()
    for p in forward:
        assert np.array_equal(forward[p]["matches0"], backward[p]["matches0"])


def test_hybrid_resumed_run_counts_the_pairs_already_matched(feats, tmp_path, monkeypatch):
    _, fpath = feats
    conf = {"name": "hybrid", "strong_enough": 1}
    match.main(STRONG, fpath, tmp_path, conf)  # a run stopped after the strong pairs
    real = match.MatchTask.__call__

    def no_lightglue(task, pair):
        assert task.matcher != "lightglue", "LightGlue ran although both images have a strong pair"
        return real(task, pair)

    monkeypatch.setattr(match.MatchTask, "__call__", no_lightglue)
    # as uninterrupted: both images of the weak pair already have their strong pair
    mpath = match.main(STRONG + WEAK, fpath, tmp_path, conf)
    with h5py.File(mpath) as f:
        assert pair_to_key(*WEAK[0]) in f
