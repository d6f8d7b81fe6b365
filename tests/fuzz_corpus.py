"""A seeded corpus of hostile photo files (issue 16), built from a few real photos.

``build(root)`` writes it and returns, for every file, its mutation kind, its format and
what reading must make of it: "used", "skipped" or "either" (some cuts and bit flips leave
a decodable file). Whatever the expectation, a file must end used or skipped with a
one-line reason, never with a traceback. Used by tests/test_fuzz.py and
benchmarks/fuzz_table.py; about 250 files, built in a second or two.
"""

from __future__ import annotations

import io
import os
import random
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, TiffImagePlugin

# format → (PIL format name, extension, save options)
FORMATS: dict[str, tuple[str, str, dict]] = {
    "jpeg": ("JPEG", ".jpg", {"quality": 90}),
    "png": ("PNG", ".png", {}),
    "tiff": ("TIFF", ".tif", {}),
    "webp": ("WEBP", ".webp", {"quality": 80}),
    "bmp": ("BMP", ".bmp", {}),
    "gif": ("GIF", ".gif", {}),
}
SIZE = (160, 120)  # small: the corpus is about reading, not matching
TRUNCATE_AT = [0.0, 0.01, 0.05, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.9, 0.99]  # of the file, plus 8 bytes and -1 byte
BOMB = 60000  # declared width and height: 3.6 Gpx


@dataclass(frozen=True)
class Case:
    kind: str
    fmt: str
    expect: str  # used, skipped or either


def encode(im: Image.Image, fmt: str, **extra) -> bytes:
    name, _, opts = FORMATS[fmt]
    buf = io.BytesIO()
    im.save(buf, name, **{**opts, **extra})
    return buf.getvalue()


def base_photos(sources: list[Path], n: int = 3) -> list[Image.Image]:
    """The first ``n`` photos, downscaled to SIZE (RGB)."""
    return [Image.open(p).convert("RGB").resize(SIZE, Image.Resampling.BILINEAR) for p in sorted(sources)[:n]]


# --- declared sizes of 60000×60000 written into real headers --------------------------------


def _bomb_png(data: bytes) -> bytes:
    b = bytearray(data)
    b[16:24] = struct.pack(">II", BOMB, BOMB)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


def _bomb_bmp(data: bytes) -> bytes:
    b = bytearray(data)
    b[18:26] = struct.pack("<ii", BOMB, BOMB)
    return bytes(b)


def _bomb_gif(data: bytes) -> bytes:
    b = bytearray(data)
    b[6:10] = struct.pack("<HH", BOMB, BOMB)
    pos = 13 + (3 * 2 ** ((b[10] & 7) + 1) if b[10] & 0x80 else 0)
    while b[pos] == 0x21:  # extension blocks before the image descriptor
        pos += 2
        while b[pos]:
            pos += b[pos] + 1
        pos += 1
    assert b[pos] == 0x2C
    b[pos + 5 : pos + 9] = struct.pack("<HH", BOMB, BOMB)
    return bytes(b)


