"""Extraction stage: local features of every image → ``features-<settings>.h5``.

Each image becomes one group (key: the URL-quoted image name) with ``keypoints`` (N, 2)
float32 in upright full-resolution pixels, ``scores`` (N,), ``descriptors`` (N, D) float16,
``image_size`` (W, H) and the attributes ``scale`` and ``rotation``. Images already in the
file are skipped, so an interrupted run resumes. The extractor is a plug-in
(``features.name``, see lightsfm.extractors); this loop reads, turns, resizes, extracts,
scales back and writes for all of them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import extractors, masks, orientation
from .device import EXTRACTION_TRIM_GROWTH_MB, release_freed_memory, release_freed_memory_if_grown, set_threads
from .errors import ImageError
from .executor import Executor, LocalExecutor
from .images import load_image
from .io import name_to_key
from .store import H5Store

logger = logging.getLogger(__name__)

# The stage's own settings; each extractor adds its own (features.<key>, lightsfm.extractors).
default_conf: dict[str, Any] = {
    "name": "aliked",
    "resize_max": 1024,
    # Detect photos turned by 90°/180°/270° and extract them upright. On by default: the
    # Middlebury temple ring flips its camera upside down half-way (mAA 0.48 → 0.94).
    "upright": True,
    # Folder of masks (<image name>.png, black or transparent = ignore) or "alpha" (the
    # photos' own alpha channels): no keypoints in masked pixels (lightsfm.masks).
    "masks": None,
    # The cheap pass of turn detection, whose inliers also prune the pairs (pairs.prematch_*):
    # aliked (the tiny ALIKED) or xfeat (faster per photo, but pre-matching's threshold is
    # the tiny ALIKED's: it folded the dino; see lightsfm.orientation).
    "cheap": "aliked",
}
# Command-line flags of these settings (lightsfm.cli): key → help, or (flag, help).
flags: dict[str, str | tuple[str, str]] = {
    "name": ("--extractor", "Local features (a module of lightsfm.extractors)."),
    "resize_max": "Long side (px) features are extracted at.",
    "upright": ("--upright/--no-upright", "Detect photos turned by 90°/180°/270°."),
    "masks": "Masks: a folder of <image name>.png (black = ignore), or 'alpha' (the photos' alpha).",
    "cheap": "Turn detection's cheap pass: aliked (tiny ALIKED) or xfeat (faster; worse pre-matching here).",
}

# Named configurations, as hloc's `confs`.
confs: dict[str, dict[str, Any]] = {
    "aliked-n16": {},
    "aliked-n16-accurate": {"resize_max": 1600},
    "aliked-n16rot": {"model": "aliked-n16rot"},
}


def full_conf(conf: dict[str, Any] | None) -> dict[str, Any]:
    """The stage's and the chosen extractor's settings, ``conf`` on top (only their keys)."""
    conf = conf or {}
    name = conf.get("name", default_conf["name"])
    defaults = {**default_conf, **extractors.get(name).default_conf}
    return {**defaults, **{k: v for k, v in conf.items() if k in defaults}}


def feature_path(output: Path, conf: dict[str, Any] | None = None) -> Path:
    """``features-<tag>.h5``: the name says which extractor and settings made it."""
    c = full_conf(conf)
    tag = f"{extractors.get(c['name']).tag(c)}-r{c['resize_max']}{'-upright' if c['upright'] else ''}"
    if c.get("masks"):  # the masks' contents: a changed mask recomputes features and all after
        tag += f"-m{masks.fingerprint(c['masks'])}"
    return Path(output) / f"features-{tag}.h5"


def extract_one(
    extractor: extractors.Extractor,
    image_dir: Path,
    name: str,
    resize_max: int,
    turns: int = 0,
    mask_source: str | None = None,
) -> dict[str, Any]:
    """Features of one photo, extracted at ``resize_max`` after ``turns`` quarter turns
    (counter-clockwise), with keypoints in the pixels of the upright photo at full size;
    none in the pixels its mask (``mask_source``, lightsfm.masks) leaves out."""
    rgb, (w, h) = load_image(Path(image_dir) / name, resize_max)
    keep = masks.load(mask_source, image_dir, name, (w, h))
    pred = extractor(np.ascontiguousarray(np.rot90(rgb, turns)))
    scale = max(w, h) / max(rgb.shape[:2])
    kpts = orientation.rotate_back(pred["keypoints"], turns, rgb.shape[1], rgb.shape[0])
    # pixel centres: (x + 0.5) * s - 0.5 maps the resized grid onto the original one
    kpts = (kpts + 0.5) * scale - 0.5
    inside = masks.drop_masked(keep, kpts)
    return {
        "keypoints": kpts[inside].astype(np.float32),
        "scores": pred["scores"][inside].astype(np.float32),
        "descriptors": pred["descriptors"][inside].astype(np.float16),
        "image_size": np.array([w, h], dtype=np.int32),
        "scale": float(scale),
        "rotation": 90 * turns,  # degrees counter-clockwise the image was turned for extraction
    }


class ExtractTask:
    """``extract_one`` as a work item: (name, turns) → (name, features or the reason it failed).

    Picklable; the extractor is built on first use, once per worker.
    """

    side_by_side = True  # one photo per item, nothing shared: the local executor runs a few at once

    def __init__(self, image_dir: Path, conf: dict[str, Any], device: str = "cpu") -> None:
        self.image_dir, self.conf, self.device = Path(image_dir), full_conf(conf), device
        self._extractor: extractors.Extractor | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_extractor": None}

    def __call__(self, item: tuple[str, int]) -> tuple[str, dict[str, Any] | str]:
        name, turns = item
        if self._extractor is None:
            set_threads()
            self._extractor = extractors.get(self.conf["name"])(self.conf, self.device)
        try:
            # (a photo can change between reading and here: only ImageError comes out)
            return name, extract_one(
                self._extractor, self.image_dir, name, self.conf["resize_max"], turns, self.conf["masks"]
            )
        except ImageError as e:
            return name, e.reason
        finally:
            release_freed_memory_if_grown(EXTRACTION_TRIM_GROWTH_MB)


def main(
    image_dir: Path,
    names: list[str],
    output: Path,
    conf: dict[str, Any] | None = None,
    device: str = "cpu",
    rotations: dict[str, int] | None = None,
    executor: Executor | None = None,
) -> tuple[Path, dict[str, str]]:
    """Extracts features of ``names`` into ``features-<tag>.h5`` under ``output``.

    ``rotations``: quarter turns per image (lightsfm.orientation); with ``features.upright``
    and none given, they are detected here. Returns the file and, for images that could not
    be decoded, the reason.
    """
    conf = full_conf(conf)
    store = H5Store(feature_path(output, conf), conf)
    done = store.keys()
    todo = [n for n in names if name_to_key(n) not in done]
    failed: dict[str, str] = {}
    if not todo:
        return store.path, failed
    if rotations is None and conf["upright"]:
        rotations, failed = orientation.main(image_dir, names, output, device, executor, conf["masks"], conf["cheap"])
        release_freed_memory()
    rotations = rotations or {}
    items = [(n, rotations.get(n, 0)) for n in todo if n not in failed]
    executor = executor or LocalExecutor()
    with store.writer() as out:
        for name, result in executor.map(ExtractTask(image_dir, conf, device), items, desc="extract", unit="img"):
            if isinstance(result, str):
                failed[name] = result
                logger.warning("skipping %s: %s", Path(image_dir) / name, result)
            else:
                out.add(name_to_key(name), result)
    # (the heap its photos' maps leave: the 309-photo mix then peaked at 758 MB in the pairs stage, 1648 MB kept)
    release_freed_memory()
    return store.path, failed
