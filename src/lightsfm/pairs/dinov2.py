"""DINOv2 global descriptors (ViT-S/14, ViT-B/14): the CLS token of the official model.

The architecture is kornia's port of facebookresearch/dinov2 (same parameter names), so
the official checkpoints ``dinov2_vits14_pretrain.pth`` / ``dinov2_vitb14_pretrain.pth``
load unchanged, from a path the user gives or from the torch hub cache. Nothing is
downloaded: without a checkpoint, retrieval falls back to VLAD.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import h5py
import numpy as np
import torch
from kornia.feature.dedode.transformer.dinov2 import vit_base, vit_small
from tqdm import tqdm

from ..errors import ImageError, LightsfmError
from ..images import load_image
from ..io import H5Appender, h5_conf, h5_keys, merge_parts, name_to_key
from ..weights import load_state_dict_checked

logger = logging.getLogger(__name__)

ARCHS = {"vits14": vit_small, "vitb14": vit_base}
INPUT_SIZE = 224  # 16×16 patches of 14 px
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def hub_checkpoint(model: str) -> Path:
    """Where torch.hub caches the official checkpoint of ``model``."""
    home = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch"))
    return home / "hub" / "checkpoints" / f"dinov2_{model}_pretrain.pth"


def find_weights(model: str, weights: str | Path | None = None) -> Path | None:
    """The checkpoint to use: ``weights`` when given (must exist), else the hub cache, else None."""
    if model not in ARCHS:
        raise LightsfmError(f"unknown DINOv2 model {model!r}; known: {', '.join(ARCHS)}")
    if weights:
        if not Path(weights).is_file():
            raise LightsfmError(f"{weights}: DINOv2 checkpoint not found")
        return Path(weights)
    path = hub_checkpoint(model)
    return path if path.is_file() else None


def build(model: str, weights: str | Path | None = None, device: str = "cpu") -> torch.nn.Module:
    """The official DINOv2 architecture with its checkpoint loaded and checked."""
    path = find_weights(model, weights)
    if path is None:
        raise LightsfmError(
            f"DINOv2 {model} weights not found: expected {hub_checkpoint(model)} or a path given with "
            "--dinov2-weights (official checkpoint dinov2_{model}_pretrain.pth)"
        )
    net = ARCHS[model](patch_size=14, img_size=518, init_values=1.0, block_chunks=0)
    state = torch.load(path, map_location="cpu", weights_only=True)
    load_state_dict_checked(net, state, path)
    return net.eval().to(device)


@torch.inference_mode()
def describe(net: torch.nn.Module, rgb: np.ndarray, device: str = "cpu") -> np.ndarray:
    """L2-normalised CLS embedding of one RGB uint8 image."""
    x = torch.from_numpy(np.ascontiguousarray(rgb).copy()).permute(2, 0, 1)[None].float() / 255.0
    x = torch.nn.functional.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True)
    x = ((x - MEAN) / STD).to(device)
    d = net(x)[0]
    return torch.nn.functional.normalize(d, dim=0).cpu().numpy()


def main(
    names: list[str],
    image_dir: Path,
    output: Path,
    model: str = "vits14",
    weights: str | Path | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """DINOv2 descriptors (len(names), D), cached per image in ``output/global-dinov2-<model>.h5``."""
    path = Path(output) / f"global-dinov2-{model}.h5"
    conf = json.dumps({"model": model, "input": INPUT_SIZE})
    merge_parts(path)
    if h5_conf(path) not in (None, conf):
        path.unlink()
    todo = [n for n in names if name_to_key(n) not in h5_keys(path)]
    if todo:
        net = build(model, weights, device)
        with H5Appender(path, conf) as out:
            for name in tqdm(todo, desc="dinov2", unit="img"):
                try:
                    rgb, _ = load_image(Path(image_dir) / name, 448)
                except ImageError as e:
                    # It was extracted, so it changed since: without a descriptor (zeros) it
                    # is still paired with its top-k, and one photo does not end the run.
                    logger.warning("no global descriptor for %s", e)
                    continue
                out.add(name_to_key(name), {"global": describe(net, rgb, device)})
    with h5py.File(path, "r") as f:
        rows = {n: f[name_to_key(n)]["global"][()] for n in names if name_to_key(n) in f}
    dim = len(next(iter(rows.values()))) if rows else 1
    return np.stack([rows.get(n, np.zeros(dim, np.float32)) for n in names])
