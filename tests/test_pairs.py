"""Pair selection: exhaustive, similarity top-k/threshold, VLAD and the DINOv2 loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lightsfm import pairs
from lightsfm.errors import LightsfmError
from lightsfm.pairs import dinov2, retrieval
from lightsfm.pairs.exhaustive import pairs_exhaustive


def test_exhaustive_lists_each_pair_once():
    p = pairs_exhaustive(["c", "a", "b", "d"])
    assert len(p) == 6 and len(set(p)) == 6 and all(a < b for a, b in p)


def test_similarity_topk_and_threshold():
    names = ["a", "b", "c", "d"]
    sim = np.array([[1, 0.95, 0.1, 0.2], [0.95, 1, 0.3, 0.1], [0.1, 0.3, 1, 0.5], [0.2, 0.1, 0.5, 1]])
    assert retrieval.pairs_from_similarity(names, sim, topk=1, threshold=0.99) == [("a", "b"), ("c", "d")]
    got = retrieval.pairs_from_similarity(names, sim, topk=1, threshold=0.25)
    assert got == [("a", "b"), ("b", "c"), ("c", "d")]


def test_checked_pairs_replace_the_top_k():
    names = ["a", "b", "c", "d", "e"]
    sim = np.full((5, 5), 0.5) + np.diag([0.5] * 5)
    sim[0, 3] = sim[3, 0] = 0.8  # a-d: the most similar, but the check found nothing in it
    sim[2, 3] = sim[3, 2] = 0.7
    inliers = np.full((5, 5), -1)
    for (i, j), n in {(0, 1): 40, (1, 2): 9, (0, 3): 0, (2, 3): 3}.items():
        inliers[i, j] = inliers[j, i] = n
    got = retrieval.pairs_from_similarity(names, sim, topk=2, threshold=0.9, inliers=inliers, min_inliers=8)
    # a, b, c have a passed pair and get no others; d and e none: their top-2 by similarity
    # (a-d is asked for as one of d's, not of a's)
    assert got == [("a", "b"), ("a", "d"), ("a", "e"), ("b", "c"), ("b", "e"), ("c", "d")]


def test_pairs_known_to_pass_are_not_checked_again():
    """Pairs turn detection linked are recorded as passed, not checked: the same inliers
    matrix otherwise, and the check runs on the others only."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4))
    sim = x @ x.T / np.linalg.norm(x, axis=1)[:, None] / np.linalg.norm(x, axis=1)[None]
    asked = []

    def check(pair):  # a stand-in with a fixed answer per pair
        asked.append(pair)
        return (pair[0] * 7 + pair[1] * 3) % 20

    def serial(f, items):
        return [f(i) for i in items]

    full = retrieval.checked_inliers(sim, check, 3, 2, 8, run=serial)
    every = list(asked)
    known = {p: 30 for p in every if full[p] >= 8}
    assert 0 < len(known) < len(every)
    asked.clear()
    fast = retrieval.checked_inliers(sim, check, 3, 2, 8, run=serial, passed_already=known)
    assert sorted(asked) == sorted(p for p in every if p not in known)
    for (i, j), n in known.items():
        assert fast[i, j] == fast[j, i] == n
        fast[i, j] = fast[j, i] = full[i, j]
    assert np.array_equal(fast, full)


def test_pair_file_round_trip_with_spaces(tmp_path):
    p = [("a b.jpg", "c.jpg"), ("x/y.png", "z.png")]
    pairs.write_pairs(tmp_path / "pairs.txt", p)
    assert pairs.read_pairs(tmp_path / "pairs.txt") == p


def test_auto_switches_to_retrieval(tmp_path, monkeypatch):
    names = [f"{i}.jpg" for i in range(5)]
    _, p = pairs.main(names, tmp_path, {"strategy": "auto", "exhaustive_max": 5})
    assert len(p) == 10
    with pytest.raises(ValueError, match="needs the local features file"):
        pairs.main(names, tmp_path, {"strategy": "auto", "exhaustive_max": 4, "global_descriptor": "vlad"})


