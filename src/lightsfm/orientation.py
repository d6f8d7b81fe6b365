"""Turn detection stage: which way up is each photo? Rotations by 90° that EXIF did not record break learned matchers.

Each image is described with a cheap ALIKED setting and every pair is matched as stored
(mutual nearest neighbours, then a fundamental-matrix RANSAC). Pairs with many inliers
agree on which way is up. Only the images outside the largest group so linked are also
described at their three other quarter turns, and each turn is matched against the other
images as stored: the turn with clearly the most inliers is the pair's relative turn. (A
scene shot upright costs one cheap pass per image instead of four.) Upside down is tried
first, the quarter turns only for the photos it does not link: a camera carried over the
top of a ring (Middlebury's temple) leaves photos upside down, not sideways. The turns are then
made consistent over the whole scene (rotation synchronisation on the pair graph: a
maximum spanning tree of the strongest pairs, then a few rounds of weighted voting), and
within each connected group of images the global offset that leaves the most photos as
stored is chosen. So a ring of
views whose camera flips upside down half-way (Middlebury's temple) is handled as well as
a few photos turned at random among upright ones.
The cheap description of each photo is a work item (``CheapTask``) run by an executor; the
matching and the decisions stay here.
"""

from __future__ import annotations

import heapq
import json
import logging
from pathlib import Path

import h5py
import numpy as np

from . import extractors, masks
from .device import release_freed_memory_if_grown, set_threads
from .errors import ImageError
from .executor import Executor, LocalExecutor
from .geometry import count_inliers
from .graph import components
from .images import load_image
from .io import atomic_write_text, name_to_key
from .matchers.mnn import MutualNNMatcher
from .pairs import vlad
from .store import H5Store

logger = logging.getLogger(__name__)

# The cheap pass's extractor (``features.cheap``) and its settings. The tiny ALIKED: half the
# time of n16 for the same turns found on ../shared/data (temple: 5.9 s vs 12.0 s for its
# 16 × 4 versions); most of detection's time is this. XFeat describes a photo 2.0-2.4×
# faster still, but its matches pass MIN_INLIERS-scale counts on 2-3× more pairs of the
# Middlebury rings, so pre-matching (whose threshold is the tiny ALIKED's) keeps pairs that
# do not overlap: the temple took 34.7 s instead of 18.9 s and the dino folded (0.348
# against 0.989; benchmarks/results/2026-12-01-xfeat-cheap.txt). Hence not the default.
CHEAP = {
    "aliked": {"name": "aliked", "model": "aliked-t16", "max_keypoints": 512, "resize_max": 512},
    "xfeat": {"name": "xfeat", "max_keypoints": 512, "resize_max": 512},
}
MARGIN = 1.5  # a pair's best turn must have this many times the inliers of its second best
MIN_INLIERS = 25  # pairs with fewer inliers at their best turn say nothing
# Up to this many photos every pair is matched; above, each photo only with its NEIGHBOURS
# most similar photos (VLAD of the cheap descriptors, best over turns): linear, not
# quadratic, in the number of photos.
EXHAUSTIVE_MAX = 40
NEIGHBOURS = 20
MATCHER_CONF = {"ratio": 0.9}


def rotate_back(kpts: np.ndarray, k: int, width: int, height: int) -> np.ndarray:
    """Maps (x, y) found in ``np.rot90(image, k)`` back to the original ``width`` × ``height`` image."""
    x, y = kpts[:, 0].astype(np.float64), kpts[:, 1].astype(np.float64)
    for t in range(k % 4, 0, -1):
        # one counter-clockwise turn: a point (x', y') of the turned image came from
        # (w − 1 − y', x') of the image before it, whose width is w.
        w = width if (t - 1) % 2 == 0 else height
        x, y = w - 1 - y, x
    return np.stack([x, y], axis=1).astype(np.float32)


def _inliers(f0: dict, f1: dict, matcher: MutualNNMatcher) -> int:
    return count_inliers(f0["keypoints"], f1["keypoints"], matcher(f0, f1)["matches0"], 2.0)


# The turns tried on the photos the as-stored matching does not link, in rounds: upside down
# first; the quarter turns for those still unlinked. The temple's five upside-down photos
# then cost one description each instead of three (its turn detection 0.94 s instead of 1.60 s).
TURN_ROUNDS = ((2,), (1, 3))


