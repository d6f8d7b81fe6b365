"""Mapping on one thread (bit-identical repeats) against every core: time and mAA per scene.

    python benchmarks/mapping_threads.py RUNS [--out outputs/mapping-threads] [--scene S ...]

RUNS holds finished default runs as RUNS/<dataset>/<scene>/ (benchmark.py's OUT/lightsfm).
For each scene its turn detection, features and matches are copied into a fresh folder and
the pipeline runs from there (verification and mapping only) with ``mapping.num_threads``
= 1 and = 0 (every core), one after the other in this process; the mapping stage's wall
time and the mAA of each are printed, with their ratio. Issue #13 asks for the choice
between one-thread determinism and multi-thread speed to be made by scene size, measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchmark as bm  # noqa: E402  (sets TQDM_DISABLE, imports cv2 before pycolmap)
import pycolmap  # noqa: E402
from loso_rules import scenes_of, seed  # noqa: E402

from lightsfm import config, pipeline  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--out", type=Path, default=HERE.parent / "outputs" / "mapping-threads")
    ap.add_argument("--scene", action="append", default=[])
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    labels = ev.read_poses(args.data / "train_labels.csv")
    thresholds = ev.read_thresholds(args.data / "thresholds.csv")
    rows = []
    print(f"{'scene':34s} {'photos':>6s} | {'1 thread':>18s} | {'every core':>18s} | ratio  (cores: {os.cpu_count()})")
    for key, (image_dir, names, paths, scene) in scenes_of(args.data).items():
        if args.scene and key not in args.scene:
            continue
        done = args.runs / scene[0] / scene[1]
        if not done.is_dir():
            continue
        row = {"scene": key, "photos": len(names)}
        for threads in (1, 0):
            conf = config.load("default", overrides={"mapping": {"num_threads": threads}})
            work = args.out / f"threads-{threads}" / scene[0] / scene[1]
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            seed(work, conf, {"mapping": {}}, done)
            t = time.perf_counter()
            result = pipeline.reconstruct(image_dir, work, conf, image_names=names)
            wall = time.perf_counter() - t
            scored = bm.score(
                result.models, paths, names, labels[scene], thresholds.get(scene), result.stats.get("duplicates")
            )
            row[str(threads)] = {
                "map_s": result.timings.get("map"),
                "wall_s": wall,
                "mAA": scored["mAA"],
                "registered": scored["registered"],
                "timings_s": result.timings,
            }
        one, every = row["1"], row["0"]
        print(
            f"{key:34s} {len(names):6d} | {one['map_s']:6.1f} s  mAA {one['mAA']:.3f} | "
            f"{every['map_s']:6.1f} s  mAA {every['mAA']:.3f} | {every['map_s'] / one['map_s']:.2f}",
            flush=True,
        )
        rows.append(row)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mapping-threads.json").write_text(
        json.dumps({"machine": {"cpu_count": os.cpu_count()}, "versions": bm.git_state(), "rows": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