def _official_checkpoint(path, model="vits14"):
    """A checkpoint in the layout of facebookresearch/dinov2 (no real weights exist here)."""
    torch.manual_seed(0)
    net = dinov2.ARCHS[model](patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    sd = net.state_dict()
    assert "blocks.0.attn.qkv.weight" in sd and "blocks.11.ls2.gamma" in sd and sd["pos_embed"].shape[1] == 1370
    torch.save(sd, path)
    return sd


def test_dinov2_loader_reads_official_layout(tmp_path):
    sd = _official_checkpoint(tmp_path / "dinov2_vits14_pretrain.pth")
    net = dinov2.build("vits14", tmp_path / "dinov2_vits14_pretrain.pth")
    assert torch.equal(net.state_dict()["blocks.3.mlp.fc1.weight"], sd["blocks.3.mlp.fc1.weight"])
    d = dinov2.describe(net, np.zeros((300, 400, 3), np.uint8))
    assert d.shape == (384,) and np.linalg.norm(d) == pytest.approx(1.0, abs=1e-5)


def test_dinov2_wrong_checkpoint_and_absent_weights(tmp_path, monkeypatch):
    sd = _official_checkpoint(tmp_path / "ck.pth")
    sd.pop("norm.weight")
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(LightsfmError, match="1 missing"):
        dinov2.build("vits14", tmp_path / "bad.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    assert dinov2.find_weights("vits14") is None
    with pytest.raises(LightsfmError, match="dinov2_vits14_pretrain.pth"):
        dinov2.build("vits14")


def test_dinov2_retrieval_from_hub_cache(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ck = dinov2.hub_checkpoint("vits14")
    ck.parent.mkdir(parents=True)
    _official_checkpoint(ck)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(imgs / f"{i}.png")
    names = [f"{i}.png" for i in range(4)]
    out = retrieval.main(names, tmp_path, {"topk": 1, "similarity_threshold": 2.0}, image_dir=imgs)
    assert 2 <= len(out) <= 4 and (tmp_path / "global-dinov2-vits14.h5").exists()


def test_prune_keeps_strong_pairs_and_each_images_best():
    from lightsfm.pairs import prune

    pairs = [("a", "b"), ("a", "c"), ("b", "c"), ("c", "d"), ("a", "d")]
    inliers = {("a", "b"): 100, ("a", "c"): 3, ("b", "c"): 40, ("c", "d"): 2, ("a", "d"): 0}
    # d has only weak pairs: its best one (c, d) stays so that d is not cut off
    assert prune(pairs, inliers, min_inliers=10, keep=1) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert prune(pairs, {}, min_inliers=10, keep=1) == pairs  # no counts: nothing dropped
    # a pair without a cheap inlier is no one's best, whatever its name: with keep=3 neither
    # a nor d keeps (a, d)
    assert ("a", "d") not in prune(pairs, inliers, min_inliers=10, keep=3)
    # an image all of whose pairs have none keeps them all
    lonely = [("a", "e"), ("b", "e"), ("c", "e")]
    counts = {**inliers, ("a", "e"): 0, ("b", "e"): 0, ("c", "e"): 0}
    assert prune(pairs + lonely, counts, min_inliers=10, keep=1)[-3:] == lonely


def test_gps_pairs_only_where_gps_tells_photos_apart():
    from lightsfm import gps
    from lightsfm.pairs import nearby

    origin = (46.5, 6.5, 400.0)
    # a street of photos every 10 m along east, GPS good to 2 m: each pairs with its neighbours
    street = gps.enu_to_geodetic(np.array([[10.0 * i, 0.0, 1.5] for i in range(8)]), origin)
    fixes = {f"{i}.jpg": gps.GpsFix(float(a), float(b), float(c), 2.0) for i, (a, b, c) in enumerate(street)}
    found = nearby.pairs_nearby(fixes, 2)
    assert ("0.jpg", "1.jpg") in found and ("0.jpg", "2.jpg") in found and ("0.jpg", "3.jpg") not in found
    assert ("3.jpg", "4.jpg") in found and ("3.jpg", "7.jpg") not in found
    assert len(found) == len(set(found)) and all(a < b for a, b in found)
    # the same photos within 3 m (an object walked around): GPS noise would pick the pairs
    close = gps.enu_to_geodetic(np.array([[0.4 * i, 0.0, 1.5] for i in range(8)]), origin)
    fixes = {f"{i}.jpg": gps.GpsFix(float(a), float(b), float(c), 2.0) for i, (a, b, c) in enumerate(close)}
    assert nearby.pairs_nearby(fixes, 2) == []
    # without a stated accuracy a phone's 5 m is assumed: photos every 10 m are too close
    # (median 20 m from the middle, under 5 accuracies), every 20 m they pair
    for step, pairs_found in ((10.0, 0), (20.0, 7)):
        lla = gps.enu_to_geodetic(np.array([[step * i, 0.0, 1.5] for i in range(8)]), origin)
        fixes = {f"{i}.jpg": gps.GpsFix(float(a), float(b), None) for i, (a, b, _) in enumerate(lla)}
        assert len(nearby.pairs_nearby(fixes, 1)) == pairs_found
