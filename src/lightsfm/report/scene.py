"""The interactive 3D view: sparse points in their colours and cameras as frusta (Plotly)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go

if TYPE_CHECKING:
    import pycolmap

MAX_POINTS = 50_000  # more makes the browser sluggish; the view says when it subsamples


def frustum_lines(rec: pycolmap.Reconstruction, scale: float) -> tuple[list, list, list, list]:
    """Line segments (x, y, z with None separators) of every registered camera's frustum."""
    xs, ys, zs, names = [], [], [], []
    for image in rec.images.values():
        if not image.has_pose:
            continue
        cam = image.camera
        w, h = cam.width, cam.height
        corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
        rays = np.array([list(cam.cam_from_img(c)) + [1.0] for c in corners]) * scale
        world_from_cam = image.cam_from_world().inverse()
        c = np.asarray(world_from_cam.translation)
        pts = np.array([world_from_cam * r for r in rays])
        for p in pts:
            xs += [c[0], p[0], None]
            ys += [c[1], p[1], None]
            zs += [c[2], p[2], None]
        loop = [*pts, pts[0]]
        xs += [p[0] for p in loop] + [None]
        ys += [p[1] for p in loop] + [None]
        zs += [p[2] for p in loop] + [None]
        names.append(image.name)
    return xs, ys, zs, names


def figure(
    rec: pycolmap.Reconstruction, max_points: int = MAX_POINTS, points: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[go.Figure, str]:
    """The 3D figure of one model (or of ``points``, (xyz, rgb), with its cameras), and a note
    saying whether points were subsampled."""
    if points is None:
        ids = np.array(list(rec.points3D.keys()))
        xyz = np.array([rec.points3D[i].xyz for i in ids]).reshape(-1, 3)
        rgb = np.array([rec.points3D[i].color for i in ids]).reshape(-1, 3)
    else:
        xyz, rgb = points
    note = f"{len(xyz)} points"
    if len(xyz) > max_points:
        keep = np.random.default_rng(0).choice(len(xyz), max_points, replace=False)
        note = f"{max_points} of {len(xyz)} points shown (random subsample for display)"
        xyz, rgb = xyz[keep], rgb[keep]
    centers = np.array([im.projection_center() for im in rec.images.values() if im.has_pose]).reshape(-1, 3)
    # Robust scene extent for the frustum size: cameras and the bulk of the points.
    extent = np.linalg.norm(
        np.percentile(np.vstack([xyz, centers]), 95, 0) - np.percentile(np.vstack([xyz, centers]), 5, 0)
    )
    xs, ys, zs, names = frustum_lines(rec, 0.04 * max(extent, 1e-6))
    fig = go.Figure()
    fig.add_trace(
        go.Scatter3d(
            x=xyz[:, 0],
            y=xyz[:, 1],
            z=xyz[:, 2],
            mode="markers",
            name="points",
            marker={"size": 1.5, "color": [f"rgb({r},{g},{b})" for r, g, b in rgb]},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter3d(
            x=xs, y=ys, z=zs, mode="lines", name="cameras", line={"color": "red", "width": 2}, hoverinfo="skip"
        )
    )
    fig.add_trace(
        go.Scatter3d(
            x=centers[:, 0],
            y=centers[:, 1],
            z=centers[:, 2],
            mode="markers",
            name="camera centres",
            marker={"size": 4, "color": "red"},
            text=names,
            hovertemplate="%{text}<extra></extra>",
        )
    )
    fig.update_layout(
        scene={
            "aspectmode": "data",
            "xaxis": {"visible": False},
            "yaxis": {"visible": False},
            "zaxis": {"visible": False},
        },
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        height=640,
        legend={"x": 0, "y": 1},
    )
    return fig, note
