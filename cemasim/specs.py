"""What the simulator receives: the typed, resolved description of one run, built once by
assembly.py from a Scenario. Every unit is already bits, bytes or seconds, and every "null means
unlimited" or "null means the preset's figure" is already decided, so sim/ converts nothing and
never sees the Scenario. mypy checks every field read below.

    RunSpec     the whole run: models, method, workload, upload policy, fleet options
      ClassSpec   one device class: its devices, planner, profile, links, availability, energy
        LinkSpec    one direction of a device's link (capacity, latency, trace, outages, loss, sharing)
      CloudSpec   the cloud: GPUs, scheduler, foundation model, learning and refresh plan

A named kind a plugin may register (an arrival process, an outage process, a loss model, a capacity
model) gets its section's own keys as `Params`: a read-only snapshot read by attribute.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from cemasim.methods.cema_cloud import CloudConfig
from cemasim.methods.method import Method
from cemasim.models.profiles import DeviceProfile
from cemasim.models.zoo import ModelSpec

if TYPE_CHECKING:
    from cemasim.workload import Planner, Workload


class Params(Mapping[str, Any]):
    """A section's keys as plain, read-only data (`params.rate_hz`, `params["rate_hz"]`); nested
    mappings read the same way."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(self, "_data", dict(data))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __getitem__(self, name: str) -> Any:
        value = self._data[name]
        return Params(value) if isinstance(value, Mapping) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Params are read-only")

    def __repr__(self) -> str:
        return f"Params({self._data!r})"

    def __reduce__(self) -> tuple[type[Params], tuple[dict[str, Any]]]:
        return Params, (self._data,)


@dataclass(frozen=True)
class DownSpec:
    """When something is down: link outages or device availability (a registered process)."""

    process: str
    params: Params  # the section's keys, for the registered process
    random: bool  # the process draws from the device's own stream
    lose_in_flight: bool  # what is on the wire when it goes down is lost (else it resumes)


@dataclass(frozen=True)
class LossSpec:
    model: str  # a registered loss model; "none" loses nothing
    params: Params
    lossy: bool  # the model loses something (and so draws from the link's stream)
    max_retries: int
    retry_s: float  # the sender's wait after a lost attempt (null resolved: two latencies + 200 ms)


@dataclass(frozen=True)
class TraceSpec:
    path: str
    format: str
    bin_ms: float | None
    random_phase: bool  # each device starts at a random point of the trace (else at its start)
    end: str  # loop, hold or stop


@dataclass(frozen=True)
class SharedSpec:
    """A segment shared by a class's devices (an access point, a cell), in groups of `group_size`."""

    bits_per_s: float
    group_size: int | None  # None or 0: one segment for the whole class
    fifo: bool  # first come first served (else max-min fair)


@dataclass(frozen=True)
class LinkSpec:
    direction: str  # uplink or downlink
    capacity: str  # a registered capacity model (net/capacity_models.py)
    params: Params  # the link section's keys, for the capacity model
    bits_per_s: float  # the constant capacity; math.inf: unlimited
    latency_s: float
    trace: TraceSpec | None
    outages: DownSpec
    loss: LossSpec
    shared: SharedSpec | None
    packet_header_bytes: int
    mss_bytes: int
    random: bool  # some part draws from the link's own stream (phase, outages, loss or capacity)


@dataclass(frozen=True)
class EnergySpec:
    radio: str
    tx_nj_per_bit: float
    rx_nj_per_bit: float
    compute_w: float
    compute_nj_per_flop: float  # nan: compute energy is compute_w x busy time


@dataclass(frozen=True)
class ClassSpec:
    name: str
    devices: range
    seed: int
    planner: Planner  # its arrivals and shift over the shared workload
    profile: DeviceProfile
    uplink: LinkSpec
    downlink: LinkSpec
    availability: DownSpec
    energy: EnergySpec
    reset_on_segment: bool  # the reset protocol: back to the source state at each new segment
    # exact host speed-ups (fleet.batch_across_devices, fleet.predict_ahead), decided for the class
    merge_forward: bool  # merge the forwards of its devices predicting at one instant
    predict_ahead: int  # a batch-1 device predicts up to this many samples in one pass (0: off)


@dataclass(frozen=True)
class UploadSpec:
    encoding: str = "png"
    jpeg_quality: int = 90
    budget_bytes: int | None = None
    budget_window_s: float = 60.0
    downscale: float = 1.0
    queue_capacity: int | None = 1024  # None: unbounded
    drop_policy: str = "tail"
    expire_s: float | None = None  # uploads waiting longer are discarded (the staleness gate)


@dataclass(frozen=True)
class CloudPlan:
    chunk_size: int = 32
    replay_min: int = 256
    replay_batch: int = 96
    replay_only_batch: int = 128
    refresh_every: int = 1
    refresh_codec: str = "float32"  # models/codecs.py
    refresh_topk: float = 0.1  # the topk codec's share of each tensor
    backlog_hint: bool = False  # refreshes carry the device's backlog (the backpressure policy)


@dataclass(frozen=True)
class CloudSpec:
    gpus: int
    scheduler: str  # a registered GPU scheduling policy (schedulers.py)
    profile: DeviceProfile
    ingress_bits_per_s: float | None  # None: no shared ingress
    egress_bits_per_s: float | None
    foundation: nn.Module
    foundation_spec: ModelSpec
    config: CloudConfig
    plan: CloudPlan
    replay_capacity: int
    shared_replay: bool  # one replay buffer for every device (else one each)
    shared_foundation: bool  # one foundation learner for every device (else a copy each)
    answer_bytes: int  # the inference worker's answer to one upload


@dataclass(frozen=True)
class RunSpec:
    seed: int
    horizon_s: float  # duration and drain
    torch_device: torch.device
    workload: Workload
    edge_model: nn.Module  # norm layers converted; shared by every device
    edge_spec: ModelSpec
    method: Method
    classes: tuple[ClassSpec, ...]
    upload: UploadSpec
    cloud: CloudSpec | None  # None: the method uses no cloud
    protocol: dict[str, Any]  # what a reported number must carry (summary.json)
    cloud_gpus: int  # the cloud's hardware as the summary reports it, also when the method leaves it idle
    cloud_active_w: float
