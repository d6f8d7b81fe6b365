"""A folder of everything people throw at the tool: each bad file gets one line naming it and the
reason, the valid photos are still reconstructed (two unrelated scenes → two models), no traceback,
and the exit status tells success, partial success and failure apart."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import FOUNTAIN, TEMPLE
from lightsfm.images import load_image

pytestmark = pytest.mark.data

# PIL's exif_transpose undoes these; storing the inverse makes the upright image the original.
STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "lightsfm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
        timeout=900,
    )


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_exif_orientations_come_out_upright(tmp_path, orientation):
    src = Image.open(TEMPLE / "templeSR0001.png").convert("RGB")
    op = STORE_FOR_ORIENTATION[orientation]
    stored = src.transpose(op) if op is not None else src
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(tmp_path / "o.jpg", exif=exif, quality=98)
    rgb, size = load_image(tmp_path / "o.jpg")
    assert size == src.size
    assert np.abs(rgb.astype(int) - np.asarray(src).astype(int)).mean() < 4  # JPEG noise only


def _corpus(root):
    """Valid photos in every odd form, plus the bad files; returns (bad file → expected reason)."""
    # eight neighbouring views of the temple ring (its numbering does not follow the ring)
    t = [Image.open(TEMPLE / f"templeSR{i:04d}.png").convert("RGB") for i in (2, 1, 11, 10, 9, 8, 7, 6)]
    (root / "é dir").mkdir()
    t[0].save(root / "a b.png")  # space in the name
    t[1].save(root / "é dir" / "ü.png")  # nested, non-ASCII
    rgba = t[2].convert("RGBA")
    rgba.putalpha(255)
    rgba.save(root / "alpha.png")
    Image.fromarray(np.asarray(t[3].convert("L")).astype(np.uint16) * 257).save(root / "deep16.png")
    t[4].convert("L").save(root / "gray.png")
    t[5].convert("CMYK").save(root / "cmyk.jpg", quality=95)
    (root / "link.png").symlink_to(TEMPLE / "templeSR0007.png")  # the same view as t[6], which is truncated below
    t[7].save(root / "bitmap.bmp")
    for i in range(4):  # an unrelated second scene
        (root / f"fountain{i}.jpg").symlink_to(FOUNTAIN / f"{i:04d}.jpg")
    Image.new("RGB", (640, 480)).save(root / "black.png")
    Image.new("RGB", (12000, 9000), (90, 120, 150)).save(root / "huge.jpg", quality=50)
    bad = {
        "empty.jpg": "not an image",
        "text.jpg": "not an image",
        "tiny.png": "too small",
        "photo.heic": "unsupported format",
        "copy.png": "duplicate of",
        "dangling.jpg": "file not found",
        "truncated.jpg": "cannot be",
        # issue 16: a PNG cut to its first third, named .jpg, passed reading and ended the run
        "png-cut.jpg": "cannot be decoded (image file is truncated",
    }
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("this is not a photo")
    Image.new("RGB", (32, 32), (200, 0, 0)).save(root / "tiny.png")
    (root / "photo.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "copy.png").write_bytes((root / "a b.png").read_bytes())
    (root / "dangling.jpg").symlink_to(root / "nowhere.jpg")
    t[6].save(root / "whole.jpg", quality=95)
    data = (root / "whole.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (root / "whole.jpg").unlink()
    png = (TEMPLE / "templeSR0003.png").read_bytes()
    (root / "png-cut.jpg").write_bytes(png[: len(png) // 3])
    (root / "notes.txt").write_text("not an image extension: ignored")
    Image.open(FOUNTAIN / "0004.jpg").save(root / "locked.jpg", quality=95)
    os.chmod(root / "locked.jpg", 0)
    if os.geteuid() != 0:  # root reads it anyway: then it is just one more photo
        bad["locked.jpg"] = "permission denied"
    return bad


def test_messy_folder(tmp_path):
    images = tmp_path / "photos"
    images.mkdir()
    bad = _corpus(images)
    out = tmp_path / "out"
    r = _cli("reconstruct", images, "-o", out, "--no-report")
    assert "Traceback" not in r.stderr
    assert r.returncode == 3, r.stderr  # models built, some images skipped or unregistered
    summary = json.loads((out / "summary.json").read_text())
    assert summary["duplicates"] == {"copy.png": "a b.png"}  # it gets that photo's pose in submissions
    for name, reason in bad.items():
        assert name in summary["skipped"], name
        assert reason in summary["skipped"][name], (name, summary["skipped"][name])
        lines = [ln for ln in r.stderr.splitlines() if name in ln]
        assert lines and all(ln.startswith("WARNING: skipping") for ln in lines), (name, r.stderr)
    models = summary["models"]
    assert len(models) == 2, summary  # the temple and the fountain are not one scene
    assert sorted(m["registered"] for m in models)[0] >= 3 and max(m["registered"] for m in models) >= 6
    assert "model sparse/1" in r.stdout
    # valid but useless photos are named as unregistered
    assert {"black.png", "huge.jpg"} <= set(summary["unregistered"])
    assert "not registered black.png" in r.stdout
    _write_table(images, summary, r.stderr + r.stdout)


def _write_table(images, summary, output):
    """What each file of the corpus produced, for the record (outputs/test-artifacts/bad-input.md)."""
    from conftest import ROOT

    rows = ["| file | outcome | message |", "|---|---|---|"]
    for p in sorted(images.rglob("*")):
        if p.is_dir():
            continue
        n = p.relative_to(images).as_posix()
        line = next((ln.strip() for ln in output.splitlines() if f"{n}:" in ln), "")
        line = line.replace(str(images) + "/", "")
        if n in summary["skipped"]:
            outcome = "skipped"
        elif n in summary["unregistered"]:
            outcome = "read, not registered"
        elif n in summary["image_names"]:
            outcome = "registered"
        else:
            outcome = "ignored (not an image extension)"
        rows.append(f"| `{n}` | {outcome} | {line or '—'} |")
    out = ROOT / "outputs" / "test-artifacts"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bad-input.md").write_text("\n".join(rows) + "\n")


def test_too_few_images(tmp_path):
    for n in (0, 1):
        d = tmp_path / str(n)
        d.mkdir()
        for i in range(n):
            (d / f"{i}.png").symlink_to(TEMPLE / f"templeSR{i + 1:04d}.png")
        r = _cli("reconstruct", d, "-o", tmp_path / f"out{n}", "--no-report")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
        assert ("no images found" if n == 0 else "1 usable image(s)") in r.stderr
    d = tmp_path / "2"
    d.mkdir()
    for i in (1, 2):
        (d / f"{i}.png").symlink_to(TEMPLE / f"templeSR{i:04d}.png")
    r = _cli("reconstruct", d, "-o", tmp_path / "out2", "--max-keypoints", "512", "--no-report")
    assert "Traceback" not in r.stderr
    # two images: either a two-view model or a one-line failure, never a crash
    assert r.returncode in (0, 1, 3)
    if r.returncode == 1:
        assert len(r.stderr.strip().splitlines()) == 1
