"""Image corruptions after ImageNet-C (Hendrycks & Dietterich, ICLR 2019), batched in torch.

Place in the data flow: sample stream -> **corrupt** -> edge predict. The stream draws clean
images, `corrupt(images, name, severity, generator)` degrades them according to the scenario's
current domain, and the edge model predicts on the result.

Units: images are float tensors in [0, 1] of shape [N, C, H, W] (C = 1 or 3, any H, W, any
device); outputs have the same shape, dtype and device and are clipped to [0, 1]. Severity runs
1..5 (0 = clean). All 15 ImageNet-C test corruptions are registered, in the canonical order of
`CORRUPTION_NAMES`; the 4 validation corruptions live in validation_corruptions.py
(`VALIDATION_CORRUPTIONS`).

Severity tables, chosen by resolution: images with max(H, W) <= 64 (`CIFAR_MAX_SIDE`) use the
CIFAR-10-C table (make_cifar_c.py, written for 32x32 images; it fits our 28x28 Fashion-MNIST),
larger images use the ImageNet-C table (make_imagenet_c.py, written for 224x224 crops). The
cut-off sits between the two native sizes; 64x64 images (ImageNet-64) get the CIFAR table. The
elastic transform's pixel parameters are also scaled by max(H, W) / native size.

Faithfulness: each corruption follows the original numpy/OpenCV/ImageMagick code (see the
docstrings for the exact equivalences). We stay in float throughout, so the intermediate uint8
round trips of the originals (glass blur's uint8 cast, the snow layer's PNG round trip) and the
final uint8/JPEG storage of the released datasets are not applied. `frost` blends a procedural
ice texture, not the original six frost photographs (we ship no image files). Non-square images
are handled per axis where the originals assume squares (zoom, snow, glass blur).

Randomness comes only from the `torch.Generator` passed in (draws happen on the generator's
device, then move to the images' device), so equal seeds give bit-identical outputs. All
corruptions work on whole batches; JPEG loops over images (the codec is per image) and glass
blur loops over pixel positions (its swaps are sequential), vectorised over the batch. On large
batches, the work that treats each image on its own runs a few images at a time (`CHUNK_BYTES`):
whole corruptions registered `per_image` (no draws, no batch statistics), and the steps after the
draws of others (`_by_chunks`). The bits are those of the whole batch (tests); the temporaries of
a 224-px batch then stay in cache instead of streaming 19-38 MB through memory per op.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from cemasim.errors import ConfigError
from cemasim.registry import Registry

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("corruption")

MAX_SEVERITY = 5
CIFAR_MAX_SIDE = 64  # max(H, W) <= this: CIFAR-10-C table; larger: ImageNet-C table
# Work that treats each image on its own runs a batch above CHUNK_MIN_BYTES of images CHUNK_BYTES
# at a time: its temporaries then stay in cache (a 224-px batch of 32 is 19 MB a tensor, streamed
# through memory once per op). A smaller batch stays in the caches anyway: there, splitting only
# adds per-op costs (benchmarks/README.md, the night pass).
CHUNK_BYTES = 2 << 20
CHUNK_MIN_BYTES = 8 << 20

# Severity tables, index = severity - 1, copied from github.com/hendrycks/robustness:
# NAME = CIFAR-10-C (ImageNet-C/create_c/make_cifar_c.py), NAME_IMAGENET = ImageNet-C
# (ImageNet-C/create_c/make_imagenet_c.py).
GAUSSIAN_NOISE = (0.04, 0.06, 0.08, 0.09, 0.10)  # noise std
GAUSSIAN_NOISE_IMAGENET = (0.08, 0.12, 0.18, 0.26, 0.38)
SHOT_NOISE = (500, 250, 100, 75, 50)  # photons per unit intensity
SHOT_NOISE_IMAGENET = (60, 25, 12, 5, 3)
IMPULSE_NOISE = (0.01, 0.02, 0.03, 0.05, 0.07)  # fraction of replaced values
IMPULSE_NOISE_IMAGENET = (0.03, 0.06, 0.09, 0.17, 0.27)
DEFOCUS_BLUR = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # (disk radius, alias blur)
DEFOCUS_BLUR_IMAGENET = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
GLASS_BLUR = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # (sigma, max delta, iterations)
GLASS_BLUR_IMAGENET = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))
# (radius, sigma) in pixels. ((10, 1) .. (12, 3) is make_tinyimagenet_c.py's table, not CIFAR's.)
MOTION_BLUR = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))
MOTION_BLUR_IMAGENET = ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15))
# Zoom factors, evaluated with np.arange exactly as in the originals (float end points included:
# arange(1, 1.06, 0.01) has 7 factors, 1.00..1.06).
ZOOM_BLUR = tuple(
    tuple(np.arange(1, stop, 0.01).tolist()) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)
)
ZOOM_BLUR_IMAGENET = tuple(
    tuple(np.arange(1, stop, step).tolist())
    for stop, step in ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))
)
# (noise mean, noise std, zoom, threshold, blur radius, blur sigma, image weight)
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
SNOW_IMAGENET = (
    (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
    (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
    (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
    (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
    (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
)
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # (image weight, frost weight)
FROST_IMAGENET = ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # (strength, wibble decay)
FOG_IMAGENET = ((1.5, 2), (2, 2), (2.5, 1.7), (2.5, 1.5), (3, 1.4))
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)  # added to HSV value
BRIGHTNESS_IMAGENET = (0.1, 0.2, 0.3, 0.4, 0.5)
CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)  # factor on the deviation from the mean
CONTRAST_IMAGENET = (0.4, 0.3, 0.2, 0.1, 0.05)
# (displacement scale alpha, displacement smoothing sigma, affine jitter) in pixels at the native
# size ELASTIC_SIZE*; scaled by max(H, W) / native size. The CIFAR table is IMSIZE * fractions with
# IMSIZE = 32; the ImageNet one keeps the original's 244 ("should have been 224") for 224 images.
ELASTIC_SIZE, ELASTIC_SIZE_IMAGENET = 32, 224
ELASTIC_TRANSFORM = tuple(
    tuple(32 * f for f in row)
    for row in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
)
ELASTIC_TRANSFORM_IMAGENET = tuple(
    tuple(244 * f for f in row)
    for row in ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))
)
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # downsampling factor
PIXELATE_IMAGENET = (0.6, 0.5, 0.4, 0.3, 0.25)
JPEG_QUALITY = (80, 65, 58, 50, 40)
JPEG_QUALITY_IMAGENET = (25, 18, 15, 10, 7)


def uses_imagenet_table(height: int, width: int) -> bool:
    """True where the ImageNet-C table applies: max(H, W) > CIFAR_MAX_SIDE."""
    return max(height, width) > CIFAR_MAX_SIDE


def _param(x: torch.Tensor, severity: int, cifar: Sequence, imagenet: Sequence):
    """The severity's entry of the table that fits the images' resolution."""
    return (imagenet if uses_imagenet_table(x.shape[-2], x.shape[-1]) else cifar)[severity - 1]


# --- random draws: always from the given generator, on its device --------------------------


def _rand(shape: tuple[int, ...], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, generator=g, device=g.device, dtype=like.dtype).to(like.device)


def _randn(shape: tuple[int, ...], g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=g, device=g.device, dtype=like.dtype).to(like.device)


def _uniform(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return lo + (hi - lo) * _rand(shape, g, like)


# --- noise ------------------------------------------------------------------------------------


def _chunk_step(x: torch.Tensor) -> int | None:
    """Images per chunk for a batch above CHUNK_MIN_BYTES (CHUNK_BYTES of them); None: keep it whole."""
    if x.numel() * x.element_size() <= CHUNK_MIN_BYTES:
        return None
    return max(1, CHUNK_BYTES // max(1, x[0].numel() * x.element_size()))


def _by_chunks(fn: Callable[..., torch.Tensor], x: torch.Tensor, *per_image: torch.Tensor) -> torch.Tensor:
    """fn(x, *per_image), for a batch above CHUNK_MIN_BYTES computed CHUNK_BYTES of images at a time
    so that its temporaries stay in cache; fn must treat each image on its own (after the random
    draws), which gives the same bits."""
    parts = chunk_slices(x)
    if len(parts) <= 1:
        return fn(x, *per_image)
    first = fn(x[parts[0]], *(a[parts[0]] for a in per_image))
    out = first.new_empty(len(x), *first.shape[1:])
    out[parts[0]] = first
    for part in parts[1:]:
        out[part] = fn(x[part], *(a[part] for a in per_image))
    return out


def chunk_slices(x: torch.Tensor) -> list[slice]:
    """The ranges of images _by_chunks hands its function: the whole batch, or CHUNK_BYTES of images each."""
    step = _chunk_step(x) or max(1, len(x))
    return [slice(i, i + step) for i in range(0, len(x), step)]


def zero_below(x: torch.Tensor, threshold: float) -> torch.Tensor:
    """torch.where(x < threshold, 0, x) as F.threshold, which keeps x above the float just below
    `threshold` in x's dtype: the same values (NaN kept too), in one fast pass instead of a slow one."""
    below = torch.nextafter(torch.tensor(threshold, dtype=x.dtype), torch.tensor(-math.inf, dtype=x.dtype))
    return F.threshold(x, below.item(), 0.0)


