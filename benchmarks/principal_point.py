"""Principal points: refined, against calibration, and whether the guard keeps them.

    python benchmarks/principal_point.py [--data ../shared/data] [--out outputs/principal_point]
                                         [--scene dataset/scene ...] [--arcs middlebury/templeSparseRing ...]

For each scene lightsfm runs at default settings without the final principal-point
refinement (reusing OUT/<scene>/ when there), then on that one model: mAA with the
principal point at the centre, refined without a guard, and as the default keeps it
(mapping.refine_principal_points: kept where its covariance pins it down). ``--arcs``
also runs each half of a ring (the first and last half of its photos in name order) as
a scene of its own: an arc is where a free principal point trades off against rotation.
Calibrated scenes (intrinsics.csv) show the principal point found against the calibrated one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: F401  (before pycolmap)
import pycolmap
from benchmark import score

from lightsfm import config, imc, mapping, pipeline
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "principal_point")
    ap.add_argument("--scene", action="append")
    ap.add_argument("--arcs", action="append", default=[], help="dataset/scene whose halves also run alone")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    labels = args.data / "train_labels.csv"
    gt_all, ths_all = ev.read_poses(labels), ev.read_thresholds(args.data / "thresholds.csv")
    calibration = {}
    if (args.data / "intrinsics.csv").exists():
        calibration = {r["image_path"]: r for r in csv.DictReader(open(args.data / "intrinsics.csv"))}
    runs = []
    for (ds, sc), paths in imc.read_scene_lists(labels).items():
        key = f"{ds}/{sc}"
        if args.scene and key not in args.scene and key not in args.arcs:
            continue
        half = len(paths) // 2
        for part, subset in [("all", paths)] + (
            [("first half", paths[:half]), ("second half", paths[half:])] if key in args.arcs else []
        ):
            if part == "all" and args.scene and key not in args.scene:
                continue
            runs.append((ds, sc, part, subset))
    conf = config.defaults()
    conf["mapping"]["final_principal_point"] = False
    rows = []
    for ds, sc, part, paths in runs:
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        out = args.out / ds / sc / part.replace(" ", "-")
        result = pipeline.reconstruct(args.data / image_dir, out, conf, image_names=names)
        if not result.models:
            continue
        gt = {p: gt_all[(ds, sc)][p] for p in paths}
        dup = result.stats.get("duplicates")
        centre = score(result.models, paths, names, gt, ths_all[(ds, sc)], dup)
        free = [pycolmap.Reconstruction(m) for m in result.models]
        trial, _ = mapping.refine_principal_points(free[0], conf["mapping"], guard=False)
        refined = score([trial, *free[1:]], paths, names, gt, ths_all[(ds, sc)], dup)
        kept, decision = mapping.refine_principal_points(pycolmap.Reconstruction(result.models[0]), conf["mapping"])
        guarded = score([kept, *result.models[1:]], paths, names, gt, ths_all[(ds, sc)], dup)
        cal = calibration.get(paths[0])
        cam = next(iter(decision["cameras"].values()))
        row = {
            "scene": f"{ds}/{sc}",
            "part": part,
            "images": len(paths),
            "registered": centre["registered"],
            # the old rule refined models with >= 300 observations per image
            "observations_per_image": result.models[0].compute_mean_observations_per_reg_image(),
            "mAA_centre": centre["mAA"],
            "mAA_refined": refined["mAA"],
            "mAA_default": guarded["mAA"],
            "kept": decision["refined"],
            "cameras": decision["cameras"],
            "calibrated": [float(cal["cx"]), float(cal["cy"])] if cal else None,
        }
        rows.append(row)
        print(
            f"{row['scene']:32s} {part:11s} {row['registered']:3d}/{len(paths):<3d} mAA centre {centre['mAA']:.3f} "
            f"refined {refined['mAA']:.3f} default {guarded['mAA']:.3f} | pp found {cam['found']} "
            f"sigma {cam['sigma_px']} centre {cam['centre']} calibrated {row['calibrated']} "
            f"-> {'refined' if row['kept'] else 'centre'} ({len(decision['cameras'])} camera(s))",
            flush=True,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "principal_point.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
