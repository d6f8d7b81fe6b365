"""Geometric verification of the matches → ``database.db``.

Each matched pair is checked with RANSAC on the epipolar geometry: OpenCV's MAGSAC++
fundamental matrix (``magsac``, default) or COLMAP's own two-view geometry estimator
(``colmap``, which also tells planar and calibrated configurations apart). The COLMAP
database gets cameras, images, keypoints, raw matches and the verified inlier matches;
it is rebuilt from features.h5 and matches.h5 on every run, written beside and renamed.
Each pair's RANSAC is a work item (``VerifyTask``) run by an executor; the database is
written here, in the order of the pairs, whoever computed them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import colmap
from .errors import LightsfmError
from .executor import Executor, LocalExecutor
from .geometry import ransac_fundamental
from .images import ImageInfo
from .io import name_to_key, pair_to_key

default_conf: dict[str, Any] = {
    "method": "magsac",  # magsac | colmap
    "threshold": 1.0,  # max epipolar error, in pixels of the image features were extracted from
    "confidence": 0.9999,
    "max_iterations": 10000,
    "min_inliers": 15,
    "min_match_score": 0.0,  # drop matches the matcher was less sure of before RANSAC
    "camera_mode": "auto",  # auto | per-clip | single | per-image
    "camera_model": "auto",  # auto (radial with EXIF, pinhole without) or a COLMAP model name
    # Known intrinsics: one camera for every photo ("OPENCV:fx,fy,cx,cy,k1,k2,p1,p2"), or a
    # file of "GLOB MODEL:v1,v2,…" lines; these photos' cameras stay as given unless
    # mapping.refine_intrinsics says otherwise.
    "camera_params": None,
    "cameras_file": None,
}
flags: dict[str, str | tuple[str, str]] = {
    "method": ("--verifier", "RANSAC: magsac (OpenCV) or colmap."),
    "threshold": ("--ransac-threshold", "Epipolar error (px at feature size)."),
    "min_inliers": "Verified pairs need this many inliers.",
    "camera_mode": (
        "auto (shared per camera and per linked group of photos), per-clip (auto, and one per video clip), "
        "single, per-image."
    ),
    "camera_model": "auto (SIMPLE_RADIAL with EXIF, SIMPLE_PINHOLE without) or a COLMAP model.",
    "min_match_score": "Drop matches scored below this before RANSAC.",
    "camera_params": "Known intrinsics of every photo: MODEL:v1,v2,… (e.g. PINHOLE:fx,fy,cx,cy).",
    "cameras_file": "Known intrinsics per photo: a file of 'GLOB MODEL:v1,v2,…' lines.",
    "confidence": ("--ransac-confidence", "RANSAC confidence."),
    "max_iterations": ("--ransac-iterations", "RANSAC maximum iterations."),
}


class VerifyTask:
    """One pair as a work item: (a, b) → (a, b, its matches (N, 2) or None when the pair was
    not matched, its verified geometry or None when RANSAC rejects it).

    Picklable; reads the pair's matches and the images' keypoints from the files on first
    use (on a cluster, a path every worker sees). ``cameras`` (by image name) only for
    ``method = colmap``.
    """

    # One pair per core at once (OpenCV's RANSAC leaves the GIL; each RANSAC is seeded per
    # call): tensorf_object80's 557 pairs in 1.1 s instead of 2.0-2.3 s, the same inliers.
    side_by_side = True

    def __init__(self, feature_file: Path, match_file: Path, conf: dict[str, Any], cameras: dict | None = None) -> None:
        self.feature_file, self.match_file, self.conf = Path(feature_file), Path(match_file), conf
        self.cameras = cameras or {}
        self._files: tuple[h5py.File, h5py.File] | None = None
        self._kpts: dict[str, tuple[np.ndarray, float]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": None, "_kpts": {}}

    def keypoints(self, name: str) -> tuple[np.ndarray, float]:
        """An image's keypoints and extraction scale, the most recent 64 images kept."""
        if name not in self._kpts:
            if len(self._kpts) >= 64:
                self._kpts.pop(next(iter(self._kpts)))
            g = self._files[0][name_to_key(name)]
            self._kpts[name] = (g["keypoints"][()], float(g.attrs["scale"]))
        return self._kpts[name]

    def __call__(self, pair: tuple[str, str]) -> tuple[str, str, np.ndarray | None, Any]:
        a, b = pair
        c = self.conf
        if self._files is None:
            self._files = (h5py.File(self.feature_file, "r"), h5py.File(self.match_file, "r"))
        fm = self._files[1]
        key, swap = pair_to_key(a, b), False
        if key not in fm:
            key, swap = pair_to_key(b, a), True
            if key not in fm:
                return a, b, None, None
        m0 = fm[key]["matches0"][()]
        valid = (m0 > -1) & (fm[key]["scores0"][()] >= c["min_match_score"])
        matches = np.stack([np.nonzero(valid)[0], m0[valid]], 1)
        if swap:
            matches = matches[:, ::-1]
        (ka, sa), (kb, sb) = self.keypoints(a), self.keypoints(b)
        p0, p1 = ka[matches[:, 0]], kb[matches[:, 1]]
        thr = c["threshold"] * 0.5 * (sa + sb)
        if c["method"] == "magsac":
            F, inl = ransac_fundamental(p0, p1, thr, c["confidence"], c["max_iterations"])
            tvg = colmap.two_view_geometry(matches[inl], F) if inl.sum() >= c["min_inliers"] else None
        elif c["method"] == "colmap":
            opts = colmap.two_view_options(c["min_inliers"], c["confidence"], c["max_iterations"])
            tvg = colmap.estimate_two_view_geometry(self.cameras[a], p0, self.cameras[b], p1, thr, opts)
            if len(tvg.inlier_matches) < c["min_inliers"]:
                tvg = None
            else:
                tvg.inlier_matches = matches[tvg.inlier_matches[:, 0]].astype(np.uint32)
        else:
            raise ValueError(f"unknown verification method {c['method']!r} (magsac, colmap)")
        return a, b, matches.astype(np.uint32), tvg


