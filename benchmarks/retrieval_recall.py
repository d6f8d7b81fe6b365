"""Recall of retrieval pairs against the pairs that exhaustive matching verifies.

    python benchmarks/retrieval_recall.py [--data ../shared/data] [--out outputs/recall] [--topk 3 5 10]

For each scene: run lightsfm with exhaustive pairing (resumable, so a second call is
quick), take the pairs that passed verification with at least --min-inliers inliers as
the truth, then select pairs with the weight-free VLAD global descriptor at several top-k
(no similarity threshold) and report the share of true pairs it keeps and the share of
all pairs it asks to match.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import cv2  # noqa: F401
import pycolmap

from lightsfm import config, imc, pipeline
from lightsfm.pairs import retrieval, vlad

ROOT = Path(__file__).resolve().parents[1]


def verified_pairs(database: Path, min_inliers: int) -> set[tuple[str, str]]:
    db = pycolmap.Database.open(database)
    names = {im.image_id: im.name for im in db.read_all_images()}
    pair_ids, geoms = db.read_two_view_geometries()
    out = set()
    for pid, g in zip(pair_ids, geoms, strict=True):
        a, b = pycolmap.pair_id_to_image_pair(pid)
        if len(g.inlier_matches) >= min_inliers:
            out.add(tuple(sorted((names[a], names[b]))))
    db.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark" / "lightsfm")  # reuses the benchmark run
    ap.add_argument("--topk", type=int, nargs="+", default=[3, 5, 10])
    ap.add_argument("--min-inliers", type=int, default=50)
    args = ap.parse_args()
    pycolmap.logging.minloglevel = 2
    conf = config.load(overrides={"pairs": {"strategy": "exhaustive"}})
    print(f"{'scene':30s} {'verified':>8s} " + " ".join(f"{'recall@' + str(k):>10s} {'pairs':>6s}" for k in args.topk))
    totals = {k: [0, 0, 0] for k in args.topk}
    n_true = 0
    for (ds, sc), paths in imc.read_scene_lists(args.data / "train_labels.csv").items():
        image_dir = Path(os.path.commonpath([str(Path(p).parent) for p in paths]))
        names = sorted(Path(p).relative_to(image_dir).as_posix() for p in paths)
        out = args.out / ds / sc
        pipeline.reconstruct(args.data / image_dir, out, conf, image_names=names)
        truth = verified_pairs(out / "database.db", args.min_inliers)
        feature_file = next(out.glob("features-*.h5"))
        desc = vlad.main(names, feature_file)
        line = f"{ds + '/' + sc:30s} {len(truth):8d} "
        n_all = len(names) * (len(names) - 1) // 2
        for k in args.topk:
            got = set(retrieval.pairs_from_similarity(names, desc @ desc.T, k, 2.0))
            hit = len(truth & got)
            totals[k][0] += hit
            totals[k][1] += len(got)
            totals[k][2] += n_all
            line += f"{hit / max(len(truth), 1):10.3f} {len(got):3d}/{n_all:<3d}"
        n_true += len(truth)
        print(line, flush=True)
    print(
        f"{'all':30s} {n_true:8d} "
        + " ".join(f"{totals[k][0] / n_true:10.3f} {totals[k][1] / totals[k][2]:6.2f}" for k in args.topk)
    )


if __name__ == "__main__":
    main()
