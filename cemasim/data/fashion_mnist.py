"""Fashion-MNIST loading: the first stage of the data flow (data -> models -> methods).

The test split ships with the package (cemasim/data/assets, MIT licence, Zalando SE), so
simulations run offline. The training split is only needed to (re)train the model zoo and
must be given as a folder, e.g. /usr/share/datasets/fashion-mnist (Debian's
dataset-fashion-mnist package) or a torchvision download (root/FashionMNIST/raw/).

Images come back as uint8 [N, 1, 28, 28], labels as int64 [N]; the models scale to [0, 1].
"""

from __future__ import annotations

import gzip
import importlib.resources
import struct
from pathlib import Path

import numpy as np
import torch

from cemasim.errors import DataError

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# idx magic numbers: 0x0000 08 <ndim>, 0x08 = unsigned byte.
IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
_PREFIX = {"train": "train", "test": "t10k"}
_EXPECTED_N = {"train": 60000, "test": 10000}


def expected_files(split: str) -> tuple[str, str]:
    """The (images, labels) idx file names of a split, without the optional .gz suffix."""
    p = _PREFIX[split]
    return f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte"


def load_split(split: str = "test", root: str | Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N,1,28,28] and labels int64 [N] of `split` ('train' or 'test').

    root=None reads the embedded test split; a folder may hold the idx files (gz or not)
    directly or in torchvision's FashionMNIST/raw/ layout.
    """
    if split not in _PREFIX:
        raise DataError(f"unknown Fashion-MNIST split '{split}'; expected 'train' or 'test'")
    if root is None:
        if split == "train":
            raise DataError(
                "the Fashion-MNIST training split is not embedded; give it with a folder "
                "(e.g. --data /usr/share/datasets/fashion-mnist from Debian's "
                "dataset-fashion-mnist package, or a torchvision download root)"
            )
        return _load_embedded()
    img_path, lbl_path = _find_files(Path(root), split)
    return _load_pair(img_path.read_bytes(), lbl_path.read_bytes(), img_path, lbl_path, split)


def _load_embedded() -> tuple[torch.Tensor, torch.Tensor]:
    assets = importlib.resources.files("cemasim.data") / "assets"
    img_name, lbl_name = (n + ".gz" for n in expected_files("test"))
    img, lbl = assets / img_name, assets / lbl_name
    if not (img.is_file() and lbl.is_file()):
        raise DataError(f"the embedded Fashion-MNIST test split is missing from {assets}: "
                        f"expected {img_name}, {lbl_name}")
    return _load_pair(img.read_bytes(), lbl.read_bytes(), img_name, lbl_name, "test")


def _find_files(root: Path, split: str) -> tuple[Path, Path]:
    """Locate the split's two files under root or root/FashionMNIST/raw, preferring plain over .gz."""
    names = expected_files(split)
    folders = [root, root / "FashionMNIST" / "raw"]
    for folder in folders:
        found = [_first_existing(folder, n) for n in names]
        if all(found):
            return found[0], found[1]  # type: ignore[return-value]
    listed = ", ".join(f"{n}[.gz]" for n in names)
    searched = " and ".join(str(f) for f in folders)
    hint = "" if root.is_dir() else " (the folder does not exist)"
    raise DataError(
        f"Fashion-MNIST {split} split not found in {searched}{hint}; expected files: {listed}. "
        "Debian's dataset-fashion-mnist package installs them in /usr/share/datasets/fashion-mnist"
    )


def _first_existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_pair(img_bytes: bytes, lbl_bytes: bytes, img_src: object, lbl_src: object,
               split: str) -> tuple[torch.Tensor, torch.Tensor]:
    images = _parse_idx(img_bytes, IMAGES_MAGIC, img_src)
    labels = _parse_idx(lbl_bytes, LABELS_MAGIC, lbl_src)
    if images.shape[1:] != (28, 28):
        raise DataError(f"{img_src}: images are {tuple(images.shape[1:])}, expected 28x28")
    if len(images) != len(labels):
        raise DataError(f"{img_src} holds {len(images)} images but {lbl_src} holds {len(labels)} labels")
    if labels.size and int(labels.max()) >= len(CLASS_NAMES):
        raise DataError(f"{lbl_src}: label {int(labels.max())} is out of range 0..9")
    return (
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )


def _parse_idx(raw: bytes, magic: int, source: object) -> np.ndarray:
    """Decode one idx file (gzip detected by its header) and check magic number and size."""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{source}: corrupt gzip data ({exc})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: too short for an idx file ({len(raw)} bytes)")
    found = struct.unpack(">i", raw[:4])[0]
    if found != magic:
        raise DataError(f"{source}: idx magic number is {found}, expected {magic}")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DataError(f"{source}: header says {dims} = {size} bytes of data, file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)
