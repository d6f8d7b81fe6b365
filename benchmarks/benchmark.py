"""lightsfm against COLMAP's SIFT pipelines, side by side, on every scene of an IMC-layout folder.

    python benchmarks/benchmark.py [--data ../shared/data] [--out outputs/benchmark]
                                   [--scene dataset/scene ...] [--preset default] [--set section.key=value ...]
                                   [--peers sift-shared,sift-global[,sift-per-image]] [--no-baseline]
                                   [--before GIT-REV] [--shuffle SEED] [--repeat N]

For each scene every pipeline starts from nothing (fresh output folders) in this one
process: lightsfm at the chosen settings, then the SIFT peers, set up as a competent
COLMAP user would: pycolmap's SIFT extraction (same image size as lightsfm) with one
shared camera where the photos come from one camera (same size and EXIF make/model/focal,
or no EXIF: lightsfm's own camera grouping finds one group), exhaustive matching with its
geometric verification, then
  sift-shared     incremental mapping (row "sift"),
  sift-global     COLMAP's global mapper (GLOMAP) on a copy of the same database (row
                  "sift_global"; its time counts the shared extraction and matching),
  sift-per-image  COLMAP's default camera mode (one camera per image without EXIF) and
                  incremental mapping, as this benchmark ran before (row "sift_per_image").
COLMAP defaults otherwise, with lightsfm's model-count limits and seed. All are scored
with the IMC2023 metric (lightsfm.evaluate) against train_labels.csv, with thresholds.csv
when present. With --before, lightsfm as it was at an earlier commit (its own code and
defaults, from a git worktree, one subprocess per scene timed the same way) runs after
lightsfm. Prints one table and the stage times, and writes OUT/benchmark.json with the
machine, versions and settings.

With --repeat N each scene runs N times, lightsfm and the peers taking turns and swapping
who goes first each round (lightsfm, peers; peers, lightsfm; ...), so that a slow spell of
this shared machine falls on both sides alike. The table then shows each pipeline's
median wall time, and the time ratio of every round is listed under it; mAA and stage
times are those of the first round (all rounds are in the JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: one table, no bars

import cv2  # noqa: E402,F401  (before pycolmap)
import kornia
import numpy as np
import pycolmap
import torch

from lightsfm import __version__, colmap, config, images, imc, pipeline
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


PEERS = ("sift-shared", "sift-global", "sift-per-image")


def camera_mode(image_dir: Path, names: list[str]) -> pycolmap.CameraMode:
    """SINGLE where the photos come from one camera (lightsfm's grouping finds one group), else AUTO."""
    infos, _ = images.read_infos(image_dir, names)
    return pycolmap.CameraMode.SINGLE if len(colmap.group_cameras(infos, "auto")) == 1 else pycolmap.CameraMode.AUTO


def sift_database(image_dir: Path, names: list[str], out: Path, conf: dict, mode: pycolmap.CameraMode) -> dict:
    """SIFT extraction and exhaustive matching into OUT/database.db; returns stage timings."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    db = out / "database.db"
    timings = {}
    t = time.perf_counter()
    ext = pycolmap.FeatureExtractionOptions()
    ext.max_image_size = conf["features"]["resize_max"]
    ext.num_threads = os.cpu_count() or 1
    pycolmap.extract_features(
        db, image_dir, image_names=names, camera_mode=mode, extraction_options=ext, device=pycolmap.Device.cpu
    )
    timings["extract"] = time.perf_counter() - t
    t = time.perf_counter()
    pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
    timings["match+verify"] = time.perf_counter() - t
    return timings


def sift_incremental(image_dir: Path, out: Path, conf: dict) -> list:
    """COLMAP's incremental mapper on OUT/database.db; largest model first."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.min_model_size = conf["mapping"]["min_model_size"]
    opts.max_num_models = conf["mapping"]["max_num_models"]
    opts.random_seed = conf["mapping"]["seed"]
    (out / "sparse").mkdir()
    models = pycolmap.incremental_mapping(out / "database.db", image_dir, out / "sparse", opts)
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


def sift_global(image_dir: Path, out: Path, conf: dict) -> list:
    """COLMAP's global mapper (GLOMAP) on a copy of OUT/database.db, which it changes; largest model first."""
    work = out / "global"
    (work / "sparse").mkdir(parents=True)
    shutil.copyfile(out / "database.db", work / "database.db")
    opts = pycolmap.GlobalPipelineOptions()
    opts.min_model_size = conf["mapping"]["min_model_size"]
    opts.multiple_models = conf["mapping"]["max_num_models"] > 1
    opts.random_seed = conf["mapping"]["seed"]
    models = pycolmap.global_mapping(work / "database.db", image_dir, work / "sparse", opts)
    return sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)


