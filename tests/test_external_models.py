"""External timm/torchvision models (cemasim.models.external): weights handling, norm adaptation, FLOPs.

All models use random or locally written weights; nothing is downloaded. 224px models run at
the FlopCounter's batch of 2 only, so the file stays within about a minute on 2 CPU cores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from cemasim.errors import ConfigError, DataError
from cemasim.models import norm, zoo
from cemasim.models.cost import FlopCounter
from cemasim.models.external import ExternalModel, build_external, external_spec, parse_model_name, register_external

TV_RESNET18_FILE = "resnet18-f37072fd.pth"  # torchvision's official file name for ResNet18_Weights.DEFAULT


def small_input(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- names


def test_parse_model_name():
    assert parse_model_name("timm:resnet18") == ("timm", "resnet18")
    assert parse_model_name("torchvision:resnet50") == ("torchvision", "resnet50")
    assert parse_model_name("timm:vit_base_patch16_224.augreg_in21k_ft_in1k") == (
        "timm", "vit_base_patch16_224.augreg_in21k_ft_in1k")
    with pytest.raises(ConfigError, match="expected <library>:<arch>"):
        parse_model_name("resnet18")
    with pytest.raises(ConfigError, match="did you mean 'timm'"):
        parse_model_name("tim:resnet18")
    with pytest.raises(ConfigError, match="did you mean 'resnet18'"):
        build_external("torchvision:resnet81", "random")


def test_missing_timm_is_a_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` raise ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[zoo\]'"):
        build_external("timm:resnet18", "random")


# ----------------------------------------------------------------------------- norm adaptation and FLOPs


def adapt_and_count(model: torch.nn.Module, shape: tuple[int, int, int]) -> tuple[list[str], float, float]:
    norm.convert(model)
    names = norm.adaptable_names(model, with_stats=False)
    counter = FlopCounter(model, shape)
    return names, counter.per_sample("forward"), counter.per_sample("backward")


@pytest.mark.parametrize("name, shape, forward", [
    ("torchvision:resnet18", (3, 224, 224), 3.628e9),
    ("torchvision:resnet50", (3, 224, 224), 8.178e9),
])
def test_torchvision_models_adapt_and_count(name, shape, forward):
    model, info = build_external(name, "random")
    assert isinstance(model, ExternalModel) and model.input_shape == info.input_shape == shape
    assert model.num_classes == info.num_classes == 1000 and info.mean == (0.485, 0.456, 0.406)
    names, fwd, bwd = adapt_and_count(model, shape)
    assert names and all(n.startswith("net.") and n.endswith(("weight", "bias")) for n in names)
    assert "net.bn1.weight" in names and not any("norm." in n for n in names)  # input constants stay fixed
    assert isinstance(model.net.bn1, norm.StatBatchNorm)
    assert fwd == pytest.approx(forward, rel=0.01) and fwd < bwd < 3 * fwd


def test_timm_resnet18_at_32px():
    pytest.importorskip("timm")
    model, info = build_external("timm:resnet18", "random", num_classes=10, input_size=32)
    assert info.input_shape == (3, 32, 32) and info.num_classes == 10 and model.num_classes == 10
    names, fwd, bwd = adapt_and_count(model, info.input_shape)
    assert len(names) == 40 and "net.layer4.1.bn2.bias" in names
    assert fwd == pytest.approx(7.5e7, rel=0.02) and fwd < bwd < 3 * fwd
    with torch.no_grad():
        assert norm.forward(model, norm.initial_state(model, names), small_input(), "batch").shape == (2, 10)


def test_timm_vit_layernorm_is_adaptable_and_attention_is_counted():
    pytest.importorskip("timm")
    model, info = build_external("timm:vit_tiny_patch16_224", "random")
    assert info.mean == (0.5, 0.5, 0.5) and info.input_shape == (3, 224, 224)
    names, fwd, bwd = adapt_and_count(model, info.input_shape)
    assert {"net.blocks.0.norm1.weight", "net.blocks.0.norm1.bias", "net.norm.weight", "net.norm.bias"} <= set(names)
    assert len(names) == 2 * (2 * 12 + 1)  # two LayerNorms per block + the final one, weight and bias
    # Fused (CPU flash) attention must cost what the explicit q@k, attn@v matmuls cost; its
    # backward also recomputes q@k (as torch counts the CUDA kernels): 2*heads*tokens^2*dim per block.
    for block in model.net.blocks:
        block.attn.fused_attn = False
    unfused = FlopCounter(model, info.input_shape)
    assert fwd == unfused.per_sample("forward")
    assert bwd == unfused.per_sample("backward") + 12 * 2 * 3 * 197 * 197 * 64
    assert fwd == pytest.approx(2.507e9, rel=0.01)


def test_wrapper_normalises_input():
    model, _ = build_external("torchvision:resnet18", "random", num_classes=3, mean=(0.5, 0.4, 0.3), std=(0.2,) * 3)
    x = small_input()
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), model.net((x - mean) / 0.2), atol=1e-6)
    assert set(model.state_dict()) == {f"net.{k}" for k in model.net.state_dict()}  # constants not persistent


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trips_exactly(tmp_path: Path):
    torch.manual_seed(3)
    src, _ = build_external("torchvision:resnet18", "random", num_classes=10)
    with torch.no_grad():  # make BN statistics non-trivial so they are checked too
        for m in src.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    path = tmp_path / "r18.pt"
    torch.save(src.net.state_dict(), path)
    loaded, info = build_external("torchvision:resnet18", path)  # head size read from the checkpoint
    assert info.num_classes == 10 and info.weights_source == str(path.resolve())
    for key, value in src.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = small_input()
    with torch.no_grad():
        assert torch.equal(src(x), loaded(x))


@pytest.mark.parametrize("layout", ["module_prefix", "state_dict_key", "model_key", "wrapper", "converted"])
def test_checkpoint_layouts_are_tolerated(tmp_path: Path, layout: str):
    src, _ = build_external("torchvision:resnet18", "random", num_classes=4)
    raw = src.net.state_dict()
    payload = {
        "module_prefix": {f"module.{k}": v for k, v in raw.items()},
        "state_dict_key": {"state_dict": {f"module.{k}": v for k, v in raw.items()}, "epoch": 3},
        "model_key": {"model": raw},
        "wrapper": src.state_dict(),  # this module's own 'net.' keys
        "converted": norm.convert(src).state_dict(),  # StatBatchNorm has no num_batches_tracked
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(payload, path)
    loaded, _ = build_external("torchvision:resnet18", path, num_classes=4)
    assert torch.equal(loaded.net.fc.weight, raw["fc.weight"]) and torch.equal(loaded.net.bn1.running_var,
                                                                               raw["bn1.running_var"])


def test_checkpoint_errors(tmp_path: Path):
    missing = tmp_path / "nope.pt"
    with pytest.raises(DataError, match=f"checkpoint not found: {missing}"):
        build_external("torchvision:resnet18", missing)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read checkpoint"):
        build_external("torchvision:resnet18", garbage)
    src, _ = build_external("torchvision:resnet18", "random", num_classes=4)
    path = tmp_path / "r18.pt"
    torch.save(src.net.state_dict(), path)
    with pytest.raises(DataError, match=r"does not fit ResNet .*fc.weight \(4, 512\) vs \(7, 512\)"):
        build_external("torchvision:resnet18", path, num_classes=7)
    torch.save({"epoch": 1, "lr": torch.tensor(0.1), "args": "x"}, path)
    with pytest.raises(DataError, match="holds no state dict"):
        build_external("torchvision:resnet18", path)


def test_random_init_is_reproducible_and_leaves_global_rng_alone():
    torch.manual_seed(11)
    before = torch.rand(1)
    torch.manual_seed(11)
    a, _ = build_external("torchvision:resnet18", "random", num_classes=2)
    assert torch.equal(torch.rand(1), before)
    b, _ = build_external("torchvision:resnet18", "random", num_classes=2)
    assert torch.equal(a.net.conv1.weight, b.net.conv1.weight)


# ----------------------------------------------------------------------------- library caches


def test_torchvision_cache_missing_names_the_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(DataError) as err:
        build_external("torchvision:resnet18", "cache")
    msg = str(err.value)
    assert str(tmp_path / "hub" / "checkpoints" / TV_RESNET18_FILE) in msg and "TORCH_HOME" in msg
    with pytest.raises(ConfigError, match="1000-class head"):
        build_external("torchvision:resnet18", "cache", num_classes=10)


def test_torchvision_cache_with_a_corrupt_file_is_a_data_error(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    folder = tmp_path / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, folder / TV_RESNET18_FILE)  # wrong content: fails the hash check
    with pytest.raises(DataError, match=f"cannot load torchvision weights {folder / TV_RESNET18_FILE}"):
        build_external("torchvision:resnet18", "cache")


def hf_env(monkeypatch, home: Path) -> Path:
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TORCH_HOME", str(home / "torch"))
    return home / "hub"


def test_timm_cache_missing_names_the_cache_dir(tmp_path: Path, monkeypatch):
    pytest.importorskip("timm")
    hub = hf_env(monkeypatch, tmp_path)
    with pytest.raises(DataError) as err:
        build_external("timm:resnet18", "cache")
    msg = str(err.value)
    assert f"{hub}/models--timm--resnet18.a1_in1k" in msg and "huggingface-cli download" in msg


def test_timm_cache_loads_the_cached_file(tmp_path: Path, monkeypatch):
    pytest.importorskip("timm")
    from safetensors.torch import save_file

    hub = hf_env(monkeypatch, tmp_path)
    src, _ = build_external("timm:resnet18", "random")
    with torch.no_grad():
        src.net.fc.bias.uniform_(-1, 1)
    repo = hub / "models--timm--resnet18.a1_in1k"
    commit = "0" * 40
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    save_file({k: v.contiguous() for k, v in src.net.state_dict().items()}, repo / "snapshots" / commit /
              "model.safetensors")
    loaded, info = build_external("timm:resnet18", "cache")
    assert info.weights_source.endswith("model.safetensors")
    assert torch.equal(loaded.net.fc.bias, src.net.fc.bias)


# ----------------------------------------------------------------------------- zoo integration


def test_external_spec_and_registration(monkeypatch):
    monkeypatch.setattr(zoo.MODELS, "_entries", dict(zoo.MODELS._entries))  # undone after the test
    spec = external_spec("torchvision:resnet18", "random", num_classes=5)
    assert isinstance(spec, zoo.ModelSpec) and spec.input_shape == (3, 224, 224) and spec.num_classes == 5
    first, second = spec.builder(), spec.builder()
    assert first is not second and torch.equal(first.net.fc.weight, second.net.fc.weight)
    registered = register_external("torchvision:resnet18", "random", num_classes=5)
    assert zoo.spec("torchvision:resnet18") is registered
    assert register_external("torchvision:resnet18", "random", num_classes=5) is registered
    with pytest.raises(ConfigError, match="already registered"):
        register_external("torchvision:resnet18", "cache")
    model = zoo.build("torchvision:resnet18", pretrained=False)
    assert isinstance(model, ExternalModel) and not model.training
