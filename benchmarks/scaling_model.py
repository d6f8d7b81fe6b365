"""A cost model fitted to benchmarks/scale.py's curve, its predictions, and a log-log plot.

    python benchmarks/scaling_model.py RESULTS.json [MORE.json ...] [--svg FILE] [--predict 1000 10000]

Reads scale.py result lists (later files win for a size measured twice) and fits, per
stage, the model its work calls for: per photo (read, turn detection, extraction), per pair
matched (pairs, matching, verification), and a power law a·r^p for mapping in the photos it
registers, r (the sum of the models' sizes): a small random subset of a folder of several
places leaves most of its photos linked to nothing, so mapping's time against the folder's
photos (also printed) grows faster than the work it does. Inside one place mapping grows
near-linearly (benchmarks/mapping_growth.py). The predictions take r = n times the share
registered in the largest run. Pairs per photo are
bounded by retrieval's top-k; the largest run's ratio is taken for the predictions. Peak
RSS is fitted as base + bytes per photo. Prints the table, the fits and the predictions;
--svg draws wall time per stage against photos, log-log, with the fits.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

PER_PHOTO = ("read", "orientation", "extract")
PER_PAIR = ("pairs", "match", "verify")
STAGES = (*PER_PHOTO, *PER_PAIR, "map")


def load(files: list[Path]) -> list[dict]:
    by_n: dict[int, dict] = {}
    for f in files:
        data = json.loads(f.read_text())
        for r in data if isinstance(data, list) else data.get("results", [data]):
            by_n[r["n"]] = r
    return [by_n[n] for n in sorted(by_n)]


def through_origin(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y = s·x."""
    return float((x * y).sum() / (x * x).sum())


