"""Measure a model's real latency on this machine and fit the cost model's law to it.

    seconds(batch) = overhead_s + FLOPs(batch) / effective_flops_per_s

Timings are medians of repeated calls in the mode the simulator predicts with (test-batch
BatchNorm statistics, no autograd); FLOPs come from the same FlopCounter the simulator uses, so
a fitted profile reproduces this machine's latency inside a simulation. `cemasim profile` is the
front end; this module does the measuring, fitting and YAML rendering.
"""

from __future__ import annotations

import datetime
import functools
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from cemasim.errors import CemasimError, ConfigError
from cemasim.models import norm
from cemasim.models.cost import FlopCounter


@dataclass(frozen=True)
class LinearFit:
    """seconds = overhead_s + flops / flops_per_s, with its coefficient of determination."""

    overhead_s: float
    flops_per_s: float
    r2: float

    def predict(self, flops: float) -> float:
        return self.overhead_s + flops / self.flops_per_s


@dataclass(frozen=True)
class PassTiming:
    """One pass kind (forward, or forward + backward) timed over the batch sizes."""

    kind: str
    flops_per_sample: float
    batch_sizes: list[int]
    median_s: list[float]
    fit: LinearFit


def fit_linear(flops: Sequence[float], seconds: Sequence[float]) -> LinearFit:
    """Least-squares line through (FLOPs, seconds); a negative intercept (noise, or kernels that get
    more efficient with batch size) is clipped to 0 and the slope refitted through the origin."""
    x, y = np.asarray(flops, dtype=float), np.asarray(seconds, dtype=float)
    if len(np.unique(x)) < 2:
        raise ConfigError("need at least two different batch sizes to fit overhead and FLOP/s", source="profile")
    slope, intercept = np.polyfit(x, y, 1)
    if intercept < 0:
        slope, intercept = float(x @ y / (x @ x)), 0.0
    if slope <= 0:
        raise CemasimError("measured time does not grow with batch size (timing noise?); "
                           "try larger batch sizes or more --repeats")
    residual = y - (intercept + slope * x)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float((residual**2).sum()) / total if total > 0 else 1.0
    return LinearFit(overhead_s=float(intercept), flops_per_s=1.0 / float(slope), r2=r2)


MAX_BATCH = 65536  # images of one timed batch


def parse_batch_sizes(text: str) -> list[int]:
    """'1,8,32' -> [1, 8, 32]: positive integers up to MAX_BATCH, at least two different ones."""
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--batch-sizes {text!r}: expected comma-separated integers, e.g. 1,8,32,64",
                          source="profile") from None
    if any(b < 1 for b in sizes) or len(set(sizes)) < 2:
        raise ConfigError(f"--batch-sizes {text!r}: need at least two different positive batch sizes",
                          source="profile")
    if max(sizes) > MAX_BATCH:
        raise ConfigError(f"--batch-sizes: at most {MAX_BATCH:,} images a batch (they are allocated at once), got "
                          f"{max(sizes):,}", source="profile")
    return sorted(set(sizes))


