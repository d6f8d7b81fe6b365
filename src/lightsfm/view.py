"""``lightsfm view OUT/``: a live 3D viewer (viser) for exploring large models in the browser."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import mapping
from .errors import LightsfmError


def serve(output: Path, host: str = "127.0.0.1", port: int = 8080, max_points: int = 500_000):
    """Starts a viser server showing every model of ``output``; returns the server (non-blocking)."""
    try:
        import viser
    except ImportError:
        raise LightsfmError("the live viewer needs viser: pip install 'lightsfm[viewer]'") from None
    models = mapping.load_models(output)
    if not models:
        raise LightsfmError(f"{output}: no model under sparse/; run `lightsfm reconstruct` first")
    server = viser.ViserServer(host=host, port=port, verbose=False)
    for k, rec in enumerate(models):
        ids = np.array(list(rec.points3D.keys()))
        if len(ids) > max_points:
            ids = np.random.default_rng(0).choice(ids, max_points, replace=False)
        xyz = np.array([rec.points3D[i].xyz for i in ids], np.float32).reshape(-1, 3)
        rgb = np.array([rec.points3D[i].color for i in ids], np.uint8).reshape(-1, 3)
        extent = float(np.linalg.norm(np.percentile(xyz, 95, 0) - np.percentile(xyz, 5, 0))) if len(xyz) else 1.0
        server.scene.add_point_cloud(f"/model{k}/points", xyz, rgb, point_size=0.002 * extent)
        for image in rec.images.values():
            if not image.has_pose:
                continue
            w2c = image.cam_from_world().inverse()  # world_from_cam
            q = w2c.rotation.quat  # x, y, z, w
            cam = image.camera
            fov = 2 * np.arctan2(cam.height / 2, cam.focal_length_y)
            server.scene.add_camera_frustum(
                f"/model{k}/cameras/{image.name}",
                fov=float(fov),
                aspect=cam.width / cam.height,
                scale=0.03 * extent,
                wxyz=(q[3], q[0], q[1], q[2]),
                position=tuple(w2c.translation),
                color=(220, 40, 40),
            )
    return server


def main(output: Path, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Serves until interrupted."""
    serve(output, host, port)
    print(f"viewer on http://{host}:{port} (Ctrl+C to stop)")
    while True:
        time.sleep(3600)
