"""Dense reconstruction, measured: a rendered scene with known geometry, and real scenes.

    python benchmarks/dense.py [--scene strecha/fountain-P11 ...] [--poses both|ours|gt]
                               [--set dense.max_image_size=1000 ...] [--no-synthetic]

1. Synthetic (tests/synthetic_scene.py: textured floor, box and sphere, 7 known cameras at
   320×240): median |depth − true| / true depth, share of pixels within 1 %, share of the
   visible surface with a depth; fused points' distance to the true surface (accuracy) and
   share of true surface points with a fused point within 0.02 (completeness).
2. Real (default: the Strecha scenes of ../shared/data): ``lightsfm dense`` on lightsfm's own
   sparse model ("ours") and on the ground-truth cameras (train_labels.csv + intrinsics.csv)
   with points triangulated from lightsfm's verified matches ("gt"). Reported: fused points,
   share of fused points whose position agrees (depth within 1 %) with the depth maps of
   ≥ 3 views, wall time and peak memory of the ``lightsfm dense`` process.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: E402,F401  (before pycolmap)
import numpy as np
import pycolmap
import torch

from lightsfm import config, dense, imc, pipeline
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import synthetic_scene as syn  # noqa: E402
from benchmark import parse_set  # noqa: E402  (benchmarks/benchmark.py, beside this script)


def read_depth(path: Path) -> np.ndarray:
    dm = pycolmap.DepthMap()
    dm.read(path)
    return np.asarray(dm.to_array())


def synthetic(out: Path, conf: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    true_depths = syn.render_scene(out)
    t = time.perf_counter()
    summary = dense.main(out, conf, image_dir=out / "images")
    wall = time.perf_counter() - t
    rel_all, covered = [], []
    for name, gt in true_depths.items():
        d = read_depth(out / "dense" / "stereo" / "depth_maps" / f"{name}.geometric.bin")
        ok = (d > 0) & (gt > 0)
        rel_all.append(np.abs(d[ok] - gt[ok]) / gt[ok])
        covered.append(ok.sum() / (gt > 0).sum())
    rel = np.concatenate(rel_all)
    xyz, _ = dense.read_ply_points(out / "dense" / "fused.ply")
    dist = syn.surface_distance(xyz)
    gt_pts = []
    for cam, (_, depth) in zip(syn.cameras(len(true_depths)), sorted(true_depths.items()), strict=True):
        ys, xs = np.nonzero(depth)
        pix = np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))], 1)
        gt_pts.append((pix @ np.linalg.inv(cam.K).T * depth[ys, xs][:, None] - cam.t) @ cam.R)
    gt = torch.from_numpy(np.concatenate(gt_pts)[::4]).float()
    fused = torch.from_numpy(xyz).float()
    near = torch.cat([torch.cdist(g, fused).min(1).values for g in gt.split(4096)]).numpy()
    return {
        "depth_median_rel_error": float(np.median(rel)),
        "depth_within_1pct": float(np.mean(rel < 0.01)),
        "surface_with_depth": float(np.mean(covered)),
        "fused_points": summary["fused_points"],
        "accuracy_median": float(np.median(dist)),
        "accuracy_share_within_0.02": float(np.mean(dist < 0.02)),
        "completeness_within_0.02": float(np.mean(near < 0.02)),
        "completeness_within_0.01": float(np.mean(near < 0.01)),
        "wall_s": wall,
        "timings_s": summary["timings_s"],
    }


def consistent_share(out: Path, min_views: int = 3, max_rel: float = 0.01) -> float:
    """Share of fused points that land, within max_rel in depth, on ≥ min_views depth maps."""
    xyz, _ = dense.read_ply_points(out / "dense" / "fused.ply")
    rec = pycolmap.Reconstruction(out / "dense" / "sparse")
    count = np.zeros(len(xyz), int)
    for image in rec.images.values():
        path = out / "dense" / "stereo" / "depth_maps" / f"{image.name}.geometric.bin"
        if not path.exists():
            continue
        d = read_depth(path)
        K = rec.cameras[image.camera_id].calibration_matrix()
        p = image.cam_from_world()
        Xc = xyz @ np.asarray(p.rotation.matrix()).T + np.asarray(p.translation)
        uvw = Xc @ K.T
        z = uvw[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u, v = np.floor(uvw[:, 0] / z).astype(int), np.floor(uvw[:, 1] / z).astype(int)
        inside = (z > 0) & (u >= 0) & (u < d.shape[1]) & (v >= 0) & (v < d.shape[0])
        dm = np.zeros(len(xyz))
        dm[inside] = d[v[inside], u[inside]]
        count += (dm > 0) & (np.abs(dm - z) < max_rel * z)
    return float(np.mean(count >= min_views)) if len(xyz) else 0.0


def gt_model(ours: Path, out: Path, paths: list[str], names: list[str], data: Path, image_dir: Path) -> None:
    """lightsfm's model with the true cameras and poses, points re-triangulated from its matches."""
    shutil.rmtree(out, ignore_errors=True)
    (out / "sparse" / "0").mkdir(parents=True)
    shutil.copy(ours / "database.db", out / "database.db")
    labels = ev.read_poses(data / "train_labels.csv")
    gt = {}
    for poses in labels.values():
        gt.update(poses)
    intr = {}
    for line in (data / "intrinsics.csv").read_text().splitlines()[1:]:
        path, w, h, fx, fy, cx, cy = line.split(",")
        intr[path] = (int(w), int(h), [float(fx), float(fy), float(cx), float(cy)])
    name_to_path = dict(zip(names, paths, strict=True))
    db = pycolmap.Database.open(out / "database.db")
    db_images = {im.name: im for im in db.read_all_images()}
    db.close()
    rec = pycolmap.Reconstruction()
    db = pycolmap.Database.open(out / "database.db")
    for name, path in name_to_path.items():
        w, h, params = intr[path]
        dbim = db_images[name]
        if dbim.camera_id not in rec.cameras:
            cam = pycolmap.Camera(model="PINHOLE", width=w, height=h, params=params, camera_id=dbim.camera_id)
            rec.add_camera_with_trivial_rig(cam)
            db.update_camera(cam)  # triangulation checks the database's cameras against these
        im = pycolmap.Image(name=name, camera_id=dbim.camera_id, image_id=dbim.image_id)
        pose = gt[path]
        rec.add_image_with_trivial_frame(im, pycolmap.Rigid3d(pycolmap.Rotation3d(pose.R), pose.t))
    db.close()
    opts = pycolmap.IncrementalPipelineOptions()
    tri = pycolmap.triangulate_points(rec, out / "database.db", data / image_dir, out / "sparse" / "0", options=opts)
    print(f"  gt model: {tri.num_reg_images()} images, {tri.num_points3D()} points triangulated")
    (out / "summary.json").write_text(json.dumps({"image_dir": str((data / image_dir).resolve())}))


