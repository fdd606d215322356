"""Real benchmark image sources behind one interface: the first stage of the data flow
(data -> models -> methods).

`open_dataset(name, root, ...)` returns an `ImageSource`: labels, optional domain ids (for
pre-corrupted benchmarks), and `load(indices)`, which returns uint8 images [n, C, H, W]
already resized/cropped but NOT normalised (models scale to [0, 1] and normalise
themselves). Formats, by registry name:

    fashion_mnist         idx files (embedded test split when root is None)
    cifar10 / cifar100    torchvision's python-pickle folders, 32x32 RGB
    cifar10_c / _100_c    Hendrycks' <corruption>.npy (5 severities x N rows stacked) + labels.npy
    imagenet_c            <corruption>/<severity>/<wnid>/*.JPEG, decoded lazily with PIL
    imagenet_r            <wnid>/*.jpg (200 classes), labels in the 1000-class ImageNet order

Small datasets are held in memory (CIFAR-C is memory-mapped). ImageNet-style folders are
decoded on demand; decoded images are kept in an LRU cache and `prefetch` decodes ahead on
a thread pool so the simulation's hot path mostly finds them ready. Missing or malformed
data raises DataError naming the searched path and the expected layout; nothing falls back
silently to other data. `protocol` records what was read (for run manifests).
"""

from __future__ import annotations

import os
import pickle
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from cemasim.data.corruptions import VALIDATION_CORRUPTIONS
from cemasim.errors import ConfigError, DataError
from cemasim.registry import Registry

# The 15 benchmark corruptions (Hendrycks & Dietterich 2019) in their conventional order,
# and the 4 extra ones shipped alongside them (only used when asked for by name).
STANDARD_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression",
)
EXTRA_CORRUPTIONS: tuple[str, ...] = VALIDATION_CORRUPTIONS  # ImageNet-C's 4 validation corruptions
SEVERITIES: tuple[int, ...] = (1, 2, 3, 4, 5)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")
SUBSET_SEED = 0  # seeded subsets are the same for every run and every domain
SUBSET_FILE = "subset.txt"
IMAGENET_CROP = 224
IMAGENET_RESIZE_RATIO = 256 / 224  # resize shorter side to 256, then center-crop 224
DEFAULT_CACHE_ITEMS = 4096  # ~600 MiB of 3x224x224 uint8 images


# ----------------------------------------------------------------------------- sources


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
        self.arrays = [_load_npy(f, mmap=True) for f in self.files]

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
        found.update(zip(missing, self._decode_many(missing)))
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
            for i, img in zip(indices, images):
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
        with Image.open(path) as im:
            im = im.convert("RGB")
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
    return im.resize((new_w, new_h), Image.BILINEAR)


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


@dataclass(frozen=True)
class Request:
    """Validated arguments of open_dataset, handed to a format's opener."""

    name: str
    root: Path | None
    split: str
    severities: tuple[int, ...] | None
    corruptions: tuple[str, ...] | None
    subset: int | None
    image_size: int | None
    cache_decoded: bool


@dataclass(frozen=True)
class DatasetFormat:
    opener: Callable[[Request], ImageSource]
    splits: tuple[str, ...]
    pre_corrupted: bool  # accepts corruptions= and severities=
    layout: str  # expected layout, shown when data is missing
    channels: int = 3  # colour channels of its images (validation checks the models take them)


DATASETS: Registry[DatasetFormat] = Registry("dataset")


def open_dataset(
    name: str,
    root: str | Path | None,
    *,
    split: str = "test",
    severities: Sequence[int] | None = None,
    corruptions: Sequence[str] | None = None,
    subset: int | None = None,
    image_size: int | None = None,
    cache_decoded: bool = True,
) -> ImageSource:
    """Open dataset `name` stored under `root` (see the module doc for formats).

    severities/corruptions filter pre-corrupted benchmarks (default: severities 1-5 of the 15
    standard corruptions, all of which must be present); subset limits the images per domain
    (the rule is format-specific and recorded in `protocol`); image_size overrides the output
    size (ImageNet: crop size, resize = size * 256/224; others: square resize).
    """
    fmt = DATASETS.get(name)
    req = _validate(name, fmt, root, split, severities, corruptions, subset, image_size, cache_decoded)
    return fmt.opener(req)