def run_peers(image_dir: Path, names: list[str], out: Path, conf: dict, peers: list[str]) -> dict[str, tuple]:
    """(models, stage timings, camera mode) of each requested peer, by row key.

    The shared-camera database is built once for both of its mappers.
    """
    runs = {}
    mode = camera_mode(image_dir, names)
    if {"sift-shared", "sift-global"} & set(peers):
        db_timings = sift_database(image_dir, names, out / "sift", conf, mode)
        mappers = {"sift-shared": ("sift", sift_incremental), "sift-global": ("sift_global", sift_global)}
        for peer, (key, mapper) in mappers.items():
            if peer in peers:
                t = time.perf_counter()
                models = mapper(image_dir, out / "sift", conf)
                runs[key] = models, {**db_timings, "map": time.perf_counter() - t}, mode
    if "sift-per-image" in peers:
        default = pycolmap.CameraMode.AUTO  # COLMAP's default: one camera per image without EXIF
        timings = sift_database(image_dir, names, out / "sift_per_image", conf, default)
        t = time.perf_counter()
        models = sift_incremental(image_dir, out / "sift_per_image", conf)
        runs["sift_per_image"] = models, {**timings, "map": time.perf_counter() - t}, default
    return runs


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


def git_state() -> dict:
    """The commit measured, and the tracked files that differed from it (shared working trees)."""
    git = ["git", "-C", str(ROOT)]
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "diff", "--name-only", "HEAD"], capture_output=True, text=True).stdout.split()
    return {"commit": sha, "uncommitted": dirty}


def score(models: list, paths: list[str], names: list[str], gt: dict, ths, duplicates: dict | None = None) -> dict:
    poses = colmap.poses_from_models(models, names, duplicates)
    placeholder = ev.Pose(np.eye(3), np.zeros(3))
    pred = {p: poses.get(n, placeholder) for p, n in zip(paths, names, strict=True)}
    return ev.evaluate_scene(gt, pred, ths)


@dataclasses.dataclass
class Scene:
    key: str  # dataset/scene
    image_dir: Path
    names: list[str]  # relative to image_dir, in the order the pipelines get them
    paths: list[str]  # as the labels name them
    gt: dict
    ths: Any


def run_lightsfm(scene: Scene, conf: dict, out: Path) -> dict:
    """lightsfm from an empty output folder: wall time, stage times, scores."""
    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    result = pipeline.reconstruct(scene.image_dir, out, conf, image_names=scene.names)
    return {
        "wall_s": time.perf_counter() - t,
        "timings_s": result.timings,
        **score(result.models, scene.paths, scene.names, scene.gt, scene.ths, result.stats.get("duplicates")),
        "models": [m.num_reg_images() for m in result.models],
    }


def run_baseline(scene: Scene, conf: dict, args: argparse.Namespace, tree: Path | None, peers: list[str]) -> dict:
    """What lightsfm is compared with: the earlier commit (--before) and the SIFT peers, by row key."""
    found = {}
    if tree is not None:
        found["before"] = run_before(tree, args.data, scene.key, args.out / "before" / scene.key)
    if peers:
        peer_runs = run_peers(scene.image_dir, scene.names, args.out / "peers" / scene.key, conf, peers)
        for k, (models, timings, mode) in peer_runs.items():
            found[k] = {
                "wall_s": sum(timings.values()),  # the global peer pays the shared extraction and matching too
                "timings_s": timings,
                "camera_mode": mode.name.lower(),
                **score(models, scene.paths, scene.names, scene.gt, scene.ths),
                "models": [m.num_reg_images() for m in models],
            }
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark")
    ap.add_argument("--scene", action="append", help="dataset/scene (repeatable; default: all)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. verify.camera_model=PINHOLE")
    ap.add_argument("--no-baseline", action="store_true", help="only lightsfm (for quick experiments)")
    ap.add_argument(
        "--peers",
        default="sift-shared,sift-global",
        help=f"comma-separated SIFT peers, of {', '.join(PEERS)} (default: the first two)",
    )
    ap.add_argument("--before", metavar="GIT-REV", help="also run lightsfm as of this commit, at its defaults")
    ap.add_argument(
        "--shuffle",
        type=int,
        metavar="SEED",
        help="give lightsfm and its peers each scene's photos in this seeded order, not the labels' (not --before)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each scene N times, lightsfm and the peers taking turns; report median times",
    )
    args = ap.parse_args()
    git = git_state()  # at the start: others may edit a shared working tree while this runs
    peers = [] if args.no_baseline else [p for p in args.peers.split(",") if p]
    if unknown := set(peers) - set(PEERS):
        ap.error(f"unknown peer(s) {', '.join(sorted(unknown))}; choose from {', '.join(PEERS)}")
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
        if args.shuffle is not None:  # (the photo order sets image ids, and so the mappers' choices)
            paths = random.Random(f"{args.shuffle}/{key}").sample(paths, len(paths))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        gt, ths = gt_all[(ds, sc)], ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc)
        row = {"scene": key, "images": len(names)}
        scene = Scene(key, args.data / image_dir, names, paths, gt, ths)
        rounds: list[dict] = []
        for r in range(max(1, args.repeat)):
            # who goes first swaps each round: a slow spell of the machine falls on both sides
            runs: dict = {}
            for side in ("lightsfm", "baseline") if r % 2 == 0 else ("baseline", "lightsfm"):
                if side == "lightsfm":
                    runs["lightsfm"] = run_lightsfm(scene, conf, args.out / "lightsfm" / key)
                else:
                    runs.update(run_baseline(scene, conf, args, tree, peers))
            rounds.append(runs)
        for k in rounds[0]:
            row[k] = dict(rounds[0][k])
            if len(rounds) > 1:
                row[k]["wall_s"] = float(np.median([runs[k]["wall_s"] for runs in rounds]))
                row[k]["rounds"] = [
                    {"wall_s": runs[k]["wall_s"], "timings_s": runs[k]["timings_s"], "mAA": runs[k]["mAA"]}
                    for runs in rounds
                ]
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
            **git,
            "torch": torch.__version__,
            "kornia": kornia.__version__,
            "pycolmap": pycolmap.__version__,
            "python": platform.python_version(),
        },
        "settings": {
            "preset": args.preset,
            "overrides": parse_set(args.set),
            "conf": conf,
            "before": args.before,
            "shuffle": args.shuffle,
            "peers": peers,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(info, indent=2, default=str))
    print(f"\nresults: {args.out / 'benchmark.json'}")


