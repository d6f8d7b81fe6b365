"""A global descriptor that needs no weights: VLAD over the images' ALIKED descriptors.

The visual vocabulary is learnt on the scene itself (k-means on a sample of its local
descriptors), so nothing is downloaded or shipped. Residuals are intra-normalised and
power-normalised (Arandjelović & Zisserman, "All about VLAD", CVPR 2013).
"""

from __future__ import annotations

import cv2
import h5py
import numpy as np

from ..io import name_to_key

NUM_WORDS = 64
SAMPLE_PER_IMAGE = 256


def _kmeans(x: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-4)
    _, _, centers = cv2.kmeans(x.astype(np.float32), k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    return centers / np.linalg.norm(centers, axis=1, keepdims=True).clip(1e-12)


def vlad(desc: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """One L2-normalised VLAD vector (K·D) for the local descriptors ``desc`` (N, D)."""
    k, d = centers.shape
    out = np.zeros((k, d), np.float32)
    if len(desc):
        assign = np.argmax(desc @ centers.T, axis=1)
        np.add.at(out, assign, desc - centers[assign])
    out /= np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)  # intra-normalisation
    out = np.sign(out) * np.sqrt(np.abs(out))  # power normalisation against bursts
    v = out.ravel()
    return v / max(np.linalg.norm(v), 1e-12)


def vocabulary(descs: list[np.ndarray], num_words: int = NUM_WORDS) -> np.ndarray:
    """Visual words (K, D) learnt from a seeded sample of each image's local descriptors."""
    rng = np.random.default_rng(0)
    sample = np.concatenate([d[rng.permutation(len(d))[:SAMPLE_PER_IMAGE]] for d in descs]).astype(np.float32)
    return _kmeans(sample, int(min(num_words, max(2, len(sample) // 20))))


def main(names: list[str], feature_file: str, num_words: int = NUM_WORDS) -> np.ndarray:
    """VLAD descriptors (len(names), K·D) of the images, in the order of ``names``."""
    descs = []
    with h5py.File(feature_file, "r") as f:
        for n in names:
            d = f[name_to_key(n)]["descriptors"][()].astype(np.float32)
            scores = f[name_to_key(n)]["scores"][()]
            descs.append(d[np.argsort(-scores)])  # strongest first
    centers = vocabulary(descs, num_words)
    return np.stack([vlad(d, centers) for d in descs])
