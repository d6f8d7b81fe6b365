"""CI must fail, not skip, when the ground-truth scenes are missing (tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def _pytest(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """Runs a one-test suite marked 'data' under our conftest, with no scenes at LIGHTSFM_DATA."""
    shutil.copy(HERE / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_scene.py").write_text("import pytest\n\n\n@pytest.mark.data\ndef test_scene():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["LIGHTSFM_DATA"] = str(tmp_path / "missing")
    if ci is not None:
        env["CI"] = ci
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)


def test_ci_without_data_fails_with_a_clear_message(tmp_path: Path) -> None:
    r = _pytest(tmp_path, "true")
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, r.stdout + r.stderr
    assert "ground-truth scenes are not at" in r.stdout + r.stderr


def test_local_run_without_data_skips(tmp_path: Path) -> None:
    r = _pytest(tmp_path, None)
    assert r.returncode == 0 and "1 skipped" in r.stdout, r.stdout + r.stderr
