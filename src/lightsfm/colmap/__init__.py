"""The one place that talks to pycolmap: database, mappers, models, poses, dense stereo.

pycolmap's objects (Database, Camera, Reconstruction) are the source of truth; this
package converts lightsfm's plain files (features.h5, matches) into them and back, and no
other lightsfm module imports pycolmap (tests/test_layers.py checks it). Other modules may
call methods on the objects it returns. By topic:

    cameras.py   which photos share a camera, and the COLMAP camera each group gets
    database.py  the COLMAP database: written by verification, read by mapping and the report
    bundle.py    the final bundle adjustment with covariance (principal points)
    mvs.py       COLMAP's dense workspace: undistortion, depth/normal maps, fusion, meshing
    here         mapper options and runs, models, poses, logging

COLMAP puts the origin at the top-left *corner* of the image, lightsfm (like OpenCV
and hloc) at the centre of the top-left pixel: keypoints gain 0.5 on the way in.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import cv2  # noqa: F401  (before pycolmap: see lightsfm/__init__.py)
import numpy as np
import pycolmap
from tqdm import tqdm

from ..evaluate import Pose
from . import bundle, mvs
from .cameras import (
    CAMERA_MODELS,
    CAMERA_MODES,
    KnownCamera,
    group_cameras,
    is_camera_model,
    known_cameras,
    make_camera,
    parse_camera,
    set_model,
)
from .database import (
    cameras_moved,
    create_database,
    delete_verified_pairs,
    estimate_two_view_geometry,
    focal_lengths,
    image_names,
    keypoints,
    matches_and_inliers,
    num_images,
    num_position_priors,
    set_focal_lengths,
    split_cameras,
    transaction,
    two_view_geometry,
    two_view_options,
    verified_pairs,
    write_position_priors,
)

__all__ = [
    "CAMERA_MODELS",
    "CAMERA_MODES",
    "bundle",
    "camera_poses",
    "cameras_moved",
    "colorize",
    "copy_model",
    "create_database",
    "delete_verified_pairs",
    "estimate_two_view_geometry",
    "focal_lengths",
    "global_mapping",
    "global_options",
    "group_cameras",
    "image_names",
    "keypoints",
    "incremental_mapping",
    "is_camera_model",
    "known_cameras",
    "KnownCamera",
    "parse_camera",
    "make_camera",
    "mapper_options",
    "mvs",
    "matches_and_inliers",
    "num_images",
    "observations",
    "poses_from_models",
    "read_model",
    "reregister",
    "num_position_priors",
    "set_focal_lengths",
    "split_cameras",
    "write_position_priors",
    "set_model",
    "set_verbose",
    "summary",
    "transaction",
    "transformed",
    "two_view_geometry",
    "two_view_options",
    "verified_pairs",
    "version",
]


def version() -> str:
    """pycolmap's version."""
    return pycolmap.__version__


def set_verbose(verbose: bool) -> None:
    """COLMAP's own log lines only when ``verbose``: lightsfm reports its errors (e.g. "Failed
    to create any sparse model") in one line of its own."""
    pycolmap.logging.minloglevel = 0 if verbose else 3


