"""``lightsfm export OUT/ --format …``: the models in other tools' formats.

colmap-txt / colmap-bin (every model, ``EXPORT/<k>/``), ply (coloured points of each
model), imc-csv (IMC2023 submission rows of all images), and two datasets for radiance
fields and Gaussian splatting, made from the largest model:

- ``3dgs``: the layout of graphdeco's gaussian-splatting (what its ``convert.py`` leaves):
  ``images/`` undistorted to PINHOLE at full resolution, ``sparse/0/`` the model with those
  PINHOLE cameras, ``images_2/4/8/`` smaller copies. Its loader ignores principal points
  (it assumes the centre), so each camera's images are cropped to centre theirs.
- ``nerfstudio``: ``transforms.json`` (OpenGL camera axes, as nerfstudio expects) over
  undistorted ``images/`` (and ``images_2/4/8/``), with the model's points as
  ``sparse_pc.ply`` (``ply_file_path``) in the cameras' world frame.

Undistortion is pycolmap's (COLMAP's image undistorter). Both datasets are built in
``<destination>.tmp`` and renamed into place: a killed export leaves the previous one intact.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from . import colmap, mapping
from .errors import LightsfmError
from .evaluate import Pose, write_poses
from .io import atomic_write_text, check_written
from .workspace import Workspace

if TYPE_CHECKING:
    import pycolmap

logger = logging.getLogger(__name__)

FORMATS = ("colmap-txt", "colmap-bin", "ply", "nerfstudio", "3dgs", "imc-csv")
DOWNSCALES = (2, 4, 8)  # images_2, images_4, images_8: what 3DGS and nerfstudio tools look for
# Centring a principal point crops the images; past this share of a side it is not done.
MAX_CENTER_CROP = 0.1


def nerfstudio_intrinsics(cam: pycolmap.Camera) -> dict[str, float]:
    """nerfstudio's OPENCV intrinsics for a COLMAP camera."""
    p = list(cam.params)
    model = cam.model_name
    d = {"w": cam.width, "h": cam.height, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0}
    if model in ("SIMPLE_PINHOLE", "SIMPLE_RADIAL", "RADIAL"):
        d.update(fl_x=p[0], fl_y=p[0], cx=p[1], cy=p[2])
        if model == "SIMPLE_RADIAL":
            d["k1"] = p[3]
        if model == "RADIAL":
            d.update(k1=p[3], k2=p[4])
    elif model in ("PINHOLE", "OPENCV"):
        d.update(fl_x=p[0], fl_y=p[1], cx=p[2], cy=p[3])
        if model == "OPENCV":
            d.update(k1=p[4], k2=p[5], p1=p[6], p2=p[7])
    else:
        raise LightsfmError(f"camera model {model} has no nerfstudio equivalent")
    return d


def c2w_opengl(image: pycolmap.Image) -> np.ndarray:
    """Camera-to-world 4×4 with OpenGL camera axes (x right, y up, z backwards)."""
    m = np.eye(4)
    m[:3, :] = image.cam_from_world().inverse().matrix()
    m[:3, 1:3] *= -1
    return m


def _registered(rec: pycolmap.Reconstruction) -> list[pycolmap.Image]:
    return sorted((im for im in rec.images.values() if im.has_pose), key=lambda i: i.name)


