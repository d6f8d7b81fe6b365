"""lightsfm against COLMAP's SIFT pipeline, side by side, on every scene of an IMC-layout folder.

    python benchmarks/benchmark.py [--data ../shared/data] [--out outputs/benchmark]
                                   [--scene dataset/scene ...] [--preset default] [--set section.key=value ...]
                                   [--before GIT-REV]

For each scene both pipelines start from nothing (fresh output folders) in this one
process: lightsfm at the chosen settings, and pycolmap's SIFT extraction (same image
size as lightsfm), exhaustive matching with its geometric verification, and incremental
mapping (COLMAP defaults, the same model-count limits). Both are scored with the IMC2023
metric (lightsfm.evaluate) against train_labels.csv, with thresholds.csv when present.
With --before, lightsfm as it was at an earlier commit (its own code and defaults, from a
git worktree, one subprocess per scene timed the same way) runs between the two.
Prints one table and the stage times, and writes OUT/benchmark.json with the machine,
versions and settings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one table, no bars

import cv2  # noqa: E402,F401  (before pycolmap)
import kornia
import numpy as np
import pycolmap
import torch

from lightsfm import __version__, config, imc, pipeline
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]


def parse_set(items: list[str]) -> dict:
    """Parses "verify.camera_model=PINHOLE" into nested dicts; values are read as JSON when they parse."""
    out: dict = {}
    for item in items:
        key, _, raw = item.partition("=")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        *parents, leaf = key.split(".")
        d = out
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = value
    return out


def run_sift(image_dir: Path, names: list[str], out: Path, conf: dict) -> tuple[list, dict[str, float]]:
    """COLMAP's classical pipeline through pycolmap; returns models and stage timings."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    db = out / "database.db"
    timings = {}
    t = time.perf_counter()
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = conf["features"]["resize_max"]
    ext.num_threads = os.cpu_count() or 1
    pycolmap.extract_features(db, image_dir, image_names=names, extraction_options=ext, device=pycolmap.Device.cpu)
    timings["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
    timings["match+verify"] = time.perf_counter() - t
    t = time.perf_counter()
    opts = pycolmap.IncrementalPipelineOptions()
    opts.min_model_size = conf["mapping"]["min_model_size"]
    opts.max_num_models = conf["mapping"]["max_num_models"]
    opts.random_seed = conf["mapping"]["seed"]
    (out / "sparse").mkdir()
    models = pycolmap.incremental_mapping(db, image_dir, out / "sparse", opts)
    timings["map"] = time.perf_counter() - t
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True), timings


def worktree(rev: str) -> Path:
    """A checkout of ``rev`` beside the outputs (git worktree), made once and reused."""
    sha = subprocess.run(["git", "rev-parse", rev], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    path = ROOT / "outputs" / "worktrees" / sha[:12]
    if not (path / "src").is_dir():
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=True)
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(path), sha], cwd=ROOT, check=True, capture_output=True
        )
    return path


