"""Georeferencing: WGS84 geodesy, robust similarity fits, EXIF GPS, and a real model put in metres."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image

from conftest import DATA, DEMO, FOUNTAIN
from lightsfm import colmap, georef, gps, images, pipeline
from lightsfm import evaluate as ev
from lightsfm.errors import LightsfmError
from lightsfm.workspace import Workspace

A, B = 6378137.0, 6356752.314245179  # WGS84 semi-axes (b from a and 1/f = 298.257223563)
ORIGIN = (46.5191, 6.5668, 400.0)


def test_geodetic_known_values():
    ecef = gps.geodetic_to_ecef([[0, 0, 0], [90, 0, 0], [0, 90, 0], [-90, 0, 100], [0, 180, -50]])
    expected = [[A, 0, 0], [0, 0, B], [0, A, 0], [0, 0, -B - 100], [-A + 50, 0, 0]]
    assert np.allclose(ecef, expected, atol=1e-6)
    # latitude 45°: N = a / sqrt(1 - e²/2), x = z·(1 - e²)⁻¹ at height 0
    e2 = 1 - (B / A) ** 2
    n = A / math.sqrt(1 - e2 / 2)
    x, y, z = gps.geodetic_to_ecef([45, 0, 0])[0]
    assert x == pytest.approx(n * math.sqrt(0.5), abs=1e-6) and y == 0
    assert z == pytest.approx(n * (1 - e2) * math.sqrt(0.5), abs=1e-6)
    # 1° of longitude along the equator, seen from (0, 0, 0): east a·sin 1°, down a·(1 - cos 1°)
    enu = gps.geodetic_to_enu([0, 1, 0], (0, 0, 0))[0]
    assert np.allclose(enu, [A * math.sin(math.radians(1)), 0, A * (math.cos(math.radians(1)) - 1)], atol=1e-6)
    # straight up is +z; 100 m up from anywhere stays 100 m
    assert np.allclose(gps.geodetic_to_enu([ORIGIN[0], ORIGIN[1], ORIGIN[2] + 100], ORIGIN), [[0, 0, 100]])


def test_geodesy_agrees_with_pycolmap_and_round_trips():
    rng = np.random.default_rng(0)
    lla = np.c_[rng.uniform(-90, 90, 500), rng.uniform(-180, 180, 500), rng.uniform(-400, 9000, 500)]
    lla = np.r_[lla, [[90, 0, 0], [-90, 10, 5], [0, 180, 0], [0, -180, 0], [89.9999, 45, 1]]]
    ours = gps.geodetic_to_ecef(lla)
    theirs = pycolmap.GPSTransform(pycolmap.GPSTransformEllipsoid.WGS84).ellipsoid_to_ecef(lla)
    assert np.abs(ours - theirs).max() < 1e-6  # an independent implementation, in metres
    back = gps.ecef_to_geodetic(ours)
    assert np.abs(back[:, 0] - lla[:, 0]).max() < 1e-12
    dlon = (back[:, 1] - lla[:, 1] + 180) % 360 - 180
    assert np.abs(dlon[np.abs(lla[:, 0]) < 90]).max() < 1e-12
    assert np.abs(back[:, 2] - lla[:, 2]).max() < 1e-7
    # ENU about an origin and back: a scene of a few km, to a micrometre
    enu = rng.uniform(-3000, 3000, (200, 3))
    assert np.abs(gps.geodetic_to_enu(gps.enu_to_geodetic(enu, ORIGIN), ORIGIN) - enu).max() < 1e-6


def _rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


@pytest.mark.parametrize("n", [12, 40])  # every 3-point set, and random ones (C(40, 3) > 2000)
def test_similarity_fit_recovers_transform_and_names_outliers(n):
    rng = np.random.default_rng(n)
    src = rng.normal(size=(n, 3)) * [4, 3, 0.5]  # cameras spread mostly in a plane, like a walk round
    s, rot, t = 7.5, _rotation(n), np.array([120.0, -40.0, 3.0])
    dst = s * src @ rot.T + t + rng.normal(0, 0.3, (n, 3))
    bad = [1, 5, n - 2]
    dst[bad] += rng.normal(size=(3, 3)) / np.sqrt(3) * 40  # GPS tens of metres off
    names = [f"im{i:02d}.jpg" for i in range(n)]
    fit = georef.fit_similarity(src, dst, names)
    assert sorted(fit.outliers) == [names[i] for i in bad]
    assert fit.transform.scale == pytest.approx(s, rel=0.03)
    angle = np.degrees(np.arccos(np.clip((np.trace(fit.transform.rotation.T @ rot) - 1) / 2, -1, 1)))
    assert angle < 2.0
    assert np.median([fit.residuals[m] for m in fit.inliers]) < 0.8  # noise of 0.3 m per axis
    assert 0.15 < fit.sigma < 0.6  # the robust spread finds the noise
    # an accuracy that says these photos are bad widens their threshold: they are no longer named
    acc = np.full(n, np.nan)
    acc[bad] = 50.0
    assert georef.fit_similarity(src, dst, names, acc).outliers == []


def test_similarity_fit_exact_and_degenerate():
    src = np.array([[0.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    fit = georef.fit_similarity(src, 2 * src + 1, ["a", "b", "c"])
    assert fit.transform.scale == pytest.approx(2) and np.allclose(fit.transform.translation, 1)
    line = np.c_[np.arange(6.0), np.zeros(6), np.zeros(6)]
    with pytest.raises(LightsfmError, match="lie on a line"):
        georef.fit_similarity(line, line, list("abcdef"))


@pytest.mark.data
def test_exif_gps_written_into_a_copy_reads_back(tmp_path):
    src = sorted(DEMO.iterdir())[0]
    fix = gps.GpsFix(-33.8567844, -151.2152967, -12.345, 3.5)  # south, west, below sea level
    gps.write_gps(src, tmp_path / src.name, fix)
    got = gps.read_gps(tmp_path / src.name)
    assert got.latitude == pytest.approx(fix.latitude, abs=1e-9)  # 0.1 mm
    assert got.longitude == pytest.approx(fix.longitude, abs=1e-9)
    assert got.altitude == pytest.approx(-12.345) and got.accuracy == pytest.approx(3.5)
    assert gps.read_gps(src) is None  # the original has no GPS and was not touched
    # the photo as the pipeline sees it is the same: pixels, size, camera, focal
    assert images.read_info(DEMO, src.name) == images.read_info(tmp_path, src.name)
    assert np.array_equal(np.asarray(Image.open(src)), np.asarray(Image.open(tmp_path / src.name)))
    # a Strecha photo (JFIF, no EXIF at all) gets one too
    gps.write_gps(FOUNTAIN / "0000.jpg", tmp_path / "f.jpg", gps.GpsFix(46.5, 6.5, None))
    assert gps.read_gps(tmp_path / "f.jpg") == gps.GpsFix(46.5, 6.5, None, None)
    png = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(png)
    with pytest.raises(LightsfmError, match=r"a\.png: not a JPEG"):
        gps.write_gps(png, tmp_path / "b.png", fix)
    # a PNG whose EXIF follows its pixels (found from the chunk headers), and one with none
    exif = Image.Exif()
    exif[gps.GPS_IFD] = gps.gps_tags(fix)
    body = exif.tobytes()
    chunk = struct.pack(">I", len(body)) + b"eXIf" + body + struct.pack(">I", zlib.crc32(b"eXIf" + body))
    data = png.read_bytes()
    (tmp_path / "late.png").write_bytes(data[:-12] + chunk + data[-12:])  # before IEND, after IDAT
    assert "exif" not in Image.open(tmp_path / "late.png").info
    assert gps.read_gps(tmp_path / "late.png").latitude == pytest.approx(fix.latitude, abs=1e-9)
    assert gps.read_gps(png) is None


def test_parse_gps_tags():
    dms = ((46, 1), (31, 1), (8.76, 1))
    base = {1: "N", 2: tuple(a / b for a, b in dms), 3: "E", 4: (6.0, 34.0, 0.48), 6: 400.0}
    fix = gps.parse_gps(base)
    assert fix.latitude == pytest.approx(46 + 31 / 60 + 8.76 / 3600) and fix.altitude == 400.0
    assert fix.accuracy is None
    assert gps.parse_gps({**base, 11: 2.0}).accuracy == pytest.approx(2 * gps.DOP_TO_METRES)
    assert gps.parse_gps({**base, 11: 2.0, 31: 4.0}).accuracy == 4.0  # a stated error wins over DOP
    assert gps.parse_gps({**base, 9: "V"}) is None  # receiver said: void
    assert gps.parse_gps({**base, 2: (0.0,), 4: (0.0,)}) is None  # 0°, 0°: no fix
    assert gps.parse_gps({**base, 2: (float("nan"), 0, 0)}) is None
    assert gps.parse_gps({**base, 5: b"\x01"}).altitude == -400.0


# --- a real model: five fountain photos with GPS from the ground truth ---------------------

NAMES = [f"{i:04d}.jpg" for i in range(3, 8)]
FAR = "0005.jpg"  # its GPS 40 m off


def _truth() -> dict[str, np.ndarray]:
    """Ground-truth camera centres (Strecha: metres) placed in a made-up east-north-up frame."""
    gt = ev.read_poses(DATA / "train_labels.csv")[("strecha", "fountain-P11")]
    rot = _rotation(3)
    return {
        n: rot @ (-gt[f"strecha/fountain-P11/images/{n}"].R.T @ gt[f"strecha/fountain-P11/images/{n}"].t) for n in NAMES
    }


@pytest.fixture(scope="module")
def fountain_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("georef")
    photos = root / "photos"
    photos.mkdir()
    truth = _truth()
    rng = np.random.default_rng(0)
    for n in NAMES:
        enu = truth[n] + rng.normal(0, 0.02, 3) + ([40.0, 0, 0] if n == FAR else 0)
        lat, lon, alt = gps.enu_to_geodetic(enu, ORIGIN)[0]
        gps.write_gps(FOUNTAIN / n, photos / n, gps.GpsFix(lat, lon, alt, 0.02))
    out = root / "run"
    conf = {"features": {"resize_max": 320, "max_keypoints": 512}}
    result = pipeline.reconstruct(photos, out, conf)
    assert result.models and result.models[0].num_reg_images() == len(NAMES)
    return out, truth


def _copy_run(run: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    shutil.copyfile(run / "summary.json", dst / "summary.json")
    shutil.copytree(run / "sparse", dst / "sparse")
    return dst


def _centres(folder: Path) -> dict[str, np.ndarray]:
    return {n: c for n, (_, c) in colmap.camera_poses(pycolmap.Reconstruction(folder)).items()}


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.data
def test_georeference_real_model(fountain_run, tmp_path):
    run, truth = fountain_run
    out = _copy_run(run, tmp_path / "out")
    record = georef.main(out)
    assert record["method"] == "gps" and record["outliers"] == [FAR] and record["agreed"] == 4
    saved = json.loads((out / "georef.json").read_text())
    for key in ("latitude", "longitude", "altitude", "transform", "residuals_m", "agreed", "median_residual_m"):
        assert key in saved, key
    assert saved == json.loads((out / "sparse" / "georef.json").read_text())  # goes with the model
    assert saved["residuals_m"][FAR] > 30 and saved["max_residual_m"] < 0.05  # 0.009 m today
    # the aligned cameras, back in the made-up frame, are where the ground truth puts them
    origin = (saved["latitude"], saved["longitude"], saved["altitude"])
    centres = _centres(out / "sparse" / "0")
    for n, c in centres.items():
        enu = gps.geodetic_to_enu(gps.enu_to_geodetic(c, origin), ORIGIN)[0]
        assert np.linalg.norm(enu - truth[n]) < 0.1, n  # 2 cm GPS noise, a 320 px model: 0.015-0.047 m today
    lat, lon, _ = saved["models"][0]["cameras"]["0004.jpg"]
    assert np.linalg.norm(gps.geodetic_to_enu([lat, lon, 0], ORIGIN)[0, :2] - truth["0004.jpg"][:2]) < 0.1
    assert (out / "points.ply").read_bytes() == (out / "sparse" / "0" / "points.ply").read_bytes()


@pytest.mark.data
@pytest.mark.parametrize("at", ["sparse", Workspace.SPARSE_NEW])
def test_georef_killed_between_writing_and_renaming(fountain_run, tmp_path, at):
    # SIGKILL when the new models are fully written but `at` is about to be renamed: before
    # the old folder is moved aside, or between the two renames
    run, _ = fountain_run
    out = _copy_run(run, tmp_path / "out")
    before = _digests(out / "sparse")
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from lightsfm import georef\n"
        "real = os.replace\n"
        "def replace(a, b):\n"
        "    if Path(a).name == sys.argv[2]:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(a, b)\n"
        "os.replace = replace\n"
        "georef.main(Path(sys.argv[1]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(out), at], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / Workspace.SPARSE_NEW / "georef.json").is_file()  # written in full, not yet in place
    assert not (out / "georef.json").exists()
    if at == "sparse":
        assert _digests(out / "sparse") == before  # the old model, untouched
    else:
        assert not (out / "sparse").exists() and _digests(out / Workspace.SPARSE_OLD) == before
    Workspace(out).remove_temporaries()  # what the next run does first: the old model is back
    assert _digests(out / "sparse") == before
    assert not (out / Workspace.SPARSE_NEW).exists() and not (out / Workspace.SPARSE_OLD).exists()
    assert georef.main(out)["outliers"] == [FAR]


@pytest.mark.data
def test_align_to_labels_and_to_a_model(fountain_run, tmp_path):
    run, truth = fountain_run
    out = _copy_run(run, tmp_path / "out")
    labels = DATA / "train_labels.csv"
    # the copies' folder names no scene, and five names fit three Strecha scenes
    with pytest.raises(LightsfmError, match="name the scene"):
        georef.align(out, labels)
    record = georef.align(out, labels, scene="strecha/fountain-P11")
    assert record["agreed"] == 5 and record["max_residual"] < 0.1  # metres, against LiDAR-grade poses
    assert json.loads((out / "align.json").read_text())["residuals"].keys() == set(NAMES)
    assert not (out / "georef.json").exists()
    # and onto a COLMAP model: the run's own, moved by a known similarity
    target = tmp_path / "target"
    target.mkdir()
    moved = colmap.transformed(pycolmap.Reconstruction(run / "sparse" / "0"), 3.0, _rotation(7), np.ones(3))
    moved.write(target)
    record = georef.align(out, target)
    assert record["max_residual"] < 1e-9 and record["agreed"] == 5
    want = _centres(target)
    assert all(np.allclose(c, want[n], atol=1e-6) for n, c in _centres(out / "sparse" / "0").items())


@pytest.mark.data
def test_level_model_turns_average_up_to_z(fountain_run, tmp_path):
    run, _ = fountain_run
    out = _copy_run(run, tmp_path / "out")
    record = georef.main(out, gps=False, up="auto")
    assert record["method"] == "up"
    ups = np.array([-r[1] for r, _ in colmap.camera_poses(pycolmap.Reconstruction(out / "sparse" / "0")).values()])
    mean = ups.mean(axis=0)
    assert np.allclose(mean / np.linalg.norm(mean), [0, 0, 1], atol=1e-9)


@pytest.mark.data
def test_bad_input_is_one_line_naming_the_file(fountain_run, tmp_path):
    run, _ = fountain_run
    out = _copy_run(run, tmp_path / "out")
    bare = tmp_path / "bare"  # the same photos without GPS
    bare.mkdir()
    for n in NAMES:
        shutil.copyfile(FOUNTAIN / n, bare / n)
    with pytest.raises(LightsfmError, match=rf"^{re.escape(str(bare))}: no registered photo has GPS in its EXIF$"):
        georef.main(out, image_dir=bare)
    few = tmp_path / "few"
    shutil.copytree(bare, few)
    for n in NAMES[:2]:
        gps.write_gps(FOUNTAIN / n, few / n, gps.GpsFix(46.5, 6.5, 400.0))
    with pytest.raises(
        LightsfmError, match=rf"^{re.escape(str(few))}: 2 of the model's 5 registered photos have GPS.*3$"
    ):
        georef.main(out, image_dir=few)
    # --up auto is the fallback when GPS is missing
    assert georef.main(out, up="auto", image_dir=bare)["method"] == "up"
    broken = tmp_path / "labels.csv"
    broken.write_text("dataset,scene,image_path,rotation_matrix,translation_vector\nstrecha,x,0003.jpg,1;0;0,1;2;3\n")
    with pytest.raises(LightsfmError, match=rf"^{re.escape(str(broken))}:2: "):
        georef.align(out, broken)
    with pytest.raises(LightsfmError, match=rf"^{re.escape(str(tmp_path / 'nope'))}: not found"):
        georef.align(out, tmp_path / "nope")
    with pytest.raises(LightsfmError, match=r"summary.json: not found"):
        georef.main(tmp_path / "empty")
    assert not (tmp_path / "empty").exists()  # nothing made where there was nothing


@pytest.mark.data
def test_gps_is_a_prior_of_mapping(fountain_run):
    # GPS good to 2 cm over metres is informative: the mapper got each photo's position as a
    # prior, robustly (the photo 40 m off stays where its matches put it)
    run, _ = fountain_run
    assert colmap.num_position_priors(run / "database.db") == len(NAMES)
    photos = Path(json.loads((run / "summary.json").read_text())["image_dir"])
    names, xyz = gps.enu_positions(gps.read_gps_folder(photos, NAMES))
    centres = _centres(run / "sparse" / "0")  # as mapped, before any georeferencing
    off = {n: float(np.linalg.norm(centres[n] - xyz[k])) for k, n in enumerate(names)}
    assert off[FAR] > 30 and max(v for n, v in off.items() if n != FAR) < 0.05, off


@pytest.mark.data
def test_reconstruct_georeferences_photos_with_gps(fountain_run, tmp_path):
    run, truth = fountain_run
    photos = json.loads((run / "summary.json").read_text())["image_dir"]
    out = tmp_path / "out"
    args = ["reconstruct", photos, "-o", out, "--no-report"]
    args += ["--set", "features.resize_max=320", "--set", "features.max_keypoints=512"]
    proc = subprocess.run(
        [sys.executable, "-m", "lightsfm.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "georeferenced: 4/5 photos agree with their GPS" in proc.stdout and FAR in proc.stdout
    record = json.loads((out / "georef.json").read_text())
    origin = (record["latitude"], record["longitude"], record["altitude"])
    for n, c in _centres(out / "sparse" / "0").items():
        assert np.linalg.norm(gps.geodetic_to_enu(gps.enu_to_geodetic(c, origin), ORIGIN)[0] - truth[n]) < 0.1, n
