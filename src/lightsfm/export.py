"""``lightsfm export OUT/ --format …``: the models in other tools' formats.

colmap-txt / colmap-bin (every model, ``EXPORT/<k>/``), ply (coloured points of each
model), nerfstudio (``transforms.json`` of the largest model, OpenGL camera axes as
nerfstudio expects), imc-csv (IMC2023 submission rows of all images).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pycolmap

from . import mapping
from .errors import LightsfmError
from .evaluate import Pose, write_poses

FORMATS = ("colmap-txt", "colmap-bin", "ply", "nerfstudio", "imc-csv")


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


def to_nerfstudio(rec: pycolmap.Reconstruction, image_dir: Path, out: Path) -> Path:
    frames = []
    for image in sorted(rec.images.values(), key=lambda i: i.name):
        if not image.has_pose:
            continue
        frames.append(
            {
                "file_path": os.path.relpath(Path(image_dir) / image.name, out),
                "transform_matrix": c2w_opengl(image).tolist(),
                **nerfstudio_intrinsics(image.camera),
            }
        )
    data: dict = {"camera_model": "OPENCV", "frames": frames}
    if rec.num_cameras() == 1:
        data.update(nerfstudio_intrinsics(next(iter(rec.cameras.values()))))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "transforms.json"
    path.write_text(json.dumps(data, indent=2))
    return path


def main(output: Path, fmt: str, destination: Path | None = None) -> Path:
    """Exports the run in ``output`` as ``fmt`` under ``destination`` (default OUT/export/<fmt>)."""
    if fmt not in FORMATS:
        raise LightsfmError(f"unknown export format {fmt!r}; one of {', '.join(FORMATS)}")
    output = Path(output)
    models = mapping.load_models(output)
    if not models:
        raise LightsfmError(f"{output}: no model under sparse/; run `lightsfm reconstruct` first")
    dest = Path(destination) if destination else output / "export" / fmt
    summary = json.loads((output / "summary.json").read_text())
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
        return to_nerfstudio(models[0], Path(summary["image_dir"]), dest)
    from .imc import poses_from_models

    names = summary["image_names"] + list(summary["skipped"])
    poses = poses_from_models(models, names)
    placeholder = Pose(np.eye(3), np.zeros(3))
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "submission.csv"
    write_poses(path, {("lightsfm", output.name): {n: poses.get(n, placeholder) for n in names}})
    return path
