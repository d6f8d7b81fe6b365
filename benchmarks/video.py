"""A photo scene as a phone video: frames + sequential pairs against the photos + default pairs.

    python benchmarks/video.py [--data ../shared/data] [--scene phone_captures/tensorf_object80]
                               [--out outputs/video] [--crf 18] [--fps 30] [--runs video,photos]
                               [--set section.key=value ...]

The scene's photos, in sorted name order (as lightsfm lists them) and at their own size,
are encoded into one H.264 clip with PyAV (libx264, ``--crf``). Then, each from nothing:

  video   lightsfm.video.prepare_input extracts the clip's frames (every frame: fewer than
          300) into OUT/video/frames with the settings it returns (sequential pairs, one
          camera, no upright detection); features, the sequential pairs
          (lightsfm.pairs.sequential.main, written to OUT/video/pairs-sequential-….txt),
          matching, verification and mapping run as pipeline.reconstruct runs them.
  photos  the photo folder with lightsfm's default settings (lightsfm.imc.main, as the
          benchmark runs it).

Frame <stem>_<i>.jpg is photo i of the sorted list, so both runs are scored on the same
images with the IMC2023 metric (lightsfm.evaluate) against train_labels.csv and
thresholds.csv. Prints one row per run (mAA, registered, pairs, wall time, stage times)
and writes OUT/video.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: F401  (before pycolmap)
import numpy as np
import pycolmap

from lightsfm import __version__, config, images, imc, mapping, pipeline, verify, video
from lightsfm import evaluate as ev
from lightsfm.pairs import read_pairs, sequential, write_pairs

ROOT = Path(__file__).resolve().parents[1]


def cpu_s() -> float:
    """CPU seconds this process has used (all threads): steadier than wall time on a shared machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def encode_clip(photos: list[Path], path: Path, fps: int, crf: int) -> dict:
    """One H.264 clip of ``photos`` in order, at the first photo's size (even sides)."""
    import av
    from PIL import Image

    with Image.open(photos[0]) as im:
        w, h = im.size
    w, h = w - w % 2, h - h % 2
    t = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp.mp4")
    with av.open(str(tmp), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "medium"})
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for p in photos:
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"))
            if rgb.shape[:2] != (h, w):
                rgb = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.LANCZOS))
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    os.replace(tmp, path)
    return {"frames": len(photos), "size": [w, h], "fps": fps, "crf": crf, "bytes": path.stat().st_size,
            "encode_s": round(time.perf_counter() - t, 2)}  # fmt: skip


def reconstruct_sequential(image_dir: Path, out: Path, conf: dict, pconf: dict) -> dict:
    """The frames reconstructed with sequential pairs (settings ``pconf``): by
    pipeline.reconstruct where the pairs registry knows 'sequential', else by
    pipeline.reconstruct's own stages, called here in its order with these pairs."""
    if "sequential" in config.CHOICES.get("pairs.strategy", ()):
        conf = config.merge(conf, {"pairs": {**pconf, "strategy": "sequential"}})
        result = pipeline.reconstruct(image_dir, out, conf)
        names = result.stats["image_names"]
        pairs = read_pairs(out / result.stats["files"]["pairs"])
        return {"models": result.models, "names": names, "pairs": pairs,
                "verified_pairs": result.stats.get("verified_pairs"), "skipped": result.skipped,
                "timings_s": {k: round(v, 2) for k, v in result.timings.items()}}  # fmt: skip

    from lightsfm import matching  # (the modules of the stages as of commit caf9daa)
    from lightsfm.features import aliked

    timings: dict[str, float] = {}

    def timed(stage, f, *a):
        t = time.perf_counter()
        r = f(*a)
        timings[stage] = round(time.perf_counter() - t, 2)
        return r

    names = images.list_images(image_dir)
    infos, skipped = timed("read", images.read_infos, image_dir, names)
    feature_file, failed = timed("extract", aliked.main, image_dir, [i.name for i in infos], out, conf["features"])
    infos = [i for i in infos if i.name not in failed]
    names = [i.name for i in infos]
    pairs = timed("pairs", sequential.main, names, out, pconf, image_dir, feature_file)
    write_pairs(out / f"pairs-{sequential.conf_tag(pconf)}.txt", pairs)
    match_file = timed("match", matching.main, pairs, feature_file, out, conf["matching"])
    database = out / "database.db"
    vstats = timed("verify", verify.main, infos, pairs, feature_file, match_file, database, conf["verify"])
    models = timed("map", mapping.main, database, image_dir, out, conf["mapping"])
    return {"models": models, "names": names, "pairs": pairs, "verified_pairs": vstats["verified"],
            "timings_s": timings, "skipped": {**skipped, **failed}}  # fmt: skip


