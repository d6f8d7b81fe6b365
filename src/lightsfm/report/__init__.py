"""``lightsfm report OUT/``: one self-contained HTML page showing what a run did.

Summary, every image with its keypoints and registration status, match figures for
chosen pairs, the matrix of verified inliers between images, an interactive 3D view of
each model, and — given ground truth — its scores. Plotly's JavaScript is embedded, so
the file opens from disk with no network.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from .. import __version__, checks, colmap, mapping
from .. import evaluate as ev
from ..errors import LightsfmError
from ..io import name_to_key
from ..workspace import Workspace
from . import figures, scene

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{margin-bottom:4px} h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;font-size:14px} td,th{border:1px solid #ddd;padding:4px 8px;text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px} .card{width:320px;font-size:13px}
.card img{width:320px;border:1px solid #ccc} .ok{color:#2a7} .bad{color:#c33} .pair img{max-width:100%}
.note{color:#666;font-size:13px}
"""


def _gt_for(
    names: list[str], labels: Path, thresholds: Path | None, scene_key: str | None = None
) -> tuple[str, dict, Any] | None:
    """The ground-truth scene (``scene_key``, or the one whose image paths end with our names)."""
    gt_all = ev.read_poses(labels)
    for (ds, sc), poses in gt_all.items():
        if (scene_key and scene_key != f"{ds}/{sc}") or len(poses) != len(names):
            continue
        by_name = {}
        for path, pose in poses.items():
            for n in names:
                if path == n or path.endswith("/" + n):
                    by_name[n] = (path, pose)
        if len(by_name) == len(poses) and by_name:
            ths = ev.read_thresholds(thresholds).get((ds, sc)) if thresholds else None
            return f"{ds}/{sc}", by_name, ths or ev.default_thresholds(ds, sc)
    return None


def _table(rows: list[list[Any]], head: list[str]) -> str:
    h = "".join(f"<th>{html.escape(str(x))}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _plot(fig: go.Figure, div_id: str) -> str:
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, config={"responsive": True})


def _dense_section(output: Path, models: list, max_points: int) -> list[str]:
    """Depth maps and the fused cloud, when ``lightsfm dense`` ran here."""
    ws = Workspace(output)
    dense_dir = ws.dense
    if not ws.dense_summary_file.exists() or not ws.fused.exists():
        return []
    from ..dense import read_ply_points

    summary = json.loads(ws.dense_summary_file.read_text())
    mesh = summary.get("mesh") or {}
    parts = [
        "<h2>Dense reconstruction</h2>",
        f"<p>{summary['images']} depth maps, {summary['fused_points']} fused points"
        + (f", mesh {mesh['vertices']} vertices / {mesh['faces']} faces (dense/mesh.ply)" if mesh else "")
        + "; "
        + ", ".join(f"{k}: {v:.1f} s" for k, v in summary["timings_s"].items())
        + "</p><p class=note>undistorted image and its depth map after the consistency check "
        "(red near, blue far, black: no depth)</p><div class=grid>",
    ]
    for name, share in summary.get("valid_depth_share", {}).items():
        path = dense_dir / "stereo" / "depth_maps" / f"{name}.geometric.bin"
        if not path.exists():
            continue
        uri = figures.depth_figure(dense_dir / "images" / name, colmap.mvs.read_depth_map(path))
        if uri:
            parts.append(
                f"<div class=card style='width:480px'><img style='width:480px' src='{uri}'><br>"
                f"<b>{html.escape(name)}</b> — depth on {share * 100:.0f} % of pixels</div>"
            )
    parts.append("</div>")
    xyz, rgb = read_ply_points(ws.fused)
    rec = models[summary["conf"].get("model", 0)] if models else colmap.read_model(dense_dir / "sparse")
    fig, note = scene.figure(rec, max_points, points=(xyz, rgb))
    parts.append(f"<h3>Fused point cloud</h3><p class=note>{note}; dense/fused.ply</p>")
    parts.append(_plot(fig, "dense"))
    return parts


