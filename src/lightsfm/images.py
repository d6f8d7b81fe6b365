"""Reading photos: listing a folder, EXIF orientation and focal length, resizing.

All coordinates in lightsfm are in the *upright* image (EXIF orientation applied) at its
full resolution; stages that work on a resized copy scale back before writing.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError, LightsfmError, printable

logger = logging.getLogger(__name__)

# A video frame as lightsfm.video writes it: <clip stem>_<frame index, 6 digits or more>.<ext>
_FRAME_NAME = re.compile(r"(?P<clip>.*)_(?P<index>\d{6,})\.[^./]+")


def frame_of(name: str) -> tuple[str, int] | None:
    """(clip, frame index) of an image named as a video frame, else None."""
    m = _FRAME_NAME.fullmatch(name)
    return (m["clip"], int(m["index"])) if m else None


IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".gif"}
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
    ".psd",
    ".svg",
}
MIN_SIDE = 64  # below this no detector finds usable keypoints
MAX_ASPECT = 16  # a thinner strip resized to the feature size is a few pixels wide
# Declared sizes above this are refused before any pixel is decoded: 250 Mpx covers the
# largest phone sensors (200 Mpx); a header claiming 60000×60000 is a decompression bomb
# (10.8 GB as RGB). JPEGs are decoded at reduced size (draft), other formats at full size.
MAX_PIXELS = 250_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# What PIL's plugins raise on hostile files besides OSError: struct.error, IndexError,
# SyntaxError, ZeroDivisionError, … — any of them means this one photo cannot be used.
_DECODE_ERRORS = (Exception,)
_REDUCIBLE = {"RGB", "RGBA", "L", "LA", "CMYK", "I", "F"}  # modes Image.reduce averages correctly
# Characters that would break the line- and tab-separated files the stages share (pair lists).
_BAD_NAME_CHARS = frozenset("\t\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029") | frozenset(map(chr, range(32)))

_EXIF_IFD = 0x8769
_TAG_ORIENTATION = 0x0112
_TAG_MAKE, _TAG_MODEL = 0x010F, 0x0110
_TAG_FOCAL, _TAG_FOCAL35 = 0x920A, 0xA405
_TAG_FPXRES, _TAG_FPRESUNIT, _TAG_EXIFWIDTH, _TAG_EXIFHEIGHT = 0xA20E, 0xA210, 0xA002, 0xA003
# How to store an image to undo each EXIF orientation (PIL's exif_transpose table; applied
# here from the same EXIF value read_info used, so sizes always agree).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


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
    cropped: bool = False  # its shape differs from the frame EXIF says the camera took

    @property
    def camera_key(self) -> tuple:
        """Images with the same key are assumed to come from the same camera. A cropped photo
        is a camera of its own: two crops of one size rarely share a principal point."""
        return (self.width, self.height, self.make, self.model, self.focal_mm, self.name if self.cropped else "")


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
    """Opens a photo (header only) after checking it is a regular file of sane declared size."""
    try:
        st = os.stat(path)  # follows links: a loop or a dangling link fails here
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except OSError as e:
        raise ImageError(path, f"cannot be read ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise ImageError(path, "not a regular file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns on odd headers; we report errors, not noise
            im = Image.open(path)
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except PermissionError:
        raise ImageError(path, "permission denied") from None
    except Image.DecompressionBombError:
        raise ImageError(path, f"declared size too large (over {MAX_PIXELS // 1_000_000} Mpx)") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image or an unsupported format") from None
    except OSError as e:
        raise ImageError(path, f"cannot be read ({e})") from None
    except _DECODE_ERRORS as e:
        raise ImageError(path, f"cannot be read ({_why(e)})") from None
    w, h = im.size
    if w * h > MAX_PIXELS or w <= 0 or h <= 0:
        im.close()
        raise ImageError(path, f"declared size {w}x{h} px is too large (over {MAX_PIXELS // 1_000_000} Mpx)")
    return im


def _why(e: BaseException) -> str:
    """One line about an exception from a decoder."""
    text = " ".join(str(e).split())
    return text[:200] if text else type(e).__name__


def _orientation(exif: Image.Exif) -> int:
    """EXIF orientation 1–8; anything else (0, 9, negative, a string) means as stored."""
    v = exif.get(_TAG_ORIENTATION, 1)
    return v if isinstance(v, int) and 1 <= v <= 8 else 1


def _finite_positive(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _text(v: object) -> str:
    """An EXIF string as printable text of sane length (make/model may hold any bytes)."""
    if isinstance(v, bytes):
        v = v.decode("latin-1")
    return printable(str(v).strip("\x00 "))[:64]


def _exif_focal_px(exif: Image.Exif, width: int, height: int) -> tuple[float | None, float | None, bool]:
    """Focal length in mm and, where EXIF allows, in pixels, and whether the photo was
    cropped; implausible values (0, negative, NaN, a focal of 1000 image widths) are
    ignored: a wrong prior is worse than none."""
    sub = exif.get_ifd(_EXIF_IFD)
    focal_mm = _finite_positive(sub.get(_TAG_FOCAL))
    if focal_mm is not None and focal_mm > 10_000:
        focal_mm = None
    side = max(width, height)
    px = None
    f35 = _finite_positive(sub.get(_TAG_FOCAL35))
    res = _finite_positive(sub.get(_TAG_FPXRES))
    unit, exif_w = sub.get(_TAG_FPRESUNIT), _finite_positive(sub.get(_TAG_EXIFWIDTH))
    if f35:
        # 35 mm equivalent: the long side of the frame spans 36 mm.
        px = f35 / 36.0 * side
    elif focal_mm and res and unit in (2, 3, 4, 5):
        mm_per_unit = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}[unit]
        px = focal_mm * res / mm_per_unit
        if exif_w:
            px *= side / exif_w
    if px is not None and not 0.05 * side <= px <= 100 * side:
        px = None
    exif_h = _finite_positive(sub.get(_TAG_EXIFHEIGHT))
    cropped = False
    if exif_w and exif_h:
        # The camera wrote the size of the frame it took: a photo whose shape no longer
        # matches was cropped, and its EXIF focal (of the whole frame) no longer fits it.
        shape, exif_shape = max(width, height) / min(width, height), max(exif_w, exif_h) / min(exif_w, exif_h)
        cropped = abs(shape / exif_shape - 1) > 0.01
    return focal_mm, None if cropped else px, cropped


def _decode_small(im: Image.Image) -> None:
    """Decodes the whole file once, JPEGs at 1/8 size (cheap), so that a truncated or corrupt
    photo is skipped when the folder is read instead of failing a later stage."""
    w, h = im.size
    if im.format == "JPEG":
        im.draft(None, (max(1, w // 8), max(1, h // 8)))
    im.load()


def check_name(image_dir: Path, name: str) -> None:
    """Raises ImageError for names the stages' files cannot carry (they are line-based)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ImageError(Path(image_dir) / printable(name), "file name is not valid UTF-8; rename it") from None
    if any(c in _BAD_NAME_CHARS for c in name):
        raise ImageError(
            Path(image_dir) / printable(name), "file name contains a tab, line break or control character; rename it"
        )


