"""What every local-feature extractor is: a name, its settings and one call on an RGB image.

A new extractor is one module in this package with one subclass of :class:`Extractor`
(see ``aliked.py``); ``lightsfm.extractors.get(name)`` finds it by its module name. The
extraction stage (``lightsfm.extract``) does the rest for all of them: reading, turning,
resizing, scaling keypoints back to the photo and writing the features file.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch


class Extractor:
    """Keypoints, scores and descriptors of one image, in the pixels of the image given."""

    name: ClassVar[str]
    descriptor_dim: ClassVar[int]
    # The extractor's own settings (``features.<key>``); the stage's are in lightsfm.extract.
    default_conf: ClassVar[dict[str, Any]] = {}
    flags: ClassVar[dict[str, str | tuple[str, str]]] = {}  # command-line flags of some of them (lightsfm.cli)

    def __init__(self, conf: dict[str, Any] | None = None, device: str = "cpu") -> None:
        # keys that belong to the stage or to another extractor are not this one's business
        self.conf = {**self.default_conf, **{k: v for k, v in (conf or {}).items() if k in self.default_conf}}
        self.device = torch.device(device)
        self._init()

    def _init(self) -> None:
        """Builds the network and loads its weights (checked: lightsfm.weights)."""
        raise NotImplementedError

    def _extract(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1, 3, H, W) float image in [0, 1] → keypoints (N, 2) in pixels (x, y), scores (N,),
        descriptors (N, descriptor_dim)."""
        raise NotImplementedError

    @classmethod
    def tag(cls, conf: dict[str, Any]) -> str:
        """The extractor's part of the features file's name: what changes its output."""
        return cls.name

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Features of an RGB uint8 image (H, W, 3)."""
        x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None].float().div(255.0)
        kpts, scores, descs = self._extract(x.to(self.device))
        return {
            "keypoints": kpts.float().cpu().numpy(),
            "scores": scores.float().cpu().numpy(),
            "descriptors": descs.float().cpu().numpy(),
        }