def run_before(tree: Path, data: Path, key: str, out: Path) -> dict:
    """lightsfm of an earlier commit on one scene, through that commit's own benchmark script."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}  # before the installed (editable) package
    cmd = [sys.executable, str(tree / "benchmarks" / "benchmark.py"), "--no-baseline"]
    out = out.resolve()  # the subprocess runs in the worktree
    cmd += ["--data", str(data.resolve()), "--scene", key, "--out", str(out)]
    subprocess.run(cmd, env=env, cwd=tree, check=True, capture_output=True)
    return json.loads((out / "benchmark.json").read_text())["rows"][0]["lightsfm"]


def score(models: list, paths: list[str], names: list[str], gt: dict, ths) -> dict:
    poses = imc.poses_from_models(models, names)
    placeholder = ev.Pose(np.eye(3), np.zeros(3))
    pred = {p: poses.get(n, placeholder) for p, n in zip(paths, names, strict=True)}
    return ev.evaluate_scene(gt, pred, ths)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark")
    ap.add_argument("--scene", action="append", help="dataset/scene (repeatable; default: all)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. verify.camera_model=PINHOLE")
    ap.add_argument("--no-baseline", action="store_true", help="only lightsfm (for quick experiments)")
    ap.add_argument("--before", metavar="GIT-REV", help="also run lightsfm as of this commit, at its defaults")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2

    conf = config.load(args.preset, overrides=parse_set(args.set))
    labels = args.data / "train_labels.csv"
    gt_all = ev.read_poses(labels)
    th_file = args.data / "thresholds.csv"
    ths_all = ev.read_thresholds(th_file) if th_file.exists() else {}
    scenes = imc.read_scene_lists(labels)
    if args.scene:
        scenes = {k: v for k, v in scenes.items() if f"{k[0]}/{k[1]}" in args.scene}

    tree = worktree(args.before) if args.before else None
    rows = []
    for (ds, sc), paths in scenes.items():
        key = f"{ds}/{sc}"
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        gt, ths = gt_all[(ds, sc)], ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc)
        row = {"scene": key, "images": len(names)}

        out = args.out / "lightsfm" / ds / sc
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        result = pipeline.reconstruct(args.data / image_dir, out, conf, image_names=names)
        row["lightsfm"] = {
            "wall_s": time.perf_counter() - t,
            "timings_s": result.timings,
            **score(result.models, paths, names, gt, ths),
            "models": [m.num_reg_images() for m in result.models],
        }
        if tree is not None:
            row["before"] = run_before(tree, args.data, key, args.out / "before" / ds / sc)
        if not args.no_baseline:
            t = time.perf_counter()
            models, timings = run_sift(args.data / image_dir, names, args.out / "sift" / ds / sc, conf)
            row["sift"] = {
                "wall_s": time.perf_counter() - t,
                "timings_s": timings,
                **score(models, paths, names, gt, ths),
                "models": [m.num_reg_images() for m in models],
            }
        rows.append(row)
        print_row(row, header=len(rows) == 1)

    print_summary(rows)
    info = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        "versions": {
            "lightsfm": __version__,
            "torch": torch.__version__,
            "kornia": kornia.__version__,
            "pycolmap": pycolmap.__version__,
            "python": platform.python_version(),
        },
        "settings": {"preset": args.preset, "overrides": parse_set(args.set), "conf": conf, "before": args.before},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(info, indent=2, default=str))
    print(f"\nresults: {args.out / 'benchmark.json'}")


RUNS = {"lightsfm": "lightsfm", "before": "before", "sift": "SIFT"}


def print_row(row: dict, header: bool) -> None:
    runs = [r for r in RUNS if r in row]
    if header:
        line = f"{'scene':30s} |" + "".join(f" {RUNS[r] + ' mAA':>13s} {'reg':>6s} {'time':>7s} |" for r in runs)
        print(line + (f" {'mAA ratio':>9s} {'time ratio':>10s}" if "sift" in row else ""))
    line = f"{row['scene']:30s} |"
    for r in runs:
        a = row[r]
        line += f" {a['mAA']:13.3f} {a['registered']:>2d}/{a['images']:<3d} {a['wall_s']:6.1f}s |"
    if "sift" in row:
        a, b = row["lightsfm"], row["sift"]
        ratio = a["mAA"] / b["mAA"] if b["mAA"] > 0 else float("inf")
        line += f" {ratio:9.2f} {a['wall_s'] / b['wall_s']:10.2f}"
    print(line, flush=True)


def print_summary(rows: list[dict]) -> None:
    runs = [r for r in RUNS if all(r in row for row in rows)]
    line = f"{'mean / total':30s} |"
    for r in runs:
        maa, wall = np.mean([row[r]["mAA"] for row in rows]), sum(row[r]["wall_s"] for row in rows)
        line += f" {maa:13.3f} {'':6s} {wall:6.1f}s |"
    if "sift" in runs:
        a, b = (np.mean([row[r]["mAA"] for row in rows]) for r in ("lightsfm", "sift"))
        ta, tb = (sum(row[r]["wall_s"] for row in rows) for r in ("lightsfm", "sift"))
        line += f" {a / max(b, 1e-9):9.2f} {ta / tb:10.2f}"
    print(line)
    print("\nseconds per stage")
    for row in rows:
        for r in [r for r in RUNS if r in row]:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in row[r]["timings_s"].items())
            print(f"{row['scene']:30s} {RUNS[r]:>8s}: {stages}")


if __name__ == "__main__":
    main()
