"""Settings: presets, TOML files and every command-line flag land on a real setting."""

from __future__ import annotations

import pytest

from lightsfm import cli, config
from lightsfm.errors import LightsfmError


def test_every_flag_sets_an_existing_setting():
    defaults = config.defaults()
    for flag, path in cli.FLAGS.items():
        *section, key = path
        node = defaults[section[0]] if section else defaults
        assert key in node, f"--{flag.replace('_', '-')} maps to missing setting {'.'.join(path)}"
    conf = config.load("default", overrides=cli._overrides({"max_keypoints": 512, "refine_focal": False}))
    assert conf["features"]["max_keypoints"] == 512 and conf["mapping"]["refine_focal_length"] is False


def test_presets_and_toml(tmp_path):
    assert config.load("fast")["matching"]["model"] == "mnn"
    f = tmp_path / "my.toml"
    f.write_text('[verify]\ncamera_model = "PINHOLE"\n[mapping]\ninit_min_tri_angle = 8.0\n')
    conf = config.load("fast", f, {"verify": {"min_inliers": 30}})
    assert conf["verify"]["camera_model"] == "PINHOLE" and conf["verify"]["min_inliers"] == 30
    assert conf["mapping"]["init_min_tri_angle"] == 8.0 and conf["matching"]["model"] == "mnn"


def test_unknown_settings_are_one_line_errors(tmp_path):
    with pytest.raises(LightsfmError, match="unknown preset"):
        config.load("turbo")
    with pytest.raises(LightsfmError, match="unknown setting 'max_kp'"):
        config.load(overrides={"features": {"max_kp": 1}})
    (tmp_path / "bad.toml").write_text("[features\n")
    with pytest.raises(LightsfmError, match="cannot read config"):
        config.load(file=tmp_path / "bad.toml")
