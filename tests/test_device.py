"""oneDNN products give what torch's default gives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightsfm import device


@pytest.mark.parametrize(("m", "k", "n"), [(2048, 128, 2048), (2048, 256, 256), (512, 64, 300), (3, 2048, 128)])
def test_linear_is_f_linear(m, k, n):
    g = torch.Generator().manual_seed(m + k + n)
    x, w, b = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g), torch.randn(n, generator=g)
    want = F.linear(x.double(), w.double(), b.double())
    for bias in (b, None):
        got = device.linear(x, w, bias)
        assert got.layout == torch.strided and got.shape == (m, n)
        assert torch.allclose(got.double(), want - (0 if bias is not None else b.double()), rtol=1e-4, atol=1e-4)
    x3 = x.view(1, m, k)  # batched rows, as LightGlue's layers get them
    assert torch.allclose(device.linear(x3, w, b), device.linear(x, w, b).view(1, m, n))
    # descriptors of 128 or fewer dimensions: the same bits as torch's own product
    if k <= 128:
        assert torch.equal(device.linear(x, w), x @ w.T)