class PairTask:
    """One pair as a work item: (a, b, turns) → the inliers of ``rot90(a, k)`` against ``b``
    as stored, for each k of ``turns``. Cheap and independent: the local executor runs one
    pair per core at once (the copies share the features, read only).

    The two photos are matched in name order whichever is turned: the ratio test and the
    RANSAC's samples depend on the order, and a pair then has one count however it was
    reached (the dino's 0012-0013 had 17 alone and 16 in the 309-photo mix, which let
    0009-0012 into pre-matching there and folded the ring)."""

    side_by_side = True

    def __init__(self, turned: dict[str, dict[int, dict]], matcher: MutualNNMatcher) -> None:
        self.turned, self.matcher = turned, matcher

    def __call__(self, item: tuple[str, str, tuple[int, ...]]) -> list[int]:
        a, b, turns = item
        if a < b:
            return [_inliers(self.turned[a][k], self.turned[b][0], self.matcher) for k in turns]
        return [_inliers(self.turned[b][0], self.turned[a][k], self.matcher) for k in turns]


def relative_turns(
    turned: dict[str, dict[int, dict]],
    matcher: MutualNNMatcher,
    pairs: list[tuple[str, str]],
    known: dict[tuple[str, str], dict[int, int]],
) -> None:
    """Counts into ``known[(a, b)][k]`` the inliers of ``rot90(a, k)`` against ``b`` as stored,
    for every turn of each pair that its image described at more turns (``a`` if both are)
    has in ``turned`` and that is not counted yet."""
    items, where = [], []
    for a, b in pairs:
        have = known.setdefault((a, b), {})
        x = a if len(turned[a]) >= len(turned[b]) else b
        # rot90(b, k) matching a means rot90(a, −k) matches b
        turns = tuple(k for k in sorted(turned[x]) if (k if x == a else -k % 4) not in have)
        if turns:
            items.append((x, b if x == a else a, turns))
            where.append((a, b))
    found = LocalExecutor().map(PairTask(turned, matcher), items, desc="orientation pairs (turns)", unit="pair")
    for (a, b), (x, _, turns), counts in zip(where, items, found, strict=True):
        for k, c in zip(turns, counts, strict=True):
            known[(a, b)][k if x == a else -k % 4] = c


def scores_of(known: dict[tuple[str, str], dict[int, int]]) -> dict[tuple[str, str], tuple[int, int, int]]:
    """Each pair's (k, inliers, second best) over the turns counted: ``rot90(a, k)`` matches ``b`` best."""
    out = {}
    for pair, counts in known.items():
        ranked = sorted(((c, k) for k, c in counts.items()), reverse=True)
        out[pair] = (ranked[0][1], ranked[0][0], ranked[1][0] if len(ranked) > 1 else 0)
    return out


def _largest_group(names: list[str], edges: list[tuple[str, str]]) -> set[str]:
    groups: dict[str, set[str]] = {}
    for n, part in components(names, edges).items():
        groups.setdefault(part, set()).add(n)
    return max(groups.values(), key=len) if groups else set()


def clear_turns(scores: dict[tuple[str, str], tuple[int, int, int]]) -> dict[tuple[str, str], tuple[int, int]]:
    """The pairs whose best relative turn is clear: (k, inliers)."""
    return {
        p: (k, best)
        for p, (k, best, second) in scores.items()
        if best >= MIN_INLIERS and best > MARGIN * max(second, 1)
    }


