"""The 4 validation corruptions against a transcription of Hendrycks' make_cifar_c.py / make_imagenet_c.py.

The references below follow the originals line by line in numpy, OpenCV and scipy
(skimage.filters.gaussian is scipy.ndimage.gaussian_filter with mode 'nearest', truncate 4, per
spatial axis; matplotlib's rgb_to_hsv sets hue 0 on grey pixels as skimage does).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import hsv_to_rgb, rgb_to_hsv

from cemasim.data import validation_corruptions as vc
from cemasim.data.corruptions import CORRUPTION_NAMES, _skimage_gaussian, corrupt

from .test_corruptions import gen, smooth_images


def _sk_gaussian(a: np.ndarray, sigma: float) -> np.ndarray:
    from scipy import ndimage

    sig = (sigma, sigma) + (0,) * (a.ndim - 2)
    return ndimage.gaussian_filter(a, sig, mode="nearest", truncate=4.0)


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x[0].permute(1, 2, 0).double().numpy()


def test_validation_corruptions_are_apart_from_the_test_ones() -> None:
    assert vc.VALIDATION_CORRUPTIONS == ("speckle_noise", "gaussian_blur", "spatter", "saturate")
    assert not set(vc.VALIDATION_CORRUPTIONS) & set(CORRUPTION_NAMES)


@pytest.mark.parametrize("table", ["SPECKLE_NOISE", "GAUSSIAN_BLUR", "SPATTER", "SATURATE"])
def test_both_tables(table: str) -> None:
    assert len(getattr(vc, table)) == len(getattr(vc, table + "_IMAGENET")) == 5


@pytest.mark.parametrize("size", [28, 96])
def test_speckle_matches_reference(size: int) -> None:
    x = smooth_images(1, 3, size, size, seed=1)
    table = vc.SPECKLE_NOISE if size <= 64 else vc.SPECKLE_NOISE_IMAGENET
    for s in range(1, 6):
        noise = torch.randn(x.shape, generator=gen(s))[0].permute(1, 2, 0).double().numpy()
        ref = np.clip(_hwc(x) + _hwc(x) * noise * table[s - 1], 0, 1)
        np.testing.assert_allclose(_hwc(corrupt(x, "speckle_noise", s, gen(s))), ref, atol=1e-6)


@pytest.mark.parametrize("size", [28, 96])
def test_gaussian_blur_matches_skimage(size: int) -> None:
    pytest.importorskip("scipy.ndimage")
    x = smooth_images(1, 3, size, size, seed=2) ** 3  # some structure to blur
    table = vc.GAUSSIAN_BLUR if size <= 64 else vc.GAUSSIAN_BLUR_IMAGENET
    for s in range(1, 6):
        ref = np.clip(_sk_gaussian(_hwc(x), table[s - 1]), 0, 1)
        np.testing.assert_allclose(_hwc(corrupt(x, "gaussian_blur", s, gen(s))), ref, atol=1e-5)


def _saturate_reference(img: np.ndarray, c: tuple[float, float]) -> np.ndarray:
    hsv = rgb_to_hsv(img)
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * c[0] + c[1], 0, 1)
    return np.clip(hsv_to_rgb(hsv), 0, 1)


@pytest.mark.parametrize("size", [28, 96])
def test_saturate_matches_hsv_round_trip(size: int) -> None:
    x = smooth_images(1, 3, size, size, seed=3)
    x[..., :4, :4] = 0.5  # grey pixels: hue 0 in skimage
    table = vc.SATURATE if size <= 64 else vc.SATURATE_IMAGENET
    for s in range(1, 6):
        ref = _saturate_reference(_hwc(x), table[s - 1])
        np.testing.assert_allclose(_hwc(corrupt(x, "saturate", s, gen(s))), ref, atol=1e-5)


def test_saturate_on_grey_images_acts_only_through_the_offset() -> None:
    x = smooth_images(2, 1, 28, 28, seed=5)
    for s in (1, 2, 3):
        torch.testing.assert_close(corrupt(x, "saturate", s, gen(s)), x)
    for s in (4, 5):
        shift = vc.SATURATE[s - 1][1]
        torch.testing.assert_close(corrupt(x, "saturate", s, gen(s)), x * (1 - 0.701 * shift), atol=1e-6, rtol=0)


# --- spatter: the OpenCV pipeline of the originals -------------------------------------------------


def _spatter_reference(img: np.ndarray, c: tuple, liquid_noise: np.ndarray) -> np.ndarray:
    """make_*_c.py spatter with np.random.normal replaced by the given standard normal draws."""
    import cv2

    x = img.astype(np.float32)
    liquid_layer = liquid_noise * c[1] + c[0]
    liquid_layer = _sk_gaussian(liquid_layer, c[2])
    liquid_layer[liquid_layer < c[3]] = 0
    if c[5] == 0:
        liquid_layer = (np.clip(liquid_layer, 0, 1) * 255).astype(np.uint8)
        dist = 255 - cv2.Canny(liquid_layer, 50, 150)
        dist = cv2.distanceTransform(dist, cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.blur(dist, (3, 3)).astype(np.uint8)
        dist = cv2.equalizeHist(dist)
        ker = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.filter2D(dist, cv2.CV_8U, ker)
        dist = cv2.blur(dist, (3, 3)).astype(np.float32)
        m = cv2.cvtColor(liquid_layer * dist, cv2.COLOR_GRAY2BGRA)
        m /= np.max(m, axis=(0, 1))
        m *= c[4]
        color = np.concatenate((175 / 255.0 * np.ones_like(m[..., :1]), 238 / 255.0 * np.ones_like(m[..., :1]),
                                238 / 255.0 * np.ones_like(m[..., :1])), axis=2)
        color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
        x = cv2.cvtColor(x, cv2.COLOR_BGR2BGRA)
        return cv2.cvtColor(np.clip(x + m * color, 0, 1), cv2.COLOR_BGRA2BGR)
    m = np.where(liquid_layer > c[3], 1, 0)
    m = _sk_gaussian(m.astype(np.float32), c[4])
    m[m < 0.8] = 0
    color = np.concatenate((63 / 255.0 * np.ones_like(x[..., :1]), 42 / 255.0 * np.ones_like(x[..., :1]),
                            20 / 255.0 * np.ones_like(x[..., :1])), axis=2)
    color *= m[..., np.newaxis]
    x *= 1 - m[..., np.newaxis]
    return np.clip(x + color, 0, 1)


@pytest.mark.parametrize("size", [32, 96])
def test_spatter_matches_opencv_reference(size: int) -> None:
    pytest.importorskip("cv2"), pytest.importorskip("scipy.ndimage")
    x = smooth_images(1, 3, size, size, seed=6)
    table = vc.SPATTER if size <= 64 else vc.SPATTER_IMAGENET
    for s in range(1, 6):
        noise = torch.randn((1, 1, size, size), generator=gen(s))[0, 0].double().numpy()
        ref = _spatter_reference(_hwc(x), table[s - 1], noise)
        got = _hwc(corrupt(x, "spatter", s, gen(s)))
        # Every uint8 step agrees exactly (test below); the water layer keeps float32-vs-float64
        # round-off of OpenCV's chamfer weights and products: measured at most 2.7e-3.
        np.testing.assert_allclose(got, ref, atol=5e-3, err_msg=f"severity {s}")


def test_spatter_pieces_match_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for _ in range(5):
        img = (_sk_gaussian(rng.random((40, 40)), 1.5) * 255).astype(np.uint8)
        t = torch.from_numpy(img).double()[None, None]
        np.testing.assert_array_equal(vc.canny(t)[0, 0].numpy() * 255, cv2.Canny(img, 50, 150))
        edges = cv2.Canny(img, 50, 150)
        if edges.any():
            ref = np.minimum(cv2.distanceTransform(255 - edges, cv2.DIST_L2, 5), 20)
            got = vc.chamfer_distance(torch.from_numpy(edges == 255).double()[None, None], cap=20.0)
            np.testing.assert_allclose(got[0, 0].numpy(), ref, atol=1e-3)
        small = (img // 16).astype(np.uint8)
        np.testing.assert_array_equal(vc.equalize_hist(torch.from_numpy(small).double()[None, None])[0, 0].numpy(),
                                      cv2.equalizeHist(small))


@pytest.mark.parametrize("name", vc.VALIDATION_CORRUPTIONS)
def test_grey_images_keep_shape_range_and_determinism(name: str) -> None:
    x = smooth_images(3, 1, 28, 28, seed=7)
    for s in range(1, 6):
        a, b = corrupt(x, name, s, gen(s)), corrupt(x, name, s, gen(s))
        assert a.shape == x.shape and a.dtype == x.dtype
        assert float(a.min()) >= 0 and float(a.max()) <= 1
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# --- spatter's fast pieces give the bits of the straightforward ones ------------------------------


def _plain_chamfer(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """The plain relaxation: every mask offset's candidate d[q] + w, all pixels, until nothing changes."""
    import torch.nn.functional as F

    a, b, c = vc.CHAMFER_5X5
    big = cap + 10 * c
    d = torch.where(zero > 0, torch.zeros_like(zero), torch.full_like(zero, big))
    mask = {(0, 1), (1, 0), (1, 1), (1, 2), (2, 1)}
    cost = {(oy, ox): a if abs(oy) + abs(ox) == 1 else b if abs(oy) == abs(ox) == 1 else c
            for oy in range(-2, 3) for ox in range(-2, 3) if (abs(oy), abs(ox)) in mask}
    h, w = d.shape[-2:]
    for _ in range(int(cap) + 2):
        p = F.pad(d, (2, 2, 2, 2), value=big)
        nxt = d
        for (oy, ox), k in cost.items():
            nxt = torch.minimum(nxt, p[..., 2 + oy : 2 + oy + h, 2 + ox : 2 + ox + w] + k)
        if torch.equal(nxt, d):
            break
        d = nxt
    return d.clamp(max=cap)


