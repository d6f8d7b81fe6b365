"""Pairs from global descriptors: L2-normalised embeddings, cosine similarity,
every pair above ``threshold`` plus the ``topk`` most similar per image.

Backends: ``dinov2`` (needs a checkpoint, see :mod:`.dinov2`) and ``vlad`` (weight-free,
see :mod:`.vlad`). ``auto`` takes DINOv2 when its weights are found, else VLAD.

A global descriptor ranks an image's partners well but cannot say how many it has: on
../shared/data's large scenes an image has 4 to 45 verified partners, so no top-k fits
all. The cheap match check (on by default) says it. A pair is checked by matching the
``check_keypoints`` strongest of the features already extracted (mutual nearest
neighbours, a quick RANSAC: a few ms, ~20× cheaper than the real match); it passes with
``check_min_inliers`` inliers. Checked first: each image's ``check_candidates`` most
similar images; then, for ``check_rounds`` rounds, the images that share the most passed
partners with it (two hops in the graph of passed pairs, up to ``check_candidates`` per
image and round; ties by similarity): overlap is transitive where a global descriptor is
not. Every pair that passed is asked for; an image none of whose checked pairs passed gets
its ``topk`` most similar instead. Measured with
``benchmarks/retrieval_recall.py`` (``benchmarks/results/2026-12-01-retrieval-recall-d01f735.txt``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import orientation
from ..executor import LocalExecutor
from ..matchers.base import Run, quick_inliers
from ..matchers.mnn import MutualNNMatcher
from ..store import FeatureReader
from . import dinov2, vlad

logger = logging.getLogger(__name__)

default_conf: dict[str, Any] = {
    "global_descriptor": "auto",  # auto | dinov2 | vlad
    "dinov2_model": "vits14",
    "dinov2_weights": None,
    "topk": 10,
    "similarity_threshold": 0.9,
    # The cheap match check (0 candidates: off, the top-k by similarity alone).
    "check_candidates": 10,
    "check_rounds": 3,
    "check_keypoints": 1024,
    "check_min_inliers": 8,
}
CHECK_THRESHOLD = 1.0  # RANSAC threshold, in pixels of the extraction size (the hybrid's quick check)


def checking(conf: dict[str, Any]) -> bool:
    """Does the cheap match check run?"""
    c = {**default_conf, **conf}
    return c["check_candidates"] > 0 and c["check_keypoints"] > 0


def conf_tag(conf: dict[str, Any]) -> str:
    c = {**default_conf, **conf}
    tag = f"retrieval-{c['global_descriptor']}-k{c['topk']}-s{c['similarity_threshold']:g}"
    if checking(c):
        tag += f"-c{c['check_candidates']}r{c['check_rounds']}n{c['check_keypoints']}i{c['check_min_inliers']}"
    return tag


def pairs_from_similarity(
    names: list[str],
    sim: np.ndarray,
    topk: int,
    threshold: float,
    inliers: np.ndarray | None = None,
    min_inliers: int = 0,
) -> list[tuple[str, str]]:
    """Unordered pairs: each image's ``topk`` best neighbours, and every pair with sim > threshold.

    With ``inliers`` (the cheap check's count per pair, -1 where unchecked): every pair with
    at least ``min_inliers`` of them instead of the top-k; only an image none of whose pairs
    passed still gets its ``topk`` most similar. Filling every image up to ``topk`` asked for
    pairs the check had found nothing in: in the 309-photo mix of ../shared/data, 113 such
    pairs, 6 verified, 2 of them false (the dinoSparseRing's 0004-0011 and 0005-0010, across
    its symmetric ring), which folded its model (docs/scaling.md).
    """
    n = len(names)
    sim = sim.copy()
    np.fill_diagonal(sim, -np.inf)
    keep = sim > threshold
    fill = np.ones(n, bool)
    if inliers is not None:
        passed = inliers >= min_inliers
        np.fill_diagonal(passed, False)
        keep |= passed
        fill = ~passed.any(axis=1)
    k = min(topk, n - 1)
    if k > 0 and fill.any():
        rows = np.nonzero(fill)[0]
        nn = np.argsort(-sim[rows], axis=1, kind="stable")[:, :k]
        keep[np.repeat(rows, k), nn.ravel()] = True
    keep |= keep.T
    i, j = np.nonzero(np.triu(keep, 1))
    return sorted((min(names[a], names[b]), max(names[a], names[b])) for a, b in zip(i, j, strict=True))


def _top(score: np.ndarray, count: int) -> list[tuple[int, int]]:
    """Index pairs (i < j): j among the ``count`` best of row i (above -inf) or i among j's."""
    n = len(score)
    k = min(count, n - 1)
    if k <= 0:
        return []
    nn = np.argsort(-score, axis=1, kind="stable")[:, :k]
    rows = np.repeat(np.arange(n), k)
    ok = np.isfinite(score[rows, nn.ravel()])
    return sorted({(min(i, j), max(i, j)) for i, j in zip(rows[ok].tolist(), nn.ravel()[ok].tolist(), strict=True)})


def two_hop(n: int, passed: set[tuple[int, int]], checked: set[tuple[int, int]]) -> np.ndarray:
    """(n, n): for each unchecked pair, how many partners that passed the check its two images share."""
    partners: list[list[int]] = [[] for _ in range(n)]
    for i, j in passed:
        partners[i].append(j)
        partners[j].append(i)
    common = np.zeros((n, n), np.int32)
    for mid in partners:  # each image links every two of its partners
        if len(mid) > 1:
            idx = np.array(mid)
            common[np.ix_(idx, idx)] += 1
    np.fill_diagonal(common, 0)
    if checked:
        i, j = np.array(sorted(checked)).T
        common[i, j] = common[j, i] = 0
    return common


class CheapCheck:
    """The cheap match check over the images of a features file: each image's ``num_keypoints``
    strongest keypoints, mutual nearest neighbours (the hybrid's first matcher), a quick RANSAC.

    A work item is a pair of image indices (i, j) → inliers. Pairs are independent and cheap:
    the local executor checks one per core at once (``side_by_side``), the copies sharing
    the keypoint subsets (read only).
    """

    side_by_side = True

    def __init__(self, feature_file: Path, names: list[str], num_keypoints: int, device: str = "cpu") -> None:
        self.matcher = MutualNNMatcher({}, device)
        self.subset: list[dict[str, Any]] = []
        with FeatureReader(feature_file, size=1) as feats:  # one image at a time; only the subsets are kept
            for name in names:
                f = feats[name]
                order = np.argsort(-f["scores"], kind="stable")[:num_keypoints]
                self.subset.append(
                    {  # float32 once here, not for each of the image's pairs
                        "keypoints": f["keypoints"][order],
                        "descriptors": f["descriptors"][order].astype(np.float32),
                        "scale": f["scale"],
                    }
                )

    def __call__(self, pair: tuple[int, int]) -> int:
        f0, f1 = self.subset[pair[0]], self.subset[pair[1]]
        m0 = self.matcher(f0, f1)["matches0"]
        return quick_inliers(f0, f1, m0, CHECK_THRESHOLD) if (m0 > -1).sum() >= 8 else 0


def checked_inliers(
    sim: np.ndarray,
    check: CheapCheck,
    candidates: int,
    rounds: int,
    min_inliers: int,
    run: Run | None = None,
    passed_already: dict[tuple[int, int], int] | None = None,
) -> np.ndarray:
    """(n, n) check inliers, -1 where unchecked: each image's ``candidates`` most similar, then
    ``rounds`` rounds of two-hop candidates (most shared passed partners first, then
    similarity). ``run``: an executor's map (the local one by default). ``passed_already``:
    pairs (i < j) known to pass, with a count to record instead of checking them."""
    run = run or LocalExecutor().map
    passed_already = passed_already or {}
    n = len(sim)
    inliers = np.full((n, n), -1, np.int32)
    sim = np.clip(sim, -1, 1)
    score = sim.copy()
    np.fill_diagonal(score, -np.inf)
    todo = _top(score, candidates)
    checked: set[tuple[int, int]] = set()
    passed: set[tuple[int, int]] = set()
    for r in range(rounds + 1):
        unknown = [p for p in todo if p not in passed_already]
        counts = dict(zip(unknown, run(check, unknown), strict=True))
        for (i, j), found in ((p, counts.get(p, passed_already.get(p))) for p in todo):
            inliers[i, j] = inliers[j, i] = found
            checked.add((i, j))
            if inliers[i, j] >= min_inliers:
                passed.add((i, j))
        if r == rounds:
            break
        common = two_hop(n, passed, checked)
        score = np.where(common > 0, common + (sim + 1) / 4, -np.inf)
        todo = _top(score, candidates)
        if not todo:
            break
    return inliers


def global_descriptors(
    names: list[str],
    output: Path,
    conf: dict[str, Any],
    image_dir: Path | None = None,
    feature_file: Path | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """L2-normalised global descriptors (len(names), D) of the configured backend."""
    backend = conf["global_descriptor"]
    if backend == "auto":
        if dinov2.find_weights(conf["dinov2_model"], conf["dinov2_weights"]) is not None:
            backend = "dinov2"
        else:
            logger.warning(
                "no DINOv2 weights found (give --dinov2-weights); retrieval uses VLAD over ALIKED descriptors"
            )
            backend = "vlad"
    if backend == "dinov2":
        if image_dir is None:
            raise ValueError("DINOv2 retrieval needs the image folder")
        return dinov2.main(names, image_dir, output, conf["dinov2_model"], conf["dinov2_weights"], device)
    if backend == "vlad":
        if feature_file is None:
            raise ValueError("VLAD retrieval needs the local features file")
        return vlad.main(names, feature_file)
    raise ValueError(f"unknown global descriptor {backend!r} (auto, dinov2, vlad)")


def main(
    names: list[str],
    output: Path,
    conf: dict[str, Any] | None = None,
    image_dir: Path | None = None,
    feature_file: Path | None = None,
    device: str = "cpu",
) -> list[tuple[str, str]]:
    """Retrieval pairs of ``names``; computes (or reuses) ``global-<backend>.h5`` in ``output``.

    The cheap match check needs ``feature_file``; without it, the top-k by similarity alone.
    """
    conf = {**default_conf, **(conf or {})}
    desc = global_descriptors(names, output, conf, image_dir, feature_file, device)
    sim = desc @ desc.T
    if not checking(conf) or feature_file is None:
        return pairs_from_similarity(names, sim, conf["topk"], conf["similarity_threshold"])
    t = time.perf_counter()
    check = CheapCheck(feature_file, names, conf["check_keypoints"], device)
    # Pairs turn detection linked (orientation.MIN_INLIERS cheap inliers) all passed the check
    # (557 and 423 of the 1761 and 2969 checked on tensorf_object80 and mold_gold_cape): not
    # checked again.
    index = {n: i for i, n in enumerate(names)}
    linked = (
        {
            (min(index[a], index[b]), max(index[a], index[b])): count
            for (a, b), count in orientation.read_overlap(output).items()
            if count >= orientation.MIN_INLIERS and a in index and b in index
        }
        if conf["check_min_inliers"] <= orientation.MIN_INLIERS
        else {}
    )
    inliers = checked_inliers(
        sim, check, conf["check_candidates"], conf["check_rounds"], conf["check_min_inliers"], passed_already=linked
    )
    pairs = pairs_from_similarity(
        names, sim, conf["topk"], conf["similarity_threshold"], inliers, conf["check_min_inliers"]
    )
    upper = inliers[np.triu_indices(len(names), 1)]
    logger.info(
        "retrieval: %d pairs checked in %.1f s, %d with >= %d inliers; %d pairs",
        int((upper > -1).sum()),
        time.perf_counter() - t,
        int((upper >= conf["check_min_inliers"]).sum()),
        conf["check_min_inliers"],
        len(pairs),
    )
    return pairs
