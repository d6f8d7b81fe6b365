"""Cameras: which photos share one, and the COLMAP camera each group gets."""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from pathlib import Path

import pycolmap

from ..images import ImageInfo, frame_of

CAMERA_MODES = ("auto", "per-clip", "single", "per-image")
CAMERA_MODELS = ("auto", "SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


def is_camera_model(name: str) -> bool:
    """Whether ``name`` is a COLMAP camera model this pycolmap knows (SIMPLE_RADIAL, OPENCV, …)."""
    return name in pycolmap.CameraModelId.__members__ and name != "INVALID"


def set_model(camera: pycolmap.Camera, name: str, params: list[float]) -> None:
    """Gives ``camera`` the COLMAP model ``name`` (e.g. PINHOLE) with these parameters."""
    camera.model = pycolmap.CameraModelId.__members__[name]
    camera.params = params


# A known camera: COLMAP model name and its parameters, in pixels of the photo as lightsfm
# reads it (EXIF-upright, full size).
KnownCamera = tuple[str, tuple[float, ...]]


def parse_camera(spec: str) -> KnownCamera:
    """``"OPENCV:fx,fy,cx,cy,k1,k2,p1,p2"`` → ("OPENCV", (fx, …)); ValueError saying what is wrong."""
    model, sep, values = spec.partition(":")
    model = model.strip().upper()
    if not sep or not is_camera_model(model):
        raise ValueError(f"{spec!r}: expected MODEL:v1,v2,… with a COLMAP camera model (PINHOLE, OPENCV, …)")
    try:
        params = tuple(float(v) for v in values.replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"{spec!r}: the parameters must be numbers separated by commas") from None
    need = len(pycolmap.Camera.create_from_model_name(0, model, 1.0, 2, 2).params)
    if len(params) != need:
        names = pycolmap.Camera.create_from_model_name(0, model, 1.0, 2, 2).params_info
        raise ValueError(f"{spec!r}: {model} takes {need} parameters ({names}), got {len(params)}")
    if not all(map(lambda v: abs(v) < 1e9, params)):
        raise ValueError(f"{spec!r}: parameters must be finite")
    return model, params


def read_cameras_file(path: Path) -> list[tuple[str, KnownCamera]]:
    """A cameras file: one ``GLOB MODEL:v1,v2,…`` per line (``#`` comments), the first glob
    that matches a photo's name (relative to the photo folder) wins."""
    out = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e.__class__.__name__})") from None
    for k, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{k}: expected 'GLOB MODEL:v1,v2,…'")
        try:
            out.append((parts[0], parse_camera(parts[1])))
        except ValueError as e:
            raise ValueError(f"{path}:{k}: {e}") from None
    return out


def known_cameras(infos: list[ImageInfo], params: str | None, cameras_file: Path | None) -> dict[str, KnownCamera]:
    """The known camera of each photo that has one: ``params`` (one spec for every photo),
    else the cameras file's first matching glob. ValueError naming the photo whose principal
    point lies outside it (intrinsics of another image size)."""
    rules = [("*", parse_camera(params))] if params else read_cameras_file(cameras_file) if cameras_file else []
    out = {}
    for info in infos:
        for glob, cam in rules:
            if fnmatch.fnmatchcase(info.name, glob):
                probe = pycolmap.Camera.create_from_model_name(0, cam[0], 1.0, info.width, info.height)
                probe.params = list(cam[1])
                cx, cy = probe.principal_point_x, probe.principal_point_y
                if not (0 < cx < info.width and 0 < cy < info.height):
                    raise ValueError(
                        f"{info.name}: the known camera's principal point ({cx:g}, {cy:g}) lies outside the "
                        f"{info.width}×{info.height} photo (intrinsics of another image size?)"
                    )
                out[info.name] = cam
                break
    return out


def group_cameras(
    infos: list[ImageInfo], mode: str = "auto", known: dict[str, KnownCamera] | None = None
) -> list[list[int]]:
    """Indices of ``infos`` that share one camera.

    Photos with a ``known`` camera share it with the photos of the same known camera and
    size; for the others, ``auto``: same size and same EXIF make/model/focal (images without
    EXIF and of the same size are one camera); ``per-clip``: as auto, and video frames
    (``<clip>_<index>.jpg``) share a camera only with frames of their own clip; ``single``:
    one camera for all; ``per-image``.
    """
    known = known or {}
    given: dict[tuple, list[int]] = defaultdict(list)
    for i, info in enumerate(infos):
        if info.name in known:
            given[(known[info.name], info.width, info.height)].append(i)
    rest = [i for i, info in enumerate(infos) if info.name not in known]
    if not rest:
        return list(given.values())
    if len(rest) < len(infos):
        return list(given.values()) + [[rest[j] for j in g] for g in group_cameras([infos[i] for i in rest], mode)]
    if mode == "per-image":
        return [[i] for i in range(len(infos))]
    if mode == "single":
        sizes = {(i.width, i.height) for i in infos}
        if len(sizes) > 1:
            raise ValueError(f"camera mode 'single' needs images of one size; found {sorted(sizes)}")
        return [list(range(len(infos)))]
    if mode not in ("auto", "per-clip"):
        raise ValueError(f"unknown camera mode {mode!r}; one of {', '.join(CAMERA_MODES)}")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, info in enumerate(infos):
        clip = (frame_of(info.name) or ("",))[0] if mode == "per-clip" else ""
        groups[(clip, info.camera_key)].append(i)
    return list(groups.values())


def make_camera(info: ImageInfo, model: str = "auto", known: KnownCamera | None = None) -> pycolmap.Camera:
    """A camera for images like ``info``: the ``known`` one (its focal a prior), else EXIF
    focal as prior when present, else 1.2·max side.

    ``auto``: SIMPLE_RADIAL for photos that name their camera in EXIF (straight from a
    lens, with its distortion), SIMPLE_PINHOLE for images without (mostly undistorted or
    processed sets, where a free radial term only absorbs errors: on Middlebury it folded
    the temple ring, see README).
    """
    if known is not None:
        cam = pycolmap.Camera.create_from_model_name(0, known[0], 1.0, info.width, info.height)
        cam.params = list(known[1])
        cam.has_prior_focal_length = True
        return cam
    if model not in CAMERA_MODELS:
        raise ValueError(f"unknown camera model {model!r}; one of {', '.join(CAMERA_MODELS)}")
    if model == "auto":
        model = "SIMPLE_RADIAL" if (info.make or info.model) else "SIMPLE_PINHOLE"
    focal = info.focal_px or 1.2 * max(info.width, info.height)
    cam = pycolmap.Camera.create_from_model_name(0, model, focal, info.width, info.height)
    cam.has_prior_focal_length = info.focal_px is not None
    return cam
