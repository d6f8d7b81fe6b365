"""Multi-view stereo in PyTorch: depth and normal maps from calibrated, undistorted views.

For each reference view:

1. **plane sweep**: fronto-parallel planes, uniform in inverse depth over the view's depth
   range; every source view is warped onto each plane and compared with the reference by
   normalised cross-correlation (NCC) over a square window; per pixel the costs of the best
   ``best_k`` source views are averaged (the others may be occluded), and the best plane is
   refined to sub-plane precision with a parabola through its neighbours;
2. **refinement** (``iterations`` rounds, PatchMatch-like): each pixel tries its depth
   nudged up and down and the depths of neighbours ``propagation`` pixels away; the window
   then follows the current surface, which corrects fronto-parallel bias on slanted walls;
3. pixels with too little texture or too low an NCC are dropped (depth 0).

``geometric_filter`` then keeps a pixel only when its depth agrees with the depth maps of
at least ``min_views`` source views (forward-backward reprojection). Normals are computed
from the filtered depth map. All maps are plain ``(H, W)`` / ``(H, W, 3)`` tensors; pixel
``(i, j)`` has its centre at ``(j + 0.5, i + 0.5)`` (COLMAP's convention).

Everything is batched tensor code, so ``device="cuda"`` runs the same code on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

default_conf: dict[str, Any] = {
    "num_depths": 96,  # planes in the sweep
    "window": 7,  # NCC window side (px)
    "best_k": 2,  # source views whose costs are averaged per pixel
    "iterations": 3,  # refinement rounds after the sweep
    "propagation": 4,  # neighbour distance (px) whose depths each pixel tries while refining
    "min_ncc": 0.5,  # a pixel whose mean NCC is lower gets no depth
    "min_std": 0.02,  # nor one whose window is flatter than this (grey levels in 0..1)
    "chunk": 8,  # planes warped at once (memory vs. speed)
}


@dataclass
class View:
    """One undistorted, calibrated image: ``x_cam = R · X + t``, ``x_pix = K · x_cam``."""

    name: str
    K: torch.Tensor  # (3, 3)
    R: torch.Tensor  # (3, 3)
    t: torch.Tensor  # (3,)
    image: torch.Tensor  # (H, W) grey levels in [0, 1]

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.image.shape)  # type: ignore[return-value]

    def to(self, device: str | torch.device) -> View:
        return View(self.name, self.K.to(device), self.R.to(device), self.t.to(device), self.image.to(device))


def pixel_rays(K: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) camera-frame rays with z = 1 through every pixel centre."""
    h, w = shape
    y, x = torch.meshgrid(
        torch.arange(h, device=K.device, dtype=K.dtype) + 0.5,
        torch.arange(w, device=K.device, dtype=K.dtype) + 0.5,
        indexing="ij",
    )
    pix = torch.stack([x, y, torch.ones_like(x)]).reshape(3, -1)
    return (torch.linalg.inv(K) @ pix).reshape(3, h, w)