@pytest.mark.parametrize("size", [3, 32, 224])
def test_chamfer_distance_equals_the_plain_relaxation(size: int) -> None:
    # Two integer passes give the float32 of what the float64 relaxation reaches, bit for bit.
    g = gen(size)
    for density in (0.0, 0.002, 0.02, 0.2, 0.9):
        zero = (torch.rand(3, 1, size, size + 5, generator=g) < density).double()
        got = vc.chamfer_distance(zero, 20.0)
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, _plain_chamfer(zero, 20.0).float(), rtol=0, atol=0)
    zero = torch.zeros(1, 1, 9, 30)
    zero[0, 0, 4, 0] = 1  # one source: the axial chain reaches 20 on the row, diagonals and knights off it
    d = vc.chamfer_distance(zero, 20.0)
    torch.testing.assert_close(d, _plain_chamfer(zero.double(), 20.0).float(), rtol=0, atol=0)
    f32 = np.float32  # OpenCV's mask: axial 1, diagonal 1.4, knight 2.1969; a path adds them up
    assert [float(d[0, 0, 4, j]) for j in (0, 3, 20, 21)] == [0.0, 3.0, 20.0, 20.0]
    assert float(d[0, 0, 5, 1]) == f32(1.4) and float(d[0, 0, 6, 1]) == f32(2.1969)
    assert float(d[0, 0, 8, 2]) == f32(2 * 2.1969) and float(d[0, 0, 7, 4]) == f32(2.1969 + 2 * 1.4)


