"""Reproducible training and evaluation of the model zoo (data -> **models** -> methods).

``cemasim zoo train`` calls :func:`train_model` then :func:`evaluate_corruptions`. Training
reads the Fashion-MNIST training split from a folder; evaluation uses the embedded test
split. Every random choice (init, dropout, shuffling, augmentation) follows from `seed`:
init and dropout from torch.manual_seed, shuffling and augmentation from a dedicated
torch.Generator, so results do not depend on what else ran in the process.

The foundation model additionally sees AugMix on a random half of each batch, with AugMix's own
operation set, which its authors chose disjoint from ImageNet-C (see models/augment.py): no
training augmentation resembles any of the 15 test or 4 validation corruptions.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cemasim.data.fashion_mnist import load_split
from cemasim.models import zoo
from cemasim.models.augment import augmix, random_crop_flip
from cemasim.rng import torch_generator

BATCH_SIZE = 128
# Chosen so the edge model passes 90 % clean accuracy and each model trains in a few
# minutes on a 2-core CPU.
DEFAULT_EPOCHS: dict[str, int] = {"fmnist_edge_cnn": 10, "fmnist_foundation_cnn": 12}
ROBUST_MODELS = frozenset({"fmnist_foundation_cnn"})
MAX_LR = 0.1
WEIGHT_DECAY = 5e-4


def default_epochs(name: str) -> int:
    """The epoch count `cemasim zoo train` uses when --epochs is not given."""
    zoo.spec(name)  # unknown names fail with a suggestion
    return DEFAULT_EPOCHS[name]


# ---------------------------------------------------------------- augmentation


def augment_batch(x: torch.Tensor, g: torch.Generator, robust: bool) -> torch.Tensor:
    """Crop+flip for every model; AugMix (held out from every corruption) on a random half for the foundation."""
    x = random_crop_flip(x, g)
    if robust:
        half = torch.randperm(x.shape[0], generator=g)[: x.shape[0] // 2]
        x = x.clone()
        x[half] = augmix(x[half], g)
    return x


# ---------------------------------------------------------------- training


def _batches(n: int, g: torch.Generator) -> Iterable[torch.Tensor]:
    perm = torch.randperm(n, generator=g)
    return perm.split(BATCH_SIZE)


def train_model(
    name: str,
    data_root: str | Path,
    epochs: int | None = None,
    seed: int = 0,
    out_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train zoo model `name` from scratch, save fp16 weights and its zoo.json entry; returns that entry."""
    from tqdm import tqdm

    epochs = default_epochs(name) if epochs is None else int(epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    images, labels = load_split("train", data_root)
    out = Path(out_dir) if out_dir is not None else zoo.WEIGHTS_DIR

    torch.manual_seed(seed)  # parameter init and dropout
    g = torch_generator(seed, "zoo-train", name)  # shuffling and augmentation
    # channels_last: about 20 % faster convolutions on CPU; saved weights are made contiguous.
    model = zoo.spec(name).builder().to(memory_format=torch.channels_last)
    steps = math.ceil(len(images) / BATCH_SIZE)
    opt = torch.optim.SGD(model.parameters(), lr=MAX_LR, momentum=0.9, nesterov=True, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MAX_LR, total_steps=epochs * steps, pct_start=0.25)
    robust = name in ROBUST_MODELS

    start = time.perf_counter()
    model.train()
    bar = tqdm(total=epochs * steps, desc=f"train {name}", file=sys.stderr, disable=not progress, unit="batch")
    for epoch in range(epochs):
        for idx in _batches(len(images), g):
            x = augment_batch(images[idx].float() / 255.0, g, robust).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(model(x), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    train_seconds = time.perf_counter() - start

    model.eval()
    zoo.save_weights(model, out / zoo.spec(name).weights_file)
    # Score the weights as shipped (fp16 round trip), not the fp32 training copy.
    shipped = zoo.build(name, weights_dir=out)
    test_x, test_y = load_split("test")
    entry = {
        "params": zoo.count_params(model),
        "flops_per_image": zoo.flops_per_image(model),
        "clean_test_accuracy": round(accuracy(shipped, test_x, test_y), 4),
        "epochs": epochs,
        "seed": seed,
        "batch_size": BATCH_SIZE,
        "augmentation": "crop+flip, AugMix on half of each batch" if robust else "crop+flip",
        "train_seconds": round(train_seconds, 1),
        "torch_threads": torch.get_num_threads(),
        "command": f"cemasim zoo train --data {data_root} --model {name} --epochs {epochs} --seed {seed}",
        "torch_version": torch.__version__,
    }
    _update_card(out, name, entry, replace=True)
    return entry


@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int = 1000) -> float:
    """Top-1 accuracy; uint8 images are scaled to [0,1], float ones are used as they are."""
    model.eval()
    correct = 0
    for xb, yb in zip(images.split(batch), labels.split(batch), strict=True):
        xb = xb.float() / 255.0 if xb.dtype == torch.uint8 else xb
        correct += int((model(xb).argmax(1) == yb).sum())
    return correct / max(len(labels), 1)


# ---------------------------------------------------------------- evaluation


def evaluate_corruptions(
    name: str,
    severities: Iterable[int] = (1, 2, 3, 4, 5),
    n: int = 2000,
    seed: int = 0,
    *,
    weights_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Accuracy of the shipped model on the first n embedded test images under every corruption.

    The 15 test corruptions and the 4 validation corruptions are scored separately ("mean" is over
    the test ones, "validation_mean" over the validation ones). The corruption noise for
    (corruption, severity) comes from a stream named by both, so every model is scored on the very
    same corrupted images. The result is stored in the model's zoo.json entry under
    "corruption_accuracy" and returned.
    """
    from cemasim.data.corruptions import CORRUPTION_NAMES, VALIDATION_CORRUPTIONS, corrupt

    severities = tuple(int(s) for s in severities)
    model = zoo.build(name, weights_dir=weights_dir)
    x, y = load_split("test")
    x, y = x[:n].float() / 255.0, y[:n]

    def score(names: tuple[str, ...]) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
        per: dict[str, dict[str, float]] = {}
        for cname in names:
            per[cname] = {}
            for sev in severities:
                g = torch_generator(seed, "zoo-eval", cname, sev)
                per[cname][str(sev)] = round(accuracy(model, corrupt(x, cname, sev, generator=g), y), 4)
        by_sev = {str(s): round(sum(per[c][str(s)] for c in per) / max(len(per), 1), 4) for s in severities}
        return per, by_sev

    per, by_sev = score(CORRUPTION_NAMES)
    val, val_by_sev = score(VALIDATION_CORRUPTIONS)
    result = {
        "n": len(y),
        "seed": seed,
        "clean": round(accuracy(model, x, y), 4),
        "per_corruption": per,
        "mean_per_severity": by_sev,
        "mean": round(sum(by_sev.values()) / max(len(by_sev), 1), 4),
        "validation_per_corruption": val,
        "validation_mean_per_severity": val_by_sev,
        "validation_mean": round(sum(val_by_sev.values()) / max(len(val_by_sev), 1), 4),
    }
    _update_card(Path(weights_dir or zoo.WEIGHTS_DIR), name, {"corruption_accuracy": result})
    return result


def _update_card(folder: Path, name: str, fields: dict[str, Any], replace: bool = False) -> None:
    """Merge `fields` into the model's zoo.json entry (replace=True starts the entry afresh)."""
    path = folder / zoo.ZOO_CARD
    card = json.loads(path.read_text()) if path.is_file() else {}
    card.setdefault("dataset", "fashion-mnist")
    card.setdefault("weights_dtype", "float16")
    models = card.setdefault("models", {})
    entry = {} if replace else models.get(name, {})
    entry.update(fields)
    models[name] = entry
    card["models"] = dict(sorted(models.items()))
    tmp = path.with_suffix(".json.tmp")
    folder.mkdir(parents=True, exist_ok=True)
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    os.replace(tmp, path)  # atomic: a reader never sees half a card
