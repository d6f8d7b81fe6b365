"""Which image pairs to match → ``pairs-<strategy>.txt`` (one 'name0 name1' per line).

Strategies: ``exhaustive`` (every pair), ``retrieval`` (global descriptors, see
:mod:`.retrieval`) and ``auto`` (exhaustive up to ``exhaustive_max`` images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import gps, orientation
from ..io import atomic_write_text
from . import exhaustive, nearby, retrieval, sequential

default_conf: dict[str, Any] = {
    "strategy": "auto",  # exhaustive | retrieval | auto
    "exhaustive_max": 20,  # auto: exhaustive up to this many images
    # Pre-matching: drop pairs with fewer RANSAC inliers than this in the cheap matching that
    # turn detection already did (orientation.json); 0 keeps every pair. Each image
    # keeps its `prematch_keep` best partners whatever their count. At 10 on ../shared/data:
    # mean mAA 0.695 → 0.728 and 163.6 s → 123.7 s (then with LightGlue on every pair: fewer
    # LightGlue pairs, fewer false ones; benchmarks/results/2026-11-26-session2-*-vs-sift.json).
    # 25 since 2026-12-01: chosen leave-one-scene-out over all eight scenes (10, 25, off; 25 is
    # at least as good as 10 on every scene; benchmarks/results/2026-12-01-loso-rules-b6cb785.md).
    "prematch_min_inliers": 25,
    "prematch_keep": 3,
    # Photos with EXIF GPS are also paired with this many nearest by position (0: never),
    # where their GPS spread is several times its accuracy (lightsfm.pairs.nearby).
    "gps_neighbours": 5,
    **retrieval.default_conf,
    **{k: v for k, v in sequential.default_conf.items() if k not in retrieval.default_conf},
}
flags: dict[str, str | tuple[str, str]] = {
    "strategy": ("--pairing", "Which pairs to match."),
    "exhaustive_max": "auto: exhaustive up to this many images.",
    "topk": "retrieval: this many neighbours per image (with the cheap check: where none passed).",
    "prematch_min_inliers": (
        "--prematch",
        "Skip pairs with fewer cheap inliers (found by --upright's matching); 0 keeps all.",
    ),
    "similarity_threshold": "retrieval: also pair above this.",
    "gps_neighbours": "Also pair each photo with GPS with this many nearest by GPS (0: never).",
    "global_descriptor": "retrieval's image descriptor.",
    "dinov2_model": "DINOv2 size.",
    "dinov2_weights": "Official DINOv2 checkpoint (.pth).",
    **sequential.flags,
}


def prune(
    pairs: list[tuple[str, str]], inliers: dict[tuple[str, str], int], min_inliers: int, keep: int
) -> list[tuple[str, str]]:
    """The pairs with at least ``min_inliers`` cheap inliers (or none counted), plus each
    image's ``keep`` best with at least one; an image with none keeps all its pairs (the
    cheap matching says nothing about it: LightGlue decides).

    (A pair without a cheap inlier is no one's best: keeping the "best" of ties at 0 kept one
    picked by name, in the 309-photo mix the dino's 0006-0008, a false pair whose 18
    verified inliers pulled half its ring 122° round.)
    """

    def count(a: str, b: str) -> int | None:
        return inliers.get((a, b), inliers.get((b, a)))

    best: dict[str, list[tuple[int, tuple[str, str]]]] = {}
    for a, b in pairs:
        c = count(a, b)
        for n in (a, b):
            best.setdefault(n, []).append((c if c is not None else 1 << 30, (a, b)))
    kept = set()
    for lst in best.values():
        some = [x for x in lst if x[0] > 0]
        kept.update(p for _, p in (sorted(some, reverse=True)[:keep] if some else lst))
    return [(a, b) for a, b in pairs if (a, b) in kept or (count(a, b) is None) or count(a, b) >= min_inliers]


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> None:
    """Writes 'a<TAB>b' lines (names may contain spaces); an unchanged file is left untouched."""
    text = "".join(f"{a}\t{b}\n" for a, b in pairs)
    if not (Path(path).exists() and Path(path).read_text() == text):
        atomic_write_text(Path(path), text)


def read_pairs(path: Path) -> list[tuple[str, str]]:
    """Reads a pair list; lines are 'a<TAB>b' or, as in hloc/COLMAP, 'a b'."""
    pairs = []
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        a, b = line.split("\t") if "\t" in line else line.split()
        pairs.append((a, b))
    return pairs


def main(
    names: list[str],
    output: Path,
    conf: dict[str, Any] | None = None,
    image_dir: Path | None = None,
    feature_file: Path | None = None,
    device: str = "cpu",
) -> tuple[Path, list[tuple[str, str]]]:
    """Chooses the pairs of ``names`` to match and writes them to ``output/pairs-<strategy>.txt``."""
    conf = {**default_conf, **(conf or {})}
    strategy = conf["strategy"]
    if strategy == "auto":
        strategy = "exhaustive" if len(names) <= conf["exhaustive_max"] else "retrieval"
    if strategy == "exhaustive":
        pairs = exhaustive.pairs_exhaustive(names)
        path = Path(output) / "pairs-exhaustive.txt"
    elif strategy == "retrieval":
        pairs = retrieval.main(names, output, conf, image_dir=image_dir, feature_file=feature_file, device=device)
        path = Path(output) / f"pairs-{retrieval.conf_tag(conf)}.txt"
    elif strategy == "sequential":  # video frames: each with its next ones, plus loop closures
        pairs = sequential.main(names, output, conf, image_dir=image_dir, feature_file=feature_file, device=device)
        path = Path(output) / f"pairs-{sequential.conf_tag(conf)}.txt"
    else:
        raise ValueError(f"unknown pairing strategy {strategy!r} (exhaustive, retrieval, sequential, auto)")
    if strategy != "exhaustive" and conf["gps_neighbours"] > 0 and image_dir is not None:
        have = set(pairs) | {(b, a) for a, b in pairs}
        added = [
            p
            for p in nearby.pairs_nearby(gps.read_gps_folder(image_dir, names), conf["gps_neighbours"])
            if p not in have
        ]
        if added:
            pairs = pairs + added
            path = path.with_name(f"{path.stem}-gps{conf['gps_neighbours']}.txt")
    if conf["prematch_min_inliers"] > 0:
        inliers = orientation.read_overlap(output)
        if inliers:
            # (above 40 photos turn detection compared each with its nearest only: the others now)
            uncounted = [p for p in pairs if p not in inliers and p[::-1] not in inliers]
            inliers |= orientation.count_pairs(output, uncounted, device)
            pairs = prune(pairs, inliers, conf["prematch_min_inliers"], conf["prematch_keep"])
            path = path.with_name(f"{path.stem}-prematch{conf['prematch_min_inliers']}.txt")
    write_pairs(path, pairs)
    return path, pairs
