"""How incremental mapping's time grows with the model, inside one place: the time at which
each photo is registered, in one mapping run per scene.

    python benchmarks/mapping_growth.py RUNS [--scene dataset/scene ...] [--json OUT.json]

RUNS holds finished default runs as RUNS/<dataset>/<scene>/database.db (benchmark.py's
OUT/lightsfm). Each scene's verified matches are mapped once more with pycolmap's incremental
mapper at lightsfm's default mapping settings (one thread, as the pipeline maps), and the
clock is read at every photo the mapper registers (its ``next_image_callback``). The
cumulative time T(k) at k registered photos is the curve; its slope in log-log over the
second half of the model, and over the whole of it from k = 10, says how mapping one place
grows with its photos. n·log n would give an exponent of 1 + 1/ln k (about 1.2 at
100 photos); a quadratic mapper, 2.

Why this and not benchmarks/scale.py's nested subsets: those are random draws from eight
places, so a small subset holds a few photos of each place, most of them linked to nothing,
and mapping has little to do; as the subset grows it fills its places in and mapping's time
grows faster than the photos for that reason alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import benchmark as bm  # noqa: E402,F401  (sets TQDM_DISABLE, imports cv2 before pycolmap)
import numpy as np  # noqa: E402
import pycolmap  # noqa: E402

from lightsfm import colmap, config  # noqa: E402

LARGE = ("nerd_bm/mold_gold_cape", "phone_captures/tensorf_object80", "dtu/scan65")


def registration_times(database: Path, conf: dict) -> dict:
    """Maps ``database`` (a copy) once; seconds since the start at each registration."""
    ticks: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "database.db"
        shutil.copyfile(database, db)
        (Path(tmp) / "out").mkdir()
        t0 = time.perf_counter()
        models = pycolmap.incremental_mapping(
            db,
            Path(tmp),
            Path(tmp) / "out",
            colmap.mapper_options(conf),
            initial_image_pair_callback=lambda: ticks.extend([time.perf_counter() - t0] * 2),
            next_image_callback=lambda: ticks.append(time.perf_counter() - t0),
        )
        total = time.perf_counter() - t0
    sizes = sorted((m.num_reg_images() for m in models.values()), reverse=True)
    return {"ticks_s": ticks, "total_s": total, "models": sizes}


def slope(k: np.ndarray, t: np.ndarray) -> float:
    """Exponent p of t ∝ k^p, least squares in log-log."""
    return float(np.polyfit(np.log(k), np.log(t), 1)[0])


def summarise(ticks: list[float], total: float) -> dict:
    """The curve at quarters of the model (the last quarter ends with the model finished, its
    final adjustments included), and the exponents of the registrations' clock."""
    t = np.array(ticks)
    k = np.arange(1, len(t) + 1, dtype=float)
    n = len(t)
    quarters = {q: float(t[max(0, round(n * q / 4) - 1)]) for q in (1, 2, 3)} | {4: float(total)}

    def exponent(keep: np.ndarray) -> float:
        return slope(k[keep], t[keep]) if keep.sum() >= 3 else float("nan")

    return {
        "registered": n,
        "at_quarters_s": quarters,
        "per_photo_by_quarter_s": {
            q: (quarters[q] - (quarters[q - 1] if q > 1 else 0.0)) / max(1, round(n / 4)) for q in (1, 2, 3, 4)
        },
        "exponent_second_half": exponent(k >= n / 2),
        "exponent_from_10": exponent(k >= 10),
        "n_log_n_exponent_second_half": 1 + 1 / math.log(max(n, 3) * 0.75),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--scene", action="append", default=[])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 3
    conf = config.load("default")["mapping"]
    rows = []
    for scene in args.scene or LARGE:
        db = args.runs / scene / "database.db"
        if not db.is_file():
            sys.exit(f"{db}: no such database (run benchmarks/benchmark.py first)")
        run = registration_times(db, conf)
        rows.append({"scene": scene, **run, **summarise(run["ticks_s"], run["total_s"])})
    print(f"incremental mapping, one run per scene, default settings, {os.cpu_count()} cores, one thread")
    print(
        f"{'scene':34s} {'reg':>4s} {'total s':>8s} | {'s per photo registered, by quarter of the model':>46s} | "
        f"{'exponent 2nd half':>17s} {'(n log n)':>9s} {'from k=10':>9s}"
    )
    for r in rows:
        per = "  ".join(f"{r['per_photo_by_quarter_s'][q]:.3f}" for q in (1, 2, 3, 4))
        print(
            f"{r['scene']:34s} {r['registered']:4d} {r['total_s']:8.1f} | {per:>46s} | "
            f"{r['exponent_second_half']:17.2f} {r['n_log_n_exponent_second_half']:9.2f} {r['exponent_from_10']:9.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"runs": str(args.runs), "rows": rows}, indent=1))
        print(f"results: {args.json}")


if __name__ == "__main__":
    main()
