"""Georeferencing from EXIF GPS on the Strecha scenes: how close do the aligned cameras come?

    python benchmarks/gps.py [--data ../shared/data] [--out outputs/gps] [--seeds 5] [--results benchmarks/results/NAME]

Each scene's photos are copied with GPS written into their EXIF, made from the
ground-truth camera centres (c = −Rᵀt of train_labels.csv; Strecha's units are taken to be
metres, as ../shared/data/README.md says). The scene is placed in a made-up local
east-north-up frame: levelled so that the cameras' average up (−y of each ground-truth
camera) points up, turned about the vertical by a seeded angle and centred on a made-up
origin (46.5191 N, 6.5668 E, 400 m); positions are converted to latitude, longitude and
altitude with lightsfm.georef's WGS84 formulas. Seeded Gaussian noise of 0, 2 and 5 m
per axis is added, and 2 photos per copy are moved 50 m sideways (GPS far off). At 2 and
5 m the copies are made twice: with GPSHPositioningError = the noise (as phones write
an accuracy) and without (the fit then estimates the spread itself).

Each scene is reconstructed once, at default settings, from its first copy (only the EXIF
differs between copies: the same camera, the same pixels); every copy is then
georeferenced with lightsfm.georef.main on a copy of that run. Reported per scene and
noise level: the median (and max) distance of the aligned camera centres to their true
positions, the same for the raw GPS of the photos that were not moved, and whether the
two moved photos, and only they, were named as outliers.
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
import numpy as np
import pycolmap

from lightsfm import evaluate as ev
from lightsfm import georef, gps, imc, pipeline
from lightsfm.errors import LightsfmError

ROOT = Path(__file__).resolve().parents[1]
SCENES = ["strecha/fountain-P11", "strecha/Herz-Jesus-P8", "strecha/entry-P10"]
ORIGIN = (46.5191, 6.5668, 400.0)  # made up (near EPFL, where the photos were taken)
NOISE_M = [0.0, 2.0, 5.0]
FAR_OFF_M, FAR_OFF_PHOTOS = 50.0, 2


def true_enu(gt: dict[str, ev.Pose], seed: int) -> dict[str, np.ndarray]:
    """Where each camera is in the made-up east-north-up frame (metres)."""
    names = sorted(gt)
    centres = np.array([-gt[n].R.T @ gt[n].t for n in names])
    up = np.array([-gt[n].R[1] for n in names]).mean(axis=0)
    level = georef.rotation_between(up, np.array([0.0, 0.0, 1.0]))
    a = np.random.default_rng(1000 + seed).uniform(0, 2 * np.pi)
    yaw = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    enu = (centres - centres.mean(axis=0)) @ (yaw @ level).T
    return dict(zip(names, enu, strict=True))


def make_copy(
    src: Path, dst: Path, truth: dict[str, np.ndarray], noise: float, tagged: bool, seed: int
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Copies the photos with GPS: the truth plus noise, and FAR_OFF_PHOTOS moved far.
    Returns the moved photos and the GPS positions written (ENU)."""
    rng = np.random.default_rng(seed)
    names = sorted(truth)
    enu = np.array([truth[n] for n in names]) + rng.normal(0.0, noise, (len(names), 3))
    far = sorted(rng.choice(len(names), FAR_OFF_PHOTOS, replace=False).tolist())
    for i in far:
        a = rng.uniform(0, 2 * np.pi)
        enu[i, :2] += FAR_OFF_M * np.array([np.cos(a), np.sin(a)])
    lla = gps.enu_to_geodetic(enu, ORIGIN)
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    for name, (lat, lon, alt) in zip(names, lla, strict=True):
        fix = gps.GpsFix(float(lat), float(lon), float(alt), noise if tagged and noise > 0 else None)
        gps.write_gps(src / name, dst / name, fix)
    return [names[i] for i in far], dict(zip(names, enu, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "gps")
    ap.add_argument("--scenes", nargs="*", default=SCENES)
    ap.add_argument("--seeds", type=int, default=5, help="noise draws per level (the same reconstruction)")
    ap.add_argument("--reuse-runs", action="store_true", help="keep reconstructions an earlier run left in --out")
    ap.add_argument("--results", type=Path, default=None, help="write <results>.json and .txt")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    labels = ev.read_poses(args.data / "train_labels.csv")
    lists = imc.read_scene_lists(args.data / "train_labels.csv")
    rows, lines = [], []
    for scene in args.scenes:
        ds, sc = scene.split("/")
        src = args.data / Path(lists[(ds, sc)][0]).parent
        gt = {Path(p).name: pose for p, pose in labels[(ds, sc)].items()}
        base = args.out / ds / sc
        run = base / "run"
        variants = [
            (noise, tagged, seed) for noise in NOISE_M for tagged in (True, False) for seed in range(args.seeds)
        ]
        variants = [v for v in variants if v[0] > 0 or v[1]]  # no accuracy to write at 0 m
        first = True
        for noise, tagged, seed in variants:
            truth = true_enu(gt, seed)
            label = f"noise{noise:g}-{'tagged' if tagged else 'untagged'}-seed{seed}"
            photos = base / "photos" / label
            far, gps = make_copy(src, photos, truth, noise, tagged, seed)
            if first and args.reuse_runs and (run / "sparse" / "0").is_dir():
                first = False
            if first:  # one reconstruction per scene: the copies differ only in EXIF GPS
                shutil.rmtree(run, ignore_errors=True)
                t = time.perf_counter()
                result = pipeline.reconstruct(photos, run, None)
                wall = time.perf_counter() - t
                registered = result.models[0].num_reg_images() if result.models else 0
                print(f"{scene}: reconstructed, {registered}/{len(gt)} registered ({wall:.0f} s)", flush=True)
                first = False
            work = base / "georef" / label
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            shutil.copyfile(run / "summary.json", work / "summary.json")
            shutil.copytree(run / "sparse", work / "sparse")
            t = time.perf_counter()
            try:
                record = georef.main(work, gps=True, image_dir=photos)
            except LightsfmError as e:
                record = {"error": str(e)}
            georef_s = time.perf_counter() - t
            row: dict = {"scene": scene, "noise_m": noise, "tagged": tagged, "seed": seed, "far_off": far}
            if "error" in record:
                row["error"] = record["error"]
            else:
                aligned = pycolmap.Reconstruction(work / "sparse" / "0")
                posed = [im for im in aligned.images.values() if im.has_pose]
                # the model is in metres about the origin georef chose: back to our made-up frame
                origin = (record["latitude"], record["longitude"], record["altitude"])
                lla = gps.enu_to_geodetic(np.array([im.projection_center() for im in posed]), origin)
                enu = gps.geodetic_to_enu(lla, ORIGIN)
                errs = {im.name: float(np.linalg.norm(e - truth[im.name])) for im, e in zip(posed, enu, strict=True)}
                raw = [float(np.linalg.norm(gps[n] - truth[n])) for n in errs if n not in far]
                named = set(record["outliers"])
                row.update(
                    registered=len(errs),
                    median_error_m=float(np.median(list(errs.values()))),
                    max_error_m=float(np.max(list(errs.values()))),
                    raw_gps_median_error_m=float(np.median(raw)) if raw else None,
                    outliers=record["outliers"],
                    far_off_named=sorted(named & set(far)),
                    wrongly_named=sorted(named - set(far)),
                    median_residual_m=record["median_residual_m"],
                    scale=record["transform"]["scale"],
                    georef_s=georef_s,
                    errors_m=errs,
                )
            rows.append(row)
            shutil.rmtree(photos)  # the copies are big; the record says what they held
            print(json.dumps({k: v for k, v in row.items() if k != "errors_m"}), flush=True)
    # one line per scene, noise level and accuracy tag, over the seeds
    head = (
        f"{'scene':24s} {'noise':>6s} {'accuracy':>9s} {'median error m (per seed)':>28s} "
        f"{'raw GPS m':>9s} {'far-off named':>13s} {'wrongly named':>13s}"
    )
    lines = [head, "-" * len(head)]
    for scene in args.scenes:
        for noise in NOISE_M:
            for tagged in (True, False):
                group = [r for r in rows if r["scene"] == scene and r["noise_m"] == noise and r["tagged"] == tagged]
                if not group:
                    continue
                ok = [r for r in group if "error" not in r]
                med = [r["median_error_m"] for r in ok]
                raw = [r["raw_gps_median_error_m"] for r in ok if r["raw_gps_median_error_m"] is not None]
                named = sum(len(r["far_off_named"]) for r in ok)
                wrong = sum(len(r["wrongly_named"]) for r in ok)
                per_seed = " ".join(f"{m:.3f}" for m in med) + (
                    f" +{len(group) - len(ok)} failed" if len(ok) < len(group) else ""
                )
                median = np.median(med) if med else float("nan")
                raw_median = np.median(raw) if raw else float("nan")
                lines.append(
                    f"{scene:24s} {noise:5.0f}m {'tagged' if tagged and noise else 'no':>9s} "
                    f"{median:7.3f} ({per_seed}) {raw_median:9.2f} "
                    f"{named:>6d}/{FAR_OFF_PHOTOS * len(group):<6d} {wrong:>13d}"
                )
    table = "\n".join(lines)
    print(table)
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        args.results.with_suffix(".json").write_text(json.dumps({"origin": ORIGIN, "runs": rows}, indent=1))
        note = (
            "# benchmarks/gps.py: EXIF GPS = ground-truth centres (Strecha units taken as metres) in a\n"
            f"# made-up east-north-up frame about {ORIGIN}, plus Gaussian noise per axis; {FAR_OFF_PHOTOS} photos\n"
            f"# per copy moved {FAR_OFF_M:g} m sideways. {args.seeds} noise draws per row; one default\n"
            "# reconstruction per scene.\n"
            "# median error: aligned camera centres vs their true positions (median over photos; the\n"
            "# row's figure is the median over draws); raw GPS: the written GPS of the photos not moved.\n"
        )
        args.results.with_suffix(".txt").write_text(note + table + "\n")


if __name__ == "__main__":
    main()
