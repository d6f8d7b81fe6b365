"""Each photo's relative-pose errors against the ground truth, in a finished run.

    python benchmarks/pose_errors.py RUN dataset/scene [--prefix P] [--data ../shared/data]

For every registered photo of the scene (named ``P<name>`` in the run's models, e.g.
``strecha__entry-P10__`` in benchmarks/scale.py's mixed folders): the median and largest
rotation error (degrees) and translation-direction error (degrees) of its relative poses
to the scene's other registered photos, the quantities the IMC2023 metric thresholds.
Tells a model whose every photo is slightly off (all errors near the first threshold) from
one with a few photos far off.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lightsfm import colmap
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("scene", help="dataset/scene")
    ap.add_argument("--prefix", default="")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    dataset, scene = args.scene.split("/")
    labels = ev.read_poses(args.data / "train_labels.csv")[(dataset, scene)]
    gt = {p.rsplit("/", 1)[1]: pose for p, pose in labels.items()}
    for k in sorted((args.run / "sparse").glob("[0-9]*")):
        rec = colmap.read_model(k)
        poses = {}
        for im in rec.images.values():
            name = im.name[len(args.prefix) :] if im.name.startswith(args.prefix) else None
            if name in gt and im.has_pose:
                T = im.cam_from_world()
                poses[name] = (np.asarray(T.rotation.matrix()), np.asarray(T.translation))
        if not poses:
            continue
        print(f"model {k.name}: {len(poses)} photos of {args.scene}")
        for a in sorted(poses):
            rot, trans = [], []
            for b in poses:
                if a == b:
                    continue
                dR = poses[b][0] @ poses[a][0].T
                dR_gt = gt[b].R @ gt[a].R.T
                err_r, _, err_dir = ev.pose_errors(dR_gt, gt[b].t - dR_gt @ gt[a].t, dR, poses[b][1] - dR @ poses[a][1])
                rot.append(err_r)
                trans.append(err_dir)
            print(
                f"  {a:24s} rotation median {np.median(rot):6.2f} max {max(rot):6.2f}   "
                f"translation median {np.median(trans):6.2f} max {max(trans):6.2f}"
            )


if __name__ == "__main__":
    main()
