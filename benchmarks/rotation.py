"""Rotated photos: mAA without and with lightsfm's orientation detection (``features.upright``).

    python benchmarks/rotation.py [--data ../shared/data] [--share 0.3] [--scene ds/scene ...]

A seeded share of each scene's images is turned by 90°, 180° or 270° (pixels only, no
EXIF), every image re-encoded the same way, and the ground truth turned with them
(R' = Q·R, t' = Q·t for the in-plane rotation Q). lightsfm runs on that copy twice, in one
process, with ``upright`` off and on; the table gives mAA, registered images and wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: F401
import h5py
import numpy as np
import pycolmap
from PIL import Image

from lightsfm import colmap, config, imc, pipeline
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]
# One counter-clockwise quarter turn of the image (np.rot90): camera axes (x, y, z) → (y, −x, z).
QUARTER = np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])


def make_rotated(src: Path, dst: Path, names: list[str], share: float, seed: int = 0) -> dict[str, int]:
    rng = np.random.default_rng(seed)
    turned = rng.choice(len(names), max(1, round(share * len(names))), replace=False)
    turns = {names[i]: int(rng.integers(1, 4)) for i in turned}
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for n in names:
        rgb = np.asarray(Image.open(src / n).convert("RGB"))
        Image.fromarray(np.ascontiguousarray(np.rot90(rgb, turns.get(n, 0)))).save(dst / Path(n).with_suffix(".png"))
    return turns


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "rotation")
    ap.add_argument("--share", type=float, default=0.3)
    ap.add_argument("--scene", action="append")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    labels = ev.read_poses(args.data / "train_labels.csv")
    ths_all = ev.read_thresholds(args.data / "thresholds.csv")
    scenes = imc.read_scene_lists(args.data / "train_labels.csv")
    if args.scene:
        scenes = {k: v for k, v in scenes.items() if f"{k[0]}/{k[1]}" in args.scene}
    print(
        f"{'scene':30s} {'turned':>6s} | {'mAA off':>7s} {'reg':>5s} {'time':>6s}"
        f" | {'mAA on':>7s} {'reg':>5s} {'time':>6s} | {'found':>5s}"
    )
    for (ds, sc), paths in scenes.items():
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        rot_dir = args.out / "images" / ds / sc
        turns = make_rotated(args.data / image_dir, rot_dir, names, args.share)
        gt = {}
        for p, n in zip(paths, names, strict=True):
            Q = np.linalg.matrix_power(QUARTER, turns.get(n, 0))
            gt[p] = ev.Pose(Q @ labels[(ds, sc)][p].R, Q @ labels[(ds, sc)][p].t)
        png = [str(Path(n).with_suffix(".png")) for n in names]
        line = f"{ds + '/' + sc:30s} {len(turns):>6d}"
        for upright in (False, True):
            out = args.out / ("upright" if upright else "plain") / ds / sc
            shutil.rmtree(out, ignore_errors=True)
            conf = config.load(overrides={"features": {"upright": upright}})
            t = time.perf_counter()
            r = pipeline.reconstruct(rot_dir, out, conf, image_names=png)
            wall = time.perf_counter() - t
            poses = colmap.poses_from_models(r.models, png)
            pred = {p: poses.get(q, ev.Pose(np.eye(3), np.zeros(3))) for p, q in zip(paths, png, strict=True)}
            s = ev.evaluate_scene(gt, pred, ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc))
            reg = r.models[0].num_reg_images() if r.models else 0
            line += f" | {s['mAA']:7.3f} {reg:>2d}/{len(names):<2d} {wall:5.1f}s"
            if upright:
                with h5py.File(next(out.glob("features-*.h5"))) as f:
                    found = {q: int(f[q].attrs["rotation"]) // 90 for q in f}
                # the image was turned t quarters; k more quarters make it upright again
                right = sum(found.get(str(Path(n).with_suffix(".png")), 0) == -turns.get(n, 0) % 4 for n in names)
                line += f" | {right:>2d}/{len(names)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
