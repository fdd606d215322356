"""Payload encoders produce real bytes and what the cloud decodes."""

from __future__ import annotations

import torch

from cemasim.data.encoding import encode, to_uint8


def images(n: int = 4, c: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(n, c, 7, 7, generator=g), size=28, mode="bilinear")
    return to_uint8(smooth)


def test_raw_is_pixels_and_lossless():
    x = images()
    sizes, out = encode(x, "raw")
    assert sizes == [784] * 4 and torch.equal(out, x)


def test_png_is_lossless_and_compresses_smooth_images():
    x = images()
    sizes, out = encode(x, "png")
    assert torch.equal(out, x)
    assert all(0 < s < 784 for s in sizes)


def test_jpeg_is_lossy_and_quality_trades_size():
    for c in (1, 3):
        x = images(c=c)
        hi_sizes, hi = encode(x, "jpeg", 95)
        lo_sizes, lo = encode(x, "jpeg", 20)
        assert hi.shape == x.shape and hi.dtype == torch.uint8
        assert sum(lo_sizes) < sum(hi_sizes)
        err_hi = (hi.float() - x.float()).abs().mean()
        err_lo = (lo.float() - x.float()).abs().mean()
        assert 0 < err_hi < err_lo
