"""Adding photos to a finished model: the new ones register, the old poses stay put."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import FOUNTAIN
from lightsfm import colmap, config, pipeline, register
from lightsfm.errors import LightsfmError
from lightsfm.workspace import Workspace

pytestmark = pytest.mark.data
FIRST = [f"{i:04d}.jpg" for i in range(7)]
LATER = [f"{i:04d}.jpg" for i in range(7, 11)]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """The fountain's first 7 photos reconstructed, and a folder of the last 4."""
    root = tmp_path_factory.mktemp("register-run")
    first, later = root / "first", root / "later"
    for folder, names in ((first, FIRST), (later, LATER)):
        folder.mkdir()
        for n in names:
            (folder / n).symlink_to(FOUNTAIN / n)
    conf = config.load(overrides={"features": {"max_keypoints": 1024, "resize_max": 480}})
    pipeline.reconstruct(first, root / "out", conf)
    return root / "out", later


def _copy(run: Path, tmp_path: Path) -> Path:
    """A copy of the module's run that a test may change."""
    out = tmp_path / "out"
    shutil.copytree(run, out, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
    return out


def _poses(out: Path) -> dict[str, np.ndarray]:
    """Each registered photo's cam_from_world (3 × 4) in ``out``'s largest model."""
    rec = colmap.read_model(out / "sparse" / "0")
    return {im.name: im.cam_from_world().matrix() for im in rec.images.values() if im.has_pose}


def test_new_photos_register_into_the_fixed_model(first_run, tmp_path):
    run, later = first_run
    out = _copy(run, tmp_path)
    old = _poses(out)
    assert len(old) == len(FIRST)

    record = register.main(out, later)
    assert set(record["added"]) == {f"later/{n}" for n in LATER}
    assert len(record["registered"]) >= 3, record
    poses = _poses(out)
    for name, pose in old.items():  # held fixed
        assert np.abs(poses[name] - pose).max() < 1e-9
    assert set(record["registered"]) <= set(poses)
    with pytest.raises(LightsfmError, match="no photo that the model does not already have"):
        register.main(out, later)


def test_refine_all_adjusts_the_whole_grown_model(first_run, tmp_path):
    run, later = first_run
    out = _copy(run, tmp_path)
    old = _poses(out)
    record = register.main(out, later, refine_all=True)
    poses = _poses(out)
    # the old poses moved with the rest (the gauge held by three points, not by them) ...
    assert max(np.abs(poses[n] - p).max() for n, p in old.items()) > 1e-6
    # ... and the principal-point rule saw the grown camera: 7 views before, all 11 now
    (decision,) = record["refined_all"]["principal_points"]["cameras"].values()
    assert decision["views"] == len(poses) >= 10
    assert colmap.read_model(out / "sparse" / "0").compute_mean_reprojection_error() < 1.5


@pytest.mark.parametrize("at", ["sparse", Workspace.SPARSE_NEW])
def test_register_killed_while_swapping_the_models_then_run_again(first_run, tmp_path, at):
    # SIGKILL when the grown models are written in full and `at` is about to be renamed:
    # before the old models are moved aside, or between the two renames
    run, later = first_run
    out = _copy(run, tmp_path)
    before = {p.name: p.read_bytes() for p in (out / "sparse" / "0").iterdir()}
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from lightsfm import register\n"
        "real = os.replace\n"
        "def replace(a, b):\n"
        "    if Path(a).name == sys.argv[3]:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(a, b)\n"
        "os.replace = replace\n"
        "register.main(Path(sys.argv[1]), Path(sys.argv[2]))\n"
    )
    env = {**os.environ, "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, "-c", script, str(out), str(later), at], capture_output=True, env=env)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / Workspace.SPARSE_NEW / "0" / "images.bin").is_file()  # the grown model, written in full
    if at == "sparse":
        assert {p.name: p.read_bytes() for p in (out / "sparse" / "0").iterdir()} == before
    else:  # the only whole model is the one moved aside
        assert not (out / "sparse").exists() and (out / Workspace.SPARSE_OLD / "0" / "images.bin").is_file()
    record = register.main(out, later)  # run again: the old model back in place first, then grown
    assert len(record["registered"]) >= 3 and not (out / Workspace.SPARSE_OLD).exists()
    grown = colmap.read_model(out / "sparse" / "0")
    assert grown.num_reg_images() == len(FIRST) + len(record["registered"])
