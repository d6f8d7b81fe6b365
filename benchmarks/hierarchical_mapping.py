"""COLMAP's hierarchical mapper against its incremental mapper, from the same matches.

    python benchmarks/hierarchical_mapping.py RUNS [--leaf 20 40 60] [--overlap 50]
        [--scene dataset/scene ...] [--json FILE]

RUNS holds finished default runs as RUNS/<dataset>/<scene>/database.db (benchmark.py's
OUT/lightsfm); by default the three large scenes. Each database is mapped by pycolmap's
incremental mapper at lightsfm's mapping options (``colmap.mapper_options``), then by its
hierarchical mapper with the same options inside each cluster, the scene cut into clusters
of at most ``--leaf`` photos that share ``--overlap`` photos with their neighbours, the
clusters mapped two at a time (one per core) and merged. Bare mapping: none of lightsfm's
checks, repairs or refinements, so the two differ only in the mapper. Per scene and leaf
size: mapping time, models and mAA (IMC2023 metric).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchmark as bm  # noqa: E402  (sets TQDM_DISABLE, imports cv2 before pycolmap)
import pycolmap  # noqa: E402
from loso_rules import scenes_of  # noqa: E402

from lightsfm import colmap, config  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402

LARGE = ["nerd_bm/mold_gold_cape", "phone_captures/tensorf_object80", "dtu/scan65"]


def hierarchical(
    database: Path, image_dir: Path, output: Path, conf: dict, leaf: int, overlap: int
) -> list[pycolmap.Reconstruction]:
    opts = pycolmap.HierarchicalPipelineOptions()
    opts.incremental_options = colmap.mapper_options(conf)
    opts.clustering_options.leaf_max_num_images = leaf
    opts.clustering_options.image_overlap = overlap
    opts.num_workers = os.cpu_count() or 1
    opts.num_threads = 1  # one thread per cluster, as many clusters as cores
    models = pycolmap.hierarchical_mapping(database, image_dir, output, opts)
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--leaf", type=int, nargs="+", default=[20, 40, 60])
    ap.add_argument("--overlap", type=int, default=50, help="photos shared by neighbouring clusters (COLMAP: 50)")
    ap.add_argument("--scene", action="append", default=[])
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    labels = ev.read_poses(args.data / "train_labels.csv")
    thresholds = ev.read_thresholds(args.data / "thresholds.csv")
    conf = config.load("default")["mapping"]
    rows = []
    print(f"clusters overlap by {args.overlap} photos; {os.cpu_count()} cores")
    for key, (image_dir, names, paths, scene) in scenes_of(args.data).items():
        if key not in (args.scene or LARGE):
            continue
        database = args.runs / scene[0] / scene[1] / "database.db"
        if not database.exists():
            continue
        sides = [("incremental", 0)] + [("hierarchical", leaf) for leaf in args.leaf]
        for method, leaf in sides:
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                shutil.copyfile(database, work / "database.db")
                (work / "sparse").mkdir()
                t = time.perf_counter()
                if method == "incremental":
                    models = colmap.incremental_mapping(
                        work / "database.db", image_dir, work / "sparse", colmap.mapper_options(conf)
                    )
                else:
                    models = hierarchical(work / "database.db", image_dir, work / "sparse", conf, leaf, args.overlap)
                wall = time.perf_counter() - t
            scored = bm.score(models, paths, names, labels[scene], thresholds.get(scene), None)
            row = {
                "scene": key,
                "method": method,
                "leaf": leaf or None,
                "map_s": round(wall, 2),
                "models": [m.num_reg_images() for m in models],
                "mAA": scored["mAA"],
            }
            rows.append(row)
            label = method if method == "incremental" else f"hierarchical, leaf {leaf}"
            print(f"{key:34s} {label:22s} {wall:6.1f} s  models {row['models']}  mAA {row['mAA']:.3f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"versions": bm.git_state(), "overlap": args.overlap, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
