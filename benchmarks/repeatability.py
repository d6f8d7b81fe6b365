"""Is a run repeatable? Same inputs and seed, mapping repeated, poses compared.

    python benchmarks/repeatability.py [--scene dataset/scene ...] [--runs 3] [--preset fast]

Features and matches are computed once per scene (they are deterministic: one forward pass
per image or pair, no sampling); then verification + mapping run ``--runs`` times into fresh
folders, once with pycolmap on all cores and once with one thread. Each run is compared with
the first of its kind: same registered set?, largest relative-rotation and
translation-direction difference over all image pairs, and its mAA against ground truth.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: E402,F401  (before pycolmap)
import numpy as np
import pycolmap

from lightsfm import colmap, config, imc, pipeline
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]


def pose_spread(a: dict[str, ev.Pose], b: dict[str, ev.Pose]) -> tuple[float, float]:
    """Largest rotation and translation-direction difference (degrees) of relative poses in both."""
    names = sorted(set(a) & set(b))
    worst_r = worst_t = 0.0
    for i, n in enumerate(names):
        for m in names[i + 1 :]:
            er, _, ed = ev.pose_errors(*ev.relative_pose(a[n], a[m]), *ev.relative_pose(b[n], b[m]))
            worst_r, worst_t = max(worst_r, er), max(worst_t, ed)
    return worst_r, worst_t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "repeatability")
    ap.add_argument("--scene", action="append")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--preset", default="default")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2

    labels = args.data / "train_labels.csv"
    gt_all = ev.read_poses(labels)
    ths_all = ev.read_thresholds(args.data / "thresholds.csv")
    scenes = imc.read_scene_lists(labels)
    if args.scene:
        scenes = {k: v for k, v in scenes.items() if f"{k[0]}/{k[1]}" in args.scene}
    print(
        f"{'scene':30s} {'threads':>7s} {'run':>3s} {'mAA':>6s} {'reg':>6s} {'same set':>8s} "
        f"{'max dR°':>8s} {'max dt°':>8s}"
    )
    for (ds, sc), paths in scenes.items():
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        base = args.out / ds / sc
        shutil.rmtree(base, ignore_errors=True)
        first = base / "run"
        for threads in (None, 1):
            ref = None
            for k in range(args.runs):
                out = base / f"threads-{threads or 'all'}-{k}"
                if first.exists():  # reuse features and matches: only verification + mapping rerun
                    shutil.copytree(first, out, ignore=shutil.ignore_patterns("sparse", "state.json", "*.db"))
                conf = config.load(args.preset, overrides={"mapping": {"num_threads": threads}})
                result = pipeline.reconstruct(args.data / image_dir, out, conf, image_names=names)
                if not first.exists():
                    shutil.copytree(out, first)
                poses = colmap.poses_from_models(result.models, names)
                placeholder = ev.Pose(np.eye(3), np.zeros(3))
                pred = {p: poses.get(n, placeholder) for p, n in zip(paths, names, strict=True)}
                s = ev.evaluate_scene(gt_all[(ds, sc)], pred, ths_all[(ds, sc)])
                if ref is None:
                    ref = poses
                same = set(poses) == set(ref)
                dr, dt = pose_spread(ref, poses)
                print(
                    f"{ds + '/' + sc:30s} {str(threads or 'all'):>7s} {k:3d} {s['mAA']:6.3f} "
                    f"{s['registered']:>2d}/{len(names):<3d} {str(same):>8s} {dr:8.4f} {dt:8.4f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
