"""One bundle adjustment of a finished model, with the covariance of what it refined."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pycolmap


def _adjuster(
    rec: pycolmap.Reconstruction,
    refine_principal_point: bool,
    refine_focal_length: bool,
    refine_extra_params: bool,
    num_threads: int,
    max_iterations: int | None = None,
    function_tolerance: float = 0.0,
) -> tuple[Any, Any]:
    """A bundle adjuster of every registered image and point of ``rec`` (gauge: three
    points), and its options. ``max_iterations``: Ceres' limit (None: pycolmap's, 100);
    ``function_tolerance``: Ceres' (see ``adjust``)."""
    opts = pycolmap.BundleAdjustmentOptions()
    if max_iterations:
        opts.ceres.solver_options.max_num_iterations = max_iterations
    opts.ceres.solver_options.function_tolerance = function_tolerance
    opts.print_summary = False
    opts.refine_principal_point = refine_principal_point
    opts.refine_focal_length = refine_focal_length
    opts.refine_extra_params = refine_extra_params
    opts.ceres.solver_options.num_threads = num_threads
    ba_conf = pycolmap.BundleAdjustmentConfig()
    for image_id in rec.reg_image_ids():
        ba_conf.add_image(image_id)
    ba_conf.fix_gauge(pycolmap.BundleAdjustmentGauge.THREE_POINTS)
    return pycolmap.create_default_ceres_bundle_adjuster(opts, ba_conf, rec), opts


def adjust(
    rec: pycolmap.Reconstruction,
    refine_focal_length: bool,
    refine_extra_params: bool,
    num_threads: int,
    function_tolerance: float = 0.0,
) -> pycolmap.Reconstruction:
    """A copy of ``rec`` after one bundle adjustment of all its registered images and points
    (principal points held). ``function_tolerance``: Ceres' (stop once an iteration lowers
    the cost by less than this share; 0: at the iteration limit)."""
    out = pycolmap.Reconstruction(rec)
    level = pycolmap.logging.minloglevel
    try:
        with _stderr_silenced(level >= 1):  # these calls log their INFO lines whatever the level
            adjuster, _ = _adjuster(
                out, False, refine_focal_length, refine_extra_params, num_threads, None, function_tolerance
            )
            adjuster.solve()
    finally:
        pycolmap.logging.minloglevel = level  # … and turn them back on for later calls
    return out


def adjust_with_principal_points(
    rec: pycolmap.Reconstruction,
    refine_focal_length: bool,
    refine_extra_params: bool,
    num_threads: int,
    max_iterations: int | None = None,
    function_tolerance: float = 0.0,
) -> tuple[pycolmap.Reconstruction, dict[int, np.ndarray]]:
    """A copy of ``rec`` after one bundle adjustment of all its registered images that also
    refines the principal points, and the standard deviation of each camera's principal
    point (x, y) from the adjustment's own covariance, in units of the residuals (a camera
    whose covariance could not be had is left out)."""
    trial = pycolmap.Reconstruction(rec)
    level = pycolmap.logging.minloglevel
    try:
        with _stderr_silenced(level >= 1):
            adjuster, opts = _adjuster(
                trial, True, refine_focal_length, refine_extra_params, num_threads, max_iterations, function_tolerance
            )
            adjuster.solve()
            cov = pycolmap.estimate_ba_covariance(
                pycolmap.BACovarianceOptions({"params": pycolmap.BACovarianceOptionsParams.ALL}), trial, adjuster
            )
    finally:
        pycolmap.logging.minloglevel = level
    return trial, _principal_point_sigmas(trial, cov, opts)


def _principal_point_sigmas(rec: pycolmap.Reconstruction, cov: Any, opts: Any) -> dict[int, np.ndarray]:
    """Standard deviation of each camera's principal point (x, y), in units of the residuals."""
    out = {}
    for camera_id, cam in rec.cameras.items():
        free = [
            i
            for i in range(len(cam.params))
            if i in cam.principal_point_idxs()
            or (i in cam.focal_length_idxs() and opts.refine_focal_length)
            or (i in cam.extra_params_idxs() and opts.refine_extra_params)
        ]
        c = cov.get_other_params_cov(cam.params) if cov is not None else None
        if c is None or c.shape[0] != len(free):
            continue
        at = [free.index(i) for i in cam.principal_point_idxs()]
        out[camera_id] = np.sqrt(np.clip(np.diag(c)[at], 0, None))
    return out


@contextmanager
def _stderr_silenced(silence: bool) -> Iterator[None]:
    """Points file descriptor 2 at /dev/null meanwhile: COLMAP's C++ logs go there directly."""
    if not silence:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