def mapper_options(
    conf: dict[str, Any], image_names: list[str] | None = None, position_priors: bool = False
) -> pycolmap.IncrementalPipelineOptions:
    """Incremental pipeline options from lightsfm's mapping conf (see mapping.default_conf);
    ``image_names``: map only these photos of the database; ``position_priors``: use the
    database's pose priors (there must be some: pycolmap maps nothing otherwise)."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.image_names = list(image_names or [])
    opts.min_model_size = conf["min_model_size"]
    opts.max_num_models = conf["max_num_models"]
    opts.multiple_models = conf["max_num_models"] > 1
    opts.num_threads = conf.get("num_threads") or os.cpu_count() or 1
    opts.random_seed = conf["seed"]
    opts.extract_colors = False  # lightsfm colours points itself, in EXIF-upright images
    opts.ba_refine_focal_length = conf["refine_focal_length"]
    opts.ba_refine_principal_point = conf["refine_principal_point"]
    opts.ba_refine_extra_params = conf["refine_extra_params"]
    # GPS positions (pose priors in the database) in bundle adjustment, robustly: a photo
    # with its GPS far off is pulled, not obeyed
    opts.use_prior_position = position_priors
    opts.use_robust_loss_on_prior_position = True
    opts.mapper.init_min_tri_angle = conf["init_min_tri_angle"]
    opts.mapper.init_min_num_inliers = conf["init_min_num_inliers"]
    opts.mapper.abs_pose_min_num_inliers = conf["abs_pose_min_num_inliers"]
    opts.mapper.filter_min_tri_angle = conf["min_tri_angle"]
    opts.mapper.random_seed = conf["seed"]
    opts.triangulation.min_angle = conf["min_tri_angle"]
    opts.ba_local_max_refinements = conf["ba_local_max_refinements"]
    opts.ba_global_max_refinements = conf["ba_global_max_refinements"]
    opts.ba_local_max_num_iterations = conf["ba_local_max_iterations"]
    opts.ba_global_max_num_iterations = conf["ba_global_max_iterations"]
    opts.ba_local_function_tolerance = opts.ba_global_function_tolerance = conf["ba_function_tolerance"]
    opts.ba_global_frames_ratio = opts.ba_global_points_ratio = conf["ba_global_growth"]
    opts.mapper.ba_global_ignore_redundant_points3D = conf["ba_global_skip_redundant_points"]
    opts.triangulation.random_seed = conf["seed"]
    for key, value in conf.get("pycolmap", {}).items():  # escape hatch: any other option by name
        target = opts
        *parents, leaf = key.split(".")
        for p in parents:
            target = getattr(target, p)
        setattr(target, leaf, value)
    return opts


def incremental_mapping(
    database: Path, image_dir: Path, output: Path, options: pycolmap.IncrementalPipelineOptions
) -> list[pycolmap.Reconstruction]:
    """Runs pycolmap's incremental mapper; models sorted by registered images, largest first."""
    tmp = Path(output).with_name(Path(output).name + ".mapper")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with tqdm(total=num_images(database), desc="map", unit="img") as bar:
        # one tick per image the mapper registers (across models, so it may pass the total)
        models = pycolmap.incremental_mapping(
            database,
            image_dir,
            tmp,
            options,
            initial_image_pair_callback=lambda: bar.update(2),
            next_image_callback=lambda: bar.update(1),
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


def reregister(
    database: Path,
    image_dir: Path,
    rec: pycolmap.Reconstruction,
    names: list[str],
    work_dir: Path,
    options: pycolmap.IncrementalPipelineOptions,
) -> pycolmap.Reconstruction:
    """``rec`` with the images ``names`` taken out and registered again by the incremental
    mapper, continuing from the rest of the model held fixed (it may also add images the
    model had left out). ``options`` is changed."""
    rec = pycolmap.Reconstruction(rec)
    for image in rec.images.values():
        if image.name in names and image.has_pose:
            rec.deregister_frame(image.frame_id)
    shutil.rmtree(work_dir, ignore_errors=True)
    (work_dir / "input").mkdir(parents=True)
    rec.write(work_dir / "input")
    options.fix_existing_frames = True
    models = pycolmap.incremental_mapping(
        database, image_dir, work_dir / "output", options, input_path=work_dir / "input"
    )
    shutil.rmtree(work_dir, ignore_errors=True)
    return max(models.values(), key=lambda r: r.num_reg_images()) if models else rec


def global_options(conf: dict[str, Any], image_names: list[str] | None = None) -> pycolmap.GlobalPipelineOptions:
    """Global (GLOMAP) pipeline options from lightsfm's mapping conf; ``image_names``: map
    only these photos of the database."""
    opts = pycolmap.GlobalPipelineOptions()
    opts.image_names = list(image_names or [])
    opts.min_model_size = conf["min_model_size"]
    opts.multiple_models = conf["max_num_models"] > 1
    opts.num_threads = conf.get("num_threads") or os.cpu_count() or 1
    opts.random_seed = conf["seed"]
    opts.mapper.bundle_adjustment.refine_focal_length = conf["refine_focal_length"]
    opts.mapper.bundle_adjustment.refine_principal_point = conf["refine_principal_point"]
    opts.mapper.bundle_adjustment.refine_extra_params = conf["refine_extra_params"]
    return opts


def global_mapping(
    database: Path, image_dir: Path, output: Path, options: pycolmap.GlobalPipelineOptions
) -> list[pycolmap.Reconstruction]:
    """Runs pycolmap's global mapper (rotation averaging, global positioning, bundle
    adjustment) on a copy of the database, which it would otherwise change; largest model first."""
    tmp = Path(output).with_name(Path(output).name + ".global")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "sparse").mkdir(parents=True)
    shutil.copyfile(database, tmp / "database.db")
    models = pycolmap.global_mapping(tmp / "database.db", image_dir, tmp / "sparse", options)
    shutil.rmtree(tmp, ignore_errors=True)
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


