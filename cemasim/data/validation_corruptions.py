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

import torch
import torch.nn.functional as F

from cemasim.data.corruptions import CORRUPTIONS, VALIDATION_CORRUPTIONS, _gray, _param, _randn, _skimage_gaussian

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
CHAMFER_CHUNK = 1 << 16  # pixels relaxed at once by chamfer_distance (float64: 512 kB, about an L2 cache)


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


@CORRUPTIONS.register("saturate", help="scale and shift HSV saturation (ImageNet-C validation)")
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
    """cv2.Canny(img, low, high) of [N, 1, H, W] uint8-valued floats: 1 on edges, else 0."""
    dx = _shift_sum(u8, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], "replicate")  # Sobel, exact on integers
    dy = _shift_sum(u8, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]], "replicate")
    mag = dx.abs() + dy.abs()
    m = F.pad(mag, (1, 1, 1, 1))  # the neighbours outside the image count as 0, as in OpenCV
    h, w = mag.shape[-2:]

    def at(oy: int, ox: int) -> torch.Tensor:
        return m[..., 1 + oy : 1 + oy + h, 1 + ox : 1 + ox + w]

    ax, ay = dx.abs(), dy.abs()
    tg22, tg67 = 0.4142135623730950, 2.414213562373095
    horizontal = ay < ax * tg22
    vertical = ay > ax * tg67
    s = torch.where((dx * dy) < 0, -1, 1)  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1
    keep_h = (mag > at(0, -1)) & (mag >= at(0, 1))
    keep_v = (mag > at(-1, 0)) & (mag >= at(1, 0))
    keep_d = torch.where(s > 0, (mag > at(-1, -1)) & (mag > at(1, 1)), (mag > at(-1, 1)) & (mag > at(1, -1)))
    peak = torch.where(horizontal, keep_h, torch.where(vertical, keep_v, keep_d)) & (mag > low)
    edges = peak & (mag > high)
    while True:  # hysteresis: grow strong edges through 8-connected weak ones
        grown = peak & _dilate3(edges)
        if torch.equal(grown, edges):
            return edges.to(u8.dtype)
        edges = grown


def chamfer_distance(zero: torch.Tensor, cap: float) -> torch.Tensor:
    """cv2.distanceTransform(DIST_L2, 5) to the nearest `zero` pixel, truncated at `cap`.

    Relaxation over the 5x5 chamfer mask: each round, d = min(d, min over the mask of d[q] + w_q),
    until nothing at most `cap` changes (at most cap + 2 rounds). Two shortcuts, both exact:
    rounding is monotonic, so min_q (d[q] + w) == min_q d[q] + w and each weight is added once to
    the minimum of its neighbours (taken as separable row / column minima); and a value above
    `cap` only ever yields candidates above `cap`, so such values are parked at `big` and the
    rounds stop once the values up to `cap` (the only ones the caller keeps) are settled.
    """
    h, w = zero.shape[-2:]
    if zero.shape[0] * h * w > CHAMFER_CHUNK:  # images are independent; small chunks stay in cache
        return torch.cat([chamfer_distance(z, cap) for z in zero.split(max(1, CHAMFER_CHUNK // (h * w)))])
    a, b, c = CHAMFER_5X5
    big = cap + 10 * c
    d = torch.where(zero > 0, torch.zeros_like(zero), torch.full_like(zero, big))
    for _ in range(int(cap) + 2):
        p = F.pad(d, (2, 2, 2, 2), value=big)
        col = [p[..., 2 + ox : 2 + ox + w] for ox in range(-2, 3)]  # column shifts, all rows
        h1, h2 = torch.minimum(col[1], col[3]), torch.minimum(col[0], col[4])  # |dx| = 1, |dx| = 2

        def rows(t: torch.Tensor, oy: int) -> torch.Tensor:
            return t[..., 2 + oy : 2 + oy + h, :]

        axial = torch.minimum(torch.minimum(rows(h1, 0), rows(col[2], -1)), rows(col[2], 1))
        diagonal = torch.minimum(rows(h1, -1), rows(h1, 1))
        knight = torch.minimum(torch.minimum(rows(h2, -1), rows(h2, 1)), torch.minimum(rows(h1, -2), rows(h1, 2)))
        nxt = torch.minimum(torch.minimum(d, axial.add_(a)), torch.minimum(diagonal.add_(b), knight.add_(c)))
        nxt.masked_fill_(nxt > cap, big)
        if torch.equal(nxt, d):
            break
        d = nxt
    return d.clamp(max=cap)


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
    liquid = _skimage_gaussian(mean + std * _randn((n, 1, h, w), g, x).to(dt), sigma)
    liquid = torch.where(liquid < threshold, torch.zeros_like(liquid), liquid)
    if mud:
        m = _skimage_gaussian((liquid > threshold).to(dt), strength)
        m = torch.where(m < 0.8, torch.zeros_like(m), m).to(x.dtype)
        color = torch.tensor(MUD_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x * (1 - m) + color * m
    liquid_u8 = torch.floor(liquid.clamp(0, 1) * 255)
    dist = 255 - canny(liquid_u8) * 255
    dist = chamfer_distance((dist == 0).to(dt), cap=20.0).float()  # cv2 returns float32
    dist = torch.floor(_box3(dist)).to(dt)  # .astype(np.uint8)
    dist = equalize_hist(dist)
    dist = _saturate_u8(_shift_sum(dist, [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], "reflect"))  # CV_8U
    dist = _box3(dist).to(dt)
    m = liquid_u8 * dist
    peak = m.amax(dim=(2, 3), keepdim=True)
    m = torch.where(peak > 0, m / peak.clamp_min(1e-12), torch.zeros_like(m)) * strength
    color = torch.tensor(WATER_RGB, dtype=dt, device=x.device).view(1, 3, 1, 1)
    return (x.to(dt) + m * color).clamp(0, 1).to(x.dtype)
