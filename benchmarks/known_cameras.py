"""Known cameras against self-calibration, on the scenes whose calibration is published.

    python benchmarks/known_cameras.py [--data ../shared/data] [--out outputs/known_cameras]
        [--scene dataset/scene ...] [--json FILE]

Each scene twice, from nothing, in this one process: lightsfm at its defaults (intrinsics
found from the photos), then with the dataset's published calibration given for every
photo (``verify.camera_params``; ``mapping.refine_intrinsics = auto`` then keeps it). Per
run: mAA (IMC2023 metric), wall time, registered photos, and the kept model's focal length
and principal point against the published ones.

The calibrations (in pixels of the photos as ../shared/data holds them) come from the
datasets' own files, not from the ground-truth poses:
  Middlebury templeSR_par.txt / dinoSR_par.txt (640×480);
  Strecha's camera files for the P-series, 3072×2048, halved for the 1536×1024 copies
  ((c + 0.5) / 2 - 0.5 for the principal point);
  DTU, the MVSNet camera files at 1600×1200 (camera 0; the others differ by < 0.5 %).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: E402,F401  (before pycolmap)
import numpy as np  # noqa: E402

from lightsfm import colmap, imc, pipeline  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
_STRECHA = f"PINHOLE:{2759.48 / 2},{2764.16 / 2},{(1520.69 + 0.5) / 2 - 0.5},{(1006.81 + 0.5) / 2 - 0.5}"
CALIBRATION = {
    "middlebury/templeSparseRing": "PINHOLE:1520.4,1525.9,302.32,246.87",
    "middlebury/dinoSparseRing": "PINHOLE:3310.4,3325.5,316.73,200.55",
    "strecha/fountain-P11": _STRECHA,
    "strecha/Herz-Jesus-P8": _STRECHA,
    "strecha/entry-P10": _STRECHA,
    "dtu/scan65": "PINHOLE:2892.33,2883.18,823.205,619.071",
}


def intrinsics(rec) -> tuple[float, float, float]:
    """Mean focal length and principal point of the camera most of ``rec``'s photos use."""
    ids = [im.camera_id for im in rec.images.values() if im.has_pose]
    cam = rec.cameras[max(set(ids), key=ids.count)]
    return float(cam.mean_focal_length()), float(cam.principal_point_x), float(cam.principal_point_y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "known_cameras")
    ap.add_argument("--scene", action="append", help="dataset/scene (repeatable; default: all calibrated)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    colmap.set_verbose(False)
    labels = args.data / "train_labels.csv"
    gt_all = ev.read_poses(labels)
    th_file = args.data / "thresholds.csv"
    ths_all = ev.read_thresholds(th_file) if th_file.exists() else {}
    scenes = imc.read_scene_lists(labels)
    rows = []
    print(
        f"{'scene':30s} {'run':6s} {'mAA':>6s} {'reg':>7s} {'time':>7s}  focal (given)        principal point (given)"
    )
    for key in args.scene or list(CALIBRATION):
        ds, sc = key.split("/")
        paths = scenes[(ds, sc)]
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        gt, ths = gt_all[(ds, sc)], ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc)
        given = [float(v) for v in CALIBRATION[key].split(":")[1].split(",")]
        f_given = (given[0] + given[1]) / 2
        row = {"scene": key, "images": len(names), "calibration": CALIBRATION[key]}
        for run, conf in (("self", {}), ("known", {"verify": {"camera_params": CALIBRATION[key]}})):
            out = args.out / run / ds / sc
            t = time.perf_counter()
            result = pipeline.reconstruct(args.data / image_dir, out, conf, image_names=names)
            wall = time.perf_counter() - t
            poses = colmap.poses_from_models(result.models, names, result.stats.get("duplicates"))
            pred = {p: poses.get(n, ev.placeholder()) for p, n in zip(paths, names, strict=True)}
            scored = ev.evaluate_scene(gt, pred, ths)
            f, cx, cy = intrinsics(result.models[0]) if result.models else (float("nan"),) * 3
            row[run] = {
                "mAA": scored["mAA"],
                "registered": scored["registered"],
                "wall_s": wall,
                "focal": f,
                "principal_point": [cx, cy],
                "focal_error": f / f_given - 1,
                "principal_point_shift_px": float(np.hypot(cx - given[2], cy - given[3])),
            }
            r = row[run]
            print(
                f"{key:30s} {run:6s} {r['mAA']:6.3f} {r['registered']:3d}/{len(names):<3d} {wall:6.1f}s"
                f"  {f:8.1f} ({r['focal_error']:+.1%})  ({cx:.1f}, {cy:.1f}),"
                f" {r['principal_point_shift_px']:.1f} px from the given",
                flush=True,
            )
        rows.append(row)
    self_maa = np.mean([r["self"]["mAA"] for r in rows])
    known_maa = np.mean([r["known"]["mAA"] for r in rows])
    print(f"mean mAA: self-calibrated {self_maa:.3f}, known cameras {known_maa:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
