"""Cameras and the COLMAP database: shared intrinsics, EXIF focal priors, rigs and frames."""

from __future__ import annotations

import numpy as np
import pycolmap
import pytest

from lightsfm import colmap, config
from lightsfm.images import ImageInfo

EXIF_A = dict(make="Kodak", model="Z612", focal_mm=5.85, focal_px=1555.0)


def test_cameras_are_shared_per_camera_identity():
    infos = [
        ImageInfo("a.jpg", 640, 480),
        ImageInfo("b.jpg", 640, 480),
        ImageInfo("c.jpg", 640, 480, **EXIF_A),
        ImageInfo("d.jpg", 640, 480, **EXIF_A),
        ImageInfo("e.jpg", 480, 640),
    ]
    assert colmap.group_cameras(infos, "auto") == [[0, 1], [2, 3], [4]]
    assert colmap.group_cameras(infos, "per-image") == [[i] for i in range(5)]
    with pytest.raises(ValueError, match="one size"):
        colmap.group_cameras(infos, "single")
    # frames of two clips of one size: one camera per clip (photos among them as auto)
    frames = [ImageInfo(n, 1280, 720) for n in ("walk_000000.jpg", "walk_000007.jpg", "back_000003.jpg", "x.jpg")]
    assert colmap.group_cameras(frames, "auto") == [[0, 1, 2, 3]]
    assert colmap.group_cameras(frames, "per-clip") == [[0, 1], [2], [3]]
    assert config.CHOICES["verify.camera_mode"] == colmap.CAMERA_MODES  # (config names them without pycolmap)


def test_camera_model_and_focal_prior():
    exif_cam = colmap.make_camera(ImageInfo("c.jpg", 1600, 1200, **EXIF_A))
    assert exif_cam.model_name == "SIMPLE_RADIAL" and exif_cam.has_prior_focal_length
    assert exif_cam.focal_length == pytest.approx(1555.0)
    plain = colmap.make_camera(ImageInfo("a.png", 640, 480))
    assert plain.model_name == "SIMPLE_PINHOLE" and not plain.has_prior_focal_length
    assert plain.focal_length == pytest.approx(1.2 * 640)
    assert colmap.make_camera(ImageInfo("a.png", 640, 480), "OPENCV").model_name == "OPENCV"


def test_database_holds_cameras_rigs_frames_images_keypoints(tmp_path):
    infos = [ImageInfo("a.png", 640, 480), ImageInfo("b.png", 640, 480), ImageInfo("c.jpg", 800, 600, **EXIF_A)]
    kp = {i.name: np.random.default_rng(0).uniform(0, 400, (50, 2)).astype(np.float32) for i in infos}
    db, ids = colmap.create_database(tmp_path / "db.db", infos, kp)
    db.write_matches(ids["a.png"], ids["b.png"], np.array([[0, 1], [2, 3]], np.uint32))
    db.write_two_view_geometry(ids["a.png"], ids["b.png"], colmap.two_view_geometry(np.array([[0, 1]])))
    db.close()
    db = pycolmap.Database.open(tmp_path / "db.db")
    assert db.num_cameras() == 2 and db.num_images() == 3 and db.num_rigs() == 2 and db.num_frames() == 3
    # COLMAP's origin is the pixel corner: +0.5
    assert np.allclose(db.read_keypoints(ids["a.png"])[:, :2], kp["a.png"] + 0.5)
    assert db.num_inlier_matches() == 1
    db.close()


def test_split_cameras_gives_unlinked_groups_their_own_camera(tmp_path):
    # six EXIF-less photos of one size share one camera; two unlinked groups then split it
    infos = [ImageInfo(f"{k}.png", 640, 480) for k in "abcdef"]
    kp = {i.name: np.zeros((4, 2), np.float32) for i in infos}
    db, ids = colmap.create_database(tmp_path / "db.db", infos, kp)
    links = [(ids["a.png"], ids["b.png"]), (ids["b.png"], ids["c.png"]), (ids["d.png"], ids["e.png"])]
    made = colmap.split_cameras(db, links)
    db.close()
    db = pycolmap.Database.open(tmp_path / "db.db")
    camera_of = {im.name: im.camera_id for im in db.read_all_images()}
    first = camera_of["a.png"]
    # the largest group and the unlinked photo keep the camera; the other group gets a copy
    assert camera_of["b.png"] == camera_of["c.png"] == camera_of["f.png"] == first
    assert camera_of["d.png"] == camera_of["e.png"] != first
    assert made == {camera_of["d.png"]: [first, ids["d.png"], ids["e.png"]]}
    copy = db.read_camera(camera_of["d.png"])
    assert copy.model_name == "SIMPLE_PINHOLE" and list(copy.params) == list(db.read_camera(first).params)
    # COLMAP 4's rig and frame agree with the image (each frame names its camera as sensor)
    assert db.num_cameras() == 2 and db.num_rigs() == 2 and db.num_frames() == 6
    for frame in db.read_all_frames():
        (data,) = frame.data_ids
        image = db.read_image(data.id)
        assert data.sensor_id.id == image.camera_id
        assert db.read_rig(frame.rig_id).ref_sensor_id.id == image.camera_id
    db.close()


def test_known_cameras_parse_group_and_check(tmp_path):
    assert colmap.parse_camera("pinhole: 1520.4, 1525.9, 302.3, 246.9") == ("PINHOLE", (1520.4, 1525.9, 302.3, 246.9))
    for bad, why in [
        ("PINHOL:1,2,3,4", "COLMAP camera model"),
        ("PINHOLE:1,2,3", r"PINHOLE takes 4 parameters \(fx, fy, cx, cy\), got 3"),
        ("SIMPLE_PINHOLE:1,x,3", "numbers"),
    ]:
        with pytest.raises(ValueError, match=why):
            colmap.parse_camera(bad)
    f = tmp_path / "cameras.txt"
    f.write_text("# left and right rig cameras\nleft_*  PINHOLE:500,500,320,240\n*  SIMPLE_PINHOLE:600,320,240\n")
    infos = [ImageInfo("left_1.png", 640, 480), ImageInfo("right_1.png", 640, 480), ImageInfo("left_2.png", 640, 480)]
    known = colmap.known_cameras(infos, None, f)
    assert known["left_1.png"] == known["left_2.png"] == ("PINHOLE", (500.0, 500.0, 320.0, 240.0))
    assert known["right_1.png"][0] == "SIMPLE_PINHOLE"
    assert colmap.group_cameras(infos, "auto", known) == [[0, 2], [1]]
    cam = colmap.make_camera(infos[0], "auto", known["left_1.png"])
    assert cam.model_name == "PINHOLE" and list(cam.params) == [500, 500, 320, 240] and cam.has_prior_focal_length
    # intrinsics of another image size: the principal point falls outside the photo
    with pytest.raises(ValueError, match=r"left_1.png: .*principal point \(3200, 240\) lies outside the 640×480"):
        colmap.known_cameras(infos, "PINHOLE:500,500,3200,240", None)
    f.write_text("left_* PINHOLE:1,2\n")
    with pytest.raises(ValueError, match=r"cameras.txt:1: 'PINHOLE:1,2': PINHOLE takes 4"):
        colmap.known_cameras(infos, None, f)
