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


def encode(images: Tensor, encoding: str, jpeg_quality: int = 90) -> tuple[list[int], Tensor]:
    """(sizes in bytes, decoded uint8 images) of uint8 images [N, C, H, W]."""
    if encoding == "raw":
        return [int(img.numel()) for img in images], images
    if encoding not in ENCODINGS:
        raise ValueError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    sizes, decoded = [], []
    for image in images:
        buf = io.BytesIO()
        if encoding == "png":
            _pil(image).save(buf, format="PNG")
        else:
            _pil(image).save(buf, format="JPEG", quality=jpeg_quality)
            decoded.append(_from_pil(Image.open(io.BytesIO(buf.getvalue())), image.shape[0]))
        sizes.append(buf.tell())
    return sizes, torch.stack(decoded) if decoded else images