RUNS = {
    "lightsfm": "lightsfm",
    "before": "before",
    "sift": "SIFT",
    "sift_global": "SIFT-global",
    "sift_per_image": "SIFT-per-img",
}
# lightsfm's mAA is compared with every SIFT peer; its time with SIFT-incremental (shared camera).
VERSUS = ("sift", "sift_global", "sift_per_image")


def fold(runs: list[dict]) -> str:
    """Mean pairs_over_30deg as a column (rows of --before commits older than the metric lack it)."""
    if not all("pairs_over_30deg" in a for a in runs):
        return f"{'-':>5s}"
    return f"{np.mean([a['pairs_over_30deg'] for a in runs]):5.2f}"


def versus_header(keys: list[str]) -> str:
    line = "".join(f" {'ΔmAA ' + RUNS[k]:>17s}" for k in VERSUS if k in keys)
    return line + (f" {'time/SIFT':>9s}" if "sift" in keys else "")


def print_row(row: dict, header: bool) -> None:
    runs = [r for r in RUNS if r in row]
    if header:
        line = f"{'scene':30s} |" + "".join(
            f" {RUNS[r] + ' mAA':>16s} {'reg':>6s} {'time':>7s} {'>30°':>5s} |" for r in runs
        )
        print(line + versus_header(runs))
    line = f"{row['scene']:30s} |"
    for r in runs:
        a = row[r]
        line += f" {a['mAA']:16.3f} {a['registered']:>2d}/{a['images']:<3d} {a['wall_s']:6.1f}s {fold([a])} |"
    a = row["lightsfm"]
    for k in [k for k in VERSUS if k in row]:
        line += f" {a['mAA'] - row[k]['mAA']:+17.3f}"
    if "sift" in row:
        line += f" {a['wall_s'] / row['sift']['wall_s']:9.2f}"
    print(line, flush=True)
    if "rounds" in a:  # --repeat: every round's times, and its ratio to SIFT-incremental
        times = "; ".join(
            f"{RUNS[r]} " + " ".join(f"{x['wall_s']:.1f}" for x in row[r]["rounds"]) for r in runs if "rounds" in row[r]
        )
        ratios = ""
        if "sift" in row and "rounds" in row["sift"]:
            each = [x["wall_s"] / y["wall_s"] for x, y in zip(a["rounds"], row["sift"]["rounds"], strict=True)]
            ratios = "; time/SIFT by round " + " ".join(f"{x:.2f}" for x in each)
        print(f"{'':30s}   rounds (s): {times}{ratios}", flush=True)


def print_summary(rows: list[dict]) -> None:
    runs = [r for r in RUNS if all(r in row for row in rows)]
    mean = {r: float(np.mean([row[r]["mAA"] for row in rows])) for r in runs}
    total = {r: sum(row[r]["wall_s"] for row in rows) for r in runs}
    line = f"{'mean / total':30s} |"
    for r in runs:
        line += f" {mean[r]:16.3f} {'':6s} {total[r]:6.1f}s {fold([row[r] for row in rows])} |"
    for k in [k for k in VERSUS if k in runs]:
        line += f" {mean['lightsfm'] - mean[k]:+17.3f}"
    if "sift" in runs:
        line += f" {total['lightsfm'] / total['sift']:9.2f}"
    print(line)
    for k in [k for k in VERSUS if k in runs]:
        wins = sum(row["lightsfm"]["mAA"] > row[k]["mAA"] for row in rows)
        print(f"lightsfm's mAA higher than {RUNS[k]} on {wins} of {len(rows)} scenes")
    print("\nseconds per stage")
    for row in rows:
        for r in [r for r in RUNS if r in row]:
            stages = ", ".join(f"{k} {v:.1f}" for k, v in row[r]["timings_s"].items())
            camera = f" (camera mode {row[r]['camera_mode']})" if "camera_mode" in row[r] else ""
            print(f"{row['scene']:30s} {RUNS[r]:>12s}: {stages}{camera}")


if __name__ == "__main__":
    main()
