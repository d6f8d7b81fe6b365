"""Map the photos of some scenes of a mixed run again, alone, and score each scene.

    python benchmarks/mix_part.py RUN --scene strecha/fountain-P11 --scene strecha/entry-P10
        [--drop-cross-below N] [--data ../shared/data]

RUN is a finished run over a mixed folder (benchmarks/scale.py names photos
``<dataset>__<scene>__<photo>``). The photos of the scenes named are mapped as lightsfm
maps one linked group (``mapping._map_part``, then the final principal-point rule) from a
copy of the run's database, so the matches and verified pairs are the mixed run's own.
``--drop-cross-below N`` first deletes the verified pairs between photos of different
scenes with fewer than N inliers: do the weak links between scenes change the model?
Also printed: each remaining pair between scenes, with the share of its inliers the
largest model explains (``checks``: Sampson error under 4 px).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import pycolmap  # noqa: E402

from lightsfm import checks, colmap, config, mapping  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--scene", action="append", required=True, help="dataset/scene (repeatable)")
    ap.add_argument("--drop-cross-below", type=int, default=0)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    image_dir = Path(json.loads((args.run / "summary.json").read_text())["image_dir"])
    prefixes = {s: s.replace("/", "__") + "__" for s in args.scene}
    scene_of = lambda name: next((s for s, p in prefixes.items() if name.startswith(p)), None)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "database.db"
        shutil.copyfile(args.run / "database.db", db)
        names = colmap.image_names(db)
        part = sorted(n for n in names.values() if scene_of(n))
        dropped = []
        if args.drop_cross_below:
            with pycolmap.Database.open(db) as d:
                for (a, b), m in colmap.verified_pairs(db).items():
                    sa, sb = scene_of(names[a]), scene_of(names[b])
                    if sa and sb and sa != sb and len(m) < args.drop_cross_below:
                        d.delete_inlier_matches(a, b)
                        dropped.append((names[a], names[b], len(m)))
        conf = {**mapping.default_conf, **config.defaults()["mapping"]}
        evidence = colmap.verified_pairs(db)
        found = mapping._map_part(db, image_dir, Path(tmp) / "out", conf, evidence, part)
        models, points = [], []
        for rec in found["models"]:
            rec, decision = mapping.refine_principal_points(rec, conf)
            models.append(rec)
            points.append(decision.get("cameras"))
    if models:
        every_pair = checks.check_model(models[0], evidence, {**conf["checks"], "min_inliers": 0})
        cross = [p for p in every_pair.pairs if scene_of(p.image1) != scene_of(p.image2)]
        print("pairs between scenes (inliers, share explained by the model):")
        for p in sorted(cross, key=lambda p: -p.inliers):
            print(f"  {p.image1} - {p.image2}: {p.inliers}, {p.explained:.2f}")
    labels = ev.read_poses(args.data / "train_labels.csv")
    thresholds = ev.read_thresholds(args.data / "thresholds.csv")
    print(f"{len(part)} photos; cross-scene pairs dropped: {len(dropped)} {sorted(dropped, key=lambda x: -x[2])}")
    print(f"kept the {found['chosen']} model(s): {[m.num_reg_images() for m in models]}; principal points {points}")
    for s in args.scene:
        key = tuple(s.split("/"))
        gt = labels[key]
        paths = sorted(gt)
        pnames = [prefixes[s] + p.rsplit("/", 1)[1] for p in paths]
        poses = colmap.poses_from_models(models, pnames)
        pred = {p: poses.get(n, ev.placeholder()) for p, n in zip(paths, pnames, strict=True)}
        print(f"  {s:32s} mAA {ev.evaluate_scene(gt, pred, thresholds[key])['mAA']:.3f}")


if __name__ == "__main__":
    main()