def run_dense(out: Path, overrides: dict) -> dict:
    """``lightsfm dense OUT`` in its own process: wall time and that process's peak RSS."""
    cfg = out / "dense-settings.toml"
    lines = []
    for k, v in overrides.get("dense", {}).items():
        if isinstance(v, dict):
            continue
        lines.append(f"{k} = {json.dumps(v)}")
    stereo_over = overrides.get("dense", {}).get("stereo", {})
    text = "[dense]\n" + "\n".join(lines) + "\n"
    if stereo_over:
        text += "[dense.stereo]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in stereo_over.items()) + "\n"
    cfg.write_text(text)
    exe = Path(sys.executable).with_name("lightsfm")
    t = time.perf_counter()
    proc = subprocess.Popen([str(exe), "dense", str(out), "--config", str(cfg)], stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read() if proc.stderr else ""
    if status != 0:
        raise SystemExit(f"lightsfm dense {out} failed: {err.strip().splitlines()[-1:]}")
    summary = json.loads((out / "dense" / "summary.json").read_text())
    return {
        "wall_s": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "fused_points": summary["fused_points"],
        "consistent_3_views": consistent_share(out),
        "mesh": summary.get("mesh"),
        "timings_s": summary["timings_s"],
        "valid_depth_share": float(np.mean(list(summary["valid_depth_share"].values()))),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "dense-benchmark")
    ap.add_argument("--scene", action="append", help="dataset/scene (default: the strecha scenes)")
    ap.add_argument("--poses", choices=["both", "ours", "gt"], default="both")
    ap.add_argument("--set", action="append", default=[], help="e.g. dense.max_image_size=1000")
    ap.add_argument("--no-synthetic", action="store_true")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    overrides = parse_set(args.set)
    conf = config.load(overrides=overrides)
    results: dict = {"settings": conf["dense"], "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_count": os.cpu_count()}

    if not args.no_synthetic:
        syn_conf = {**conf["dense"], "max_image_size": max(syn.W, syn.H)}
        r = synthetic(args.out / "synthetic", syn_conf)
        results["synthetic"] = r
        print(
            f"synthetic: depth median rel. error {r['depth_median_rel_error'] * 100:.2f} %, "
            f"{r['depth_within_1pct'] * 100:.1f} % of pixels within 1 %, {r['surface_with_depth'] * 100:.1f} % of the "
            f"visible surface with a depth; {r['fused_points']} fused points, accuracy median "
            f"{r['accuracy_median']:.4f} ({r['accuracy_share_within_0.02'] * 100:.1f} % within 0.02), completeness "
            f"{r['completeness_within_0.02'] * 100:.1f} % within 0.02 / {r['completeness_within_0.01'] * 100:.1f} % "
            f"within 0.01 (scene ~3.2 wide, cameras 2.5 away); {r['wall_s']:.1f} s",
            flush=True,
        )

    labels = args.data / "train_labels.csv"
    scenes = imc.read_scene_lists(labels)
    wanted = args.scene or [f"{d}/{s}" for d, s in scenes if d == "strecha"]
    results["scenes"] = {}
    for (ds, sc), paths in scenes.items():
        key = f"{ds}/{sc}"
        if key not in wanted:
            continue
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        ours = args.out / ds / sc / "ours"
        if not (ours / "sparse" / "0").exists():
            print(f"{key}: sparse model (lightsfm reconstruct, default settings) …", flush=True)
            pipeline.reconstruct(args.data / image_dir, ours, config.load(), image_names=names)
        row = {}
        runs = {"ours": ours}
        if args.poses in ("both", "gt"):
            runs["gt"] = args.out / ds / sc / "gt"
            gt_model(ours, runs["gt"], paths, names, args.data, image_dir)
        if args.poses == "gt":
            runs.pop("ours")
        for kind, out in runs.items():
            shutil.rmtree(out / "dense", ignore_errors=True)
            r = run_dense(out, overrides)
            row[kind] = r
            print(
                f"{key:24s} {kind:4s}: {r['fused_points']:7d} fused points, {r['consistent_3_views'] * 100:5.1f} % "
                f"consistent in ≥ 3 views, depth on {r['valid_depth_share'] * 100:.1f} % of pixels, "
                f"mesh {(r['mesh'] or {}).get('faces', 0)} faces; {r['wall_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB "
                f"({', '.join(f'{k} {v:.1f}s' for k, v in r['timings_s'].items())})",
                flush=True,
            )
        results["scenes"][key] = row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dense-benchmark.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {args.out / 'dense-benchmark.json'}")


if __name__ == "__main__":
    main()
