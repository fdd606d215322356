"""The 4 ImageNet-C validation corruptions, kept apart from the 15 test corruptions.

Hendrycks & Dietterich (ICLR 2019) ship speckle noise, Gaussian blur, spatter and saturate
"for validation": hyper-parameters and model choices are made on them, never on the 15 test
corruptions. They register in the same `CORRUPTIONS` registry (a scenario can name them) but are
listed in `VALIDATION_CORRUPTIONS`, not in `CORRUPTION_NAMES`.

Both parameter tables are copied from github.com/hendrycks/robustness (make_cifar_c.py for
max(H, W) <= 64, make_imagenet_c.py above), chosen by resolution as for the test corruptions.

Colour: spatter and saturate are defined on RGB. A one-channel image is expanded to grey RGB,
corrupted, and converted back with cv2's RGB2GRAY weights (0.299, 0.587, 0.114). Saturate then
acts only through the saturation offset of severities 4-5 (a grey pixel has S = 0 and hue 0, so
S' = c1 tints it red and darkens its grey value by 0.701 * c1); severities 1-3 leave grey
images unchanged. That is what the definition gives; we do not invent a grey variant.

Spatter's water branch (severities 1-3) follows the OpenCV pipeline step by step in torch:
Canny(50, 150) with a 3x3 Sobel and L1 magnitude, distanceTransform(DIST_L2, 5) (OpenCV's 5x5
chamfer metric, weights 1 / 1.4 / 2.1969), truncation at 20, 3x3 box blurs, equalizeHist and the
uint8 filter2D, with OpenCV's borders (Sobel: replicate; blur, filter2D: reflect-101).
Differences: the float liquid layer is clipped to [0, 1] before its uint8 cast (the original
wraps values above 1, which its tables make rare), and a layer with no edge pixels gives no
water (the original divides by a zero maximum and produces NaN).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cemasim.data.corruptions import (
    CORRUPTIONS,
    VALIDATION_CORRUPTIONS,
    _by_chunks,
    _gray,
    _param,
    _randn,
    _skimage_gaussian,
    chunk_slices,
    zero_below,
)

__all__ = ["VALIDATION_CORRUPTIONS", "canny", "chamfer_distance", "equalize_hist"]

SPECKLE_NOISE = (0.06, 0.1, 0.12, 0.16, 0.2)  # multiplicative noise std
SPECKLE_NOISE_IMAGENET = (0.15, 0.2, 0.35, 0.45, 0.6)
GAUSSIAN_BLUR = (0.4, 0.6, 0.7, 0.8, 1.0)  # sigma in pixels
GAUSSIAN_BLUR_IMAGENET = (1, 2, 3, 4, 6)
# (liquid mean, liquid std, liquid blur sigma, threshold, water strength | mud blur sigma, mud?)
SPATTER = (
    (0.62, 0.1, 0.7, 0.7, 0.5, 0),
    (0.65, 0.1, 0.8, 0.7, 0.5, 0),
    (0.65, 0.3, 1, 0.69, 0.5, 0),
    (0.65, 0.1, 0.7, 0.69, 0.6, 1),
    (0.65, 0.1, 0.5, 0.68, 0.6, 1),
)
SPATTER_IMAGENET = (
    (0.65, 0.3, 4, 0.69, 0.6, 0),
    (0.65, 0.3, 3, 0.68, 0.6, 0),
    (0.65, 0.3, 2, 0.68, 0.5, 0),
    (0.65, 0.3, 1, 0.65, 1.5, 1),
    (0.67, 0.4, 1, 0.65, 1.5, 1),
)
SATURATE = ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2))  # (S factor, S offset)
SATURATE_IMAGENET = ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2))
WATER_RGB = (175 / 255, 238 / 255, 238 / 255)  # pale turquoise
MUD_RGB = (63 / 255, 42 / 255, 20 / 255)
CHAMFER_5X5 = (1.0, 1.4, 2.1969)  # cv2 DIST_L2 with maskSize 5: axial, diagonal, knight moves
CHAMFER_UNIT = 10_000  # the weights in 1e-4 units are integers: path lengths add exactly in int32
CHAMFER_INT = tuple(round(w * CHAMFER_UNIT) for w in CHAMFER_5X5)  # 10000, 14000, 21969


@CORRUPTIONS.register("speckle_noise", help="multiplicative Gaussian noise (ImageNet-C validation)")
def speckle_noise(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return x + x * _randn(tuple(x.shape), g, x) * _param(x, severity, SPECKLE_NOISE, SPECKLE_NOISE_IMAGENET)


@CORRUPTIONS.register("gaussian_blur", help="Gaussian blur (ImageNet-C validation)")
def gaussian_blur(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    return _skimage_gaussian(x, _param(x, severity, GAUSSIAN_BLUR, GAUSSIAN_BLUR_IMAGENET))


def _as_rgb(fn):
    """Run an RGB-only corruption on one-channel images via grey RGB and back (cv2 weights)."""

    def wrapped(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
        if x.shape[1] == 3:
            return fn(x, severity, g)
        return _gray(fn(x.expand(-1, 3, -1, -1).contiguous(), severity, g).clamp(0, 1))

    wrapped.__doc__ = fn.__doc__
    return wrapped


def _rgb_to_saturation(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """skimage rgb2hsv's S and V, and each channel's hue factor f_c = (V - c) / (V - min)."""
    v = x.amax(1, keepdim=True)
    delta = v - x.amin(1, keepdim=True)
    s = torch.where(v > 0, delta / v.clamp_min(1e-12), torch.zeros_like(v))
    # skimage sets hue 0 (pure red: f = 0, 1, 1) where delta == 0.
    red = torch.tensor([0.0, 1.0, 1.0], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    f = torch.where(delta > 0, (v - x) / delta.clamp_min(1e-12), red.expand_as(x))
    return s, v, f


@CORRUPTIONS.register("saturate", help="scale and shift HSV saturation (ImageNet-C validation)",
                      per_image=True)
@_as_rgb
def saturate(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    scale, shift = _param(x, severity, SATURATE, SATURATE_IMAGENET)
    s, v, f = _rgb_to_saturation(x)
    s_new = (s * scale + shift).clamp(0, 1)
    return v * (1 - s_new * f)  # hsv2rgb with the same hue and value


# --- spatter's OpenCV steps ----------------------------------------------------------------------


def _shift_sum(x: torch.Tensor, kernel: list[list[float]], mode: str) -> torch.Tensor:
    """cv2.filter2D's 3x3 correlation of [N, 1, H, W] with 'reflect' (= BORDER_REFLECT_101) or 'replicate'
    borders, as nine shifted multiply-adds in row-major order: far cheaper than a one-channel conv.

    The same bits as the conv: on integer-valued data every partial sum is an integer below 2**24
    (exact in any order), and a sum of ones accumulates tap by tap in row-major order, which is
    the conv's own order on CPU (checked in the tests against F.conv2d).
    """
    h, w = x.shape[-2:]
    p = F.pad(x, (1, 1, 1, 1), mode=mode)
    out = torch.zeros_like(x)
    for i, row in enumerate(kernel):
        for j, k in enumerate(row):
            if k:
                out.add_(p[..., i : i + h, j : j + w], alpha=k)
    return out


def _box3(x: torch.Tensor) -> torch.Tensor:
    """cv2.blur(x, (3, 3)) of float32 data: the 9-sum in float32, then times float32(1/9).

    Done in float32 as OpenCV does, because the caller truncates to uint8: a float64 mean
    lands on the other side of an integer often enough to change the water pattern.
    """
    s = _shift_sum(x.float(), [[1.0] * 3] * 3, "reflect")
    return s * torch.tensor(1 / 9, dtype=torch.float32)


def _dilate3(b: torch.Tensor) -> torch.Tensor:
    """3x3 binary dilation of a bool [..., H, W] map (outside counts as False), as shifted ORs."""
    r = b.clone()
    r[..., 1:, :] |= b[..., :-1, :]
    r[..., :-1, :] |= b[..., 1:, :]
    out = r.clone()
    out[..., :, 1:] |= r[..., :, :-1]
    out[..., :, :-1] |= r[..., :, 1:]
    return out


def _saturate_u8(x: torch.Tensor) -> torch.Tensor:
    """cv2.saturate_cast<uchar>: round half to even, clip to 0..255."""
    return x.round().clamp(0, 255)


def canny(u8: torch.Tensor, low: float = 50, high: float = 150) -> torch.Tensor:
    """cv2.Canny(img, low, high) of [N, 1, H, W] uint8-valued floats: 1 on edges, else 0.

    Computed in float32 whatever the input: the Sobel sums are integers below 2**11 (exact), and
    the float32 tangent comparisons give the float64 ones for every pair of such integers (tests).
    """
    p = F.pad(u8.float(), (1, 1, 1, 1), mode="replicate")  # Sobel, separable: exact on integers
    down = torch.add(p[..., :-2, :], p[..., 2:, :]).add_(p[..., 1:-1, :], alpha=2)  # [1, 2, 1] over rows
    across = torch.add(p[..., :-2], p[..., 2:]).add_(p[..., 1:-1], alpha=2)  # and over columns
    dx, dy = down[..., 2:] - down[..., :-2], across[..., 2:, :] - across[..., :-2, :]
    ax, ay = dx.abs(), dy.abs()
    mag = ax + ay
    m = F.pad(mag, (1, 1, 1, 1))  # the neighbours outside the image count as 0, as in OpenCV
    h, w = mag.shape[-2:]

    def at(oy: int, ox: int) -> torch.Tensor:
        return m[..., 1 + oy : 1 + oy + h, 1 + ox : 1 + ox + w]

    tg22, tg67 = 0.4142135623730950, 2.414213562373095
    horizontal = ay < ax * tg22
    vertical = ay > ax * tg67
    opposite = (dx * dy) < 0  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1
    # Non-maximum suppression as one comparison with the larger neighbour along the gradient: on these
    # integers mag >= b is mag > b - 1, and (mag > a) & (mag > b) is mag > max(a, b). Comparisons and
    # torch.where are torch's slowest elementwise ops on the CPU here, so 13 comparisons become 4 (+ the
    # strong one) and each choice is arithmetic: no + cond * (yes - no), exact on integers.
    def pick(cond: torch.Tensor, yes: torch.Tensor, no: torch.Tensor) -> torch.Tensor:
        return no.add_(cond.view(torch.uint8) * (yes - no))

    along = pick(opposite, torch.maximum(at(-1, 1), at(1, -1)), torch.maximum(at(-1, -1), at(1, 1)))
    along = pick(vertical, torch.maximum(at(-1, 0), at(1, 0) - 1), along)
    along = pick(horizontal, torch.maximum(at(0, -1), at(0, 1) - 1), along)
    peak = mag > along.clamp_min_(low)  # and above the low threshold
    edges = peak & (mag > high)
    while True:  # hysteresis: grow strong edges through 8-connected weak ones
        grown = peak & _dilate3(edges)
        if torch.equal(grown, edges):
            return edges.to(u8.dtype)
        edges = grown


def _chamfer_candidates(near: np.ndarray, far: np.ndarray, w: int, out: np.ndarray, tmp: np.ndarray) -> np.ndarray:
    """A row's candidates (into `out`, [W, N]) from the padded rows one (`near`) and two (`far`) away:
    the minimum over the 5x5 mask's offsets there of d[q] + weight, each weight added once to its
    group's minimum."""
    a, b, c = CHAMFER_INT
    np.minimum(far[1 : w + 1], far[3 : w + 3], out=out)  # knight moves
    np.minimum(near[0:w], near[4 : w + 4], out=tmp)
    np.minimum(out, tmp, out=out)
    out += c
    np.minimum(near[1 : w + 1], near[3 : w + 3], out=tmp)  # diagonal moves
    tmp += b
    np.minimum(out, tmp, out=out)
    np.add(near[2 : w + 2], a, out=tmp)  # the axial move
    return np.minimum(out, tmp, out=out)


