"""A scene with known geometry, rendered here: a textured floor, a box and a sphere seen by
calibrated cameras on an arc. Used to measure dense reconstruction against the truth.

``render_scene(folder)`` writes ``folder/images/*.png`` and a COLMAP text model with the
true cameras and a sparse set of true surface points (``folder/sparse/0``), as lightsfm's
mapping would have left them, and returns the true depth maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

W, H, FOCAL = 320, 240, 280.0
BOX_MIN, BOX_MAX = np.array([-0.75, -0.05, 0.0]), np.array([-0.05, 0.65, 0.6])
SPHERE_C, SPHERE_R = np.array([0.45, -0.35, 0.35]), 0.35
FLOOR_HALF = 1.6  # the floor is the square |x|, |y| ≤ this at z = 0


@dataclass
class Camera:
    R: np.ndarray  # world → camera
    t: np.ndarray
    K: np.ndarray

    @property
    def center(self) -> np.ndarray:
        return -self.R.T @ self.t


def look_at(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    return R, -R @ eye


def cameras(n: int = 7, radius: float = 2.5, height: float = 1.5, arc_deg: float = 90.0) -> list[Camera]:
    K = np.array([[FOCAL, 0, W / 2], [0, FOCAL, H / 2], [0, 0, 1.0]])
    out = []
    for a in np.radians(np.linspace(-arc_deg / 2, arc_deg / 2, n)):
        eye = np.array([radius * np.cos(a), radius * np.sin(a), height])
        R, t = look_at(eye, np.array([0.0, 0.0, 0.25]))
        out.append(Camera(R, t, K))
    return out


_rng = np.random.default_rng(7)
_LATTICE = _rng.random((64, 64, 64))


def _value_noise(X: np.ndarray, cell: float) -> np.ndarray:
    """Trilinear value noise on a random lattice of spacing ``cell``; X is (N, 3)."""
    g = X / cell
    i = np.floor(g).astype(int)
    f = g - i
    f = f * f * (3 - 2 * f)  # smoothstep
    out = np.zeros(len(X))
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                wx, wy, wz = (f[:, a] if on else 1 - f[:, a] for a, on in enumerate((dx, dy, dz)))
                w = wx * wy * wz
                v = _LATTICE[(i[:, 0] + dx) % 64, (i[:, 1] + dy) % 64, (i[:, 2] + dz) % 64]
                out += w * v
    return out


def texture(X: np.ndarray) -> np.ndarray:
    """Grey level in [0, 1] painted on the surface at points X (N, 3)."""
    return np.clip(0.15 + 0.5 * _value_noise(X, 0.045) + 0.35 * _value_noise(X + 17.3, 0.15), 0, 1)


def intersect(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Ray parameter of the first hit (inf where none) for rays origin + s·dirs, dirs (N, 3)."""
    n = len(dirs)
    best = np.full(n, np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = -origin[2] / dirs[:, 2]  # floor
        p = origin + s[:, None] * dirs
        ok = (s > 0) & (np.abs(p[:, 0]) <= FLOOR_HALF) & (np.abs(p[:, 1]) <= FLOOR_HALF)
        best = np.where(ok, s, best)
        oc = origin - SPHERE_C  # sphere
        b = dirs @ oc
        a = (dirs**2).sum(1)
        c = oc @ oc - SPHERE_R**2
        disc = b * b - a * c
        s = (-b - np.sqrt(np.maximum(disc, 0))) / a
        best = np.where((disc >= 0) & (s > 0) & (s < best), s, best)
        t0 = (BOX_MIN - origin) / dirs  # box, slab method
        t1 = (BOX_MAX - origin) / dirs
        tn = np.minimum(t0, t1).max(1)
        tf = np.maximum(t0, t1).min(1)
        best = np.where((tn <= tf) & (tn > 0) & (tn < best), tn, best)
    return best


def surface_distance(X: np.ndarray) -> np.ndarray:
    """Distance from points X (N, 3) to the nearest true surface."""
    floor = np.where(
        (np.abs(X[:, 0]) <= FLOOR_HALF) & (np.abs(X[:, 1]) <= FLOOR_HALF),
        np.abs(X[:, 2]),
        np.inf,
    )
    sphere = np.abs(np.linalg.norm(X - SPHERE_C, axis=1) - SPHERE_R)
    c, h = (BOX_MIN + BOX_MAX) / 2, (BOX_MAX - BOX_MIN) / 2
    q = np.abs(X - c) - h
    box = np.abs(np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0))
    return np.minimum(np.minimum(floor, sphere), box)