def known_cameras(infos: list[ImageInfo], conf: dict[str, Any]) -> dict[str, colmap.KnownCamera]:
    """The given camera of each photo that has one (``camera_params`` or ``cameras_file``);
    a one-line LightsfmError when they cannot be used."""
    try:
        return colmap.known_cameras(infos, conf.get("camera_params"), conf.get("cameras_file"))
    except ValueError as e:
        raise LightsfmError(f"known cameras: {e}") from None


def main(
    infos: list[ImageInfo],
    pairs: list[tuple[str, str]],
    feature_file: Path,
    match_file: Path,
    database: Path,
    conf: dict[str, Any] | None = None,
    executor: Executor | None = None,
    priors: dict[str, tuple[np.ndarray, float]] | None = None,
) -> dict[str, Any]:
    """Builds ``database`` from the features and verified matches; returns per-pair inlier counts.

    ``priors``: position priors of photos (name → local metres (3,), one-sigma metres),
    e.g. from GPS (lightsfm.gps), written for the mapper."""
    conf = {**default_conf, **(conf or {})}
    executor = executor or LocalExecutor()
    with h5py.File(feature_file, "r") as ff:
        infos = [i for i in infos if name_to_key(i.name) in ff]
        kpts = {i.name: ff[name_to_key(i.name)]["keypoints"][()] for i in infos}
    database = Path(database)
    tmp = database.with_name(database.name + ".tmp")
    # SQLite's side files (write-ahead log) go with the temporary database
    side = [tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")]
    for f in side:  # left by a killed or failed run
        f.unlink(missing_ok=True)
    try:
        known = known_cameras(infos, conf)
        db, ids = colmap.create_database(tmp, infos, kpts, conf["camera_mode"], conf["camera_model"], known)
        cam_of = None
        if conf["method"] == "colmap":  # (COLMAP's estimator needs the cameras; MAGSAC++ does not)
            cameras = {c.camera_id: c for c in db.read_all_cameras()}
            cam_of = {im.name: cameras[im.camera_id] for im in db.read_all_images()}
        if priors:
            colmap.write_position_priors(db, {ids[n]: p for n, p in priors.items() if n in ids})
        task = VerifyTask(feature_file, match_file, conf, cam_of)
        todo = [(a, b) for a, b in pairs if a in ids and b in ids]
        stats: dict[str, Any] = {"pairs": 0, "verified": 0, "inliers": {}}
        with db, colmap.transaction(db):
            for a, b, matches, tvg in executor.map(task, todo, desc="verify", unit="pair"):
                if matches is None:  # not matched
                    continue
                stats["pairs"] += 1
                db.write_matches(ids[a], ids[b], matches)
                if tvg is None:
                    continue
                db.write_two_view_geometry(ids[a], ids[b], tvg)
                stats["verified"] += 1
                stats["inliers"][(a, b)] = len(tvg.inlier_matches)
            if conf["camera_mode"] in ("auto", "per-clip"):
                # one camera per scene, not per image size: the 309-photo mix mapped the dino
                # on the temple's camera (both 640×480 without EXIF) and scored 0.293, not 0.945
                linked = [(ids[a], ids[b]) for a, b in stats["inliers"]]
                made = colmap.split_cameras(db, linked)
                stats["cameras_split"] = {c: len(v) - 1 for c, v in made.items()}
    except RuntimeError as e:
        # COLMAP reports a full disk only as a failed SQLite call; the old database stays
        for f in side:
            f.unlink(missing_ok=True)
        msg = " ".join(str(e).split())
        raise LightsfmError(
            f"{database}: cannot be written (COLMAP: {msg}); if the disk is full, free some space and run again"
        ) from None
    os.replace(tmp, database)
    return stats
