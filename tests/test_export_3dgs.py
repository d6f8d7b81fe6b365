"""3DGS and nerfstudio exports of a small real model, read back as those tools read them."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pycolmap
import pytest
from PIL import Image

from conftest import DEMO
from lightsfm import export, pipeline

# Small: 5 photos at 640×480 (EXIF kept: a radial camera, so undistortion does something).
CONF = {"features": {"max_keypoints": 512, "resize_max": 320}}


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, pycolmap.Reconstruction]:
    root = tmp_path_factory.mktemp("sceaux")
    photos = root / "images"
    photos.mkdir()
    for p in sorted(DEMO.glob("*.JPG"))[:5]:
        with Image.open(p) as im:
            im.resize((640, 480), Image.Resampling.LANCZOS).save(photos / p.name, quality=92, exif=im.info["exif"])
    result = pipeline.reconstruct(photos, root / "out", CONF)
    rec = result.models[0]
    assert rec.num_reg_images() >= 4
    assert {c.model_name for c in rec.cameras.values()} == {"SIMPLE_RADIAL"}
    return root / "out", rec


def read_cameras_bin(path: Path) -> dict[int, tuple[int, int, int, list[float]]]:
    """cameras.bin as graphdeco's loader reads it: id → (model id, width, height, params)."""
    data = path.read_bytes()
    (n,), at, out = struct.unpack_from("<Q", data), 8, {}
    for _ in range(n):
        cam_id, model, w, h = struct.unpack_from("<iiQQ", data, at)
        at += 24
        assert model == 1  # PINHOLE: fx, fy, cx, cy
        out[cam_id] = (model, w, h, list(struct.unpack_from("<4d", data, at)))
        at += 32
    assert at == len(data)
    return out