def render(cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 image and (H, W) true depth (0 where the ray hits nothing)."""
    y, x = np.mgrid[0:H, 0:W] + 0.5
    pix = np.stack([x.ravel(), y.ravel(), np.ones(x.size)], 1)
    rays_cam = pix @ np.linalg.inv(cam.K).T  # z = 1: the ray parameter is the depth
    dirs = rays_cam @ cam.R  # to world (R^T applied to row vectors)
    s = intersect(cam.center, dirs)
    hit = np.isfinite(s)
    gray = np.zeros(len(s))
    gray[hit] = texture(cam.center + s[hit, None] * dirs[hit])
    depth = np.where(hit, s, 0.0)
    return (gray.reshape(H, W) * 255).round().astype(np.uint8), depth.reshape(H, W)


def _rotmat_to_qvec(R: np.ndarray) -> np.ndarray:
    w = np.sqrt(max(0.0, 1 + R[0, 0] + R[1, 1] + R[2, 2])) / 2
    x = np.copysign(np.sqrt(max(0.0, 1 + R[0, 0] - R[1, 1] - R[2, 2])) / 2, R[2, 1] - R[1, 2])
    y = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] + R[1, 1] - R[2, 2])) / 2, R[0, 2] - R[2, 0])
    z = np.copysign(np.sqrt(max(0.0, 1 - R[0, 0] - R[1, 1] + R[2, 2])) / 2, R[1, 0] - R[0, 1])
    return np.array([w, x, y, z])


def render_scene(folder: Path, n: int = 7, points_step: int = 12) -> dict[str, np.ndarray]:
    """Renders the scene into ``folder``; returns {image name: true depth map}."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    sparse = folder / "sparse" / "0"
    sparse.mkdir(parents=True, exist_ok=True)
    cams = cameras(n)
    depths, names = {}, []
    for k, cam in enumerate(cams):
        name = f"view{k:02d}.png"
        img, depth = render(cam)
        Image.fromarray(img).save(folder / "images" / name)
        depths[name] = depth
        names.append(name)

    # Sparse points: a grid of surface points seen by each camera, with their full tracks.
    points: list[tuple[np.ndarray, list[tuple[int, np.ndarray]]]] = []
    for k, cam in enumerate(cams):
        ys, xs = np.mgrid[points_step // 2 : H : points_step, points_step // 2 : W : points_step]
        d = depths[names[k]][ys, xs]
        ok = d > 0
        pix = np.stack([xs[ok] + 0.5, ys[ok] + 0.5, np.ones(ok.sum())], 1)
        Xc = (pix @ np.linalg.inv(cam.K).T) * d[ok][:, None]
        for X in (Xc - cam.t) @ cam.R:
            track = []
            for j, other in enumerate(cams):
                p = other.K @ (other.R @ X + other.t)
                u, v = p[:2] / p[2]
                if not (0 <= u < W and 0 <= v < H):
                    continue
                if abs(depths[names[j]][int(v), int(u)] - p[2]) < 2e-3 * p[2]:  # not occluded
                    track.append((j, np.array([u, v])))
            if len(track) >= 2:
                points.append((X, track))

    obs: list[list[tuple[np.ndarray, int]]] = [[] for _ in cams]
    lines3d = []
    for pid, (X, track) in enumerate(points, start=1):
        elems = []
        for j, uv in track:
            elems.append(f"{j + 1} {len(obs[j])}")
            obs[j].append((uv, pid))
        lines3d.append(f"{pid} {X[0]} {X[1]} {X[2]} 128 128 128 0.5 " + " ".join(elems))
    (sparse / "cameras.txt").write_text(f"1 PINHOLE {W} {H} {FOCAL} {FOCAL} {W / 2} {H / 2}\n")
    img_lines = []
    for k, cam in enumerate(cams):
        q, t = _rotmat_to_qvec(cam.R), cam.t
        img_lines.append(f"{k + 1} {' '.join(map(str, q))} {' '.join(map(str, t))} 1 {names[k]}")
        img_lines.append(" ".join(f"{uv[0]} {uv[1]} {pid}" for uv, pid in obs[k]))
    (sparse / "images.txt").write_text("\n".join(img_lines) + "\n")
    (sparse / "points3D.txt").write_text("\n".join(lines3d) + "\n")
    return depths
