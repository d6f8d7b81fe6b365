"""GPS: positions from EXIF, WGS84 geodetic ↔ local east-north-up metres.

Read by pairing (photos near each other), verification (pose priors for the mapper) and
georeferencing (lightsfm.georef). Latitude and longitude in degrees (north and east
positive); EXIF altitude is taken as the height above the ellipsoid (see lightsfm.georef).
"""

from __future__ import annotations

import logging
import math
import os
import struct
import warnings
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, TiffImagePlugin

from .errors import LightsfmError, printable

logger = logging.getLogger(__name__)

# WGS84 ellipsoid (NIMA TR8350.2): semi-major axis and flattening are the defining constants.
WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563
WGS84_B = WGS84_A * (1 - WGS84_F)
WGS84_E2 = WGS84_F * (2 - WGS84_F)  # first eccentricity squared

GPS_IFD = 0x8825
_LAT_REF, _LAT, _LON_REF, _LON, _ALT_REF, _ALT = 1, 2, 3, 4, 5, 6
_STATUS, _DOP, _H_ERROR, _VERSION = 9, 11, 31, 0
# A DOP is unitless: times the range error of a consumer receiver (~5 m) it is an accuracy.
DOP_TO_METRES = 5.0

# --- reading and writing EXIF GPS ---------------------------------------------------------


@dataclass(frozen=True)
class GpsFix:
    """Where EXIF says a photo was taken."""

    latitude: float  # degrees, north positive
    longitude: float  # degrees, east positive
    altitude: float | None  # metres; None when EXIF has none
    accuracy: float | None = None  # metres, one sigma: GPSHPositioningError, or GPSDOP × 5 m


def _number(v: object) -> float | None:
    """A finite float from an EXIF value (IFDRational with denominator 0 is NaN)."""
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return f if math.isfinite(f) else None


def _degrees(v: object) -> float | None:
    """Degrees from EXIF's (degrees, minutes, seconds) rationals (or a single number)."""
    parts = v if isinstance(v, tuple | list) else (v,)
    if not 1 <= len(parts) <= 3:
        return None
    values = [_number(p) for p in parts]
    if any(x is None or x < 0 for x in values):
        return None
    return sum(x / 60**i for i, x in enumerate(values))  # type: ignore[operator]


def _ref(v: object) -> str:
    if isinstance(v, bytes):
        v = v.decode("latin-1", "replace")
    return str(v).strip("\x00 ").upper()[:1] if v is not None else ""


def parse_gps(gps: dict[int, Any]) -> GpsFix | None:
    """A fix from the tags of an EXIF GPS IFD, or None when there is no usable position.

    A missing N/S or E/W reference counts as N or E; 0°, 0° (what receivers without a fix
    write) and a void status ('V') count as no position.
    """
    if _ref(gps.get(_STATUS)) == "V":
        return None
    lat, lon = _degrees(gps.get(_LAT)), _degrees(gps.get(_LON))
    if lat is None or lon is None or lat > 90 or lon > 180 or (lat == 0 and lon == 0):
        return None
    lat *= -1 if _ref(gps.get(_LAT_REF)) == "S" else 1
    lon *= -1 if _ref(gps.get(_LON_REF)) == "W" else 1
    alt = _number(gps.get(_ALT))
    ref = gps.get(_ALT_REF)
    if alt is not None and (ref == 1 or ref == b"\x01"):
        alt = -alt  # below sea level
    if alt is not None and not -1e4 < alt < 1e5:
        alt = None  # no photo is taken 10 km under the sea or in orbit
    accuracy = _number(gps.get(_H_ERROR))
    if accuracy is None or accuracy <= 0:
        dop = _number(gps.get(_DOP))
        accuracy = dop * DOP_TO_METRES if dop is not None and dop > 0 else None
    return GpsFix(lat, lon, alt, accuracy)


def read_gps(path: Path) -> GpsFix | None:
    """The GPS position EXIF gives for the photo at ``path``; None when it has none (or
    the file cannot be read: the pipeline already reported such photos)."""
    try:
        with warnings.catch_warnings(), Image.open(path) as im:
            warnings.simplefilter("ignore")
            if im.format == "PNG" and "exif" not in im.info and not _png_has_exif(path):
                return None  # (PIL decodes a whole PNG to look for EXIF after its pixels)
            return parse_gps(dict(im.getexif().get_ifd(GPS_IFD)))
    except Exception as e:  # any decoder error means: no position from this file
        logger.debug("%s: no GPS read (%s)", path, e)
        return None


