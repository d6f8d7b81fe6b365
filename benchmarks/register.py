"""Adding photos to a model against reconstructing all of them at once.

    python benchmarks/register.py [--data ../shared/data] [--scene strecha/fountain-P11 ...]
                                  [--out outputs/register] [--set section.key=value ...] [--refine-all]

For each scene: one-shot reconstruction of every photo; then the first two thirds (in
name order) reconstructed alone and the last third added with `lightsfm register` from a
folder of its own. Scored with the IMC2023 metric (registered photos under their names in
the grown model), with the largest change of an old pose (it must stay fixed) and the
time of the register step against the one-shot run. Writes OUT/register.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np

from lightsfm import colmap, config, imc, pipeline, register
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]


def scored(models: list, paths: list[str], names: list[str], gt: dict, ths) -> dict:
    poses = colmap.poses_from_models(models, names)
    return ev.evaluate_scene(gt, {p: poses.get(n, ev.placeholder()) for p, n in zip(paths, names, strict=True)}, ths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scene", action="append", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "register")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--refine-all", action="store_true", help="register --refine-all: the whole grown model adjusted")
    args = ap.parse_args()
    overrides: dict = {}
    for text in args.set:
        overrides = config.merge(config.merge(config.defaults(), overrides), config.parse_assignment(text))
    conf = config.load(overrides=overrides)
    labels = args.data / "train_labels.csv"
    gt_all = ev.read_poses(labels)
    th_file = args.data / "thresholds.csv"
    ths_all = ev.read_thresholds(th_file) if th_file.exists() else {}
    rows = []
    for (ds, sc), paths in imc.read_scene_lists(labels).items():
        key = f"{ds}/{sc}"
        if args.scene and key not in args.scene:
            continue
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        gt, ths = gt_all[(ds, sc)], ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc)
        out = args.out / key
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        full = pipeline.reconstruct(args.data / image_dir, out / "one-shot", conf)
        one_shot_s = time.perf_counter() - t
        order = sorted(names)
        cut = 2 * len(order) // 3
        parts = {"first": order[:cut], "later": order[cut:]}
        for part, members in parts.items():
            (out / part).mkdir(parents=True)
            for n in members:
                (out / part / Path(n).name).symlink_to((args.data / image_dir / n).resolve())
        t = time.perf_counter()
        first = pipeline.reconstruct(out / "first", out / "grown", conf)
        first_s = time.perf_counter() - t
        old = {im.name: im.cam_from_world().matrix() for im in first.models[0].images.values() if im.has_pose}
        t = time.perf_counter()
        record = register.main(out / "grown", out / "later", refine_all=args.refine_all)
        register_s = time.perf_counter() - t
        grown = colmap.read_model(out / "grown" / "sparse" / "0")
        poses = {im.name: im.cam_from_world().matrix() for im in grown.images.values() if im.has_pose}
        moved = max(float(np.abs(poses[n] - p).max()) for n, p in old.items())
        # the grown model names the later photos "later/<name>"
        renamed = [n if n in parts["first"] else f"later/{Path(n).name}" for n in names]
        row = {
            "scene": key,
            "images": len(names),
            "one_shot": {"mAA": scored(full.models, paths, names, gt, ths)["mAA"], "wall_s": round(one_shot_s, 1)},
            "first_two_thirds": {"images": cut, "wall_s": round(first_s, 1)},
            "register": {
                "mAA": scored([grown], paths, renamed, gt, ths)["mAA"],
                "added": len(record["added"]),
                "registered": len(record["registered"]),
                "wall_s": round(register_s, 1),
                "pairs_matched": record["pairs_matched"],
                "time_vs_one_shot": round(register_s / one_shot_s, 3),
                "max_old_pose_change": moved,
            },
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    record = {"conf": conf, "refine_all": args.refine_all, "rows": rows}
    (args.out / "register.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
