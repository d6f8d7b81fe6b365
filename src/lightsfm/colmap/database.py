"""The COLMAP database: written once by verification, read by mapping, checks and the report.

Keypoints go in with COLMAP's pixel convention (origin at the image's top-left corner,
lightsfm's + 0.5); match and inlier indices are the same in both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pycolmap

from ..graph import components
from ..images import ImageInfo
from .cameras import KnownCamera, group_cameras, make_camera


def create_database(
    path: Path,
    infos: list[ImageInfo],
    keypoints: dict[str, np.ndarray],
    camera_mode: str = "auto",
    camera_model: str = "auto",
    known: dict[str, KnownCamera] | None = None,
) -> tuple[pycolmap.Database, dict[str, int]]:
    """A new COLMAP database with cameras, rigs, frames, images and keypoints.

    ``keypoints`` maps image names to (N, 2) arrays in lightsfm's pixel convention;
    ``known``: the cameras of photos whose intrinsics are given (lightsfm.colmap.known_cameras).
    Returns the open database and the image id of each name.
    """
    if path.exists():
        path.unlink()
    db = pycolmap.Database.open(path)
    ids: dict[str, int] = {}
    camera_of: dict[int, tuple[int, int]] = {}  # info index → (camera id, rig id)
    known = known or {}
    for group in group_cameras(infos, camera_mode, known):
        camera = make_camera(infos[group[0]], camera_model, known.get(infos[group[0]].name))
        camera.camera_id = db.write_camera(camera)
        # COLMAP 4 models every camera as a rig; each image is a frame of that rig.
        rig = pycolmap.Rig()
        rig.add_ref_sensor(camera.sensor_id)
        rig_id = db.write_rig(rig)
        camera_of.update({i: (camera.camera_id, rig_id) for i in group})
    # images in the order given: photos added to a model later come last and leave the ids
    # (and cameras) of the model's photos as they were
    for i, info in enumerate(infos):
        camera_id, rig_id = camera_of[i]
        image = pycolmap.Image(name=info.name, camera_id=camera_id)
        image.image_id = db.write_image(image)
        frame = pycolmap.Frame(rig_id=rig_id)
        frame.add_data_id(image.data_id)
        db.write_frame(frame)
        db.write_keypoints(image.image_id, (keypoints[info.name] + 0.5).astype(np.float32))
        ids[info.name] = image.image_id
    return db, ids


def transaction(db: pycolmap.Database) -> pycolmap.DatabaseTransaction:
    """A context in which all writes to ``db`` are one SQLite transaction (much faster)."""
    return pycolmap.DatabaseTransaction(db)


def two_view_geometry(inlier_matches: np.ndarray, F: np.ndarray | None = None) -> pycolmap.TwoViewGeometry:
    """An uncalibrated two-view geometry (fundamental matrix) with its inlier matches."""
    tvg = pycolmap.TwoViewGeometry()
    tvg.config = pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
    if F is not None:
        tvg.F = F
    tvg.inlier_matches = inlier_matches.astype(np.uint32)
    return tvg


def two_view_options(min_inliers: int, confidence: float, max_iterations: int) -> pycolmap.TwoViewGeometryOptions:
    """COLMAP's two-view geometry estimator's options (seeded: the same matches, the same inliers)."""
    opts = pycolmap.TwoViewGeometryOptions()
    opts.min_num_inliers = min_inliers
    opts.ransac.confidence = confidence
    opts.ransac.max_num_trials = max_iterations
    opts.ransac.random_seed = 0
    return opts


def estimate_two_view_geometry(
    camera1: pycolmap.Camera,
    points1: np.ndarray,
    camera2: pycolmap.Camera,
    points2: np.ndarray,
    max_error: float,
    options: pycolmap.TwoViewGeometryOptions,
) -> pycolmap.TwoViewGeometry:
    """COLMAP's two-view geometry (planar and calibrated configurations told apart) of the
    matched points ``points1[i]`` ↔ ``points2[i]`` (lightsfm's pixels); its inlier matches
    index those rows. ``options`` gets ``max_error`` (pixels)."""
    options.ransac.max_error = max_error
    return pycolmap.estimate_two_view_geometry(
        camera1,
        points1 + 0.5,
        camera2,
        points2 + 0.5,
        np.stack([np.arange(len(points1)), np.arange(len(points1))], 1).astype(np.uint32),
        options,
    )


def num_images(database: Path) -> int:
    """Images in the database (registered or not)."""
    db = pycolmap.Database.open(database)
    try:
        return db.num_images()
    finally:
        db.close()


def verified_pairs(database: Path) -> dict[tuple[int, int], np.ndarray]:
    """Inlier matches (N, 2) of every verified pair in the database, by image ids."""
    db = pycolmap.Database.open(database)
    try:
        pair_ids, geometries = db.read_two_view_geometries()
    finally:
        db.close()
    out = {}
    for pair_id, tvg in zip(pair_ids, geometries, strict=True):
        matches = np.asarray(tvg.inlier_matches)
        if len(matches):
            out[tuple(pycolmap.pair_id_to_image_pair(pair_id))] = matches
    return out


def keypoints(database: Path) -> dict[int, np.ndarray]:
    """Every image's keypoints (N, 2), in pixels, by image id: what a model's ``points2D``
    hold, read as arrays (0.2 ms a photo where a model's points2D take 2.9 ms)."""
    db = pycolmap.Database.open(database)
    try:
        return {im.image_id: db.read_keypoints(im.image_id)[:, :2].astype(np.float64) for im in db.read_all_images()}
    finally:
        db.close()


def matches_and_inliers(database: Path) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Every matched pair by image names: its raw matches (N, 2) and a mask of the verified ones."""
    db = pycolmap.Database.open(database)
    try:
        names = {im.image_id: im.name for im in db.read_all_images()}
        inliers = {}
        ids, geoms = db.read_two_view_geometries()
        for pid, g in zip(ids, geoms, strict=True):
            inliers[pid] = g.inlier_matches
        out = {}
        pair_ids, matches = db.read_all_matches()
        for pid, m in zip(pair_ids, matches, strict=True):
            a, b = pycolmap.pair_id_to_image_pair(pid)
            m = np.asarray(m)
            inl = np.zeros(len(m), bool)
            if pid in inliers and len(inliers[pid]):
                good = {tuple(x) for x in np.asarray(inliers[pid]).tolist()}
                inl = np.array([tuple(x) in good for x in m.tolist()])
            out[(names[a], names[b])] = (m, inl)
    finally:
        db.close()
    return out


def focal_lengths(database: Path) -> dict[int, tuple[float, bool]]:
    """Each camera's focal length in the database and whether it is a prior (EXIF or given)."""
    db = pycolmap.Database.open(database)
    try:
        cameras = db.read_all_cameras()
        return {c.camera_id: (float(c.mean_focal_length()), bool(c.has_prior_focal_length)) for c in cameras}
    finally:
        db.close()


def delete_verified_pairs(database: Path, pairs: list[tuple[int, int]]) -> None:
    """Deletes the inlier matches (verified geometry) of these image-id pairs, in one transaction."""
    db = pycolmap.Database.open(database)
    try:
        with pycolmap.DatabaseTransaction(db):
            for a, b in pairs:
                db.delete_inlier_matches(a, b)
    finally:
        db.close()


def set_focal_lengths(database: Path, focals: dict[int, tuple[float, bool]]) -> None:
    """Sets these cameras' focal lengths and whether each is a prior (camera id → (focal,
    prior)), in one transaction: what ``focal_lengths`` reads."""
    db = pycolmap.Database.open(database)
    try:
        with pycolmap.DatabaseTransaction(db):
            for cam in db.read_all_cameras():
                if cam.camera_id in focals:
                    params = np.array(cam.params, dtype=np.float64)
                    focal, prior = focals[cam.camera_id]
                    params[list(cam.focal_length_idxs())] = focal
                    cam.params = params
                    cam.has_prior_focal_length = prior
                    db.update_camera(cam)
    finally:
        db.close()


def _move_images(db: pycolmap.Database, images: list[pycolmap.Image], camera: pycolmap.Camera) -> None:
    """Puts ``images`` (and their frames) on ``camera``, which is in ``db`` with a rig of its own
    made here (COLMAP 4: a frame belongs to a rig, the rig names the camera)."""
    rig = pycolmap.Rig()
    rig.add_ref_sensor(camera.sensor_id)
    rig_id = db.write_rig(rig)
    for image in images:
        image.camera_id = camera.camera_id
        frame = db.read_frame(image.frame_id)  # (the frame first: COLMAP checks the image against it)
        frame.rig_id = rig_id
        frame.clear_data_ids()
        frame.add_data_id(image.data_id)
        db.update_frame(frame)
        db.update_image(image)


def split_cameras(db: pycolmap.Database, linked: list[tuple[int, int]]) -> dict[int, list[int]]:
    """Gives each group of photos that share a camera but are not linked to each other (by
    ``linked`` image-id pairs, directly or through other photos) a copy of that camera.

    Photos of one size without EXIF share a camera, even when they come from different scenes
    or cameras (two object rings in one folder); one scene's mapping would then move the
    other's intrinsics. The largest group keeps the camera; photos linked to nothing stay on
    it. Returns each new camera's id → the camera it was copied from and its image ids
    ([source, image ids…])."""
    part = components([], linked)  # (photos linked to nothing are in no part: they stay)
    groups: dict[int, dict[int, list[pycolmap.Image]]] = {}
    for image in db.read_all_images():
        if image.image_id in part:
            groups.setdefault(image.camera_id, {}).setdefault(part[image.image_id], []).append(image)
    made: dict[int, list[int]] = {}
    for camera_id, parts in sorted(groups.items()):
        ordered = sorted(parts.values(), key=lambda p: (-len(p), min(i.image_id for i in p)))
        for part in ordered[1:]:
            if len(part) < 2:  # a photo linked only to other cameras' photos: nothing to move apart
                continue
            camera = db.read_camera(camera_id)
            camera.camera_id = db.write_camera(camera)
            _move_images(db, part, camera)
            made[camera.camera_id] = [camera_id] + sorted(i.image_id for i in part)
    return made


def cameras_moved(database: Path, rec: pycolmap.Reconstruction) -> list[str]:
    """The model's photos that the database puts on another camera than ``rec`` does."""
    with pycolmap.Database.open(database) as db:
        in_db = {im.name: im.camera_id for im in db.read_all_images()}
    return sorted(im.name for im in rec.images.values() if in_db.get(im.name, im.camera_id) != im.camera_id)


def write_position_priors(db: pycolmap.Database, priors: dict[int, tuple[np.ndarray, float]]) -> None:
    """Position priors of images (image id → (x, y, z) in local metres, one-sigma error in
    metres), for a mapper run with ``use_prior_position``."""
    for image_id, (xyz, sigma) in priors.items():
        image = db.read_image(image_id)
        prior = pycolmap.PosePrior(
            corr_data_id=image.data_id,
            position=np.asarray(xyz, dtype=np.float64),
            position_covariance=np.eye(3) * float(sigma) ** 2,
            coordinate_system=pycolmap.PosePriorCoordinateSystem.CARTESIAN,
        )
        db.write_pose_prior(prior)


def num_position_priors(database: Path) -> int:
    """Images of the database with a position prior."""
    with pycolmap.Database.open(database) as db:
        return db.num_pose_priors()


def image_names(database: Path) -> dict[int, str]:
    """Each image's name by its id."""
    with pycolmap.Database.open(database) as db:
        return {im.image_id: im.name for im in db.read_all_images()}
