"""Which way up is each photo? Rotations by 90° that EXIF did not record break learned matchers.

Each image is described at its four in-plane rotations with a cheap ALIKED setting and
matched (mutual nearest neighbours) against every other image as it is stored; the
rotation that matches the rest of the scene best wins, if it beats the stored one
clearly. This assumes most photos of a scene are upright, as in IMC2023's top solutions,
which matched each image at four rotations against its neighbours.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..errors import ImageError
from ..images import load_image
from ..matching.nearest_neighbor import MutualNNMatcher

logger = logging.getLogger(__name__)

CHEAP = {"max_keypoints": 512, "resize_max": 512}
MARGIN = 1.5  # a turned version must match this much better than the stored one


def rotate_back(kpts: np.ndarray, k: int, width: int, height: int) -> np.ndarray:
    """Maps (x, y) found in ``np.rot90(image, k)`` back to the original ``width`` × ``height`` image."""
    x, y = kpts[:, 0].astype(np.float64), kpts[:, 1].astype(np.float64)
    for t in range(k % 4, 0, -1):
        # one counter-clockwise turn: a point (x', y') of the turned image came from
        # (w − 1 − y', x') of the image before it, whose width is w.
        w = width if (t - 1) % 2 == 0 else height
        x, y = w - 1 - y, x
    return np.stack([x, y], axis=1).astype(np.float32)


def _best_turn(name: str, turned: dict[str, list[dict]], found: dict[str, int], matcher: MutualNNMatcher) -> int:
    """The quarter turn of ``name`` that matches the others (as currently turned) clearly best."""
    others = [v[found[n]] for n, v in turned.items() if n != name]
    if not others:
        return 0
    score = [sum(int((matcher(turned[name][k], o)["matches0"] > -1).sum()) for o in others) for k in range(4)]
    best = int(np.argmax(score))
    return best if best and score[best] > MARGIN * max(score[0], 1) else 0


def detect(image_dir: Path, names: list[str], extractor_factory, device: str = "cpu") -> dict[str, int]:
    """Number of counter-clockwise quarter turns (0–3) that makes each image upright."""
    extractor = extractor_factory(CHEAP, device)
    matcher = MutualNNMatcher({"ratio": 0.9}, device)
    turned: dict[str, list[dict]] = {}
    for name in tqdm(names, desc="orientation", unit="img"):
        try:
            rgb, _ = load_image(Path(image_dir) / name, CHEAP["resize_max"])
        except ImageError:
            continue
        turned[name] = [extractor(np.ascontiguousarray(np.rot90(rgb, k))) for k in range(4)]
    # Two passes: the second compares with every other image as the first pass turned it,
    # so that turned references stop voting for their own wrong orientation.
    found = {name: 0 for name in turned}
    for _ in range(2):
        found = {name: _best_turn(name, turned, found, matcher) for name in turned}
    for name, k in found.items():
        if k:
            logger.info("%s looks turned: extracting it rotated by %d°", name, 90 * k)
    return found
