"""Two-view geometry on plain arrays (OpenCV): a leaf module every stage may use."""

from __future__ import annotations

import cv2
import numpy as np


def ransac_fundamental(
    p0: np.ndarray, p1: np.ndarray, threshold: float, confidence: float = 0.9999, max_iterations: int = 10000
) -> tuple[np.ndarray | None, np.ndarray]:
    """MAGSAC++ fundamental matrix of matched points; returns (F or None, inlier mask)."""
    if len(p0) < 8:
        return None, np.zeros(len(p0), bool)
    cv2.setRNGSeed(0)  # same inputs, same inliers
    try:
        F, mask = cv2.findFundamentalMat(
            p0.astype(np.float64), p1.astype(np.float64), cv2.USAC_MAGSAC, threshold, confidence, max_iterations
        )
    except cv2.error:  # degenerate samples (e.g. all points on a line) make USAC assert
        return None, np.zeros(len(p0), bool)
    if F is None or F.shape != (3, 3):
        return None, np.zeros(len(p0), bool)
    return F, mask.ravel().astype(bool)


def count_inliers(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    matches0: np.ndarray,
    threshold: float,
    confidence: float = 0.999,
    max_iterations: int = 2000,
) -> int:
    """How many of ``matches0`` (index into ``kpts1`` or -1) a quick MAGSAC++ fundamental
    matrix keeps: a cheap measure of how well two images match."""
    i0 = np.nonzero(matches0 > -1)[0]
    _, mask = ransac_fundamental(kpts0[i0], kpts1[matches0[i0]], threshold, confidence, max_iterations)
    return int(mask.sum())
