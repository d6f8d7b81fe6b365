"""An internet-style collection built from a calibrated scene: several cameras, crops, resizes
and EXIF focal lengths that are wrong, against the same photos as shot.

    python benchmarks/internet.py [--data ../shared/data] [--scene strecha/fountain-P11] [--out outputs/internet]
        [--set section.key=value ...]

The photos are copied with EXIF written into them (seeded): every other photo claims to be
from a second camera make; the true 35 mm-equivalent focal for half of them, one 1.6 times
too long for some (a wrong EXIF), none for the rest; a third of them cropped to 4:3 around
an off-centre point (keeping the EXIF of the whole frame, as editors do) and some
downscaled. The poses do not change, so both runs are scored against the same labels.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: F401  (before pycolmap)
import numpy as np
import pycolmap
from benchmark import parse_set, score
from PIL import Image

from lightsfm import config, imc, pipeline
from lightsfm import evaluate as ev

ROOT = Path(__file__).resolve().parents[1]
EXIF_IFD, MAKE, MODEL = 0x8769, 0x010F, 0x0110
FOCAL35, EXIF_W, EXIF_H = 0xA405, 0xA002, 0xA003


def build(src: Path, names: list[str], true_f35: float, dst: Path, seed: int = 0) -> dict[str, str]:
    """Writes the internet-style copies into ``dst``; returns what was done to each photo."""
    rng = np.random.default_rng(seed)
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    done = {}
    for i, name in enumerate(names):
        im = Image.open(src / name).convert("RGB")
        w, h = im.size
        exif = Image.Exif()
        exif[MAKE], exif[MODEL] = ("PhoneCo", "P1") if i % 2 else ("CamMaker", "C9")
        sub = exif.get_ifd(EXIF_IFD)
        sub[EXIF_W], sub[EXIF_H] = w, h
        kind = ["true focal", "wrong focal", "no focal"][i % 3]
        if kind != "no focal":
            sub[FOCAL35] = int(round(true_f35 * (1.6 if kind == "wrong focal" else 1.0)))
        edit = ""
        if i % 3 == 1:  # cropped to 4:3 somewhere off centre
            cw = int(h * 4 / 3)
            x0 = int(rng.integers(0, w - cw + 1))
            im, edit = im.crop((x0, 0, x0 + cw, h)), f", cropped to {cw}x{h} at x={x0}"
        elif i % 4 == 0:
            im, edit = im.resize((w * 3 // 4, h * 3 // 4), Image.Resampling.LANCZOS), ", downscaled to 3/4"
        im.save(dst / name, quality=95, exif=exif)
        done[name] = f"{exif[MAKE]}, {kind}{edit}"
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--scene", default="strecha/fountain-P11")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "internet")
    ap.add_argument("--set", action="append", default=[], help="override, e.g. verify.camera_model=SIMPLE_PINHOLE")
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    ds, sc = args.scene.split("/")
    labels = args.data / "train_labels.csv"
    paths = imc.read_scene_lists(labels)[(ds, sc)]
    gt, ths = ev.read_poses(labels)[(ds, sc)], ev.read_thresholds(args.data / "thresholds.csv")[(ds, sc)]
    image_dir = args.data / Path(paths[0]).parent
    names = [Path(p).name for p in paths]
    cal = {r["image_path"]: r for r in csv.DictReader(open(args.data / "intrinsics.csv"))}[paths[0]]
    true_f35 = float(cal["fx"]) * 36 / max(int(cal["width"]), int(cal["height"]))
    edits = build(image_dir, names, true_f35, args.out / "images")
    conf = config.load(overrides=parse_set(args.set))
    rows = {}
    for label, folder in (("as shot", image_dir), ("internet-style", args.out / "images")):
        out = args.out / label.replace(" ", "-")
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        result = pipeline.reconstruct(folder, out, conf, image_names=names)
        s = score(result.models, paths, names, gt, ths, result.stats.get("duplicates"))
        cams = result.models[0].cameras if result.models else {}
        rows[label] = {
            "mAA": s["mAA"],
            "registered": s["registered"],
            "wall_s": time.perf_counter() - t,
            "cameras": len(cams),
            "focals_px": sorted(round(c.mean_focal_length(), 1) for c in cams.values()),
        }
        print(
            f"{label:15s} mAA {s['mAA']:.3f} registered {s['registered']}/{len(names)} cameras {len(cams)} "
            f"focals {rows[label]['focals_px']} ({rows[label]['wall_s']:.1f} s)",
            flush=True,
        )
    print(f"true focal {float(cal['fx']):.1f} px at {cal['width']} px (35 mm equivalent {true_f35:.1f} mm)")
    for name, what in edits.items():
        print(f"  {name}: {what}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "internet.json").write_text(json.dumps({"runs": rows, "edits": edits}, indent=1))


if __name__ == "__main__":
    main()