def chamfer_distance(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """cv2.distanceTransform(DIST_L2, 5) to the nearest `zero` pixel, truncated at `cap`, in float32.

    The shortest path over the 5x5 chamfer mask (weights 1 / 1.4 / 2.1969), in exact integers: the
    weights in 1e-4 units are 10000 / 14000 / 21969. Borgefors' two raster passes, as OpenCV's
    distransform.cpp runs them, vectorised over the batch and over each row: a row takes its
    candidates from the two rows before it (forward) or after it (backward), then runs the in-row
    chain d[j] = min(c[j], d[j -/+ 1] + a) as one cumulative minimum, d[j] = j*a + min_{k<=j}(c[k] - k*a).
    The float32 of length / 1e4 is the float32 of the exact real length, which is what the plain
    float64 relaxation gives once cast (it stays within 1e-13 of the real length, which is never
    within 9e-11 of a float32 rounding boundary; tests). OpenCV adds float32 (IPP) or 2**-16 fixed-
    point weights instead: within 3e-5 of these lengths. Values above `cap` only ever give
    candidates above it, so the border holds just above `cap`.

    The 2 x H row steps, a dozen operations on a row each, run in numpy on the CPU whatever the
    device (torch's cost per call is several times numpy's, a GPU's launches more), on a [H, W, N]
    layout in which every row is one contiguous [W, N] block.
    """
    a = CHAMFER_INT[0]
    n, h, w = zero.shape[0], *zero.shape[-2:]
    limit = round(cap * CHAMFER_UNIT)
    src = (zero.reshape(n, h, w) > 0).cpu().numpy().transpose(1, 2, 0)
    ceiling = np.where(src, np.int32(0), np.int32(limit + 1))  # [H, W, N]: 0 on the sources
    t = np.full((h + 4, w + 4, n), limit + 1, dtype=np.int32)  # a 2-pixel border
    ramp = (np.arange(w, dtype=np.int32) * a)[:, None]
    cand, tmp = np.empty((w, n), np.int32), np.empty((w, n), np.int32)
    for i in range(h):  # forward: image row i is t's row i + 2
        np.minimum(_chamfer_candidates(t[i + 1], t[i], w, cand, tmp), ceiling[i], out=cand)
        cand -= ramp
        row = t[i + 2, 2 : w + 2]
        np.minimum.accumulate(cand, axis=0, out=row)
        row += ramp
    for i in range(h - 1, -1, -1):  # backward, from the bottom right
        row = t[i + 2, 2 : w + 2]
        np.minimum(_chamfer_candidates(t[i + 3], t[i + 4], w, cand, tmp), row, out=cand)
        cand += ramp
        np.minimum.accumulate(cand[::-1], axis=0, out=row[::-1])
        row -= ramp
    # Lengths are integers up to limit + 1 < 2**24, exact in float32, and float32 division rounds the
    # exact quotient once: the float32 of length / 1e4 (a test checks every length up to the cap).
    d = np.empty((h, w, n), np.float32)
    np.copyto(d, t[2 : h + 2, 2 : w + 2])
    np.divide(d, np.float32(CHAMFER_UNIT), out=d)
    np.minimum(d, np.float32(limit / CHAMFER_UNIT), out=d)  # = min(length, limit) / 1e4: division is monotone
    out = torch.empty(n, h * w)  # back to [N, H, W] by torch's blocked 2-D transposing copy (numpy's is 2x slower)
    out.copy_(torch.from_numpy(d).view(h * w, n).t())
    return out.to(zero.device).reshape(zero.shape)


def equalize_hist(u8: torch.Tensor) -> torch.Tensor:
    """cv2.equalizeHist per image of [N, 1, H, W] uint8-valued floats."""
    n = u8.shape[0]
    flat = u8.reshape(n, -1).long()
    hist = torch.zeros(n, 256, dtype=torch.float64, device=u8.device).scatter_add_(
        1, flat, torch.ones_like(flat, dtype=torch.float64))
    total = flat.shape[1]
    first = (hist > 0).float().argmax(1)  # first non-empty bin
    first_count = hist.gather(1, first[:, None])
    cum = hist.cumsum(1) - first_count  # sum of hist[first+1 .. j]
    scale = 255.0 / (total - first_count).clamp_min(1)
    lut = _saturate_u8(cum * scale)
    lut = torch.where(torch.arange(256, device=u8.device)[None] <= first[:, None], 0.0, lut)
    constant = first_count[:, 0] == total  # OpenCV fills a one-valued image with that value
    out = lut.gather(1, flat).to(u8.dtype)
    out = torch.where(constant[:, None], flat.to(u8.dtype), out)
    return out.view_as(u8)


@CORRUPTIONS.register("spatter", help="water drops or mud splashes over the image (ImageNet-C validation)")
@_as_rgb
def spatter(x: torch.Tensor, severity: int, g: torch.Generator) -> torch.Tensor:
    mean, std, sigma, threshold, strength, mud = _param(x, severity, SPATTER, SPATTER_IMAGENET)
    n, _, h, w = x.shape
    dt = torch.float64
    noise = _randn((n, 1, h, w), g, x).to(dt)  # the only draw
    if mud:
        liquid = _liquid(noise, mean, std, sigma, threshold)
        m = _skimage_gaussian((liquid > threshold).to(dt), strength)
        m = zero_below(m, 0.8).to(x.dtype)
        color = torch.tensor(MUD_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x * (1 - m) + color * m
    # Water: every step but the chamfer distance treats each image on its own and runs a few images
    # at a time (_by_chunks: the same bits, in cache); the chamfer's row passes take the whole batch.
    layers = _by_chunks(lambda z: _liquid_and_edges(z, mean, std, sigma, threshold), noise)
    dist = chamfer_distance(layers[:, 1:] > 0, cap=20.0)  # float32, as cv2; zero on the edges
    out = torch.empty_like(x, memory_format=torch.contiguous_format)
    for part in chunk_slices(x):  # as _by_chunks, each chunk written straight into the output
        _water(x[part], layers[part, :1], dist[part], strength, out=out[part])
    return out


def _liquid(noise: torch.Tensor, mean: float, std: float, sigma: float, threshold: float) -> torch.Tensor:
    liquid = _skimage_gaussian(mean + std * noise, sigma)
    return zero_below(liquid, threshold)


def _liquid_and_edges(noise: torch.Tensor, mean: float, std: float, sigma: float, threshold: float) -> torch.Tensor:
    """[N, 2, H, W]: the uint8-valued liquid layer, and its Canny edges (1) where dist = 255 - Canny is 0."""
    liquid_u8 = torch.floor(_liquid(noise, mean, std, sigma, threshold).clamp(0, 1) * 255)
    return torch.cat([liquid_u8, canny(liquid_u8)], 1)


def _water(x: torch.Tensor, liquid_u8: torch.Tensor, dist: torch.Tensor, strength: float,
           out: torch.Tensor) -> torch.Tensor:
    """The water layer from the truncated distances, blended over x (x + m * color, in float64), into `out`."""
    # The uint8 steps run on integer-valued float32 (exact: every value and sum is below 2**24).
    dist = equalize_hist(torch.floor(_box3(dist)))  # .astype(np.uint8)
    dist = _saturate_u8(_shift_sum(dist, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "reflect"))  # CV_8U
    m = liquid_u8 * _box3(dist).to(liquid_u8.dtype)
    peak = m.amax(dim=(2, 3), keepdim=True)
    m = m / peak.clamp_min(1e-12) * strength  # m >= 0, so where its peak is 0 it is 0 throughout, and 0 / 1e-12 = 0
    color = torch.tensor(WATER_RGB, dtype=m.dtype, device=x.device).view(1, 3, 1, 1)
    return out.copy_((m * color).add_(x).clamp_(0, 1))
