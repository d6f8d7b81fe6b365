"""Georeferencing: a model in metres, east-north-up, from the GPS its photos carry in EXIF.

``main(OUT)`` reads the GPS of the photos of ``OUT/summary.json``'s image folder, fits a
similarity (scale, rotation, translation) from the model's camera centres to the photos'
positions in a local east-north-up frame (metres, x east, y north, z up, about an origin
on the WGS84 ellipsoid), with RANSAC over 3-photo sets so that a few photos with wrong
GPS are named and left out, then least squares on the photos that agree. The aligned
models replace ``OUT/sparse/<k>/`` (written to a temporary folder, then renamed) and
``OUT/georef.json`` records the origin, the transform and each photo's residual.

``level_model`` turns a model so that its cameras' average up direction is +z (no GPS
needed); ``align(OUT, to)`` fits the same similarity to another COLMAP model or to the
camera poses of an IMC ``train_labels.csv``.

Conventions: latitude and longitude in degrees (north and east positive); EXIF altitude
is taken as the height above the ellipsoid. Writers mean sea level by it; the geoid's
offset (tens of metres, nearly constant over a scene) then only moves the origin up or
down, and results are reported in the same convention they were read in.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from . import colmap, mapping
from .errors import LightsfmError, printable
from .evaluate import read_poses
from .gps import (  # (georef's own names too: read, written and converted here)
    GpsFix,
    enu_to_geodetic,
    geodetic_to_enu,
    origin_of,
    read_gps_folder,
)
from .io import atomic_write_text, output_lock
from .workspace import Workspace

logger = logging.getLogger(__name__)

# Residuals are 3-D distances: with Gaussian noise of sigma per axis their squares follow
# sigma² · chi²(3); its median (2.366) turns a median residual into sigma, its 99 % point
# (11.34) sets the threshold a photo that agrees stays under.
_CHI2_3_MEDIAN = 2.3660
_CHI2_3_99 = 11.345
MIN_THRESHOLD_M = 0.5  # below GPS's reach: a photo is never called wrong for less
MAX_TRIALS = 2000  # 3-photo sets tried; all of them when there are fewer (up to ~23 photos)
_THIN = 0.01  # a 3-photo set whose second extent is under 1 % of its first is a line

GEOREF_FILE = Workspace.GEOREF
ALIGN_FILE = Workspace.ALIGN


class NotEnoughGpsError(LightsfmError):
    """Fewer than 3 registered photos of a model carry GPS."""


# --- similarity fits ------------------------------------------------------------------------


@dataclass
class Similarity:
    """x ↦ scale · rotation · x + translation."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(x, dtype=np.float64) @ self.rotation.T + self.translation

    def to_dict(self) -> dict[str, Any]:
        matrix = np.hstack([self.scale * self.rotation, self.translation[:, None]])
        return {
            "scale": float(self.scale),
            "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(),
            "matrix_3x4": matrix.tolist(),  # new = M · [old; 1]
        }