def median_seconds(calls: list[Callable[[], Any]], repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Median wall time of each call after `warmup` untimed calls of each. The calls take turns
    (round robin), so a slow phase of a shared machine hits every batch size alike instead of
    bending the fit; CUDA is synchronised around each call so the time covers the kernels."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for call in calls:
        for _ in range(warmup):
            call()
    sync()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, spent in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            sync()
            spent.append(time.perf_counter() - start)
    return [statistics.median(spent) for spent in times]


def time_passes(model: nn.Module, input_shape: tuple[int, ...], batch_sizes: list[int], repeats: int,
                warmup: int, train: bool = False) -> list[PassTiming]:
    """Forward timing (and forward + backward w.r.t. the norm affine tensors when `train`) of a
    norm-converted model, each fitted over the batch sizes."""
    device = next(model.parameters()).device
    counter = FlopCounter(model, input_shape)
    state = norm.initial_state(model, norm.adaptable_names(model, with_stats=False))
    inputs = [torch.rand((b, *input_shape), device=device) for b in batch_sizes]

    def forward(x: torch.Tensor) -> None:
        with torch.no_grad():
            norm.forward(model, state, x, "batch")

    def backward(x: torch.Tensor) -> None:  # as FlopCounter counts it: fresh leaves, scalar loss
        params = {n: t.detach().requires_grad_(True) for n, t in state.items()}
        norm.forward(model, params, x, "batch").logsumexp(-1).sum().backward()

    out = []
    for kind, call in [("forward", forward)] + ([("backward", backward)] if train else []):
        per_sample = counter.per_sample(kind, "batch")
        medians = median_seconds([functools.partial(call, x) for x in inputs], repeats, warmup, device)
        fit = fit_linear([per_sample * b for b in batch_sizes], medians)
        out.append(PassTiming(kind, per_sample, list(batch_sizes), medians, fit))
    return out


def table(timing: PassTiming) -> str:
    """Batch size, median ms, ms per sample and the fit's prediction, one row per batch size."""
    rows = [("batch", "median ms", "ms/sample", "fit ms")]
    for b, t in zip(timing.batch_sizes, timing.median_s, strict=True):
        rows.append((str(b), f"{1e3 * t:.3f}", f"{1e3 * t / b:.4f}",
                     f"{1e3 * timing.fit.predict(timing.flops_per_sample * b):.3f}"))
    return "\n".join("  ".join(c.rjust(w) for c, w in zip(r, (5, 10, 10, 10), strict=True)) for r in rows)


def summary(timing: PassTiming) -> str:
    fit = timing.fit
    return (f"{timing.kind}: {timing.flops_per_sample / 1e6:.3f} MFLOPs/sample, effective "
            f"{fit.flops_per_s / 1e9:.3f} GFLOP/s, overhead {1e3 * fit.overhead_s:.3f} ms, R^2 {fit.r2:.4f}")


def render_profile(timings: list[PassTiming], active_w: float, provenance: dict[str, Any]) -> str:
    """The profile YAML: exactly the inline-profile keys (the scenario schema rejects others), with
    the measurement's provenance in comments. The forward fit sets the rate; utilization is 1
    because a measured rate already is the effective one."""
    forward = timings[0]
    profile = {
        "peak_flops_per_s": _round(forward.fit.flops_per_s),
        "utilization": 1.0,
        "overhead_s": _round(forward.fit.overhead_s),
        "can_train": any(t.kind == "backward" for t in timings),
        "active_w": float(active_w),
    }
    lines = ["# Device profile measured by `cemasim profile` (load with fleet.profile: <this file>).",
             "# peak_flops_per_s is the fitted effective forward FLOP/s, so utilization is 1.0."]
    lines += [f"# {k}: {v}" for k, v in provenance.items()]
    for t in timings:
        lines.append(f"# {summary(t)}")
        lines += [f"#   batch {b}: median {1e3 * s:.4f} ms" for b, s in zip(t.batch_sizes, t.median_s, strict=True)]
    if len(timings) > 1:
        lines.append("# the simulator times backward passes with the forward rate above; the backward fit is "
                     "for reference")
    if not active_w:
        lines.append("# active_w 0.0: energy is not modelled (pass --active-w to set the power draw)")
    return "\n".join(lines) + "\n" + yaml.safe_dump(profile, sort_keys=False)


def provenance(model_name: str, weights: str, device: torch.device, repeats: int, warmup: int) -> dict[str, Any]:
    """Where and how the numbers were taken (goes into the file's comments)."""
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "hardware": hw,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "model": model_name,
        "weights": weights,
        "repeats": repeats,
        "warmup": warmup,
    }


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _round(v: float) -> float:
    """Four significant digits: the measurement is not more precise than that."""
    return float(f"{v:.4g}")
