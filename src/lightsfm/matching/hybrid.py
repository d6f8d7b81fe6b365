"""Mutual nearest neighbours first, LightGlue where they are not enough.

Most pairs of a well-shot scene match fine with mutual nearest neighbours (~100× cheaper
than LightGlue on a CPU); LightGlue earns its cost on the hard ones: wide baselines, little
texture, repeated structure. Each pair is matched with MNN and checked with a quick
MAGSAC++ fundamental matrix; a pair with fewer than ``lightglue_below`` surviving matches
is weak. Weak pairs, most promising first, are matched again with LightGlue (on each
image's ``lightglue_max_keypoints`` strongest keypoints, its cost growing with their
square) and LightGlue's matches are kept, unless both images already have
``lightglue_enough`` strong pairs: then the pair adds little and keeps its MNN matches.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from ..verify import count_inliers
from . import lightglue, nearest_neighbor

default_conf: dict[str, Any] = {
    **nearest_neighbor.default_conf,
    **lightglue.default_conf,
    "model": "mnn+lightglue",
    "lightglue_below": 100,  # MNN inliers under which a pair is matched again with LightGlue
    "lightglue_max_keypoints": 512,
    # 2 on ../shared/data: mean mAA 0.848 in 35.0 s vs 0.854 in 39.4 s with no limit (0)
    "lightglue_enough": 2,  # strong pairs after which an image needs no LightGlue (0: no limit)
    "check_threshold": 1.0,  # the quick check's epipolar threshold, in pixels of the extraction size
}


def _strongest(f: dict[str, np.ndarray], k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if len(f["keypoints"]) <= k:
        return f, np.arange(len(f["keypoints"]))
    idx = np.sort(np.argsort(-f["scores"], kind="stable")[:k])
    return {**f, "keypoints": f["keypoints"][idx], "descriptors": f["descriptors"][idx]}, idx


class HybridMatcher:
    """MNN on every pair; LightGlue (built on first use) on the pairs MNN leaves weak."""

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.conf = {**default_conf, **(conf or {})}
        self.device = device
        self.mnn_matcher = nearest_neighbor.MutualNNMatcher(self.conf, device)
        self._lightglue: lightglue.LightGlueMatcher | None = None
        self.refined = 0  # pairs LightGlue matched, for the log

    def _inliers(self, f0: dict[str, np.ndarray], f1: dict[str, np.ndarray], m: np.ndarray) -> int:
        th = self.conf["check_threshold"] * max(float(f0.get("scale", 1.0)), float(f1.get("scale", 1.0)))
        return count_inliers(f0["keypoints"], f1["keypoints"], m, th)

    def mnn(self, feats0: dict[str, np.ndarray], feats1: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """MNN matches and how many pass the quick check."""
        out = self.mnn_matcher(feats0, feats1)
        return out, self._inliers(feats0, feats1, out["matches0"])

    def lightglue(self, feats0: dict[str, np.ndarray], feats1: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """LightGlue's matches on the strongest keypoints, indexed into all of them."""
        if self._lightglue is None:
            self._lightglue = lightglue.LightGlueMatcher(self.conf, self.device)
        k = self.conf["lightglue_max_keypoints"]
        (s0, i0), (s1, i1) = _strongest(feats0, k), _strongest(feats1, k)
        lg = self._lightglue(s0, s1)
        self.refined += 1
        matches0 = np.full(len(feats0["keypoints"]), -1, np.int32)
        scores0 = np.zeros(len(feats0["keypoints"]), np.float16)
        ok = lg["matches0"] > -1
        matches0[i0[ok]] = i1[lg["matches0"][ok]]
        scores0[i0[ok]] = lg["scores0"][ok]
        return {"matches0": matches0, "scores0": scores0}

    def __call__(self, feats0: dict[str, np.ndarray], feats1: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One pair on its own (no budget): MNN, or LightGlue when MNN is weak."""
        out, inliers = self.mnn(feats0, feats1)
        return out if inliers >= self.conf["lightglue_below"] else self.lightglue(feats0, feats1)

    def match_all(
        self,
        pairs: list[tuple[str, str]],
        feats: Mapping[str, dict[str, np.ndarray]],
        write: Callable[[str, str, dict[str, np.ndarray]], None],
        done: Iterable[tuple[str, str, np.ndarray]] = (),
    ) -> None:
        """Every pair, LightGlue spent where it helps most: ``write(a, b, matches)`` each.

        ``done``: pairs an interrupted run already matched, (a, b, matches0); they count
        towards each image's strong pairs, so a resumed run decides as an uninterrupted one.
        """
        below, enough = self.conf["lightglue_below"], self.conf["lightglue_enough"]
        strong: Counter[str] = Counter()
        for a, b, m in done:
            if self._inliers(feats[a], feats[b], m) >= below:
                strong[a] += 1
                strong[b] += 1
        weak = []
        for a, b in tqdm(pairs, desc="match (mnn)", unit="pair"):
            out, inliers = self.mnn(feats[a], feats[b])
            if inliers >= below:
                strong[a] += 1
                strong[b] += 1
                write(a, b, out)
            else:
                weak.append((-inliers, a, b, out))
        weak.sort(key=lambda w: w[:3])
        for _, a, b, out in tqdm(weak, desc="match (lightglue)", unit="pair"):
            if enough and strong[a] >= enough and strong[b] >= enough:
                write(a, b, out)
                continue
            out = self.lightglue(feats[a], feats[b])
            if self._inliers(feats[a], feats[b], out["matches0"]) >= below:
                strong[a] += 1
                strong[b] += 1
            write(a, b, out)