def _umeyama(src: np.ndarray, dst: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares similarities dst ≈ s·R·src + t for K sets at once (Umeyama 1991).

    ``src``, ``dst``: (K, m, 3); ``w``: (K, m) non-negative weights. Returns s (K,),
    R (K, 3, 3), t (K, 3).
    """
    w = w / w.sum(axis=1, keepdims=True)
    mu_s, mu_d = np.einsum("km,kmi->ki", w, src), np.einsum("km,kmi->ki", w, dst)
    xs, xd = src - mu_s[:, None], dst - mu_d[:, None]
    cov = np.einsum("km,kmi,kmj->kij", w, xd, xs)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones((len(src), 3))
    sign[:, 2] = np.where(np.linalg.det(u) * np.linalg.det(vt) < 0, -1.0, 1.0)  # a rotation, not a mirror
    rot = u @ (sign[:, :, None] * vt)
    var = np.einsum("km,kmi,kmi->k", w, xs, xs)
    scale = (d * sign).sum(axis=1) / np.maximum(var, 1e-300)
    t = mu_d - scale[:, None] * np.einsum("kij,kj->ki", rot, mu_s)
    return scale, rot, t


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> Similarity:
    """The similarity minimising Σ wᵢ‖dstᵢ − (s·R·srcᵢ + t)‖² over (N, 3) point sets."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    s, r, t = _umeyama(src[None], dst[None], w[None])
    return Similarity(float(s[0]), r[0], t[0])


@dataclass
class Fit:
    """A robust similarity fit and how each point agreed with it."""

    transform: Similarity
    residuals: dict[str, float]  # ‖transform(src) − dst‖ of every point, in dst units
    thresholds: dict[str, float]  # a point further than its threshold is an outlier
    inliers: list[str]
    outliers: list[str]
    sigma: float  # robust per-axis spread of the residuals (0 with exactly 3 points)

    def summary(self) -> dict[str, Any]:
        agreed = [self.residuals[n] for n in self.inliers]
        return {
            "transform": self.transform.to_dict(),
            "photos": len(self.residuals),
            "agreed": len(self.inliers),
            "outliers": self.outliers,
            "median_residual": float(np.median(agreed)),
            "max_residual": float(np.max(agreed)),
            "sigma": self.sigma,
            "residuals": self.residuals,
            "thresholds": self.thresholds,
        }


def _samples(n: int, max_trials: int, seed: int) -> np.ndarray:
    """3-point index sets: all of them when few enough, otherwise ``max_trials`` at random."""
    if math.comb(n, 3) <= max_trials:
        return np.array(list(combinations(range(n), 3)), dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((max_trials, n)), axis=1)[:, :3]


def fit_similarity(
    src: np.ndarray,
    dst: np.ndarray,
    names: list[str],
    accuracy: np.ndarray | None = None,
    min_threshold: float = MIN_THRESHOLD_M,
    max_trials: int = MAX_TRIALS,
    seed: int = 0,
    where: str = "",
) -> Fit:
    """A similarity dst ≈ s·R·src + t that most points agree with, and which do not.

    RANSAC over 3-point sets. Each point's threshold is 3.4 sigma (99 % of Gaussian 3-D
    residuals), sigma being the larger of its ``accuracy`` (per axis, dst units; NaN when
    unknown) and the residuals' robust spread (least median of squares over the same sets,
    with Rousseeuw's small-sample factor), and at least ``min_threshold``. The set with the
    least Σ min(residual / threshold, 1)² wins (MSAC, each point in units of its own
    threshold); a least-squares fit on its inliers, weighted by 1 / threshold², follows,
    repeated until the inliers stop changing.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    n = len(src)
    prefix = f"{where}: " if where else ""
    if n < 3:
        raise LightsfmError(f"{prefix}{n} point(s) to fit; a similarity needs at least 3")
    idx = _samples(n, max_trials, seed)
    extents = np.linalg.svd(src[idx] - src[idx].mean(axis=1, keepdims=True), compute_uv=False)
    idx = idx[extents[:, 1] > _THIN * np.maximum(extents[:, 0], 1e-300)]
    if not len(idx):
        raise LightsfmError(
            f"{prefix}the {n} camera centres lie on a line: their positions cannot fix the rotation about it"
        )
    scale, rot, t = _umeyama(src[idx], dst[idx], np.ones(idx.shape))

    def residuals(ks: slice) -> np.ndarray:  # (hypotheses, points), a slice at a time: K·N·3 may be large
        return np.linalg.norm(
            scale[ks, None, None] * np.einsum("kij,nj->kni", rot[ks], src) + t[ks, None] - dst, axis=2
        )

    chunks = [slice(i, i + 256) for i in range(0, len(idx), 256)]
    if n > 3:
        best_median = min(float(np.min(np.median(residuals(ks) ** 2, axis=1))) for ks in chunks)
        sigma = (1 + 5 / (n - 3)) * math.sqrt(best_median / _CHI2_3_MEDIAN)
    else:
        sigma = 0.0  # three points: nothing to compare them with
    acc = np.zeros(n) if accuracy is None else np.nan_to_num(np.asarray(accuracy, np.float64), nan=0.0)
    thr = np.maximum(math.sqrt(_CHI2_3_99) * np.maximum(acc, sigma), min_threshold)
    # each residual in units of its own threshold: a photo that says it is inaccurate counts for less
    cost = np.concatenate([(np.minimum(residuals(ks) / thr, 1.0) ** 2).sum(axis=1) for ks in chunks])
    k = int(np.argmin(cost))
    inl = residuals(slice(k, k + 1))[0] <= thr
    fit = Similarity(float(scale[k]), rot[k], t[k])
    for _ in range(20):
        if inl.sum() < 3:
            break
        candidate = umeyama(src[inl], dst[inl], 1 / thr[inl] ** 2)
        new = np.linalg.norm(candidate.apply(src) - dst, axis=1) <= thr
        if new.sum() < 3:
            break
        fit = candidate
        if np.array_equal(new, inl):
            break
        inl = new
    final = np.linalg.norm(fit.apply(src) - dst, axis=1)
    inl = final <= thr
    if inl.sum() < 3 or fit.scale <= 0:
        raise LightsfmError(f"{prefix}fewer than 3 of {n} positions agree with the model; no fit")
    return Fit(
        transform=fit,
        residuals={nm: float(r) for nm, r in zip(names, final, strict=True)},
        thresholds={nm: float(x) for nm, x in zip(names, thr, strict=True)},
        inliers=[nm for nm, ok in zip(names, inl, strict=True) if ok],
        outliers=[nm for nm, ok in zip(names, inl, strict=True) if not ok],
        sigma=sigma,
    )


# --- levelling without GPS ------------------------------------------------------------------


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking the direction ``a`` to the direction ``b``."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-12:  # opposite: half a turn about any axis perpendicular to a
        axis = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def level_model(rec: Any) -> tuple[Any, dict[str, Any]]:
    """A copy of ``rec`` turned so that its cameras' average up direction is +z.

    A camera's up is the image's up, −y of the camera (COLMAP: x right, y down, z forward),
    i.e. minus the second row of its world-to-camera rotation. Only rotated, about the
    world origin: scale and position stay. Returns the model and what was done.
    """
    poses = colmap.camera_poses(rec)
    if not poses:
        raise LightsfmError("the model has no registered photos to level")
    ups = np.array([-r[1] for r, _ in poses.values()])
    mean = ups.sum(axis=0)
    if np.linalg.norm(mean) < 1e-9 * len(ups):
        raise LightsfmError("the cameras' up directions cancel out: no average up to level on")
    mean /= np.linalg.norm(mean)
    rotation = rotation_between(mean, np.array([0.0, 0.0, 1.0]))
    spread = np.degrees(np.arccos(np.clip(ups @ mean, -1, 1)))
    out = colmap.transformed(rec, 1.0, rotation, np.zeros(3))
    return out, {
        "method": "up",
        "up_axis": "+z",
        "transform": Similarity(1.0, rotation, np.zeros(3)).to_dict(),
        "mean_up_before": mean.tolist(),
        # how far the cameras' own ups are from their average: large when photos were
        # taken turned, or the camera looked up and down a lot
        "median_angle_to_up_deg": float(np.median(spread)),
        "max_angle_to_up_deg": float(np.max(spread)),
    }


# --- writing models back --------------------------------------------------------------------


def _write_models(output: Path, models: list[Any], record_name: str, record: dict[str, Any]) -> None:
    """Replaces ``output/sparse`` with ``models`` and ``record`` (as sparse/<record_name>,
    so the record goes with the models it describes), then copies the record to
    ``output/<record_name>`` and the largest model's cloud to ``output/points.ply``.

    Everything is written to ``sparse.new.tmp`` first; only then is the old folder moved
    aside and the new one renamed into place (``Workspace.replace_models``; a run killed
    between the two renames is undone by the next run's ``Workspace.remove_temporaries``).
    """
    ws = Workspace(output)
    sparse, tmp = ws.sparse, ws.sparse_new
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for k, rec in enumerate(models):
        (tmp / str(k)).mkdir()
        mapping.write_model(rec, tmp / str(k))
    for f in sparse.iterdir():  # mapper.json and the like; an earlier georef/align record is stale
        if f.is_file() and f.name not in (GEOREF_FILE, ALIGN_FILE):
            shutil.copyfile(f, tmp / f.name)
    text = json.dumps(record, indent=1)
    (tmp / record_name).write_text(text)
    ws.replace_models()
    for stale in (GEOREF_FILE, ALIGN_FILE):
        (output / stale).unlink(missing_ok=True)
    atomic_write_text(output / record_name, text)
    shutil.copyfile(ws.model(0) / "points.ply", ws.tmp(ws.points))
    os.replace(ws.tmp(ws.points), ws.points)


def _load(output: Path) -> list[Any]:
    models = mapping.load_models(output)
    if not models:
        raise LightsfmError(f"{output}: no model under sparse/; run `lightsfm reconstruct` first")
    return models


# --- the commands ---------------------------------------------------------------------------


def georeference(
    models: list[Any], fixes: dict[str, GpsFix], origin: tuple[float, float, float], where: str = ""
) -> tuple[list[Any], dict[str, Any]]:
    """Each model with at least 3 GPS photos moved into east-north-up metres about
    ``origin``; the others unchanged. Returns the models and a record per model."""
    alts = [f.altitude for f in fixes.values() if f.altitude is not None]
    fill = float(np.median(alts)) if alts else origin[2]
    out, records = [], []
    for k, rec in enumerate(models):
        poses = colmap.camera_poses(rec)
        names = sorted(n for n in poses if n in fixes)
        if len(names) < 3:
            if k == 0:
                raise NotEnoughGpsError(
                    f"{where}: {len(names)} of the model's {len(poses)} registered photos have GPS in EXIF; "
                    "georeferencing needs at least 3"
                )
            out.append(rec)
            records.append({"model": k, "georeferenced": False, "photos_with_gps": len(names)})
            continue
        lla = np.array(
            [
                [fixes[n].latitude, fixes[n].longitude, fill if fixes[n].altitude is None else fixes[n].altitude]
                for n in names
            ]
        )
        enu = geodetic_to_enu(lla, origin)
        accuracy = np.array([np.nan if fixes[n].accuracy is None else fixes[n].accuracy for n in names])
        centres = np.array([poses[n][1] for n in names])
        fit = fit_similarity(centres, enu, names, accuracy, MIN_THRESHOLD_M, where=f"{where} (model {k})")
        aligned = colmap.transformed(rec, fit.transform.scale, fit.transform.rotation, fit.transform.translation)
        moved = colmap.camera_poses(aligned)
        positions = enu_to_geodetic(np.array([c for _, c in moved.values()]), origin)
        s = fit.summary()
        records.append(
            {
                "model": k,
                "georeferenced": True,
                "transform": s["transform"],
                "photos_with_gps": len(names),
                "agreed": s["agreed"],
                "outliers": s["outliers"],
                "median_residual_m": s["median_residual"],
                "max_residual_m": s["max_residual"],
                "sigma_m": s["sigma"],
                "gps_spread_m": float(np.sqrt(((enu - enu.mean(axis=0)) ** 2).sum(axis=1).mean())),
                "residuals_m": s["residuals"],
                "thresholds_m": s["thresholds"],
                "without_gps": sorted(set(poses) - set(names)),
                "without_altitude": [n for n in names if fixes[n].altitude is None],
                # where the model puts each camera, back in latitude, longitude, altitude
                "cameras": {
                    n: [round(p[0], 9), round(p[1], 9), round(p[2], 3)]
                    for n, p in zip(moved, positions.tolist(), strict=True)
                },
            }
        )
        out.append(aligned)
    return out, {"models": records}


def main(
    output: Path,
    gps: bool = True,
    up: str | None = None,
    image_dir: Path | None = None,
    origin: str = "mean",
) -> dict[str, Any]:
    """Georeferences the models of a finished run in ``output`` and writes them back.

    ``gps``: fit each model to its photos' EXIF GPS (east-north-up metres, see the module
    docstring). ``up="auto"``: turn the model so the cameras' average up is +z, without GPS;
    with ``gps`` as well, it is what happens when the photos carry too little GPS.
    ``image_dir`` overrides the photo folder summary.json names. Returns what georef.json holds.
    """
    output = Path(output)
    if up not in (None, "auto"):
        raise LightsfmError(f"unknown --up {up!r}; only 'auto'")
    if not gps and up is None:
        raise LightsfmError("nothing to do: give gps=True or up='auto'")
    ws = Workspace(output)
    ws.summary()  # before the lock, which would make a missing folder
    with output_lock(output):
        ws.remove_temporaries()  # (a swap a killed run left half done: the old models go back)
        models = _load(output)
        folder = ws.image_dir(image_dir)
        record: dict[str, Any] | None = None
        if gps:
            names = sorted({im for rec in models for im in colmap.camera_poses(rec)})
            fixes = read_gps_folder(folder, names)
            try:
                if not fixes:
                    raise NotEnoughGpsError(f"{folder}: no registered photo has GPS in its EXIF")
                o = origin_of(fixes, origin)
                models, record = georeference(models, fixes, o, str(folder))
            except NotEnoughGpsError as e:
                if up != "auto":
                    raise
                logger.warning("%s; levelling the model instead (--up auto)", e)
            else:
                first = record["models"][0]
                record = {
                    "method": "gps",
                    "image_dir": str(folder),
                    "latitude": o[0],
                    "longitude": o[1],
                    "altitude": o[2],
                    "origin": origin,
                    "frame": "WGS84 local east-north-up, metres: x east, y north, z up from the origin",
                    **{k: first[k] for k in ("transform", "agreed", "outliers", "median_residual_m", "max_residual_m")},
                    "photos_with_gps": first["photos_with_gps"],
                    "residuals_m": first["residuals_m"],
                    **record,
                }
        if record is None:
            leveled = [level_model(rec) for rec in models]
            models = [m for m, _ in leveled]
            record = {**leveled[0][1], "models": [r for _, r in leveled]}
        _write_models(output, models, GEOREF_FILE, record)
    if record["method"] == "gps":
        logger.info(
            "georeferenced: %d of %d photos agree with their GPS (median %.2f m, max %.2f m); outliers: %s",
            record["agreed"],
            record["photos_with_gps"],
            record["median_residual_m"],
            record["max_residual_m"],
            ", ".join(record["outliers"]) or "none",
        )
    return record


def _labels_centres(
    path: Path, image_dir: str, names: set[str], scene: str | None
) -> tuple[dict[str, np.ndarray], str]:
    """Camera centres c = −Rᵀt of the scene of a labels CSV that the model's photos are from."""
    groups: dict[str, dict[str, np.ndarray]] = {}
    folders: dict[str, str] = {}
    for (ds, sc), poses in read_poses(path).items():
        folder = os.path.commonpath([Path(p).parent.as_posix() for p in poses]) if poses else ""
        key = f"{ds}/{sc}"
        folders[key] = folder
        groups[key] = {
            Path(os.path.relpath(p, folder or ".")).as_posix(): -pose.R.T @ pose.t for p, pose in poses.items()
        }
    if scene is not None:
        if scene not in groups:
            raise LightsfmError(f"{path}: no scene {scene}")
        return groups[scene], scene
    here = Path(image_dir).as_posix()

    def rank(key: str) -> tuple[int, bool]:
        return (len(names & set(groups[key])), bool(folders[key]) and here.endswith("/" + folders[key]))

    ranked = sorted(groups, key=rank, reverse=True)
    if not ranked or rank(ranked[0])[0] == 0:
        raise LightsfmError(f"{path}: none of the model's photos is listed")
    if len(ranked) > 1 and rank(ranked[0]) == rank(ranked[1]):
        raise LightsfmError(f"{path}: the photos match scenes {ranked[0]} and {ranked[1]} alike; name the scene")
    return groups[ranked[0]], ranked[0]


def align(output: Path, to: Path, scene: str | None = None) -> dict[str, Any]:
    """Moves the run's largest model onto another COLMAP model (a folder) or onto the
    ground-truth cameras of an IMC ``train_labels.csv`` (``scene`` "dataset/scene" when the
    photos' names fit several) by a robust similarity of the camera centres; the other
    models follow it. Writes the models back and ``OUT/align.json`` (residuals per photo,
    in the target's units). Returns what align.json holds."""
    output, to = Path(output), Path(to)
    ws = Workspace(output)
    summary = ws.summary()
    with output_lock(output):
        ws.remove_temporaries()  # (a swap a killed run left half done: the old models go back)
        models = _load(output)
        poses = colmap.camera_poses(models[0])
        if to.is_dir():
            try:
                target = {n: c for n, (_, c) in colmap.camera_poses(colmap.read_model(to)).items()}
            except ValueError as e:
                raise LightsfmError(f"{to}: not a COLMAP model ({printable(str(e))[:200]})") from None
            what = "COLMAP model"
        elif to.is_file():
            target, found = _labels_centres(to, summary.get("image_dir", ""), set(poses), scene)
            what = f"labels of {found}"
        else:
            raise LightsfmError(f"{to}: not found (a COLMAP model folder or a train_labels.csv)")
        names = sorted(set(poses) & set(target))
        if len(names) < 3:
            raise LightsfmError(f"{to}: {len(names)} of the model's photos are in it; aligning needs at least 3")
        dst = np.array([target[n] for n in names])
        spread = float(np.sqrt(((dst - dst.mean(axis=0)) ** 2).sum(axis=1).mean()))
        # no units are known: a photo is never called wrong for less than 0.1 % of the scene
        fit = fit_similarity(
            np.array([poses[n][1] for n in names]), dst, names, min_threshold=1e-3 * spread, where=str(to)
        )
        tr = fit.transform
        models = [colmap.transformed(m, tr.scale, tr.rotation, tr.translation) for m in models]
        s = fit.summary()
        record = {
            "method": "align",
            "to": str(to),
            "target": what,
            "units": "the target's",
            **s,
            "without_target": sorted(set(poses) - set(target)),
        }
        _write_models(output, models, ALIGN_FILE, record)
    return record