def synchronise(names: list[str], edges: dict[tuple[str, str], tuple[int, int]]) -> dict[str, int]:
    """Quarter turns ``r`` per image with r[a] ≡ r[b] + k (mod 4) on as many strong edges as
    possible; per connected group, the offset that leaves the most images unturned."""
    nbrs: dict[str, list[tuple[str, int, int]]] = {n: [] for n in names}
    for (a, b), (k, w) in edges.items():
        nbrs[a].append((b, k, w))  # r[a] = r[b] + k
        nbrs[b].append((a, (-k) % 4, w))
    turn: dict[str, int] = {}
    for root in names:
        if root in turn:
            continue
        # maximum spanning tree (Prim) from root: labels follow the strongest edges first
        turn[root] = 0
        group = [root]
        heap = [(-w, b, root, k) for b, k, w in nbrs[root]]  # (weight, unlabelled, labelled, k)
        heapq.heapify(heap)
        while heap:
            _, b, a, k = heapq.heappop(heap)
            if b in turn:
                continue
            turn[b] = (turn[a] - k) % 4  # the edge says r[a] = r[b] + k
            group.append(b)
            for c, kc, wc in nbrs[b]:
                if c not in turn:
                    heapq.heappush(heap, (-wc, c, b, kc))
        # weighted votes of all edges: fixes labels a weak tree edge got wrong
        for _ in range(3):
            for n in group:
                votes = np.zeros(4)
                for m, k, w in nbrs[n]:
                    votes[(turn[m] + k) % 4] += w
                if votes.any():
                    turn[n] = int(np.argmax(votes))
        offset = max(range(4), key=lambda c: sum((turn[n] + c) % 4 == 0 for n in group))
        for n in group:
            turn[n] = (turn[n] + offset) % 4
    return turn


def candidate_pairs(
    turned: dict[str, dict[int, dict]], among: list[str] | None = None, centers: np.ndarray | None = None
) -> list[tuple[str, str]]:
    """Pairs worth matching: all of them for a small scene; else each photo of ``among`` (all
    by default) with its NEIGHBOURS most similar photos, comparing every turn described.
    ``centers``: the VLAD words of ``vocabulary(turned)``, when already learnt."""
    names = list(turned)
    among = names if among is None else among
    if len(names) <= EXHAUSTIVE_MAX:
        wanted = set(among)
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if a in wanted or b in wanted]
    centers = vocabulary(turned) if centers is None else centers
    upright = np.stack([vlad.vlad(turned[n][0]["descriptors"], centers) for n in names])
    index = {n: i for i, n in enumerate(names)}
    chosen = set()
    for n in among:
        turns = np.stack([vlad.vlad(f["descriptors"], centers) for f in turned[n].values()])
        sim = (turns @ upright.T).max(axis=0)  # its best turn against each photo as stored
        sim[index[n]] = -np.inf
        for j in np.argsort(-sim, kind="stable")[:NEIGHBOURS]:
            chosen.add((n, names[j]) if index[n] < j else (names[j], n))
    return sorted(chosen, key=lambda p: (index[p[0]], index[p[1]]))


def vocabulary(turned: dict[str, dict[int, dict]]) -> np.ndarray:
    """VLAD words of the photos' cheap descriptors as stored (learnt once per detection:
    0.6 s for mold_gold_cape's 119 photos)."""
    return vlad.vocabulary([t[0]["descriptors"] for t in turned.values()])


class CheapTask:
    """One photo as a work item: (name, quarter turns) → (name, its cheap features at each
    turn, or the reason it cannot be read).

    Picklable; the extractor is built on first use, once per worker.
    """

    side_by_side = True  # one photo per item, nothing shared: the local executor runs a few at once

    def __init__(
        self,
        image_dir: Path,
        extractor_factory,
        device: str = "cpu",
        mask_source: str | None = None,
        cheap: str = "aliked",
    ) -> None:
        self.image_dir, self.factory, self.device = Path(image_dir), extractor_factory, device
        self.mask_source, self.conf = mask_source, CHEAP[cheap]
        self._extractor = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_extractor": None}

    def __call__(self, item: tuple[str, tuple[int, ...]]) -> tuple[str, list[dict] | str]:
        name, turns = item
        if self._extractor is None:
            set_threads()
            self._extractor = self.factory(self.conf, self.device)
        try:
            rgb, size = load_image(self.image_dir / name, self.conf["resize_max"])
            keep = masks.resized(masks.load(self.mask_source, self.image_dir, name, size), rgb.shape[:2])
        except ImageError as e:
            return name, e.reason
        out = []
        for k in turns:
            feats = self._extractor(np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb)
            if keep is not None:  # (keypoints of the turned image: the mask turns with it)
                inside = masks.drop_masked(np.rot90(keep, k), feats["keypoints"])
                feats = {key: v[inside] for key, v in feats.items()}
            out.append(feats)
        release_freed_memory_if_grown()
        return name, out


