"""GPS as a prior of mapping, or only for georeferencing afterwards: mAA and camera error.

    python benchmarks/gps_priors.py [--data ../shared/data] [--out outputs/gps_priors]
        [--noise 0.05 0.5 2] [--seed 0] [--json FILE]

The Strecha photos are copied with GPS (benchmarks/gps.py's make_copy: the ground-truth
centres in a made-up east-north-up frame, Gaussian noise of the given sigma per axis with
that accuracy written in EXIF, 2 photos moved 50 m sideways), then reconstructed twice from
nothing: with ``mapping.gps_priors`` (GPS positions as robust priors in bundle adjustment,
where lightsfm.gps.informative says GPS can tell the photos apart) and without; both then
georeferenced (lightsfm.georef). Per run: mAA (IMC2023 metric), whether priors were used,
the median distance of the georeferenced camera centres to the truth, and wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: E402,F401  (before pycolmap)
import numpy as np  # noqa: E402
from gps import ORIGIN, SCENES, make_copy, true_enu  # noqa: E402  (benchmarks/gps.py)

from lightsfm import colmap, georef, gps, imc, pipeline  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "gps_priors")
    ap.add_argument("--scenes", nargs="*", default=SCENES)
    ap.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.5, 2.0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    colmap.set_verbose(False)
    labels = args.data / "train_labels.csv"
    poses, lists = ev.read_poses(labels), imc.read_scene_lists(labels)
    th_file = args.data / "thresholds.csv"
    ths_all = ev.read_thresholds(th_file) if th_file.exists() else {}
    rows = []
    print(f"{'scene':24s} {'noise':>6s} {'priors':>7s} {'used':>5s} {'mAA':>6s} {'centre error m':>15s} {'time':>7s}")
    for scene in args.scenes:
        ds, sc = scene.split("/")
        paths = lists[(ds, sc)]
        src = args.data / Path(paths[0]).parent
        gt_by_name = {Path(p).name: pose for p, pose in poses[(ds, sc)].items()}
        ths = ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc)
        truth = true_enu(gt_by_name, args.seed)
        for noise in args.noise:
            photos = args.out / ds / sc / f"photos-{noise:g}"
            far, _ = make_copy(src, photos, truth, noise, True, args.seed)
            names = sorted(truth)
            for priors in (True, False):
                out = args.out / ds / sc / f"run-{noise:g}-{'priors' if priors else 'none'}"
                shutil.rmtree(out, ignore_errors=True)
                t = time.perf_counter()
                result = pipeline.reconstruct(photos, out, {"mapping": {"gps_priors": priors}}, image_names=names)
                wall = time.perf_counter() - t
                used = colmap.num_position_priors(out / "database.db") > 0
                found = colmap.poses_from_models(result.models, names)
                pred = {p: found.get(Path(p).name, ev.placeholder()) for p in paths}
                maa = ev.evaluate_scene(poses[(ds, sc)], pred, ths)["mAA"]
                record = georef.main(out, gps=True)
                origin = (record["latitude"], record["longitude"], record["altitude"])
                centres = colmap.camera_poses(colmap.read_model(out / "sparse" / "0"))
                errs = [
                    float(np.linalg.norm(gps.geodetic_to_enu(gps.enu_to_geodetic(c, origin), ORIGIN)[0] - truth[n]))
                    for n, (_, c) in centres.items()
                ]
                row = {
                    "scene": scene,
                    "noise_m": noise,
                    "priors": priors,
                    "priors_used": used,
                    "mAA": maa,
                    "median_centre_error_m": float(np.median(errs)),
                    "far_off": far,
                    "outliers": record["outliers"],
                    "wall_s": wall,
                }
                rows.append(row)
                print(
                    f"{scene:24s} {noise:5.2f}m {str(priors):>7s} {str(used):>5s} {maa:6.3f} "
                    f"{row['median_centre_error_m']:15.3f} {wall:6.1f}s",
                    flush=True,
                )
            shutil.rmtree(photos)
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "origin": ORIGIN, "rows": rows}))


if __name__ == "__main__":
    main()
