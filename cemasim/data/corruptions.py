"""Image corruptions after ImageNet-C (Hendrycks & Dietterich, ICLR 2019), batched in torch.

Place in the data flow: sample stream -> **corrupt** -> edge predict. The stream draws clean
images, `corrupt(images, name, severity, generator)` degrades them according to the scenario's
current domain, and the edge model predicts on the result.

Units: images are float tensors in [0, 1] of shape [N, C, H, W] (C = 1 or 3, any H, W, any
device); outputs have the same shape, dtype and device and are clipped to [0, 1]. Severity runs
1..5 (0 = clean). Parameters are the CIFAR-10-C table (32x32 images), which fits our 28x28
Fashion-MNIST better than the 224x224 ImageNet-C table.

Randomness comes only from the `torch.Generator` passed in (draws happen on the generator's
device, then move to the images' device), so equal seeds give bit-identical outputs. All
corruptions work on whole batches; only JPEG loops over images (the codec is per image).
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

from cemasim.errors import ConfigError
from cemasim.registry import Registry

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")

# Severity tables, index = severity - 1. Copied from CIFAR-10-C (Hendrycks & Dietterich 2019,
# make_cifar_c.py in github.com/hendrycks/robustness).
GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)  # noise std
SHOT_NOISE = (500, 250, 100, 75, 50)  # photons per unit intensity
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)  # fraction of replaced values
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # (disk radius, alias blur)
MOTION_BLUR = ((10, 1), (10, 1.5), (10, 2), (10, 2.5), (12, 3))  # (radius, sigma) in pixels
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # (strength, wibble decay)
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on the deviation from the mean
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # downsampling factor
JPEG_QUALITY = (80, 65, 58, 50, 40)

MAX_SEVERITY = 5


# --- random draws: always from the given generator, on its device --------------------------


def _rand(shape: tuple[int, ...], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=g.device, dtype=like.dtype).to(like.device)


def _randn(shape: tuple[int, ...], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=g.device, dtype=like.dtype).to(like.device)


# --- noise ------------------------------------------------------------------------------------


@CORRUPTIONS.register("gaussian_noise", help="additive Gaussian noise (ImageNet-C)")
def gaussian_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return x + GAUSSIAN_NOISE[severity - 1] * _randn(tuple(x.shape), g, x)


@CORRUPTIONS.register("shot_noise", help="Poisson photon noise (ImageNet-C)")
def shot_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = SHOT_NOISE[severity - 1]
    rate = (x * c).to(g.device)  # torch.poisson samples on the generator's device
    return torch.poisson(rate, generator=g).to(x.device) / c


@CORRUPTIONS.register("impulse_noise", help="salt-and-pepper noise (ImageNet-C)")
def impulse_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    # skimage random_noise(mode='s&p', amount=c): each value is hit with probability c,
    # half of the hits become 0 (pepper), half 1 (salt). One uniform draw decides both.
    c = IMPULSE_NOISE[severity - 1]
    u = _rand(tuple(x.shape), g, x)
    x = torch.where(u < c / 2, torch.zeros_like(x), x)
    return torch.where((u >= c / 2) & (u < c), torch.ones_like(x), x)


# --- blur -------------------------------------------------------------------------------------


def _gaussian_taps(ksize: int, sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0."""
    t = np.arange(ksize) - (ksize - 1) / 2
    w = np.exp(-(t**2) / (2 * sigma**2))
    return w / w.sum()


@lru_cache(maxsize=None)
def defocus_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """ImageNet-C `disk()`: a normalised aliased disk, Gaussian-blurred, cropped to its support.

    Returns a float64 [k, k] CPU tensor (k odd) that sums to 1.
    """
    half = 8 if radius <= 8 else math.ceil(radius)
    ksize = 3 if radius <= 8 else 5
    L = np.arange(-half, half + 1)
    X, Y = np.meshgrid(L, L)
    disk = (X**2 + Y**2 <= radius**2).astype(np.float64)
    disk /= disk.sum()
    # cv2.GaussianBlur (separable, BORDER_REFLECT_101 == numpy 'reflect').
    taps, p = _gaussian_taps(ksize, alias_blur), ksize // 2
    padded = np.pad(disk, p, mode="reflect")
    rows = sum(taps[i] * padded[i : i + disk.shape[0], :] for i in range(ksize))
    kernel = sum(taps[i] * rows[:, i : i + disk.shape[1]] for i in range(ksize))
    # Crop symmetrically to the non-zero support: a radius-0.3 disk is a 3x3, not a 17x17, conv.
    nz = np.argwhere(kernel > 0)
    r = int(np.abs(nz - half).max())
    return torch.from_numpy(kernel[half - r : half + r + 1, half - r : half + r + 1].copy())


