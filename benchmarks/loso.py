"""Leave-one-scene-out: would each rule have been chosen without the scene it is tested on?

    python benchmarks/loso.py --folds outputs/folds/folds.json --principal-point outputs/pp/principal_point.json

For every rule and every scene held out, the variant with the best mean mAA over the other
scenes is chosen and scored on the held-out one, against the best variant there. A rule
earns its place when the chosen variant never loses more than 0.01 on a held-out scene.
Reads what benchmarks/folds.py (mappers: incremental / global / lightsfm's auto with the
fold checks) and benchmarks/principal_point.py (centre / always refined / the old
300-observations rule / the covariance guard) wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

MAX_LOSS = 0.01


def loso(table: dict[str, dict[str, float]]) -> list[dict]:
    """``table[variant][scene]`` → one row per held-out scene."""
    scenes = sorted(set.intersection(*(set(v) for v in table.values())))
    rows = []
    for held in scenes:
        rest = [s for s in scenes if s != held]
        means = {v: float(np.mean([table[v][s] for s in rest])) for v in table}
        tied = [v for v in table if means[v] >= max(means.values()) - 1e-9]
        chosen = tied[-1]  # on a tie, the rule under test (listed last): the others cannot tell them apart
        best = max(table, key=lambda v: table[v][held])
        rows.append(
            {
                "held_out": held,
                "chosen": chosen,
                "tied_with": [v for v in tied if v != chosen],
                "mAA": table[chosen][held],
                "best": best,
                "best_mAA": table[best][held],
                "loss": table[best][held] - table[chosen][held],
            }
        )
    return rows


def mapper_table(folds: Path) -> dict[str, dict[str, float]]:
    rows = json.loads(folds.read_text())["rows"]
    names = {"incremental": "incremental only", "global": "global only"}
    table: dict[str, dict[str, float]] = {}
    for r in rows:
        variant = names.get(r["run"], "auto + fold checks" if r["run"].endswith("(lightsfm)") else None)
        if variant:
            table.setdefault(variant, {})[r["scene"]] = r["mAA"]
    return table


def principal_point_table(path: Path) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    for r in json.loads(path.read_text()):
        scene = r["scene"] if r["part"] == "all" else f"{r['scene']} ({r['part']})"
        table.setdefault("centre", {})[scene] = r["mAA_centre"]
        table.setdefault("always refined", {})[scene] = r["mAA_refined"]
        old = r["mAA_refined"] if r["observations_per_image"] >= 300 else r["mAA_centre"]
        table.setdefault(">= 300 observations per image (old)", {})[scene] = old
        table.setdefault("covariance guard (new)", {})[scene] = r["mAA_default"]
    return table


def show(title: str, table: dict[str, dict[str, float]]) -> list[dict]:
    rows = loso(table)
    print(f"\n## {title}\n")
    scenes = [r["held_out"] for r in rows]
    print("| variant | " + " | ".join(scenes) + " | mean |")
    print("|---|" + "---|" * (len(scenes) + 1))
    for v, by_scene in table.items():
        print(
            f"| {v} | "
            + " | ".join(f"{by_scene[s]:.3f}" for s in scenes)
            + f" | {np.mean(list(by_scene.values())):.3f} |"
        )
    print("\n| held-out scene | chosen on the others | its mAA | best there | loss |")
    print("|---|---|---|---|---|")
    for r in rows:
        chosen = r["chosen"] + (f" (tied with {', '.join(r['tied_with'])})" if r["tied_with"] else "")
        print(f"| {r['held_out']} | {chosen} | {r['mAA']:.3f} | {r['best']} {r['best_mAA']:.3f} | {r['loss']:.3f} |")
    worst = max(r["loss"] for r in rows)
    print(f"\nworst held-out loss {worst:.3f}: {'earns its place' if worst <= MAX_LOSS else 'does NOT transfer'}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=Path)
    ap.add_argument("--principal-point", type=Path)
    ap.add_argument("--out", type=Path, help="write the tables as JSON here")
    args = ap.parse_args()
    out = {}
    if args.folds:
        out["mapper"] = show("mapper choice", mapper_table(args.folds))
    if args.principal_point:
        out["principal_point"] = show("final principal-point refinement", principal_point_table(args.principal_point))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
