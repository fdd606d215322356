"""Tests for cemasim.data.corruptions (ImageNet-C style corruptions, CIFAR-10-C severities)."""

from __future__ import annotations

import colorsys
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cemasim.data.corruptions import (
    BRIGHTNESS,
    CONTRAST,
    CORRUPTION_NAMES,
    CORRUPTIONS,
    DEFOCUS_BLUR,
    GAUSSIAN_NOISE,
    IMPULSE_NOISE,
    MOTION_BLUR,
    PIXELATE,
    corrupt,
    defocus_kernel,
    motion_taps,
    plasma_fractal,
)
from cemasim.errors import ConfigError

RANDOM = {"gaussian_noise", "shot_noise", "impulse_noise", "motion_blur", "fog"}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def gen(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def smooth_images(n: int, c: int, h: int, w: int, seed: int = 0, device: str = "cpu") -> torch.Tensor:
    """Natural-ish images: low-resolution noise upsampled bilinearly, values in [0, 1]."""
    low = torch.rand(n, c, max(h // 4, 2), max(w // 4, 2), generator=gen(seed))
    return F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1).to(device)


def test_registry_lists_all_ten_in_imagenet_c_order() -> None:
    assert CORRUPTION_NAMES == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "motion_blur",
        "fog", "brightness", "contrast", "pixelate", "jpeg_compression",
    )  # fmt: skip
    assert all(e.help for e in CORRUPTIONS.entries())


# --- contract: shape, dtype, device, range, determinism --------------------------------------


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
@pytest.mark.parametrize("device", DEVICES)
def test_shape_dtype_device_and_range(name: str, device: str) -> None:
    for n in (1, 5):
        for c in (1, 3):
            for h, w in ((28, 28), (32, 32), (17, 23)):
                x = smooth_images(n, c, h, w, device=device)
                for s in range(1, 6):
                    y = corrupt(x, name, s, gen(0, device))
                    assert y.shape == x.shape and y.dtype == x.dtype and y.device == x.device
                    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1, (n, c, h, w, s)


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_float64_kept_and_global_rng_untouched(name: str) -> None:
    x = smooth_images(2, 3, 17, 23).double()
    state = torch.get_rng_state()
    y = corrupt(x, name, 3, gen(1))
    assert y.dtype == torch.float64
    assert torch.equal(torch.get_rng_state(), state)  # draws come only from the generator


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_determinism(name: str) -> None:
    x = smooth_images(5, 3, 17, 23)
    a, b = corrupt(x, name, 4, gen(7)), corrupt(x, name, 4, gen(7))
    assert torch.equal(a, b)
    assert torch.equal(corrupt(x, name, 4), corrupt(x, name, 4))  # default generator is seeded
    if name in RANDOM:
        assert not torch.equal(a, corrupt(x, name, 4, gen(8)))


# --- severity ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
def test_severity_zero_is_identity(name: str) -> None:
    x = smooth_images(3, 3, 28, 28)
    y = corrupt(x, name, 0, gen(0))
    assert torch.equal(y, x) and y is not x


@pytest.mark.parametrize("name", CORRUPTION_NAMES)
@pytest.mark.parametrize("c", [1, 3])
def test_severity_orders_degradation(name: str, c: int) -> None:
    x = smooth_images(32, c, 28, 28, seed=3)
    d = [(corrupt(x, name, s, gen(0)) - x).abs().mean().item() for s in range(1, 6)]
    assert d[0] > 0 and d[4] > d[0], d
    if name == "pixelate":
        # Pillow BOX resampling to int(28*c) pixels aliases differently per target size (28->23
        # can lose more than 28->21), so the original definition is only monotone end to end.
        return
    for lo, hi in zip(d, d[1:]):
        assert hi >= lo * 0.98 - 1e-6, d  # ties allowed (e.g. JPEG quality steps on smooth images)


# --- hand-checked values ----------------------------------------------------------------------


def test_contrast_constant_image_is_identity() -> None:
    x = torch.full((2, 3, 17, 23), 0.3)
    for s in range(1, 6):
        torch.testing.assert_close(corrupt(x, "contrast", s), x, atol=1e-6, rtol=0)


def test_contrast_formula() -> None:
    x = smooth_images(2, 3, 8, 8)
    m = x.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(corrupt(x, "contrast", 2), ((x - m) * CONTRAST[1] + m).clamp(0, 1))


def test_brightness_grey_adds_exactly_c() -> None:
    x = torch.full((2, 1, 28, 28), 0.25)
    for s in range(1, 6):
        assert torch.equal(corrupt(x, "brightness", s), x + BRIGHTNESS[s - 1])


def test_brightness_rgb_matches_hsv_round_trip() -> None:
    x = torch.rand(2, 3, 4, 5, generator=gen(0), dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # black pixel: HSV saturation is 0
    x[1, :, 1, 1] = 0.97  # V + c saturates at 1
    y = corrupt(x, "brightness", 5)
    c = BRIGHTNESS[4]
    for n in range(2):
        for i in range(4):
            for j in range(5):
                h, s, v = colorsys.rgb_to_hsv(*x[n, :, i, j].tolist())
                want = colorsys.hsv_to_rgb(h, s, min(v + c, 1.0))
                np.testing.assert_allclose(y[n, :, i, j].numpy(), want, atol=1e-12)


def test_gaussian_noise_std() -> None:
    x = torch.full((4, 1, 28, 28), 0.5)
    for s in range(1, 6):
        std = (corrupt(x, "gaussian_noise", s, gen(s)) - x).std().item()
        assert abs(std - GAUSSIAN_NOISE[s - 1]) < 0.1 * GAUSSIAN_NOISE[s - 1]


def test_impulse_noise_fraction() -> None:
    x = torch.full((8, 3, 64, 64), 0.5)
    for s in range(1, 6):
        y = corrupt(x, "impulse_noise", s, gen(s))
        c = IMPULSE_NOISE[s - 1]
        salt, pepper = (y == 1).float().mean().item(), (y == 0).float().mean().item()
        tol = 5 * (c / x.numel()) ** 0.5  # ~5 binomial standard deviations
        assert abs(salt + pepper - c) < tol and abs(salt - pepper) < tol
        assert torch.all((y == 0) | (y == 1) | (y == 0.5))


def test_shot_noise_is_unbiased() -> None:
    x = torch.full((8, 1, 28, 28), 0.4)
    y = corrupt(x, "shot_noise", 5, gen(0))
    assert abs(y.mean().item() - 0.4) < 0.005


@pytest.mark.parametrize("radius, alias", DEFOCUS_BLUR)
def test_defocus_kernel(radius: float, alias: float) -> None:
    k = defocus_kernel(radius, alias)
    assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1 and k.shape[0] < 17  # cropped
    assert abs(k.sum().item() - 1) < 1e-9
    torch.testing.assert_close(k, k.flip(0)), torch.testing.assert_close(k, k.T)


def test_defocus_kernel_large_radius_uses_wider_grid() -> None:
    k = defocus_kernel(10, 0.5)  # radius > 8 (ImageNet-C table): grid -10..10 and a 5x5 alias blur
    assert k.shape == (21, 21)
    # The disk touches the grid edge and cv2's reflect-101 blur adds ~1% mass there, as in the original.
    assert abs(k.sum().item() - 1) < 0.02


@pytest.mark.parametrize("name", ["defocus_blur", "motion_blur", "pixelate", "contrast"])
def test_linear_filters_keep_constant_images(name: str) -> None:
    x = torch.full((3, 3, 17, 23), 0.6)
    torch.testing.assert_close(corrupt(x, name, 5, gen(0)), x, atol=1e-6, rtol=0)


def test_motion_taps_are_one_sided_gaussian() -> None:
    radius, sigma = MOTION_BLUR[4]
    w = motion_taps(radius, sigma)
    assert len(w) == 2 * radius + 1 and abs(w.sum().item() - 1) < 1e-12
    assert torch.all(w[1:] < w[:-1])  # peaked at the pixel itself, decaying along the streak


def test_motion_blur_moves_mass_along_one_side() -> None:
    x = torch.zeros(64, 1, 41, 41)
    x[:, :, 20, 20] = 1.0  # a point light: the blur spreads it in a line on one side
    y = corrupt(x, "motion_blur", 5, gen(0))
    torch.testing.assert_close(y.sum(dim=(1, 2, 3)), torch.ones(64))
    assert torch.all(y[:, 0, 20, 20] < 1) and torch.all(y[:, 0, 20, 20] > 0)


def test_plasma_fractal_range() -> None:
    m = plasma_fractal(4, 32, 2.0, gen(0), torch.zeros(1))
    assert m.shape == (4, 32, 32)
    torch.testing.assert_close(m.amin(dim=(1, 2)), torch.zeros(4))
    torch.testing.assert_close(m.amax(dim=(1, 2)), torch.ones(4))
    assert not torch.equal(m[0], m[1])  # each image gets its own fractal


def test_fog_brightens_dark_image() -> None:
    x = torch.full((4, 1, 28, 28), 0.5)
    y = corrupt(x, "fog", 5, gen(0))
    assert y.std() > 0 and y.max() <= 0.5 + 1e-6  # x * max / (max + c0) keeps the peak at most max


@pytest.mark.parametrize("h, w, c", [(28, 28, 1), (17, 23, 3), (32, 32, 3)])
def test_pixelate_matches_pillow_box(h: int, w: int, c: int) -> None:
    Image = pytest.importorskip("PIL.Image")
    arr = (smooth_images(1, c, h, w, seed=5)[0] * 255).round().to(torch.uint8)
    x = arr.float()[None] / 255
    for s, f in enumerate(PIXELATE, start=1):
        img = Image.fromarray(arr.permute(1, 2, 0).squeeze(-1).numpy())
        img = img.resize((int(w * f), int(h * f)), Image.BOX).resize((w, h), Image.BOX)
        want = torch.from_numpy(np.asarray(img).copy()).float().reshape(h, w, c).permute(2, 0, 1) / 255
        # Pillow rounds to uint8 after each pass; we stay in float.
        torch.testing.assert_close(corrupt(x, "pixelate", s)[0], want, atol=1 / 255 + 1e-6, rtol=0)


@pytest.mark.parametrize("c", [1, 3])
def test_jpeg_matches_pillow(c: int) -> None:
    Image = pytest.importorskip("PIL.Image")
    x = smooth_images(2, c, 28, 28)
    for s, q in ((1, 80), (5, 40)):
        y = corrupt(x, "jpeg_compression", s)
        assert 0 < (y - x).abs().mean() < 0.1
        for n in range(2):
            arr = (x[n] * 255).round().to(torch.uint8).permute(1, 2, 0).squeeze(-1).numpy()
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "JPEG", quality=q)  # what make_cifar_c.py does
            want = torch.from_numpy(np.asarray(Image.open(buf)).copy()).float().reshape(28, 28, c)
            # Same libjpeg defaults; allow one grey level for codec build differences.
            torch.testing.assert_close(y[n] * 255, want.permute(2, 0, 1), atol=1.0 + 1e-3, rtol=0)


# --- errors -----------------------------------------------------------------------------------


def test_unknown_name_suggests() -> None:
    with pytest.raises(ConfigError, match="did you mean 'gaussian_noise'"):
        corrupt(torch.zeros(1, 1, 8, 8), "gausian_noise", 1)


@pytest.mark.parametrize("severity", [6, -1, 2.0, True])
def test_bad_severity(severity: object) -> None:
    with pytest.raises(ConfigError, match="severity"):
        corrupt(torch.zeros(1, 1, 8, 8), "fog", severity)  # type: ignore[arg-type]