def _png_has_exif(path: Path) -> bool:
    """Does the PNG at ``path`` hold an eXIf chunk? Reads the chunk headers only."""
    with open(path, "rb") as f:
        f.seek(8)  # the signature
        while len(head := f.read(8)) == 8:
            length, kind = struct.unpack(">I4s", head)
            if kind == b"eXIf":
                return True
            if kind == b"IEND":
                break
            f.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
    return False


def read_gps_folder(image_dir: Path, names: list[str]) -> dict[str, GpsFix]:
    """GPS of each photo of ``names`` (under ``image_dir``) that has one."""
    out = {}
    for name in names:
        fix = read_gps(Path(image_dir) / name)
        if fix is not None:
            out[name] = fix
    return out


def _rational(x: float, denominator: int) -> TiffImagePlugin.IFDRational:
    return TiffImagePlugin.IFDRational(Fraction(round(x * denominator), denominator))


def _dms(degrees: float) -> tuple:
    d = abs(degrees)
    whole, minutes = int(d), int((d - int(d)) * 60)
    seconds = (d - whole - minutes / 60) * 3600
    return (_rational(whole, 1), _rational(minutes, 1), _rational(seconds, 10**6))  # 1e-6″ ≈ 0.03 mm


def gps_tags(fix: GpsFix) -> dict[int, Any]:
    """The EXIF GPS IFD of ``fix`` (EXIF 2.32 tags, version 2.3)."""
    tags: dict[int, Any] = {
        _VERSION: b"\x02\x03\x00\x00",
        _LAT_REF: "N" if fix.latitude >= 0 else "S",
        _LAT: _dms(fix.latitude),
        _LON_REF: "E" if fix.longitude >= 0 else "W",
        _LON: _dms(fix.longitude),
    }
    if fix.altitude is not None:
        tags[_ALT_REF] = b"\x00" if fix.altitude >= 0 else b"\x01"
        tags[_ALT] = _rational(abs(fix.altitude), 1000)
    if fix.accuracy is not None:
        tags[_H_ERROR] = _rational(fix.accuracy, 1000)
    return tags


def write_gps(src: Path, dst: Path, fix: GpsFix) -> None:
    """Copies the JPEG ``src`` to ``dst`` with ``fix`` as its EXIF GPS.

    The compressed image data is copied byte for byte (no re-encoding): only the EXIF
    segment is replaced, keeping its other tags (not its thumbnail, which Pillow drops).
    """
    src, dst = Path(src), Path(dst)
    data = src.read_bytes()
    if data[:2] != b"\xff\xd8":
        raise LightsfmError(f"{printable(str(src))}: not a JPEG; GPS can only be written into JPEGs")
    with Image.open(src) as im:
        exif = im.getexif()
    exif[GPS_IFD] = gps_tags(fix)
    payload = exif.tobytes()  # starts with b"Exif\0\0"
    if len(payload) + 2 > 0xFFFF:
        raise LightsfmError(f"{printable(str(src))}: EXIF too large to rewrite")
    app1 = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    head, pos, insert_at = [data[:2]], 2, 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xDA or not 0xE0 <= marker <= 0xEF:  # image data or tables: the APPn run ended
            break
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        segment = data[pos:end]
        if not (marker == 0xE1 and segment[4:10] == b"Exif\x00\x00"):  # the old EXIF goes
            head.append(segment)
            if marker == 0xE0 and len(head) == 2:
                insert_at = 3  # after a leading JFIF segment, as JFIF readers expect
        pos = end
    head.insert(insert_at - 1, app1)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(b"".join(head) + data[pos:])
    os.replace(tmp, dst)


# --- WGS84 geodetic, ECEF and local east-north-up -----------------------------------------


def geodetic_to_ecef(lla: np.ndarray) -> np.ndarray:
    """Earth-centred, earth-fixed metres (N, 3) of WGS84 latitude, longitude (degrees) and
    ellipsoidal height (metres), rows of ``lla``."""
    lla = np.atleast_2d(np.asarray(lla, dtype=np.float64))
    lat, lon, h = np.radians(lla[:, 0]), np.radians(lla[:, 1]), lla[:, 2]
    n = WGS84_A / np.sqrt(1 - WGS84_E2 * np.sin(lat) ** 2)  # prime vertical radius of curvature
    return np.stack(
        [
            (n + h) * np.cos(lat) * np.cos(lon),
            (n + h) * np.cos(lat) * np.sin(lon),
            (n * (1 - WGS84_E2) + h) * np.sin(lat),
        ],
        axis=1,
    )


