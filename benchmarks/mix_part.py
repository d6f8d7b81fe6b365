"""Map the photos of some scenes of a mixed run again, alone, and score each scene.

    python benchmarks/mix_part.py RUN --scene strecha/fountain-P11 --scene strecha/entry-P10
        [--drop-cross-below N] [--retriangulate] [--data ../shared/data]

RUN is a finished run over a mixed folder (benchmarks/scale.py names photos
``<dataset>__<scene>__<photo>``). The photos of the scenes named are mapped as lightsfm
maps one linked group (``mapping._map_part``, then the final principal-point rule) from a
copy of the run's database, so the matches and verified pairs are the mixed run's own.
``--drop-cross-below N`` first deletes the verified pairs between photos of different
scenes with fewer than N inliers: do the weak links between scenes change the model?
Also printed: each remaining pair between scenes, with the share of its inliers the
largest model explains (``checks``: Sampson error under 4 px).
``--retriangulate`` also scores, from the poses of the model mapped: its points
triangulated again from the database and one bundle adjustment (then the principal-point
rule), once with every verified pair and once with the pairs the model contradicts (under
half their inliers explained) deleted first; and the photos mapped again without those
pairs. Do contradicted pairs bias the adjustment, or does the mapper take another path?
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
from lightsfm.colmap import bundle  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--scene", action="append", required=True, help="dataset/scene (repeatable)")
    ap.add_argument("--drop-cross-below", type=int, default=0)
    ap.add_argument("--retriangulate", action="store_true")
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
        variants = {}
        if args.retriangulate and found["models"]:
            variants = retriangulated(found["models"][0], db, image_dir, Path(tmp), conf, evidence, part)
    if models:
        every_pair = checks.check_model(models[0], evidence, {**conf["checks"], "min_inliers": 0})
        cross = [p for p in every_pair.pairs if scene_of(p.image1) != scene_of(p.image2)]
        print("pairs between scenes (inliers, share explained by the model):")
        for p in sorted(cross, key=lambda p: -p.inliers):
            print(f"  {p.image1} - {p.image2}: {p.inliers}, {p.explained:.2f}")
    labels = ev.read_poses(args.data / "train_labels.csv")
    thresholds = ev.read_thresholds(args.data / "thresholds.csv")

    def scores(models: list[pycolmap.Reconstruction]) -> str:
        out = []
        for s in args.scene:
            key = tuple(s.split("/"))
            gt = labels[key]
            paths = sorted(gt)
            pnames = [prefixes[s] + p.rsplit("/", 1)[1] for p in paths]
            poses = colmap.poses_from_models(models, pnames)
            pred = {p: poses.get(n, ev.placeholder()) for p, n in zip(paths, pnames, strict=True)}
            out.append(f"{s} mAA {ev.evaluate_scene(gt, pred, thresholds[key])['mAA']:.3f}")
        return ", ".join(out)

    print(f"{len(part)} photos; cross-scene pairs dropped: {len(dropped)} {sorted(dropped, key=lambda x: -x[2])}")
    print(f"kept the {found['chosen']} model(s): {[m.num_reg_images() for m in models]}; principal points {points}")
    print(f"  as mapped: {scores(models)}")
    for label, (ms, note) in variants.items():
        print(f"  {label}: {scores(ms)}{note}")


def retriangulated(
    rec: pycolmap.Reconstruction, db: Path, image_dir: Path, tmp: Path, conf: dict, evidence: dict, part: list[str]
) -> dict[str, tuple[list, str]]:
    """The ``--retriangulate`` variants of the model ``rec`` mapped from ``db``."""
    every_pair = checks.check_model(rec, evidence, {**conf["checks"], "min_inliers": 0})
    bad = [p for p in every_pair.pairs if p.explained < 0.5]
    pruned = tmp / "pruned.db"
    shutil.copyfile(db, pruned)
    ids = {n: i for i, n in colmap.image_names(db).items()}
    with pycolmap.Database.open(pruned) as d:
        for p in bad:
            d.delete_inlier_matches(ids[p.image1], ids[p.image2])

    def again(database: Path, tag: str) -> list:
        (tmp / tag).mkdir()
        out = pycolmap.triangulate_points(pycolmap.Reconstruction(rec), database, image_dir, tmp / tag)
        out = bundle.adjust(out, conf["refine_focal_length"], conf["refine_extra_params"], 1)
        return [mapping.refine_principal_points(out, conf)[0]]

    deleted = sorted((p.inliers, round(p.explained, 2)) for p in bad)
    note = f" ({len(bad)} of {len(every_pair.pairs)} pairs deleted (inliers, share explained): {deleted})"
    remapped = mapping._map_part(pruned, image_dir, tmp / "remapped", conf, colmap.verified_pairs(pruned), part)
    return {
        "same poses, points triangulated again, adjusted": (again(db, "same"), ""),
        "contradicted pairs deleted, then the same": (again(pruned, "pruned"), note),
        "contradicted pairs deleted, mapped again": (
            [mapping.refine_principal_points(m, conf)[0] for m in remapped["models"]],
            "",
        ),
    }


if __name__ == "__main__":
    main()
