"""Refresh codecs: how the cloud's copy of a device's state travels down the link, its real payload
bytes, and the tensors the device decodes (it predicts with those, so a lossy codec's effect on
accuracy is real).

    float32 / float16 / bfloat16  every tensor, cast (the device casts back to float32)
    int8          every tensor as affine uint8 with one scale (float32) and zero point (1 byte) per
                  tensor, as torch's MinMaxObserver sets them (the range includes 0)
    int8_channel  the same with one scale and zero point per channel (dim 0), as PerChannelMinMaxObserver
                  sets them. A norm layer's vector holds one value per channel, so there every value
                  carries its own 5 bytes of scale and zero point
    topk          per tensor, the ceil(k n) entries that differ most from what the device holds (its
                  last applied refresh): float32 values and their flat indices (1, 2 or 4 bytes, as
                  narrow as the tensor's size allows). The device sets those entries; what was left
                  out still differs next time and travels then (error feedback), so a lost or stale
                  refresh loses nothing and the two sides never disagree on the base
    stats         the BatchNorm running statistics only (norm_mode tbr or running), float32; the
                  device keeps its own affine parameters

Pure torch: the simulator keeps, per device, the state the device holds (`apply` on both sides).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from cemasim.models.norm import STAT_SUFFIXES, NormState, cast_state, state_bytes

CODECS = ("float32", "float16", "bfloat16", "int8", "int8_channel", "topk", "stats")
CAST = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QPARAM_BYTES = 5  # a float32 scale and a zero point in [0, 255]
VALUE_BYTES = 4  # topk values travel as float32


@dataclass(frozen=True, slots=True)
class Payload:
    """One refresh as the device receives it: tensors it replaces, entries it sets, and the bytes."""

    size_bytes: int
    dense: NormState  # name -> decoded tensor (replaces the device's)
    sparse: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)  # name -> (flat indices, values)

    def values(self) -> dict[str, Tensor]:
        """Every value that travels, by tensor name (to check them)."""
        return self.dense | {name: values for name, (_, values) in self.sparse.items()}


def needs_base(codec: str) -> bool:
    """Whether the codec encodes against the state the device holds (the cloud keeps a copy per device)."""
    return codec == "topk"


def encode(state: NormState, codec: str, topk: float = 0.1, base: NormState | None = None) -> Payload:
    """The payload that brings a device to `state` (or towards it, for topk: `base` is what it holds)."""
    if codec in CAST:
        dense = cast_state(state, CAST[codec])
        return Payload(state_bytes(dense), dense)
    if codec in ("int8", "int8_channel"):
        pairs = [quantize(t, per_channel=codec == "int8_channel") for t in state.values()]
        return Payload(sum(b for _, b in pairs), {n: d for n, (d, _) in zip(state, pairs, strict=True)})
    if codec == "stats":
        dense = cast_state({n: t for n, t in state.items() if n.endswith(STAT_SUFFIXES)}, torch.float32)
        return Payload(state_bytes(dense), dense)
    if codec == "topk":
        assert base is not None, "topk encodes against the state the device holds"
        sparse, size = {}, 0
        for name, t in state.items():
            flat = t.detach().reshape(-1).float()
            m = topk_count(flat.numel(), topk)
            idx = torch.topk((flat - base[name].reshape(-1).float()).abs(), m, sorted=False).indices
            sparse[name] = (idx, flat[idx].clone())
            size += m * (VALUE_BYTES + index_bytes(flat.numel()))
        return Payload(size, {}, sparse)
    raise ValueError(f"unknown refresh codec {codec!r}; known: {', '.join(CODECS)}")


def topk_count(n: int, k: float) -> int:
    return min(n, max(1, math.ceil(k * n)))


def index_bytes(n: int) -> int:
    """Bytes of a flat index into a tensor of n entries."""
    return 1 if n <= 1 << 8 else 2 if n <= 1 << 16 else 4


def quantize(t: Tensor, per_channel: bool) -> tuple[Tensor, int]:
    """(decoded float32 tensor, payload bytes) of affine uint8, per tensor or per channel (dim 0), with
    the scale and zero point of torch's MinMaxObserver (quint8, the range stretched to include 0, so
    0 is exact; tests/test_codecs.py checks them against torch's observers and fake quantization)."""
    x = t.detach().float()
    rows = x.reshape(x.shape[0] if per_channel and x.dim() >= 1 else 1, -1)
    low, high = rows.amin(1).clamp(max=0), rows.amax(1).clamp(min=0)
    scale = ((high - low) / 255).clamp(min=torch.finfo(torch.float32).eps)[:, None]
    zero = (-torch.round(low[:, None] / scale)).clamp(0, 255)
    q = (torch.round(rows / scale) + zero).clamp(0, 255)
    return ((q - zero) * scale).reshape(x.shape), x.numel() + QPARAM_BYTES * rows.shape[0]


def apply(state: NormState, payload: Payload, device: torch.device | None = None) -> None:
    """Bring `state` (a device's, or the cloud's copy of it) to what `payload` carries: dense tensors
    replaced (float32), sparse entries set in a copy (the tensors a state holds may be shared)."""
    for name, tensor in payload.dense.items():
        state[name] = tensor.to(device or tensor.device, torch.float32)
    for name, (idx, values) in payload.sparse.items():
        current = state[name]
        updated = current.clone()
        updated.view(-1)[idx.to(current.device)] = values.to(current.device, current.dtype)
        state[name] = updated
