"""Mapping once against mapping again from the focal lengths the first model found.

    python benchmarks/refocus.py RUN_DIR [RUN_DIR ...] [--data ../shared/data] [--scene D/S ...] [--json FILE]

Each RUN_DIR is a folder of earlier lightsfm runs (``<dataset>/<scene>/`` with its pairs,
features and matches files); every scene found there is verified again from those files,
then mapped three ways with today's defaults otherwise: one pass (``mapping.refocus_above
= 0``), a second pass wherever the focal length moved at all (``1e-9``), and the default
rule. Prints the focal length guessed and found, and each way's mAA (IMC2023 metric, as
benchmarks/benchmark.py scores) and mapping time.
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
from benchmark import score

from lightsfm import config, imc, mapping, verify
from lightsfm import evaluate as ev
from lightsfm.images import read_infos

ROOT = Path(__file__).resolve().parents[1]
WAYS = {"once": 0.0, "always": 1e-9, "default": mapping.default_conf["refocus_above"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "refocus-bench")
    ap.add_argument("--scene", action="append", help="dataset/scene (repeatable; default: every one found)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    labels = args.data / "train_labels.csv"
    gt_all = ev.read_poses(labels)
    th_file = args.data / "thresholds.csv"
    ths_all = ev.read_thresholds(th_file) if th_file.exists() else {}
    scenes = imc.read_scene_lists(labels)
    conf = config.load()
    results = []
    for root in args.runs:
        for src in sorted(p.parent for p in root.glob("*/*/database.db")):
            ds, sc = src.parent.name, src.name
            if args.scene and f"{ds}/{sc}" not in args.scene:
                continue
            paths = scenes[(ds, sc)]
            image_dir = args.data / Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
            names = [Path(p).name for p in paths]
            ths = ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc)
            infos, _ = read_infos(image_dir, names)
            pairs = [tuple(line.split()) for line in next(src.glob("pairs-*.txt")).read_text().splitlines() if line]
            out = args.out / root.name / ds / sc
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            db = out / "database.db"
            files = next(src.glob("features-*.h5")), next(src.glob("matches-*.h5"))
            verify.main(infos, pairs, *files, db, conf["verify"])
            row = {"run": str(src), "scene": f"{ds}/{sc}"}
            for way, above in WAYS.items():
                t = time.perf_counter()
                models = mapping.main(db, image_dir, out / way, {**conf["mapping"], "refocus_above": above})
                info = mapping.read_mapper(out / way)
                row[way] = {
                    "mAA": score(models, paths, names, gt_all[(ds, sc)], ths)["mAA"],
                    "map_s": time.perf_counter() - t,
                    "refocused": info.get("refocused"),
                    "registered": models[0].num_reg_images() if models else 0,
                }
            results.append(row)
            moved = row["always"]["refocused"] or {}
            focal = ", ".join(f"{g:.0f} -> {f:.0f} px" for g, f in moved.values()) or "prior or unmoved"
            print(
                f"{row['scene']:32s} {src.parent.parent.name[-24:]:24s} {focal:22s} "
                + "  ".join(f"{w} {row[w]['mAA']:.3f} ({row[w]['map_s']:.0f} s)" for w in WAYS),
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
