"""External models by name (``timm:<arch>``, ``torchvision:<arch>``): the second stage of the
data flow (data -> models -> methods), beside the Fashion-MNIST zoo in `zoo.py`.

Every model is wrapped in `ExternalModel`, which takes float images in [0, 1] [N, C, H, W],
normalises them with the mean/std its weights expect (timm's pretrained_cfg, else ImageNet's)
and exposes `input_shape` (C, H, W) and `num_classes`. The normalisation constants are
non-persistent buffers outside any norm layer, so `norm.adaptable_names` sees only the
network's BatchNorm/GroupNorm/LayerNorm affine tensors (under the ``net.`` prefix).

Weights never come from the network. `weights` is one of:

    <path>     a local checkpoint: a state dict, or a dict holding one under 'state_dict',
               'model' or 'model_state_dict' (.safetensors too); 'module.' / '_orig_mod.'
               prefixes and this wrapper's own 'net.' prefix are stripped
    "cache"    the library's local cache only: torchvision's $TORCH_HOME/hub/checkpoints/<official
               file>, timm's Hugging Face hub cache ($HF_HUB_CACHE or $HF_HOME/hub), or timm's
               legacy torch-hub file
    "random"   random initialisation (seed 0, so every build is the same), only when asked for

Anything missing raises DataError naming the file or cache folder that was searched and how
to provide weights. timm is optional (``pip install -e '.[zoo]'``) and imported lazily.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cemasim.errors import ConfigError, DataError
from cemasim.models.zoo import MODELS, ModelSpec
from cemasim.registry import did_you_mean, unknown_name

LIBRARIES = ("timm", "torchvision")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RANDOM_INIT_SEED = 0  # weights="random" gives the same model every time
INSTALL_HINT = "pip install -e '.[zoo]'"
_STATE_KEYS = ("state_dict", "model", "model_state_dict")
_STRIP_PREFIXES = ("module.", "_orig_mod.")
_OPTIONAL_KEYS = ("num_batches_tracked",)  # dropped by norm.convert's StatBatchNorm


# ----------------------------------------------------------------------------- names and wrapper


def parse_model_name(name: str) -> tuple[str, str]:
    """('timm', 'resnet18') for 'timm:resnet18'; ConfigError for anything else."""
    lib, sep, arch = str(name).partition(":")
    lib = lib.strip().lower()
    if not sep or not arch.strip():
        raise ConfigError(f"'{name}' is not an external model name; expected <library>:<arch> with library one "
                          f"of {', '.join(LIBRARIES)}, e.g. timm:resnet18 or torchvision:resnet50", source="model")
    if lib not in LIBRARIES:
        raise ConfigError(unknown_name("model library", lib, list(LIBRARIES)), source="model")
    return lib, arch.strip()


def is_external(name: str) -> bool:
    """True for names of the form <library>:<arch> (zoo names have no colon)."""
    return ":" in str(name)


class ChannelNormalize(nn.Module):
    """(x - mean[c]) / std[c] on [N, C, H, W], constants kept out of the state dict."""

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(-1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ExternalModel(nn.Module):
    """A library model behind [0, 1] input: forward(x) = net(normalise(x))."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float],
                 input_shape: tuple[int, int, int], num_classes: int):
        super().__init__()
        self.norm = ChannelNormalize(mean, std)
        self.net = net
        self.input_shape = tuple(input_shape)
        self.num_classes = int(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.norm(x))


@dataclass(frozen=True)
class ExternalInfo:
    """What the simulator needs to know about an external model (ModelSpec fields and provenance)."""

    name: str
    library: str
    arch: str
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weights: str  # "cache", "random" or the checkpoint path as given
    weights_source: str  # the file actually loaded ("" for random)

    @property
    def help(self) -> str:
        src = self.weights_source or "random init"
        return f"{self.library} {self.arch} ({self.num_classes} classes, input {self.input_shape}), weights: {src}"

    def to_spec(self, builder: Callable[[], nn.Module]) -> ModelSpec:
        return ModelSpec(name=self.name, builder=builder, input_shape=self.input_shape,
                         num_classes=self.num_classes, weights_file="", help=self.help)