def _validate(name: str, fmt: DatasetFormat, root: str | Path | None, split: str, severities: Sequence[int] | None,
              corruptions: Sequence[str] | None, subset: int | None, image_size: int | None,
              cache_decoded: bool) -> Request:
    problems = []
    if split not in fmt.splits:
        problems.append(f"dataset '{name}' has no split '{split}'; choose from {', '.join(fmt.splits)}")
    if not fmt.pre_corrupted and (severities is not None or corruptions is not None):
        problems.append(f"dataset '{name}' is not pre-corrupted: severities/corruptions do not apply")
    if severities is not None and (not severities or any(s not in SEVERITIES for s in severities)):
        problems.append(f"severities must be a non-empty subset of 1..5, got {list(severities)}")
    known = STANDARD_CORRUPTIONS + EXTRA_CORRUPTIONS
    if corruptions is not None:
        if isinstance(corruptions, str):
            corruptions = [corruptions]
        if not corruptions:
            problems.append("corruptions must not be empty")
        problems += [f"unknown corruption '{c}'; known: {', '.join(known)}" for c in corruptions if c not in known]
    if subset is not None and (not isinstance(subset, (int, np.integer)) or subset < 1):
        problems.append(f"subset must be a positive integer, got {subset!r}")
    if image_size is not None and (not isinstance(image_size, (int, np.integer)) or image_size < 1):
        problems.append(f"image_size must be a positive integer, got {image_size!r}")
    if problems:
        raise ConfigError(problems, source="dataset")
    return Request(name, None if root is None else Path(root).expanduser(), split,
                   None if severities is None else tuple(dict.fromkeys(int(s) for s in severities)),
                   None if corruptions is None else tuple(dict.fromkeys(corruptions)),
                   None if subset is None else int(subset), None if image_size is None else int(image_size),
                   bool(cache_decoded))


def _register(name: str, help: str, splits: tuple[str, ...], pre_corrupted: bool, layout: str, channels: int = 3):
    def deco(opener: Callable[[Request], ImageSource]) -> Callable[[Request], ImageSource]:
        DATASETS.add(name, DatasetFormat(opener, splits, pre_corrupted, layout, channels), help)
        return opener

    return deco


def _need_root(req: Request, title: str) -> Path:
    if req.root is None:
        raise DataError(f"{title} needs a data folder (root); expected layout: {DATASETS.get(req.name).layout}")
    return req.root


def _find_dir(root: Path, candidates: Sequence[Path], is_match: Callable[[Path], bool], title: str,
              layout: str) -> Path:
    """The first candidate folder that holds the format, else DataError naming all of them."""
    for folder in candidates:
        if is_match(folder):
            return folder
    hint = "" if root.is_dir() else " (the folder does not exist)"
    raise DataError(f"{title} not found in {' or '.join(str(c) for c in candidates)}{hint}: expected {layout}")


def _base_protocol(req: Request, fmt: str, folder: Path | None) -> dict[str, Any]:
    return {"dataset": req.name, "format": fmt, "root": None if folder is None else str(folder.resolve()),
            "split": req.split, "subset": req.subset}


# ----------------------------------------------------------------------------- Fashion-MNIST


@_register("fashion_mnist", "Fashion-MNIST idx files (test split embedded; root=None uses it)",
           ("train", "test"), False, "root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] "
           "(or root/FashionMNIST/raw/...)", channels=1)
def _open_fashion_mnist(req: Request) -> ImageSource:
    from cemasim.data import fashion_mnist

    images, labels = fashion_mnist.load_split(req.split, req.root)
    images, labels = images[: req.subset], labels[: req.subset]
    size = req.image_size or 28
    proto = _base_protocol(req, "idx", req.root) | {
        "embedded": req.root is None, "subset_rule": "first n images", "num_images": len(labels),
        "preprocess": "none" if size == 28 else f"bilinear resize to {size}x{size}"}
    return TensorSource(req.name, 10, (1, size, size), labels.numpy().astype(np.int64), None, [], None, proto,
                        images=images, resize_to=req.image_size)


# ----------------------------------------------------------------------------- CIFAR


