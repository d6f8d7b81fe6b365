"""A global descriptor that needs no weights: VLAD over the images' ALIKED descriptors.

The visual vocabulary is learnt on the scene itself (k-means on a sample of its local
descriptors), so nothing is downloaded or shipped. Residuals are intra-normalised and
power-normalised (Arandjelović & Zisserman, "All about VLAD", CVPR 2013). The features
file is read one image at a time (twice: the sample, then the descriptors), so memory
does not grow with the number of images beyond the sample and the VLAD vectors.
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


def _sample(desc: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return desc[rng.permutation(len(desc))[:SAMPLE_PER_IMAGE]].astype(np.float32)


def _words(sample: np.ndarray, num_words: int) -> np.ndarray:
    return _kmeans(sample, int(min(num_words, max(2, len(sample) // 20))))


def vocabulary(descs: list[np.ndarray], num_words: int = NUM_WORDS) -> np.ndarray:
    """Visual words (K, D) learnt from a seeded sample of each image's local descriptors."""
    rng = np.random.default_rng(0)
    return _words(np.concatenate([_sample(d, rng) for d in descs]), num_words)


def _read(f: h5py.File, name: str) -> np.ndarray:
    g = f[name_to_key(name)]
    d = g["descriptors"][()].astype(np.float32)
    return d[np.argsort(-g["scores"][()])]  # strongest first


def main(names: list[str], feature_file: str, num_words: int = NUM_WORDS) -> np.ndarray:
    """VLAD descriptors (len(names), K·D) of the images, in the order of ``names``
    (the same as ``vocabulary`` and ``vlad`` over all of them, one image in memory at a time)."""
    rng = np.random.default_rng(0)
    with h5py.File(feature_file, "r") as f:
        centers = _words(np.concatenate([_sample(_read(f, n), rng) for n in names]), num_words)
        return np.stack([vlad(_read(f, n), centers) for n in names])