def score(poses: dict[str, ev.Pose], key: tuple[str, str], data: Path, scene: str) -> dict:
    placeholder = ev.Pose(np.eye(3), np.zeros(3))
    gt = ev.read_poses(data / "train_labels.csv")
    sub = {key: {p: poses.get(p, placeholder) for p in gt[key]}}
    thresholds = data / "thresholds.csv" if (data / "thresholds.csv").is_file() else None
    res = ev.evaluate(sub, gt, thresholds, [scene])["scenes"][scene]
    return {k: res[k] for k in ("mAA", "mAA_R", "mAA_t", "registered", "images", "median_rotation_error")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("LIGHTSFM_DATA", ROOT.parent / "shared" / "data")))
    ap.add_argument("--scene", default="phone_captures/tensorf_object80")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "video")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--crf", type=int, default=18)
    ap.add_argument("--runs", default="video,photos")
    ap.add_argument("--set", action="append", default=[], help="section.key=value (JSON values), both runs")
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    pycolmap.logging.minloglevel = 2
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from benchmark import parse_set

    user = parse_set(args.set)
    # the sequential pairs' own settings apply to the video run only
    seq_user = {
        k: user["pairs"].pop(k) for k in list(user.get("pairs", {})) if k in ("overlap", "step_ratio", "loop_topk")
    }
    ds, sc = args.scene.split("/")
    key = (ds, sc)
    listing = imc.read_scene_lists(args.data / "train_labels.csv")[key]
    photo_dir = args.data / Path(os.path.commonpath([str(Path(p).parent) for p in listing]))
    photos = sorted(photo_dir / Path(p).name for p in listing)
    label_of = {Path(p).name: p for p in listing}
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}

    if "video" in args.runs:
        out = args.out / "video"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        clip = out / f"{sc}.mp4"
        encoded = encode_clip(photos, clip, args.fps, args.crf)
        t0, c0 = time.perf_counter(), cpu_s()
        frames_dir, overrides = video.prepare_input(clip, out)
        frames_s = time.perf_counter() - t0
        plain = {k: v for k, v in overrides.items() if k != "pairs"}
        conf = config.merge(config.merge(config.defaults(), plain), user)
        pconf = {
            **sequential.default_conf,
            **{k: conf["pairs"][k] for k in sequential.default_conf if k in conf["pairs"]},
        }
        pconf.update(seq_user)
        r = reconstruct_sequential(frames_dir, out, conf, pconf)
        wall = time.perf_counter() - t0
        # frame i of the clip is photo i of the sorted list
        photo_of = {video.frame_name(clip.stem, i): p.name for i, p in enumerate(photos)}
        poses = imc.poses_from_models(r["models"], r["names"])
        rows["video"] = {
            **score({label_of[photo_of[n]]: p for n, p in poses.items()}, key, args.data, args.scene),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu_s() - c0, 1),
            "frames_s": round(frames_s, 1),
            "pairs": len(r["pairs"]),
            # pairs that retrieval added (loop closures) to the temporal ones
            "loop_pairs": len(
                set(r["pairs"]) - set(sequential.pairs_sequential(r["names"], pconf["overlap"], pconf["step_ratio"]))
            ),
            "pairs_conf": pconf,
            "verified_pairs": r["verified_pairs"],
            "timings_s": r["timings_s"],
            "models": [m.num_reg_images() for m in r["models"]],
            "clip": encoded,
            "overrides": overrides,
        }
        print(json.dumps({"video": rows["video"]}), flush=True)

    if "photos" in args.runs:
        out = args.out / "photos"
        shutil.rmtree(out, ignore_errors=True)
        t0, c0 = time.perf_counter(), cpu_s()
        submission, runs = imc.main(args.data, out, user, scenes=[args.scene], write_report=False)
        wall = time.perf_counter() - t0
        run = runs[args.scene]
        poses = ev.read_poses(submission)[key]
        rows["photos"] = {
            **score(poses, key, args.data, args.scene),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu_s() - c0, 1),
            "pairs": run["pairs"],
            "verified_pairs": run.get("verified_pairs"),
            "timings_s": run["timings_s"],
            "models": [m["registered"] for m in run["models"]],
        }
        print(json.dumps({"photos": rows["photos"]}), flush=True)

    print(f"\n{'run':8} {'mAA':>6} {'reg':>7} {'pairs':>6} {'wall s':>7} {'cpu s':>7}  stages")
    for name, r in rows.items():
        stages = ", ".join(f"{k} {v:.1f}" for k, v in r["timings_s"].items())
        reg = f"{r['registered']}/{r['images']}"
        print(f"{name:8} {r['mAA']:6.3f} {reg:>7} {r['pairs']:6d} {r['wall_s']:7.1f} {r['cpu_s']:7.1f}  {stages}")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    meta = {"machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
            "versions": {"lightsfm": __version__, "commit": commit, "pycolmap": pycolmap.__version__},
            "scene": args.scene, "set": user, "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    (args.out / "video.json").write_text(json.dumps({**meta, "rows": rows}, indent=2, default=str))
    print(f"written {args.out / 'video.json'}")


if __name__ == "__main__":
    main()
