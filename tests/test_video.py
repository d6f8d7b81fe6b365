"""Video input: frames sampled from a real H.264 clip, the sharpest kept, resumable; sequential pairs."""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import DATA
from lightsfm import video
from lightsfm.errors import LightsfmError
from lightsfm.pairs import sequential

PHOTOS = DATA / "phone_captures" / "tensorf_object80" / "images"
SIZE = (320, 568)  # the 1080×1920 photos at 320 px wide (even sides for yuv420p)

pytestmark = pytest.mark.data


def encode(path: Path, frames: list[np.ndarray], fps: int = 30) -> Path:
    """An H.264 mp4 of RGB frames, written with PyAV (libx264)."""
    import av

    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "18", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> tuple[Path, list[int]]:
    """40 frames: 20 photos, each followed or preceded by a blurred copy of itself.

    Returns the clip and, for each pair of frames, the index of the sharp one.
    """
    photos = sorted(PHOTOS.glob("*.jpg"))[:20]
    frames, sharp = [], []
    for i, p in enumerate(photos):
        rgb = np.asarray(Image.open(p).convert("RGB").resize(SIZE, Image.Resampling.LANCZOS))
        blurred = cv2.GaussianBlur(rgb, (0, 0), 2.5)
        frames += [rgb, blurred] if i % 2 == 0 else [blurred, rgb]
        sharp.append(2 * i if i % 2 == 0 else 2 * i + 1)
    return encode(tmp_path_factory.mktemp("clip") / "walk.mp4", frames), sharp


def indices(names: list[str]) -> list[int]:
    return [int(re.fullmatch(r"walk_(\d{6})\.jpg", n).group(1)) for n in names]


def test_is_video(clip, tmp_path):
    path, _ = clip
    assert video.is_video(path) and not video.is_video(PHOTOS / "1.jpg")
    assert not video.is_video(tmp_path / "missing.mp4")


def test_keeps_the_sharpest_frame_of_each_window(clip, tmp_path):
    path, sharp = clip
    names = video.extract_frames(path, tmp_path, target=20)
    assert indices(names) == sharp  # never the blurred copy
    assert sorted(p.name for p in tmp_path.glob("*.jpg")) == names
    with Image.open(tmp_path / names[0]) as im:
        assert im.format == "JPEG" and im.size == SIZE
    manifest = json.loads((tmp_path / "walk.frames.json").read_text())
    assert manifest["clip"] == str(path.resolve()) and manifest["size"] == path.stat().st_size
    assert manifest["settings"]["target"] == 20 and manifest["complete"] and manifest["frames"] == names


def test_short_clip_keeps_every_frame_and_every_sets_a_rate(clip, tmp_path):
    path, _ = clip
    assert indices(video.extract_frames(path, tmp_path / "all")) == list(range(40))
    # one frame per 0.2 s of a 30 fps clip: windows of 6 frames
    got = indices(video.extract_frames(path, tmp_path / "rate", every=0.2))
    assert len(got) == 7 and [i // 6 for i in got] == list(range(7))


def test_resume_does_no_work_and_redoes_only_what_is_missing(clip, tmp_path):
    path, _ = clip
    own = tmp_path / "walk.mp4"
    own.write_bytes(path.read_bytes())
    out = tmp_path / "frames"
    names = video.extract_frames(own, out, target=20)
    stamps = {n: (out / n).stat().st_mtime_ns for n in names}
    data = {n: (out / n).read_bytes() for n in names}

    # Same size and mtime, garbage inside: a run that decoded anything would fail.
    st = own.stat()
    good = own.read_bytes()
    own.write_bytes(b"\0" * st.st_size)
    os.utime(own, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert video.extract_frames(own, out, target=20) == names
    assert {n: (out / n).stat().st_mtime_ns for n in names} == stamps

    # A run killed part-way: only the missing frames are written, identical to before.
    own.write_bytes(good)
    os.utime(own, ns=(st.st_atime_ns, st.st_mtime_ns))
    for n in names[5:8]:
        (out / n).unlink()
    assert video.extract_frames(own, out, target=20) == names
    for n in names:
        assert (out / n).read_bytes() == data[n]
        assert ((out / n).stat().st_mtime_ns == stamps[n]) == (n not in names[5:8])

    # Other settings: the old frames go, the new ones come.
    fewer = video.extract_frames(own, out, target=10)
    assert len(fewer) == 10 and sorted(p.name for p in out.glob("*.jpg")) == fewer
    assert not list(out.glob("*.tmp"))


def test_unreadable_clip_is_one_line_error(clip, tmp_path):
    path, _ = clip
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"not a video at all " * 200)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # the index (moov) is at the end
    for bad in (garbage, cut, tmp_path / "missing.mov"):
        with pytest.raises(LightsfmError) as e:
            video.extract_frames(bad, tmp_path / "out")
        msg = str(e.value)
        assert bad.name in msg and "\n" not in msg and len(msg) < 300, msg
    assert not (tmp_path / "out").exists()  # nothing written for a clip that cannot be read


def test_display_rotation_is_applied(clip, tmp_path):
    # A portrait phone clip is stored landscape with a rotation in its track header
    # (matrix [0 1; -1 0]: FFmpeg reads -90°, shown turned 90° clockwise).
    path, _ = clip
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd") - 4
    assert data[at + 8] == 0  # version 0 header: the matrix is 48 bytes in
    data[at + 48 : at + 84] = struct.pack(">9i", 0, 1 << 16, 0, -(1 << 16), 0, 0, 0, 0, 1 << 30)
    turned = tmp_path / "turned.mp4"
    turned.write_bytes(bytes(data))
    (name,) = video.extract_frames(turned, tmp_path / "t", target=1)
    (plain,) = video.extract_frames(path, tmp_path / "p", target=1)
    a = cv2.imread(str(tmp_path / "t" / name)).astype(float)
    b = cv2.imread(str(tmp_path / "p" / plain)).astype(float)
    assert a.shape == (SIZE[0], SIZE[1], 3)
    assert np.abs(a - np.rot90(b, -1)).mean() < 2.0


def test_prepare_input(clip, tmp_path):
    path, _ = clip
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "walk.mp4").symlink_to(path)
    image_dir, conf = video.prepare_input(folder, tmp_path / "out", target=20)
    assert image_dir == tmp_path / "out" / "frames"
    assert len(list(image_dir.glob("walk_*.jpg"))) == 20
    assert conf["pairs"]["strategy"] == "sequential" and conf["verify"]["camera_mode"] == "single"
    assert conf["features"]["upright"] is False
    assert video.prepare_input(path, tmp_path / "out", target=20)[0] == image_dir
    (folder / "back.mp4").symlink_to(path)  # two clips: a camera each
    image_dir, conf = video.prepare_input(folder, tmp_path / "two", target=20)
    assert conf["verify"]["camera_mode"] == "per-clip" and len(list(image_dir.glob("back_*.jpg"))) == 20
    assert video.prepare_input(PHOTOS, tmp_path / "photos") == (PHOTOS, {})
    with pytest.raises(LightsfmError, match="not a folder of photos or a video"):
        video.prepare_input(PHOTOS / "1.jpg", tmp_path / "x")


