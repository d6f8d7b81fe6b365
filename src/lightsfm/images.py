"""Reading photos: listing a folder, EXIF orientation and focal length, resizing.

All coordinates in lightsfm are in the *upright* image (EXIF orientation applied) at its
full resolution; stages that work on a resized copy scale back before writing.
"""

from __future__ import annotations

import hashlib
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError, LightsfmError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
# Photo formats people have but we cannot decode: listed so that they are reported, not ignored.
UNSUPPORTED_EXTENSIONS = {
    ".heic",
    ".heif",
    ".avif",
    ".jxl",
    ".cr2",
    ".cr3",
    ".nef",
    ".arw",
    ".dng",
    ".raw",
    ".orf",
    ".rw2",
    ".gif",
    ".psd",
    ".svg",
}
MIN_SIDE = 64  # below this no detector finds usable keypoints
Image.MAX_IMAGE_PIXELS = 400_000_000  # large photos are fine; we downscale while decoding

_EXIF_IFD = 0x8769
_TAG_ORIENTATION = 0x0112
_TAG_MAKE, _TAG_MODEL = 0x010F, 0x0110
_TAG_FOCAL, _TAG_FOCAL35 = 0x920A, 0xA405
_TAG_FPXRES, _TAG_FPRESUNIT, _TAG_EXIFWIDTH = 0xA20E, 0xA210, 0xA002


@dataclass(frozen=True)
class ImageInfo:
    """What the pipeline needs to know about one photo before looking at its pixels."""

    name: str  # path relative to the image folder, '/'-separated
    width: int  # upright (EXIF orientation applied)
    height: int
    make: str = ""
    model: str = ""
    focal_mm: float | None = None
    focal_px: float | None = None  # prior from EXIF, in pixels of the upright image

    @property
    def camera_key(self) -> tuple:
        """Images with the same key are assumed to come from the same camera."""
        return (self.width, self.height, self.make, self.model, self.focal_mm)


def list_images(image_dir: Path) -> list[str]:
    """Image names (relative, sorted) found recursively under ``image_dir``.

    Files in photo formats we cannot read (HEIC, RAW, …) and broken links are listed too,
    so that reading them reports why they were skipped instead of ignoring them.
    """
    image_dir = Path(image_dir)
    if not image_dir.is_dir():
        raise LightsfmError(f"{image_dir}: not a folder of images")
    wanted = IMAGE_EXTENSIONS | UNSUPPORTED_EXTENSIONS
    names = sorted(
        p.relative_to(image_dir).as_posix()
        for p in image_dir.rglob("*")
        if p.suffix.lower() in wanted and (p.is_file() or p.is_symlink())
    )
    if not any(Path(n).suffix.lower() in IMAGE_EXTENSIONS for n in names):
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        found = f"; {len(names)} file(s) in formats it cannot read" if names else ""
        raise LightsfmError(f"{image_dir}: no images found (looked for {exts}{found})")
    return names


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image or an unsupported format") from None
    except OSError as e:
        raise ImageError(path, f"cannot be read ({e})") from None
    return im


def _exif_focal_px(exif: Image.Exif, width: int, height: int) -> tuple[float | None, float | None]:
    sub = exif.get_ifd(_EXIF_IFD)
    focal_mm = sub.get(_TAG_FOCAL)
    focal_mm = float(focal_mm) if focal_mm else None
    f35 = sub.get(_TAG_FOCAL35)
    if f35:
        # 35 mm equivalent: the long side of the frame spans 36 mm.
        return focal_mm, float(f35) / 36.0 * max(width, height)
    res, unit, exif_w = sub.get(_TAG_FPXRES), sub.get(_TAG_FPRESUNIT), sub.get(_TAG_EXIFWIDTH)
    if focal_mm and res and unit in (2, 3, 4, 5):
        mm_per_unit = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}[unit]
        px = focal_mm * float(res) / mm_per_unit
        if exif_w:
            px *= max(width, height) / float(exif_w)
        return focal_mm, px
    return focal_mm, None


def read_info(image_dir: Path, name: str) -> ImageInfo:
    """Size, camera identity and focal prior of one image; raises ImageError when unusable."""
    path = Path(image_dir) / name
    if path.suffix.lower() in UNSUPPORTED_EXTENSIONS:
        raise ImageError(path, f"unsupported format ({path.suffix}); convert it to JPEG or PNG")
    im = _open(path)
    with im:
        w, h = im.size
        exif = im.getexif()
        if exif.get(_TAG_ORIENTATION, 1) in (5, 6, 7, 8):
            w, h = h, w
        if min(w, h) < MIN_SIDE:
            raise ImageError(path, f"too small ({w}x{h} px, need at least {MIN_SIDE} px a side)")
        focal_mm, focal_px = _exif_focal_px(exif, w, h)
        make = str(exif.get(_TAG_MAKE, "")).strip("\x00 ")
        model = str(exif.get(_TAG_MODEL, "")).strip("\x00 ")
    return ImageInfo(name, w, h, make, model, focal_mm, focal_px)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float32)
        hi = 65535.0 if im.mode.startswith("I;16") or a.max() > 255 else 255.0
        a = np.clip(a / hi * 255.0, 0, 255).astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        # Transparent pixels become black rather than whatever colour they hide.
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        im = Image.alpha_composite(bg, rgba)
    return np.asarray(im.convert("RGB"))


def load_image(path: Path, max_size: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Upright RGB uint8 image, downscaled so its long side is at most ``max_size``.

    Returns the image and the (width, height) of the upright original.
    """
    im = _open(path)
    with im:
        try:
            orientation = im.getexif().get(_TAG_ORIENTATION, 1)
            w0, h0 = im.size
            if max_size and im.format == "JPEG" and max(w0, h0) > 2 * max_size:
                im.draft("RGB", (w0 * max_size // max(w0, h0), h0 * max_size // max(w0, h0)))
            im.load()
            if orientation != 1:
                im = ImageOps.exif_transpose(im)
            rgb = _to_rgb8(im)
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError(path, f"cannot be decoded ({e})") from None
    full_size = (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)
    h, w = rgb.shape[:2]
    if max_size and max(h, w) > max_size:
        s = max_size / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    return rgb, full_size


def read_infos(image_dir: Path, names: list[str]) -> tuple[list[ImageInfo], dict[str, str]]:
    """Infos of the usable images and, for the others, the reason each was skipped.

    A file identical to an earlier one is skipped: two cameras at one pose break mapping.
    """
    infos, skipped = [], {}
    seen: dict[str, str] = {}
    for name in names:
        try:
            info = read_info(image_dir, name)
            digest = hashlib.sha1((Path(image_dir) / name).read_bytes()).hexdigest()
            if digest in seen:
                raise ImageError(Path(image_dir) / name, f"duplicate of {seen[digest]}")
            seen[digest] = name
            infos.append(info)
        except ImageError as e:
            skipped[name] = e.reason
            logger.warning("skipping %s", e)
    return infos, skipped