def ecef_to_geodetic(xyz: np.ndarray) -> np.ndarray:
    """WGS84 latitude, longitude (degrees) and ellipsoidal height (metres) of ECEF points.

    Latitude by fixed-point iteration run to convergence (below 1e-14 rad, ~0.1 nm on the
    ground; 3-4 rounds near the Earth's surface); the height formula holds at the poles too.
    """
    xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
    x, y, z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    lon = np.arctan2(y, x)
    p = np.hypot(x, y)
    lat = np.arctan2(z, p * (1 - WGS84_E2))
    for _ in range(20):
        sin = np.sin(lat)
        n = WGS84_A / np.sqrt(1 - WGS84_E2 * sin**2)
        h = p * np.cos(lat) + z * sin - WGS84_A * np.sqrt(1 - WGS84_E2 * sin**2)
        new = np.arctan2(z, p * (1 - WGS84_E2 * n / (n + h)))
        done = np.max(np.abs(new - lat), initial=0.0) < 1e-14
        lat = new
        if done:
            break
    sin = np.sin(lat)
    h = p * np.cos(lat) + z * sin - WGS84_A * np.sqrt(1 - WGS84_E2 * sin**2)
    return np.stack([np.degrees(lat), np.degrees(lon), h], axis=1)


def enu_rotation(latitude: float, longitude: float) -> np.ndarray:
    """Rows: the east, north and up unit vectors (ECEF) at a geodetic latitude/longitude."""
    lat, lon = math.radians(latitude), math.radians(longitude)
    return np.array(
        [
            [-math.sin(lon), math.cos(lon), 0.0],
            [-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)],
            [math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)],
        ]
    )


def geodetic_to_enu(lla: np.ndarray, origin: tuple[float, float, float]) -> np.ndarray:
    """East, north, up metres (N, 3) of geodetic points about ``origin`` (lat, lon, height)."""
    o = geodetic_to_ecef(np.asarray(origin, dtype=np.float64))[0]
    return (geodetic_to_ecef(lla) - o) @ enu_rotation(origin[0], origin[1]).T


def enu_to_geodetic(enu: np.ndarray, origin: tuple[float, float, float]) -> np.ndarray:
    """Latitude, longitude (degrees) and height (metres) of east-north-up points about ``origin``."""
    o = geodetic_to_ecef(np.asarray(origin, dtype=np.float64))[0]
    enu = np.atleast_2d(np.asarray(enu, dtype=np.float64))
    return ecef_to_geodetic(enu @ enu_rotation(origin[0], origin[1]) + o)


# --- the local frame ---------------------------------------------------------------------


def origin_of(fixes: dict[str, GpsFix], how: str = "mean") -> tuple[float, float, float]:
    """The ENU origin: the first photo's (by name) or the mean position of the photos."""
    if how not in ("mean", "first"):
        raise LightsfmError(f"unknown origin {how!r}; mean or first")
    names = sorted(fixes)
    alts = [f.altitude for f in fixes.values() if f.altitude is not None]
    if how == "first":
        f = fixes[names[0]]
        return (f.latitude, f.longitude, f.altitude if f.altitude is not None else float(np.median(alts or [0.0])))
    # the mean in ECEF, put back on the ellipsoid: well defined across the date line too
    lla = [[f.latitude, f.longitude, f.altitude if f.altitude is not None else 0.0] for f in fixes.values()]
    lat, lon, _ = ecef_to_geodetic(geodetic_to_ecef(np.array(lla)).mean(axis=0))[0]
    return (float(lat), float(lon), float(np.mean(alts)) if alts else 0.0)


DEFAULT_ACCURACY_M = 5.0  # a phone's GPS when EXIF states none
MIN_SPREAD = 5.0  # informative GPS: the photos' median distance from their middle, in accuracies


def enu_positions(fixes: dict[str, GpsFix]) -> tuple[list[str], np.ndarray]:
    """Names (sorted) and east-north-up metres (N, 3) about the photos' mean position; a
    photo without altitude is put at the others' mean height."""
    names = sorted(fixes)
    o = origin_of(fixes)
    lla = [[f.latitude, f.longitude, f.altitude if f.altitude is not None else o[2]] for f in (fixes[n] for n in names)]
    return names, geodetic_to_enu(np.array(lla), o)


def accuracy_m(fix: GpsFix) -> float:
    """One-sigma position error: EXIF's, else a phone's."""
    return fix.accuracy if fix.accuracy else DEFAULT_ACCURACY_M


def informative(fixes: dict[str, GpsFix]) -> bool:
    """Whether GPS can tell these photos apart: at least 3, spread over at least MIN_SPREAD
    times their (median) accuracy. A capture walked around an object within a few metres
    is not: its GPS is noise, for pairing and for the mapper alike."""
    if len(fixes) < 3:
        return False
    _, xyz = enu_positions(fixes)
    spread = float(np.median(np.linalg.norm(xyz - np.median(xyz, axis=0), axis=1)))
    return spread >= MIN_SPREAD * float(np.median([accuracy_m(f) for f in fixes.values()]))
