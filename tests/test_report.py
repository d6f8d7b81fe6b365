"""The HTML report opened in a real headless Chromium, the exports read back, the live viewer served."""

from __future__ import annotations

import io
import json
import re
import shutil
import socket
import urllib.request

import numpy as np
import pycolmap
import pytest
from PIL import Image

from conftest import ROOT
from lightsfm import evaluate as ev
from lightsfm import export

pytestmark = pytest.mark.data
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "outputs" / "test-artifacts"


@pytest.fixture(scope="module")
def scene_dir(temple_run):
    out, _, _ = temple_run
    return out / "middlebury" / "templeSparseRing"


def figures_expected(page: str) -> int:
    """16 keypoint thumbnails + the pairs with most and fewest inliers (+ one RANSAC rejected, if any)."""
    return 16 + 2 + ("<b>rejected by RANSAC</b>" in page)


def test_report_is_self_contained(scene_dir):
    page = (scene_dir / "report.html").read_text()
    # everything embedded: no script or stylesheet fetched from anywhere
    assert not re.search(r"<script[^>]+src=", page) and not re.search(r"<link[^>]+href=[\"']?https?:", page)
    assert page.count("data:image/jpeg;base64,") >= figures_expected(page)
    assert "Ground truth: middlebury/templeSparseRing" in page
    assert "registered in sparse/0" in page


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (install.sh --dev installs it)")
def test_report_renders_in_chromium(scene_dir):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--use-gl=swiftshader",
                "--enable-unsafe-swiftshader",
            ],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("**/*", lambda r: r.abort() if not r.request.url.startswith(("file:", "data:")) else r.continue_())
        page.goto((scene_dir / "report.html").as_uri())
        page.wait_for_selector("#model0 canvas", timeout=30_000)
        page.wait_for_timeout(1500)
        view = page.locator("#model0")
        view.scroll_into_view_if_needed()
        png = view.screenshot()
        n_figures = page.locator("img").count()
        browser.close()
    assert not errors, errors
    assert n_figures >= figures_expected((scene_dir / "report.html").read_text())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "report-3d.png").write_bytes(png)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    non_white = (rgb.sum(axis=2) < 720).mean()
    assert non_white > 0.002, f"3D view looks blank ({non_white:.4f} of pixels drawn)"
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # points in their colours, not one flat fill


def test_exports_read_back(scene_dir):
    rec = pycolmap.Reconstruction(scene_dir / "sparse" / "0")
    for fmt in ("colmap-txt", "colmap-bin"):
        back = pycolmap.Reconstruction(export.main(scene_dir, fmt) / "0")
        assert back.num_reg_images() == rec.num_reg_images() and back.num_points3D() == rec.num_points3D()
    from plyfile import PlyData

    ply = PlyData.read(str(export.main(scene_dir, "ply") / "0" / "points.ply"))
    assert ply["vertex"].count == rec.num_points3D()
    assert {"x", "y", "z", "red", "green", "blue"} <= set(ply["vertex"].data.dtype.names)

    ns = json.loads(export.main(scene_dir, "nerfstudio").read_text())
    assert ns["camera_model"] == "OPENCV" and len(ns["frames"]) == rec.num_reg_images()
    for fr in ns["frames"]:
        assert {"file_path", "transform_matrix", "fl_x", "fl_y", "cx", "cy", "w", "h"} <= fr.keys()
        m = np.array(fr["transform_matrix"])
        assert m.shape == (4, 4) and np.allclose(m[3], [0, 0, 0, 1])
        assert np.allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-6)
        assert (scene_dir / "export" / "nerfstudio" / fr["file_path"]).exists()
    # camera centre agrees with the model
    im = next(i for i in rec.images.values() if i.has_pose)
    fr = next(f for f in ns["frames"] if f["file_path"].endswith(im.name))
    assert np.allclose(np.array(fr["transform_matrix"])[:3, 3], im.projection_center(), atol=1e-6)

    poses = ev.read_poses(export.main(scene_dir, "imc-csv"))
    (scene_key,) = poses
    assert len(poses[scene_key]) == 16


def test_live_viewer_serves_locally(scene_dir):
    from lightsfm import view

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = view.serve(scene_dir, "127.0.0.1", port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        server.stop()
