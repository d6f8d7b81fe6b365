"""Pairs from global descriptors: L2-normalised embeddings, cosine similarity,
every pair above ``threshold`` plus at least the ``topk`` most similar per image.

Backends: ``dinov2`` (needs a checkpoint, see :mod:`.dinov2`) and ``vlad`` (weight-free,
see :mod:`.vlad`). ``auto`` takes DINOv2 when its weights are found, else VLAD.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from . import dinov2, vlad

logger = logging.getLogger(__name__)

default_conf: dict[str, Any] = {
    "global_descriptor": "auto",  # auto | dinov2 | vlad
    "dinov2_model": "vits14",
    "dinov2_weights": None,
    "topk": 10,
    "similarity_threshold": 0.9,
}


def conf_tag(conf: dict[str, Any]) -> str:
    c = {**default_conf, **conf}
    return f"retrieval-{c['global_descriptor']}-k{c['topk']}-s{c['similarity_threshold']:g}"


def pairs_from_similarity(names: list[str], sim: np.ndarray, topk: int, threshold: float) -> list[tuple[str, str]]:
    """Unordered pairs: each image's ``topk`` best neighbours, and every pair with sim > threshold."""
    n = len(names)
    sim = sim.copy()
    np.fill_diagonal(sim, -np.inf)
    keep = sim > threshold
    k = min(topk, n - 1)
    if k > 0:
        nn = np.argsort(-sim, axis=1)[:, :k]
        keep[np.repeat(np.arange(n), k), nn.ravel()] = True
    keep |= keep.T
    i, j = np.nonzero(np.triu(keep, 1))
    return sorted((min(names[a], names[b]), max(names[a], names[b])) for a, b in zip(i, j, strict=True))


def main(
    names: list[str],
    output: Path,
    conf: dict[str, Any] | None = None,
    image_dir: Path | None = None,
    feature_file: Path | None = None,
    device: str = "cpu",
) -> list[tuple[str, str]]:
    """Retrieval pairs of ``names``; computes (or reuses) ``global-<backend>.h5`` in ``output``."""
    conf = {**default_conf, **(conf or {})}
    backend = conf["global_descriptor"]
    if backend == "auto":
        if dinov2.find_weights(conf["dinov2_model"], conf["dinov2_weights"]) is not None:
            backend = "dinov2"
        else:
            logger.warning(
                "no DINOv2 weights found (give --dinov2-weights); retrieval uses VLAD over ALIKED descriptors"
            )
            backend = "vlad"
    if backend == "dinov2":
        if image_dir is None:
            raise ValueError("DINOv2 retrieval needs the image folder")
        desc = dinov2.main(names, image_dir, output, conf["dinov2_model"], conf["dinov2_weights"], device)
    elif backend == "vlad":
        if feature_file is None:
            raise ValueError("VLAD retrieval needs the local features file")
        desc = vlad.main(names, feature_file)
    else:
        raise ValueError(f"unknown global descriptor {backend!r} (auto, dinov2, vlad)")
    sim = desc @ desc.T
    return pairs_from_similarity(names, sim, conf["topk"], conf["similarity_threshold"])