@CORRUPTIONS.register("gaussian_noise", help="additive Gaussian noise (ImageNet-C)")
def gaussian_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return x + _param(x, severity, GAUSSIAN_NOISE, GAUSSIAN_NOISE_IMAGENET) * _randn(tuple(x.shape), g, x)


@CORRUPTIONS.register("shot_noise", help="Poisson photon noise (ImageNet-C)")
def shot_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = _param(x, severity, SHOT_NOISE, SHOT_NOISE_IMAGENET)
    rate = (x * c).to(g.device)  # torch.poisson samples on the generator's device
    return torch.poisson(rate, generator=g).to(x.device) / c


@CORRUPTIONS.register("impulse_noise", help="salt-and-pepper noise (ImageNet-C)")
def impulse_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    # skimage random_noise(mode='s&p', amount=c): each value is hit with probability c,
    # half of the hits become 0 (pepper), half 1 (salt). One uniform draw decides both.
    c = _param(x, severity, IMPULSE_NOISE, IMPULSE_NOISE_IMAGENET)
    u = _rand(tuple(x.shape), g, x)
    return torch.where(u < c, (u >= c / 2).to(x.dtype), x)  # one pass: hits become 0 (u < c/2) or 1


# --- linear filters shared by several corruptions --------------------------------------------


def _gaussian_taps(ksize: int, sigma: float) -> np.ndarray:
    """cv2.getGaussianKernel(ksize, sigma) for sigma > 0."""
    t = np.arange(ksize) - (ksize - 1) / 2
    w = np.exp(-(t**2) / (2 * sigma**2))
    return w / w.sum()


