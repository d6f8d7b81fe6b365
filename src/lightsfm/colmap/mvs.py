"""COLMAP's multi-view stereo workspace: undistortion, depth and normal maps, PatchMatch,
fusion and Poisson meshing (what ``lightsfm.dense`` and the report use)."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pycolmap


def has_cuda() -> bool:
    """Whether this pycolmap was built with CUDA (COLMAP's PatchMatch needs it)."""
    return bool(pycolmap.has_cuda)


def undistort_images(
    output: Path, model: Path, image_dir: Path, names: list[str], max_image_size: int | None = None
) -> None:
    """COLMAP's image undistorter: the photos ``names`` of the model in folder ``model`` →
    ``output/images`` and ``output/sparse`` (PINHOLE cameras); long side ≤ ``max_image_size``
    (None: full resolution)."""
    opts = pycolmap.UndistortCameraOptions()
    if max_image_size is not None:
        opts.max_image_size = max_image_size
    pycolmap.undistort_images(output, model, image_dir, image_names=names, undistort_options=opts)


def depth_ranges(workspace: Path) -> dict[str, tuple[float, float]]:
    """(near, far) of each image of a COLMAP workspace, from the sparse points it sees
    (non-positive where it sees too few)."""
    mvs = pycolmap.MVSModel()
    mvs.read_from_colmap(str(workspace))
    ranges = mvs.compute_depth_ranges()
    names = [mvs.get_image_name(i) for i in range(len(ranges))]
    return {n: (near, far) for n, (near, far) in zip(names, ranges, strict=True)}


def write_depth_map(path: Path, depth: np.ndarray, lo: float, hi: float) -> None:
    """A (H, W) float32 depth map in COLMAP's format; ``lo``/``hi``: its range for viewers."""
    pycolmap.DepthMap.from_array(depth, lo, hi).write(path)


def read_depth_map(path: Path) -> np.ndarray:
    """A COLMAP depth map file as a (H, W) float32 array (0: no depth)."""
    dm = pycolmap.DepthMap()
    dm.read(path)
    return np.array(dm.to_array(), dtype=np.float32)


@functools.cache
def _normal_maps_written_interleaved() -> bool:
    """pycolmap 4.2's NormalMap.from_array + write store the (H, W, 3) array pixel by pixel,
    while COLMAP's fusion reads normal maps channel by channel: check which this pycolmap does."""
    probe = np.zeros((1, 2, 3), np.float32)
    probe[..., 1] = 1.0
    with tempfile.TemporaryDirectory() as d:
        pycolmap.NormalMap.from_array(probe).write(Path(d) / "n.bin")
        data = (Path(d) / "n.bin").read_bytes()
    floats = np.frombuffer(data[data.index(b"&", data.index(b"&", data.index(b"&") + 1) + 1) + 1 :], np.float32)
    return bool(floats[1] == 1.0)  # interleaved: 0 1 0 0 1 0; channel by channel: 0 0 1 1 0 0


def write_normal_map(path: Path, normals: np.ndarray) -> None:
    """A (H, W, 3) float32 normal map in the layout COLMAP's fusion reads."""
    if _normal_maps_written_interleaved():
        h, w, _ = normals.shape
        normals = np.ascontiguousarray(normals.transpose(2, 0, 1)).reshape(h, w, 3)
    pycolmap.NormalMap.from_array(normals).write(path)


def patch_match_stereo(
    workspace: Path, max_image_size: int, window_radius: int, depth_range: tuple[float, float] | None = None
) -> None:
    """COLMAP's PatchMatch (CUDA only) with geometric consistency, into the workspace's stereo/."""
    opts = pycolmap.PatchMatchOptions()
    opts.max_image_size = max_image_size
    opts.window_radius = window_radius
    opts.geom_consistency = True
    if depth_range is not None:
        opts.depth_min, opts.depth_max = depth_range
    pycolmap.patch_match_stereo(workspace, options=opts)


def stereo_fusion(
    output: Path, workspace: Path, min_num_pixels: int, max_normal_error: float, max_image_size: int
) -> int | None:
    """COLMAP's fusion of the workspace's geometric depth maps (the images its
    stereo/fusion.cfg lists) → ``output`` (PLY, and ``output.vis``); the number of points,
    or None when pycolmap returns no model to count them in."""
    opts = pycolmap.StereoFusionOptions()
    opts.min_num_pixels = min_num_pixels
    opts.max_normal_error = max_normal_error
    opts.max_image_size = max_image_size
    # One thread: the same depth maps then give the same cloud (with all cores the order in
    # which pixels join points varies, and a resumed run fused 3 points where the reference fused 2).
    opts.num_threads = 1
    rec = pycolmap.stereo_fusion(output, workspace, input_type="geometric", options=opts, output_type="PLY")
    return rec.num_points3D() if rec is not None else None


def poisson_meshing(points: Path, output: Path, depth: int, trim: float, num_threads: int) -> None:
    """Screened Poisson surface (PoissonRecon) of an oriented point cloud, trimmed where the
    points are sparser than ``trim``."""
    opts = pycolmap.PoissonMeshingOptions()
    opts.depth = depth
    opts.trim = trim
    opts.num_threads = num_threads
    pycolmap.poisson_meshing(points, output, opts)


def undistorted_mask(keep: np.ndarray, camera: pycolmap.Camera, undistorted: pycolmap.Camera) -> np.ndarray:
    """A photo's kept pixels ``keep`` (H, W at ``camera``'s size), in the pixels of its
    undistorted copy (``undistorted``): each pixel looks up the photo pixel it came from;
    those from outside the photo are not kept."""
    w, h = undistorted.width, undistorted.height
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)  # COLMAP: pixel centres at +0.5
    rays = undistorted.cam_from_img(np.stack([xs.ravel(), ys.ravel()], 1))
    px = camera.img_from_cam(np.c_[rays, np.ones(len(rays))], False)
    x, y = np.floor(px[:, 0]).astype(np.int64), np.floor(px[:, 1]).astype(np.int64)
    inside = (x >= 0) & (y >= 0) & (x < keep.shape[1]) & (y < keep.shape[0])
    out = np.zeros(len(px), bool)
    out[inside] = keep[y[inside], x[inside]]
    return out.reshape(h, w)
