"""Masks against an occluder: a scene with the same textured patch pasted into every photo.

    python benchmarks/masks.py [--data ../shared/data] [--out outputs/masks]
        [--scene strecha/fountain-P11] [--patch-from dtu/scan65] [--json FILE]

The patch (a quarter of each photo's area, cut from a photo of another scene) crosses the
frame from left to right over the photos, as a person walking through the scene would:
its copies match each other strongly, and agree with no camera geometry of the scene.
(A patch fixed in the frame tests masks less than it seems: its matches do not move, which
the epipolar geometry of a camera moving sideways explains.) Three runs from nothing, in
this one process: the clean scene, the occluded scene, and the occluded scene with the patch masked
(``features.masks``, COLMAP-style ``<image name>.png``). Per run: mAA (IMC2023 metric),
registered photos, wall time, and keypoints inside the patch summed over the photos.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: E402,F401  (before pycolmap)
import h5py  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from lightsfm import colmap, imc, pipeline  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402
from lightsfm.io import name_to_key  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def box(w: int, h: int, k: int, n: int) -> tuple[int, int, int, int]:
    """The patch in photo ``k`` of ``n``: x0, y0, x1, y1 (half the width and height of the
    photo, moving from its left edge to its right edge)."""
    x0 = (w // 2) * k // max(n - 1, 1)
    return x0, h // 4, x0 + w // 2, h // 4 + h // 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "masks")
    ap.add_argument("--scene", default="strecha/fountain-P11")
    ap.add_argument("--patch-from", default="dtu/scan65", help="scene whose first photo gives the patch")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    colmap.set_verbose(False)
    labels = args.data / "train_labels.csv"
    scenes = imc.read_scene_lists(labels)
    ds, sc = args.scene.split("/")
    paths = scenes[(ds, sc)]
    image_dir = args.data / os.path.commonpath([str(Path(p).parent) for p in paths])
    names = [Path(p).name for p in paths]
    gt = ev.read_poses(labels)[(ds, sc)]
    th_file = args.data / "thresholds.csv"
    ths = (ev.read_thresholds(th_file) if th_file.exists() else {}).get((ds, sc)) or ev.default_thresholds(ds, sc)
    patch_src = args.data / sorted(scenes[tuple(args.patch_from.split("/"))])[0]

    occluded, mask_dir = args.out / "occluded", args.out / "masks"
    occluded.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        im = np.asarray(Image.open(image_dir / name).convert("RGB")).copy()
        h, w = im.shape[:2]
        x0, y0, x1, y1 = box(w, h, k, len(names))
        im[y0:y1, x0:x1] = np.asarray(Image.open(patch_src).convert("RGB").resize((x1 - x0, y1 - y0)))
        Image.fromarray(im).save(occluded / name, quality=95)
        keep = np.full((h, w), 255, np.uint8)
        keep[y0:y1, x0:x1] = 0
        Image.fromarray(keep).save(mask_dir / f"{name}.png")

    runs = {
        "clean": (image_dir, {}),
        "occluded": (occluded, {}),
        "occluded+masks": (occluded, {"features": {"masks": str(mask_dir)}}),
    }
    rows = {}
    print(f"{args.scene}: {len(names)} photos, patch from {patch_src.name}")
    for run, (folder, conf) in runs.items():
        out = args.out / "runs" / run
        t = time.perf_counter()
        result = pipeline.reconstruct(folder, out, conf, image_names=names)
        wall = time.perf_counter() - t
        poses = colmap.poses_from_models(result.models, names, result.stats.get("duplicates"))
        pred = {p: poses.get(n, ev.placeholder()) for p, n in zip(paths, names, strict=True)}
        scored = ev.evaluate_scene(gt, pred, ths)
        inside = 0
        with h5py.File(out / result.stats["files"]["features"], "r") as f:
            for k, name in enumerate(names):
                g = f[name_to_key(name)]
                w, h = g["image_size"][()]
                x0, y0, x1, y1 = box(int(w), int(h), k, len(names))
                x, y = np.round(g["keypoints"][()].T)  # the pixel each keypoint is in (as lightsfm.masks)
                inside += int(((x >= x0) & (x < x1) & (y >= y0) & (y < y1)).sum())
        rows[run] = {
            "mAA": scored["mAA"],
            "registered": scored["registered"],
            "wall_s": wall,
            "patch_keypoints": inside,
        }
        r = rows[run]
        print(
            f"  {run:15s} mAA {r['mAA']:.3f}  registered {r['registered']}/{len(names)}  {wall:6.1f} s"
            f"  keypoints in the patch {inside}",
            flush=True,
        )
    if args.json:
        record = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "scene": args.scene, "patch": str(patch_src), **rows}
        args.json.write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
