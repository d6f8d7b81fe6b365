"""Pairs for frames of videos: neighbours in time, a few wider steps, and loop closures.

Frames named ``<clip>_<index, 6 digits>.<ext>`` (what :mod:`lightsfm.video` writes) form one
sequence per clip, in frame order; other names form one sequence in name order. Each frame
is paired with

- the next ``overlap`` frames of its sequence (a camera moving slowly sees the same scene);
- frames further out at steps growing geometrically from ``overlap`` (×``step_ratio``:
  15, 22, 33, 50, 75, … for overlap 10), which tie each stretch of the clip to the next
  across a blurred or featureless stretch at a cost of log(n) pairs per frame;
- its ``loop_topk`` most similar frames by global descriptor (retrieval: DINOv2 or VLAD, as
  in :mod:`.retrieval`) that the above did not pair and that are more than ``overlap``
  frames away: where the camera comes back (an orbit closing, a second clip of the scene).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..images import frame_of
from . import dinov2, retrieval, vlad

logger = logging.getLogger(__name__)

default_conf: dict[str, Any] = {
    "overlap": 10,  # each frame with its next `overlap` frames
    "step_ratio": 1.5,  # wider steps: overlap·r, overlap·r², … (≤ 1: none)
    "loop_topk": 5,  # loop closures per frame by retrieval (0: none)
    **{k: v for k, v in retrieval.default_conf.items() if k in ("global_descriptor", "dinov2_model", "dinov2_weights")},
}

flags: dict[str, str | tuple[str, str]] = {
    "overlap": "sequential: pair each frame with its next N frames.",
    "step_ratio": "sequential: wider steps grow by this factor beyond the overlap (<= 1: none).",
    "loop_topk": "sequential: loop closures per frame by retrieval (0: none).",
}


def conf_tag(conf: dict[str, Any]) -> str:
    """The part of the pair file's name that tells which settings made it."""
    c = {**default_conf, **conf}
    loops = f"-l{c['loop_topk']}-{c['global_descriptor']}" if c["loop_topk"] > 0 else "-l0"
    return f"sequential-o{c['overlap']}-r{c['step_ratio']:g}{loops}"


def sequences(names: list[str]) -> list[list[str]]:
    """``names`` split into sequences in time order: one per clip (by the frame-name pattern),
    the names that do not follow it as one more, in name order."""
    clips: dict[str, list[tuple[int, str]]] = {}
    others = []
    for n in names:
        frame = frame_of(n)
        if frame:
            clips.setdefault(frame[0], []).append((frame[1], n))
        else:
            others.append(n)
    out = [[n for _, n in sorted(frames)] for _, frames in sorted(clips.items())]
    if others:
        out.append(sorted(others))
    return out


def steps(overlap: int, step_ratio: float, length: int) -> list[int]:
    """Frame offsets to pair: 1 … overlap, then overlap·r^k (rounded, distinct) below ``length``."""
    out = list(range(1, min(overlap, length - 1) + 1))
    if step_ratio > 1 and overlap > 0:
        s = float(overlap)
        while True:
            s *= step_ratio
            k = round(s)
            if k >= length:
                break
            if k > out[-1]:
                out.append(k)
    return out


def pairs_sequential(names: list[str], overlap: int = 10, step_ratio: float = 1.5) -> list[tuple[str, str]]:
    """Temporal pairs (no retrieval): each frame with the frames ``steps`` ahead in its
    sequence. Pairs are (earlier, later), sorted, each once."""
    pairs = set()
    for seq in sequences(names):
        for d in steps(overlap, step_ratio, len(seq)):
            pairs.update(zip(seq[:-d], seq[d:], strict=True))
    return sorted(pairs)


def loop_pairs(
    names: list[str], sim: np.ndarray, paired: set[tuple[str, str]], topk: int, min_gap: int
) -> list[tuple[str, str]]:
    """Each name's ``topk`` most similar names by ``sim`` (names × names) among those not in
    ``paired`` (either order) and more than ``min_gap`` frames away in the same sequence."""
    if topk <= 0 or len(names) < 2:
        return []
    index = {n: i for i, n in enumerate(names)}
    order = {n: (s, t) for s, seq in enumerate(sequences(names)) for t, n in enumerate(seq)}
    sim = np.array(sim, dtype=np.float64, copy=True)
    np.fill_diagonal(sim, -np.inf)
    for a, b in paired:
        if a in index and b in index:
            sim[index[a], index[b]] = sim[index[b], index[a]] = -np.inf
    seq_of = np.array([order[n][0] for n in names])
    pos = np.array([order[n][1] for n in names])
    near = (seq_of[:, None] == seq_of[None, :]) & (np.abs(pos[:, None] - pos[None, :]) <= min_gap)
    sim[near] = -np.inf
    out = set()
    k = min(topk, len(names) - 1)
    best = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    for i, row in enumerate(best):
        for j in row:
            if np.isfinite(sim[i, j]):
                a, b = names[i], names[j]
                out.add((a, b) if order[a] < order[b] else (b, a))
    return sorted(out)


def global_descriptors(
    names: list[str],
    output: Path,
    conf: dict[str, Any],
    image_dir: Path | None = None,
    feature_file: Path | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """L2-normalised global descriptors (len(names), D), chosen as retrieval chooses them."""
    backend = conf["global_descriptor"]
    if backend == "auto":
        found = dinov2.find_weights(conf["dinov2_model"], conf["dinov2_weights"]) is not None
        backend = "dinov2" if found else "vlad"
    if backend == "dinov2":
        if image_dir is None:
            raise ValueError("DINOv2 retrieval needs the image folder")
        return dinov2.main(names, image_dir, output, conf["dinov2_model"], conf["dinov2_weights"], device)
    if backend == "vlad":
        if feature_file is None:
            raise ValueError("VLAD retrieval needs the local features file")
        return vlad.main(names, feature_file)
    raise ValueError(f"unknown global descriptor {backend!r} (auto, dinov2, vlad)")


def main(
    names: list[str],
    output: Path,
    conf: dict[str, Any] | None = None,
    image_dir: Path | None = None,
    feature_file: Path | None = None,
    device: str = "cpu",
) -> list[tuple[str, str]]:
    """Sequential pairs of ``names`` plus loop closures (called as :func:`.retrieval.main`)."""
    conf = {**default_conf, **(conf or {})}
    pairs = pairs_sequential(names, conf["overlap"], conf["step_ratio"])
    if conf["loop_topk"] > 0 and len(names) > conf["overlap"] + 1:
        desc = global_descriptors(names, output, conf, image_dir, feature_file, device)
        loops = loop_pairs(names, desc @ desc.T, set(pairs), conf["loop_topk"], conf["overlap"])
        logger.info("sequential pairs: %d in time, %d loop closures", len(pairs), len(loops))
        pairs = sorted(set(pairs) | set(loops))
    return pairs
