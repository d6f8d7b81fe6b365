"""Turned photos: keypoints found on the upright copy map back to the stored image; the turn is found."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import DEMO
from lightsfm import extract, orientation, pairs
from lightsfm.extractors import aliked


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_rotate_back_lands_on_the_same_pixel(k):
    rng = np.random.default_rng(k)
    img = rng.integers(0, 255, (7, 11))
    turned = np.rot90(img, k)
    ys, xs = np.mgrid[0 : turned.shape[0], 0 : turned.shape[1]]
    pts = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    back = np.round(orientation.rotate_back(pts, k, img.shape[1], img.shape[0])).astype(int)
    assert np.array_equal(img[back[:, 1], back[:, 0]], turned[ys.ravel(), xs.ravel()])


def test_turned_photo_is_detected_and_extracted_upright(tmp_path):
    names = ["100_7100.JPG", "100_7101.JPG", "100_7102.JPG", "100_7103.JPG"]
    for n in names[:3]:
        (tmp_path / n).symlink_to(DEMO / n)
    # a copy turned a quarter clockwise, with no EXIF to say so
    Image.open(DEMO / names[3]).rotate(-90, expand=True).save(tmp_path / "turned.jpg")
    calls = []

    def counting_factory(conf, device="cpu"):
        ex = aliked.AlikedExtractor(conf, device)
        return lambda rgb: calls.append(rgb.shape) or ex(rgb)

    found, overlap, _ = orientation.detect(tmp_path, [*names[:3], "turned.jpg"], counting_factory)
    # the three upright photos link up as stored: only the odd one out is described turned
    assert len(calls) == 4 + 3
    assert len(overlap) == 6 and min(overlap.values()) > 25  # four views of one facade: all pairs overlap
    assert found == {names[0]: 0, names[1]: 0, names[2]: 0, "turned.jpg": 1}
    conf = {"max_keypoints": 256, "resize_max": 480, "upright": True}
    path, _ = extract.main(tmp_path, [*names[:3], "turned.jpg"], tmp_path, conf)
    with h5py.File(path) as f:
        assert f[names[0]].attrs["rotation"] == 0
        g = f["turned.jpg"]
        assert g.attrs["rotation"] == 90
        w, h = g["image_size"][()]
        k = g["keypoints"][()]
        assert (w, h) == (1202, 1600)  # the stored (turned) frame
        assert k[:, 0].max() < w and k[:, 1].max() < h and k.min() >= -0.5


def test_an_upside_down_photo_costs_one_more_description_not_three(tmp_path):
    names = ["100_7100.JPG", "100_7101.JPG", "100_7102.JPG"]
    for n in names:
        (tmp_path / n).symlink_to(DEMO / n)
    Image.open(DEMO / "100_7103.JPG").rotate(180).save(tmp_path / "flipped.jpg")
    calls = []

    def counting_factory(conf, device="cpu"):
        ex = aliked.AlikedExtractor(conf, device)
        return lambda rgb: calls.append(rgb.shape) or ex(rgb)

    found, overlap, turned = orientation.detect(tmp_path, [*names, "flipped.jpg"], counting_factory)
    assert found == {**dict.fromkeys(names, 0), "flipped.jpg": 2}
    assert len(calls) == 4 + 1 and sorted(turned["flipped.jpg"]) == [0, 2]
    assert len(overlap) == 6 and min(overlap.values()) > 25


def test_pairs_turn_detection_did_not_compare_are_counted_as_it_would_have(tmp_path):
    """Pre-matching's evidence is one measure for every pair: counted later from the stored
    cheap features (at the pair's relative turn), a pair gets the count turn detection gave it."""
    names = ["100_7100.JPG", "100_7101.JPG", "100_7102.JPG"]
    for n in names:
        (tmp_path / n).symlink_to(DEMO / n)
    Image.open(DEMO / "100_7103.JPG").rotate(-90, expand=True).save(tmp_path / "turned.jpg")
    names.append("turned.jpg")
    rotations, _ = orientation.main(tmp_path, names, tmp_path)
    assert rotations["turned.jpg"] == 1
    found = orientation.read_overlap(tmp_path)
    assert len(found) == 6
    counted = orientation.count_pairs(tmp_path, list(found))
    assert counted == found
    assert orientation.counts_path(tmp_path).exists()
    # the pairs stage counts what orientation.json lacks: here, one pair taken out of it
    record = json.loads(orientation.orientation_path(tmp_path).read_text())
    gone = tuple(record["pairs"].pop()["pair"])
    orientation.orientation_path(tmp_path).write_text(json.dumps(record))
    orientation.counts_path(tmp_path).unlink()
    _, kept = pairs.main(names, tmp_path, {"prematch_min_inliers": found[gone] + 1, "prematch_keep": 0})
    assert gone not in kept and len(kept) == sum(v > found[gone] for v in found.values())


def test_synchronise_turns_a_ring_whose_camera_flips_half_way():
    # Middlebury-temple-like ring of 10 views: 0-5 as stored, 6-9 upside down; each view
    # matches its ring neighbours, and across the flip only once turned by 180°.
    names = [f"v{i}" for i in range(10)]
    truth = {n: (2 if i >= 6 else 0) for i, n in enumerate(names)}
    edges = {}
    for i in range(10):
        a, b = names[i], names[(i + 1) % 10]
        edges[(a, b)] = ((truth[a] - truth[b]) % 4, 200)  # rot90(a, k) matches b
    edges[("v2", "v8")] = (0, 40)  # a wrong, weaker edge (symmetric structure)
    found = orientation.synchronise(names, edges)
    assert found == truth


def test_synchronise_leaves_unconnected_images_unturned():
    found = orientation.synchronise(["a", "b", "c"], {("a", "b"): (3, 100)})
    assert found["c"] == 0
    assert sorted((found["a"], found["b"])) in ([0, 1], [0, 3])  # one of the two turned, consistently
    assert (found["a"] - found["b"]) % 4 == 3


def test_large_scenes_match_each_photo_with_its_neighbours_only():
    """Above EXHAUSTIVE_MAX photos, turn detection matches O(n·k) pairs, not n²/2, and
    similar photos (here: noisy copies of the same descriptors) are among each one's pairs."""
    rng = np.random.default_rng(0)
    n, groups = 3 * orientation.EXHAUSTIVE_MAX, 6
    base = [rng.normal(size=(300, 32)).astype(np.float32) for _ in range(groups)]

    def feats(g: int) -> dict:
        d = base[g] + 0.3 * rng.normal(size=base[g].shape).astype(np.float32)
        return {"descriptors": d / np.linalg.norm(d, axis=1, keepdims=True)}

    turned = {f"{i:03d}.jpg": {0: feats(i % groups)} for i in range(n)}
    pairs = orientation.candidate_pairs(turned)
    assert len(pairs) <= n * orientation.NEIGHBOURS < n * (n - 1) // 2
    same_group = sum(int(a[:3]) % groups == int(b[:3]) % groups for a, b in pairs)
    assert same_group / len(pairs) > 0.9
    assert {x for p in pairs for x in p} == set(turned)
    # a photo described at its four turns is paired by its best turn
    turned["000.jpg"] = {0: feats(1), 1: feats(0), 2: feats(1), 3: feats(1)}
    only = orientation.candidate_pairs(turned, ["000.jpg"])
    assert all("000.jpg" in p for p in only) and len(only) <= 2 * orientation.NEIGHBOURS
    partners = [int((b if a == "000.jpg" else a)[:3]) % groups for a, b in only]
    # its turns look like groups 1 (as stored) and 0 (turn 1): its partners come from both
    assert sum(g in (0, 1) for g in partners) >= 0.9 * len(partners) and 0 in partners