def _conv_same(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Per-channel 2-D correlation with reflect (cv2 BORDER_REFLECT_101) padding."""
    n, c, h, w = x.shape
    p = kernel.shape[-1] // 2
    mode = "reflect" if p < min(h, w) else "replicate"  # reflect needs pad < size
    y = F.pad(x.reshape(n * c, 1, h, w), (p, p, p, p), mode=mode)
    return F.conv2d(y, kernel.to(x)[None, None]).reshape(n, c, h, w)


@CORRUPTIONS.register("defocus_blur", help="disk-shaped lens blur (ImageNet-C)")
def defocus_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return _conv_same(x, defocus_kernel(*DEFOCUS_BLUR[severity - 1]))


def motion_taps(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick MotionBlurImage weights: one-sided Gaussian over 2*ceil(radius)+1 taps, normalised."""
    k = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    w = torch.exp(-(k**2) / (2 * sigma**2))
    return w / w.sum()


@CORRUPTIONS.register("motion_blur", help="linear camera-shake blur at a random angle (ImageNet-C)")
def motion_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    # Output pixel = sum_k w_k * input at the pixel k steps along the angle, with ImageMagick's
    # integer offsets ceil(k*cos - 0.5), ceil(k*sin - 0.5) and edge (clamp) virtual pixels.
    n, c, h, w = x.shape
    weights = motion_taps(*MOTION_BLUR[severity - 1]).tolist()
    angle = torch.deg2rad(_rand((n,), g, x).double() * 90 - 45)  # Uniform(-45, 45) per image
    k = torch.arange(len(weights), dtype=torch.float64, device=x.device)
    dx = torch.ceil(k[None] * torch.cos(angle)[:, None] - 0.5).long()  # [N, T]
    dy = torch.ceil(k[None] * torch.sin(angle)[:, None] - 0.5).long()
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for t, wt in enumerate(weights):
        r = (rows[None, :] + dy[:, t, None]).clamp_(0, h - 1)  # [N, H]
        q = (cols[None, :] + dx[:, t, None]).clamp_(0, w - 1)  # [N, W]
        idx = (r[:, :, None] * w + q[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
        out.add_(flat.gather(2, idx), alpha=wt)
    return out.reshape(n, c, h, w)


# --- weather ----------------------------------------------------------------------------------


def plasma_fractal(
    n: int, mapsize: int, wibbledecay: float, g: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    """ImageNet-C diamond-square heightmaps, one per image: [n, mapsize, mapsize] in [0, 1]."""
    assert mapsize & (mapsize - 1) == 0, "mapsize must be a power of two"
    m = torch.zeros(n, mapsize, mapsize, dtype=like.dtype, device=like.device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        # Original: array / 4 + wibble * uniform(-wibble, wibble).
        return total / 4 + wibble * wibble * (2 * _rand(tuple(total.shape), g, like) - 1)

    while step >= 2:
        s = step // 2
        corners = m[:, 0::step, 0::step]
        square = corners + corners.roll(-1, 1)  # fill squares: centre = mean of 4 corners
        m[:, s::step, s::step] = wibbled_mean(square + square.roll(-1, 2))
        dr, ul = m[:, s::step, s::step], m[:, 0::step, 0::step]  # fill diamonds
        m[:, 0::step, s::step] = wibbled_mean(dr + dr.roll(1, 1) + ul + ul.roll(-1, 2))
        m[:, s::step, 0::step] = wibbled_mean(dr + dr.roll(1, 2) + ul + ul.roll(-1, 1))
        step, wibble = s, wibble / wibbledecay
    m = m - m.amin(dim=(1, 2), keepdim=True)
    return m / m.amax(dim=(1, 2), keepdim=True)


@CORRUPTIONS.register("fog", help="plasma-fractal fog (ImageNet-C)")
def fog(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    strength, decay = FOG[severity - 1]
    n, _, h, w = x.shape
    mapsize = max(2, 1 << (max(h, w) - 1).bit_length())  # next power of two >= max(H, W)
    x_max = x.amax(dim=(1, 2, 3), keepdim=True)
    x = x + strength * plasma_fractal(n, mapsize, decay, g, x)[:, None, :h, :w]
    return x * x_max / (x_max + strength)


# --- digital / photometric --------------------------------------------------------------------


@CORRUPTIONS.register("brightness", help="raise HSV value (ImageNet-C)")
def brightness(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = BRIGHTNESS[severity - 1]
    if x.shape[1] == 1:
        return x + c  # grey: V is the pixel itself
    # rgb -> hsv -> V = clip(V + c) -> rgb keeps H and S, and hsv2rgb is linear in V, so the round
    # trip is exactly a per-pixel rescale rgb * V'/V (grey V' where V = 0, where skimage sets S = 0).
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * (v_new / v.clamp_min(1e-12)), v_new)


@CORRUPTIONS.register("contrast", help="shrink towards the per-channel mean (ImageNet-C)")
def contrast(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    m = x.mean(dim=(2, 3), keepdim=True)
    return (x - m) * CONTRAST[severity - 1] + m


@lru_cache(maxsize=None)
def _pil_box(in_size: int, out_size: int) -> torch.Tensor:
    """Pillow's BOX resampling (precompute_coeffs in Resample.c) as an [out, in] matrix."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    mat = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), in_size)
        for j in range(lo, hi):
            u = (j - center + 0.5) / filterscale
            mat[i, j] = 1.0 if -0.5 < u <= 0.5 else 0.0
        mat[i] /= mat[i].sum()
    return mat


@lru_cache(maxsize=None)
def _pixelate_matrix(size: int, factor: float) -> torch.Tensor:
    """BOX-downsample to int(size*factor) then BOX-upsample back, as one [size, size] matrix."""
    small = max(int(size * factor), 1)
    return _pil_box(small, size) @ _pil_box(size, small)


@CORRUPTIONS.register("pixelate", help="box downsample then upsample (ImageNet-C)")
def pixelate(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = PIXELATE[severity - 1]
    mh = _pixelate_matrix(x.shape[2], c).to(x)
    mw = _pixelate_matrix(x.shape[3], c).to(x)
    return mh @ x @ mw.T  # separable, like Pillow's two passes


@CORRUPTIONS.register("jpeg_compression", help="JPEG encode/decode (ImageNet-C)")
def jpeg_compression(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    q = JPEG_QUALITY[severity - 1]
    u8 = (x * 255).round().clamp(0, 255).to(torch.uint8).cpu()  # the codec works on CPU uint8
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its codecs in favour of torchcodec; until they are removed they
        # are bit-identical to the Pillow JPEG round trip of make_cifar_c.py (see the tests).
        warnings.filterwarnings("ignore", message=".*TorchVision are deprecated", category=DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(list(u8), quality=q), mode=ImageReadMode.UNCHANGED)
    return (torch.stack(decoded).to(x.device, x.dtype)) / 255


# Canonical ImageNet-C order (noise, blur, weather, digital), restricted to what is registered.
_IMAGENET_C_ORDER = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
CORRUPTION_NAMES: tuple[str, ...] = tuple(n for n in _IMAGENET_C_ORDER if n in CORRUPTIONS)


def corrupt(
    images: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply corruption `name` at `severity` (0 = clean copy, 1..5) to a [N, C, H, W] batch in [0, 1].

    Returns a new tensor of the same shape, dtype and device, clipped to [0, 1]. Random draws come
    only from `generator` (default: a fresh one seeded 0 on the images' device).
    Raises ConfigError for an unknown name (with a suggestion) or a severity outside 0..5.
    """
    fn = CORRUPTIONS.get(name)
    is_int = isinstance(severity, (int, np.integer)) and not isinstance(severity, bool)
    if not is_int or not 0 <= severity <= MAX_SEVERITY:
        raise ConfigError(f"severity must be an integer 0..{MAX_SEVERITY}, got {severity!r}", source="corruption")
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"expected a float [N, C, H, W] tensor, got {images.dtype} {tuple(images.shape)}")
    if severity == 0:
        return images.clone()
    if generator is None:
        generator = torch.Generator(device=images.device).manual_seed(0)
    # Work in at least float32 (half precision would lose the fog fractal and small noise).
    work = images.to(torch.promote_types(images.dtype, torch.float32))
    return fn(work, int(severity), generator).clamp(0, 1).to(images.dtype)