# ----------------------------------------------------------------------------- building


def build_external(
    name: str,
    weights: str | Path | None,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    *,
    input_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[ExternalModel, ExternalInfo]:
    """Model `name` in eval mode, wrapped for [0, 1] input, and its description.

    weights: a checkpoint path, "cache" or "random" (None means "cache"). num_classes: the
    head size (default: the pretrained head, or the checkpoint's head size); with "cache"
    it must equal the pretrained head, since a new random head would not predict anything.
    input_size overrides the declared square input size (convolutional nets accept any size;
    timm ViTs are built for it); mean/std override the normalisation (e.g. CIFAR checkpoints).
    """
    library, arch = parse_model_name(name)
    choice = "cache" if weights is None else str(weights)
    adapter = _TimmAdapter(arch) if library == "timm" else _TorchvisionAdapter(arch)
    net, source, n_out = adapter.create(choice, num_classes, input_size)
    native = adapter.input_shape()
    shape = native if input_size is None else (native[0], int(input_size), int(input_size))
    m, s = tuple(mean or adapter.mean()), tuple(std or adapter.std())
    model = ExternalModel(net, m, s, shape, n_out).to(device).eval()
    info = ExternalInfo(f"{library}:{arch}", library, arch, shape, n_out, m, s, choice, source)
    return model, info


def external_spec(name: str, weights: str | Path | None = "cache", num_classes: int | None = None,
                  **kwargs: Any) -> ModelSpec:
    """A zoo ModelSpec for `name`, so the simulator can treat 'timm:resnet18' like a zoo model.

    The model is built once here, which checks the weights exist and reads the shapes. The
    spec's zero-argument `builder` closes over the weights choice and returns a model WITH
    its weights loaded: its first call hands out the model built here, later calls build
    afresh. Use `spec.builder()` (or zoo.build(name, pretrained=False)); zoo.build's
    pretrained path reads zoo weight files, which external models do not have.
    """
    model, info = build_external(name, weights, num_classes, **kwargs)
    ready = [model]

    def builder() -> nn.Module:
        return ready.pop() if ready else build_external(name, weights, num_classes, **kwargs)[0]

    return info.to_spec(builder)


_REGISTERED: dict[str, tuple[str, int | None]] = {}


def register_external(name: str, weights: str | Path | None = "cache", num_classes: int | None = None) -> ModelSpec:
    """Add `name` to the zoo's MODELS registry (idempotent for the same weights choice)."""
    key = ("cache" if weights is None else str(weights), num_classes)
    if name in MODELS:
        if _REGISTERED.get(name) != key:
            raise ConfigError(f"model '{name}' is already registered with weights={_REGISTERED.get(name)!r}; "
                              f"cannot register it again with {key!r}", source="model")
        return MODELS.get(name)
    spec = external_spec(name, weights, num_classes)
    MODELS.add(name, spec, spec.help)
    _REGISTERED[name] = key
    return spec


class _Adapter:
    """Library-specific construction: create(weights, num_classes, input_size) -> (net, source, classes)."""

    library = ""

    def __init__(self, arch: str):
        self.arch = arch

    def create(self, choice: str, num_classes: int | None, input_size: int | None) -> tuple[nn.Module, str, int]:
        if choice == "cache":
            net, source = self.from_cache(num_classes, input_size)
        elif choice == "random":
            with torch.random.fork_rng(devices=[]):  # reproducible init, global RNG untouched
                torch.manual_seed(RANDOM_INIT_SEED)
                net, source = self.new(num_classes or self.pretrained_classes(), input_size), ""
        else:
            net, source = self.from_checkpoint(Path(choice).expanduser(), num_classes, input_size)
        return net, source, head_size(net, self.classifier_name(net))

    def from_checkpoint(self, path: Path, num_classes: int | None, input_size: int | None) -> tuple[nn.Module, str]:
        state = read_checkpoint(path)
        n = num_classes or self.checkpoint_classes(state) or self.pretrained_classes()
        net = self.new(n, input_size)
        load_into(net, state, path)
        return net, str(path.resolve())

    def checkpoint_classes(self, state: dict[str, torch.Tensor]) -> int | None:
        """The head size stored in a checkpoint, read from the classifier's weight."""
        key = f"{self.classifier_name(None)}.weight"
        tensor = strip_prefixes(state, {key}).get(key)
        return int(tensor.shape[0]) if tensor is not None and tensor.dim() >= 1 else None

    def classifier_name(self, net: nn.Module | None) -> str:
        """The last Linear layer: the head in timm and torchvision classifiers (net=None: of a probe)."""
        net = net if net is not None else self.new(self.pretrained_classes(), None)
        linears = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
        return linears[-1] if linears else ""

    def check_head(self, num_classes: int | None) -> None:
        n = self.pretrained_classes()
        if num_classes is not None and num_classes != n:
            raise ConfigError(f"{self.library}:{self.arch} cached weights have a {n}-class head, num_classes="
                              f"{num_classes} would need a new random head; give a checkpoint with that head "
                              "or weights='random'", source="model")

    # library-specific
    def new(self, num_classes: int, input_size: int | None) -> nn.Module:
        raise NotImplementedError

    def from_cache(self, num_classes: int | None, input_size: int | None) -> tuple[nn.Module, str]:
        raise NotImplementedError

    def pretrained_classes(self) -> int:
        raise NotImplementedError

    def input_shape(self) -> tuple[int, int, int]:
        raise NotImplementedError

    def mean(self) -> tuple[float, ...]:
        return IMAGENET_MEAN

    def std(self) -> tuple[float, ...]:
        return IMAGENET_STD


class _TorchvisionAdapter(_Adapter):
    library = "torchvision"

    def __init__(self, arch: str):
        super().__init__(arch)
        import torchvision.models as tvm

        self.tvm = tvm
        known = tvm.list_models(module=tvm)  # classification models only
        if arch not in known:
            raise ConfigError(unknown_name("torchvision classification model", arch, known), source="model")
        self.default = tvm.get_model_weights(arch).DEFAULT

    def new(self, num_classes: int, input_size: int | None) -> nn.Module:
        self._check_size(input_size)
        return self.tvm.get_model(self.arch, weights=None, num_classes=num_classes)

    def _check_size(self, input_size: int | None) -> None:
        """torchvision ViTs are built for one size; the convolutional nets take any."""
        if input_size not in (None, self.input_shape()[1]) and self.arch.startswith("vit_"):
            raise ConfigError(f"torchvision:{self.arch} takes {self.input_shape()[1]}px input only", source="model")

    def from_cache(self, num_classes: int | None, input_size: int | None) -> tuple[nn.Module, str]:
        self.check_head(num_classes)
        self._check_size(input_size)
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        file = folder / os.path.basename(self.default.url)
        if not file.is_file():
            raise DataError(f"torchvision weights for {self.arch} ({self.default}) not found in the torch hub cache: "
                            f"looked for {file}. Copy {file.name} (from {self.default.url}) into {folder} "
                            "(set TORCH_HOME to move the cache), or pass a checkpoint path as weights")
        try:  # the file exists, so torchvision loads it from the cache (and checks its hash)
            net = self.tvm.get_model(self.arch, weights=self.default)
        except Exception as exc:  # corrupt file or hash mismatch
            raise DataError(f"cannot load torchvision weights {file}: {exc}") from None
        return net, str(file)

    def pretrained_classes(self) -> int:
        return len(self.default.meta["categories"])

    def input_shape(self) -> tuple[int, int, int]:
        crop = self.default.transforms.keywords.get("crop_size", 224)
        return (3, int(crop), int(crop))


class _TimmAdapter(_Adapter):
    library = "timm"

    def __init__(self, arch: str):
        super().__init__(arch)
        self.timm = import_timm()
        base, _tag = self.timm.models.split_model_name_tag(arch)
        if not self.timm.is_model(base):
            known = self.timm.list_models()
            raise ConfigError(f"timm model '{base}' is unknown{did_you_mean(base, known)}; "
                              "list them with timm.list_models()", source="model")
        try:
            self.cfg = self.timm.models.get_pretrained_cfg(arch)
        except RuntimeError as exc:  # an unknown pretrained tag
            raise ConfigError(f"timm model '{arch}': {exc}", source="model") from None

    def new(self, num_classes: int, input_size: int | None) -> nn.Module:
        return self.timm.create_model(self.arch, pretrained=False, num_classes=num_classes, **self._size(input_size))

    def from_cache(self, num_classes: int | None, input_size: int | None) -> tuple[nn.Module, str]:
        self.check_head(num_classes)
        file, custom = self._cached_file()
        overlay = {"file": str(file), "source": "", "custom_load": custom}
        try:  # loading from a named local file: timm never reaches the hub
            net = self.timm.create_model(self.arch, pretrained=True, pretrained_cfg_overlay=overlay,
                                         **self._size(input_size))
        except Exception as exc:
            raise DataError(f"cannot load timm weights {file} into {self.arch}: {exc}") from None
        return net, str(file)

    def _cached_file(self) -> tuple[Path, bool]:
        """The weights file in the HF hub cache (or timm's legacy torch-hub cache)."""
        looked = []
        hub_id = getattr(self.cfg, "hf_hub_id", None) if self.cfg else None
        if hub_id:
            from huggingface_hub import try_to_load_from_cache

            cache = hf_cache_dir()
            repo, _, revision = hub_id.partition("@")
            names = [self.cfg.hf_hub_filename] if self.cfg.hf_hub_filename else ["model.safetensors",
                                                                                 "pytorch_model.bin"]
            for fname in names:
                found = try_to_load_from_cache(repo, fname, cache_dir=cache, revision=revision or None)
                if isinstance(found, str) and Path(found).is_file():
                    return Path(found), False
            looked.append(f"{cache}/models--{repo.replace('/', '--')}/snapshots/*/{{{','.join(names)}}}")
        url = getattr(self.cfg, "url", None) if self.cfg else None
        if url:
            legacy = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
            if legacy.is_file():
                return legacy, bool(self.cfg.custom_load)
            looked.append(str(legacy))
        if not looked:
            raise DataError(f"timm model {self.arch} has no pretrained weights; pass a checkpoint path or 'random'")
        fetch = f"huggingface-cli download {hub_id}" if hub_id else f"download {url}"
        raise DataError(f"timm weights for {self.arch} not found in the local cache: looked for "
                        f"{' and '.join(looked)}. On a machine with network access run `{fetch}` "
                        "and copy the cache folder here (set "
                        "HF_HOME/HF_HUB_CACHE to point at it), or pass a checkpoint path as weights")

    def _size(self, input_size: int | None) -> dict[str, Any]:
        """img_size for fixed-size models (ViTs); convolutional nets take any size as they are."""
        if input_size is None or not (self.cfg and self.cfg.fixed_input_size) or input_size == self.input_shape()[1]:
            return {}
        return {"img_size": int(input_size)}

    def classifier_name(self, net: nn.Module | None) -> str:
        named = getattr(self.cfg, "classifier", None) if self.cfg else None
        return named if isinstance(named, str) else super().classifier_name(net)

    def pretrained_classes(self) -> int:
        return int(getattr(self.cfg, "num_classes", None) or 1000) if self.cfg else 1000

    def input_shape(self) -> tuple[int, int, int]:
        size = getattr(self.cfg, "input_size", None) if self.cfg else None
        return (int(size[0]), int(size[1]), int(size[2])) if size else (3, 224, 224)

    def mean(self) -> tuple[float, ...]:
        return tuple(self.cfg.mean) if self.cfg and self.cfg.mean else IMAGENET_MEAN

    def std(self) -> tuple[float, ...]:
        return tuple(self.cfg.std) if self.cfg and self.cfg.std else IMAGENET_STD


# ----------------------------------------------------------------------------- helpers


def import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"timm models need the timm package: {INSTALL_HINT}", source="model") from None
    return timm


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, resolved from the environment now (huggingface_hub reads it at import)."""
    if os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ.get("HF_HUB_CACHE") or os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")).expanduser() / "hub"


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in a checkpoint file (see the module doc for accepted layouts)."""
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}; weights must be a state-dict file (.pt/.pth/.bin/"
                        "/.safetensors), 'cache' (the library's local cache) or 'random'")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = load_tensors(path)
    except Exception as exc:
        raise DataError(f"cannot read checkpoint {path}: {checkpoint_problem(exc)} (save only the state dict: "
                        "torch.save(model.state_dict(), path))") from None
    for key in _STATE_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = sorted(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
        raise DataError(f"{path} holds no state dict (found {found}); expected name -> tensor, possibly under "
                        f"one of {', '.join(repr(k) for k in _STATE_KEYS)}")
    bad = [name for name, t in obj.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:  # a model with NaN weights predicts garbage: refused here, as the learning steps refuse to make one
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise DataError(f"{path} holds non-finite values (NaN or infinite) in {', '.join(bad[:3])}{more}; "
                        "a checkpoint must be finite (re-save it from a model that trained without diverging)")
    return obj


def load_tensors(path: Path) -> Any:
    """torch.load with weights_only: a checkpoint is data, never code to run."""
    import warnings

    with warnings.catch_warnings():  # torch warns about pickle protocols before refusing anyway
        warnings.simplefilter("ignore")
        return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_problem(exc: Exception) -> str:
    """What is wrong with a file torch.load refused, without torch's advice to load it with
    weights_only=False (which would run any code a pickle holds)."""
    import pickle

    if isinstance(exc, EOFError) or "EOF" in str(exc):
        return "the file is empty or truncated"
    if isinstance(exc, pickle.UnpicklingError):
        return ("not a tensor checkpoint: it is not a torch file, or it holds Python objects besides tensors, "
                "which cemasim never unpickles")
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'unreadable'}"


def input_shape_of(name: str) -> tuple[int, int, int]:
    """(C, H, W) that external model `name` takes; checks the library knows the name (ConfigError
    with suggestions) without building the model or reading weights, so validation stays fast."""
    library, arch = parse_model_name(name)
    adapter = _TimmAdapter(arch) if library == "timm" else _TorchvisionAdapter(arch)
    return adapter.input_shape()


def strip_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Remove DataParallel/compile prefixes, and this wrapper's 'net.' when the keys need it."""
    out = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _STRIP_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        out[key] = value
    if not (set(out) & expected) and all(k.startswith("net.") for k in out):
        out = {k[len("net."):]: v for k, v in out.items()}
    return out


def load_into(net: nn.Module, state: dict[str, torch.Tensor], source: object) -> None:
    """Strict load (num_batches_tracked may be absent); DataError saying what did not fit."""
    expected = net.state_dict()
    state = strip_prefixes(state, set(expected))
    missing = [k for k in expected if k not in state and not k.endswith(_OPTIONAL_KEYS)]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or wrong:
        parts = [f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
                 for label, items in (("missing", missing), ("unexpected", unexpected), ("shape", wrong)) if items]
        raise DataError(f"checkpoint {source} does not fit {type(net).__name__} ({'; '.join(parts)})")
    net.load_state_dict(state, strict=False)


def head_size(net: nn.Module, classifier: str) -> int:
    """Output classes of `net`: its classifier's out_features (timm's num_classes when present)."""
    n = getattr(net, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    module = dict(net.named_modules()).get(classifier)
    if isinstance(module, nn.Linear):
        return module.out_features
    raise ConfigError(f"cannot tell the number of classes of {type(net).__name__}", source="model")
