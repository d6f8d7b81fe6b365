"""Dense reconstruction on a CPU: ``OUT/sparse/0`` → ``OUT/dense/{fused,mesh}.ply``.

The workspace is COLMAP's, so COLMAP tools and viewers read it as is::

    dense/images/        undistorted photos (pycolmap), long side ≤ max_image_size
    dense/sparse/        the model with PINHOLE cameras
    dense/stereo/depth_maps/<name>.{photometric,geometric}.bin   (COLMAP format)
    dense/stereo/normal_maps/<name>.{photometric,geometric}.bin
    dense/fused.ply      coloured points with normals (pycolmap stereo fusion)
    dense/mesh.ply       screened Poisson surface, trimmed where the points are sparse

Depth maps come from lightsfm's PyTorch stereo (``stereo.py``; plane sweep + refinement +
geometric consistency) or, with ``backend="colmap-cuda"`` where pycolmap was built with
CUDA, from COLMAP's PatchMatch. Each depth map is written to a temp file and renamed, so an
interrupted run resumes from the maps already written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .. import colmap, masks
from ..colmap import mvs
from ..device import set_threads
from ..errors import ImageError, LightsfmError
from ..images import load_image, read_info
from ..io import atomic_write_text, check_written
from ..workspace import State, Workspace, fingerprint
from . import stereo

if TYPE_CHECKING:
    import pycolmap

logger = logging.getLogger(__name__)

default_conf: dict[str, Any] = {
    "model": 0,  # which sparse model (0: the largest)
    "max_image_size": 1000,  # long side of the undistorted images and depth maps
    "num_src": 4,  # source views per reference: the best by view_selection_scores
    "view_selection_angle": 5.0,  # degrees: the triangulation angle source views are scored around
    "depth_range": None,  # [near, far] for every view; None: from the sparse points, widened
    "backend": "torch",  # torch (any device) or colmap-cuda (pycolmap's PatchMatch, needs CUDA)
    "stereo": stereo.default_conf,
    "geom_min_views": 2,  # a depth must agree with this many source depth maps …
    "geom_max_reprojection": 2.0,  # … sent there and back within this many pixels (COLMAP fusion's default)
    "geom_max_relative_depth": 0.01,  # … and this relative depth difference
    "fusion_min_views": 3,  # a fused point needs this many agreeing pixels (views)
    "fusion_max_normal_error": 20.0,  # degrees
    "mesher": "poisson",  # poisson, or none
    "poisson_depth": 10,
    "poisson_trim": 7.0,  # drop the surface where the point density is this low
}
flags: dict[str, str | tuple[str, str]] = {
    "max_image_size": ("--max-size", "Long side (px) of the depth maps."),
    "num_src": "Source views per depth map.",
    "stereo.num_depths": "Planes in the sweep.",
    "stereo.iterations": "Refinement rounds after the sweep.",
    "mesher": "poisson or none.",
    "backend": "torch, or colmap-cuda (pycolmap built with CUDA).",
    "model": ("--model", "Which sparse model (0: largest)."),
}

DEPTH_MARGIN = 1.25  # sparse points miss the nearest and farthest surfaces: widen their range


def _fingerprint(sparse: Path, image_dir: Path, conf: dict[str, Any], mask_source: str | None) -> str:
    """Changes when the model, the masks or the settings that shape the depth maps change."""
    # the model's files by name, not path: a copied run with its dense/ still resumes
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sparse.iterdir() if p.is_file())
    keys = ("max_image_size", "num_src", "view_selection_angle", "depth_range", "backend", "stereo")
    # (the consistency check and fusion are redone on every run: they are cheap)
    return fingerprint(files, str(image_dir), {k: conf[k] for k in keys}, masks.fingerprint(mask_source))


def _masks(
    image_dir: Path, mask_source: str | None, rec: pycolmap.Reconstruction, udrec: pycolmap.Reconstruction, device: str
) -> dict[str, torch.Tensor]:
    """Kept pixels of each undistorted image that has a mask (lightsfm.masks)."""
    out: dict[str, torch.Tensor] = {}
    if not mask_source:
        return out
    photos = {im.name: im for im in rec.images.values()}
    for image in udrec.images.values():
        if image.name not in photos:
            continue
        cam = rec.cameras[photos[image.name].camera_id]
        try:
            keep = masks.load(mask_source, image_dir, image.name, (cam.width, cam.height))
        except ImageError as e:
            logger.warning("%s; depth map unmasked", e)
            continue
        if keep is not None:
            keep = mvs.undistorted_mask(keep, cam, udrec.cameras[image.camera_id])
            out[image.name] = torch.from_numpy(keep).to(device)
    return out


def upright_inputs(image_dir: Path, names: list[str], folder: Path) -> dict[str, str]:
    """``folder/<name>`` for every name: a link to the photo, or an upright 8-bit copy when the
    photo needs an EXIF rotation or is in a form COLMAP reads differently from lightsfm.

    Returns the photos that can no longer be read (changed since the sparse run), with the
    reason: they get no depth map and the others go on.
    """
    failed: dict[str, str] = {}
    for name in names:
        src, dst = Path(image_dir) / name, folder / name
        if dst.exists() or dst.is_symlink():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            read_info(image_dir, name)  # decodes the whole file: COLMAP must not meet a broken one
            with Image.open(src) as im:
                plain = im.getexif().get(0x0112, 1) == 1 and im.mode in ("RGB", "L") and im.format in ("JPEG", "PNG")
            if plain:
                os.symlink(src.resolve(), dst)
            else:
                rgb, _ = load_image(src)
                tmp = dst.with_name(dst.name + ".tmp" + dst.suffix)
                Image.fromarray(rgb).save(tmp, quality=95)
                os.replace(tmp, dst)
        except (ImageError, OSError) as e:
            failed[name] = e.reason if isinstance(e, ImageError) else str(e)
            logger.warning("skipping %s", e)
    return failed


def _views(dense: Path, rec: pycolmap.Reconstruction, device: str) -> dict[str, stereo.View]:
    """The undistorted images that exist and can be read (a photo skipped has none)."""
    views = {}
    for image in rec.images.values():
        cam = rec.cameras[image.camera_id]
        gray = cv2.imread(str(dense / "images" / image.name), cv2.IMREAD_GRAYSCALE)
        if gray is None:
            logger.warning("%s: cannot read the undistorted image; no depth map", dense / "images" / image.name)
            continue
        p = image.cam_from_world()
        views[image.name] = stereo.View(
            image.name,
            torch.tensor(cam.calibration_matrix(), dtype=torch.float32),
            torch.tensor(p.rotation.matrix(), dtype=torch.float32),
            torch.tensor(p.translation, dtype=torch.float32),
            torch.from_numpy(gray).float().div(255.0),
        ).to(device)
    return views


def _map_path(dense: Path, kind: str, name: str, which: str) -> Path:
    return dense / "stereo" / f"{kind}_maps" / f"{name}.{which}.bin"


def _write_maps(dense: Path, name: str, which: str, depth: torch.Tensor, K: torch.Tensor) -> None:
    d = depth.cpu().numpy().astype(np.float32)
    n = stereo.normals_from_depth(depth, K).cpu().numpy().astype(np.float32)
    valid = d[d > 0]
    lo, hi = (float(np.percentile(valid, 1)), float(np.percentile(valid, 99))) if valid.size else (0.0, 0.0)
    writers = (("normal", lambda p: mvs.write_normal_map(p, n)), ("depth", lambda p: mvs.write_depth_map(p, d, lo, hi)))
    for kind, write in writers:
        path = _map_path(dense, kind, name, which)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        write(tmp)
        check_written([tmp])  # pycolmap says nothing when the disk is full
        os.replace(tmp, path)  # the depth map last: its presence marks the image done


def _read_depth(dense: Path, name: str, which: str, device: str) -> torch.Tensor:
    return torch.from_numpy(mvs.read_depth_map(_map_path(dense, "depth", name, which))).to(device)


def view_selection_scores(rec: pycolmap.Reconstruction, theta0: float = 5.0) -> dict[tuple[str, str], float]:
    """Score of every image pair as stereo partners, from the sparse points both see.

    Each shared point adds a Gaussian of its triangulation angle θ around ``theta0``
    (σ = 1° below, 10° above; MVSNet's view selection): pairs with many points seen at a
    useful angle win, and views so far apart that patches no longer look alike lose.
    """
    centers = {i: im.projection_center() for i, im in rec.images.items() if im.has_pose}
    scores: dict[tuple[int, int], float] = {}
    for point in rec.points3D.values():
        ids = sorted({el.image_id for el in point.track.elements if el.image_id in centers})
        if len(ids) < 2:
            continue
        rays = np.array([centers[i] - point.xyz for i in ids])
        rays /= np.linalg.norm(rays, axis=1, keepdims=True).clip(min=1e-12)
        angles = np.degrees(np.arccos(np.clip(rays @ rays.T, -1.0, 1.0)))
        sigma = np.where(angles <= theta0, 1.0, 10.0)
        g = np.exp(-((angles - theta0) ** 2) / (2 * sigma**2))
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                scores[(ids[a], ids[b])] = scores.get((ids[a], ids[b]), 0.0) + float(g[a, b])
    names = {i: rec.images[i].name for i in centers}
    return {(names[a], names[b]): v for (a, b), v in scores.items()}


def _sources(
    dense: Path, rec: pycolmap.Reconstruction, conf: dict[str, Any]
) -> tuple[dict[str, list[str]], dict[str, tuple[float, float]]]:
    """Source views (best view-selection scores) and depth range per image (pycolmap's MVSModel);
    ``rec`` is the undistorted model of ``dense/sparse``."""
    scores = view_selection_scores(rec, conf["view_selection_angle"])
    partners: dict[str, list[tuple[float, str]]] = {im.name: [] for im in rec.images.values() if im.has_pose}
    for (a, b), v in scores.items():
        partners[a].append((v, b))
        partners[b].append((v, a))
    sources = {n: [m for _, m in sorted(p, reverse=True)[: conf["num_src"]]] for n, p in partners.items()}
    ranges = mvs.depth_ranges(dense)
    if conf["depth_range"] is not None:
        near, far = conf["depth_range"]
        return sources, {n: (float(near), float(far)) for n in ranges}
    out = {}
    for n, (near, far) in ranges.items():
        if near > 0 and far > near:
            out[n] = (near / DEPTH_MARGIN, far * DEPTH_MARGIN)
    return sources, out


def main(output: Path, conf: dict[str, Any] | None = None, device: str = "cpu", image_dir: Path | None = None) -> dict:
    """Dense cloud and mesh of ``output/sparse/<model>`` under ``output/dense``; returns a summary."""
    conf = {**default_conf, **(conf or {})}
    conf["stereo"] = {**stereo.default_conf, **conf.get("stereo", {})}
    ws = Workspace(output)
    sparse = ws.model(conf["model"])
    if not (sparse / "images.bin").exists() and not (sparse / "images.txt").exists():
        raise LightsfmError(f"{sparse}: no sparse model (run `lightsfm reconstruct` first)")
    image_dir = ws.image_dir(image_dir)
    set_threads()
    timings: dict[str, float] = {}
    dense = ws.dense

    # A workspace made from another model or other settings is thrown away, not mixed in.
    mask_source = (
        (ws.summary().get("conf") or {}).get("features", {}).get("masks") if ws.summary_file.exists() else None
    )
    key = _fingerprint(sparse, image_dir, conf, mask_source)
    state = State(ws.dense_state_file)
    if state.get("key") != key:
        shutil.rmtree(dense, ignore_errors=True)
        state = State(ws.dense_state_file)
    dense.mkdir(parents=True, exist_ok=True)
    state.set(key=key)

    t = time.perf_counter()
    if not state.get("undistorted"):
        rec = colmap.read_model(sparse)
        names = [im.name for im in rec.images.values() if im.has_pose]
        upright = dense / "inputs"
        skipped = upright_inputs(image_dir, names, upright)
        names = [n for n in names if n not in skipped]
        mvs.undistort_images(dense, sparse, upright, names, conf["max_image_size"])
        shutil.rmtree(upright)
        state.set(skipped=skipped, undistorted=True)
    timings["undistort"] = time.perf_counter() - t

    t = time.perf_counter()
    udrec = colmap.read_model(dense / "sparse")
    sources, ranges = _sources(dense, udrec, conf)
    names = sorted(n for n in sources if sources[n] and n in ranges)
    no_depth = sorted(set(sources) - set(names))
    for n in no_depth:
        logger.warning("%s: no source view or depth range in the sparse model; no depth map", n)
    valid_share: dict[str, float] = {}  # filled by the torch backend
    if conf["backend"] == "colmap-cuda":
        if mask_source:
            logger.warning("the colmap-cuda backend does not apply masks (%s) to its depth maps", mask_source)
        _colmap_patch_match(dense, conf, names)
    elif conf["backend"] == "torch":
        views = _views(dense, udrec, device)
        names = [n for n in names if n in views]
        sources = {n: [s for s in src if s in views] for n, src in sources.items()}
        todo = [n for n in names if not _map_path(dense, "depth", n, "photometric").exists()]
        for n in tqdm(todo, desc="depth", unit="img"):
            with torch.inference_mode():
                depth, _ = stereo.estimate_depth(views[n], [views[s] for s in sources[n]], ranges[n], conf["stereo"])
            _write_maps(dense, n, "photometric", depth, views[n].K)
        timings["depth"] = time.perf_counter() - t

        t = time.perf_counter()
        keep = _masks(image_dir, mask_source, colmap.read_model(sparse), udrec, device)
        depths = {n: _read_depth(dense, n, "photometric", device) for n in names}
        for n, k in keep.items():  # masked pixels hold no depth: none is checked against them or fused
            if n in depths:
                depths[n] = torch.where(k, depths[n], torch.zeros_like(depths[n]))
        for n in tqdm(names, desc="consistency", unit="img", leave=False):
            src = [s for s in sources[n] if s in depths]
            with torch.inference_mode():
                filtered, _ = stereo.geometric_filter(
                    views[n],
                    depths[n],
                    [views[s] for s in src],
                    [depths[s] for s in src],
                    conf["geom_min_views"],
                    conf["geom_max_reprojection"],
                    conf["geom_max_relative_depth"],
                )
            _write_maps(dense, n, "geometric", filtered, views[n].K)
            valid_share[n] = float((filtered > 0).float().mean())
        timings["consistency"] = time.perf_counter() - t
    else:
        raise LightsfmError(f"unknown dense backend {conf['backend']!r}; one of torch, colmap-cuda")

    t = time.perf_counter()
    fused = fuse(dense, names, conf)
    timings["fusion"] = time.perf_counter() - t
    summary: dict[str, Any] = {
        "images": len(names),
        "no_depth_map": no_depth,
        "skipped": state.get("skipped", {}),
        "fused_points": fused,
    }
    if conf["mesher"] != "none" and fused > 0:
        t = time.perf_counter()
        summary["mesh"] = mesh(ws.fused, ws.mesh, conf)
        timings["mesh"] = time.perf_counter() - t
    summary["valid_depth_share"] = valid_share
    summary["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    summary["conf"] = conf
    atomic_write_text(ws.dense_summary_file, json.dumps(summary, indent=2))
    return summary


def _colmap_patch_match(dense: Path, conf: dict[str, Any], names: list[str]) -> None:
    if not mvs.has_cuda():
        raise LightsfmError("backend colmap-cuda: this pycolmap was built without CUDA; use backend torch")
    mvs.patch_match_stereo(dense, conf["max_image_size"], conf["stereo"]["window"] // 2, conf["depth_range"])


def fuse(dense: Path, names: list[str], conf: dict[str, Any]) -> int:
    """pycolmap's stereo fusion of the geometric depth maps → ``dense/fused.ply``; returns its point count."""
    atomic_write_text(dense / "stereo" / "fusion.cfg", "".join(f"{n}\n" for n in names))
    tmp = dense / "fused.tmp.ply"
    n = mvs.stereo_fusion(
        tmp, dense, conf["fusion_min_views"], conf["fusion_max_normal_error"], conf["max_image_size"]
    )  # (on one thread: see mvs.stereo_fusion)
    check_written([p for p in (tmp, Path(f"{tmp}.vis")) if p.exists()])
    n = n if n is not None else len(read_ply_points(tmp)[0])
    for suffix in ("", ".vis"):
        if Path(f"{tmp}{suffix}").exists():
            os.replace(f"{tmp}{suffix}", dense / f"fused.ply{suffix}")
    return n


_PLY_TYPES = {"float": "f4", "float32": "f4", "double": "f8", "uchar": "u1", "uint8": "u1", "int": "i4", "uint": "u4"}


def read_ply_points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float64 positions and (N, 3) uint8 colours (zeros if none) of a binary PLY's vertices."""
    with open(path, "rb") as f:
        fields, count, in_vertex = [], 0, False
        while True:
            line = f.readline()
            if not line:
                raise LightsfmError(f"{path}: not a PLY file (no end_header)")
            words = line.split()
            if words[:1] == [b"format"] and words[1] != b"binary_little_endian":
                raise LightsfmError(f"{path}: only binary little-endian PLY is read here, not {words[1].decode()}")
            if words[:1] == [b"element"]:
                in_vertex = words[1] == b"vertex"
                count = int(words[2]) if in_vertex else count
            elif words[:1] == [b"property"] and in_vertex:
                fields.append((words[2].decode(), "<" + _PLY_TYPES[words[1].decode()]))
            elif words[:1] == [b"end_header"]:
                break
        v = np.frombuffer(f.read(count * np.dtype(fields).itemsize), dtype=fields, count=count)
    xyz = np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)
    names = v.dtype.names or ()
    rgb = np.stack([v[c] for c in ("red", "green", "blue")], 1) if "red" in names else np.zeros((count, 3), np.uint8)
    return xyz, rgb


def mesh(fused: Path, out: Path, conf: dict[str, Any]) -> dict[str, int]:
    """Screened Poisson surface of the fused points (pycolmap / PoissonRecon), trimmed."""
    if conf["mesher"] != "poisson":
        raise LightsfmError(f"unknown mesher {conf['mesher']!r}; one of poisson, none")
    tmp = out.with_name(out.stem + ".tmp.ply")
    mvs.poisson_meshing(fused, tmp, conf["poisson_depth"], conf["poisson_trim"], os.cpu_count() or 1)
    check_written([tmp])
    os.replace(tmp, out)
    with open(out, "rb") as f:
        counts = {}
        for line in f:
            if line.startswith(b"element "):
                _, kind, n = line.split()
                counts[kind.decode()] = int(n)
            if line.startswith(b"end_header"):
                break
    return {"vertices": counts.get("vertex", 0), "faces": counts.get("face", 0)}
