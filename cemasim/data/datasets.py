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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cemasim.data.corruptions import VALIDATION_CORRUPTIONS
from cemasim.data.imagenet_classes import IMAGENET_R_WNIDS, IMAGENET_WNIDS, imagenet_index, imagenet_r_mask
from cemasim.data.sources import (
    IMAGENET_CROP,
    IMAGENET_RESIZE_RATIO,
    FileSource,
    ImageSource,
    NpySource,
    TensorSource,
    load_npy,
)
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
    labels_all = load_npy(folder / "labels.npy", mmap=False)
    if labels_all.ndim != 1 or labels_all.dtype.kind not in "iu" or len(labels_all) % 5:
        raise DataError(f"{folder / 'labels.npy'}: {labels_all.dtype} {labels_all.shape}; expected integer labels "
                        "[5*n] (one per row of the corruption files)")
    labels_all = labels_all.astype(np.int64)
    _check_labels(labels_all, n_classes, folder / "labels.npy")
    per_sev = len(labels_all) // 5
    take = _first_n(req.subset, per_sev, f"{title} severity block")
    arrays: list[np.ndarray] = []
    files: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    domains: list[np.ndarray] = []
    names: list[tuple[str, int]] = []
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


def _open_corruption_npy(path: Path, n_rows: int) -> np.ndarray:
    arr = load_npy(path, mmap=True)
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
    domains: list[np.ndarray] = []
    names: list[tuple[str, int]] = []
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
        "num_images": len(rel), "classes_present": len(np.unique(labels)),
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
