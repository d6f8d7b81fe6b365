"""The Image Matching Challenge 2023 metric: mAA over relative poses of all image pairs.

For every scene and every pair i < j of its ground-truth images, the relative pose
dR = R_j·R_iᵀ, dT = T_j − dR·T_i is computed for the ground truth and the submission.
Rotation error: the angle between the two dR, through quaternions as in the Kaggle code.
Translation error: the predicted dT rescaled to the ground-truth baseline length,
min(‖dT_gt − t‖, ‖dT_gt + t‖) in ground-truth units. The k-th rotation threshold goes
with the k-th translation threshold; accuracy_k is the share of pairs under both
(strictly, as the Kaggle code compares with '<'); scene mAA is their mean, a dataset's
score the mean of its scenes, the final score the mean over datasets.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import LightsfmError

EPS = 1e-15

# IMC2023 train thresholds (rotation in degrees, translation in metres).
_ROT_DEFAULT = np.linspace(1, 10, 10)
IMC2023_THRESHOLDS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "haiper": (_ROT_DEFAULT, np.geomspace(0.05, 0.5, 10)),
    "heritage": (_ROT_DEFAULT, np.geomspace(0.1, 2, 10)),
    "heritage/wall": (np.linspace(0.2, 10, 10), np.geomspace(0.05, 1, 10)),
    "urban": (_ROT_DEFAULT, np.geomspace(0.5, 5, 10)),
}
FALLBACK_THRESHOLDS = (_ROT_DEFAULT, np.geomspace(0.2, 5, 10))


@dataclass
class Pose:
    R: np.ndarray  # (3, 3) world-to-camera
    t: np.ndarray  # (3,)


def _floats(text: str | None, n: int, where: str) -> np.ndarray:
    if not isinstance(text, str):  # a short row: csv gives None for the missing fields
        raise LightsfmError(f"{where}: missing field (expected {n} ';'-separated numbers)")
    try:
        v = np.array([float(x) for x in text.split(";")], dtype=np.float64)
    except ValueError:
        raise LightsfmError(f"{where}: not {n} ';'-separated numbers: {text[:80]!r}") from None
    if v.size != n or not np.all(np.isfinite(v)):
        raise LightsfmError(f"{where}: expected {n} finite ';'-separated numbers, got {text[:80]!r}")
    return v


def _csv_rows(path: Path, need: set[str]) -> list[dict[str, Any]]:
    """The rows of a CSV with the ``need`` columns; any unreadable file is a one-line error."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = set(reader.fieldnames or ())
    except OSError as e:
        raise LightsfmError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise LightsfmError(f"{path}: not a text (UTF-8) CSV file") from None
    except csv.Error as e:
        raise LightsfmError(f"{path}: not a CSV file ({e})") from None
    if not need <= columns:
        raise LightsfmError(f"{path}: missing columns {sorted(need - columns)}")
    return rows


ROTATION_TOLERANCE = 1e-3  # |RᵀR − I| and |det R − 1|: labels carry 6 significant digits


def read_poses(path: Path) -> dict[tuple[str, str], dict[str, Pose]]:
    """{(dataset, scene): {image_path: Pose}} from a train_labels.csv or submission.csv."""
    out: dict[tuple[str, str], dict[str, Pose]] = defaultdict(dict)
    need = {"dataset", "scene", "image_path", "rotation_matrix", "translation_vector"}
    first: dict[tuple[str, str, str], int] = {}
    for i, row in enumerate(_csv_rows(path, need), start=2):
        where = f"{path}:{i}"
        if None in row:  # more fields than columns
            raise LightsfmError(f"{where}: {len(row) - 1 + len(row[None])} fields, the header has {len(row) - 1}")
        if any(not isinstance(row[k], str) or not row[k] for k in ("dataset", "scene", "image_path")):
            raise LightsfmError(f"{where}: empty or missing dataset, scene or image_path")
        R = _floats(row["rotation_matrix"], 9, where).reshape(3, 3)
        t = _floats(row["translation_vector"], 3, where)
        if np.abs(R.T @ R - np.eye(3)).max() > ROTATION_TOLERANCE or abs(np.linalg.det(R) - 1) > ROTATION_TOLERANCE:
            raise LightsfmError(f"{where}: rotation_matrix is not a rotation: {row['rotation_matrix'][:80]!r}")
        key = (row["dataset"], row["scene"], row["image_path"])
        if key in first:
            raise LightsfmError(f"{where}: {row['image_path']} again (first on line {first[key]})")
        first[key] = i
        out[(row["dataset"], row["scene"])][row["image_path"]] = Pose(R, t)
    return dict(out)


