"""Peak memory as scenes grow: ``lightsfm reconstruct`` on 10, 30 and 60 images.

    python benchmarks/memory.py [--sizes 10 30 60] [--preset default]

The folders are links to the first N images of ../shared/data (scenes in listing order, so
larger folders hold several scenes, as a real messy folder would). Each run is its own
process from an empty output folder; its peak resident memory comes from the kernel
(``wait4``'s ru_maxrss), its wall time from the clock.
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

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "memory")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10, 30, 60])
    ap.add_argument("--preset", default="default")
    args = ap.parse_args()

    listing = (args.data / "train_labels.csv").read_text().splitlines()[1:]
    paths = [args.data / line.split(",")[2] for line in listing]
    exe = Path(sys.executable).with_name("lightsfm")
    rows = []
    print(f"{'images':>6s} {'peak RSS':>9s} {'wall':>7s} {'models':>12s}  stages")
    for n in args.sizes:
        if n > len(paths):
            raise SystemExit(f"only {len(paths)} images in {args.data}")
        folder = args.out / f"images-{n}"
        out = args.out / f"run-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        folder.mkdir(parents=True)
        for p in paths[:n]:  # scene prefix keeps names unique across scenes
            (folder / f"{p.parent.parent.name}-{p.name}").symlink_to(p.resolve())
        t = time.perf_counter()
        proc = subprocess.Popen(
            [str(exe), "reconstruct", str(folder), "-o", str(out), "--preset", args.preset, "--no-report"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TQDM_DISABLE": "1"},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        summary = json.loads((out / "summary.json").read_text())
        row = {
            "images": n,
            "exit_status": os.waitstatus_to_exitcode(status),
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "wall_s": wall,
            "models": [m["registered"] for m in summary["models"]],
            "pairs": summary["pairs"],
            "timings_s": summary["timings_s"],
        }
        rows.append(row)
        stages = ", ".join(f"{k} {v:.0f}s" for k, v in row["timings_s"].items())
        print(
            f"{n:6d} {row['peak_rss_mb']:7.0f}MB {wall:6.0f}s {str(row['models']):>12s}  {stages}; "
            f"{row['pairs']} pairs",
            flush=True,
        )
    (args.out / "memory.json").write_text(json.dumps({"preset": args.preset, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
