"""Cameras: which photos share one, and the COLMAP camera each group gets."""

from __future__ import annotations

from collections import defaultdict

import pycolmap

from ..images import ImageInfo

CAMERA_MODES = ("auto", "single", "per-image")
CAMERA_MODELS = ("auto", "SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")


def is_camera_model(name: str) -> bool:
    """Whether ``name`` is a COLMAP camera model this pycolmap knows (SIMPLE_RADIAL, OPENCV, …)."""
    return name in pycolmap.CameraModelId.__members__ and name != "INVALID"


def set_model(camera: pycolmap.Camera, name: str, params: list[float]) -> None:
    """Gives ``camera`` the COLMAP model ``name`` (e.g. PINHOLE) with these parameters."""
    camera.model = pycolmap.CameraModelId.__members__[name]
    camera.params = params


def group_cameras(infos: list[ImageInfo], mode: str = "auto") -> list[list[int]]:
    """Indices of ``infos`` that share one camera.

    ``auto``: same size and same EXIF make/model/focal (images without EXIF and of the
    same size are one camera); ``single``: one camera for all; ``per-image``.
    """
    if mode == "per-image":
        return [[i] for i in range(len(infos))]
    if mode == "single":
        sizes = {(i.width, i.height) for i in infos}
        if len(sizes) > 1:
            raise ValueError(f"camera mode 'single' needs images of one size; found {sorted(sizes)}")
        return [list(range(len(infos)))]
    if mode != "auto":
        raise ValueError(f"unknown camera mode {mode!r}; one of {', '.join(CAMERA_MODES)}")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, info in enumerate(infos):
        groups[info.camera_key].append(i)
    return list(groups.values())


def make_camera(info: ImageInfo, model: str = "auto") -> pycolmap.Camera:
    """A camera for images like ``info``: EXIF focal as prior when present, else 1.2·max side.

    ``auto``: SIMPLE_RADIAL for photos that name their camera in EXIF (straight from a
    lens, with its distortion), SIMPLE_PINHOLE for images without (mostly undistorted or
    processed sets, where a free radial term only absorbs errors: on Middlebury it folded
    the temple ring, see README).
    """
    if model not in CAMERA_MODELS:
        raise ValueError(f"unknown camera model {model!r}; one of {', '.join(CAMERA_MODELS)}")
    if model == "auto":
        model = "SIMPLE_RADIAL" if (info.make or info.model) else "SIMPLE_PINHOLE"
    focal = info.focal_px or 1.2 * max(info.width, info.height)
    cam = pycolmap.Camera.create_from_model_name(0, model, focal, info.width, info.height)
    cam.has_prior_focal_length = info.focal_px is not None
    return cam
