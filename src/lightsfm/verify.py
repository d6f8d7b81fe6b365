"""Geometric verification of the matches → ``database.db``.

Each matched pair is checked with RANSAC on the epipolar geometry: OpenCV's MAGSAC++
fundamental matrix (``magsac``, default) or COLMAP's own two-view geometry estimator
(``colmap``, which also tells planar and calibrated configurations apart). The COLMAP
database gets cameras, images, keypoints, raw matches and the verified inlier matches;
it is rebuilt from features.h5 and matches.h5 on every run, written beside and renamed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from tqdm import tqdm

from . import colmap
from .errors import LightsfmError
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
    "camera_mode": "auto",  # auto | single | per-image
    "camera_model": "auto",  # auto (radial with EXIF, pinhole without) or a COLMAP model name
}
flags: dict[str, str | tuple[str, str]] = {
    "method": ("--verifier", "RANSAC: magsac (OpenCV) or colmap."),
    "threshold": ("--ransac-threshold", "Epipolar error (px at feature size)."),
    "min_inliers": "Verified pairs need this many inliers.",
    "camera_mode": "auto (shared per camera), single, per-image.",
    "camera_model": "auto (SIMPLE_RADIAL with EXIF, SIMPLE_PINHOLE without) or a COLMAP model.",
    "min_match_score": "Drop matches scored below this before RANSAC.",
    "confidence": ("--ransac-confidence", "RANSAC confidence."),
    "max_iterations": ("--ransac-iterations", "RANSAC maximum iterations."),
}


def main(
    infos: list[ImageInfo],
    pairs: list[tuple[str, str]],
    feature_file: Path,
    match_file: Path,
    database: Path,
    conf: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Builds ``database`` from the features and verified matches; returns per-pair inlier counts."""
    conf = {**default_conf, **(conf or {})}
    with h5py.File(feature_file, "r") as ff:
        infos = [i for i in infos if name_to_key(i.name) in ff]
        kpts = {i.name: ff[name_to_key(i.name)]["keypoints"][()] for i in infos}
        scale = {i.name: float(ff[name_to_key(i.name)].attrs["scale"]) for i in infos}
    database = Path(database)
    tmp = database.with_name(database.name + ".tmp")
    # SQLite's side files (write-ahead log) go with the temporary database
    side = [tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")]
    for f in side:  # left by a killed or failed run
        f.unlink(missing_ok=True)
    try:
        db, ids = colmap.create_database(tmp, infos, kpts, conf["camera_mode"], conf["camera_model"])
        cameras = {c.camera_id: c for c in db.read_all_cameras()}
        cam_of = {im.name: cameras[im.camera_id] for im in db.read_all_images()}
        tvg_opts = colmap.two_view_options(conf["min_inliers"], conf["confidence"], conf["max_iterations"])
        stats: dict[str, Any] = {"pairs": 0, "verified": 0, "inliers": {}}
        with h5py.File(match_file, "r") as fm, db, colmap.transaction(db):
            for a, b in tqdm(pairs, desc="verify", unit="pair"):
                if a not in ids or b not in ids:
                    continue
                key, swap = pair_to_key(a, b), False
                if key not in fm:
                    key, swap = pair_to_key(b, a), True
                    if key not in fm:
                        continue
                m0 = fm[key]["matches0"][()]
                valid = (m0 > -1) & (fm[key]["scores0"][()] >= conf["min_match_score"])
                matches = np.stack([np.nonzero(valid)[0], m0[valid]], 1)
                if swap:
                    matches = matches[:, ::-1]
                stats["pairs"] += 1
                db.write_matches(ids[a], ids[b], matches.astype(np.uint32))
                p0, p1 = kpts[a][matches[:, 0]], kpts[b][matches[:, 1]]
                thr = conf["threshold"] * 0.5 * (scale[a] + scale[b])
                if conf["method"] == "magsac":
                    F, inl = ransac_fundamental(p0, p1, thr, conf["confidence"], conf["max_iterations"])
                    if inl.sum() < conf["min_inliers"]:
                        continue
                    tvg = colmap.two_view_geometry(matches[inl], F)
                elif conf["method"] == "colmap":
                    tvg = colmap.estimate_two_view_geometry(cam_of[a], p0, cam_of[b], p1, thr, tvg_opts)
                    if len(tvg.inlier_matches) < conf["min_inliers"]:
                        continue
                    tvg.inlier_matches = matches[tvg.inlier_matches[:, 0]].astype(np.uint32)
                else:
                    raise ValueError(f"unknown verification method {conf['method']!r} (magsac, colmap)")
                db.write_two_view_geometry(ids[a], ids[b], tvg)
                stats["verified"] += 1
                stats["inliers"][(a, b)] = len(tvg.inlier_matches)
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
