"""Mapping at the default settings against mapping with some settings changed, from the same
matches: the mapping stage's time and the mAA of each, per scene.

    python benchmarks/mapping_ab.py RUNS --set mapping.num_threads=0 [--set ...]
                                    [--out outputs/mapping-ab] [--scene dataset/scene ...]

RUNS holds finished default runs as RUNS/<dataset>/<scene>/ (benchmark.py's OUT/lightsfm).
For each scene its turn detection, features and matches are copied into two fresh folders
and the pipeline runs in each (verification and mapping only), at the default settings and
with the ``--set`` overrides, one after the other in this process. Only ``verify.*`` and
``mapping.*`` settings may change (the copied matches must be what the run would make).
E.g. ``--set mapping.num_threads=0``: every core against one thread (issue #13 asks for
that choice to be made by scene size, measured).

    python benchmarks/mapping_ab.py --loso OUT1/mapping-ab.json OUT2/mapping-ab.json ...

Leave-one-scene-out (benchmarks/loso.py) over the defaults and the changed side of each
saved comparison, the last one listed being the choice under test.
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
from loso import MAX_LOSS, loso  # noqa: E402
from loso_rules import scenes_of, seed  # noqa: E402

from lightsfm import config, pipeline  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402


def leave_one_out(saved: list[Path]) -> None:
    """Prints the leave-one-scene-out table of the defaults and each saved comparison's change."""
    runs = [json.loads(p.read_text()) for p in saved]
    table = {"the runs' defaults": {r["scene"]: r["default"]["mAA"] for r in runs[0]["rows"]}}
    for run in runs:
        table[" ".join(run["set"])] = {r["scene"]: r["changed"]["mAA"] for r in run["rows"]}
    rows = loso(table)
    for r in rows:
        print(
            f"{r['held_out']:34s} chosen {r['chosen']!r}: {r['mAA']:.3f}, best {r['best']!r}: {r['best_mAA']:.3f}, "
            f"loss {r['loss']:.4f}"
        )
    worst = max(r["loss"] for r in rows)
    print(f"worst held-out loss {worst:.4f}: {'earns its place' if worst <= MAX_LOSS else 'does NOT transfer'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="?")
    ap.add_argument("--set", action="append", help="override, e.g. mapping.num_threads=0")
    ap.add_argument("--loso", type=Path, nargs="+", metavar="MAPPING_AB_JSON", help="leave-one-scene-out of saved runs")
    ap.add_argument("--out", type=Path, default=HERE.parent / "outputs" / "mapping-ab")
    ap.add_argument("--scene", action="append", default=[])
    ap.add_argument("--data", type=Path, default=HERE.parents[1] / "shared" / "data")
    args = ap.parse_args()
    if args.loso:
        return leave_one_out(args.loso)
    if not (args.runs and args.set):
        ap.error("RUNS and --set are needed (or --loso)")
    overrides = bm.parse_set(args.set)
    if not set(overrides) <= {"verify", "mapping"}:
        ap.error("only verify.* and mapping.* settings can change: the matches are copied")
    pycolmap.logging.minloglevel = 2
    labels = ev.read_poses(args.data / "train_labels.csv")
    thresholds = ev.read_thresholds(args.data / "thresholds.csv")
    sides = {"default": {}, "changed": overrides}
    rows = []
    print(f"changed: {' '.join(args.set)}  (cores: {os.cpu_count()})")
    print(f"{'scene':34s} {'photos':>6s} | {'default':>18s} | {'changed':>18s} | time ratio")
    for key, (image_dir, names, paths, scene) in scenes_of(args.data).items():
        if args.scene and key not in args.scene:
            continue
        done = args.runs / scene[0] / scene[1]
        if not done.is_dir():
            continue
        row = {"scene": key, "photos": len(names)}
        for side, changes in sides.items():
            conf = config.load("default", overrides=changes)
            work = args.out / side / scene[0] / scene[1]
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            seed(work, conf, overrides, done)  # turns, features and matches: only verify/mapping change
            t = time.perf_counter()
            result = pipeline.reconstruct(image_dir, work, conf, image_names=names)
            wall = time.perf_counter() - t
            scored = bm.score(
                result.models, paths, names, labels[scene], thresholds.get(scene), result.stats.get("duplicates")
            )
            row[side] = {
                "map_s": result.timings.get("map"),
                "wall_s": wall,
                "mAA": scored["mAA"],
                "registered": scored["registered"],
                "timings_s": result.timings,
            }
        a, b = row["default"], row["changed"]
        print(
            f"{key:34s} {len(names):6d} | {a['map_s']:6.1f} s  mAA {a['mAA']:.3f} | "
            f"{b['map_s']:6.1f} s  mAA {b['mAA']:.3f} | {b['map_s'] / a['map_s']:.2f}",
            flush=True,
        )
        rows.append(row)
    if rows:
        ta, tb = (sum(r[s]["map_s"] for r in rows) for s in sides)
        print(f"{'total':34s} {'':6s} | {ta:6.1f} s            | {tb:6.1f} s            | {tb / ta:.2f}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mapping-ab.json").write_text(
        json.dumps(
            {"machine": {"cpu_count": os.cpu_count()}, "versions": bm.git_state(), "set": args.set, "rows": rows},
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
