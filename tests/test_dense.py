"""Dense reconstruction against a scene of known geometry rendered by synthetic_scene.py."""

from __future__ import annotations

import json
from pathlib import Path

import cv2  # noqa: F401  (before pycolmap)
import numpy as np
import pycolmap
import pytest
import torch
from PIL import Image
from synthetic_scene import render_scene, surface_distance

from lightsfm import dense
from lightsfm.cli import app
from lightsfm.dense import stereo

CONF = {"max_image_size": 320, "stereo": {"num_depths": 64}, "poisson_depth": 8}


def read_ply_xyz(path: Path) -> np.ndarray:
    from plyfile import PlyData

    v = PlyData.read(str(path))["vertex"]
    return np.stack([v["x"], v["y"], v["z"]], 1).astype(np.float64)


@pytest.fixture(scope="module")
def dense_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    true_depths = render_scene(root)
    summary = dense.main(root, CONF, image_dir=root / "images")
    return root, true_depths, summary


def test_depth_maps_match_the_true_depth(dense_run):
    root, true_depths, _ = dense_run
    errs, within, covered = [], [], []
    for name, gt in true_depths.items():
        dm = pycolmap.DepthMap()
        dm.read(root / "dense" / "stereo" / "depth_maps" / f"{name}.geometric.bin")
        d = np.asarray(dm.to_array())
        assert d.shape == gt.shape
        ok = (d > 0) & (gt > 0)
        rel = np.abs(d[ok] - gt[ok]) / gt[ok]
        errs.append(np.median(rel))
        within.append(np.mean(rel < 0.01))
        covered.append(ok.sum() / (gt > 0).sum())
    # measured: median relative error ~0.1-0.2 %, > 90 % of pixels within 1 %, ~70 % of the surface covered
    assert np.median(errs) < 0.005, errs
    assert np.min(within) > 0.8, within
    assert np.mean(covered) > 0.5, covered


def test_fused_cloud_is_accurate_and_complete(dense_run):
    root, true_depths, summary = dense_run
    xyz = read_ply_xyz(root / "dense" / "fused.ply")
    assert len(xyz) == summary["fused_points"] > 5000
    dist = surface_distance(xyz)
    assert np.median(dist) < 0.005  # scene units: the scene is ~3 wide, cameras ~2.5 away
    assert np.mean(dist < 0.02) > 0.95
    # completeness: true surface points (every 4th pixel of each view) with a fused point within 0.02
    from synthetic_scene import cameras

    gt_pts = []
    for cam, (_, depth) in zip(cameras(len(true_depths)), sorted(true_depths.items()), strict=True):
        ys, xs = np.nonzero(depth[::4, ::4])
        ys, xs = ys * 4, xs * 4
        pix = np.stack([xs + 0.5, ys + 0.5, np.ones(len(xs))], 1)
        Xc = pix @ np.linalg.inv(cam.K).T * depth[ys, xs][:, None]
        gt_pts.append((Xc - cam.t) @ cam.R)
    gt = torch.from_numpy(np.concatenate(gt_pts)).float()
    fused = torch.from_numpy(xyz).float()
    near = torch.cat([torch.cdist(g, fused).min(1).values for g in gt.split(2048)])
    assert (near < 0.02).float().mean() > 0.6


def test_mesh_written(dense_run):
    root, _, summary = dense_run
    assert summary["mesh"]["faces"] > 1000
    assert (root / "dense" / "mesh.ply").stat().st_size > 0


def test_rerun_recomputes_nothing_and_resumes_a_missing_map(dense_run):
    root, _, _ = dense_run
    maps = sorted((root / "dense" / "stereo" / "depth_maps").glob("*.photometric.bin"))
    before = {p: p.stat().st_mtime_ns for p in maps}
    maps[0].unlink()  # as if the run had been killed before this one was written
    summary = dense.main(root, CONF, image_dir=root / "images")
    after = {p: p.stat().st_mtime_ns for p in maps}
    assert maps[0].exists()
    assert [p for p in maps if after[p] != before[p]] == [maps[0]]
    assert summary["fused_points"] > 5000
    assert not list((root / "dense").rglob("*.tmp*"))


def test_other_settings_start_a_fresh_workspace(dense_run, tmp_path):
    root, _, _ = dense_run
    import shutil

    shutil.copytree(root / "sparse", tmp_path / "sparse")
    shutil.copytree(root / "dense", tmp_path / "dense")
    before = json.loads((tmp_path / "dense" / "state.json").read_text())["key"]
    dense.main(tmp_path, {**CONF, "num_src": 2, "mesher": "none"}, image_dir=root / "images")
    state = json.loads((tmp_path / "dense" / "state.json").read_text())
    assert state["key"] != before  # the settings are part of the workspace's fingerprint
    assert not (tmp_path / "dense" / "mesh.ply").exists()  # the old workspace went, mesh included