_CIFAR = {
    "cifar10": ("CIFAR-10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                b"labels", 10),
    "cifar100": ("CIFAR-100", "cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}


def _cifar_layout(name: str) -> str:
    _, folder, train, test, _, _ = _CIFAR[name]
    return (f"root/{folder}/{{{','.join(train + test)}}} (torchvision's python pickles, "
            "each a dict with b'data' uint8 [N, 3072] and labels)")


@_register("cifar10", "CIFAR-10 in torchvision's cifar-10-batches-py pickle folder, 32x32 RGB",
           ("train", "test"), False, _cifar_layout("cifar10"))
def _open_cifar10(req: Request) -> ImageSource:
    return _open_cifar(req)


@_register("cifar100", "CIFAR-100 in torchvision's cifar-100-python pickle folder (fine labels), 32x32 RGB",
           ("train", "test"), False, _cifar_layout("cifar100"))
def _open_cifar100(req: Request) -> ImageSource:
    return _open_cifar(req)


def _open_cifar(req: Request) -> ImageSource:
    title, folder_name, train, test, label_key, n_classes = _CIFAR[req.name]
    root = _need_root(req, title)
    files = train if req.split == "train" else test
    layout = _cifar_layout(req.name).replace("root/", f"{root}/")
    folder = _find_dir(root, [root / folder_name, root], lambda d: all((d / f).is_file() for f in files),
                       f"{title} {req.split} split", layout)
    parts = [_read_cifar_pickle(folder / f, label_key, n_classes) for f in files]
    images = np.concatenate([p[0] for p in parts])[: req.subset]
    labels = np.concatenate([p[1] for p in parts])[: req.subset]
    size = req.image_size or 32
    proto = _base_protocol(req, "cifar-python-pickle", folder) | {
        "files": files, "subset_rule": "first n images", "num_images": len(labels),
        "preprocess": "none" if size == 32 else f"bilinear resize to {size}x{size}"}
    return TensorSource(req.name, n_classes, (3, size, size), labels, None, [], None, proto,
                        images=torch.from_numpy(images), resize_to=req.image_size)


def _read_cifar_pickle(path: Path, label_key: bytes, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [N,3,32,32] and int64 [N] from one torchvision CIFAR pickle."""
    try:
        with open(path, "rb") as fh:
            batch = pickle.load(fh, encoding="bytes")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a readable CIFAR pickle ({exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise DataError(f"{path}: expected a dict with keys b'data' and {label_key!r}, found {keys}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DataError(f"{path}: b'data' is {data.dtype} {data.shape} with {len(labels)} labels; "
                        "expected uint8 [N, 3072] (3x32x32 channel-major) and N labels")
    _check_labels(labels, n_classes, path)
    return data.reshape(-1, 3, 32, 32), labels


def _check_labels(labels: np.ndarray, n_classes: int, source: object) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataError(f"{source}: labels span {labels.min()}..{labels.max()}, expected 0..{n_classes - 1}")


# ----------------------------------------------------------------------------- CIFAR-C


_CIFAR_C = {"cifar10_c": ("CIFAR-10-C", 10), "cifar100_c": ("CIFAR-100-C", 100)}
_CIFAR_C_LAYOUT = ("root/<corruption>.npy (50000x32x32x3 uint8, severities 1-5 stacked: severity s = rows "
                   "(s-1)*10000..s*10000) and root/labels.npy (50000 labels)")


@_register("cifar10_c", "CIFAR-10-C: <corruption>.npy (5 severities x 10,000 stacked) + labels.npy",
           ("test",), True, _CIFAR_C_LAYOUT)
def _open_cifar10_c(req: Request) -> ImageSource:
    return _open_cifar_c(req)


@_register("cifar100_c", "CIFAR-100-C: <corruption>.npy (5 severities x 10,000 stacked) + labels.npy",
           ("test",), True, _CIFAR_C_LAYOUT)
def _open_cifar100_c(req: Request) -> ImageSource:
    return _open_cifar_c(req)


def _open_cifar_c(req: Request) -> ImageSource:
    title, n_classes = _CIFAR_C[req.name]
    root = _need_root(req, title)
    folder = _find_dir(root, [root, root / title], lambda d: (d / "labels.npy").is_file(), title,
                       _CIFAR_C_LAYOUT.replace("root/", f"{root}/"))
    corruptions = _pick_corruptions(req, lambda c: (folder / f"{c}.npy").is_file(), folder, f"{title} file",
                                    "{}.npy")
    severities = req.severities or SEVERITIES
    labels_all = _load_npy(folder / "labels.npy", mmap=False)
    if labels_all.ndim != 1 or labels_all.dtype.kind not in "iu" or len(labels_all) % 5:
        raise DataError(f"{folder / 'labels.npy'}: {labels_all.dtype} {labels_all.shape}; expected integer labels "
                        "[5*n] (one per row of the corruption files)")
    labels_all = labels_all.astype(np.int64)
    _check_labels(labels_all, n_classes, folder / "labels.npy")
    per_sev = len(labels_all) // 5
    take = _first_n(req.subset, per_sev, f"{title} severity block")
    arrays, files, rows, domains, names = [], [], [], [], []
    for f, c in enumerate(corruptions):
        arrays.append(_open_corruption_npy(folder / f"{c}.npy", len(labels_all)))
        for s in severities:
            block = np.arange((s - 1) * per_sev, (s - 1) * per_sev + take, dtype=np.int64)
            files.append(np.full(take, f, np.int64))
            rows.append(block)
            domains.append(np.full(take, len(names), np.int64))
            names.append((c, int(s)))
    row_of = np.concatenate(rows)
    size = req.image_size or 32
    proto = _base_protocol(req, "hendrycks-npy", folder) | {
        "corruptions": list(corruptions), "severities": [int(s) for s in severities], "rows_per_severity": per_sev,
        "subset_rule": "first n rows of each severity block (RobustBench)", "images_per_domain": take,
        "num_images": len(row_of), "preprocess": "none" if size == 32 else f"bilinear resize to {size}x{size}"}
    return NpySource(req.name, n_classes, (3, size, size), labels_all[row_of], np.concatenate(domains), names, None,
                     proto, arrays=arrays, file_of=np.concatenate(files), row_of=row_of, resize_to=req.image_size,
                     files=[folder / f"{c}.npy" for c in corruptions])


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None


def _open_corruption_npy(path: Path, n_rows: int) -> np.ndarray:
    arr = _load_npy(path, mmap=True)
    if arr.dtype != np.uint8 or arr.shape != (n_rows, 32, 32, 3):
        raise DataError(f"{path}: {arr.dtype} {arr.shape}; expected uint8 ({n_rows}, 32, 32, 3) "
                        "(severities 1-5 stacked, as many rows as labels.npy)")
    return arr


def _pick_corruptions(req: Request, present: Callable[[str], bool], folder: Path, what: str,
                      pattern: str) -> tuple[str, ...]:
    """The requested corruptions (default: the 15 standard ones), all of which must be present."""
    wanted = req.corruptions or STANDARD_CORRUPTIONS
    missing = [c for c in wanted if not present(c)]
    if missing:
        found = [c for c in STANDARD_CORRUPTIONS + EXTRA_CORRUPTIONS if present(c)]
        default = "" if req.corruptions else \
            " (the default is all 15 standard corruptions; pass corruptions= to choose)"
        raise DataError(f"{what}s missing in {folder}: {', '.join(pattern.format(c) for c in missing)}"
                        f"{default}; found: {', '.join(found) or 'none'}")
    return tuple(wanted)


def _first_n(subset: int | None, available: int, what: str) -> int:
    if subset is None:
        return available
    if subset > available:
        raise DataError(f"subset={subset} exceeds the {available} images of each {what}")
    return subset


# ----------------------------------------------------------------------------- ImageNet-C / -R


_IMAGENET_C_LAYOUT = ("root/<corruption>/<severity 1-5>/<wnid>/*.JPEG (ImageNet validation images, "
                      "1000 wnid folders per severity); optional root/subset.txt of <wnid>/<file> lines")
_IMAGENET_R_LAYOUT = "root/<wnid>/*.jpg (200 ImageNet wnid folders, as in imagenet-r.tar)"


def _imagenet_sizes(req: Request) -> tuple[int, int]:
    crop = req.image_size or IMAGENET_CROP
    return crop, int(round(crop * IMAGENET_RESIZE_RATIO))


@_register("imagenet_c", "ImageNet-C folders <corruption>/<severity>/<wnid>/*.JPEG, decoded lazily (224x224)",
           ("test",), True, _IMAGENET_C_LAYOUT)
def _open_imagenet_c(req: Request) -> ImageSource:
    root = _need_root(req, "ImageNet-C")
    layout = _IMAGENET_C_LAYOUT.replace("root/", f"{root}/")
    folder = _find_dir(root, [root, root / "ImageNet-C"], lambda d: any((d / c).is_dir() for c in
                       STANDARD_CORRUPTIONS + EXTRA_CORRUPTIONS), "ImageNet-C", layout)
    corruptions = _pick_corruptions(req, lambda c: (folder / c).is_dir(), folder, "ImageNet-C corruption folder", "{}/")
    severities = req.severities or SEVERITIES
    listed, rule = _imagenet_c_list(folder, req.subset)
    paths: list[str] = []
    domains, names = [], []
    for c in corruptions:
        for s in severities:
            domain_dir = folder / c / str(s)
            if not domain_dir.is_dir():
                raise DataError(f"ImageNet-C severity folder {domain_dir} not found; expected {layout}")
            rel = _check_listed(domain_dir, listed) if listed is not None else \
                _seeded_subset(_scan_wnid_tree(domain_dir), req.subset, f"domain {c}/{s}")
            paths += [f"{c}/{s}/{p}" for p in rel]
            domains.append(np.full(len(rel), len(names), np.int64))
            names.append((c, int(s)))
    crop, resize = _imagenet_sizes(req)
    labels = _wnid_labels(paths, wnid_part=2)
    proto = _base_protocol(req, "imagenet-c-folders", folder) | {
        "corruptions": list(corruptions), "severities": [int(s) for s in severities], "subset_rule": rule,
        "num_images": len(paths), "preprocess": f"RGB; if not {crop}x{crop}: resize shorter side to {resize} "
        f"(bilinear), center crop {crop}", "cache_decoded": req.cache_decoded}
    return FileSource(req.name, 1000, (3, crop, crop), labels, np.concatenate(domains), names, None, proto,
                      root=folder, paths=paths, crop=crop, resize=resize, cache_decoded=req.cache_decoded)


@_register("imagenet_r", "ImageNet-R folders <wnid>/*.jpg (200 classes); labels in ImageNet-1k order + class_mask",
           ("test",), False, _IMAGENET_R_LAYOUT)
def _open_imagenet_r(req: Request) -> ImageSource:
    root = _need_root(req, "ImageNet-R")
    layout = _IMAGENET_R_LAYOUT.replace("root/", f"{root}/")
    folder = _find_dir(root, [root, root / "imagenet-r"], lambda d: any((d / w).is_dir() for w in IMAGENET_R_WNIDS),
                       "ImageNet-R", layout)
    rel = _seeded_subset(_scan_wnid_tree(folder, allowed=set(IMAGENET_R_WNIDS), what="ImageNet-R"), req.subset,
                         "ImageNet-R")
    crop, resize = _imagenet_sizes(req)
    labels = _wnid_labels(rel, wnid_part=0)
    proto = _base_protocol(req, "imagenet-r-folders", folder) | {
        "subset_rule": f"seeded sample (seed {SUBSET_SEED}) of the sorted paths" if req.subset else "all images",
        "num_images": len(rel), "classes_present": int(len(np.unique(labels))),
        "label_space": "ImageNet-1k indices; mask logits with class_mask (200)",
        "preprocess": f"RGB; resize shorter side to {resize} (bilinear), center crop {crop}",
        "cache_decoded": req.cache_decoded}
    return FileSource(req.name, 1000, (3, crop, crop), labels, None, [], imagenet_r_mask(), proto,
                      root=folder, paths=rel, crop=crop, resize=resize, cache_decoded=req.cache_decoded)


def _imagenet_c_list(folder: Path, subset: int | None) -> tuple[list[str] | None, str]:
    """root/subset.txt entries (first `subset` of them) when present, else None (scan + seeded sample)."""
    list_file = folder / SUBSET_FILE
    if not list_file.is_file():
        rule = f"seeded sample (seed {SUBSET_SEED}) of {subset} sorted paths per domain" if subset else "all images"
        return None, rule
    lines = [ln.strip() for ln in list_file.read_text().splitlines()]
    entries = [ln for ln in lines if ln and not ln.startswith("#")]
    if not entries:
        raise DataError(f"{list_file} lists no images; expected <wnid>/<file> lines relative to each severity folder")
    take = _first_n(subset, len(entries), f"list in {list_file}")
    return entries[:take], f"first {take} entries of {list_file} (RobustBench style)"


def _check_listed(domain_dir: Path, listed: list[str]) -> list[str]:
    missing = [p for p in listed if not (domain_dir / p).is_file()]
    if missing:
        raise DataError(f"{len(missing)} images of {domain_dir.parent.parent / SUBSET_FILE} are missing from "
                        f"{domain_dir}, e.g. {domain_dir / missing[0]}")
    return listed


def _scan_wnid_tree(folder: Path, allowed: set[str] | None = None, what: str = "ImageNet") -> list[str]:
    """Sorted '<wnid>/<file>' paths of the image files in folder's wnid subfolders."""
    known = allowed or set(IMAGENET_WNIDS)
    out = []
    with os.scandir(folder) as entries:
        wnid_dirs = sorted(e.name for e in entries if e.is_dir())
    strangers = [w for w in wnid_dirs if w not in known]
    if strangers:
        raise DataError(f"{folder}: folders {', '.join(strangers[:5])} are not {what} class wnids")
    for wnid in wnid_dirs:
        with os.scandir(folder / wnid) as entries:
            out += sorted(f"{wnid}/{e.name}" for e in entries if e.name.lower().endswith(IMAGE_EXTENSIONS))
    if not out:
        raise DataError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) found under {folder}/<wnid>/")
    return out


def _seeded_subset(paths: list[str], subset: int | None, what: str) -> list[str]:
    """`subset` of the sorted paths, chosen by a fixed seed (same choice for equal lists), kept sorted."""
    if subset is None:
        return paths
    take = _first_n(subset, len(paths), what)
    pick = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(paths))[:take])
    return [paths[i] for i in pick]


def _wnid_labels(paths: list[str], wnid_part: int) -> np.ndarray:
    index = imagenet_index()
    return np.array([index[p.split("/")[wnid_part]] for p in paths], dtype=np.int64)


def imagenet_index() -> dict[str, int]:
    """wnid -> class index of the standard ImageNet-1k order (sorted wnids)."""
    return {w: i for i, w in enumerate(IMAGENET_WNIDS)}


def imagenet_r_mask() -> np.ndarray:
    """The 200 ImageNet-1k class indices of ImageNet-R, ascending (int64 [200])."""
    index = imagenet_index()
    return np.array(sorted(index[w] for w in IMAGENET_R_WNIDS), dtype=np.int64)


# ----------------------------------------------------------------------------- reference tables

# The ImageNet-1k wnids in class-index order (sorted), and the 200 wnids of ImageNet-R
# (Hendrycks et al. 2021). Embedded so labels never depend on which folders happen to exist.
_IMAGENET_WNIDS_TEXT = """
n01440764 n01443537 n01484850 n01491361 n01494475 n01496331 n01498041 n01514668 n01514859 n01518878
n01530575 n01531178 n01532829 n01534433 n01537544 n01558993 n01560419 n01580077 n01582220 n01592084
n01601694 n01608432 n01614925 n01616318 n01622779 n01629819 n01630670 n01631663 n01632458 n01632777
n01641577 n01644373 n01644900 n01664065 n01665541 n01667114 n01667778 n01669191 n01675722 n01677366
n01682714 n01685808 n01687978 n01688243 n01689811 n01692333 n01693334 n01694178 n01695060 n01697457
n01698640 n01704323 n01728572 n01728920 n01729322 n01729977 n01734418 n01735189 n01737021 n01739381
n01740131 n01742172 n01744401 n01748264 n01749939 n01751748 n01753488 n01755581 n01756291 n01768244
n01770081 n01770393 n01773157 n01773549 n01773797 n01774384 n01774750 n01775062 n01776313 n01784675
n01795545 n01796340 n01797886 n01798484 n01806143 n01806567 n01807496 n01817953 n01818515 n01819313
n01820546 n01824575 n01828970 n01829413 n01833805 n01843065 n01843383 n01847000 n01855032 n01855672
n01860187 n01871265 n01872401 n01873310 n01877812 n01882714 n01883070 n01910747 n01914609 n01917289
n01924916 n01930112 n01943899 n01944390 n01945685 n01950731 n01955084 n01968897 n01978287 n01978455
n01980166 n01981276 n01983481 n01984695 n01985128 n01986214 n01990800 n02002556 n02002724 n02006656
n02007558 n02009229 n02009912 n02011460 n02012849 n02013706 n02017213 n02018207 n02018795 n02025239
n02027492 n02028035 n02033041 n02037110 n02051845 n02056570 n02058221 n02066245 n02071294 n02074367
n02077923 n02085620 n02085782 n02085936 n02086079 n02086240 n02086646 n02086910 n02087046 n02087394
n02088094 n02088238 n02088364 n02088466 n02088632 n02089078 n02089867 n02089973 n02090379 n02090622
n02090721 n02091032 n02091134 n02091244 n02091467 n02091635 n02091831 n02092002 n02092339 n02093256
n02093428 n02093647 n02093754 n02093859 n02093991 n02094114 n02094258 n02094433 n02095314 n02095570
n02095889 n02096051 n02096177 n02096294 n02096437 n02096585 n02097047 n02097130 n02097209 n02097298
n02097474 n02097658 n02098105 n02098286 n02098413 n02099267 n02099429 n02099601 n02099712 n02099849
n02100236 n02100583 n02100735 n02100877 n02101006 n02101388 n02101556 n02102040 n02102177 n02102318
n02102480 n02102973 n02104029 n02104365 n02105056 n02105162 n02105251 n02105412 n02105505 n02105641
n02105855 n02106030 n02106166 n02106382 n02106550 n02106662 n02107142 n02107312 n02107574 n02107683
n02107908 n02108000 n02108089 n02108422 n02108551 n02108915 n02109047 n02109525 n02109961 n02110063
n02110185 n02110341 n02110627 n02110806 n02110958 n02111129 n02111277 n02111500 n02111889 n02112018
n02112137 n02112350 n02112706 n02113023 n02113186 n02113624 n02113712 n02113799 n02113978 n02114367
n02114548 n02114712 n02114855 n02115641 n02115913 n02116738 n02117135 n02119022 n02119789 n02120079
n02120505 n02123045 n02123159 n02123394 n02123597 n02124075 n02125311 n02127052 n02128385 n02128757
n02128925 n02129165 n02129604 n02130308 n02132136 n02133161 n02134084 n02134418 n02137549 n02138441
n02165105 n02165456 n02167151 n02168699 n02169497 n02172182 n02174001 n02177972 n02190166 n02206856
n02219486 n02226429 n02229544 n02231487 n02233338 n02236044 n02256656 n02259212 n02264363 n02268443
n02268853 n02276258 n02277742 n02279972 n02280649 n02281406 n02281787 n02317335 n02319095 n02321529
n02325366 n02326432 n02328150 n02342885 n02346627 n02356798 n02361337 n02363005 n02364673 n02389026
n02391049 n02395406 n02396427 n02397096 n02398521 n02403003 n02408429 n02410509 n02412080 n02415577
n02417914 n02422106 n02422699 n02423022 n02437312 n02437616 n02441942 n02442845 n02443114 n02443484
n02444819 n02445715 n02447366 n02454379 n02457408 n02480495 n02480855 n02481823 n02483362 n02483708
n02484975 n02486261 n02486410 n02487347 n02488291 n02488702 n02489166 n02490219 n02492035 n02492660
n02493509 n02493793 n02494079 n02497673 n02500267 n02504013 n02504458 n02509815 n02510455 n02514041
n02526121 n02536864 n02606052 n02607072 n02640242 n02641379 n02643566 n02655020 n02666196 n02667093
n02669723 n02672831 n02676566 n02687172 n02690373 n02692877 n02699494 n02701002 n02704792 n02708093
n02727426 n02730930 n02747177 n02749479 n02769748 n02776631 n02777292 n02782093 n02783161 n02786058
n02787622 n02788148 n02790996 n02791124 n02791270 n02793495 n02794156 n02795169 n02797295 n02799071
n02802426 n02804414 n02804610 n02807133 n02808304 n02808440 n02814533 n02814860 n02815834 n02817516
n02823428 n02823750 n02825657 n02834397 n02835271 n02837789 n02840245 n02841315 n02843684 n02859443
n02860847 n02865351 n02869837 n02870880 n02871525 n02877765 n02879718 n02883205 n02892201 n02892767
n02894605 n02895154 n02906734 n02909870 n02910353 n02916936 n02917067 n02927161 n02930766 n02939185
n02948072 n02950826 n02951358 n02951585 n02963159 n02965783 n02966193 n02966687 n02971356 n02974003
n02977058 n02978881 n02979186 n02980441 n02981792 n02988304 n02992211 n02992529 n02999410 n03000134
n03000247 n03000684 n03014705 n03016953 n03017168 n03018349 n03026506 n03028079 n03032252 n03041632
n03042490 n03045698 n03047690 n03062245 n03063599 n03063689 n03065424 n03075370 n03085013 n03089624
n03095699 n03100240 n03109150 n03110669 n03124043 n03124170 n03125729 n03126707 n03127747 n03127925
n03131574 n03133878 n03134739 n03141823 n03146219 n03160309 n03179701 n03180011 n03187595 n03188531
n03196217 n03197337 n03201208 n03207743 n03207941 n03208938 n03216828 n03218198 n03220513 n03223299
n03240683 n03249569 n03250847 n03255030 n03259280 n03271574 n03272010 n03272562 n03290653 n03291819
n03297495 n03314780 n03325584 n03337140 n03344393 n03345487 n03347037 n03355925 n03372029 n03376595
n03379051 n03384352 n03388043 n03388183 n03388549 n03393912 n03394916 n03400231 n03404251 n03417042
n03424325 n03425413 n03443371 n03444034 n03445777 n03445924 n03447447 n03447721 n03450230 n03452741
n03457902 n03459775 n03461385 n03467068 n03476684 n03476991 n03478589 n03481172 n03482405 n03483316
n03485407 n03485794 n03492542 n03494278 n03495258 n03496892 n03498962 n03527444 n03529860 n03530642
n03532672 n03534580 n03535780 n03538406 n03544143 n03584254 n03584829 n03590841 n03594734 n03594945
n03595614 n03598930 n03599486 n03602883 n03617480 n03623198 n03627232 n03630383 n03633091 n03637318
n03642806 n03649909 n03657121 n03658185 n03661043 n03662601 n03666591 n03670208 n03673027 n03676483
n03680355 n03690938 n03691459 n03692522 n03697007 n03706229 n03709823 n03710193 n03710637 n03710721
n03717622 n03720891 n03721384 n03724870 n03729826 n03733131 n03733281 n03733805 n03742115 n03743016
n03759954 n03761084 n03763968 n03764736 n03769881 n03770439 n03770679 n03773504 n03775071 n03775546
n03776460 n03777568 n03777754 n03781244 n03782006 n03785016 n03786901 n03787032 n03788195 n03788365
n03791053 n03792782 n03792972 n03793489 n03794056 n03796401 n03803284 n03804744 n03814639 n03814906
n03825788 n03832673 n03837869 n03838899 n03840681 n03841143 n03843555 n03854065 n03857828 n03866082
n03868242 n03868863 n03871628 n03873416 n03874293 n03874599 n03876231 n03877472 n03877845 n03884397
n03887697 n03888257 n03888605 n03891251 n03891332 n03895866 n03899768 n03902125 n03903868 n03908618
n03908714 n03916031 n03920288 n03924679 n03929660 n03929855 n03930313 n03930630 n03933933 n03935335
n03937543 n03938244 n03942813 n03944341 n03947888 n03950228 n03954731 n03956157 n03958227 n03961711
n03967562 n03970156 n03976467 n03976657 n03977966 n03980874 n03982430 n03983396 n03991062 n03992509
n03995372 n03998194 n04004767 n04005630 n04008634 n04009552 n04019541 n04023962 n04026417 n04033901
n04033995 n04037443 n04039381 n04040759 n04041544 n04044716 n04049303 n04065272 n04067472 n04069434
n04070727 n04074963 n04081281 n04086273 n04090263 n04099969 n04111531 n04116512 n04118538 n04118776
n04120489 n04125021 n04127249 n04131690 n04133789 n04136333 n04141076 n04141327 n04141975 n04146614
n04147183 n04149813 n04152593 n04153751 n04154565 n04162706 n04179913 n04192698 n04200800 n04201297
n04204238 n04204347 n04208210 n04209133 n04209239 n04228054 n04229816 n04235860 n04238763 n04239074
n04243546 n04251144 n04252077 n04252225 n04254120 n04254680 n04254777 n04258138 n04259630 n04263257
n04264628 n04265275 n04266014 n04270147 n04273569 n04275548 n04277352 n04285008 n04286575 n04296562
n04310018 n04311004 n04311174 n04317175 n04325704 n04326547 n04328186 n04330267 n04332243 n04335435
n04336792 n04344873 n04346328 n04347754 n04350905 n04355338 n04355933 n04356056 n04357314 n04366367
n04367480 n04370456 n04371430 n04371774 n04372370 n04376876 n04380533 n04389033 n04392985 n04398044
n04399382 n04404412 n04409515 n04417672 n04418357 n04423845 n04428191 n04429376 n04435653 n04442312
n04443257 n04447861 n04456115 n04458633 n04461696 n04462240 n04465501 n04467665 n04476259 n04479046
n04482393 n04483307 n04485082 n04486054 n04487081 n04487394 n04493381 n04501370 n04505470 n04507155
n04509417 n04515003 n04517823 n04522168 n04523525 n04525038 n04525305 n04532106 n04532670 n04536866
n04540053 n04542943 n04548280 n04548362 n04550184 n04552348 n04553703 n04554684 n04557648 n04560804
n04562935 n04579145 n04579432 n04584207 n04589890 n04590129 n04591157 n04591713 n04592741 n04596742
n04597913 n04599235 n04604644 n04606251 n04612504 n04613696 n06359193 n06596364 n06785654 n06794110
n06874185 n07248320 n07565083 n07579787 n07583066 n07584110 n07590611 n07613480 n07614500 n07615774
n07684084 n07693725 n07695742 n07697313 n07697537 n07711569 n07714571 n07714990 n07715103 n07716358
n07716906 n07717410 n07717556 n07718472 n07718747 n07720875 n07730033 n07734744 n07742313 n07745940
n07747607 n07749582 n07753113 n07753275 n07753592 n07754684 n07760859 n07768694 n07802026 n07831146
n07836838 n07860988 n07871810 n07873807 n07875152 n07880968 n07892512 n07920052 n07930864 n07932039
n09193705 n09229709 n09246464 n09256479 n09288635 n09332890 n09399592 n09421951 n09428293 n09468604
n09472597 n09835506 n10148035 n10565667 n11879895 n11939491 n12057211 n12144580 n12267677 n12620546
n12768682 n12985857 n12998815 n13037406 n13040303 n13044778 n13052670 n13054560 n13133613 n15075141
"""

_IMAGENET_R_WNIDS_TEXT = """
n01443537 n01484850 n01494475 n01498041 n01514859 n01518878 n01531178 n01534433 n01614925 n01616318
n01630670 n01632777 n01644373 n01677366 n01694178 n01748264 n01770393 n01774750 n01784675 n01806143
n01820546 n01833805 n01843383 n01847000 n01855672 n01860187 n01882714 n01910747 n01944390 n01983481
n01986214 n02007558 n02009912 n02051845 n02056570 n02066245 n02071294 n02077923 n02085620 n02086240
n02088094 n02088238 n02088364 n02088466 n02091032 n02091134 n02092339 n02094433 n02096585 n02097298
n02098286 n02099601 n02099712 n02102318 n02106030 n02106166 n02106550 n02106662 n02108089 n02108915
n02109525 n02110185 n02110341 n02110958 n02112018 n02112137 n02113023 n02113624 n02113799 n02114367
n02117135 n02119022 n02123045 n02128385 n02128757 n02129165 n02129604 n02130308 n02134084 n02138441
n02165456 n02190166 n02206856 n02219486 n02226429 n02233338 n02236044 n02268443 n02279972 n02317335
n02325366 n02346627 n02356798 n02363005 n02364673 n02391049 n02395406 n02398521 n02410509 n02423022
n02437616 n02445715 n02447366 n02480495 n02480855 n02481823 n02483362 n02486410 n02510455 n02526121
n02607072 n02655020 n02672831 n02701002 n02749479 n02769748 n02793495 n02797295 n02802426 n02808440
n02814860 n02823750 n02841315 n02843684 n02883205 n02906734 n02909870 n02939185 n02948072 n02950826
n02951358 n02966193 n02980441 n02992529 n03124170 n03272010 n03345487 n03372029 n03424325 n03452741
n03467068 n03481172 n03494278 n03495258 n03498962 n03594945 n03602883 n03630383 n03649909 n03676483
n03710193 n03773504 n03775071 n03888257 n03930630 n03947888 n04086273 n04118538 n04133789 n04141076
n04146614 n04147183 n04192698 n04254680 n04266014 n04275548 n04310018 n04325704 n04347754 n04389033
n04409515 n04465501 n04487394 n04522168 n04536866 n04552348 n04591713 n07614500 n07693725 n07695742
n07697313 n07697537 n07714571 n07714990 n07718472 n07720875 n07734744 n07742313 n07745940 n07749582
n07753275 n07753592 n07768694 n07873807 n07880968 n07920052 n09472597 n09835506 n10565667 n12267677
"""

IMAGENET_WNIDS: tuple[str, ...] = tuple(_IMAGENET_WNIDS_TEXT.split())
IMAGENET_R_WNIDS: tuple[str, ...] = tuple(_IMAGENET_R_WNIDS_TEXT.split())
