"""Time per photo of turn detection's cheap pass: the tiny ALIKED against XFeat.

    python benchmarks/cheap_pass.py [--scene middlebury/templeSparseRing ...] [--photos 8]

Each extractor describes the first PHOTOS photos of each scene at the cheap pass's size
(lightsfm.orientation.CHEAP: 512 px, 512 keypoints), on every core, three times; the best
of the three is printed, in ms per photo (decoding not included).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from lightsfm import extractors
from lightsfm.device import set_threads
from lightsfm.images import load_image
from lightsfm.orientation import CHEAP

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scene", action="append")
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args()
    set_threads()
    models = {name: extractors.get(conf["name"])(conf) for name, conf in CHEAP.items()}
    for scene in args.scene or ["middlebury/templeSparseRing", "phone_captures/tensorf_object80"]:
        files = sorted((args.data / scene / "images").iterdir())[: args.photos]
        images = {n: [load_image(f, c["resize_max"])[0] for f in files] for n, c in CHEAP.items()}
        for name, model in models.items():
            model(images[name][0])  # warm up
        best = {}
        for _ in range(3):
            for name, model in models.items():
                t = time.perf_counter()
                for rgb in images[name]:
                    model(rgb)
                ms = (time.perf_counter() - t) / len(files) * 1000
                best[name] = min(best.get(name, ms), ms)
        size = images["aliked"][0].shape[1::-1]
        print(f"{scene} ({size[0]}x{size[1]}): " + ", ".join(f"{n} {v:.1f} ms/photo" for n, v in best.items()))


if __name__ == "__main__":
    main()
