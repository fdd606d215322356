"""Benchmark dataset formats (cemasim.data.datasets) on tiny fixtures written in the exact formats."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cemasim.data import datasets as ds
from cemasim.data import sources
from cemasim.data.datasets import DATASETS, open_dataset
from cemasim.errors import ConfigError, DataError

PER_SEV = 3  # CIFAR-C fixture rows per severity (the real files hold 10,000)
WNIDS = ("n01443537", "n01484850", "n01494475")  # goldfish, great white shark, hammerhead: in ImageNet-R
WNID_INDEX = (1, 2, 4)  # their ImageNet-1k class indices


# ----------------------------------------------------------------------------- fixtures


def write_pickle(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj))


@pytest.fixture
def cifar10_root(tmp_path: Path) -> Path:
    """cifar-10-batches-py with 4 images per batch; pixel [0,0,0] = batch*10 + position."""
    folder = tmp_path / "cifar-10-batches-py"
    for b, name in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        data = np.zeros((4, 3072), np.uint8)
        data[:, 0] = b * 10 + np.arange(4)
        write_pickle(folder / name, {b"batch_label": name.encode(), b"data": data, b"labels": [b % 10, 1, 2, 3],
                                     b"filenames": [b"x.png"] * 4})
    return tmp_path


@pytest.fixture
def cifar100_root(tmp_path: Path) -> Path:
    folder = tmp_path / "cifar-100-python"
    for name, n in (("train", 6), ("test", 5)):
        data = np.full((n, 3072), 7, np.uint8)
        write_pickle(folder / name, {b"data": data, b"fine_labels": list(range(90, 90 + n)),
                                     b"coarse_labels": [0] * n})
    return tmp_path


@pytest.fixture
def cifar10_c_root(tmp_path: Path) -> Path:
    """Two corruption files of 5 x PER_SEV rows: pixel (0,0) = (row, corruption id, severity)."""
    n = 5 * PER_SEV
    for cid, corruption in enumerate(("gaussian_noise", "fog")):
        arr = np.zeros((n, 32, 32, 3), np.uint8)
        arr[:, 0, 0, 0] = np.arange(n)
        arr[:, 0, 0, 1] = cid
        arr[:, 0, 0, 2] = np.repeat(np.arange(1, 6), PER_SEV)
        np.save(tmp_path / f"{corruption}.npy", arr)
    np.save(tmp_path / "labels.npy", np.tile(np.arange(PER_SEV) % 10, 5).astype(np.uint8))
    return tmp_path


def write_jpeg(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, quality=95)


@pytest.fixture
def imagenet_c_root(tmp_path: Path) -> Path:
    """2 corruptions x 2 severities x 3 wnids x 2 images, 224x224; colour = (40*sev, 100*corruption, 20*k)."""
    for cid, corruption in enumerate(("gaussian_noise", "fog")):
        for sev in (1, 3):
            for k, wnid in enumerate(WNIDS):
                for j in range(2):
                    write_jpeg(tmp_path / corruption / str(sev) / wnid / f"ILSVRC2012_val_{k}{j}.JPEG",
                               (224, 224), (40 * sev, 100 * cid, 20 * k))
    return tmp_path


@pytest.fixture
def imagenet_r_root(tmp_path: Path) -> Path:
    """3 of the 200 ImageNet-R wnids, 2 non-square images each."""
    for k, wnid in enumerate(WNIDS):
        for j, size in enumerate(((40, 30), (30, 50))):
            write_jpeg(tmp_path / "imagenet-r" / wnid / f"art_{j}.jpg", size, (200, 20 * k, 50))
    return tmp_path / "imagenet-r"


# ----------------------------------------------------------------------------- registry and validation


def test_registry_lists_every_format_with_help():
    assert set(DATASETS.names()) == {"fashion_mnist", "cifar10", "cifar100", "cifar10_c", "cifar100_c",
                                     "imagenet_c", "imagenet_r"}
    assert all(e.help for e in DATASETS.entries())


def test_bad_names_and_arguments_are_config_errors(cifar10_root: Path):
    with pytest.raises(ConfigError, match="did you mean 'cifar10'"):
        open_dataset("cifar01", cifar10_root)
    with pytest.raises(ConfigError, match="no split 'val'"):
        open_dataset("cifar10", cifar10_root, split="val")
    with pytest.raises(ConfigError, match="not pre-corrupted"):
        open_dataset("cifar10", cifar10_root, severities=[5])
    with pytest.raises(ConfigError, match="subset of 1..5"):
        open_dataset("cifar10_c", cifar10_root, severities=[6])
    with pytest.raises(ConfigError, match="unknown corruption 'fgo'"):
        open_dataset("cifar10_c", cifar10_root, corruptions=["fgo"])


def test_wnid_tables_are_the_standard_ones():
    assert len(ds.IMAGENET_WNIDS) == 1000 and list(ds.IMAGENET_WNIDS) == sorted(set(ds.IMAGENET_WNIDS))
    digest = hashlib.sha256(",".join(ds.IMAGENET_WNIDS).encode()).hexdigest()
    assert digest == "858fd8cc1983d57f3a05012a7aacf30415a430b1efb5bd17284bb3282160c0d5"
    assert ds.IMAGENET_WNIDS[0] == "n01440764"  # tench is class 0
    mask = ds.imagenet_r_mask()
    assert mask.shape == (200,) and mask.dtype == np.int64 and list(mask[:5]) == [1, 2, 4, 6, 8]


def test_wnid_tables_match_timm():
    timm = pytest.importorskip("timm")
    info = Path(timm.__file__).parent / "data" / "_info"
    assert tuple((info / "imagenet_synsets.txt").read_text().split()) == ds.IMAGENET_WNIDS
    assert [int(x) for x in (info / "imagenet_r_indices.txt").read_text().split()] == list(ds.imagenet_r_mask())


# ----------------------------------------------------------------------------- Fashion-MNIST and CIFAR


def test_fashion_mnist_embedded():
    src = open_dataset("fashion_mnist", None)
    assert len(src) == 10000 and src.num_classes == 10 and src.image_shape == (1, 28, 28)
    x = src.load(np.array([0, 9999, 0]))
    assert x.shape == (3, 1, 28, 28) and x.dtype == torch.uint8 and torch.equal(x[0], x[2])
    assert src.labels.dtype == np.int64 and src.domains is None and src.protocol["embedded"]
    small = open_dataset("fashion_mnist", None, subset=50, image_size=32)
    assert len(small) == 50 and small.load([1, 2]).shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(small.labels, src.labels[:50])


def test_cifar10_pickles(cifar10_root: Path):
    test = open_dataset("cifar10", cifar10_root)
    assert len(test) == 4 and test.image_shape == (3, 32, 32) and test.num_classes == 10
    x = test.load(np.arange(4))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    assert x[:, 0, 0, 0].tolist() == [50, 51, 52, 53]  # test_batch is file 5
    assert test.labels.tolist() == [5, 1, 2, 3] and test.labels.dtype == np.int64
    train = open_dataset("cifar10", cifar10_root / "cifar-10-batches-py", split="train", subset=6)
    assert len(train) == 6 and train.load([5])[0, 0, 0, 0] == 11  # batch 2, position 1
    assert train.protocol["root"] == str((cifar10_root / "cifar-10-batches-py").resolve())
    assert open_dataset("cifar10", cifar10_root, image_size=8).load([0]).shape == (1, 3, 8, 8)


def test_cifar100_fine_labels(cifar100_root: Path):
    src = open_dataset("cifar100", cifar100_root)
    assert len(src) == 5 and src.num_classes == 100 and src.labels.tolist() == [90, 91, 92, 93, 94]
    assert len(open_dataset("cifar100", cifar100_root, split="train")) == 6


def test_cifar_errors_name_path_and_layout(tmp_path: Path, cifar10_root: Path):
    with pytest.raises(DataError) as err:
        open_dataset("cifar10", tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in msg and "does not exist" in msg
    assert "data_batch_1" in msg and "test_batch" in msg
    with pytest.raises(DataError, match="needs a data folder"):
        open_dataset("cifar10", None)
    (cifar10_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable CIFAR pickle"):
        open_dataset("cifar10", cifar10_root)
    write_pickle(cifar10_root / "cifar-10-batches-py" / "test_batch", {b"data": np.zeros((2, 10), np.uint8),
                                                                       b"labels": [0, 1]})
    with pytest.raises(DataError, match=r"expected uint8 \[N, 3072\]"):
        open_dataset("cifar10", cifar10_root)


# ----------------------------------------------------------------------------- CIFAR-C


def test_cifar10_c_domains_follow_severity_rows(cifar10_c_root: Path):
    src = open_dataset("cifar10_c", cifar10_c_root, corruptions=["fog", "gaussian_noise"])
    assert len(src) == 2 * 5 * PER_SEV and src.image_shape == (3, 32, 32)
    assert src.domain_names == [("fog", s) for s in range(1, 6)] + [("gaussian_noise", s) for s in range(1, 6)]
    x = src.load(np.arange(len(src)))
    assert x.dtype == torch.uint8 and x.shape == (len(src), 3, 32, 32)
    corruption_of = {"gaussian_noise": 0, "fog": 1}
    for i in range(len(src)):
        corruption, severity = src.domain_names[src.domains[i]]
        assert x[i, 1, 0, 0] == corruption_of[corruption] and x[i, 2, 0, 0] == severity
        assert x[i, 0, 0, 0] // PER_SEV == severity - 1  # row block (s-1)*n .. s*n
    assert src.labels.tolist() == list(np.tile(np.arange(PER_SEV), 10))
    shuffled = np.array([17, 3, 29, 3])
    assert torch.equal(src.load(shuffled), x[shuffled])


def test_sources_pickle_without_their_data(cifar10_c_root: Path, imagenet_c_root: Path):
    npy = open_dataset("cifar10_c", cifar10_c_root, corruptions=["fog"])
    files = open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[1])
    files.load([0, 1])
    assert len(pickle.dumps(npy)) < 4096  # memory maps are reopened, not copied
    for src in (npy, files):
        copy = pickle.loads(pickle.dumps(src))
        assert torch.equal(copy.load([0, 5]), src.load([0, 5])) and copy.protocol == src.protocol
    fresh = pickle.loads(pickle.dumps(files))
    assert fresh.cache_info() == {"hits": 0, "decoded": 0, "size": 0, "capacity": files.cache_items}
    files.close()


def test_cifar10_c_filters_and_subset(cifar10_c_root: Path):
    src = open_dataset("cifar10_c", cifar10_c_root, corruptions="fog", severities=[5, 2], subset=2)
    assert src.domain_names == [("fog", 5), ("fog", 2)] and len(src) == 4
    rows = src.load(np.arange(4))[:, 0, 0, 0].tolist()
    assert rows == [4 * PER_SEV, 4 * PER_SEV + 1, PER_SEV, PER_SEV + 1]  # first n rows of each block
    assert src.protocol["severities"] == [5, 2] and src.protocol["images_per_domain"] == 2
    assert open_dataset("cifar10_c", cifar10_c_root, corruptions=["fog"], image_size=16).load([0]).shape[-1] == 16
    with pytest.raises(DataError, match="exceeds"):
        open_dataset("cifar10_c", cifar10_c_root, corruptions=["fog"], subset=PER_SEV + 1)


def test_cifar10_c_errors(tmp_path: Path, cifar10_c_root: Path):
    with pytest.raises(DataError) as err:
        open_dataset("cifar10_c", tmp_path / "x")
    msg = str(err.value)
    assert msg.startswith(f"CIFAR-10-C not found in {tmp_path / 'x'}")
    assert f"expected {tmp_path / 'x'}/<corruption>.npy (50000x32x32x3 uint8" in msg
    assert f"{tmp_path / 'x'}/labels.npy" in msg
    with pytest.raises(DataError) as err:  # default: all 15 standard corruptions
        open_dataset("cifar10_c", cifar10_c_root)
    assert f"files missing in {cifar10_c_root}: shot_noise.npy, impulse_noise.npy" in str(err.value)
    assert "15 standard" in str(err.value)
    assert "found: gaussian_noise, fog" in str(err.value)
    np.save(cifar10_c_root / "fog.npy", np.zeros((5 * PER_SEV, 32, 32), np.uint8))
    with pytest.raises(DataError, match=r"fog.npy: uint8 \(15, 32, 32\); expected uint8 \(15, 32, 32, 3\)"):
        open_dataset("cifar10_c", cifar10_c_root, corruptions=["fog"])


def test_cifar100_c_nested_folder_and_label_range(tmp_path: Path):
    folder = tmp_path / "CIFAR-100-C"
    folder.mkdir()
    np.save(folder / "snow.npy", np.zeros((10, 32, 32, 3), np.uint8))
    np.save(folder / "labels.npy", np.arange(10) * 11)
    src = open_dataset("cifar100_c", tmp_path, corruptions=["snow"], severities=[1])
    assert src.num_classes == 100 and src.labels.tolist() == [0, 11]
    np.save(folder / "labels.npy", np.arange(10) * 12)
    with pytest.raises(DataError, match=r"labels span 0..108, expected 0..99"):
        open_dataset("cifar100_c", tmp_path, corruptions=["snow"])


# ----------------------------------------------------------------------------- ImageNet-C


def test_imagenet_c_tree(imagenet_c_root: Path):
    src = open_dataset("imagenet_c", imagenet_c_root, corruptions=["gaussian_noise", "fog"], severities=[1, 3])
    assert len(src) == 2 * 2 * 3 * 2 and src.num_classes == 1000 and src.image_shape == (3, 224, 224)
    assert src.domain_names == [("gaussian_noise", 1), ("gaussian_noise", 3), ("fog", 1), ("fog", 3)]
    assert src.labels.tolist() == [1, 1, 2, 2, 4, 4] * 4  # indices in the 1000-class order
    assert src.domains.tolist() == sorted([0, 1, 2, 3] * 6)
    x = src.load(np.arange(len(src)))
    assert x.shape == (24, 3, 224, 224) and x.dtype == torch.uint8
    for i in range(len(src)):
        corruption, severity = src.domain_names[src.domains[i]]
        k = WNID_INDEX.index(src.labels[i])
        expected = torch.tensor([40 * severity, 100 * (corruption == "fog"), 20 * k]).float()
        assert (x[i, :, 100, 100].float() - expected).abs().max() <= 3  # JPEG rounding
    assert src.protocol["format"] == "imagenet-c-folders" and src.protocol["subset_rule"] == "all images"


def test_imagenet_c_subset_is_deterministic(imagenet_c_root: Path):
    kw = dict(corruptions=["gaussian_noise", "fog"], severities=[3], subset=4)
    a, b = open_dataset("imagenet_c", imagenet_c_root, **kw), open_dataset("imagenet_c", imagenet_c_root, **kw)
    assert a.paths == b.paths and len(a) == 8
    per_domain = [[p.split("/", 2)[2] for p in a.paths[d * 4:(d + 1) * 4]] for d in range(2)]
    assert per_domain[0] == per_domain[1] == sorted(per_domain[0])  # same images in every domain
    assert "seed 0" in a.protocol["subset_rule"]
    with pytest.raises(DataError, match="exceeds"):
        open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[1], subset=7)


def test_imagenet_c_subset_file(imagenet_c_root: Path):
    listed = [f"{WNIDS[2]}/ILSVRC2012_val_21.JPEG", f"{WNIDS[0]}/ILSVRC2012_val_00.JPEG", f"{WNIDS[1]}/x.JPEG"]
    (imagenet_c_root / "subset.txt").write_text("\n".join(listed) + "\n")
    src = open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[1, 3], subset=2)
    assert src.paths == [f"fog/{s}/{p}" for s in (1, 3) for p in listed[:2]]
    assert src.labels.tolist() == [4, 1, 4, 1] and "subset.txt" in src.protocol["subset_rule"]
    with pytest.raises(DataError, match=r"missing from .*fog/1.*x\.JPEG"):
        open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[1])


def test_imagenet_c_preprocessing_sizes(tmp_path: Path):
    write_jpeg(tmp_path / "snow" / "5" / WNIDS[0] / "a.JPEG", (300, 200), (10, 20, 30))
    src = open_dataset("imagenet_c", tmp_path, corruptions=["snow"], severities=[5])
    assert src.load([0]).shape == (1, 3, 224, 224)  # 300x200 -> 384x256 -> crop 224
    small = open_dataset("imagenet_c", tmp_path, corruptions=["snow"], severities=[5], image_size=64)
    assert small.image_shape == (3, 64, 64) and small.load([0]).shape == (1, 3, 64, 64) and small.resize == 73
    assert sources._center_crop(Image.new("RGB", (224, 224)), 224).size == (224, 224)


def test_imagenet_c_lru_cache_and_prefetch(imagenet_c_root: Path):
    src = open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[1])
    first = src.load([0, 1, 2, 0])
    assert src.cache_info()["decoded"] == 3  # the repeated index is decoded once
    again = src.load([2, 1, 0])
    assert torch.equal(again, first[[2, 1, 0]])
    assert src.cache_info()["decoded"] == 3 and src.cache_info()["hits"] == 3
    src.cache_items = 4
    src.load([3, 4, 5])  # 6 images > capacity 4: the least recently used (1, 2) go
    info = src.cache_info()
    assert info["size"] == 4 and info["decoded"] == 6
    src.load([1])
    assert src.cache_info()["decoded"] == 7
    fresh = open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[3])
    fresh.prefetch(np.arange(6), wait=True)
    assert fresh.cache_info()["decoded"] == 6 and fresh.cache_info()["size"] == 6
    fresh.load(np.arange(6))
    assert fresh.cache_info()["decoded"] == 6 and fresh.cache_info()["hits"] == 6
    fresh.close()
    racing = open_dataset("imagenet_c", imagenet_c_root, corruptions=["gaussian_noise"], severities=[1, 3])
    racing.prefetch(np.arange(12))  # no wait: load() takes what is ready and waits for the rest
    assert torch.equal(racing.load(np.arange(12)[::-1]), torch.stack([sources.decode_image(
        imagenet_c_root / p, 224, 256) for p in racing.paths[::-1]]))
    assert racing.cache_info()["decoded"] == 12  # nothing decoded twice
    racing.close()


def test_imagenet_c_without_cache_decodes_every_time(imagenet_c_root: Path):
    src = open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[1], cache_decoded=False)
    src.load([0, 1])
    src.load([0, 1])
    assert src.cache_info() == {"hits": 0, "decoded": 4, "size": 0, "capacity": 0}
    src.prefetch([2], wait=True)
    src.load([2])  # the prefetched image is handed out once ...
    src.load([2])  # ... then decoded again
    assert src.cache_info()["decoded"] == 6
    src.close()


def test_imagenet_c_errors(tmp_path: Path, imagenet_c_root: Path):
    with pytest.raises(DataError) as err:
        open_dataset("imagenet_c", tmp_path / "none")
    msg = str(err.value)
    assert f"ImageNet-C not found in {tmp_path / 'none'}" in msg
    assert f"{tmp_path / 'none'}/<corruption>/<severity 1-5>/<wnid>/*.JPEG" in msg
    with pytest.raises(DataError, match=r"severity folder .*fog/5 not found"):
        open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[5])
    with pytest.raises(DataError, match=r"missing in .*: .*shot_noise/"):
        open_dataset("imagenet_c", imagenet_c_root, severities=[1])
    (imagenet_c_root / "fog" / "1" / "n99999999").mkdir()
    with pytest.raises(DataError, match="n99999999 are not ImageNet class wnids"):
        open_dataset("imagenet_c", imagenet_c_root, corruptions=["fog"], severities=[1])
    bad = tmp_path / "bad"
    (bad / "fog" / "1" / WNIDS[0]).mkdir(parents=True)
    (bad / "fog" / "1" / WNIDS[0] / "a.JPEG").write_bytes(b"not a jpeg")
    src = open_dataset("imagenet_c", bad, corruptions=["fog"], severities=[1])
    with pytest.raises(DataError, match=r"cannot decode image .*a\.JPEG"):
        src.load([0])


# ----------------------------------------------------------------------------- ImageNet-R


def test_imagenet_r_labels_and_mask(imagenet_r_root: Path):
    src = open_dataset("imagenet_r", imagenet_r_root.parent)  # finds the imagenet-r/ subfolder
    assert len(src) == 6 and src.num_classes == 1000 and src.domains is None
    assert src.labels.tolist() == [1, 1, 2, 2, 4, 4]
    assert src.class_mask.shape == (200,) and set(src.labels) <= set(src.class_mask)
    assert src.protocol["classes_present"] == 3
    x = src.load(np.arange(6))
    assert x.shape == (6, 3, 224, 224) and x.dtype == torch.uint8
    assert (x[:, 0].float() - 200).abs().max() <= 3  # upscaled solid colour
    sub = open_dataset("imagenet_r", imagenet_r_root, subset=3, image_size=32)
    assert sub.paths == open_dataset("imagenet_r", imagenet_r_root, subset=3).paths and len(sub) == 3
    assert sub.load([0, 1]).shape == (2, 3, 32, 32)


def test_imagenet_r_errors(tmp_path: Path, imagenet_r_root: Path):
    with pytest.raises(DataError) as err:
        open_dataset("imagenet_r", tmp_path / "gone")
    assert f"{tmp_path / 'gone'}/<wnid>/*.jpg (200 ImageNet wnid folders" in str(err.value)
    (imagenet_r_root / "n01440764").mkdir()  # tench: ImageNet, but not one of the 200
    with pytest.raises(DataError, match="n01440764 are not ImageNet-R class wnids"):
        open_dataset("imagenet_r", imagenet_r_root)
    with pytest.raises(ConfigError, match="no split 'train'"):
        open_dataset("imagenet_r", imagenet_r_root, split="train")
