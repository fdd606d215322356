"""Image sources: labels, optional domain ids, and `load(indices)` -> uint8 images [n, C, H, W]
(resized/cropped, not normalised). In memory (TensorSource), memory-mapped .npy (NpySource) or
files decoded on demand with an LRU cache and a prefetching thread pool (FileSource).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cemasim.errors import DataError

DEFAULT_CACHE_ITEMS = 4096  # ~600 MiB of 3x224x224 uint8 images
IMAGENET_CROP = 224
IMAGENET_RESIZE_RATIO = 256 / 224  # resize shorter side to 256, then center-crop 224


@dataclass(eq=False)
class ImageSource:
    """Labels and metadata of a dataset; `load` returns preprocessed uint8 images."""

    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # (C, H, W) of what load() returns
    labels: np.ndarray  # int64 [N]
    domains: np.ndarray | None  # int [N] index into domain_names, None unless pre-corrupted
    domain_names: list[tuple[str, int]]  # (corruption, severity) per domain id
    class_mask: np.ndarray | None  # ImageNet-R: the 200 ImageNet class indices used
    protocol: dict[str, Any]  # provenance for run manifests (JSON-serialisable)

    def __len__(self) -> int:
        return len(self.labels)

    def load(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        """uint8 [len(indices), C, H, W] images in the order of `indices`."""
        raise NotImplementedError

    def prefetch(self, indices: np.ndarray | Sequence[int], wait: bool = False) -> None:
        """Prepare `indices` ahead of `load` (a no-op for in-memory sources)."""

    def _indices(self, indices: np.ndarray | Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.name}: indices must lie in 0..{len(self) - 1}, got {idx.min()}..{idx.max()}")
        return idx


@dataclass(eq=False)
class TensorSource(ImageSource):
    """Images held in memory as one uint8 tensor [N, C, H0, W0]; resized on load if asked."""

    images: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.uint8), repr=False)
    resize_to: int | None = None

    def load(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        batch = torch.from_numpy(self.images.numpy()[self._indices(indices)])  # numpy gather: see _stack
        return resize_square(batch, self.resize_to)


@dataclass(eq=False)
class NpySource(ImageSource):
    """Rows of memory-mapped HWC uint8 arrays: image i is arrays[file_of[i]][row_of[i]]."""

    arrays: list[np.ndarray] = field(default_factory=list, repr=False)
    file_of: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    row_of: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), repr=False)
    resize_to: int | None = None
    files: list[Path] = field(default_factory=list)  # the .npy behind each array

    def __getstate__(self) -> dict[str, Any]:
        """Pickle (e.g. to a Ray worker) without the mapped data: the receiver maps the files again."""
        return {k: v for k, v in self.__dict__.items() if k != "arrays"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.arrays = [load_npy(f, mmap=True) for f in self.files]

    def load(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        idx = self._indices(indices)
        h, w, c = self.arrays[0].shape[1:] if self.arrays else (0, 0, 0)
        out = np.empty((len(idx), h, w, c), dtype=np.uint8)
        files, rows = self.file_of[idx], self.row_of[idx]
        for f in np.unique(files):
            at = np.flatnonzero(files == f)
            order = np.argsort(rows[at], kind="stable")  # ascending rows read the mmap sequentially
            out[at[order]] = self.arrays[f][rows[at][order]]
        batch = torch.from_numpy(np.ascontiguousarray(out.transpose(0, 3, 1, 2)))
        return resize_square(batch, self.resize_to)


@dataclass(eq=False)
class FileSource(ImageSource):
    """Image files decoded lazily with PIL (resize shorter side, center crop), with an LRU cache.

    `prefetch(indices)` decodes on a thread pool in the background (PIL releases the GIL
    while decoding); `load` then takes finished images from the cache and waits only for
    those still in flight. With cache_decoded=False a prefetched image is handed out once and
    dropped, so prefetching still takes decoding off the hot path.
    """

    root: Path = Path(".")
    paths: list[str] = field(default_factory=list, repr=False)  # relative to root
    crop: int = IMAGENET_CROP
    resize: int = 256
    cache_decoded: bool = True
    cache_items: int = DEFAULT_CACHE_ITEMS
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))

    def __post_init__(self) -> None:
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()
        self._pending: dict[int, Future[torch.Tensor]] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._stats = {"hits": 0, "decoded": 0}

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the cache, lock and threads (rebuilt empty on the receiving side)."""
        runtime = ("_cache", "_pending", "_lock", "_pool", "_stats")
        return {k: v for k, v in self.__dict__.items() if k not in runtime}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def load(self, indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        idx = self._indices(indices)
        found: dict[int, torch.Tensor] = {}
        waiting: dict[int, Future[torch.Tensor]] = {}
        with self._lock:
            for i in dict.fromkeys(idx.tolist()):
                if i in self._cache:
                    self._cache.move_to_end(i)
                    found[i] = self._cache[i]
                    self._stats["hits"] += 1
                elif i in self._pending:
                    waiting[i] = self._pending[i] if self.cache_decoded else self._pending.pop(i)
        missing = [i for i in dict.fromkeys(idx.tolist()) if i not in found and i not in waiting]
        found.update(zip(missing, self._decode_many(missing), strict=True))
        found.update((i, fut.result()) for i, fut in waiting.items())
        if not len(idx):
            return torch.empty((0, *self.image_shape), dtype=torch.uint8)
        return _stack([found[i] for i in idx.tolist()])

    def prefetch(self, indices: np.ndarray | Sequence[int], wait: bool = False) -> None:
        idx = self._indices(indices)
        futures = []
        with self._lock:
            for i in dict.fromkeys(idx.tolist()):
                if i in self._cache or i in self._pending:
                    continue
                fut = self._executor().submit(self._prefetch_one, i)
                self._pending[i] = fut
                futures.append(fut)
        if wait:
            for fut in futures:
                fut.result()

    def cache_info(self) -> dict[str, int]:
        """hits (images served from the cache), decoded (JPEG decodes so far), size, capacity."""
        with self._lock:
            return {**self._stats, "size": len(self._cache), "capacity": self.cache_items if self.cache_decoded else 0}

    def close(self) -> None:
        """Stop the prefetch threads (the source stays usable; a new pool starts on demand)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=f"{self.name}-decode")
        return self._pool

    def _decode_many(self, indices: list[int]) -> list[torch.Tensor]:
        if len(indices) <= 1 or self.workers <= 1:
            images = [self._decode(i) for i in indices]
        else:
            images = list(self._executor().map(self._decode, indices))
        with self._lock:
            for i, img in zip(indices, images, strict=True):
                self._remember(i, img)
        return images

    def _decode(self, i: int) -> torch.Tensor:
        img = decode_image(self.root / self.paths[i], self.crop, self.resize)
        with self._lock:
            self._stats["decoded"] += 1
        return img

    def _prefetch_one(self, i: int) -> torch.Tensor:
        """Decode and cache image i before the future completes, so wait=True means cached.

        Without the cache the image stays in `_pending` until load() takes it; a failed decode
        also stays there, and its DataError surfaces in load().
        """
        img = self._decode(i)
        if self.cache_decoded:
            with self._lock:
                self._remember(i, img)
                self._pending.pop(i, None)
        return img

    def _remember(self, i: int, img: torch.Tensor) -> None:
        if not self.cache_decoded:
            return
        self._cache[i] = img
        self._cache.move_to_end(i)
        while len(self._cache) > self.cache_items:
            self._cache.popitem(last=False)


# ----------------------------------------------------------------------------- preprocessing


def _stack(images: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack done by numpy: on oversubscribed cores torch's multi-threaded copy of a few MB
    was measured at ~100 ms against 0.15 ms single-threaded, and loading must stay cheap."""
    return torch.from_numpy(np.stack([img.numpy() for img in images]))


def decode_image(path: Path, crop: int, resize: int) -> torch.Tensor:
    """uint8 [3, crop, crop]: RGB, shorter side resized to `resize` (bilinear), center crop.

    Images already crop x crop (ImageNet-C ships 224x224) are used as they are, as in the
    EATA/CEMA ImageNet-C pipeline, rather than upsampled to 256 and cropped back.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            im = opened.convert("RGB")
            if im.size != (crop, crop):
                im = _center_crop(_resize_shorter(im, resize), crop)
            arr = np.array(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    # numpy's single-threaded transpose: torch's parallel copy stalls on busy cores (see _stack)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def _resize_shorter(im: Any, size: int) -> Any:
    """torchvision.transforms.Resize(size) semantics on a PIL image (bilinear, antialiased)."""
    from PIL import Image

    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    if short == size:
        return im
    new_long = int(size * long / short)
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    return im.resize((new_w, new_h), Image.Resampling.BILINEAR)


def _center_crop(im: Any, size: int) -> Any:
    """torchvision.transforms.CenterCrop(size) offsets (round half to even of the margin / 2)."""
    w, h = im.size
    if w < size or h < size:
        raise ValueError(f"image {w}x{h} is smaller than the {size}x{size} crop")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def resize_square(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """uint8 [n,C,H,W] resized to size x size (bilinear, antialiased); unchanged when size is None."""
    if size is None or images.shape[-2:] == (size, size) or not len(images):
        return images
    out = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- registry


def load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