def read_info(image_dir: Path, name: str) -> ImageInfo:
    """Size, camera identity and focal prior of one image; raises ImageError when unusable.

    The whole file is decoded once (at reduced size), so a photo that passes is one the
    later stages can read.
    """
    check_name(image_dir, name)
    path = Path(image_dir) / name
    if path.suffix.lower() in UNSUPPORTED_EXTENSIONS:
        raise ImageError(path, f"unsupported format ({path.suffix}); convert it to JPEG or PNG")
    im = _open(path)
    with im, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w, h = im.size
        try:
            exif = im.getexif()  # (PNG: decodes the image)
            _decode_small(im)
        except MemoryError:
            raise ImageError(path, "cannot be decoded (out of memory)") from None
        except _DECODE_ERRORS as e:
            raise ImageError(path, f"cannot be decoded ({_why(e)})") from None
        try:
            orientation = _orientation(exif)
            focal_mm, focal_px, cropped = _exif_focal_px(exif, *((h, w) if orientation in (5, 6, 7, 8) else (w, h)))
            make, model = _text(exif.get(_TAG_MAKE, "")), _text(exif.get(_TAG_MODEL, ""))
        except _DECODE_ERRORS as e:  # broken EXIF: the pixels are still good
            logger.debug("%s: EXIF ignored (%s)", path, _why(e))
            orientation, focal_mm, focal_px, make, model, cropped = 1, None, None, "", "", False
    if orientation in (5, 6, 7, 8):
        w, h = h, w
    if min(w, h) < MIN_SIDE:
        raise ImageError(path, f"too small ({w}x{h} px, need at least {MIN_SIDE} px a side)")
    if max(w, h) > MAX_ASPECT * min(w, h):
        raise ImageError(path, f"too thin ({w}x{h} px, at most {MAX_ASPECT}:1)")
    return ImageInfo(name, w, h, make, model, focal_mm, focal_px, cropped)


