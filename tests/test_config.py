"""Settings: presets, TOML files and every command-line flag land on a real setting."""

from __future__ import annotations

import pytest

from lightsfm import cli, config
from lightsfm.errors import LightsfmError


def test_every_flag_is_generated_from_a_declared_setting():
    """Stages and plug-ins declare their flags next to their settings; the CLI builds them."""
    for section in ("device", "features", "pairs", "matching", "verify", "mapping", "dense"):
        specs = config.flag_specs(section)
        assert specs, section
        flags = [decl.split("/")[0] for _, decl, _, _ in specs]
        assert len(set(flags)) == len(flags), f"two settings of {section} share a flag"


def test_flags_and_set_reach_the_settings(tmp_path):
    from typer.testing import CliRunner

    seen = {}

    @cli.app.command("probe-settings")
    @cli.with_settings("features", "mapping")
    def probe(conf=None) -> None:
        seen.update(conf())

    try:
        result = CliRunner().invoke(
            cli.app,
            [
                "probe-settings",
                "--max-keypoints",
                "512",
                "--fix-focal",
                "--set",
                "mapping.seed=7",
                "--set",
                "features.model=aliked-t16",
            ],
        )
        assert result.exit_code == 0, result.output
        assert seen["features"]["max_keypoints"] == 512 and seen["features"]["model"] == "aliked-t16"
        assert seen["mapping"]["refine_focal_length"] is False and seen["mapping"]["seed"] == 7
        bad = CliRunner().invoke(cli.app, ["probe-settings", "--set", "mapping.sed=7"])
        assert bad.exit_code != 0
    finally:
        cli.app.registered_commands.pop()


def test_presets_and_toml(tmp_path):
    assert config.load("fast")["matching"]["name"] == "mnn"
    f = tmp_path / "my.toml"
    f.write_text('[verify]\ncamera_model = "PINHOLE"\n[mapping]\ninit_min_tri_angle = 8.0\n')
    conf = config.load("fast", f, {"verify": {"min_inliers": 30}})
    assert conf["verify"]["camera_model"] == "PINHOLE" and conf["verify"]["min_inliers"] == 30
    assert conf["mapping"]["init_min_tri_angle"] == 8.0 and conf["matching"]["name"] == "mnn"


def test_unknown_settings_are_one_line_errors(tmp_path):
    with pytest.raises(LightsfmError, match="unknown preset"):
        config.load("turbo")
    with pytest.raises(LightsfmError, match="unknown setting 'max_kp'"):
        config.load(overrides={"features": {"max_kp": 1}})
    (tmp_path / "bad.toml").write_text("[features\n")
    with pytest.raises(LightsfmError, match="cannot read config"):
        config.load(file=tmp_path / "bad.toml")
