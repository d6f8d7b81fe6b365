"""Masks: the parts of each photo that hold nothing to reconstruct (people walking by, a
turntable, the photographer's shadow).

``features.masks`` names a folder of COLMAP-style masks, ``<image name>.png`` (black: ignore;
a PNG with transparency: transparent is ignored), or ``alpha`` for the photos' own alpha
channels. A photo without a mask file is used whole. Keypoints in masked pixels are dropped
where they were found (turned photos included), in turn detection as in extraction, and
dense depth maps leave masked pixels empty. The masks' contents are part of the features
file's name, so a changed mask recomputes the features and all that follows from them.
"""

from __future__ import annotations

import hashlib
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError

ALPHA = "alpha"


def mask_file(masks: str, name: str) -> Path:
    """COLMAP's convention: the mask of ``a/b.jpg`` is ``MASKS/a/b.jpg.png``."""
    return Path(masks) / f"{name}.png"


def _keep(im: Image.Image) -> np.ndarray:
    """Kept pixels of a mask image: opaque ones where it has transparency, else non-black."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        return np.asarray(im.convert("RGBA"))[..., 3] > 0
    return np.asarray(im.convert("L")) > 0


def load(masks: str | None, image_dir: Path, name: str, size: tuple[int, int]) -> np.ndarray | None:
    """The kept pixels (H, W) of photo ``name`` (upright, ``size`` = (W, H)), or None when it
    has no mask. ImageError naming the mask file when it cannot be read or does not fit."""
    if not masks:
        return None
    path = Path(image_dir) / name if masks == ALPHA else mask_file(masks, name)
    if masks != ALPHA and not path.exists():
        return None
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            raw = im.size
            im = ImageOps.exif_transpose(im) if masks == ALPHA else im
            if masks == ALPHA and im.mode not in ("RGBA", "LA", "PA") and "transparency" not in im.info:
                return None  # no alpha channel: nothing masked
            keep = _keep(im)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(path, f"mask cannot be read ({e.__class__.__name__})") from None
    if keep.shape[::-1] != tuple(size):
        raise ImageError(path, f"mask is {raw[0]}×{raw[1]}, its photo {size[0]}×{size[1]}")
    return keep


def drop_masked(keep: np.ndarray | None, kpts: np.ndarray) -> np.ndarray:
    """Which of ``kpts`` ((N, 2) pixel coordinates of the masked image) lie in kept pixels."""
    if keep is None:
        return np.ones(len(kpts), bool)
    h, w = keep.shape
    x = np.clip(np.round(kpts[:, 0]).astype(np.int64), 0, w - 1)
    y = np.clip(np.round(kpts[:, 1]).astype(np.int64), 0, h - 1)
    return keep[y, x]


def resized(keep: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """``keep`` at another (H, W), nearest pixel."""
    if keep is None or keep.shape == tuple(shape):
        return keep
    ys = (np.arange(shape[0]) + 0.5) * keep.shape[0] / shape[0]
    xs = (np.arange(shape[1]) + 0.5) * keep.shape[1] / shape[1]
    return keep[np.minimum(ys.astype(np.int64), keep.shape[0] - 1)][
        :, np.minimum(xs.astype(np.int64), keep.shape[1] - 1)
    ]


def fingerprint(masks: str | None) -> str:
    """A short digest of the masks in use ('' for none): it changes when any mask does."""
    if not masks:
        return ""
    if masks == ALPHA:
        return ALPHA
    root = Path(masks)
    if not root.is_dir():
        raise ImageError(root, "masks folder not found")
    files = sorted(p for p in root.rglob("*.png") if p.is_file())
    listing = tuple((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    return _digest(str(root.resolve()), listing)


@lru_cache(maxsize=8)
def _digest(root: str, listing: tuple) -> str:
    """Content digest of the listed mask files (cached while none of them changes)."""
    h = hashlib.sha1()
    for rel, _, _ in listing:
        h.update(rel.encode())
        h.update(hashlib.sha1((Path(root) / rel).read_bytes()).digest())
    return h.hexdigest()[:8]