def test_plane_sweep_on_a_fronto_parallel_plane():
    # two views of a textured plane at depth 2, 10 % baseline: exact answer known per pixel
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(1, 1, 40, 60, generator=g)
    tex = torch.nn.functional.interpolate(tex, size=(120, 180), mode="bilinear", align_corners=False)[0, 0]
    K = torch.tensor([[100.0, 0, 60], [0, 100.0, 40], [0, 0, 1]])
    eye = torch.eye(3)
    # reference sees the texture directly; source is shifted by 0.2 along x: disparity 100·0.2/2 = 10 px
    ref_img = tex[20:100, 30:150].contiguous()
    src_img = tex[20:100, 40:160].contiguous()
    ref = stereo.View("ref", K, eye, torch.zeros(3), ref_img)
    src = stereo.View("src", K, eye, torch.tensor([-0.2, 0.0, 0.0]), src_img)
    depth, ncc = stereo.estimate_depth(ref, [src], (1.0, 5.0), {"num_depths": 48, "best_k": 1})
    inner = depth[10:-10, 10:-30]
    assert (inner > 0).float().mean() > 0.9
    assert (inner[inner > 0] - 2.0).abs().median() < 0.02
    n = stereo.normals_from_depth(depth, K)
    assert n[20:-20, 20:-40, 2].median() < -0.99  # facing the camera: −z


def test_cli_dense_without_model_is_one_line_error(tmp_path, capsys):
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, ["dense", str(tmp_path)])
    assert res.exit_code == 1
    assert "no sparse model" in res.output and "Traceback" not in res.output


def test_colmap_cuda_backend_says_why_not(dense_run, tmp_path):
    root, _, _ = dense_run
    import shutil

    if pycolmap.has_cuda:
        pytest.skip("pycolmap has CUDA here")
    shutil.copytree(root / "sparse", tmp_path / "sparse")
    with pytest.raises(Exception, match="without CUDA"):
        dense.main(tmp_path, {**CONF, "backend": "colmap-cuda"}, image_dir=root / "images")


@pytest.mark.data
def test_dense_on_a_real_run_and_its_report(temple_run, tmp_path):
    import shutil

    from typer.testing import CliRunner

    out = tmp_path / "temple"
    shutil.copytree(temple_run[0] / "middlebury" / "templeSparseRing", out)
    res = CliRunner().invoke(app, ["dense", str(out), "--max-size", "320", "--num-depths", "48", "--mesher", "none"])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "dense" / "summary.json").read_text())
    # the temple (thin columns, views 22.5° apart) is hard for window stereo: ~1000 points here
    assert summary["images"] == 16 and summary["fused_points"] > 300
    page = (out / "report.html").read_text()
    assert "Dense reconstruction" in page and "Fused point cloud" in page
    assert page.count("depth on ") == 16


def test_cli_dense_exits_3_when_a_photo_was_skipped(tmp_path):
    """A photo broken after the sparse run: a cloud from the others, its reason, exit status 3."""
    from typer.testing import CliRunner

    from lightsfm.cli import EXIT_PARTIAL

    render_scene(tmp_path, n=5)  # small and coarse: only the exit status and the record are tested here
    data = (tmp_path / "images" / "view04.png").read_bytes()
    (tmp_path / "images" / "view04.png").write_bytes(data[: len(data) // 3])
    args = ["dense", str(tmp_path), "--images", str(tmp_path / "images"), "--max-size", "160"]
    res = CliRunner().invoke(app, [*args, "--num-depths", "32", "--iterations", "1", "--mesher", "none"])
    assert res.exit_code == EXIT_PARTIAL, res.output
    assert "skipped view04.png: cannot be decoded" in res.output and "Traceback" not in res.output
    summary = json.loads((tmp_path / "dense" / "summary.json").read_text())
    assert list(summary["skipped"]) == ["view04.png"] and summary["images"] == 4 and summary["fused_points"] > 0


def test_masked_pixels_hold_no_depth(tmp_path):
    root, plain = tmp_path / "scene", tmp_path / "plain"
    render_scene(root, n=4)
    render_scene(plain, n=4)
    dense.main(plain, CONF, image_dir=plain / "images")
    names = sorted(p.name for p in (root / "images").iterdir())
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in names:
        w, h = Image.open(root / "images" / name).size
        keep = np.full((h, w), 255, np.uint8)
        keep[:, : w // 3] = 0  # the left third
        Image.fromarray(keep).save(masks / f"{name}.png")
    # the masks come from the run that made the model (its summary's settings)
    (root / "summary.json").write_text(json.dumps({"conf": {"features": {"masks": str(masks)}}}))
    dense.main(root, CONF, image_dir=root / "images")
    for name in names:
        d, d_plain = (_depth(r / "dense" / "stereo" / "depth_maps" / f"{name}.geometric.bin") for r in (root, plain))
        third = d.shape[1] // 3
        assert (d_plain[:, : third - 1] > 0).any()
        assert not (d[:, : third - 1] > 0).any()  # (one column of slack for the rounding of the resize)
        # the rest as without masks, less what the masked pixels no longer confirm
        assert (d[:, third + 1 :] > 0).sum() > 0.5 * (d_plain[:, third + 1 :] > 0).sum()


def _depth(path: Path) -> np.ndarray:
    dm = pycolmap.DepthMap()
    dm.read(path)
    return np.asarray(dm.to_array())
