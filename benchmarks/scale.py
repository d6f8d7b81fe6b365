"""lightsfm on one folder of every ../shared/data photo, mixed, and on nested subsets of it.

    python benchmarks/scale.py [--data ../shared/data] [--out outputs/scale]
        [--sizes 25 50 100 200 309] [--seed 0] [--alone RESULTS.json] [--set section.key=value ...]
        [--json FILE] [--scenes DATASET/SCENE ...]

What a careless user does: all photos of all scenes in one folder (symlinks named
``<dataset>__<scene>__<photo>``), shuffled with the seed; the subset of size n is the first
n of that order, so the subsets are nested. Each size runs in a fresh subprocess at the
default settings (plus ``--set``; ``mapping.max_num_models`` is raised to 16, since a mixed
folder holds several scenes). Per size: wall time and peak RSS per stage (RSS sampled every
0.2 s in the run's own process, stages from its timings), pairs matched and verified, the
models found, and each scene's mAA over its photos in the subset (IMC2023 metric, the
scene's own thresholds). ``--alone``: a benchmarks/benchmark.py JSON whose per-scene mAA
(each scene reconstructed alone) is set beside the full folder's.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs in the subprocess: one reconstruction, its RSS sampled per stage.
CHILD = r"""
import json, os, sys, threading, time
os.environ.setdefault("TQDM_DISABLE", "1")
import cv2  # noqa: F401  (before torch and pycolmap)
from pathlib import Path
from lightsfm import config, pipeline
from lightsfm import colmap
from lightsfm.device import rss_mb

args = json.loads(sys.argv[1])
samples = []
stop = threading.Event()

def sample():
    while not stop.is_set():
        samples.append((time.perf_counter(), rss_mb()))
        time.sleep(0.2)

conf = config.load(overrides=args["overrides"])
t0 = time.perf_counter()
threading.Thread(target=sample, daemon=True).start()
result = pipeline.reconstruct(Path(args["images"]), Path(args["output"]), conf, image_names=args["names"])
stop.set()
wall = time.perf_counter() - t0
peak, start = {}, t0
for stage, seconds in result.timings.items():
    inside = [r for t, r in samples if start <= t <= start + seconds]
    peak[stage] = max(inside) if inside else None
    start += seconds
poses = colmap.poses_from_models(result.models, args["names"], result.stats.get("duplicates"))
out = {
    "wall_s": wall,
    "timings_s": result.timings,
    "peak_rss_mb": peak,
    "peak_rss_mb_run": max(r for _, r in samples) if samples else None,
    "pairs": result.stats.get("pairs"),
    "verified_pairs": result.stats.get("verified_pairs"),
    "models": [m.num_reg_images() for m in result.models],
    "poses": {n: [p.R.tolist(), p.t.tolist()] for n, p in poses.items()},
}
Path(args["result"]).write_text(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "scale")
    ap.add_argument("--sizes", type=int, nargs="+", default=[25, 50, 100, 200, 309])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alone", type=Path, help="a benchmark.py JSON: each scene's mAA reconstructed alone")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--scenes", nargs="+", metavar="DATASET/SCENE", help="only these scenes' photos")
    args = ap.parse_args()

    import numpy as np
    from benchmark import parse_set  # (benchmarks/benchmark.py, beside this script)

    from lightsfm import evaluate as ev
    from lightsfm import imc

    overrides = parse_set(["mapping.max_num_models=16", *args.set])  # a later --set wins
    labels = args.data / "train_labels.csv"
    gt_all = ev.read_poses(labels)
    th_file = args.data / "thresholds.csv"
    ths_all = ev.read_thresholds(th_file) if th_file.exists() else {}
    photos = []  # (mixed name, (dataset, scene), label path)
    for (ds, sc), paths in sorted(imc.read_scene_lists(labels).items()):
        if args.scenes and f"{ds}/{sc}" not in args.scenes:
            continue
        photos += [(f"{ds}__{sc}__{Path(p).name}", (ds, sc), p) for p in paths]
    random.Random(args.seed).shuffle(photos)
    images = args.out / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name, _, path in photos:
        link = images / name
        if not link.exists():
            link.symlink_to((args.data / path).resolve())
    alone = {}
    if args.alone:
        alone = {r["scene"]: r["lightsfm"]["mAA"] for r in json.loads(args.alone.read_text())["rows"]}

    results = []
    for n in args.sizes:
        subset = photos[: min(n, len(photos))]
        run = args.out / f"run-{n}"
        result_file = args.out / f"result-{n}.json"
        child = {
            "images": str(images),
            "output": str(run),
            "names": [name for name, _, _ in subset],
            "overrides": overrides,
            "result": str(result_file),
        }
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(child)], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"n={n}: the run failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(result_file.read_text())
        poses = {k: ev.Pose(np.array(R), np.array(t)) for k, (R, t) in r.pop("poses").items()}
        scenes = {}
        for key in sorted({s for _, s, _ in subset}):
            mine = [(name, path) for name, s, path in subset if s == key]
            if len(mine) < 2:
                continue
            gt = {p: gt_all[key][p] for _, p in mine}
            placeholder = ev.Pose(np.eye(3), np.zeros(3))
            pred = {p: poses.get(name, placeholder) for name, p in mine}
            score = ev.evaluate_scene(gt, pred, ths_all.get(key) or ev.default_thresholds(*key))
            scene = f"{key[0]}/{key[1]}"
            scenes[scene] = {"photos": len(mine), "mAA": score["mAA"], "registered": score.get("registered")}
            if n >= len(photos) and scene in alone:
                scenes[scene]["alone_mAA"] = alone[scene]
        r.update(n=len(subset), scenes=scenes)
        results.append(r)
        stages = ", ".join(f"{k} {v:.1f} s / {r['peak_rss_mb'].get(k) or 0:.0f} MB" for k, v in r["timings_s"].items())
        print(
            f"n={r['n']}: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb_run']:.0f} MB, pairs {r['pairs']} "
            f"(verified {r['verified_pairs']}), models {r['models']}\n  stages: {stages}",
            flush=True,
        )
        for scene, s in scenes.items():
            extra = f" (alone {s['alone_mAA']:.3f})" if "alone_mAA" in s else ""
            print(f"  {scene:32s} {s['photos']:4d} photos  mAA {s['mAA']:.3f}{extra}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
