"""Feature ensembles: the matches of several extractors, merged before verification.

Each extractor of the ensemble (``features.name`` and ``features.ensemble``) has its own
features and matches files; this stage writes one features file whose keypoints are each
extractor's in turn (``features-<tag>+<tag>.h5``) and one matches file whose indices point
into them, so verification and mapping see one set of keypoints per image. The strongest
IMC2023 pipelines did this with ALIKED and DISK, each matched by its LightGlue.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .io import name_to_key, pair_to_key
from .store import H5Store

# The ensemble's setting, in the [features] section: other extractors (module names of
# lightsfm.extractors, comma-separated) whose matches join those of features.name.
default_conf = {"ensemble": ""}
flags = {"ensemble": "Also these extractors (comma-separated), each matched on its own, merged before verification."}


def members(conf: dict) -> list[str]:
    return [n.strip() for n in conf.get("ensemble", "").split(",") if n.strip()]


def _pair_matches(f: h5py.File, a: str, b: str, n_a: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(matches0, scores0) of (a, b) in one matches file, whichever way round it was stored."""
    if pair_to_key(a, b) in f:
        g = f[pair_to_key(a, b)]
        return g["matches0"][()], g["scores0"][()]
    if pair_to_key(b, a) not in f:
        return None
    g = f[pair_to_key(b, a)]
    m1, s1 = g["matches0"][()], g["scores0"][()]  # for each keypoint of b, its match in a
    m0, s0 = np.full(n_a, -1, np.int32), np.zeros(n_a, np.float16)
    ok = m1 > -1
    m0[m1[ok]] = np.nonzero(ok)[0]
    s0[m1[ok]] = s1[ok]
    return m0, s0


def main(
    feature_files: list[Path], match_files: list[Path], pairs: list[tuple[str, str]], output: Path
) -> tuple[Path, Path]:
    """The merged features and matches files of an ensemble (resumable, like every stage)."""
    tags = [Path(f).stem.removeprefix("features-") for f in feature_files]
    sources = {"features": [Path(f).name for f in feature_files], "matches": [Path(m).name for m in match_files]}
    features = H5Store(Path(output) / f"features-{'+'.join(tags)}.h5", sources)
    matches = H5Store(Path(output) / f"matches-{'+'.join(tags)}-ensemble.h5", sources, depth=2)
    inputs = [h5py.File(f, "r") for f in feature_files]
    try:
        names = sorted(set.intersection(*(set(f.keys()) for f in inputs)))
        sizes = {k: [len(f[k]["keypoints"]) for f in inputs] for k in names}
        done = features.keys()
        with features.writer() as out:
            for key in names:
                if key in done:
                    continue
                groups = [f[key] for f in inputs]
                fields = ["keypoints", "scores"]
                if len({g["descriptors"].shape[1] for g in groups}) == 1:  # (only the pairs stage reads them)
                    fields.append("descriptors")
                out.add(
                    key,
                    {
                        **{field: np.concatenate([g[field][()] for g in groups]) for field in fields},
                        "image_size": groups[0]["image_size"][()],
                        **{attr: groups[0].attrs[attr] for attr in ("scale", "rotation") if attr in groups[0].attrs},
                    },
                )
        done = matches.keys()
        files = [h5py.File(m, "r") for m in match_files]
        try:
            with matches.writer() as out:
                for a, b in pairs:
                    ka, kb = name_to_key(a), name_to_key(b)
                    if ka not in sizes or kb not in sizes or pair_to_key(a, b) in done:
                        continue
                    merged, scores = [], []
                    for i, f in enumerate(files):
                        found = _pair_matches(f, a, b, sizes[ka][i])
                        m0, s0 = found or (np.full(sizes[ka][i], -1, np.int32), np.zeros(sizes[ka][i], np.float16))
                        # indices into b's merged keypoints: this extractor's come after the earlier ones'
                        merged.append(np.where(m0 > -1, m0 + sum(sizes[kb][:i]), -1).astype(np.int32))
                        scores.append(s0.astype(np.float16))
                    out.add(pair_to_key(a, b), {"matches0": np.concatenate(merged), "scores0": np.concatenate(scores)})
        finally:
            for f in files:
                f.close()
    finally:
        for f in inputs:
            f.close()
    features.ensure()
    matches.ensure()
    return features.path, matches.path
