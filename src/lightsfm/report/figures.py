"""2D figures as JPEG data URIs: keypoints on thumbnails, matches side by side."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np

from ..errors import ImageError
from ..images import load_image

INLIER = (40, 200, 60)  # RGB
OUTLIER = (230, 50, 40)
KEYPOINT = (255, 200, 0)


def data_uri(rgb: np.ndarray, quality: int = 80) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def thumbnail(path: Path, size: int) -> tuple[np.ndarray, float] | None:
    """Upright thumbnail and its scale from full-resolution pixels; None when unreadable."""
    try:
        rgb, (w, h) = load_image(path, size)
    except ImageError:
        return None
    return rgb.copy(), rgb.shape[1] / w


def keypoints_figure(path: Path, keypoints: np.ndarray, size: int = 480) -> str | None:
    """Thumbnail with its keypoints as dots."""
    th = thumbnail(path, size)
    if th is None:
        return None
    rgb, s = th
    for x, y in np.round(keypoints * s).astype(int):
        cv2.circle(rgb, (int(x), int(y)), 1, KEYPOINT, -1, lineType=cv2.LINE_AA)
    return data_uri(rgb)


def matches_figure(
    path0: Path,
    path1: Path,
    kp0: np.ndarray,
    kp1: np.ndarray,
    matches: np.ndarray,
    inlier: np.ndarray,
    size: int = 640,
    max_lines: int = 300,
) -> str | None:
    """Both images side by side, inlier matches in green and rejected ones in red."""
    a, b = thumbnail(path0, size), thumbnail(path1, size)
    if a is None or b is None:
        return None
    (im0, s0), (im1, s1) = a, b
    h = max(im0.shape[0], im1.shape[0])
    canvas = np.full((h, im0.shape[1] + im1.shape[1] + 8, 3), 255, np.uint8)
    canvas[: im0.shape[0], : im0.shape[1]] = im0
    off = im0.shape[1] + 8
    canvas[: im1.shape[0], off:] = im1
    rng = np.random.default_rng(0)
    idx = np.arange(len(matches))
    if len(idx) > max_lines:
        idx = rng.choice(idx, max_lines, replace=False)
    for i in sorted(idx, key=lambda i: inlier[i]):  # inliers drawn last, on top
        x0, y0 = kp0[matches[i, 0]] * s0
        x1, y1 = kp1[matches[i, 1]] * s1
        color = INLIER if inlier[i] else OUTLIER
        cv2.line(canvas, (int(x0), int(y0)), (int(x1 + off), int(y1)), color, 1, lineType=cv2.LINE_AA)
    return data_uri(canvas)


def depth_figure(image_path: Path, depth: np.ndarray, size: int = 480) -> str | None:
    """The undistorted image beside its depth map (turbo colours, near = red; black = no depth)."""
    bgr = cv2.imread(str(image_path))
    if bgr is None:
        return None
    valid = depth > 0
    lo, hi = np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    norm = np.clip((depth - lo) / max(hi - lo, 1e-9), 0, 1)
    colour = cv2.applyColorMap(((1 - norm) * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    colour[~valid] = 0
    both = np.hstack([bgr, colour])
    s = size / max(bgr.shape[:2])
    both = cv2.resize(both, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    return data_uri(cv2.cvtColor(both, cv2.COLOR_BGR2RGB))
