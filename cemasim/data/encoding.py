"""Upload payload encoders (real bytes): raw uint8 pixels, PNG or JPEG (Pillow).

Returns each sample's encoded size and the image exactly as the cloud will decode it, so lossy
encodings really change what the cloud learns from.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from torch import Tensor

ENCODINGS = ("raw", "png", "jpeg")


def to_uint8(images: Tensor) -> Tensor:
    """[0, 1] floats -> uint8 on the CPU (the device's camera/frame format)."""
    return images.detach().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()


def _pil(image: Tensor) -> Image.Image:
    """uint8 [C, H, W] -> PIL image (L for one channel, RGB for three)."""
    array = image.numpy()
    return Image.fromarray(array[0] if array.shape[0] == 1 else np.moveaxis(array, 0, -1))


def _from_pil(img: Image.Image, channels: int) -> Tensor:
    array = np.array(img.convert("L" if channels == 1 else "RGB"))  # writable copy for torch
    return torch.from_numpy(array[None] if channels == 1 else np.ascontiguousarray(np.moveaxis(array, -1, 0)))


def encode(images: Tensor, encoding: str, jpeg_quality: int = 90, downscale: float = 1.0) -> tuple[list[int], Tensor]:
    """(sizes in bytes, decoded uint8 images) of uint8 images [N, C, H, W]. With `downscale` < 1 the
    device shrinks each image first (area averaging) and the cloud resizes the decoded one back to
    H x W (bilinear): the bytes are the small image's, the cloud trains on the resized one."""
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    if downscale != 1.0:
        return _encode_downscaled(images, encoding, jpeg_quality, downscale)
    if encoding == "raw":
        return [int(img.numel()) for img in images], images
    sizes, decoded = [], []
    for image in images:
        data = _saved(_pil(image), encoding, jpeg_quality)
        if encoding == "jpeg":  # PNG is lossless: the cloud decodes the image itself
            decoded.append(_from_pil(Image.open(io.BytesIO(data)), image.shape[0]))
        sizes.append(len(data))
    return sizes, torch.stack(decoded) if decoded else images


def _saved(img: Image.Image, encoding: str, jpeg_quality: int) -> bytes:
    """The encoder's output: PNG, or JPEG at `jpeg_quality`."""
    buf = io.BytesIO()
    if encoding == "png":
        img.save(buf, format="PNG")
    else:
        img.save(buf, format="JPEG", quality=jpeg_quality)
    return buf.getvalue()


def small_size(height: int, width: int, downscale: float) -> tuple[int, int]:
    """(height, width) after downscaling: rounded, at least one pixel."""
    return max(1, round(height * downscale)), max(1, round(width * downscale))


def _encode_downscaled(images: Tensor, encoding: str, jpeg_quality: int, downscale: float) -> tuple[list[int], Tensor]:
    sizes, decoded = [], []
    for image in images:
        channels, height, width = image.shape
        h, w = small_size(height, width, downscale)
        small = _pil(image).resize((w, h), Image.Resampling.BOX)
        if encoding == "raw":
            sizes.append(channels * h * w)
        else:
            data = _saved(small, encoding, jpeg_quality)
            sizes.append(len(data))
            small = Image.open(io.BytesIO(data))
        decoded.append(_from_pil(small.resize((width, height), Image.Resampling.BILINEAR), channels))
    return sizes, torch.stack(decoded) if decoded else images