def box(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k×k window (separable), same size; x is (N, H, W)."""
    x = x.unsqueeze(1)
    x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, k // 2), count_include_pad=False)
    x = F.avg_pool2d(x, (k, 1), stride=1, padding=(k // 2, 0), count_include_pad=False)
    return x.squeeze(1)


class _Pair:
    """What warping one source view into the reference needs, computed once."""

    def __init__(self, ref: View, src: View, rays: torch.Tensor):
        R = src.R @ ref.R.T  # reference camera → source camera
        t = src.t - R @ ref.t
        h, w = ref.shape
        self.A = (src.K @ R @ rays.reshape(3, -1)).reshape(3, h, w)
        self.b = (src.K @ t).reshape(3, 1, 1)
        self.image = src.image
        self.size = src.shape

    def warp(self, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Source grey levels seen at the reference pixels for ``depth`` (N, H, W) or (N, 1, 1)."""
        p = depth.unsqueeze(1) * self.A + self.b  # (N, 3, H, W) source pixel coordinates × z
        z = p[:, 2]
        hs, ws = self.size
        u = p[:, 0] / z.clamp(min=1e-8) - 0.5
        v = p[:, 1] / z.clamp(min=1e-8) - 0.5
        valid = (z > 0) & (u > -0.5) & (u < ws - 0.5) & (v > -0.5) & (v < hs - 0.5)
        grid = torch.stack([u * (2.0 / max(ws - 1, 1)) - 1.0, v * (2.0 / max(hs - 1, 1)) - 1.0], dim=-1)
        img = self.image.expand(p.shape[0], 1, hs, ws)
        warped = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return warped.squeeze(1), valid


class _Reference:
    """Window statistics of the reference image, computed once."""

    def __init__(self, ref: View, k: int):
        self.k = k
        self.image = ref.image.unsqueeze(0)
        self.mean = box(self.image, k)
        self.var = (box(self.image**2, k) - self.mean**2).clamp(min=0)
        self.std = self.var.sqrt()[0]

    def cost(self, warped: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """1 − NCC in [0, 2] per pixel (2 where the source does not see the pixel)."""
        mw = box(warped, self.k)
        vw = (box(warped**2, self.k) - mw**2).clamp(min=0)
        cov = box(warped * self.image, self.k) - mw * self.mean
        ncc = cov / (self.var * vw + 1e-10).sqrt()
        return torch.where(valid, 1.0 - ncc.clamp(-1, 1), torch.full_like(ncc, 2.0))


def _aggregate(costs: list[torch.Tensor], best_k: int) -> torch.Tensor:
    """Mean of the ``best_k`` lowest costs over source views."""
    c = torch.stack(costs)
    k = min(best_k, c.shape[0])
    return c if c.shape[0] == 1 else torch.topk(c, k, dim=0, largest=False).values.mean(0, keepdim=True)


def _costs(ref: _Reference, pairs: list[_Pair], depth: torch.Tensor, best_k: int) -> torch.Tensor:
    """(N, H, W) aggregated cost of the depth hypotheses ``depth`` (N, H, W) or (N, 1, 1)."""
    costs = []
    for pair in pairs:
        warped, valid = pair.warp(depth)
        costs.append(ref.cost(warped, valid))
    return _aggregate(costs, best_k)[0]


def estimate_depth(
    ref: View, srcs: list[View], depth_range: tuple[float, float], conf: dict[str, Any] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depth map (0 = no estimate) and its NCC, both (H, W), of ``ref`` seen from ``srcs``."""
    conf = {**default_conf, **(conf or {})}
    if not srcs:
        raise ValueError(f"{ref.name}: no source views")
    rays = pixel_rays(ref.K, ref.shape)
    pairs = [_Pair(ref, s, rays) for s in srcs]
    refw = _Reference(ref, conf["window"])
    best_k = conf["best_k"]

    # 1. plane sweep, uniform in inverse depth
    near, far = depth_range
    inv = torch.linspace(1.0 / near, 1.0 / far, conf["num_depths"], device=ref.image.device, dtype=ref.image.dtype)
    volume = torch.cat(
        [
            _costs(refw, pairs, (1.0 / inv[i : i + conf["chunk"]]).reshape(-1, 1, 1), best_k)
            for i in range(0, len(inv), conf["chunk"])
        ]
    )
    best = volume.argmin(0)
    # sub-plane refinement: vertex of the parabola through the best plane and its neighbours
    lo, hi = (best - 1).clamp(min=0), (best + 1).clamp(max=len(inv) - 1)
    c0, c1, c2 = (volume.gather(0, i[None])[0] for i in (lo, best, hi))
    denom = c0 - 2 * c1 + c2
    shift = torch.where((denom > 1e-6) & (lo < best) & (best < hi), 0.5 * (c0 - c2) / denom, torch.zeros_like(c1))
    step = inv[0] - inv[1] if len(inv) > 1 else inv[0] * 0.1
    inv_depth = inv[best] - shift.clamp(-0.5, 0.5) * step
    cost = c1
    del volume

    # 2. refinement: nudges and neighbours' depths, the window following the surface
    d = conf["propagation"]
    for _ in range(conf["iterations"]):
        step = step / 2
        hyps = [inv_depth + step, inv_depth - step, inv_depth + step / 2, inv_depth - step / 2]
        if d > 0:
            hyps += [torch.roll(inv_depth, s, dims=a) for s, a in ((d, 0), (-d, 0), (d, 1), (-d, 1))]
        h = torch.stack(hyps).clamp(min=1.0 / far / 2, max=2.0 / near)
        n = conf["chunk"]
        c = torch.cat([_costs(refw, pairs, 1.0 / h[i : i + n], best_k) for i in range(0, len(h), n)])
        cmin, arg = c.min(0)
        better = cmin < cost
        inv_depth = torch.where(better, h.gather(0, arg[None])[0], inv_depth)
        cost = torch.where(better, cmin, cost)

    depth = 1.0 / inv_depth
    ncc = 1.0 - cost
    keep = (ncc >= conf["min_ncc"]) & (refw.std >= conf["min_std"]) & (depth > 0)
    return torch.where(keep, depth, torch.zeros_like(depth)), ncc


def normals_from_depth(depth: torch.Tensor, K: torch.Tensor, window: int = 9) -> torch.Tensor:
    """(H, W, 3) unit normals in the camera frame, facing the camera (0 where depth is 0).

    Each normal is that of the plane fitted (least squares) to the valid 3D points of a
    window around the pixel: depth differences of neighbours are far too noisy for it.
    """
    valid = (depth > 0).to(depth.dtype)
    X = pixel_rays(K, depth.shape) * depth  # (3, H, W)
    n = box(valid[None], window)[0].clamp(min=1e-8)
    mean = box(X * valid, window) / n
    ij = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    second = box(torch.stack([X[i] * X[j] * valid for i, j in ij]), window) / n
    cov = torch.zeros(*depth.shape, 3, 3, dtype=depth.dtype, device=depth.device)
    for c, (i, j) in enumerate(ij):
        cov[..., i, j] = cov[..., j, i] = second[c] - mean[i] * mean[j]
    # on a GPU the batched 3×3 eigh of cuSOLVER failed (CUSOLVER_STATUS_INTERNAL_ERROR on an
    # H200, torch 2.11+cu130, ~270k matrices): solved on the CPU, which gives the CPU's normals
    _, vecs = torch.linalg.eigh(cov.cpu())
    normal = vecs[..., 0].to(depth.device).permute(2, 0, 1)  # eigenvector of the smallest eigenvalue, (3, H, W)
    normal = torch.where((normal * X).sum(0, keepdim=True) > 0, -normal, normal)  # towards the camera
    ok = (valid > 0) & (n * window * window >= 0.5 * window * window)
    return torch.where(ok[None], normal, torch.zeros_like(normal)).permute(1, 2, 0).contiguous()


def geometric_filter(
    ref: View,
    depth: torch.Tensor,
    srcs: list[View],
    src_depths: list[torch.Tensor],
    min_views: int = 2,
    max_reprojection: float = 1.0,
    max_relative_depth: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keeps the pixels whose depth ≥ ``min_views`` source depth maps agree with.

    A pixel agrees with a source when, sent to the source at its depth, read back at the
    source's depth there and sent back, it lands within ``max_reprojection`` px of itself
    with a depth within ``max_relative_depth`` of its own. Returns the filtered depth map and
    the number of agreeing views per pixel.
    """
    h, w = ref.shape
    rays = pixel_rays(ref.K, (h, w)).reshape(3, -1)
    X_ref = rays * depth.reshape(1, -1)  # reference camera frame
    X_world = ref.R.T @ (X_ref - ref.t[:, None])
    ys, xs = torch.meshgrid(
        torch.arange(h, device=depth.device, dtype=depth.dtype) + 0.5,
        torch.arange(w, device=depth.device, dtype=depth.dtype) + 0.5,
        indexing="ij",
    )
    count = torch.zeros(h * w, dtype=torch.int32, device=depth.device)
    for src, sd in zip(srcs, src_depths, strict=True):
        hs, ws = sd.shape
        p = src.K @ (src.R @ X_world + src.t[:, None])
        z = p[2]
        u, v = p[0] / z.clamp(min=1e-8), p[1] / z.clamp(min=1e-8)
        ui, vi = u.floor().long(), v.floor().long()  # nearest pixel (centres at +0.5)
        inside = (z > 0) & (ui >= 0) & (ui < ws) & (vi >= 0) & (vi < hs)
        d_src = torch.zeros_like(z)
        d_src[inside] = sd[vi[inside], ui[inside]]
        ok = inside & (d_src > 0)
        # back from the source at its own depth, into the reference
        ray_src = torch.linalg.inv(src.K) @ torch.stack([u, v, torch.ones_like(u)])
        Xs = ray_src / ray_src[2:].clamp(min=1e-12) * d_src
        Xw = src.R.T @ (Xs - src.t[:, None])
        q = ref.K @ (ref.R @ Xw + ref.t[:, None])
        zq = q[2]
        err = torch.hypot(q[0] / zq.clamp(min=1e-8) - xs.reshape(-1), q[1] / zq.clamp(min=1e-8) - ys.reshape(-1))
        rel = (zq - X_ref[2]).abs() / X_ref[2].clamp(min=1e-8)
        count += (ok & (err < max_reprojection) & (rel < max_relative_depth)).int()
    count = count.reshape(h, w)
    keep = (count >= min_views) & (depth > 0)
    return torch.where(keep, depth, torch.zeros_like(depth)), count