def observations(image: pycolmap.Image) -> tuple[np.ndarray, np.ndarray]:
    """The indices of an image's keypoints that observe a 3D point, and those points' ids
    (one Python call per observation, not per keypoint: pycolmap has no array of either)."""
    idx = np.asarray(image.get_observation_point2D_idxs(), dtype=np.int64)
    ids = np.fromiter((p.point3D_id for p in image.get_observation_points2D()), np.int64, len(idx))
    return idx, ids


def colorize(rec: pycolmap.Reconstruction, observed: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Sets each 3D point's colour to the mean colour of its observations.

    ``observed``: per photo, the 3D point ids its keypoints see and those keypoints' RGB colours.
    """
    ids = np.concatenate([pids for pids, _ in observed] + [np.zeros(0, np.int64)])
    colors = np.concatenate([np.asarray(c, dtype=np.float64) for _, c in observed] + [np.zeros((0, 3))])
    points, which = np.unique(ids, return_inverse=True)
    sums = np.zeros((len(points), 3))
    np.add.at(sums, which, colors)
    mean = np.round(sums / np.bincount(which, minlength=len(points))[:, None]).astype(np.uint8)
    for pid, color in zip(points.tolist(), mean, strict=True):
        rec.points3D[pid].color = color


def summary(rec: pycolmap.Reconstruction) -> dict[str, float]:
    """Registered images, points, mean track length and mean reprojection error of a model."""
    return {
        "registered": rec.num_reg_images(),
        "points": rec.num_points3D(),
        "mean_track_length": rec.compute_mean_track_length() if rec.num_points3D() else 0.0,
        "mean_reprojection_error": rec.compute_mean_reprojection_error() if rec.num_points3D() else 0.0,
    }


def read_model(folder: Path) -> pycolmap.Reconstruction:
    """A COLMAP model (binary or text) from ``folder``; ValueError when it holds none."""
    return pycolmap.Reconstruction(Path(folder))


def copy_model(rec: pycolmap.Reconstruction) -> pycolmap.Reconstruction:
    """A copy of ``rec`` that can be changed without changing ``rec``."""
    return pycolmap.Reconstruction(rec)


def camera_poses(rec: pycolmap.Reconstruction) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """World-to-camera rotation (3, 3) and camera centre (3,) of each registered image, by name."""
    out = {}
    for image in rec.images.values():
        if image.has_pose:
            pose = image.cam_from_world()
            out[image.name] = (np.asarray(pose.rotation.matrix()), np.asarray(image.projection_center()))
    return out


def transformed(
    rec: pycolmap.Reconstruction, scale: float, rotation: np.ndarray, translation: np.ndarray
) -> pycolmap.Reconstruction:
    """A copy of ``rec`` moved by new = scale · rotation · old + translation: every pose and
    3D point, by pycolmap's own Sim3d (cameras and 2D observations are unchanged)."""
    new_from_old = pycolmap.Sim3d(
        float(scale), pycolmap.Rotation3d(np.asarray(rotation, dtype=np.float64)), np.asarray(translation, np.float64)
    )
    out = pycolmap.Reconstruction(rec)
    out.transform(new_from_old)
    return out


def poses_from_models(models: list, names: list[str], duplicates: dict[str, str] | None = None) -> dict[str, Pose]:
    """Pose of each registered image of ``names`` (world-to-camera), from the largest model
    first; a byte-identical copy of a photo (``duplicates``: copy → photo) gets its pose."""
    poses: dict[str, Pose] = {}
    for rec in models:
        for image in rec.images.values():
            if image.has_pose and image.name in names and image.name not in poses:
                p = image.cam_from_world()
                poses[image.name] = Pose(np.asarray(p.rotation.matrix()), np.asarray(p.translation))
    for copy, original in (duplicates or {}).items():
        if copy in names and original in poses:
            poses[copy] = poses[original]
    return poses
