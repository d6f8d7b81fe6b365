"""Recall of retrieval pairs against the pairs that exhaustive matching verifies.

    python benchmarks/retrieval_recall.py [--data ../shared/data] [--out outputs/recall]
        [--scenes nerd_bm/mold_gold_cape ...] [--topk 5 10 15 20] [--min-inliers 15]
        [--reuse outputs/bench-final-large/lightsfm] [--json FILE] [--txt FILE]
        [--set pairs.check_candidates=0 ...]

For each scene: features at today's default settings (``--reuse``: copied from an earlier
run's folder, old name and old ``conf`` attribute, instead of extracted again), every pair
matched with the default matcher and verified with the default verification (cached in
``OUT/<scene>/truth-exhaustive.json``): the pairs with at least ``--min-inliers`` inliers
are the truth. Then the pairs retrieval asks for (``pairs.retrieval``: each image's top-k
plus every pair above ``pairs.similarity_threshold``) at several top-k: recall (share of
the true pairs asked for), recall weighted by inliers (strong pairs matter more), the
share of the true pairs with ≥ 100 inliers kept, the pairs asked for against exhaustive,
the same count of random pairs' recall, and the recall left after pre-matching
(``pairs.prune`` with the cheap inliers of today's turn detection, ``OUT/orientation.json``).
Each top-k is measured twice: ``before`` (the global descriptor's top-k alone, the cheap
match check off: ``pairs.check_candidates = 0``) and ``after`` (the settings given).

Not every verified pair is a correct one: with a reference model (``--reuse``'s
``sparse/0``, a finished reconstruction of the scene), a verified pair is *correct* when
at least half of its inliers lie within 4 px of the epipolar geometry of the model's two
poses (``checks.sampson_px``); recall is also given against the correct pairs alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: F401  (before torch: OpenCV's and torch's OpenMP)
import h5py
import numpy as np
import pycolmap
from benchmark import parse_set

from lightsfm import colmap, config, extract, imc, match, orientation, pairs, verify
from lightsfm.checks import sampson_px
from lightsfm.images import read_infos
from lightsfm.io import name_to_key
from lightsfm.pairs import retrieval
from lightsfm.workspace import fingerprint

ROOT = Path(__file__).resolve().parents[1]
LARGE = ["nerd_bm/mold_gold_cape", "phone_captures/tensorf_object80", "dtu/scan65"]
STRONG = 100  # inliers of a "strong" pair
CONSISTENT_PX = 4.0  # an inlier the reference model explains: Sampson error under this


def reuse_features(src: Path, dst: Path, features_conf: dict) -> bool:
    """Copies an earlier run's features file (old name, old ``conf`` attribute) to ``dst``
    under today's settings string, so today's stages reuse it. The original is not touched."""
    if dst.exists():
        return True
    found = sorted(src.glob("features-*.h5"))
    if not found:
        return False
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(found[0], tmp)
    with h5py.File(tmp, "r+") as f:
        f.attrs["conf"] = json.dumps(extract.full_conf(features_conf), sort_keys=True)
    tmp.rename(dst)
    return True


def exhaustive_truth(image_dir: Path, names: list[str], out: Path, conf: dict) -> dict[tuple[str, str], int]:
    """Inliers of every pair that exhaustive matching (default matcher) and verification keep."""
    infos, _ = read_infos(image_dir, names)
    names = [i.name for i in infos]
    feature_file, failed = extract.main(image_dir, names, out, conf["features"])
    names = [n for n in names if n not in failed]
    cache = out / "truth-exhaustive.json"
    key = fingerprint(names, feature_file, conf["matching"], conf["verify"])
    if cache.exists():
        record = json.loads(cache.read_text())
        if record["key"] == key:
            return {(a, b): n for a, b, n in record["inliers"]}
    every = pairs.exhaustive.pairs_exhaustive(names)
    t = time.perf_counter()
    match_file = match.main(every, feature_file, out, conf["matching"])
    t_match = time.perf_counter() - t
    t = time.perf_counter()
    stats = verify.main(infos, every, feature_file, match_file, out / "database-exhaustive.db", conf["verify"])
    t_verify = time.perf_counter() - t
    inliers = {tuple(sorted(p)): n for p, n in stats["inliers"].items()}
    record = {
        "key": key,
        "pairs": len(every),
        "match_s": round(t_match, 1),
        "verify_s": round(t_verify, 1),
        "inliers": sorted([a, b, n] for (a, b), n in inliers.items()),
    }
    cache.write_text(json.dumps(record))
    return inliers


def correct_pairs(out: Path, feature_file: Path, model_dir: Path) -> set[tuple[str, str]]:
    """The verified pairs of the exhaustive run whose inliers the reference model mostly explains."""
    model = pycolmap.Reconstruction(model_dir)
    ids = {im.name: i for i, im in model.images.items() if im.has_pose}
    db = pycolmap.Database.open(out / "database-exhaustive.db")
    names = {im.image_id: im.name for im in db.read_all_images()}
    db.close()
    good = set()
    with h5py.File(feature_file, "r") as f:
        kpts = {n: f[name_to_key(n)]["keypoints"][()].astype(np.float64) + 0.5 for n in ids}  # COLMAP's pixel centres
        for (i0, i1), m in colmap.verified_pairs(out / "database-exhaustive.db").items():
            a, b = names[i0], names[i1]
            if a not in ids or b not in ids:
                continue
            x = []
            for n, col in ((a, 0), (b, 1)):
                cam = model.cameras[model.images[ids[n]].camera_id]
                x.append(np.asarray(cam.cam_from_img(kpts[n][m[:, col]]), dtype=np.float64).reshape(-1, 2))
            if np.mean(sampson_px(model, ids[a], ids[b], x[0], x[1]) < CONSISTENT_PX) >= 0.5:
                good.add((min(a, b), max(a, b)))
    return good


def scores(asked: set, truth: dict[tuple[str, str], int]) -> dict[str, float]:
    hit = [p for p in truth if p in asked]
    strong = [p for p in truth if truth[p] >= STRONG]
    return {
        "recall": len(hit) / max(len(truth), 1),
        "recall_weighted": sum(truth[p] for p in hit) / max(sum(truth.values()), 1),
        "recall_strong": sum(p in asked for p in strong) / max(len(strong), 1),
        "missed": len(truth) - len(hit),
    }


def evaluate(
    names: list[str],
    out: Path,
    feature_file: Path,
    truth: dict[tuple[str, str], int],
    correct: set[tuple[str, str]] | None,
    pairs_conf: dict,
    topks: list[int],
    overlap: dict[tuple[str, str], int],
) -> list[dict]:
    """Recall of the pairs retrieval asks for at each top-k, before (no check) and after; random pairs for scale."""
    n_all = len(names) * (len(names) - 1) // 2
    every = pairs.exhaustive.pairs_exhaustive(names)
    rows = []
    for label, extra in (("before", {"check_candidates": 0}), ("after", {})):
        rng = np.random.default_rng(0)
        for k in topks:
            conf = {**pairs_conf, "strategy": "retrieval", "global_descriptor": "vlad", "topk": k, **extra}
            t = time.perf_counter()
            asked = retrieval.main(names, out, conf, feature_file=feature_file)
            seconds = time.perf_counter() - t
            asked_set = {tuple(sorted(p)) for p in asked}
            row = {
                "selection": label,
                "topk": k,
                "asked": len(asked),
                "exhaustive": n_all,
                "seconds": round(seconds, 2),
            }
            row |= scores(asked_set, truth)
            if correct is not None:
                row["recall_correct"] = sum(p in asked_set for p in correct) / max(len(correct), 1)
            random = [every[i] for i in rng.choice(len(every), len(asked), replace=False)]
            row["random_recall"] = scores({tuple(sorted(p)) for p in random}, truth)["recall"]
            if overlap:  # (pairs turn detection never compared counted as the pairs stage does)
                uncounted = [p for p in asked if p not in overlap and p[::-1] not in overlap]
                counts = {**overlap, **orientation.count_pairs(out, uncounted)}
                kept = pairs.prune(asked, counts, conf["prematch_min_inliers"], conf["prematch_keep"])
                row["prematch_asked"] = len(kept)
                row["prematch_recall"] = scores({tuple(sorted(p)) for p in kept}, truth)["recall"]
            rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "recall")
    ap.add_argument("--scenes", nargs="+", default=LARGE, help="dataset/scene (default: the three large scenes)")
    ap.add_argument("--topk", type=int, nargs="+", default=[5, 10, 15, 20])
    ap.add_argument("--min-inliers", type=int, default=15, help="a true pair has at least this many verified inliers")
    ap.add_argument("--reuse", type=Path, help="an earlier run's folder (<dataset>/<scene>/features-*.h5, sparse/0)")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="settings override")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--txt", type=Path)
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    conf = config.load(overrides=parse_set(args.set))
    lists = imc.read_scene_lists(args.data / "train_labels.csv")
    results, lines = [], []

    def say(text: str) -> None:
        print(text, flush=True)
        lines.append(text)

    c = conf["pairs"]
    say(
        f"truth: pairs with >= {args.min_inliers} inliers after exhaustive matching ({conf['matching']['name']}) "
        f"and verification ({conf['verify']['method']}); correct: those whose inliers the reference model explains "
        f"(>= half within {CONSISTENT_PX:g} px)\nretrieval: VLAD, threshold {c['similarity_threshold']}; "
        f"before: top-k alone; after: + cheap match check ({c['check_candidates']} candidates, "
        f"{c['check_rounds']} two-hop rounds, {c['check_keypoints']} keypoints, >= {c['check_min_inliers']} inliers); "
        f"default top-k {c['topk']}"
    )
    head = (
        f"{'selection':9s} {'k':>3s} {'asked':>11s} {'recall':>7s} {'correct':>7s} {'weighted':>8s} {'strong':>7s} "
        f"{'missed':>6s} {'random':>7s} {'prematch':>14s} {'time':>6s}"
    )
    for scene in args.scenes:
        ds, sc = scene.split("/")
        paths = lists[(ds, sc)]
        image_dir = args.data / Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = sorted(Path(p).name for p in paths)
        out = args.out / ds / sc
        out.mkdir(parents=True, exist_ok=True)
        reuse = args.reuse / ds / sc if args.reuse else None
        if reuse:
            reuse_features(reuse, extract.feature_path(out, conf["features"]), conf["features"])
        truth_all = exhaustive_truth(image_dir, names, out, conf)
        truth = {p: n for p, n in truth_all.items() if n >= args.min_inliers}
        infos, _ = read_infos(image_dir, names)
        names = [i.name for i in infos]
        feature_file = extract.feature_path(out, conf["features"])
        correct = None
        if reuse and (reuse / "sparse" / "0").is_dir():
            correct = {p for p in correct_pairs(out, feature_file, reuse / "sparse" / "0") if p in truth}
        overlap, overlap_from = {}, "off (features.upright)"
        if conf["features"]["upright"]:  # turn detection as today's pipeline runs it: its cheap inliers
            orientation.main(image_dir, names, out)
            overlap, overlap_from = orientation.read_overlap(out), "orientation.json"
        rows = evaluate(names, out, feature_file, truth, correct, conf["pairs"], args.topk, overlap)
        record = json.loads((out / "truth-exhaustive.json").read_text())
        results.append(
            {
                "scene": scene,
                "images": len(names),
                "exhaustive_pairs": record["pairs"],
                "true_pairs": len(truth),
                "correct_pairs": None if correct is None else len(correct),
                "strong_pairs": sum(n >= STRONG for n in truth.values()),
                "true_by_inliers": {
                    f"{lo}-{hi}": sum(lo <= n < hi for n in truth.values())
                    for lo, hi in ((15, 30), (30, 50), (50, 100), (100, 1 << 30))
                },
                "correct_by_inliers": None
                if correct is None
                else {
                    f"{lo}-{hi}": sum(lo <= truth[p] < hi for p in correct)
                    for lo, hi in ((15, 30), (30, 50), (50, 100), (100, 1 << 30))
                },
                "exhaustive_match_s": record["match_s"],
                "exhaustive_verify_s": record["verify_s"],
                "prematch_from": overlap_from,
                "rows": rows,
            }
        )
        r = results[-1]
        say(
            f"\n{scene}: {len(names)} images, {record['pairs']} pairs, {len(truth)} verified "
            f"({r['strong_pairs']} with >= {STRONG} inliers; by inliers {r['true_by_inliers']}), "
            f"{r['correct_pairs']} correct (by inliers {r['correct_by_inliers']}); exhaustive match "
            f"{record['match_s']} s, verify {record['verify_s']} s; pre-matching from {overlap_from}"
        )
        say(head)
        for r in rows:
            pm = f"{r['prematch_recall']:.3f} ({r['prematch_asked']})" if "prematch_recall" in r else "-"
            say(
                f"{r['selection']:9s} {r['topk']:3d} {r['asked']:5d}/{r['exhaustive']:<5d} {r['recall']:7.3f} "
                f"{r.get('recall_correct', float('nan')):7.3f} {r['recall_weighted']:8.3f} {r['recall_strong']:7.3f} "
                f"{r['missed']:6d} {r['random_recall']:7.3f} {pm:>14s} {r['seconds']:5.1f}s"
            )
    if args.json:
        record = {"min_inliers": args.min_inliers, "consistent_px": CONSISTENT_PX, "conf": c, "scenes": results}
        args.json.write_text(json.dumps(record, indent=1) + "\n")
    if args.txt:
        args.txt.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
