"""Leave-one-scene-out verdicts recomputed from saved results, some scenes' mAA replaced.

    python benchmarks/loso_table.py benchmarks/results/2026-11-30-loso-rules.json \\
        --replace benchmarks/results/2026-11-30-refocus-variants.json [--way default] [--out FILE.md]

The first file is ``benchmarks/loso_rules.py``'s output: each rule's variants and each
scene's mAA. ``--replace`` takes ``benchmarks/refocus.py``'s JSON, whose runs are the same
variants' work folders mapped again by today's mapping: their mAA (``--way``) replaces the
saved one for those scenes and variants, so the verdicts say what the rules do under
today's mapping without matching anything again. A variant's name in the first file
(``lightglue_enough=4``) is found from the run folder's name (``lightglue_enough-4``).

For each held-out scene the variant with the best mean over the other scenes is chosen (a
tie goes to the default, listed last) and compared with the best variant there; a rule
earns its place when that loss never exceeds the file's ``max_loss``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LOSO = "lightglue_below", "lightglue_enough", "prematch_min_inliers"


def variant_of(run: str) -> str:
    """``.../work/lightglue_enough-4/middlebury/...`` → ``lightglue_enough=4``; ``default`` stays."""
    folder = Path(run).parts[-3]
    return folder if folder == "default" else folder.replace("-", "=", 1)


def verdict(table: dict[str, dict[str, float]], max_loss: float) -> tuple[list[tuple], float]:
    names = list(table)  # the default is last
    scenes = sorted(table[names[-1]])
    rows, worst = [], 0.0
    for held in scenes:
        others = [s for s in scenes if s != held]

        def mean(v: str, others: list[str] = others) -> float:
            return sum(table[v][s] for s in others) / len(others)

        best_mean = max(mean(v) for v in names)
        chosen = [v for v in names if mean(v) >= best_mean - 1e-12]
        pick = names[-1] if names[-1] in chosen else chosen[0]
        best_here = max(table[v][held] for v in names)
        loss = best_here - table[pick][held]
        worst = max(worst, loss)
        rows.append((held, pick, table[pick][held], best_here, loss))
    return rows, worst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("loso", type=Path)
    ap.add_argument("--replace", type=Path, required=True)
    ap.add_argument("--way", default="default", help="which of refocus.py's mappings: once, always, default")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    saved = json.loads(args.loso.read_text())
    new = {(variant_of(r["run"]), r["scene"]): r[args.way]["mAA"] for r in json.loads(args.replace.read_text())}
    lines = [f"# Leave-one-scene-out with {args.replace.name} ('{args.way}') replacing its scenes' mAA", ""]
    for rule in saved["rules"]:
        key = rule["rule"].split(".")[-1]
        if key not in LOSO:
            continue
        table = {}
        for name, scenes in rule["table"].items():
            variant = "default" if "(default)" in name else name.split(" ")[0]
            table[name] = {s: new.get((variant, s), m) for s, m in scenes.items()}
        rows, worst = verdict(table, saved["max_loss"])
        ok = "earns its place" if worst <= saved["max_loss"] else "does NOT transfer"
        lines += [f"## {rule['rule']}: worst held-out loss {worst:.4f} — {ok}", ""]
        lines += ["| variant | " + " | ".join(s.split("/")[1] for s in sorted(table[next(iter(table))])) + " |"]
        lines += ["|---" * (1 + len(table[next(iter(table))])) + "|"]
        for name, scenes in table.items():
            lines += [f"| {name} | " + " | ".join(f"{scenes[s]:.3f}" for s in sorted(scenes)) + " |"]
        lines += ["", "| held out | chosen by the others | its mAA there | best there | loss |"]
        lines += ["|---|---|---|---|---|"]
        lines += [f"| {h} | {p} | {m:.3f} | {b:.3f} | {loss:.4f} |" for h, p, m, b, loss in rows]
        lines += [""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
