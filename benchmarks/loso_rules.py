"""Leave-one-scene-out for lightsfm's data-dependent settings (issue #17).

    python benchmarks/loso_rules.py run [--rule matching.weak_below ...] [--scene dataset/scene ...]
                                        [--data ../shared/data] [--out outputs/loso_rules]
    python benchmarks/loso_rules.py report [--out outputs/loso_rules] [--rule ...] [--json FILE] [--md FILE]

``run`` reconstructs every (variant, scene) once, one after the other, at the default
settings with one setting changed, and scores each with the IMC2023 metric exactly as
benchmarks/benchmark.py does (its ``score``: lightsfm.evaluate against train_labels.csv,
thresholds.csv when present). The default settings are run once per scene, first, and
shared by every rule. Each result is written to OUT/runs/<variant>/<dataset>/<scene>.json
as soon as it is known, and a (variant, scene) already there is not run again, so an
interrupted ``run`` resumes.

Work that a variant does not change is copied from the default run of the scene into the
variant's otherwise empty folder, never work it does change:
  * turn detection (``orientation.json``): it depends on the photos only;
  * features, unless the variant changes ``features.*`` (lightsfm reuses a features file
    only when its stored settings equal the run's);
  * matches, only for variants that change nothing before verification (``verify.*``,
    ``mapping.*``). Variants of ``pairs.*`` and ``matching.*`` match from nothing: which
    weak pairs get LightGlue depends on the whole pair list, so the default's matches would
    not be what a fresh run makes.
Verification and mapping always run (the run folder has no state.json).

``report`` builds, for each rule, the variant × scene table and the LOSO table (the
variant with the best mean over the other scenes is chosen; on a tie the default, listed
last, wins) with benchmarks/loso.py's ``loso``; a rule earns its place when the chosen
variant never loses more than 0.01 on a held-out scene.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import benchmark as bm  # noqa: E402  (sets TQDM_DISABLE, imports cv2 before pycolmap)
import numpy as np  # noqa: E402
from loso import MAX_LOSS, loso  # noqa: E402

from lightsfm import config, extract, imc, orientation, pipeline  # noqa: E402
from lightsfm import evaluate as ev  # noqa: E402
from lightsfm.match import match_path  # noqa: E402

DEFAULT = "default"
# rule → [(variant name, overrides)]; the default (listed last in each table) is run once.
RULES: dict[str, list[tuple[str, dict]]] = {
    "matching.weak_below": [
        ("weak_below=50", {"matching": {"weak_below": 50}}),
        ("weak_below=200", {"matching": {"weak_below": 200}}),
    ],
    "matching.strong_enough": [
        ("strong_enough=0 (no limit)", {"matching": {"strong_enough": 0}}),
        ("strong_enough=2", {"matching": {"strong_enough": 2}}),
    ],
    "pairs.prematch_min_inliers": [
        ("prematch_min_inliers=0 (off)", {"pairs": {"prematch_min_inliers": 0}}),
        ("prematch_min_inliers=10", {"pairs": {"prematch_min_inliers": 10}}),
    ],
    "verify.min_inliers": [
        ("min_inliers=20", {"verify": {"min_inliers": 20}}),
        ("min_inliers=25", {"verify": {"min_inliers": 25}}),
    ],
    "verify.camera_model": [
        ("camera_model=SIMPLE_RADIAL everywhere", {"verify": {"camera_model": "SIMPLE_RADIAL"}}),
        ("camera_model=SIMPLE_PINHOLE everywhere", {"verify": {"camera_model": "SIMPLE_PINHOLE"}}),
    ],
    "mapping.method": [
        ("method=incremental", {"mapping": {"method": "incremental"}}),
        ("method=global", {"mapping": {"method": "global"}}),
    ],
    "mapping.final_principal_point": [
        ("final_principal_point=off", {"mapping": {"final_principal_point": False}}),
        ("principal_point_min_photos=16", {"mapping": {"principal_point_min_photos": 16}}),
    ],
    "mapping.refocus_above": [
        ("refocus_above=0 (never)", {"mapping": {"refocus_above": 0}}),
    ],
    "features.max_keypoints": [
        ("max_keypoints=1024", {"features": {"max_keypoints": 1024}}),
        ("max_keypoints=4096", {"features": {"max_keypoints": 4096}}),
    ],
    "features.resize_max": [
        ("resize_max=768", {"features": {"resize_max": 768}}),
        ("resize_max=1600", {"features": {"resize_max": 1600}}),
    ],
}
DEFAULT_NAMES = {
    "matching.weak_below": "weak_below=100 (default)",
    "matching.strong_enough": "strong_enough=4 (default)",
    "pairs.prematch_min_inliers": "prematch_min_inliers=25 (default)",
    "verify.min_inliers": "min_inliers=15 (default)",
    "verify.camera_model": "camera_model=auto (default: SIMPLE_RADIAL with EXIF, SIMPLE_PINHOLE without)",
    "mapping.method": "method=auto (default: incremental, global too when thin or suspect)",
    "mapping.final_principal_point": "final principal point from 8 photos (default)",
    "mapping.refocus_above": "refocus_above=0.5 (default)",
    "features.max_keypoints": "max_keypoints=2048 (default)",
    "features.resize_max": "resize_max=1024 (default)",
}


def slug(variant: str) -> str:
    return variant.split(" ")[0].replace("=", "-")


def scenes_of(data: Path) -> dict[str, tuple[Path, list[str], list[str], tuple[str, str]]]:
    """dataset/scene → (image folder, image names, label paths, key), as benchmark.py finds them."""
    out = {}
    for (ds, sc), paths in imc.read_scene_lists(data / "train_labels.csv").items():
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = [Path(p).relative_to(image_dir).as_posix() for p in paths]
        out[f"{ds}/{sc}"] = (data / image_dir, names, paths, (ds, sc))
    return out


def seed(run_dir: Path, conf: dict, overrides: dict, default_dir: Path) -> list[str]:
    """Copies into the empty ``run_dir`` what the default run of the scene computed that the
    variant would compute the same way (see the module docstring)."""
    copied = []
    wanted = [orientation.orientation_path(default_dir)]  # depends on the photos only
    if "features" not in overrides:
        feats = extract.feature_path(default_dir, conf["features"])
        wanted.append(feats)
        if set(overrides) <= {"verify", "mapping"}:
            wanted.append(match_path(default_dir, feats, conf["matching"]))
    for f in wanted:
        if f.exists():
            shutil.copy2(f, run_dir / f.name)
            copied.append(f.name)
    return copied


def run_one(variant: str, overrides: dict, key: str, scene, args, gt_all, ths_all) -> dict:
    image_dir, names, paths, (ds, sc) = scene
    run_dir = args.out / "work" / slug(variant) / ds / sc
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    conf = config.load("default", overrides=overrides)
    default_dir = args.out / "work" / slug(DEFAULT) / ds / sc
    copied = seed(run_dir, conf, overrides, default_dir) if variant != DEFAULT else []
    t = time.perf_counter()
    result = pipeline.reconstruct(image_dir, run_dir, conf, image_names=names)
    wall = time.perf_counter() - t
    gt = gt_all[(ds, sc)]
    ths = ths_all.get((ds, sc)) or ev.default_thresholds(ds, sc)
    scored = bm.score(result.models, paths, names, gt, ths, result.stats.get("duplicates"))
    summary = json.loads((run_dir / "summary.json").read_text())
    cameras = sorted({c.model.name for m in result.models[:1] for c in m.cameras.values()})
    return {
        "variant": variant,
        "scene": key,
        "overrides": overrides,
        "mAA": scored["mAA"],
        "registered": scored["registered"],
        "images": scored["images"],
        "wall_s": wall,
        "timings_s": result.timings,
        "reused": copied,
        "models": [m.num_reg_images() for m in result.models],
        "pairs": summary.get("pairs"),
        "verified_pairs": summary.get("verified_pairs"),
        "mapper": (summary.get("mapper") or {}).get("kept"),
        "camera_models": cameras,
        "files": summary.get("files"),
        "score": {k: v for k, v in scored.items() if k not in ("mAA", "registered", "images")},
    }


def cmd_run(args) -> None:
    import pycolmap

    pycolmap.logging.minloglevel = 2
    git = bm.git_state()
    gt_all = ev.read_poses(args.data / "train_labels.csv")
    th_file = args.data / "thresholds.csv"
    ths_all = ev.read_thresholds(th_file) if th_file.exists() else {}
    scenes = scenes_of(args.data)
    keys = args.scene or list(scenes)
    rules = args.rule or list(RULES)
    todo = [(DEFAULT, {})] + [v for r in rules for v in RULES[r]]
    if args.no_default:
        todo = todo[1:]
    for variant, overrides in todo:
        for key in keys:
            res = args.out / "runs" / slug(variant) / f"{key}.json"
            if res.exists():
                continue
            t0 = time.strftime("%H:%M:%S")
            row = run_one(variant, overrides, key, scenes[key], args, gt_all, ths_all)
            row.update(git=git, python=sys.executable, started=t0)
            res.parent.mkdir(parents=True, exist_ok=True)
            res.write_text(json.dumps(row, indent=1, default=str))
            print(
                f"{t0} {variant:40s} {key:32s} mAA {row['mAA']:.3f} reg {row['registered']}/{row['images']} "
                f"{row['wall_s']:7.1f}s pairs {row['pairs']} verified {row['verified_pairs']} "
                f"mapper {row['mapper']} cams {row['camera_models']} "
                + ", ".join(f"{k} {v:.1f}" for k, v in row["timings_s"].items()),
                flush=True,
            )


def load_runs(out: Path) -> dict[str, dict[str, dict]]:
    runs: dict[str, dict[str, dict]] = {}
    for f in sorted((out / "runs").glob("*/*/*.json")):
        r = json.loads(f.read_text())
        runs.setdefault(r["variant"], {})[r["scene"]] = r
    return runs


def rule_table(rule: str, runs: dict) -> tuple[dict[str, dict[str, float]], list[str]]:
    """variant → scene → mAA over the scenes every variant of the rule has; the default last."""
    variants = [v for v, _ in RULES[rule] if v in runs] + [DEFAULT]
    scenes = sorted(set.intersection(*(set(runs.get(v, {})) for v in variants)))
    all_scenes = sorted({s for v in runs.values() for s in v})
    missing = sorted(set(all_scenes) - set(scenes))
    names = {DEFAULT: DEFAULT_NAMES[rule]}
    table = {names.get(v, v): {s: runs[v][s]["mAA"] for s in scenes} for v in variants}
    return table, missing


def md_rule(rule: str, runs: dict) -> tuple[str, dict]:
    table, missing = rule_table(rule, runs)
    variants = [v for v, _ in RULES[rule] if v in runs] + [DEFAULT]
    names = {DEFAULT: DEFAULT_NAMES[rule]}
    lines = [f"## {rule}", ""]
    if len(variants) < 2 or not next(iter(table.values())):
        lines.append("not measured")
        return "\n".join(lines), {"rule": rule, "measured": False}
    scenes = sorted(next(iter(table.values())))
    if missing:
        lines += [f"Scenes missing (not every variant ran there; left out of this rule): {', '.join(missing)}", ""]
    short = [s.split("/")[1] for s in scenes]
    lines.append("mAA (registered/images, wall s):")
    lines.append("")
    lines.append("| variant | " + " | ".join(short) + " | mean mAA | total s |")
    lines.append("|---|" + "---|" * (len(scenes) + 2))
    for v in variants:
        cells = []
        for s in scenes:
            r = runs[v][s]
            cells.append(f"{r['mAA']:.3f} ({r['registered']}/{r['images']}, {r['wall_s']:.0f})")
        mean = np.mean([runs[v][s]["mAA"] for s in scenes])
        total = sum(runs[v][s]["wall_s"] for s in scenes)
        lines.append(f"| {names.get(v, v)} | " + " | ".join(cells) + f" | {mean:.3f} | {total:.0f} |")
    rows = loso(table)
    lines += [
        "",
        "| held-out scene | chosen on the others | its mAA | best there | loss | the default there (its loss) |",
        "|---|---|---|---|---|---|",
    ]
    default_name = names[DEFAULT]
    for r in rows:
        chosen = r["chosen"] + (f" (tied with {', '.join(r['tied_with'])})" if r["tied_with"] else "")
        d = table[default_name][r["held_out"]]
        r["default_mAA"], r["default_loss"] = d, r["best_mAA"] - d
        lines.append(
            f"| {r['held_out']} | {chosen} | {r['mAA']:.3f} | {r['best']} {r['best_mAA']:.3f} | {r['loss']:.3f} "
            f"| {d:.3f} ({r['best_mAA'] - d:.3f}) |"
        )
    worst = max(r["loss"] for r in rows)
    verdict = "earns its place" if worst <= MAX_LOSS else "does NOT transfer"
    lines += ["", f"worst held-out loss {worst:.4f}: **{verdict}**"]
    return "\n".join(lines), {
        "rule": rule,
        "measured": True,
        "scenes": scenes,
        "missing_scenes": missing,
        "table": table,
        "loso": rows,
        "worst_loss": worst,
        "verdict": verdict,
    }


def cmd_report(args) -> None:
    runs = load_runs(args.out)
    parts, verdicts = [], []
    for rule in args.rule or RULES:
        text, v = md_rule(rule, runs)
        parts.append(text)
        verdicts.append(v)
    md = "\n\n".join(parts) + "\n"
    print(md)
    if args.md:
        head = args.md_head.read_text() if args.md_head else ""
        args.md.write_text(head + md)
    if args.json:
        commits = sorted({r["git"]["commit"] for v in runs.values() for r in v.values()})
        out = {
            "issue": 17,
            "commits": commits,
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "metric": "IMC2023 mAA (lightsfm.evaluate via benchmarks/benchmark.py score), thresholds.csv",
            "max_loss": MAX_LOSS,
            "default_conf": config.load("default"),
            "variants": {
                v: {"overrides": next(iter(by.values()))["overrides"], "scenes": by} for v, by in runs.items()
            },
            "rules": verdicts,
            "notes": args.md_head.read_text() if args.md_head else "",
        }
        args.json.write_text(json.dumps(out, indent=1, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    r.add_argument("--out", type=Path, default=ROOT / "outputs" / "loso_rules")
    r.add_argument("--rule", action="append", choices=list(RULES))
    r.add_argument("--scene", action="append")
    r.add_argument("--no-default", action="store_true")
    p = sub.add_parser("report")
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "loso_rules")
    p.add_argument("--json", type=Path)
    p.add_argument("--md", type=Path)
    p.add_argument("--md-head", type=Path, help="text put before the tables")
    p.add_argument("--rule", action="append", choices=list(RULES), help="only these rules (default: all)")
    args = ap.parse_args()
    {"run": cmd_run, "report": cmd_report}[args.cmd](args)


if __name__ == "__main__":
    main()