def detect(
    image_dir: Path,
    names: list[str],
    extractor_factory,
    device: str = "cpu",
    failed: dict[str, str] | None = None,
    executor: Executor | None = None,
    mask_source: str | None = None,
    cheap: str = "aliked",
) -> tuple[dict[str, int], dict[tuple[str, str], int], dict[str, dict[int, dict]]]:
    """Number of counter-clockwise quarter turns (0–3) that makes each image upright, each
    compared pair's inliers at its best turn counted (a cheap guess of which pairs overlap;
    only pairs counted at the relative turn found), and each image's cheap features at
    every turn described (key: the turn).

    A photo that cannot be decoded is left out (its reason goes into ``failed``, with a
    warning) and the others go on without it.
    """
    task = CheapTask(image_dir, extractor_factory, device, mask_source, cheap)
    run = (executor or LocalExecutor()).map
    matcher = MutualNNMatcher(MATCHER_CONF, device)
    turned: dict[str, dict[int, dict]] = {}

    for name, out in run(task, [(n, (0,)) for n in names], desc="orientation", unit="img"):
        if isinstance(out, str):
            if failed is not None:
                failed[name] = out
                logger.warning("skipping %s: %s", Path(image_dir) / name, out)
        else:
            turned[name] = {0: out[0]}
    readable = list(turned)
    centers = vocabulary(turned) if len(turned) > EXHAUSTIVE_MAX else None
    known: dict[tuple[str, str], dict[int, int]] = {}
    # (pair work stays on this machine, one pair per core: it is too short to ship)
    relative_turns(turned, matcher, candidate_pairs(turned, centers=centers), known)
    # Photos turned against each other share almost no inliers as stored (≤ 10 of the 25
    # needed on ../shared/data), so a pair above MIN_INLIERS is one with no relative turn;
    # the same is assumed of a pair linked upside down at the other quarter turns.
    linked = _largest_group(readable, list(clear_turns(scores_of(known))))
    rest = [n for n in readable if n not in linked]
    for turns in TURN_ROUNDS:
        if not rest:
            break
        # (each read again: it may have changed or vanished since)
        for name, out in run(task, [(n, turns) for n in rest], desc="orientation (turns)", unit="img"):
            if isinstance(out, str):
                del turned[name]
            else:
                turned[name].update(zip(turns, out, strict=True))
        readable = [n for n in readable if n in turned]
        rest = [n for n in rest if n in turned]
        relative_turns(turned, matcher, candidate_pairs(turned, rest, centers), known)
        linked = _largest_group(readable, list(clear_turns(scores_of(known))))
        rest = [n for n in rest if n not in linked]
    scores = {p: s for p, s in scores_of(known).items() if p[0] in turned and p[1] in turned}
    found = synchronise(readable, clear_turns(scores))
    for name, k in found.items():
        if k:
            logger.info("%s looks turned: extracting it rotated by %d°", name, 90 * k)
    # (a pair's count where its relative turn was counted; the pairs stage counts the others)
    overlap = {p: best for p, (_, best, _) in scores.items() if (found[p[0]] - found[p[1]]) % 4 in known[p]}
    return found, overlap, turned


def orientation_path(output: Path) -> Path:
    """``orientation.json``: each photo's turns and each pair's cheap inliers (for pre-matching)."""
    return Path(output) / "orientation.json"


def features_path(output: Path) -> Path:
    """``orientation-features.h5``: each photo's cheap features at every turn described, so
    that pre-matching can count the pairs turn detection did not compare."""
    return Path(output) / "orientation-features.h5"


def counts_path(output: Path) -> Path:
    """``orientation-counts.json``: cheap inliers counted later from those features."""
    return Path(output) / "orientation-counts.json"