def _bomb_jpeg(data: bytes) -> bytes:
    b = bytearray(data)
    i = 2
    while b[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", b[i + 2 : i + 4])[0]
    b[i + 5 : i + 9] = struct.pack(">HH", BOMB, BOMB)
    return bytes(b)


def _bomb_tiff(data: bytes) -> bytes:
    b = bytearray(data)
    assert b[:2] == b"II"
    ifd = struct.unpack("<I", b[4:8])[0]
    for k in range(struct.unpack("<H", b[ifd : ifd + 2])[0]):
        e = ifd + 2 + 12 * k
        if struct.unpack("<H", b[e : e + 2])[0] in (256, 257):  # ImageWidth, ImageLength as LONG
            b[e + 2 : e + 12] = struct.pack("<HII", 4, 1, BOMB)
    return bytes(b)


def _bomb_webp(data: bytes) -> bytes:
    b = bytearray(data)
    i = b.index(b"VP8X")
    b[i + 12 : i + 18] = (BOMB - 1).to_bytes(3, "little") * 2
    return bytes(b)


BOMBS = {
    "png": _bomb_png,
    "bmp": _bomb_bmp,
    "gif": _bomb_gif,
    "jpeg": _bomb_jpeg,
    "tiff": _bomb_tiff,
    "webp": _bomb_webp,
}


def _flip(data: bytes, rng: random.Random, lo: int, hi: int, bits: int) -> bytes:
    b = bytearray(data)
    for _ in range(bits):
        i = rng.randrange(lo, max(lo + 1, hi))
        b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _exif_cases(im: Image.Image) -> dict[str, Image.Exif]:
    """EXIF whose orientation, focal length and make are 0, negative, NaN, huge or garbage."""
    R = TiffImagePlugin.IFDRational
    values = {
        "orientation-0": {0x0112: 0},
        "orientation-9": {0x0112: 9},
        "orientation-negative": {0x0112: -3},
        "orientation-huge": {0x0112: 65535},
        "focal-0": {"sub": {0x920A: R(0, 1)}},
        "focal-nan": {"sub": {0x920A: R(0, 0)}},
        "focal-negative": {"sub": {0x920A: R(-35, 1)}},
        "focal-huge": {"sub": {0x920A: R(10**9, 1)}},
        "focal35-0": {"sub": {0xA405: 0}},
        "focal35-huge": {"sub": {0xA405: 65535}},
        "focal-plane-res-0": {"sub": {0x920A: R(5, 1), 0xA20E: R(0, 0), 0xA210: 2}},
        "make-empty": {0x010F: ""},
        "make-huge": {0x010F: "A" * 5000, 0x0110: "B" * 3000},
        "make-control": {0x010F: "Ca\nnon\x00\x07", 0x0110: "\x1b[31mred"},
    }
    out = {}
    for name, tags in values.items():
        exif = Image.Exif()
        for k, v in tags.items():
            if k == "sub":
                exif.get_ifd(0x8769).update(v)
            else:
                exif[k] = v
        out[name] = exif
    return out


def build(root: Path, sources: list[Path], seed: int = 0) -> dict[str, Case]:
    """Writes the corpus into ``root`` (created) and returns name → Case.

    Names whose bytes are not UTF-8 are returned as Python decodes them from the file
    system (surrogate escapes), as ``list_images`` will list them.
    """
    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    photos = base_photos(sources)
    cases: dict[str, Case] = {}

    def put(name: str, data: bytes, kind: str, fmt: str, expect: str) -> None:
        (root / name).write_bytes(data)
        cases[name] = Case(kind, fmt, expect)

    n = 0
    for fmt, (_, ext, _) in FORMATS.items():
        good = encode(photos[n % len(photos)], fmt)
        n += 1
        put(f"valid-{fmt}{ext}", good, "valid", fmt, "used")
        # truncations: nothing, 8 bytes, fractions, all but the last byte
        cuts = sorted({0, 8, *(int(len(good) * f) for f in TRUNCATE_AT), len(good) - 1})
        for c in cuts:
            # the last bytes of some formats are a trailer a decoder does not need
            expect = "skipped" if c < 0.9 * len(good) else "either"
            put(f"cut{c:06d}-{fmt}{ext}", good[:c], "truncated", fmt, expect)
        for k in range(3):  # bit flips in the header and in the body
            head = _flip(good, rng, 0, min(64, len(good)), 4)
            put(f"flip-head{k}-{fmt}{ext}", head, "bitflip-header", fmt, "either")
            body = _flip(good, rng, len(good) // 4, len(good), 16)
            put(f"flip-body{k}-{fmt}{ext}", body, "bitflip-body", fmt, "either")
        # the same photo under every other format's extension (content decides)
        others = [e for f, (_, e, _) in FORMATS.items() if f != fmt]
        put(
            f"wrong-ext-{fmt}{rng.choice(others)}", encode(photos[n % len(photos)], fmt), "wrong-extension", fmt, "used"
        )
        put(f"text-as{ext}", b"this is not a photo\n" * 10, "not-an-image", fmt, "skipped")
        put(f"random-as{ext}", rng.randbytes(5000), "not-an-image", fmt, "skipped")
        put(f"empty{ext}", b"", "zero-bytes", fmt, "skipped")
        put(f"zeros{ext}", bytes(4096), "zero-bytes", fmt, "skipped")
        exif = Image.Exif()
        exif[0x010F] = "x"
        extra = {"exif": exif} if fmt == "webp" else {}  # EXIF: WebP's extended header (VP8X) holds the size
        put(f"bomb-{fmt}{ext}", BOMBS[fmt](encode(photos[0], fmt, **extra)), "bomb-60000x60000", fmt, "skipped")
        put(f"tiny-{fmt}{ext}", encode(photos[0].resize((40, 30)), fmt), "too-small", fmt, "skipped")
        put(f"thin-{fmt}{ext}", encode(photos[0].resize((2000, 64)), fmt), "too-thin", fmt, "skipped")

    p0 = photos[0]
    # pixel formats
    arr16 = (np.asarray(p0.convert("L")).astype(np.uint16) * 257).astype(np.uint16)
    put("deep16.png", encode(Image.fromarray(arr16), "png"), "16-bit", "png", "used")
    put("deep16.tif", encode(Image.fromarray(arr16), "tiff"), "16-bit", "tiff", "used")
    put("cmyk.jpg", encode(p0.convert("CMYK"), "jpeg"), "cmyk", "jpeg", "used")
    put("cmyk.tif", encode(p0.convert("CMYK"), "tiff"), "cmyk", "tiff", "used")
    for fmt in ("png", "gif", "bmp", "tiff"):
        put(f"palette{FORMATS[fmt][1]}", encode(p0.convert("P"), fmt), "palette", fmt, "used")
    for fmt in ("png", "webp", "tiff"):
        rgba = p0.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(SIZE))
        put(f"alpha{FORMATS[fmt][1]}", encode(rgba, fmt), "alpha", fmt, "used")
    pt = p0.convert("P")
    put("alpha.gif", encode(pt, "gif", transparency=0), "alpha", "gif", "used")
    put("bilevel.png", encode(p0.convert("1"), "png"), "bilevel", "png", "used")
    put("gray-alpha.png", encode(p0.convert("LA"), "png"), "alpha", "png", "used")
    f32 = np.asarray(p0.convert("L"), np.float32)
    f32[:4] = np.nan
    f32[4:8] = np.inf
    put("float-nan.tif", encode(Image.fromarray(f32), "tiff"), "float", "tiff", "used")
    put(
        "int32.tif",
        encode(Image.fromarray(np.asarray(p0.convert("L"), np.int32) * 1000), "tiff"),
        "32-bit",
        "tiff",
        "used",
    )
    # several frames: the first is used
    frames = [photos[i % len(photos)] for i in range(3)]
    for fmt in ("gif", "webp", "tiff"):
        put(
            f"animated{FORMATS[fmt][1]}",
            encode(frames[0], fmt, save_all=True, append_images=frames[1:]),
            "animated",
            fmt,
            "used",
        )
    # bogus EXIF: the pixels are used, the EXIF values ignored where implausible
    for fmt in ("jpeg", "png", "webp", "tiff"):
        for j, (name, exif) in enumerate(_exif_cases(p0).items()):
            if fmt != "jpeg" and not name.startswith(("orientation-0", "focal-nan", "make-huge")):
                continue  # every bogus value in JPEG; a sample in the others
            try:
                data = encode(photos[1 + j % 2].rotate(j), fmt, exif=exif)  # distinct: no duplicates
            except (ValueError, TypeError, struct.error, OSError):
                continue  # PIL itself refuses to write that value
            put(f"exif-{name}-{fmt}{FORMATS[fmt][1]}", data, "exif-bogus", fmt, "used")
    # a HEIC-looking file: a format we list but cannot decode
    put("phone.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "heic", "heic", "skipped")

    # file names
    good = encode(photos[2].rotate(45), "jpeg", quality=85)
    names = {
        "name with  spaces.jpg": "used",
        "-leading-dash.jpg": "used",
        "émoji 📷 photo.jpg": "used",
        "e\u0301-decomposed.jpg": "used",
        "n" * 240 + ".jpg": "used",  # long (the file system allows 255 bytes)
        "new\nline.jpg": "skipped",
        "tab\tname.jpg": "skipped",
        "carriage\rreturn.jpg": "skipped",
        "line\u2028separator.jpg": "skipped",
    }
    for i, (name, expect) in enumerate(names.items()):
        # each a slightly different photo: identical files are skipped as duplicates
        data = encode(photos[1].rotate(i + 1), "jpeg", quality=85)
        put(name, data, "file-name", "jpeg", expect)
    raw = os.fsencode(root) + b"/bad-\xff\xfe-utf8.jpg"  # not UTF-8: listed with surrogate escapes
    with open(raw, "wb") as f:
        f.write(good)
    cases[os.fsdecode(b"bad-\xff\xfe-utf8.jpg")] = Case("file-name", "jpeg", "skipped")

    # links
    (root / "loop-a.jpg").symlink_to("loop-b.jpg")
    (root / "loop-b.jpg").symlink_to("loop-a.jpg")
    (root / "self-loop.png").symlink_to("self-loop.png")
    (root / "dangling.jpg").symlink_to("no-such-file.jpg")
    (root / "device.jpg").symlink_to("/dev/zero")
    for name in ("loop-a.jpg", "loop-b.jpg", "self-loop.png", "dangling.jpg", "device.jpg"):
        cases[name] = Case("symlink", "link", "skipped")
    (root / "dir-loop").mkdir()
    (root / "dir-loop" / "up").symlink_to("..")  # listing must not recurse for ever
    # a folder and a FIFO with image names: not files, not listed
    (root / "folder.jpg").mkdir()
    os.mkfifo(root / "pipe.jpg")
    return cases