def test_sequential_pairs_structure():
    a = [video.frame_name("a", i) for i in range(0, 120, 2)]  # 60 frames, every other index
    b = [video.frame_name("b", i) for i in range(30)]
    pairs = sequential.pairs_sequential(b + a[::-1], overlap=10, step_ratio=1.5)
    assert len(pairs) == len(set(pairs)) and all(x != y for x, y in pairs)
    for seq in (a, b):
        pos = {n: i for i, n in enumerate(seq)}
        mine = {(pos[x], pos[y]) for x, y in pairs if x in pos}
        assert all(x in pos and y in pos for x, y in pairs if x in pos or y in pos)  # never across clips
        gaps = {j - i for i, j in mine}
        assert all(j > i for i, j in mine)
        want = set(range(1, 11)) | {15, 22, 34, 51}
        assert gaps == {g for g in want if g < len(seq)}
        for i in range(len(seq)):  # each frame with each of its next 10
            assert all((i, i + d) in mine for d in range(1, 11) if i + d < len(seq))
    assert sequential.steps(10, 1.0, 100) == list(range(1, 11))


def test_loop_closure_pairs_the_most_similar_far_frames():
    names = [video.frame_name("orbit", i) for i in range(40)]
    rng = np.random.default_rng(0)
    desc = rng.normal(size=(40, 16))
    desc[39] = desc[0] + 0.05 * rng.normal(size=16)  # the orbit closes: last frame sees the first
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    seq = sequential.pairs_sequential(names, overlap=5, step_ratio=1.5)
    loops = sequential.loop_pairs(names, desc @ desc.T, set(seq), topk=1, min_gap=5)
    assert (names[0], names[39]) in loops and not set(loops) & set(seq)
    pos = {n: i for i, n in enumerate(names)}
    assert all(pos[x] < pos[y] and pos[y] - pos[x] > 5 for x, y in loops)
    assert sequential.loop_pairs(names, desc @ desc.T, set(seq), topk=0, min_gap=5) == []


def test_sequential_main_with_vlad_over_real_descriptors(clip, tmp_path):
    import h5py

    from lightsfm.io import name_to_key

    path, _ = clip
    frames = tmp_path / "frames"
    names = video.extract_frames(path, frames)  # all 40
    sift = cv2.SIFT_create(nfeatures=300)
    with h5py.File(tmp_path / "features.h5", "w") as f:
        for n in names:
            kp, d = sift.detectAndCompute(cv2.imread(str(frames / n), cv2.IMREAD_GRAYSCALE), None)
            g = f.create_group(name_to_key(n))
            g["descriptors"] = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float16)
            g["scores"] = np.array([k.response for k in kp], np.float32)
    conf = {"overlap": 3, "loop_topk": 2, "global_descriptor": "vlad"}
    pairs = sequential.main(names, tmp_path, conf, frames, tmp_path / "features.h5")
    seq = set(sequential.pairs_sequential(names, 3, 1.5))
    loops = set(pairs) - seq
    assert seq <= set(pairs) and loops
    assert all(indices([y])[0] - indices([x])[0] > 3 for x, y in loops)
    assert sequential.conf_tag(conf) == "sequential-o3-r1.5-l2-vlad"


def test_reconstruct_a_clip_from_the_command_line(clip, tmp_path):
    """`lightsfm reconstruct clip.mp4`: frames extracted into OUT/frames, paired
    sequentially, one camera; the flags still win over what the clip asks for."""
    import json

    from typer.testing import CliRunner

    from lightsfm import cli

    path, _ = clip
    out = tmp_path / "out"
    args = ["reconstruct", str(path), "-o", str(out), "--frames", "12", "--max-keypoints", "512"]
    args += ["--resize-max", "320", "--overlap", "4", "--no-report"]
    result = CliRunner().invoke(cli.app, args)
    assert result.exit_code in (0, 3), result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["image_dir"] == str((out / "frames").resolve())
    assert summary["conf"]["pairs"]["strategy"] == "sequential" and summary["conf"]["pairs"]["overlap"] == 4
    assert summary["conf"]["features"]["upright"] is False and summary["conf"]["verify"]["camera_mode"] == "single"
    assert len(summary["image_names"]) == 12 and summary["models"] and summary["models"][0]["registered"] >= 8
    assert summary["files"]["pairs"].startswith("pairs-sequential-o4")