def power_law(n: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, p) of y = a·n^p, fitted in log space."""
    p, log_a = np.polyfit(np.log(n), np.log(y), 1)
    return float(math.exp(log_a)), float(p)


def fit(rows: list[dict]) -> dict:
    n = np.array([r["n"] for r in rows], float)
    pairs = np.array([r["pairs"] for r in rows], float)
    t = {s: np.array([r["timings_s"].get(s, 0.0) for r in rows]) for s in STAGES}
    model: dict = {"per_photo_s": {}, "per_pair_s": {}}
    for s in PER_PHOTO:
        model["per_photo_s"][s] = through_origin(n, t[s])
    for s in PER_PAIR:
        model["per_pair_s"][s] = through_origin(pairs, t[s])
    registered = np.array([sum(r["models"]) for r in rows], float)
    model["map"] = dict(zip(("a", "p"), power_law(registered, np.maximum(t["map"], 1e-3)), strict=True))
    model["registered_share"] = float(registered[-1] / n[-1])
    model["pairs_per_photo"] = float(pairs[-1] / n[-1])
    model["exponents"] = {s: power_law(n, np.maximum(t[s], 1e-3))[1] for s in STAGES}
    rss = np.array([r["peak_rss_mb_run"] for r in rows], float)
    slope, base = np.polyfit(n, rss, 1)
    model["rss_mb"] = {"base": float(base), "per_photo": float(slope)}
    return model


def predict(model: dict, n: int) -> dict:
    pairs = model["pairs_per_photo"] * n
    out = {s: model["per_photo_s"][s] * n for s in PER_PHOTO}
    out |= {s: model["per_pair_s"][s] * pairs for s in PER_PAIR}
    out["map"] = model["map"]["a"] * (model["registered_share"] * n) ** model["map"]["p"]
    return {
        "n": n,
        "pairs": pairs,
        "stages_s": out,
        "total_s": sum(out.values()),
        "peak_rss_mb": model["rss_mb"]["base"] + model["rss_mb"]["per_photo"] * n,
    }


def svg(rows: list[dict], model: dict, path: Path) -> None:
    """Log-log plot: seconds per stage against photos, measured (dots) and fitted (lines)."""
    palette = ("#999", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628")
    colours = dict(zip(STAGES, palette, strict=True))
    w, h, left, bottom, top, right = 720, 440, 60, 40, 20, 150
    n_lo, n_hi, t_lo, t_hi = 20, 400, 0.05, 400

    def x(n: float) -> float:
        return left + (math.log10(n) - math.log10(n_lo)) / (math.log10(n_hi) - math.log10(n_lo)) * (w - left - right)

    def y(t: float) -> float:
        t = min(max(t, t_lo), t_hi)
        return (
            h - bottom - (math.log10(t) - math.log10(t_lo)) / (math.log10(t_hi) - math.log10(t_lo)) * (h - top - bottom)
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">'
    ]
    parts.append(f'<rect width="{w}" height="{h}" fill="white"/>')
    for n in (25, 50, 100, 200, 400):
        parts.append(f'<line x1="{x(n):.1f}" y1="{top}" x2="{x(n):.1f}" y2="{h - bottom}" stroke="#eee"/>')
        parts.append(f'<text x="{x(n):.1f}" y="{h - bottom + 14}" text-anchor="middle">{n}</text>')
    for t in (0.1, 1, 10, 100):
        parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{w - right}" y2="{y(t):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end">{t:g} s</text>')
    parts.append(f'<text x="{(left + w - right) / 2}" y="{h - 6}" text-anchor="middle">photos (mixed folder)</text>')
    ns = np.geomspace(n_lo, n_hi, 40)
    for k, s in enumerate(STAGES):
        c = colours[s]
        for r in rows:
            parts.append(f'<circle cx="{x(r["n"]):.1f}" cy="{y(r["timings_s"].get(s, 0.0)):.1f}" r="3" fill="{c}"/>')
        fitted = [predict(model, float(v))["stages_s"][s] for v in ns]
        pts = " ".join(f"{x(v):.1f},{y(t):.1f}" for v, t in zip(ns, fitted, strict=True))
        parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        label = f"{s} (n^{model['exponents'][s]:.2f})"
        if s == "map":
            label = f"map (r^{model['map']['p']:.2f}; n^{model['exponents'][s]:.2f})"
        parts.append(f'<text x="{w - right + 8}" y="{top + 14 + 16 * k}" fill="{c}">{label}</text>')
    parts.append("</svg>")
    path.write_text("\n".join(parts) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path, nargs="+")
    ap.add_argument("--svg", type=Path)
    ap.add_argument("--predict", type=int, nargs="+", default=[1000, 10000])
    args = ap.parse_args()
    rows = load(args.results)
    model = fit(rows)
    head = f"{'n':>5s} {'reg':>5s} {'pairs':>6s} {'wall s':>7s} {'peak MB':>8s}  "
    print(head + " ".join(f"{s:>11s}" for s in STAGES))
    for r in rows:
        stages = " ".join(f"{r['timings_s'].get(s, 0.0):11.1f}" for s in STAGES)
        row = f"{r['n']:5d} {sum(r['models']):5d} {r['pairs']:6d} {r['wall_s']:7.1f} {r['peak_rss_mb_run']:8.0f}  "
        print(row + stages)
    print("\nfitted:")
    for s, v in model["per_photo_s"].items():
        print(f"  {s:12s} {v:.3f} s per photo (measured exponent {model['exponents'][s]:.2f})")
    for s, v in model["per_pair_s"].items():
        print(f"  {s:12s} {v * 1000:.1f} ms per pair (measured exponent in photos {model['exponents'][s]:.2f})")
    print(
        f"  {'map':12s} {model['map']['a']:.4f} s · r^{model['map']['p']:.2f}, r: photos registered "
        f"({model['registered_share']:.3f} of the photos in the largest run; "
        f"against all photos n^{model['exponents']['map']:.2f})"
    )
    print(f"  pairs        {model['pairs_per_photo']:.1f} per photo (largest run)")
    print(f"  peak RSS     {model['rss_mb']['base']:.0f} MB + {model['rss_mb']['per_photo']:.2f} MB per photo")
    print("\npredicted (one machine like this one):")
    for n in args.predict:
        p = predict(model, n)
        worst = max(p["stages_s"], key=p["stages_s"].get)
        stages = ", ".join(f"{s} {v / 3600:.2f} h" for s, v in p["stages_s"].items())
        print(
            f"  {n:6d} photos: {p['total_s'] / 3600:.1f} h ({stages}); {p['pairs']:.0f} pairs; "
            f"peak RSS {p['peak_rss_mb']:.0f} MB; longest stage: {worst}"
        )
    if args.svg:
        svg(rows, model, args.svg)
        print(f"\nplot: {args.svg}")


if __name__ == "__main__":
    main()
