"""The GPU path on a lent GPU machine: ALIKED and DISK on cuda against cpu, MNN, the pipeline
(fast preset) on both devices and dense on cuda, on the bundled demo photos.

    OUT=/some/folder LIGHTSFM_WEIGHTS_DIR=... python benchmarks/gpu_check.py

Run on 2026-11-30 on an H200 through the device tool (wheels of kornia, kornia-rs and
pycolmap carried for its Python 3.12; torch 2.11+cu130 there); the result is
benchmarks/results/2026-11-30-gpu-check.json. The first run found dense normals failing in
cuSOLVER (batched eigh), fixed in lightsfm/dense/stereo.py.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from lightsfm import config, dense, pipeline
from lightsfm.extractors.aliked import AlikedExtractor
from lightsfm.extractors.disk import DiskExtractor
from lightsfm.images import load_image
from lightsfm.matchers.mnn import MutualNNMatcher

DEMO = Path(__file__).resolve().parents[1] / "demo" / "sceaux-castle" / "images"


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    out = fn()
    torch.cuda.synchronize()
    return out, time.perf_counter() - t


def main() -> None:
    out = Path(os.environ["OUT"])
    res: dict = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "gpu": torch.cuda.get_device_name(0)}
    names = sorted(p.name for p in DEMO.iterdir())
    rgb = load_image(DEMO / names[0], 1024)[0]
    for cls in (AlikedExtractor, DiskExtractor):
        on_cpu = cls({"max_keypoints": 2048}, "cpu")(rgb)
        gpu = cls({"max_keypoints": 2048}, "cuda")
        gpu(rgb)  # warm-up
        on_gpu, seconds = timed(lambda g=gpu: g(rgb))
        d = np.linalg.norm(on_cpu["keypoints"][:, None] - on_gpu["keypoints"][None], axis=-1).min(1)
        res[cls.name] = {
            "cpu_kpts": len(on_cpu["keypoints"]),
            "cuda_kpts": len(on_gpu["keypoints"]),
            "kpt_match_0.5px": float((d < 0.5).mean()),
            "cuda_s": round(seconds, 4),
        }
    f0 = AlikedExtractor({}, "cuda")(rgb)
    f1 = AlikedExtractor({}, "cuda")(load_image(DEMO / names[1], 1024)[0])
    m_cpu = MutualNNMatcher({}, "cpu")(f0, f1)["matches0"]
    m_gpu = MutualNNMatcher({}, "cuda")(f0, f1)["matches0"]
    res["mnn_equal"] = float((m_cpu == m_gpu).mean())
    for dev in ("cuda", "cpu"):
        t = time.perf_counter()
        r = pipeline.reconstruct(DEMO, out / f"run-{dev}", config.load("fast", overrides={"device": dev}))
        res[f"pipeline_{dev}"] = {
            "mean_reproj": r.models[0].compute_mean_reprojection_error() if r.models else None,
            "registered": r.models[0].num_reg_images() if r.models else 0,
            "images": r.num_images,
            "wall_s": round(time.perf_counter() - t, 1),
            "timings": {k: round(v, 2) for k, v in r.timings.items()},
        }
    t = time.perf_counter()
    s = dense.main(out / "run-cuda", {"max_image_size": 600, "mesher": "none"}, "cuda")
    res["dense_cuda"] = {
        "fused_points": s["fused_points"],
        "images": s["images"],
        "wall_s": round(time.perf_counter() - t, 1),
    }
    print(json.dumps(res, indent=1))
    (out / "gpu-check.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