def _to_rgb8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.nan_to_num(np.asarray(im, dtype=np.float32), posinf=0.0, neginf=0.0)
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

    Returns the image and the (width, height) of the upright original. Raises ImageError,
    and nothing else, when the file cannot be used (it may have changed since it was read).
    """
    im = _open(path)
    with im, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            orientation = _orientation(im.getexif())
            w0, h0 = im.size
            if max_size and im.format == "JPEG" and max(w0, h0) > 2 * max_size:
                # libjpeg decodes at 1/2, 1/4 or 1/8 directly: a 12000×9000 photo never
                # exists at full size in memory
                im.draft("RGB", (w0 * max_size // max(w0, h0), h0 * max_size // max(w0, h0)))
            im.load()
            if max_size and max(im.size) >= 2 * max_size and im.mode in _REDUCIBLE:
                # other formats decode at full size: shrink by an integer factor (box
                # filter) before any converted copy is made, then resize exactly below
                im = im.reduce(max(im.size) // max_size)
            if orientation in _TRANSPOSE:
                im = im.transpose(_TRANSPOSE[orientation])
            rgb = _to_rgb8(im)
        except MemoryError:
            raise ImageError(path, "cannot be decoded (out of memory)") from None
        except _DECODE_ERRORS as e:
            raise ImageError(path, f"cannot be decoded ({_why(e)})") from None
    full_size = (h0, w0) if orientation in (5, 6, 7, 8) else (w0, h0)
    h, w = rgb.shape[:2]
    if max_size and max(h, w) > max_size:
        # sized from the original, not from a draft or reduced copy: the same size whatever
        # path the decoding took
        s = max_size / max(full_size)
        size = (max(1, round(full_size[0] * s)), max(1, round(full_size[1] * s)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    return rgb, full_size


def read_infos(
    image_dir: Path, names: list[str], duplicates: dict[str, str] | None = None
) -> tuple[list[ImageInfo], dict[str, str]]:
    """Infos of the usable images and, for the others, the reason each was skipped.

    A file identical to an earlier one is skipped: two cameras at one pose break mapping.
    ``duplicates``, when given, is filled with each such file and the one it repeats (it
    was taken at the same pose: it gets that pose in the outputs).
    """
    infos, skipped = [], {}
    seen: dict[str, str] = {}
    for name in names:
        try:
            info = read_info(image_dir, name)
            try:
                with open(Path(image_dir) / name, "rb") as f:
                    digest = hashlib.file_digest(f, "sha1").hexdigest()
            except OSError as e:  # vanished or changed since it was decoded
                raise ImageError(Path(image_dir) / name, f"cannot be read ({e.strerror or e})") from None
            if digest in seen:
                if duplicates is not None:
                    duplicates[name] = seen[digest]
                raise ImageError(Path(image_dir) / name, f"duplicate of {seen[digest]}")
            seen[digest] = name
            infos.append(info)
        except ImageError as e:
            skipped[printable(name)] = e.reason
            logger.warning("skipping %s", e)
    return infos, skipped