def main(
    image_dir: Path,
    names: list[str],
    output: Path,
    device: str = "cpu",
    executor: Executor | None = None,
    mask_source: str | None = None,
    cheap: str = "aliked",
) -> tuple[dict[str, int], dict[str, str]]:
    """Quarter turns per image and, for photos that could not be read, the reason.

    Read from ``output/orientation.json`` when it was written for these images, masks
    (``mask_source``, lightsfm.masks) and cheap extractor (``cheap``, a key of CHEAP);
    otherwise detected and written there, with every pair's inliers for the pairs stage.
    """
    path = orientation_path(output)
    mask_key = masks.fingerprint(mask_source)
    if path.exists() and features_path(output).exists():
        done = json.loads(path.read_text())
        if (
            done.get("cheap") == CHEAP[cheap]
            and sorted(done.get("names", [])) == sorted(names)
            and done.get("masks", "") == mask_key
        ):
            return done["rotations"], done["failed"]
    failed: dict[str, str] = {}
    factory = extractors.get(CHEAP[cheap]["name"])
    rotations, overlap, turned = detect(image_dir, names, factory, device, failed, executor, mask_source, cheap)
    Path(output).mkdir(parents=True, exist_ok=True)
    features_path(output).unlink(missing_ok=True)
    counts_path(output).unlink(missing_ok=True)
    store = H5Store(features_path(output), {"cheap": CHEAP[cheap], "masks": mask_key})
    with store.writer() as out:  # (before orientation.json, which says that detection finished)
        for name, feats in turned.items():
            out.add(
                name_to_key(name),
                {f"{key}{k}": f[key] for k, f in feats.items() for key in ("keypoints", "descriptors")},
            )
    rows = [{"pair": [a, b], "inliers": v} for (a, b), v in overlap.items()]
    record = {
        "cheap": CHEAP[cheap],
        "names": names,
        "masks": mask_key,
        "failed": failed,
        "rotations": rotations,
        "pairs": rows,
    }
    atomic_write_text(path, json.dumps(record))
    return rotations, failed


def read_overlap(output: Path) -> dict[tuple[str, str], int]:
    """Each pair's inliers in the cheap matching of turn detection (empty when it did not run)."""
    path = orientation_path(output)
    if not path.exists():
        return {}
    return {(r["pair"][0], r["pair"][1]): int(r["inliers"]) for r in json.loads(path.read_text())["pairs"]}


def count_pairs(output: Path, pairs: list[tuple[str, str]], device: str = "cpu") -> dict[tuple[str, str], int]:
    """Cheap inliers of ``pairs`` as turn detection would have counted them, from its stored
    features at each pair's relative turn (rot90(a, r[a] − r[b]) against b as stored).

    Above EXHAUSTIVE_MAX photos turn detection compares each photo with its nearest only;
    the pairs stage asks for others. Counted here, they face the same pre-matching rule:
    uncounted, false pairs across the dino's ring went straight to LightGlue in the
    309-photo mix of ../shared/data and folded it. Counts are kept in counts_path(output);
    pairs whose photos were not described at the turn needed are left out.
    """
    features = features_path(output)
    if not pairs or not features.exists() or not orientation_path(output).exists():
        return {}
    rotations = json.loads(orientation_path(output).read_text())["rotations"]
    cache = counts_path(output)
    done = {(a, b): c for a, b, c in json.loads(cache.read_text())} if cache.exists() else {}
    todo = [p for p in pairs if p not in done]
    if todo:
        turned: dict[str, dict[int, dict]] = {}
        with h5py.File(features, "r") as f:
            for name in sorted({n for p in todo for n in p}):
                if name_to_key(name) in f:
                    g = f[name_to_key(name)]
                    turned[name] = {
                        k: {"keypoints": g[f"keypoints{k}"][()], "descriptors": g[f"descriptors{k}"][()]}
                        for k in range(4)
                        if f"keypoints{k}" in g
                    }
        items, counted = [], []
        for a, b in todo:
            if a not in turned or b not in turned:
                continue
            k = (rotations.get(a, 0) - rotations.get(b, 0)) % 4
            if k in turned[a]:
                items.append((a, b, (k,)))
            elif (-k) % 4 in turned[b]:
                items.append((b, a, ((-k) % 4,)))
            else:
                continue
            counted.append((a, b))
        task = PairTask(turned, MutualNNMatcher(MATCHER_CONF, device))  # type: ignore[arg-type]
        found = LocalExecutor().map(task, items, desc="pre-matching (cheap)", unit="pair")
        done |= {p: c[0] for p, c in zip(counted, found, strict=True)}
        atomic_write_text(cache, json.dumps([[a, b, c] for (a, b), c in done.items()]))
    return {p: done[p] for p in pairs if p in done}
