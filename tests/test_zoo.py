"""Fashion-MNIST loading and the model zoo (data -> models): shapes, layouts, errors, budgets, accuracy."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cemasim.data.fashion_mnist import CLASS_NAMES, IMAGES_MAGIC, LABELS_MAGIC, load_split
from cemasim.errors import DataError
from cemasim.models import zoo


def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool = True) -> Path:
    """Write a uint8 array as an idx file (big-endian magic, then one int32 per dimension)."""
    raw = struct.pack(">i", magic) + struct.pack(f">{array.ndim}i", *array.shape) + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_split(folder: Path, split: str, n: int = 12, gz: bool = True) -> tuple[np.ndarray, np.ndarray]:
    prefix = {"train": "train", "test": "t10k"}[split]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(folder / f"{prefix}-images-idx3-ubyte", images, IMAGES_MAGIC, gz)
    write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, LABELS_MAGIC, gz)
    return images, labels


@pytest.fixture(scope="module")
def test_split() -> tuple[torch.Tensor, torch.Tensor]:
    return load_split("test")


def test_embedded_test_split(test_split):
    images, labels = test_split
    assert images.shape == (10000, 1, 28, 28) and images.dtype == torch.uint8
    assert labels.shape == (10000,) and labels.dtype == torch.int64
    assert torch.bincount(labels, minlength=10).tolist() == [1000] * 10
    assert len(CLASS_NAMES) == 10


def test_torchvision_raw_layout(tmp_path):
    images, labels = write_split(tmp_path / "FashionMNIST" / "raw", "train")
    x, y = load_split("train", tmp_path)
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.uint8
    assert torch.equal(x[:, 0], torch.from_numpy(images)) and y.tolist() == labels.tolist()


def test_flat_uncompressed_layout(tmp_path):
    write_split(tmp_path, "test", n=5, gz=False)
    x, y = load_split("test", str(tmp_path))
    assert x.shape == (5, 1, 28, 28) and y.dtype == torch.int64


def test_bad_magic_number(tmp_path):
    write_split(tmp_path, "train")
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(12, np.uint8), IMAGES_MAGIC)  # wrong magic
    with pytest.raises(DataError, match="magic"):
        load_split("train", tmp_path)


def test_missing_folder_names_expected_files(tmp_path):
    with pytest.raises(DataError) as err:
        load_split("train", tmp_path / "nowhere")
    msg = str(err.value)
    assert "train-images-idx3-ubyte" in msg and "train-labels-idx1-ubyte" in msg and "nowhere" in msg


def test_train_split_needs_a_folder():
    with pytest.raises(DataError, match="folder"):
        load_split("train")


@pytest.mark.parametrize("name", ["fmnist_edge_cnn", "fmnist_foundation_cnn"])
def test_models_build_and_output(name):
    model = zoo.build(name, pretrained=False)
    assert not model.training
    assert model(torch.rand(3, *zoo.spec(name).input_shape)).shape == (3, 10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_normalisation_is_outside_batchnorm():
    model = zoo.build("fmnist_edge_cnn", pretrained=False)
    assert "norm.mean" not in model.state_dict()  # fixed constants, never adapted or saved
    bn_params = {id(p) for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert all(id(b) not in bn_params for b in model.buffers() if b.dim() == 0)


def test_budgets():
    edge = zoo.build("fmnist_edge_cnn", pretrained=False)
    found = zoo.build("fmnist_foundation_cnn", pretrained=False)
    edge_flops, found_flops = zoo.flops_per_image(edge), zoo.flops_per_image(found)
    assert zoo.count_params(edge) <= 500_000
    assert 3e6 <= edge_flops <= 8e6
    assert found_flops >= 5 * edge_flops


def test_missing_weights_names_the_command(tmp_path):
    with pytest.raises(DataError, match="cemasim zoo train --data"):
        zoo.build("fmnist_edge_cnn", weights_dir=tmp_path)


def test_unknown_model_suggests():
    with pytest.raises(Exception, match="did you mean 'fmnist_edge_cnn'"):
        zoo.spec("fmnist_edge_cn")


def test_pretrained_edge_accuracy(test_split):
    # Weights are part of the package: their absence is a failure, not a skip.
    model = zoo.build("fmnist_edge_cnn")
    images, labels = test_split
    with torch.no_grad():
        pred = model(images[:1000].float() / 255.0).argmax(1)
    assert (pred == labels[:1000]).float().mean().item() >= 0.88


def test_zoo_card_lists_both_models():
    card = zoo.zoo_card()
    for name in zoo.MODELS.names():
        entry = card["models"][name]
        assert entry["clean_test_accuracy"] > 0.85 and entry["flops_per_image"] > 0


def test_training_is_reproducible(tmp_path):
    from cemasim.models.train import train_model

    write_split(tmp_path / "data", "train", n=200)
    runs = []
    for run in ("a", "b"):
        entry = train_model("fmnist_edge_cnn", tmp_path / "data", epochs=1, seed=3, out_dir=tmp_path / run,
                            progress=False)
        assert entry["epochs"] == 1 and entry["params"] <= 500_000
        runs.append(torch.load(tmp_path / run / "fmnist_edge_cnn.pt", weights_only=True))
        assert zoo.zoo_card(tmp_path / run)["models"]["fmnist_edge_cnn"]["seed"] == 3
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert runs[0]["features.0.0.weight"].dtype == torch.float16


# --- held out: no training augmentation resembles an evaluation corruption ------------------------

# AugMix's operation set (Hendrycks et al. 2020, augmentations.py), which its authors chose disjoint
# from ImageNet-C. Anything else needs an argument that it resembles none of the 15 test and 4
# validation corruptions, written here, before it may be added.
AUGMIX_OPS = {"autocontrast", "equalize", "posterize", "solarize", "rotate", "shear_x", "shear_y", "translate_x",
              "translate_y"}
# What each corruption family is made of: an augmentation named after any of these is a near-copy.
CORRUPTION_WORDS = {"noise", "gaussian", "shot", "impulse", "speckle", "dropout", "salt", "pepper", "blur", "defocus",
                    "glass", "motion", "zoom", "snow", "frost", "fog", "weather", "brightness", "bright",
                    "contrast", "saturat", "colorjitter", "jitter", "elastic", "pixel", "jpeg", "compress",
                    "spatter", "mud", "rain", "erase", "cutout", "occlu", "sharp"}


def test_training_augmentations_are_held_out_from_every_corruption():
    from cemasim.data.corruptions import CORRUPTION_NAMES, VALIDATION_CORRUPTIONS
    from cemasim.models.augment import AUGMENTATION_OPS

    ops = set(AUGMENTATION_OPS)
    assert ops <= AUGMIX_OPS, f"not an AugMix operation: {sorted(ops - AUGMIX_OPS)}"
    assert not ops & set(CORRUPTION_NAMES + VALIDATION_CORRUPTIONS)
    # autocontrast stretches an image's range to [0, 1]: it never shows the model a low-contrast image
    # (the contrast corruption's effect), which is why AugMix keeps it; no other name may match.
    assert not [o for o in ops - {"autocontrast"} for w in CORRUPTION_WORDS if w in o]


def test_autocontrast_never_lowers_contrast():
    from cemasim.models.augment import AUGMENTATION_OPS

    x = torch.rand(16, 1, 28, 28) * 0.5 + 0.2
    y = AUGMENTATION_OPS["autocontrast"](x, torch.Generator())
    assert (y.amax((1, 2, 3)) - y.amin((1, 2, 3)) >= x.amax((1, 2, 3)) - x.amin((1, 2, 3))).all()


def test_training_uses_only_the_declared_augmentations(monkeypatch):
    """Every pixel change of a training batch comes from crop/flip or a declared AugMix op."""
    import cemasim.models.augment as aug
    from cemasim.models.train import augment_batch

    called = []
    for name, fn in list(aug.AUGMENTATION_OPS.items()):
        monkeypatch.setitem(aug.AUGMENTATION_OPS, name, lambda x, g, _n=name, _f=fn: (called.append(_n), _f(x, g))[1])
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 1, 28, 28)
    edge = augment_batch(x, torch.Generator().manual_seed(1), robust=False)
    assert not called  # the edge sees crop and flip only
    assert edge.shape == x.shape
    found = augment_batch(x, g, robust=True)
    assert called and set(called) <= AUGMIX_OPS
    assert found.shape == x.shape and float(found.min()) >= 0 and float(found.max()) <= 1


def test_zoo_card_has_test_and_validation_corruption_accuracy():
    card = zoo.zoo_card()["models"]
    from cemasim.data.corruptions import CORRUPTION_NAMES, VALIDATION_CORRUPTIONS

    for name in zoo.MODELS.names():
        acc = card[name]["corruption_accuracy"]
        assert set(acc["per_corruption"]) == set(CORRUPTION_NAMES)
        assert set(acc["validation_per_corruption"]) == set(VALIDATION_CORRUPTIONS)
    edge, found = card["fmnist_edge_cnn"], card["fmnist_foundation_cnn"]
    # the foundation is the stronger model on clean data and on the validation corruptions
    assert found["clean_test_accuracy"] > edge["clean_test_accuracy"]
    assert found["corruption_accuracy"]["validation_mean"] > edge["corruption_accuracy"]["validation_mean"]
    assert "AugMix" in found["augmentation"] and edge["augmentation"] == "crop+flip"