def undistort(rec: pycolmap.Reconstruction, image_dir: Path, work: Path) -> pycolmap.Reconstruction:
    """The registered images of ``rec`` undistorted by pycolmap into ``work/images/`` at full
    resolution; returns the model with the matching PINHOLE cameras (same poses, points).

    Photos are read upright (EXIF orientation applied, as the model has them); a photo
    that can no longer be read is left out, with a warning.
    """
    from .dense import upright_inputs

    names = [im.name for im in _registered(rec)]
    if not names:
        raise LightsfmError("the model has no registered image to export")
    inputs = work / "inputs"
    skipped = upright_inputs(Path(image_dir), names, inputs)
    rec = colmap.copy_model(rec)
    for im in rec.images.values():
        if im.name in skipped and im.has_pose:
            rec.deregister_frame(im.frame_id)
    names = [n for n in names if n not in skipped]
    if not names:
        raise LightsfmError(f"{image_dir}: none of the model's photos can be read any more")
    model = work / "model"
    model.mkdir(parents=True)
    rec.write_binary(model)
    colmap.mvs.undistort_images(work / "undistorted", model, inputs, names)  # at full resolution
    out = colmap.read_model(work / "undistorted" / "sparse")
    check_written([work / "undistorted" / "images" / n for n in names])
    shutil.rmtree(inputs)
    for cam in out.cameras.values():
        # COLMAP leaves a SIMPLE_PINHOLE camera as it is; 3DGS loaders expect PINHOLE (fx, fy, cx, cy)
        if cam.model_name == "SIMPLE_PINHOLE":
            f, cx, cy = cam.params
            colmap.set_model(cam, "PINHOLE", [f, f, cx, cy])
        elif cam.model_name != "PINHOLE":
            raise LightsfmError(f"camera {cam.camera_id}: undistorted to {cam.model_name}, not PINHOLE")
    return out


def center_principal_points(rec: pycolmap.Reconstruction, images: Path) -> dict[int, tuple[int, int]]:
    """Crops each camera's undistorted images so that its principal point falls at the
    centre (within a pixel), for tools that assume it there; updates the cameras and the
    keypoints. Returns the crop offset (x, y) of each camera that was cropped."""
    offsets: dict[int, tuple[int, int]] = {}
    for cam_id, cam in rec.cameras.items():
        fx, fy, cx, cy = cam.params
        x0, w = _centred_span(cx, cam.width)
        y0, h = _centred_span(cy, cam.height)
        if (x0, w, y0, h) == (0, cam.width, 0, cam.height):
            continue
        if w < (1 - MAX_CENTER_CROP) * cam.width or h < (1 - MAX_CENTER_CROP) * cam.height:
            why = f"principal point ({cx:.1f}, {cy:.1f}) too far from the centre of {cam.width}x{cam.height}"
            logger.warning("camera %d: %s to crop; left as it is", cam_id, why)
            continue
        for im in rec.images.values():
            if im.camera_id != cam_id or not im.has_pose:
                continue
            path = images / im.name
            with Image.open(path) as pic:
                pic.load()
                cropped = pic.crop((x0, y0, x0 + w, y0 + h))
            _save(cropped, path)
            for p in im.points2D:
                p.xy = p.xy - np.array([x0, y0], dtype=float)
        cam.width, cam.height = w, h
        cam.params = [fx, fy, cx - x0, cy - y0]
        offsets[cam_id] = (x0, y0)
    return offsets


def _centred_span(c: float, size: int) -> tuple[int, int]:
    """Start and length of the widest span of ``size`` pixels centred on ``c`` (±0.5 px)."""
    if abs(c - size / 2) <= 0.5:
        return 0, size
    start = max(0, round(2 * c - size))  # a point right of the centre: crop on the left
    return start, max(1, min(size - start, round(2 * (c - start))))


def _save(im: Image.Image, path: Path) -> None:
    """Writes ``im`` over ``path`` (same format) through a temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    fmt = Image.registered_extensions().get(path.suffix.lower(), "JPEG")
    im.save(tmp, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    os.replace(tmp, path)


def write_downscaled(images: Path, names: list[str], factors: Sequence[int]) -> None:
    """``images_<f>/<name>``: each undistorted image reduced by ``f`` (box filter, rounded up)."""
    for f in factors:
        if f <= 1:
            continue
        for name in names:
            dst = images.with_name(f"{images.name}_{f}") / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(images / name) as im:
                im.load()
                _save(im.reduce(f), dst)


def _build(dest: Path, fill) -> Path:
    """Builds ``dest`` in ``dest.tmp`` with ``fill(tmp)`` and renames it into place."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by a killed export
    tmp.mkdir(parents=True)
    try:
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def to_3dgs(
    rec: pycolmap.Reconstruction,
    image_dir: Path,
    out: Path,
    downscales: Sequence[int] = DOWNSCALES,
    center_principal_point: bool = True,
) -> Path:
    """graphdeco's gaussian-splatting layout in ``out``: ``images/`` (undistorted, PINHOLE),
    ``sparse/0/{cameras,images,points3D}.bin``, ``images_<f>/`` for each of ``downscales``.
    ``center_principal_point``: crop so that every principal point is at its image's centre
    (graphdeco's loader uses the field of view alone). Returns ``out``."""

    def fill(tmp: Path) -> None:
        work = tmp / ".work"
        ud = undistort(rec, image_dir, work)
        os.replace(work / "undistorted" / "images", tmp / "images")
        names = [im.name for im in _registered(ud)]
        if center_principal_point:
            center_principal_points(ud, tmp / "images")
        sparse = tmp / "sparse" / "0"
        sparse.mkdir(parents=True)
        ud.write_binary(sparse)
        check_written(sorted(sparse.iterdir()))
        write_downscaled(tmp / "images", names, downscales)
        shutil.rmtree(work)

    return _build(Path(out), fill)