def read_images_bin(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """images.bin as graphdeco's loader reads it: name → (qvec wxyz, tvec, camera id)."""
    data = path.read_bytes()
    (n,), at, out = struct.unpack_from("<Q", data), 8, {}
    for _ in range(n):
        _, *qt, cam_id = struct.unpack_from("<i7di", data, at)
        at += 64
        end = data.index(b"\0", at)
        name = data[at:end].decode()
        (num_points,) = struct.unpack_from("<Q", data, end + 1)
        at = end + 1 + 8 + num_points * 24
        out[name] = (np.array(qt[:4]), np.array(qt[4:]), cam_id)
    assert at == len(data)
    return out


def test_3dgs_layout(run):
    out, rec = run
    (out / "export" / "3dgs.tmp").mkdir(parents=True)  # left by a killed export
    dest = export.main(out, "3dgs")
    assert dest == out / "export" / "3dgs" and not (out / "export" / "3dgs.tmp").exists()
    back = pycolmap.Reconstruction(dest / "sparse" / "0")
    registered = {im.name: im for im in rec.images.values() if im.has_pose}
    assert {im.name for im in back.images.values() if im.has_pose} == set(registered)
    assert back.num_points3D() == rec.num_points3D()
    for im in back.images.values():
        cam = back.cameras[im.camera_id]
        assert cam.model_name == "PINHOLE"
        with Image.open(dest / "images" / im.name) as pic:
            assert pic.size == (cam.width, cam.height)
        # graphdeco's loader assumes the principal point at the centre: cropped to put it there
        assert abs(cam.principal_point_x - cam.width / 2) <= 0.5 and abs(cam.principal_point_y - cam.height / 2) <= 0.5
        before = registered[im.name].cam_from_world()
        assert np.allclose(im.cam_from_world().rotation.matrix(), before.rotation.matrix(), atol=1e-9)
        assert np.allclose(im.cam_from_world().translation, before.translation, atol=1e-9)
        for f in export.DOWNSCALES:
            with Image.open(dest / f"images_{f}" / im.name) as small:
                assert small.size == (-(-cam.width // f), -(-cam.height // f))
    # the undistorted model explains its points as well as the original did
    assert back.compute_mean_reprojection_error() < 1.5 * rec.compute_mean_reprojection_error() + 0.1

    # The files themselves, parsed as graphdeco's reader does (cameras.bin, images.bin).
    cams = read_cameras_bin(dest / "sparse" / "0" / "cameras.bin")
    imgs = read_images_bin(dest / "sparse" / "0" / "images.bin")
    assert set(imgs) == set(registered)
    for name, (q, t, cam_id) in imgs.items():
        p = registered[name].cam_from_world()
        x, y, z, w = p.rotation.quat
        assert np.allclose(np.abs(q @ [w, x, y, z]), 1, atol=1e-9) and np.allclose(t, p.translation)
        _, width, height, _ = cams[cam_id]
        with Image.open(dest / "images" / name) as pic:
            assert pic.size == (width, height)

    # Exported again (no downscales): replaced whole, nothing of the old one left behind.
    assert export.to_3dgs(rec, Path(json.loads((out / "summary.json").read_text())["image_dir"]), dest, ()) == dest
    assert not (dest / "images_2").exists() and len(list((dest / "images").iterdir())) == len(registered)
    assert not list(dest.parent.glob("3dgs.*"))


def test_3dgs_from_a_pinhole_model(run, tmp_path):
    # Photos without EXIF get SIMPLE_PINHOLE cameras (video frames too), which COLMAP's
    # undistorter leaves as they are: the export must still write PINHOLE.
    out, rec = run
    rec = pycolmap.Reconstruction(rec)
    for cam in rec.cameras.values():
        f, cx, cy, _ = cam.params
        cam.model = pycolmap.CameraModelId.SIMPLE_PINHOLE
        cam.params = [f, cx + 9.3, cy - 4.2]  # and a principal point off the centre
    image_dir = Path(json.loads((out / "summary.json").read_text())["image_dir"])
    dest = export.to_3dgs(rec, image_dir, tmp_path / "3dgs", downscales=())
    back = pycolmap.Reconstruction(dest / "sparse" / "0")
    cams = read_cameras_bin(dest / "sparse" / "0" / "cameras.bin")  # (asserts PINHOLE)
    for cam in back.cameras.values():
        fx, fy, cx, cy = cam.params
        assert cam.model_name == "PINHOLE" and fx == fy == rec.cameras[cam.camera_id].params[0]
        assert cams[cam.camera_id][1:3] == (cam.width, cam.height) and cam.width == 640 - 19
        assert abs(cx - cam.width / 2) <= 0.5 and abs(cy - cam.height / 2) <= 0.5
    for im in back.images.values():
        with Image.open(dest / "images" / im.name) as pic:
            assert pic.size == (back.cameras[im.camera_id].width, back.cameras[im.camera_id].height)
    assert not list(dest.glob("images_*"))


def test_nerfstudio_undistorted_frames_and_point_cloud(run):
    from plyfile import PlyData

    out, rec = run
    path = export.main(out, "nerfstudio", downscales=(2,))
    ns = json.loads(path.read_text())
    root = path.parent
    assert ns["camera_model"] == "OPENCV" and ns["ply_file_path"] == "sparse_pc.ply"
    ply = PlyData.read(str(root / ns["ply_file_path"]))["vertex"]
    xyz = np.stack([ply["x"], ply["y"], ply["z"]], axis=1).astype(float)
    assert len(xyz) == rec.num_points3D()
    frames = {Path(f["file_path"]).name: f for f in ns["frames"]}
    registered = {im.name: im for im in rec.images.values() if im.has_pose}
    assert set(frames) == set(registered)
    errors = []
    for name, f in frames.items():
        assert f["k1"] == f["k2"] == f["p1"] == f["p2"] == 0  # undistorted
        with Image.open(root / f["file_path"]) as pic:
            assert pic.size == (f["w"], f["h"])
        assert (root / "images_2" / name).exists()
        # Project the point cloud with nerfstudio's conventions (OpenGL camera: x right, y up,
        # z backwards) and compare with the photo's keypoints, undistorted by the model's
        # camera: the cloud and the cameras must share one world frame.
        w2c = np.linalg.inv(np.array(f["transform_matrix"]))
        im = registered[name]
        for p2d in im.points2D:
            if not p2d.has_point3D():
                continue
            x, y, z = w2c[:3, :3] @ rec.points3D[p2d.point3D_id].xyz + w2c[:3, 3]
            assert z < 0  # in front of the camera
            u, v = f["cx"] + f["fl_x"] * x / -z, f["cy"] - f["fl_y"] * y / -z
            ray = im.camera.cam_from_img(p2d.xy)  # the keypoint, undistorted (normalised)
            u0, v0 = f["cx"] + f["fl_x"] * ray[0], f["cy"] + f["fl_y"] * ray[1]
            errors.append(np.hypot(u - u0, v - v0))
    assert len(errors) > 100 and np.median(errors) < 1.0, np.median(errors)
    # the ply holds those very points
    model_xyz = np.array([p.xyz for p in rec.points3D.values()])
    assert np.allclose(np.sort(xyz, axis=0), np.sort(model_xyz, axis=0), atol=1e-4)
