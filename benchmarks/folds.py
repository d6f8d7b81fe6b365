"""Do the fold checks flag the folded models, and only those? A confusion table over scenes and mappers.

    python benchmarks/folds.py [--data ../shared/data] [--out outputs/folds] [--scene dataset/scene ...]
                               [--preset default] [--set section.key=value ...]

For each scene lightsfm runs once at the chosen settings (reusing OUT/<scene>/ when it is
already there, so that mapping variants share one verified database); then pycolmap's
incremental and global mappers each map that database. Every model is scored against
the ground truth (mAA; a model is folded when more than 5 % of its registered pairs are
more than 30 degrees off) and checked without it (lightsfm.checks). Writes OUT/folds.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: F401  (before pycolmap)
import pycolmap
from benchmark import parse_set, score, sift_global, sift_incremental

from lightsfm import checks, colmap, config, imc, mapping, pipeline
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]
FOLDED_SHARE = 0.05  # of registered pairs more than 30 degrees off: the definition of folded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "folds")
    ap.add_argument("--scene", action="append")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--mappers", default="incremental,global")
    ap.add_argument(
        "--sift", type=Path, help="also check COLMAP SIFT models: a benchmark's peers folder (<ds>/<scene>/sift/)"
    )
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    conf = config.load(args.preset, overrides=parse_set(args.set))
    labels = args.data / "train_labels.csv"
    gt_all, ths_all = ev.read_poses(labels), ev.read_thresholds(args.data / "thresholds.csv")
    scenes = imc.read_scene_lists(labels)
    if args.scene:
        scenes = {k: v for k, v in scenes.items() if f"{k[0]}/{k[1]}" in args.scene}
    rows = []
    for (ds, sc), paths in scenes.items():
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        out = args.out / ds / sc
        if not (out / "database.db").exists():
            pipeline.reconstruct(args.data / image_dir, out, conf, image_names=names)
        evidence = colmap.verified_pairs(out / "database.db")
        gt, ths = gt_all[(ds, sc)], ths_all[(ds, sc)]

        def record(
            label: str,
            models: list,
            map_s: float,
            extra: dict,
            scene: str = f"{ds}/{sc}",
            scored: tuple = (paths, names, gt, ths, evidence),
        ) -> None:
            paths, names, gt, ths, evidence = scored
            s = score(models, paths, names, gt, ths)
            over = [score([rec], paths, names, gt, ths)["pairs_over_30deg"] for rec in models]  # per model
            t = time.perf_counter()
            found = checks.check_model(models[0], evidence, conf["mapping"]["checks"]) if models else None
            row = {
                "scene": scene,
                "run": label,
                "mAA": s["mAA"],
                "registered": s["registered"],
                "images": s["images"],
                "models": [m.num_reg_images() for m in models],
                "pairs_over_30deg": over[0] if over else 0.0,  # in the largest model
                "folded": bool(over) and over[0] > FOLDED_SHARE,
                "flagged": bool(found and found.suspect()),
                "map_s": map_s,
                "check_s": time.perf_counter() - t,
                "check": found.summary() if found else {},
                **extra,
            }
            rows.append(row)
            c = row["check"]
            print(
                f"{scene:30s} {label:19s} mAA {s['mAA']:.3f} reg {s['registered']:3d}/{s['images']:<3d} "
                f"models {row['models']} >30deg {row['pairs_over_30deg']:.3f} "
                f"{'FOLDED' if row['folded'] else 'ok    '} {'FLAGGED' if row['flagged'] else 'clean  '} "
                f"strong {c.get('strong_pairs', 0):4d} contradicted {c.get('contradicted_pairs', 0):3d} "
                f"misplaced {len(c.get('misplaced', [])):2d} unexplained {c.get('unexplained_share', 0):.3f} "
                f"map {map_s:.1f}s check {row['check_s']:.2f}s",
                flush=True,
            )

        db, images = out / "database.db", args.data / image_dir
        for mapper in args.mappers.split(","):
            mconf = {**conf["mapping"], "method": mapper}
            t = time.perf_counter()
            if mapper == "incremental":
                models = colmap.incremental_mapping(db, images, out / "variants", colmap.mapper_options(mconf))
            else:
                models = colmap.global_mapping(db, images, out / "variants", colmap.global_options(mconf))
            models = models[: mconf["max_num_models"]]
            t_map = time.perf_counter() - t
            # Principal points refined as the default does, on a copy: the repair starts from the raw model.
            raw = [pycolmap.Reconstruction(m) for m in models]
            raw = [mapping.refine_principal_points(rec, mconf)[0] for rec in raw]
            record(mapper, raw, t_map, {})
            if models:
                t = time.perf_counter()
                models[0], _, repair = mapping._check_and_repair(models[0], evidence, db, images, out / "repair", mconf)
                t_repair = time.perf_counter() - t
                models = [mapping.refine_principal_points(rec, mconf)[0] for rec in models]
                record(f"{mapper}+repair", models, t_map + t_repair, {"repair": repair, "repair_s": t_repair})
        sift_db = args.sift / ds / sc / "sift" / "database.db" if args.sift else None
        if sift_db and sift_db.exists():  # the checks on another pipeline's models: more folds to find
            sift_evidence = colmap.verified_pairs(sift_db)
            for label, run_sift in (("SIFT incremental", sift_incremental), ("SIFT global", sift_global)):
                work = out / "sift-variants"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                shutil.copyfile(sift_db, work / "database.db")
                t = time.perf_counter()
                models = run_sift(images, work, conf)
                record(label, models, time.perf_counter() - t, {}, scored=(paths, names, gt, ths, sift_evidence))
        t = time.perf_counter()
        models = mapping.main(db, images, out / "auto", conf["mapping"])
        record(
            f"{conf['mapping']['method']} (lightsfm)",
            models,
            time.perf_counter() - t,
            mapping.read_mapper(out / "auto"),
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "folds.json").write_text(json.dumps({"conf": conf, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