def to_nerfstudio(
    rec: pycolmap.Reconstruction, image_dir: Path, out: Path, downscales: Sequence[int] = DOWNSCALES
) -> Path:
    """nerfstudio's layout in ``out``: ``transforms.json`` over undistorted ``images/`` (and
    ``images_<f>/``) and ``sparse_pc.ply``, the model's points in the cameras' world frame.
    Returns the path of ``transforms.json``."""

    def fill(tmp: Path) -> None:
        work = tmp / ".work"
        ud = undistort(rec, image_dir, work)
        os.replace(work / "undistorted" / "images", tmp / "images")
        frames = []
        for image in _registered(ud):
            frames.append(
                {
                    "file_path": f"images/{image.name}",
                    "transform_matrix": c2w_opengl(image).tolist(),
                    **nerfstudio_intrinsics(image.camera),
                }
            )
        ud.export_PLY(tmp / "sparse_pc.ply")
        data: dict = {"camera_model": "OPENCV", "frames": frames, "ply_file_path": "sparse_pc.ply"}
        if ud.num_cameras() == 1:
            data.update(nerfstudio_intrinsics(next(iter(ud.cameras.values()))))
        check_written([tmp / "sparse_pc.ply"])
        atomic_write_text(tmp / "transforms.json", json.dumps(data, indent=2))
        write_downscaled(tmp / "images", [im.name for im in _registered(ud)], downscales)
        shutil.rmtree(work)

    return _build(Path(out), fill) / "transforms.json"


def main(output: Path, fmt: str, destination: Path | None = None, downscales: Sequence[int] = DOWNSCALES) -> Path:
    """Exports the run in ``output`` as ``fmt`` under ``destination`` (default OUT/export/<fmt>).

    ``downscales``: the smaller copies of the 3dgs and nerfstudio images (() for none).
    Returns the folder, or the file for nerfstudio (transforms.json) and imc-csv."""
    if fmt not in FORMATS:
        raise LightsfmError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    output = Path(output)
    ws = Workspace(output)
    models = mapping.load_models(output)
    if not models:
        raise LightsfmError(f"{output}: no model under sparse/; run `lightsfm reconstruct` first")
    dest = Path(destination) if destination else ws.export / fmt
    summary = ws.summary()
    if fmt in ("colmap-txt", "colmap-bin", "ply"):
        for k, rec in enumerate(models):
            d = dest / str(k)
            d.mkdir(parents=True, exist_ok=True)
            if fmt == "colmap-txt":
                rec.write_text(d)
            elif fmt == "colmap-bin":
                rec.write_binary(d)
            else:
                rec.export_PLY(d / "points.ply")
        return dest
    if fmt == "nerfstudio":
        return to_nerfstudio(models[0], ws.image_dir(), dest, downscales)
    if fmt == "3dgs":
        return to_3dgs(models[0], ws.image_dir(), dest, downscales)
    from .imc import poses_from_models

    names = summary["image_names"] + list(summary["skipped"])
    poses = poses_from_models(models, names)
    placeholder = Pose(np.eye(3), np.zeros(3))
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "submission.csv"
    write_poses(path, {("lightsfm", output.name): {n: poses.get(n, placeholder) for n in names}})
    return path