def write_poses(path: Path, poses: dict[tuple[str, str], dict[str, Pose]]) -> None:
    """Writes a submission CSV (image_path,dataset,scene,rotation_matrix,translation_vector)."""
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_path", "dataset", "scene", "rotation_matrix", "translation_vector"])
        for (ds, scene), images in poses.items():
            for image_path, p in images.items():
                w.writerow(
                    [
                        image_path,
                        ds,
                        scene,
                        ";".join(f"{x:.9g}" for x in p.R.ravel()),
                        ";".join(f"{x:.9g}" for x in p.t.ravel()),
                    ]
                )
    tmp.replace(path)


def read_thresholds(path: Path) -> dict[tuple[str, str], tuple[np.ndarray, np.ndarray]]:
    """Per-scene thresholds from a CSV like ../shared/data/thresholds.csv."""
    out = {}
    need = {"dataset", "scene", "rotation_thresholds_deg", "translation_thresholds"}
    for i, row in enumerate(_csv_rows(path, need), start=2):
        where = f"{path}:{i}"
        values = []
        for col in ("rotation_thresholds_deg", "translation_thresholds"):
            text = row[col]
            try:
                v = np.array([float(x) for x in text.split(";")]) if isinstance(text, str) else None
            except ValueError:
                v = None
            if v is None or not v.size or not np.all(np.isfinite(v) & (v > 0)):
                raise LightsfmError(f"{where}: {col} is not ';'-separated positive numbers: {str(text)[:80]!r}")
            values.append(v)
        rot, tr = values
        if len(rot) != len(tr):
            raise LightsfmError(f"{where}: {len(rot)} rotation but {len(tr)} translation thresholds")
        out[(row["dataset"], row["scene"])] = (rot, tr)
    return out


def default_thresholds(dataset: str, scene: str) -> tuple[np.ndarray, np.ndarray]:
    return IMC2023_THRESHOLDS.get(f"{dataset}/{scene}", IMC2023_THRESHOLDS.get(dataset, FALLBACK_THRESHOLDS))