def test_chamfer_lengths_divide_in_float32_as_the_float64_division_did() -> None:
    # Lengths are integers in 1e-4 units; float32 division rounds the exact quotient once, and gives
    # the float32 of the float64 quotient for every length up to 200 px (10x the spatter cap).
    k = np.arange(0, 200 * vc.CHAMFER_UNIT + 2)
    direct = k.astype(np.float32) / np.float32(vc.CHAMFER_UNIT)
    assert np.array_equal(direct, (k.astype(np.float64) / vc.CHAMFER_UNIT).astype(np.float32))


def _plain_canny(u8: torch.Tensor, low: float = 50, high: float = 150) -> torch.Tensor:
    """Canny as first written: float64, the Sobel kernels as 3x3 shifted sums, sign as +-1."""
    import torch.nn.functional as F

    dx = vc._shift_sum(u8, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "replicate")
    dy = vc._shift_sum(u8, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "replicate")
    mag = dx.abs() + dy.abs()
    m = F.pad(mag, (1, 1, 1, 1))
    h, w = mag.shape[-2:]

    def at(oy: int, ox: int) -> torch.Tensor:
        return m[..., 1 + oy : 1 + oy + h, 1 + ox : 1 + ox + w]

    ax, ay = dx.abs(), dy.abs()
    horizontal, vertical = ay < ax * 0.4142135623730950, ay > ax * 2.414213562373095
    s = torch.where((dx * dy) < 0, -1, 1)
    keep_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    keep_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    keep_d = torch.where(s > 0, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1)))
    peak = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d)) & (mag > low)
    edges = peak & (mag > high)
    while not torch.equal(grown := peak & vc._dilate3(edges), edges):
        edges = grown
    return edges.to(u8.dtype)