def _extend_index(idx: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Map out-of-range indices into 0..n-1 like scipy.ndimage's `mode` ('nearest' or 'reflect')."""
    if mode == "nearest":
        return np.clip(idx, 0, n - 1)
    m = np.mod(idx, 2 * n)  # 'reflect' = half-sample symmetric (d c b a | a b c d), period 2n
    return np.where(m >= n, 2 * n - 1 - m, m)


@cache
def gaussian_matrix(n: int, sigma: float, truncate: float, mode: str) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter1d(sigma, truncate, mode) along an axis of length n, as [n, n].

    skimage.filters.gaussian (used by the originals) is scipy's filter applied per spatial axis,
    so a 2-D blur is `M_h @ x @ M_w.T`. The dense matrix folds in the border mode, which also
    covers kernels wider than the image (the ImageNet elastic table smooths with sigma 171 on
    224 pixels). sigma <= 1e-15 is the identity, as in scipy. Returns a float64 CPU tensor.
    """
    if sigma <= 1e-15:
        return torch.eye(n, dtype=torch.float64)
    radius = int(truncate * sigma + 0.5)
    t = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * t**2 / sigma**2)
    taps /= taps.sum()
    cols = _extend_index(np.arange(n)[:, None] + t[None, :], n, mode)
    mat = np.zeros((n, n))
    np.add.at(mat, (np.repeat(np.arange(n), len(t)), cols.ravel()), np.tile(taps, n))
    return torch.from_numpy(mat)


def _separable(x: torch.Tensor, mh: torch.Tensor, mw: torch.Tensor) -> torch.Tensor:
    """mh @ x @ mw.T for [..., H, W], as two right-multiplications (one GEMM each, no broadcast bmm)."""
    return (x @ mw.T).transpose(-1, -2).matmul(mh.T).transpose(-1, -2).contiguous()


BAND_BLOCK = 32  # output rows / columns per product of a banded blur (faster than 56 or 112 at 224 px)


def _banded_separable(x: torch.Tensor, mh: torch.Tensor, mw: torch.Tensor, radius: int) -> torch.Tensor:
    """_separable for blur matrices whose non-zeros lie within `radius` of the diagonal: each block of
    BAND_BLOCK output columns (then rows) multiplies only the input columns (rows) of its band.

    The dense product's non-zero terms (it only adds exact zeros besides), for a fraction of the
    multiplications; the BLAS orders each sum its own way: on this machine the same bits at 224 and
    300x256 px, and within one rounding at 97x80 (tests; analysis/identical/corruptions.py).
    """
    h, w = x.shape[-2:]
    y = x.new_empty(x.shape)
    for o0 in range(0, w, BAND_BLOCK):  # along W: y = x @ mw.T
        o1, i0, i1 = min(w, o0 + BAND_BLOCK), max(0, o0 - radius), min(w, o0 + BAND_BLOCK + radius)
        y[..., o0:o1] = x[..., i0:i1] @ mw[o0:o1, i0:i1].T
    z = torch.empty_like(y)
    for o0 in range(0, h, BAND_BLOCK):  # along H: z = mh @ y
        o1, i0, i1 = min(h, o0 + BAND_BLOCK), max(0, o0 - radius), min(h, o0 + BAND_BLOCK + radius)
        z[..., o0:o1, :] = mh[o0:o1, i0:i1] @ y[..., i0:i1, :]
    return z


def _skimage_gaussian(x: torch.Tensor, sigma: float, truncate: float = 4.0, mode: str = "nearest") -> torch.Tensor:
    """skimage.filters.gaussian(x, sigma, mode, truncate) over the two spatial axes of [..., H, W]."""
    mh = gaussian_matrix(x.shape[-2], float(sigma), truncate, mode).to(x)
    mw = gaussian_matrix(x.shape[-1], float(sigma), truncate, mode).to(x)
    radius = int(truncate * sigma + 0.5) if sigma > 1e-15 else 0  # gaussian_matrix's own
    side = min(x.shape[-2:])
    if x.device.type == "cpu" and side > CIFAR_MAX_SIDE and 2 * radius + BAND_BLOCK < side:
        return _banded_separable(x, mh, mw, radius)  # large images, narrow kernels (on a GPU the GEMM is cheap)
    return _separable(x, mh, mw)


# --- blur -------------------------------------------------------------------------------------


@cache
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


def _fft_size(n: int) -> int:
    """The smallest 2**a * 3**b * 5**c >= n (sizes the FFT handles fastest)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def _conv_same_fft(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """_conv_same through the FFT: the same reflect padding, then a product of spectra.

    For ImageNet-size images and 9x9..21x21 defocus disks the direct convolution costs k*k
    multiply-adds a pixel; this costs O(log HW). The spectra are zero-padded to a fast size of at
    least the padded image, so the circular wrap-around only reaches the discarded border: the
    result is the correlation up to float rounding (about 1e-6 in float32; tests).
    """
    n, c, h, w = x.shape
    p = kernel.shape[-1] // 2
    y = F.pad(x.reshape(n * c, 1, h, w), (p, p, p, p), mode="reflect")[:, 0]
    size = (_fft_size(h + 2 * p), _fft_size(w + 2 * p))
    spectrum = torch.fft.rfft2(kernel.flip(-2, -1).to(x), s=size)  # correlation = convolution with the flip
    out = torch.fft.irfft2(torch.fft.rfft2(y, s=size).mul_(spectrum), s=size)
    return out[:, 2 * p : 2 * p + h, 2 * p : 2 * p + w].reshape(n, c, h, w)


# per_image above 64 px only: the FFT route is per image, the direct conv's bits vary with the batch size
@CORRUPTIONS.register("defocus_blur", help="disk-shaped lens blur (ImageNet-C)", per_image=uses_imagenet_table)
def defocus_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    kernel = defocus_kernel(*_param(x, severity, DEFOCUS_BLUR, DEFOCUS_BLUR_IMAGENET))
    if uses_imagenet_table(x.shape[2], x.shape[3]):  # large images, 9x9 to 21x21 kernels
        return _conv_same_fft(x, kernel)
    return _conv_same(x, kernel)  # CIFAR table: 3x3 to 7x7 kernels, direct


def _glass_permutation(n: int, h: int, w: int, delta: int, iterations: int, g: torch.Generator) -> np.ndarray:
    """Where each pixel ends up after glass blur's sequential local swaps: [n * h * w] flat indices.

    The original visits h = H-delta .. delta+1 (descending), w = W-delta .. delta+1 (descending),
    draws dx, dy ~ randint(-delta, delta) (i.e. -delta..delta-1) and swaps pixel (h, w) with
    (h+dy, w+dx); later swaps see earlier ones. Swapping pixels is swapping entries of the index
    map `perm` (image value at p = original value at perm[p]), which does not depend on the pixel
    values, so the serial loop runs once over positions on integer indices, vectorised over the
    batch, and the images are gathered once at the end.
    """
    hs = np.arange(h - delta, delta, -1)
    ws = np.arange(w - delta, delta, -1)
    perm = np.arange(n * h * w)
    if len(hs) == 0 or len(ws) == 0:
        return perm
    pos = (hs[:, None] * w + ws[None, :]).ravel()  # visiting order, flat within one image
    base = np.arange(n) * (h * w)
    src = pos[:, None] + base[None, :]  # [T, n]
    for _ in range(iterations):
        d = torch.randint(-delta, delta, (len(pos), n, 2), generator=g, device=g.device).cpu().numpy()
        dst = src + d[..., 1] * w + d[..., 0]  # (dx, dy) = (d[0], d[1]) as in the original
        for i, j in zip(src, dst, strict=True):
            perm[i], perm[j] = perm[j], perm[i]
    return perm


@CORRUPTIONS.register("glass_blur", help="blur, local pixel swaps, blur again (ImageNet-C)")
def glass_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    # skimage gaussian (mode 'nearest', truncate 4), `iterations` passes of local swaps, gaussian.
    sigma, delta, iterations = _param(x, severity, GLASS_BLUR, GLASS_BLUR_IMAGENET)
    n, c, h, w = x.shape
    x = _skimage_gaussian(x, sigma)
    perm = torch.from_numpy(_glass_permutation(n, h, w, delta, iterations, g)).to(x.device)
    x = x.transpose(0, 1).reshape(c, n * h * w)[:, perm].reshape(c, n, h, w).transpose(0, 1)
    return _skimage_gaussian(x, sigma)


def motion_taps(radius: float, sigma: float) -> torch.Tensor:
    """ImageMagick MotionBlurImage weights: one-sided Gaussian over 2*ceil(radius)+1 taps, normalised."""
    k = torch.arange(2 * math.ceil(radius) + 1, dtype=torch.float64)
    w = torch.exp(-(k**2) / (2 * sigma**2))
    return w / w.sum()


def _line_sum(x: torch.Tensor, weights: Sequence[float], angle_deg: torch.Tensor,
              shifted: bool | None = None) -> torch.Tensor:
    """out[p] = sum_k w_k * x[p + k steps along the image's angle], for [N, C, H, W] and [N] angles.

    Offsets are ImageMagick's MotionBlurImage integers ceil(k*cos - 0.5), ceil(k*sin - 0.5);
    positions outside the image are clamped to the edge (ImageMagick's edge virtual pixels).
    Large images (or `shifted=True`) add shifted views image by image, small ones gather the whole
    batch at once; both give the same bits (tests).
    """
    n, c, h, w = x.shape
    angle = torch.deg2rad(angle_deg.to(x.device, torch.float64))
    k = torch.arange(len(weights), dtype=torch.float64, device=x.device)
    dx = torch.ceil(k[None] * torch.cos(angle)[:, None] - 0.5).long()  # [N, T]
    dy = torch.ceil(k[None] * torch.sin(angle)[:, None] - 0.5).long()
    if uses_imagenet_table(h, w) if shifted is None else shifted:
        return _line_sum_shifted(x, weights, dx.tolist(), dy.tolist())
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for t, wt in enumerate(weights):
        r = (rows[None, :] + dy[:, t, None]).clamp_(0, h - 1)  # [N, H]
        q = (cols[None, :] + dx[:, t, None]).clamp_(0, w - 1)  # [N, W]
        idx = (r[:, :, None] * w + q[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
        out.add_(flat.gather(2, idx), alpha=float(wt))
    return out.reshape(n, c, h, w)


def _line_sum_shifted(
    x: torch.Tensor, weights: Sequence[float], dx: list[list[int]], dy: list[list[int]]
) -> torch.Tensor:
    """_line_sum on large images, image by image: each tap is a shifted view of the image padded
    with its edge pixels (the clamped positions), added in the same order as the gathers (the same
    bits) at a fraction of their cost (no index per pixel)."""
    n, _, h, w = x.shape
    pad = len(weights) - 1  # |offset| <= k <= taps - 1
    out = torch.zeros_like(x)
    for i in range(n):
        p = F.pad(x[i : i + 1], (pad, pad, pad, pad), mode="replicate")
        for t, wt in enumerate(weights):
            oy, ox = pad + dy[i][t], pad + dx[i][t]
            out[i : i + 1].add_(p[..., oy : oy + h, ox : ox + w], alpha=float(wt))
    return out


@CORRUPTIONS.register("motion_blur", help="linear camera-shake blur at a random angle (ImageNet-C)")
def motion_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    radius, sigma = _param(x, severity, MOTION_BLUR, MOTION_BLUR_IMAGENET)
    angle = _rand((x.shape[0],), g, x).double() * 90 - 45  # Uniform(-45, 45) degrees per image
    taps = motion_taps(radius, sigma).tolist()
    return _by_chunks(lambda xs, a: _line_sum(xs, taps, a), x, angle)


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """ImageNet-C `clipped_zoom` on [..., H, W]: centre crop of ceil(size / zoom), zoomed back.

    scipy.ndimage.zoom(order=1) resizes the crop to round(crop * zoom) pixels by linear
    interpolation with corner pixels aligned (== F.interpolate(align_corners=True)); the centre
    H x W of the result is kept. The original crops a square; here each axis uses its own size.
    """
    h, w = x.shape[-2:]
    ch, cw = math.ceil(h / zoom), math.ceil(w / zoom)
    top, left = (h - ch) // 2, (w - cw) // 2
    crop = x[..., top : top + ch, left : left + cw]
    oh, ow = int(round(ch * zoom)), int(round(cw * zoom))
    lead = crop.shape[:-2]
    z = F.interpolate(crop.reshape(-1, 1, ch, cw), size=(oh, ow), mode="bilinear", align_corners=True)
    th, tw = (oh - h) // 2, (ow - w) // 2
    return z[..., th : th + h, tw : tw + w].reshape(*lead, h, w)


@CORRUPTIONS.register("zoom_blur", help="average of centre zooms (ImageNet-C)", per_image=True)
def zoom_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    zooms = _param(x, severity, ZOOM_BLUR, ZOOM_BLUR_IMAGENET)
    out = x.clone()
    for z in zooms:
        out += clipped_zoom(x, z)
    return out / (len(zooms) + 1)


# --- weather ----------------------------------------------------------------------------------


def _gray(x: torch.Tensor) -> torch.Tensor:
    """cv2 COLOR_RGB2GRAY for RGB, the image itself for one channel: [N, 1, H, W]."""
    if x.shape[1] == 1:
        return x
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]


@CORRUPTIONS.register("snow", help="motion-blurred snow flakes over a brightened image (ImageNet-C)")
def snow(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    mean, std, zoom, threshold, radius, sigma, keep = _param(x, severity, SNOW, SNOW_IMAGENET)
    n, _, h, w = x.shape
    layer = mean + std * _randn((n, 1, h, w), g, x)  # one snow layer per image, shared by channels
    angle = _rand((n,), g, x).double() * 90 - 135  # Uniform(-135, -45) degrees
    taps = motion_taps(radius, sigma).tolist()

    def fall(x: torch.Tensor, layer: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        layer = clipped_zoom(layer, zoom)
        layer = zero_below(layer, threshold).clamp(0, 1)
        layer = _line_sum(layer, taps, angle)
        x = keep * x + (1 - keep) * torch.maximum(x, _gray(x) * 1.5 + 0.5)
        return x + layer + layer.flip(-2, -1)  # np.rot90(layer, k=2)

    return _by_chunks(fall, x, layer, angle)


# Brightness statistics of the frost photographs frost1..frost5 that the original samples from
# (measured, RGB in [0, 1]): per-photo mean 0.48..0.81, spatial std 0.06..0.17, blue above red
# by 0.05..0.11 (0.35 for the one teal photo; we draw 0.04..0.24).
FROST_MEAN = (0.48, 0.81)
FROST_STD = (0.06, 0.17)
FROST_BLUE = (0.02, 0.12)  # half the blue-minus-red tint: R = L - b, G = L, B = L + b


def _streaks(x: torch.Tensor, weights: Sequence[float], angle_deg: torch.Tensor) -> torch.Tensor:
    """Periodic line sums for [B, S, S] textures: out[p] = sum_k w_k x[p + k steps along angle].

    Like `_line_sum` but wrapping around instead of clamping, on the flattened map (a step past
    the right edge lands on the next row; invisible on a periodic texture), so each tap is a
    contiguous slice of a doubled buffer instead of a 2-D gather.
    """
    b, h, w = x.shape
    angle = torch.deg2rad(angle_deg.to(x.device, torch.float64))
    k = torch.arange(len(weights), dtype=torch.float64, device=x.device)
    dx = torch.ceil(k[None] * torch.cos(angle)[:, None] - 0.5).long()  # [B, T]
    dy = torch.ceil(k[None] * torch.sin(angle)[:, None] - 0.5).long()
    shift = ((dy * w + dx) % (h * w)).tolist()
    flat = x.reshape(b, h * w)
    doubled = torch.cat([flat, flat], 1)
    out = torch.zeros_like(flat)
    for i in range(b):
        for t, wt in enumerate(weights):
            out[i].add_(doubled[i, shift[i][t] : shift[i][t] + h * w], alpha=float(wt))
    return out.reshape(b, h, w)


def _needles_sparse(
    seeds: torch.Tensor, group: torch.Tensor, weights: Sequence[float], angle_deg: torch.Tensor, k: int
) -> torch.Tensor:
    """The dense route's needles, sum over i of _streaks(seeds * (group == i)), from the seeds alone.

    About 5% of the pixels are seeds: each is scattered to the T pixels its streak reaches (the
    angle of its image and direction group), instead of T shifted passes over k dense maps per
    image. Same terms per pixel, summed in another order: equal to float rounding (tests).
    """
    n, h, w = seeds.shape
    hw = h * w
    angle = torch.deg2rad(angle_deg.to(seeds.device, torch.float64))
    t = torch.arange(len(weights), dtype=torch.float64, device=seeds.device)
    dx = torch.ceil(t[None] * torch.cos(angle)[:, None] - 0.5).long()  # [n * k, T], as in _streaks
    dy = torch.ceil(t[None] * torch.sin(angle)[:, None] - 0.5).long()
    shift = (dy * w + dx) % hw
    flat = seeds.reshape(-1)
    nz = flat.nonzero().squeeze(1)
    img = nz // hw
    # A streak of pixel q reaches q - shift (mod hw): scattered into a doubled row per image,
    # [hw, 2 hw) for q - shift >= 0 and [0, hw) for the wrapped part, folded at the end.
    target = (nz + (img + 1) * hw)[None, :] - shift[img * k + group.reshape(-1)[nz]].T  # [T, nnz]
    contrib = flat[nz][None, :] * torch.tensor(weights, dtype=seeds.dtype, device=seeds.device)[:, None]
    out = torch.zeros(n, 2 * hw, dtype=seeds.dtype, device=seeds.device)
    out.view(-1).scatter_add_(0, target.reshape(-1), contrib.reshape(-1))
    return (out[:, hw:] + out[:, :hw]).view(n, h, w)


def frost_texture(n: int, h: int, w: int, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Procedural ice texture standing in for the ImageNet-C frost photographs: [n, 3, h, w] in [0, 1].

    Per image, on a power-of-two periodic canvas: soft plasma clouds, thin bright ridges along a
    rough plasma's mid level (cracks), and ice needles (sparse seeds streaked along one of four
    random directions; the direction is chosen per region by the cloud map, so needles are
    locally parallel like fern frost). The mix is rescaled to a random mean and spatial std in
    the photographs' ranges (FROST_*) and tinted bluish-white, after a random crop and a light
    blur (sigma = canvas / 256 pixels).
    """
    size = max(8, 1 << (max(h, w) - 1).bit_length())
    cloud = plasma_fractal(n, size, 2.0, g, like)
    rough = plasma_fractal(n, size, 1.3, g, like)
    ridges = (1 - (2 * rough - 1).abs()).pow(12)
    k = 4  # needle directions per image
    group = (cloud * k).long().clamp_(max=k - 1)  # [n, S, S]
    amp = _rand((n, size, size), g, like)
    seeds = torch.where(_rand((n, size, size), g, like) < 0.05, 0.5 + 0.5 * amp, torch.zeros_like(amp))
    length = max(3, size // 10)
    taper = torch.linspace(1.0, 0.3, length).tolist()
    if uses_imagenet_table(h, w):  # large canvases: scatter the sparse seeds (_needles_sparse)
        needles = _needles_sparse(seeds, group, taper, _rand((n * k,), g, like).double() * 360, k)
    else:  # the <= 64 px table keeps the dense route, bit for bit
        seeds = torch.stack([seeds * (group == i) for i in range(k)], dim=1).reshape(n * k, size, size)
        needles = _streaks(seeds, taper, _rand((n * k,), g, like).double() * 360)
        needles = needles.reshape(n, k, size, size).sum(1)
    needles = needles.clamp(max=1)
    lum = 0.45 * cloud + 0.35 * needles + 0.2 * ridges
    # Random crop (with wrap-around: every map above is periodic) before matching statistics.
    oy = (_rand((n,), g, like) * size).long().clamp_(max=size - 1)
    ox = (_rand((n,), g, like) * size).long().clamp_(max=size - 1)
    rows = (oy[:, None] + torch.arange(h, device=lum.device)) % size  # [n, h]
    cols = (ox[:, None] + torch.arange(w, device=lum.device)) % size
    lum = lum.gather(1, rows[:, :, None].expand(n, h, size)).gather(2, cols[:, None, :].expand(n, h, w))
    lum = _skimage_gaussian(lum, size / 256)  # soften 1-pixel needles on large canvases (photo-like)
    mean = _uniform((n, 1, 1), *FROST_MEAN, g, like)
    std = _uniform((n, 1, 1), *FROST_STD, g, like)
    z = (lum - lum.mean(dim=(1, 2), keepdim=True)) / lum.std(dim=(1, 2), keepdim=True, correction=0).clamp_min(1e-6)
    lum = mean + std * z
    tint = _uniform((n, 1, 1), *FROST_BLUE, g, like)
    return torch.stack([lum - tint, lum, lum + tint], dim=1).clamp(0, 1)


@CORRUPTIONS.register("frost", help="blend with a procedural frost texture (ImageNet-C, not the photos)")
def frost(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    # Original: clip(c0 * x + c1 * frost_photo_crop). The texture is procedural (frost_texture).
    keep, amount = _param(x, severity, FROST, FROST_IMAGENET)
    n, c, h, w = x.shape
    tex = frost_texture(n, h, w, g, x)
    return keep * x + amount * (tex if c == 3 else _gray(tex))


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
    strength, decay = _param(x, severity, FOG, FOG_IMAGENET)
    n, _, h, w = x.shape
    mapsize = max(2, 1 << (max(h, w) - 1).bit_length())  # next power of two >= max(H, W)
    x_max = x.amax(dim=(1, 2, 3), keepdim=True)
    x = x + strength * plasma_fractal(n, mapsize, decay, g, x)[:, None, :h, :w]
    return x * x_max / (x_max + strength)


# --- digital / photometric --------------------------------------------------------------------


@CORRUPTIONS.register("brightness", help="raise HSV value (ImageNet-C)", per_image=True)
def brightness(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = _param(x, severity, BRIGHTNESS, BRIGHTNESS_IMAGENET)
    if x.shape[1] == 1:
        return x + c  # grey: V is the pixel itself
    # rgb -> hsv -> V = clip(V + c) -> rgb keeps H and S, and hsv2rgb is linear in V, so the round
    # trip is exactly a per-pixel rescale rgb * V'/V (grey V' where V = 0, where skimage sets S = 0).
    v = x.amax(dim=1, keepdim=True)
    v_new = (v + c).clamp(0, 1)
    return torch.where(v > 0, x * (v_new / v.clamp_min(1e-12)), v_new)


@CORRUPTIONS.register("contrast", help="shrink towards the per-channel mean (ImageNet-C)", per_image=True)
def contrast(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    m = x.mean(dim=(2, 3), keepdim=True)
    return (x - m) * _param(x, severity, CONTRAST, CONTRAST_IMAGENET) + m


def _affine_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """cv2.getAffineTransform for batches: [N, 3, 2] point pairs -> [N, 3, 3] (last row 0 0 1)."""
    ones = torch.ones(*src.shape[:-1], 1, dtype=src.dtype, device=src.device)
    a = torch.linalg.solve(torch.cat([src, ones], -1), dst)  # [x y 1] @ a = dst, a: [N, 3, 2]
    bottom = torch.tensor([0.0, 0.0, 1.0], dtype=src.dtype, device=src.device).expand(src.shape[0], 1, 3)
    return torch.cat([a.transpose(1, 2), bottom], 1)


@CORRUPTIONS.register("elastic_transform", help="random affine then smooth random displacement (ImageNet-C)")
def elastic_transform(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    big = uses_imagenet_table(h, w)
    scale = max(h, w) / (ELASTIC_SIZE_IMAGENET if big else ELASTIC_SIZE)
    alpha, sigma, jitter = (scale * v for v in _param(x, severity, ELASTIC_TRANSFORM, ELASTIC_TRANSFORM_IMAGENET))
    dt = torch.float64
    # Random affine: cv2.getAffineTransform(pts1, pts1 + U(-jitter, jitter)), then cv2.warpAffine
    # (bilinear, BORDER_REFLECT_101): output (x, y) samples the input at M^-1 (x, y). The original's
    # points mix (H, W) order into (x, y) pairs; kept as is (it only matters for non-square images).
    # The triangle's half-size min(H, W) // 3 is kept at least 1 so that images under 3 pixels work.
    ch, cw, sq = float(h // 2), float(w // 2), float(max(min(h, w) // 3, 1))
    pts1 = torch.tensor([[ch + sq, cw + sq], [ch + sq, cw - sq], [ch - sq, cw - sq]], dtype=dt, device=x.device)
    pts2 = pts1 + _uniform((n, 3, 2), -jitter, jitter, g, x).to(dt)
    u = _uniform((n, 2, h, w), -1, 1, g, x).to(dt)  # the displacements' noise (both draws come first)
    return _by_chunks(lambda xs, p2, us: _elastic_warp(xs, pts1, p2, us, alpha, sigma), x, pts2, u)


def _elastic_warp(x: torch.Tensor, pts1: torch.Tensor, pts2: torch.Tensor, u: torch.Tensor, alpha: float,
                  sigma: float) -> torch.Tensor:
    """elastic_transform's warps of [N, C, H, W] images from their drawn points and noise."""
    n, _, h, w = x.shape
    dt = torch.float64
    inv = torch.linalg.inv(_affine_from_points(pts1.expand(n, 3, 2), pts2))
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=dt, device=x.device), torch.arange(w, dtype=dt, device=x.device), indexing="ij"
    )
    sx = inv[:, 0, 0, None, None] * xx + inv[:, 0, 1, None, None] * yy + inv[:, 0, 2, None, None]
    sy = inv[:, 1, 0, None, None] * xx + inv[:, 1, 1, None, None] * yy + inv[:, 1, 2, None, None]
    # grid_sample(align_corners=True, reflection) reflects about the edge pixel centres == REFLECT_101.
    grid = torch.stack([sx * 2 / max(w - 1, 1) - 1, sy * 2 / max(h - 1, 1) - 1], -1).to(x.dtype)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=True)
    # Displacements dx, dy = skimage gaussian(U(-1, 1), sigma, mode='reflect', truncate=3) * alpha,
    # then scipy map_coordinates(order=1, mode='reflect') at (y + dy, x + dx).
    if alpha == 0:
        return x  # CIFAR severity 1: no displacement, the affine only
    d = _skimage_gaussian(u, sigma, truncate=3.0, mode="reflect") * alpha
    sx, sy = xx + d[:, 0], yy + d[:, 1]
    # grid_sample(align_corners=False, reflection) reflects about the outer pixel edges == scipy 'reflect'.
    grid = torch.stack([(sx + 0.5) * 2 / w - 1, (sy + 0.5) * 2 / h - 1], -1).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


@cache
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


@cache
def _pixelate_matrix(size: int, factor: float) -> torch.Tensor:
    """BOX-downsample to int(size*factor) then BOX-upsample back, as one [size, size] matrix."""
    small = max(int(size * factor), 1)
    return _pil_box(small, size) @ _pil_box(size, small)


@cache
def _pixelate_taps(size: int, factor: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """_pixelate_matrix in sparse form: (taps [T, small], weights [T, small], up [size]).

    Downsampled pixel k averages the input pixels taps[:, k] with weights[:, k] (Pillow's BOX: a
    run of equal weights 1/count; shorter runs repeat their last pixel with weight 0), and output
    pixel i copies downsampled pixel up[i] (the upsampling BOX has one unit weight per row).
    """
    small = max(int(size * factor), 1)
    down, up = _pil_box(size, small), _pil_box(small, size)
    assert bool(((up > 0).sum(1) == 1).all()), "BOX upsampling picks one pixel per output"
    lo = (down > 0).float().argmax(1)
    count = (down > 0).sum(1)
    t = torch.arange(int(count.max()))[:, None]
    taps = lo[None] + torch.minimum(t, count[None] - 1)
    weights = torch.where(t < count[None], down.gather(1, taps.T).T, 0.0)
    return taps, weights, up.argmax(1)


def _select(x: torch.Tensor, dim: int, index: torch.Tensor) -> torch.Tensor:
    """x.index_select(dim, index) for dim -2; for the last dim a gather, which is several times faster."""
    index = index.to(x.device)
    if dim == -2:
        return x.index_select(-2, index)
    return x.gather(-1, index.expand(*x.shape[:-1], len(index)))


def _box_down(x: torch.Tensor, dim: int, taps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Pillow BOX downsampling of x along `dim` (-1 or -2) from _pixelate_taps' taps and weights."""
    shape = (-1, 1) if dim == -2 else (-1,)
    w = weights.to(x)
    out = _select(x, dim, taps[0]).mul_(w[0].view(shape))
    for t in range(1, len(taps)):
        out.addcmul_(_select(x, dim, taps[t]), w[t].view(shape))
    return out


@cache
def _box_windows(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pillow's BOX downsampling as windows: (window of each input pixel [in], 1 / window size [out]).

    A pixel belongs to output i when its centre lies in (i * scale, (i + 1) * scale]: disjoint runs
    averaged with equal weights. Pillow's float bounds leave a pixel out now and then (67 -> 20
    misses pixel 33); such a pixel goes to an extra window, out_size, which the caller drops.
    """
    inside = _pil_box(in_size, out_size) > 0
    assert bool((inside.sum(0) <= 1).all()), "BOX downsampling windows are disjoint"
    window = torch.where(inside.any(0), inside.to(torch.int8).argmax(0), out_size)
    return window, 1 / inside.sum(1).double()


def _box_down_cpu(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pillow BOX downsampling of [N, C, H, W] to [N, C, h, w] on CPU: each window summed by
    index_add_ (one pass over the input), then scaled by 1 / (its rows * its columns).

    Within float rounding of _box_down's taps (tests). CPU only: there index_add_ adds in index
    order, while on CUDA its atomic adds would let the bits vary from run to run.
    """
    rows, inv_h = _box_windows(x.shape[2], h)
    cols, inv_w = _box_windows(x.shape[3], w)
    extra_h, extra_w = int(rows.max() == h), int(cols.max() == w)  # a window of left-out pixels
    out = x.new_zeros(*x.shape[:2], h + extra_h, x.shape[3]).index_add_(2, rows, x)[:, :, :h]
    out = out.new_zeros(*x.shape[:2], h, w + extra_w).index_add_(3, cols, out)[..., :w]
    return out.mul_((inv_h[:, None] * inv_w[None, :]).to(x.dtype)).contiguous()


# Not split by corrupt(): it reads and writes each pixel once, and chunks would add a copy.
@CORRUPTIONS.register("pixelate", help="box downsample then upsample (ImageNet-C)", in_range=True)
def pixelate(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    c = _param(x, severity, PIXELATE, PIXELATE_IMAGENET)
    if not uses_imagenet_table(x.shape[2], x.shape[3]):
        mh = _pixelate_matrix(x.shape[2], c).to(x)
        mw = _pixelate_matrix(x.shape[3], c).to(x)
        return _separable(x, mh, mw).clamp_(0, 1)  # like Pillow's two passes
    # Large images: the dense [size, size] products touch each pixel size times; the same
    # resampling in sparse form (window sums on CPU, 2-3 taps per downsampled pixel elsewhere, then
    # one copy per output pixel) is linear in the pixels and equal to the matrix route to float
    # rounding (tests).
    th, wh, uh = _pixelate_taps(x.shape[2], c)
    tw, ww, uw = _pixelate_taps(x.shape[3], c)
    if x.device.type == "cpu":
        small = _box_down_cpu(x, th.shape[1], tw.shape[1])
    else:
        small = _box_down(_box_down(x, -2, th, wh), -1, tw, ww)
    # Clipped before the upsampling copies it: the same values, on 36 % of the pixels or fewer (0.6 a side).
    small.clamp_(0, 1)
    if _nearest_exact_is(uh) and _nearest_exact_is(uw):  # the same copies in one resampling kernel
        # A tensor of its own (not a reshaped view), so that corrupt() returns it as it is.
        return F.interpolate(small, size=x.shape[2:], mode="nearest-exact")
    return _select(_select(small, -1, uw), -2, uh)


@cache
def _nearest_exact_is_cached(index: tuple[int, ...]) -> bool:
    src = torch.arange(max(index) + 1, dtype=torch.float64)
    picked = F.interpolate(src.view(1, 1, -1), size=len(index), mode="nearest-exact").view(-1)
    return picked.long().tolist() == list(index)


def _nearest_exact_is(index: torch.Tensor) -> bool:
    """Whether F.interpolate(mode='nearest-exact') copies output pixel i from input pixel index[i]
    (checked once per index; it holds for Pillow's BOX upsampling at the sizes we tried)."""
    return _nearest_exact_is_cached(tuple(index.tolist()))


@CORRUPTIONS.register("jpeg_compression", help="JPEG encode/decode (ImageNet-C)", in_range=True)
def jpeg_compression(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    q = _param(x, severity, JPEG_QUALITY, JPEG_QUALITY_IMAGENET)
    # Imported here: torchvision's package imports its models and ops, which no other run needs.
    from torchvision.io import ImageReadMode, decode_jpeg, encode_jpeg

    u8 = torch.from_numpy(_quantized_hwc(x)).permute(0, 3, 1, 2)  # CHW views of HWC buffers, as the codec likes
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its codecs in favour of torchcodec; until they are removed they
        # are bit-identical to the Pillow JPEG round trip of make_cifar_c.py (see the tests).
        warnings.filterwarnings("ignore", message=".*TorchVision are deprecated", category=DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(list(u8), quality=q), mode=ImageReadMode.UNCHANGED)
    # The decoder returns CHW views of HWC buffers: convert and transpose into the output in one pass,
    # then divide in place; a large batch image by image, each still in cache for its division.
    out = torch.empty(x.shape, dtype=x.dtype)
    if _chunk_step(x) is None:
        out.copy_(torch.stack([d.permute(1, 2, 0) for d in decoded]).permute(0, 3, 1, 2)).div_(255)
    else:
        for image, d in zip(out, decoded, strict=True):
            image.copy_(d).div_(255)
    return out.to(x.device)


def _quantized_hwc(x: torch.Tensor) -> np.ndarray:
    """round(255 x) clipped to 0..255, as a uint8 [N, H, W, C] CPU array (the codec's input order).

    A large batch on the CPU goes a chunk of images at a time (chunk_slices), through one float buffer
    that stays in cache for the transposing multiply, the rounding, the clip and the cast (numpy's
    float -> uint8 cast is faster than torch's, and exact on these integers); otherwise the whole
    batch in one go.
    """
    n, c, h, w = x.shape
    parts = chunk_slices(x) if x.device.type == "cpu" else [slice(0, n)]
    buf = x.new_empty(len(x[parts[0]]) if parts else 0, h, w, c)
    u8 = np.empty((n, h, w, c), np.uint8)
    for part in parts:
        chunk = x[part]
        b = torch.mul(chunk.permute(0, 2, 3, 1), 255, out=buf[: len(chunk)]).round_().clamp_(0, 255)
        np.copyto(u8[part], b.cpu().numpy(), casting="unsafe")
    return u8


# Canonical ImageNet-C order (noise, blur, weather, digital).
_IMAGENET_C_ORDER = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
CORRUPTION_NAMES: tuple[str, ...] = tuple(n for n in _IMAGENET_C_ORDER if n in CORRUPTIONS)

# The 4 ImageNet-C validation corruptions register themselves in CORRUPTIONS (a scenario may name
# them) but stay out of CORRUPTION_NAMES: models and hyper-parameters are chosen on them, and
# tested on the 15 above.
VALIDATION_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
import cemasim.data.validation_corruptions  # noqa: E402,F401  (registers them)


def splits_by_image(name: str, height: int, width: int) -> bool:
    """Whether corruption `name` (registered `per_image`: True, or a test of the image size) gives
    each image the output it would get alone, so that corrupt() may split a large batch."""
    per_image = CORRUPTIONS.meta(name).get("per_image", False)
    return bool(per_image(height, width) if callable(per_image) else per_image)


def corrupt(
    images: torch.Tensor, name: str, severity: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply corruption `name` at `severity` (0 = clean copy, 1..5) to a [N, C, H, W] batch in [0, 1].

    The severity table is CIFAR-10-C's for max(H, W) <= CIFAR_MAX_SIDE, ImageNet-C's otherwise.
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
    meta = CORRUPTIONS.meta(name)
    parts = chunk_slices(work)
    if len(parts) > 1 and work.dtype == images.dtype and splits_by_image(name, *work.shape[2:]):
        # Each image's output depends on that image alone (no draws, no batch statistics; tests):
        # a few images at a time give the same bits, and each chunk's temporaries stay in cache.
        chunked = torch.empty_like(work, memory_format=torch.contiguous_format)
        for part in parts:
            done, into = fn(work[part], int(severity), generator), chunked[part]
            if meta.get("in_range"):
                into.copy_(done)
            else:
                torch.clamp(done, 0, 1, out=into)
        return chunked
    out = fn(work, int(severity), generator)
    # Clip in place when `out` is a fresh tensor of its own (saves a pass and an allocation);
    # a corruption may return its input or a view of it, which must stay untouched. A corruption
    # registered `in_range` returns values in [0, 1] by construction (tests): no pass at all.
    fresh = out._base is None and out.is_contiguous() and out.data_ptr() != images.data_ptr()
    if fresh and meta.get("in_range"):
        return out.to(images.dtype)
    return (out.clamp_(0, 1) if fresh else out.clamp(0, 1)).to(images.dtype)
