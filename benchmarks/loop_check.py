"""How well a loop check (dropping weak verified pairs their triangles contradict) tells
wrong verified pairs from right ones.

    python benchmarks/loop_check.py RUN_DIR [RUN_DIR ...] [--data ../shared/data]
        [--tolerance 2 4] [--min-chains 5 10] [--json FILE]

Each RUN_DIR is a finished lightsfm run of a ``../shared/data`` scene (``database.db``,
``sparse/0``, ``summary.json``) or a folder of such runs (``<dataset>/<scene>/``). From the
database's verified pairs (all of them: run without the loop check, or with it, whose
dropped pairs are then missing), a pair is *wrong* when fewer than half of its inliers lie
within 4 px of the epipolar geometry of a reference model of the scene (``--reference``:
a folder of finished runs, ``<dataset>/<scene>/sparse/0``, whose models score ≥ 0.94 mAA
against the ground truth; its own poses and intrinsics, which fit each other, where the
ground-truth poses with a model's intrinsics do not: a principal point 40 px off the
truth moves Middlebury's epipolar lines by tens of pixels). For each setting of the check:
pairs dropped, and how many of those are wrong; a good check drops the wrong ones and
nothing else. Results and verdict (it found wrong pairs but improved no scene's mAA, so
lightsfm does not run it): benchmarks/results/2026-11-30-loop-check.txt.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pycolmap

from lightsfm.checks import sampson_px

ROOT = Path(__file__).resolve().parents[1]
GT_PX = 4.0


def sampson_error(F: np.ndarray, p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
    """Sampson distance (pixels) of correspondences p0 ↔ p1 (N, 2) from the epipolar geometry F."""
    x0 = np.c_[p0, np.ones(len(p0))]
    x1 = np.c_[p1, np.ones(len(p1))]
    Fx0, Ftx1 = x0 @ F.T, x1 @ F
    num = np.sum(x1 * Fx0, 1) ** 2
    den = Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2
    return np.sqrt(num / np.maximum(den, 1e-12))


def loop_inconsistent_pairs(
    pairs: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, float]],
    keypoints: dict[str, np.ndarray],
    min_chains: int = 4,
    min_agree: float = 0.5,
    tolerance: float = 2.0,
) -> dict[tuple[str, str], dict[str, int]]:
    """Verified pairs that the triangles they close contradict.

    ``pairs``: (a, b) → (inlier matches (N, 2) of keypoint indices, F with x_bᵀ F x_a = 0,
    RANSAC threshold in pixels); ``keypoints``: name → (K, 2) pixels. In a triangle a-b-c,
    chaining the matches a→b→c through b's keypoints gives a-c correspondences between real
    detections; a correct a-c geometry explains most of them (within ``tolerance`` × its
    threshold). Each of the three pairs is tested against the other two's chains (where they
    give ``min_chains``); a triangle where one test explains fewer than ``min_agree`` of its
    chains is inconsistent, one where every test passes is consistent. One wrong pair makes
    its triangles inconsistent whichever pair is tested, so the blame goes to the triangle's
    weakest pair (fewest inliers): wrong pairs are the weak ones, and the strong pairs
    around them are right (measured on ``../shared/data``'s dinoSparseRing: its two wrong
    pairs, 19 and 15 inliers, each closed one triangle with two correct ones). A pair is
    returned when it is blamed more often than it closes consistent triangles.
    """
    adjacency: dict[str, set[str]] = {}
    for a, b in pairs:
        adjacency.setdefault(a, set()).add(b)
        adjacency.setdefault(b, set()).add(a)

    def matches(a: str, b: str) -> np.ndarray:
        m = pairs[(a, b)][0] if (a, b) in pairs else pairs[(b, a)][0][:, ::-1]
        return m

    def agrees(a: str, b: str, c: str) -> float | None:
        """Share of the chains a→b→c that the a-c geometry explains (None: too few chains)."""
        ab, bc = matches(a, b), matches(b, c)
        to_c = np.full(len(keypoints[b]), -1, np.int64)
        to_c[bc[:, 0]] = bc[:, 1]
        ic = to_c[ab[:, 1]]
        ok = ic > -1
        if ok.sum() < min_chains:
            return None
        ia, ic = ab[ok, 0], ic[ok]
        if (a, c) in pairs:
            _, F, thr = pairs[(a, c)]
            err = sampson_error(F, keypoints[a][ia], keypoints[c][ic])
        else:
            _, F, thr = pairs[(c, a)]
            err = sampson_error(F, keypoints[c][ic], keypoints[a][ia])
        return float(np.mean(err < tolerance * thr))

    consistent: dict[tuple[str, str], int] = {}
    blamed: dict[tuple[str, str], int] = {}
    key = {p: p for p in pairs} | {(b, a): (a, b) for a, b in pairs}
    for a, c in pairs:
        for b in sorted(adjacency[a] & adjacency[c]):
            if not (a < b < c or c < b < a):  # each triangle once: b between a and c
                continue
            tests = [agrees(a, b, c), agrees(b, a, c), agrees(a, c, b)]
            tests = [t for t in tests if t is not None]
            if not tests:
                continue
            edges = [key[(a, c)], key[(a, b)], key[(b, c)]]
            if min(tests) >= min_agree:
                for e in edges:
                    consistent[e] = consistent.get(e, 0) + 1
            else:
                weakest = min(edges, key=lambda e: (len(pairs[e][0]), e))
                blamed[weakest] = blamed.get(weakest, 0) + 1
    return {
        e: {"inliers": len(pairs[e][0]), "blamed": n, "consistent": consistent.get(e, 0)}
        for e, n in sorted(blamed.items())
        if n > consistent.get(e, 0)
    }


def scene_runs(path: Path) -> list[Path]:
    if (path / "database.db").exists():
        return [path]
    return sorted(p.parent for p in path.glob("*/*/database.db"))


def analyse(run: Path, references: list[Path], settings: list[tuple[float, int]]) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    image_dir = Path(summary["image_dir"])
    dataset, scene = image_dir.parent.parent.name, image_dir.parent.name
    ref = next(
        r / dataset / scene / "sparse" / "0" for r in references if (r / dataset / scene / "sparse" / "0").is_dir()
    )
    rec = pycolmap.Reconstruction(ref)
    by_name = {im.name: im for im in rec.images.values()}
    cams = {im.name: rec.cameras[im.camera_id] for im in rec.images.values()}
    cam0 = next(iter(cams.values()))
    scale = {}
    with pycolmap.Database.open(run / "database.db") as db:
        names = {im.image_id: im.name for im in db.read_all_images()}
        kpts = {n: db.read_keypoints(i)[:, :2].astype(np.float64) for i, n in names.items()}
        ids, tvgs = db.read_two_view_geometries()
        pairs, wrong = {}, set()
        for pid, g in zip(ids, tvgs, strict=True):
            i, j = pycolmap.pair_id_to_image_pair(pid)
            a, b = names[i], names[j]
            m = np.asarray(g.inlier_matches, np.int64)
            pairs[(a, b)] = (m, g.F, 1.0)
            if a not in by_name or b not in by_name:
                continue
            ca, cb = cams[a], cams[b]
            x1 = np.asarray(ca.cam_from_img(kpts[a][m[:, 0]]), np.float64)
            x2 = np.asarray(cb.cam_from_img(kpts[b][m[:, 1]]), np.float64)
            err = sampson_px(rec, by_name[a].image_id, by_name[b].image_id, x1, x2)
            if np.mean(err < GT_PX) < 0.5:
                wrong.add((a, b))
    # the RANSAC threshold in pixels of the original images (verify: threshold × extraction scale)
    conf = summary.get("conf", {})
    thr = conf.get("verify", {}).get("threshold", 1.0)
    longest = conf.get("features", {}).get("resize_max", 1024)
    for a in kpts:
        w, h = cams.get(a, cam0).width, cams.get(a, cam0).height
        scale[a] = max(1.0, max(w, h) / longest) if longest else 1.0
    pairs = {(a, b): (m, F, thr * 0.5 * (scale[a] + scale[b])) for (a, b), (m, F, _) in pairs.items()}
    rows = []
    for tol, chains in settings:
        dropped = loop_inconsistent_pairs(pairs, kpts, min_chains=chains, tolerance=tol)
        rows.append(
            {
                "tolerance": tol,
                "min_chains": chains,
                "dropped": len(dropped),
                "dropped_wrong": len(set(dropped) & wrong),
                "dropped_right": sorted(
                    f"{a}-{b} ({r['inliers']})" for (a, b), r in dropped.items() if (a, b) not in wrong
                ),
                "wrong_kept": sorted(f"{a}-{b} ({len(pairs[(a, b)][0])})" for a, b in wrong - set(dropped)),
            }
        )
    return {"run": str(run), "scene": f"{dataset}/{scene}", "verified": len(pairs), "wrong": len(wrong), "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path, nargs="+")
    ap.add_argument(
        "--reference",
        type=Path,
        nargs="+",
        default=[
            ROOT / "outputs" / "bench-final-small" / "lightsfm",
            ROOT / "outputs" / "bench-final-large" / "lightsfm",
        ],
    )
    ap.add_argument("--tolerance", type=float, nargs="+", default=[2.0, 4.0])
    ap.add_argument("--min-chains", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    settings = [(t, c) for t in args.tolerance for c in args.min_chains]
    results = []
    for path in args.runs:
        for run in scene_runs(path):
            r = analyse(run, args.reference, settings)
            results.append(r)
            print(
                f"{r['scene']:32s} {r['run'][-60:]:60s} verified {r['verified']:5d} wrong {r['wrong']:4d}", flush=True
            )
            for row in r["rows"]:
                print(
                    f"    tol {row['tolerance']:g} chains {row['min_chains']:2d}: dropped {row['dropped']:3d} "
                    f"(wrong {row['dropped_wrong']:3d}); right ones dropped {row['dropped_right'][:6]}; "
                    f"wrong kept {len(row['wrong_kept'])} {row['wrong_kept'][:4]}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
