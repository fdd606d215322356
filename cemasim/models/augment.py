"""Training augmentations of the model zoo, held out from every evaluation corruption.

Place in the data flow: used only by `cemasim zoo train` (models/train.py), never at run time.

The 15 ImageNet-C test corruptions (noise, blur, weather, digital) and the 4 validation
corruptions must stay unseen by the models, or a study of test-time adaptation says nothing:
a foundation trained on near-copies of the test shifts is best exactly where selection refuses
to upload. So the only photometric/geometric operations are AugMix's (Hendrycks et al., ICLR
2020, `augmentations.py`), whose authors removed every AutoAugment operation that overlaps
ImageNet-C (contrast, colour, brightness, sharpness, cutout):

    autocontrast, equalize, posterize, solarize   (histogram / quantisation remaps)
    rotate, shear_x, shear_y, translate_x, translate_y   (global affine maps)

Each op maps one image deterministically given its magnitude; none adds noise, blurs,
overlays a texture (fog, frost, snow, spatter), scales intensity linearly (brightness,
contrast, saturate), warps locally (elastic) or resamples/compresses (pixelate, JPEG).
`AUGMENTATION_OPS` names them; tests fail if an op outside AugMix's set is added.

AugMix mixing: `width` chains of 1-3 random ops are mixed with Dirichlet(1) weights and the
result is blended with the image by m ~ Beta(1, 1) (uniform). We train with cross-entropy on
the mix (no Jensen-Shannon consistency loss: one forward pass per image keeps CPU training
short). Randomness comes only from the torch.Generator passed in; images of a `chunk` share an
op's magnitude (torchvision's ops take one parameter set per call), chunks differ.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

AUGMIX_SEVERITY = 3  # AugMix's default "aug_severity": magnitudes up to 3/10 of each op's range
MAX_LEVEL = 10.0


def _level(g: torch.Generator) -> float:
    """AugMix's sample_level: uniform in [0.1, severity]."""
    return 0.1 + float(torch.rand((), generator=g)) * (AUGMIX_SEVERITY - 0.1)


def _signed(value: float, g: torch.Generator) -> float:
    return -value if float(torch.rand((), generator=g)) < 0.5 else value


def _posterize(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    bits = 4 - int(_level(g) * 4 / MAX_LEVEL)
    u8 = (x * 255).round().to(torch.uint8)
    return TF.posterize(u8, bits).float() / 255


def _solarize(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return TF.solarize(x, 1.0 - _level(g) / MAX_LEVEL)  # AugMix: 256 - level*256/10 on 0..255


def _affine(x: torch.Tensor, *, angle: float = 0.0, shear: tuple[float, float] = (0.0, 0.0),
            translate: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    return TF.affine(x, angle=angle, translate=list(translate), scale=1.0, shear=list(shear))


def _rotate(x, g):
    return _affine(x, angle=_signed(_level(g) * 30 / MAX_LEVEL, g))


def _shear_x(x, g):  # AugMix: shear factor up to 0.3, i.e. atan(0.3) = 16.7 degrees
    return _affine(x, shear=(_signed(_level(g) * 16.7 / MAX_LEVEL, g), 0.0))


def _shear_y(x, g):
    return _affine(x, shear=(0.0, _signed(_level(g) * 16.7 / MAX_LEVEL, g)))


def _translate_x(x, g):  # AugMix: up to a third of the image side
    return _affine(x, translate=(_signed(_level(g) * x.shape[-1] / 3 / MAX_LEVEL, g), 0.0))


def _translate_y(x, g):
    return _affine(x, translate=(0.0, _signed(_level(g) * x.shape[-2] / 3 / MAX_LEVEL, g)))


Op = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATION_OPS: dict[str, Op] = {
    "autocontrast": lambda x, g: TF.autocontrast(x),
    "equalize": lambda x, g: TF.equalize(x),
    "posterize": _posterize,
    "solarize": _solarize,
    "rotate": _rotate,
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
}


def random_crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Per-image random crop after zero padding, and horizontal flip with probability 1/2."""
    b, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=g)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # [b,h,1]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # [b,1,w]
    out = xp[torch.arange(b)[:, None, None], 0, rows, cols].unsqueeze(1)
    flip = (torch.rand(b, generator=g) < 0.5).view(b, 1, 1, 1)
    return torch.where(flip, out.flip(-1), out)


def augmix(x: torch.Tensor, g: torch.Generator, width: int = 3, chunk: int = 16) -> torch.Tensor:
    """AugMix of single-channel images in [0, 1]: m*x + (1-m)*sum_i w_i chain_i(x)."""
    names = list(AUGMENTATION_OPS)
    out = torch.empty_like(x)
    for lo in range(0, x.shape[0], chunk):
        xc = x[lo : lo + chunk]
        w = -torch.log(torch.rand(width, generator=g).clamp_min(1e-12))  # Dirichlet(1) via exponentials
        w = w / w.sum()
        mix = torch.zeros_like(xc)
        for i in range(width):
            y = xc
            for _ in range(int(torch.randint(1, 4, (), generator=g))):
                y = AUGMENTATION_OPS[names[int(torch.randint(len(names), (), generator=g))]](y, g)
            mix = mix + w[i] * y
        m = torch.rand(xc.shape[0], 1, 1, 1, generator=g)  # Beta(1, 1)
        out[lo : lo + chunk] = m * xc + (1 - m) * mix
    return out.clamp(0, 1)