def main(
    output: Path,
    pairs: list[tuple[str, str]] | None = None,
    labels: Path | None = None,
    thresholds: Path | None = None,
    max_points: int = scene.MAX_POINTS,
    scene_key: str | None = None,
) -> Path:
    """Writes ``output/report.html`` for the run in ``output``; returns its path."""
    t0 = time.perf_counter()
    output = Path(output)
    ws = Workspace(output)
    summary = ws.summary()
    image_dir = ws.image_dir()
    names: list[str] = summary["image_names"]
    models = mapping.load_models(output)
    feature_file = output / summary["files"]["features"]
    with h5py.File(feature_file, "r") as f:
        kpts = {n: f[name_to_key(n)]["keypoints"][()] for n in names if name_to_key(n) in f}
    matched = colmap.matches_and_inliers(ws.database)
    model_of = {}
    for k, rec in enumerate(models):
        for im in rec.images.values():
            if im.has_pose:
                model_of.setdefault(im.name, k)

    parts = [
        f"<h1>lightsfm report</h1><p class=note>{html.escape(str(output.resolve()))} — "
        f"lightsfm {__version__}, pycolmap {colmap.version()}, {time.strftime('%Y-%m-%d %H:%M')}</p>"
    ]

    # Summary
    rows = [
        [
            f"sparse/{k}",
            f"{m['registered']}/{summary['images']}",
            m["points"],
            f"{m['mean_track_length']:.2f}",
            f"{m['mean_reprojection_error']:.3f}",
        ]
        for k, m in enumerate(summary["models"])
    ]
    parts.append("<h2>Summary</h2>")
    parts.append(_table(rows, ["model", "registered", "points", "mean track length", "mean reproj. error (px)"]))
    parts.append(
        "<p>"
        + ", ".join(f"{k}: {v:.1f} s" for k, v in summary["timings_s"].items())
        + f"; pairs matched {summary['pairs']}, verified {summary.get('verified_pairs', '?')}</p>"
    )
    mapper = summary.get("mapper") or {}
    if mapper.get("kept"):
        weighed = ", ".join(f"{k} {v}" for k, v in mapper.get("observations", {}).items())
        parts.append(f"<p>mapper: {html.escape(mapper['kept'])} (observations of each mapper's model: {weighed})</p>")
        fold = checks.warning(mapper)
        if fold:
            parts.append(f'<p class="warning"><b>Warning:</b> {html.escape(fold)}</p>')
    conf = summary.get("conf", {})
    parts.append(
        "<details><summary>settings</summary><pre>" + html.escape(json.dumps(conf, indent=1)) + "</pre></details>"
    )

    # Ground truth
    gt = _gt_for(names, Path(labels), Path(thresholds) if thresholds else None, scene_key) if labels else None
    per_image_err: dict[str, float] = {}
    if labels and gt is None:
        raise LightsfmError(f"{labels}: no scene lists exactly the images of this run")
    if gt:
        key, by_name, ths = gt
        poses = colmap.poses_from_models(models, names)
        res = ev.evaluate_scene(
            {p: pose for p, pose in by_name.values()},
            {by_name[n][0]: poses.get(n, ev.placeholder()) for n in by_name},
            ths,
            key,
        )
        for n in poses:  # median relative-rotation error of each registered image to the others
            errs = [
                ev.pose_errors(*ev.relative_pose(by_name[n][1], by_name[m][1]), *ev.relative_pose(poses[n], poses[m]))[
                    0
                ]
                for m in poses
                if m != n
            ]
            if errs:
                per_image_err[n] = float(np.median(errs))
        parts.append(f"<h2>Ground truth: {html.escape(key)}</h2>")
        parts.append(
            _table(
                [
                    [
                        f"{res['mAA']:.3f}",
                        f"{res['mAA_R']:.3f}",
                        f"{res['mAA_t']:.3f}",
                        f"{res['registered']}/{res['images']}",
                        f"{res['auc5']:.3f}",
                        f"{res['auc10']:.3f}",
                        f"{res['auc20']:.3f}",
                    ]
                ],
                ["mAA", "mAA_R", "mAA_t", "registered", "AUC@5°", "AUC@10°", "AUC@20°"],
            )
        )
        fig = go.Figure(
            go.Scatter(
                x=[f"{r:g}° / {t:.3g}" for r, t in zip(*ths, strict=True)], y=res["accuracy"], mode="lines+markers"
            )
        )
        fig.update_layout(
            xaxis_title="threshold (rotation / translation)",
            yaxis_title="accuracy",
            yaxis_range=[0, 1.02],
            height=320,
            margin={"t": 10},
        )
        parts.append(_plot(fig, "accuracy"))

    # Images
    parts.append(f"<h2>Images ({len(names) + len(summary['skipped'])})</h2><div class=grid>")
    verified_count = {n: 0 for n in names}
    for (a, b), (_, inl) in matched.items():
        if inl.any():
            verified_count[a] = verified_count.get(a, 0) + 1
            verified_count[b] = verified_count.get(b, 0) + 1
    for n in names:
        fig_uri = figures.keypoints_figure(image_dir / n, kpts[n]) if n in kpts else None
        if n in model_of:
            status = f"<span class=ok>registered in sparse/{model_of[n]}</span>"
            if n in per_image_err:
                status += f"; median rotation error {per_image_err[n]:.2f}°"
        elif n not in kpts:
            status = "<span class=bad>no features</span>"
        elif verified_count.get(n, 0) == 0:
            status = "<span class=bad>not registered: no verified pair</span>"
        else:
            status = f"<span class=bad>not registered</span> ({verified_count[n]} verified pairs)"
        img = f"<img src='{fig_uri}' alt='{html.escape(n)}'>" if fig_uri else ""
        parts.append(
            f"<div class=card>{img}<br><b>{html.escape(n)}</b> — {len(kpts.get(n, []))} keypoints<br>{status}</div>"
        )
    for n, reason in summary["skipped"].items():
        parts.append(
            f"<div class=card><b>{html.escape(n)}</b><br><span class=bad>skipped: {html.escape(reason)}</span></div>"
        )
    parts.append("</div>")

    # Pair matrix
    idx = {n: i for i, n in enumerate(names)}
    mat = np.zeros((len(names), len(names)))
    for (a, b), (_, inl) in matched.items():
        if a in idx and b in idx:
            mat[idx[a], idx[b]] = mat[idx[b], idx[a]] = inl.sum()
    fig = go.Figure(
        go.Heatmap(
            z=mat, x=names, y=names, colorscale="Viridis", hovertemplate="%{y} – %{x}: %{z} inliers<extra></extra>"
        )
    )
    fig.update_layout(height=min(900, 200 + 18 * len(names)), margin={"t": 10}, yaxis_autorange="reversed")
    parts.append("<h2>Verified inliers between images</h2>" + _plot(fig, "pairs"))

    # Match figures
    chosen: list[tuple[str, tuple[str, str]]] = []
    verified = [(p, inl.sum()) for p, (_, inl) in matched.items() if inl.sum() > 0]
    if verified:
        chosen.append(("most inliers", max(verified, key=lambda x: x[1])[0]))
        chosen.append(("fewest inliers (verified)", min(verified, key=lambda x: x[1])[0]))
    rejected = [(p, len(m)) for p, (m, inl) in matched.items() if not inl.any() and len(m)]
    if rejected:
        chosen.append(("rejected by RANSAC", max(rejected, key=lambda x: x[1])[0]))
    for a, b in pairs or []:
        key = (a, b) if (a, b) in matched else (b, a)
        if key not in matched:
            raise LightsfmError(f"pair {a} – {b} was not matched in this run")
        chosen.append(("requested", key))
    parts.append(
        "<h2>Matches</h2><p class=note>green: verified inliers; red: rejected by RANSAC (at most 300 lines drawn)</p>"
    )
    for label, (a, b) in chosen:
        m, inl = matched[(a, b)]
        uri = figures.matches_figure(image_dir / a, image_dir / b, kpts[a], kpts[b], m, inl)
        if uri:
            parts.append(
                f"<div class=pair><p><b>{html.escape(label)}</b>: {html.escape(a)} – {html.escape(b)}: "
                f"{inl.sum()} / {len(m)} matches verified</p><img src='{uri}'></div>"
            )

    # 3D
    parts.append("<h2>3D models</h2>")
    for k, rec in enumerate(models):
        fig, note = scene.figure(rec, max_points)
        parts.append(
            f"<h3>sparse/{k}: {rec.num_reg_images()} cameras</h3><p class=note>{note}; "
            "drag to rotate, scroll to zoom, hover a red camera centre for its image</p>"
        )
        parts.append(_plot(fig, f"model{k}"))

    parts += _dense_section(output, models, max_points)

    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>lightsfm report</title>"
        f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body>"
        + "\n".join(parts)
        + f"<p class=note>written in {time.perf_counter() - t0:.1f} s</p></body></html>"
    )
    path = ws.report
    tmp = ws.tmp(path)
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
