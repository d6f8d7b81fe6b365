"""Mutual nearest neighbours in descriptor space: no learning, ~100× faster than LightGlue on a CPU."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..device import linear
from .base import Matcher


class MutualNNMatcher(Matcher):
    """Keeps pairs of keypoints that are each other's nearest descriptor and pass the ratio test."""

    name = "mnn"
    side_by_side = True  # ~13 ms a pair: two pairs at once beat one pair on two threads
    default_conf: dict[str, Any] = {
        "min_similarity": 0.75,  # cosine similarity of L2-normalised descriptors
        "ratio": 0.95,  # Lowe's ratio on distances (1 disables)
    }

    @torch.inference_mode()
    def __call__(self, feats0: dict[str, np.ndarray], feats1: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n0, n1 = len(feats0["descriptors"]), len(feats1["descriptors"])
        matches0 = np.full(n0, -1, np.int32)
        scores0 = np.zeros(n0, np.float16)
        if n0 < 2 or n1 < 2:
            return {"matches0": matches0, "scores0": scores0}
        # (a float32 copy: arrays that come through Ray are read-only, which torch warns about)
        d0 = torch.from_numpy(np.array(feats0["descriptors"], dtype=np.float32)).to(self.device)
        d1 = torch.from_numpy(np.array(feats1["descriptors"], dtype=np.float32)).to(self.device)
        sim = linear(d0, d1)  # (oneDNN: the same similarities as d0 @ d1.T, ~1.5× faster on AMD CPUs)
        # Mutual: row i's best is also its column's best. A column's maximum is cheap (amax
        # over dim 0: 0.8 ms for 2048 × 2048 on one core, where the argmax of the transposed
        # copy took 5.9 ms); the same pairs as comparing argmaxes, exact ties aside.
        column_best = sim.amax(dim=0)
        # Each row's best: numpy's argmax (vectorised; the first of equal maxima, as torch's)
        # took 0.5 ms for 2048 × 2048 on one core where torch's max(dim=1) took 3.0 ms.
        rows = torch.arange(n0, device=sim.device)
        if sim.device.type == "cpu":
            nn01 = torch.from_numpy(sim.numpy().argmax(axis=1))
        else:
            nn01 = sim.argmax(dim=1)
        best0 = sim[rows, nn01]
        # The second best, for the ratio test: each row's best struck out, then its maximum
        # (40 real tensorf_object80 pairs, profiled: 4.6 ms a pair for what topk(2) took in 7.4 ms).
        sim[rows, nn01] = -torch.inf
        second0 = sim.amax(dim=1)
        mutual = best0 == column_best[nn01]
        # distance ratio of unit vectors: ‖a−b‖² = 2 − 2·sim
        dist0, dist1 = (2 - 2 * torch.stack([best0, second0])).clamp(min=0).sqrt()
        keep = mutual & (best0 > self.conf["min_similarity"])
        keep &= dist0 <= self.conf["ratio"] * dist1
        idx = keep.nonzero().squeeze(1).cpu().numpy()
        matches0[idx] = nn01[keep].cpu().numpy()
        scores0[idx] = best0[keep].cpu().numpy().astype(np.float16)
        return {"matches0": matches0, "scores0": scores0}