def test_canny_equals_the_plain_version() -> None:
    # The separable float32 Sobel and the sign test give the edges of the float64 3x3 version.
    g = gen(11)
    for h, w, sigma in ((61, 47, 1.0), (32, 32, 2.0), (224, 200, 3.0)):
        noise = 0.65 + 0.3 * torch.randn(3, 1, h, w, generator=g, dtype=torch.float64)
        liquid = _skimage_gaussian(noise, sigma)
        u8 = torch.floor(liquid.masked_fill(liquid < 0.69, 0).clamp(0, 1) * 255)  # spatter's liquid layer
        want = _plain_canny(u8)
        assert want.sum() > 0
        got = vc.canny(u8)
        assert got.dtype == u8.dtype and torch.equal(got, want)
        assert torch.equal(vc.canny(u8.float()), want.float())


def test_canny_tangent_tests_in_float32_equal_float64() -> None:
    # canny runs in float32: for every pair of Sobel magnitudes (at most 4 * 255) the float32
    # comparisons with tan(22.5) and tan(67.5) agree with float64's.
    ax = torch.arange(1021, dtype=torch.float64)[:, None]
    ay = torch.arange(1021, dtype=torch.float64)[None, :]
    for tg in (0.4142135623730950, 2.414213562373095):
        assert torch.equal(ay < ax * tg, ay.float() < ax.float() * tg)
        assert torch.equal(ay > ax * tg, ay.float() > ax.float() * tg)


def test_shift_sums_and_dilation_equal_conv_and_max_pool() -> None:
    import torch.nn.functional as F

    g = gen(3)
    frac = (torch.rand(4, 1, 37, 45, generator=g, dtype=torch.float64) * 20).float()  # box3's chamfer input
    ints = torch.randint(0, 256, (4, 1, 37, 45), generator=g).double()
    kernels = ([[1.0] * 3] * 3, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
    cases = ((frac, kernels[0], "reflect"), (ints, kernels[1], "replicate"), (ints, kernels[2], "reflect"))
    for x, kernel, mode in cases:
        want = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), torch.tensor(kernel, dtype=x.dtype).view(1, 1, 3, 3))
        # Bit-equal on CPU (row-major accumulation, as the conv); within float rounding anywhere.
        torch.testing.assert_close(vc._shift_sum(x, kernel, mode), want, rtol=0, atol=0 if x is ints else 2e-6)
    edges = torch.rand(4, 1, 37, 45, generator=g) < 0.05
    want = F.max_pool2d(edges.float(), 3, 1, 1) > 0
    assert torch.equal(vc._dilate3(edges), want)