def quaternion_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a rotation matrix (Shepperd's method)."""
    m = R
    tr = np.trace(m)
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    return q / (np.linalg.norm(q) + EPS)


def relative_pose(a: Pose, b: Pose) -> tuple[np.ndarray, np.ndarray]:
    dR = b.R @ a.R.T
    return dR, b.t - dR @ a.t


def pose_errors(dR_gt: np.ndarray, dT_gt: np.ndarray, dR: np.ndarray, dT: np.ndarray) -> tuple[float, float, float]:
    """(rotation error in degrees, IMC translation error in GT units, translation-direction error in degrees)."""
    q_gt, q = quaternion_from_matrix(dR_gt), quaternion_from_matrix(dR)
    loss_q = max(EPS, 1.0 - float(np.dot(q, q_gt)) ** 2)
    err_r = float(np.degrees(np.arccos(1.0 - 2.0 * loss_q)))
    scale = np.linalg.norm(dT_gt)
    t = scale * dT / (np.linalg.norm(dT) + EPS)
    err_t = float(min(np.linalg.norm(dT_gt - t), np.linalg.norm(dT_gt + t)))
    n_gt, n = np.linalg.norm(dT_gt), np.linalg.norm(dT)
    if n_gt < EPS or n < EPS:
        err_dir = 0.0 if max(n_gt, n) < EPS else 90.0
    else:
        cos = np.clip(np.dot(dT_gt, dT) / (n_gt * n), -1.0, 1.0)
        err_dir = float(np.degrees(np.arccos(abs(cos))))  # sign-free, like the err_t above
    return err_r, err_t, err_dir


def pose_auc(errors: np.ndarray, thresholds: list[float]) -> list[float]:
    """Area under the recall-vs-error curve up to each threshold, normalised (SuperGlue/LightGlue)."""
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    recall = np.arange(1, len(errors) + 1) / max(len(errors), 1)
    errors, recall = np.r_[0.0, errors], np.r_[0.0, recall]
    aucs = []
    for t in thresholds:
        i = np.searchsorted(errors, t)
        r = np.r_[recall[:i], recall[i - 1]]
        e = np.r_[errors[:i], t]
        aucs.append(float(np.trapezoid(r, x=e) / t))
    return aucs


FOLD_DEG = 30.0


def placeholder() -> Pose:
    """The pose written for an image no model registered (IMC2023's convention)."""
    return Pose(np.eye(3), np.zeros(3))


def is_placeholder(p: Pose) -> bool:
    """R = I and t = 0: how a submission marks an unregistered image."""
    return bool(np.array_equal(p.R, np.eye(3)) and not np.any(p.t))


def evaluate_scene(
    gt: dict[str, Pose], pred: dict[str, Pose], thresholds: tuple[np.ndarray, np.ndarray], scene: str = ""
) -> dict[str, Any]:
    """mAA, rotation-only and translation-only mAA, registered count and pose AUCs of one scene."""
    missing = sorted(set(gt) - set(pred))
    if missing:
        raise LightsfmError(f"scene {scene}: {missing[0]} is missing from the submission ({len(missing)} missing)")
    names = sorted(gt)
    th_r, th_t = thresholds
    err_r, err_t, err_max = [], [], []
    posed = [not is_placeholder(pred[n]) for n in names]
    err_r_posed = []  # pairs of registered images only: how a fold shows
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            dR_gt, dT_gt = relative_pose(gt[names[i]], gt[names[j]])
            dR, dT = relative_pose(pred[names[i]], pred[names[j]])
            er, et, ed = pose_errors(dR_gt, dT_gt, dR, dT)
            err_r.append(er)
            err_t.append(et)
            err_max.append(max(er, ed))
            if posed[i] and posed[j]:
                err_r_posed.append(er)
    er_, et_ = np.array(err_r), np.array(err_t)
    if len(er_) == 0:
        acc = acc_r = acc_t = np.zeros(len(th_r))
    else:
        acc = np.array([np.mean((er_ < r) & (et_ < t)) for r, t in zip(th_r, th_t, strict=True)])
        acc_r = np.array([np.mean(er_ < r) for r in th_r])
        acc_t = np.array([np.mean(et_ < t) for t in th_t])
    auc5, auc10, auc20 = pose_auc(np.array(err_max), [5, 10, 20]) if err_max else (0.0, 0.0, 0.0)
    return {
        "mAA": float(acc.mean()),
        "mAA_R": float(acc_r.mean()),
        "mAA_t": float(acc_t.mean()),
        "registered": sum(not is_placeholder(pred[n]) for n in names),
        "images": len(names),
        "auc5": auc5,
        "auc10": auc10,
        "auc20": auc20,
        "accuracy": acc.tolist(),
        "median_rotation_error": float(np.median(er_)) if len(er_) else 0.0,
        # Share of pairs of registered images whose relative rotation is > 30 degrees off:
        # above ~5 % the model is folded or mirrored, whatever its reprojection error says.
        "pairs_over_30deg": float(np.mean(np.array(err_r_posed) > FOLD_DEG)) if err_r_posed else 0.0,
    }


def evaluate(
    submission: Path | dict,
    labels: Path | dict,
    thresholds: Path | None = None,
    scenes: list[str] | None = None,
) -> dict[str, Any]:
    """Scores a submission against ground truth: {"final", "datasets", "scenes"}.

    ``scenes`` ("dataset/scene") restricts the ground truth to those scenes.
    """
    pred = read_poses(submission) if not isinstance(submission, dict) else submission
    gt = read_poses(labels) if not isinstance(labels, dict) else labels
    if scenes:
        unknown = set(scenes) - {f"{d}/{s}" for d, s in gt}
        if unknown:
            raise LightsfmError(f"no scene {sorted(unknown)[0]} in the ground truth")
        gt = {k: v for k, v in gt.items() if f"{k[0]}/{k[1]}" in scenes}
    ths = read_thresholds(thresholds) if thresholds else {}
    scenes: dict[str, dict[str, Any]] = {}
    per_ds: dict[str, list[float]] = defaultdict(list)
    for (ds, scene), gt_scene in gt.items():
        th = ths.get((ds, scene)) or default_thresholds(ds, scene)
        res = evaluate_scene(gt_scene, pred.get((ds, scene), {}), th, f"{ds}/{scene}")
        scenes[f"{ds}/{scene}"] = res
        per_ds[ds].append(res["mAA"])
    datasets = {ds: float(np.mean(v)) for ds, v in per_ds.items()}
    final = float(np.mean(list(datasets.values()))) if datasets else 0.0
    return {"final": final, "datasets": datasets, "scenes": scenes}


def format_table(result: dict[str, Any]) -> str:
    head = f"{'scene':34s} {'mAA':>6s} {'mAA_R':>6s} {'mAA_t':>6s} {'reg':>7s} {'AUC5':>6s} {'AUC10':>6s} {'AUC20':>6s}"
    lines = [head, "-" * len(head)]
    for name, s in result["scenes"].items():
        lines.append(
            f"{name:34s} {s['mAA']:6.3f} {s['mAA_R']:6.3f} {s['mAA_t']:6.3f} "
            f"{s['registered']:>3d}/{s['images']:<3d} {s['auc5']:6.3f} {s['auc10']:6.3f} {s['auc20']:6.3f}"
        )
    lines.append("-" * len(head))
    for ds, v in result["datasets"].items():
        lines.append(f"dataset {ds:26s} {v:6.3f}")
    lines.append(f"{'final':34s} {result['final']:6.3f}")
    return "\n".join(lines)


def write_json(result: dict[str, Any], path: Path) -> None:
    Path(path).write_text(json.dumps(result, indent=2))
