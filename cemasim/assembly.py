"""Scenario -> the objects a run is made of: torch device, workload, models, method, cloud
hyper-parameters, hardware profiles, and (`assemble`) the typed RunSpec the simulator receives.
This is the one boundary between the scenario and the simulator: every unit conversion and every
"null means unlimited" happens here, once. Shared by the simulator (sim/fleet.py) and the
sequential reference loop (oracle.py); nothing here knows about simulated time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import overload

import numpy as np
import torch

from cemasim.errors import ConfigError
from cemasim.methods import build_method
from cemasim.methods.cema_cloud import NORM_MODES, CloudConfig
from cemasim.methods.registry import ln_c
from cemasim.models import norm
from cemasim.models.profiles import DeviceProfile, profile_from
from cemasim.models.resolve import build as resolve_model
from cemasim.net.capacity_models import CAPACITY_MODELS
from cemasim.net.intervals import AVAILABILITY, OUTAGES
from cemasim.net.loss import LOSS_MODELS
from cemasim.net.radio import RADIOS
from cemasim.registry import Registry
from cemasim.scenario import Scenario
from cemasim.scenario.classes import DeviceClass, device_classes
from cemasim.specs import (
    ClassSpec,
    CloudPlan,
    CloudSpec,
    DownSpec,
    EnergySpec,
    LinkSpec,
    LossSpec,
    Params,
    RunSpec,
    SharedSpec,
    TraceSpec,
    UploadSpec,
)
from cemasim.workload import Planner, Workload, domain_table, open_source


def pick_device(choice: str, what: str = "compute_device") -> torch.device:
    """The torch device for `auto`, `cpu` or `cuda` (`what` names the key or flag in the error)."""
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{what} cuda: no CUDA device is available to this torch build/machine (use cpu or auto)",
                          source=what)
    return torch.device(choice)


def build_workload(sc: Scenario) -> tuple[Workload, np.ndarray | None]:
    """The dataset as a Workload, and the output class mask (ImageNet-R) when masking applies."""
    source = open_source(sc)
    mask = source.class_mask if sc.data.mask_outputs else None
    labels = source.labels
    if mask is not None:  # the masked model's outputs are positions in the mask
        position = np.full(int(max(mask.max(), labels.max())) + 1, -1)
        position[mask] = np.arange(len(mask))
        labels = position[labels]
    return Workload(source, [], sc.seed, labels), mask


def build_model(sc: Scenario, which: str, device: torch.device, workload: Workload, mask: np.ndarray | None):
    """(model, spec) for models.edge or models.foundation with its weights choice; the spec's input
    shape is the dataset's (FLOPs are counted on the images the model really sees)."""
    weights = sc.models[f"{which}_weights"]
    classes = workload.source.num_classes if weights == "random" else None  # a random head fits the data
    model, spec = resolve_model(sc.models[which], weights, classes, device, mask)
    return model, replace(spec, input_shape=workload.source.image_shape)


def check_outputs(spec, workload: Workload, mask: np.ndarray | None, which: str) -> None:
    expected = len(mask) if mask is not None else workload.source.num_classes
    if spec.num_classes != expected:
        raise ConfigError(f"models.{which}: '{spec.name}' has {spec.num_classes} outputs but "
                          f"{workload.source.name} has {expected} classes")


def cloud_config(sc: Scenario, num_classes: int) -> CloudConfig:
    """The cloud's learning hyper-parameters from the scenario (E0 in nats, from cloud.e0: the loss
    weighting is its own key, so a sweep of selection.e_max changes only which samples travel)."""
    from cemasim.methods.presets import cloud_lrs

    c = sc.cloud
    foundation_lr, distill_lr = cloud_lrs(sc)
    student, foundation, teacher = NORM_MODES[sc.method.norm_mode]
    return CloudConfig(e0=c.e0 * ln_c(num_classes), foundation_lr=foundation_lr,
                       distill_lr=distill_lr, momentum=c.momentum, alpha=c.alpha, beta=c.beta, gamma=c.gamma,
                       temperature=c.temperature, student_mode=student, foundation_mode=foundation,
                       teacher_mode=teacher)


def profile_of(spec, name: str) -> DeviceProfile:
    """A profile from a name, a file or an inline mapping (a Scenario view)."""
    return profile_from(spec.to_dict() if isinstance(spec, Scenario) else spec, name)


def assemble(sc: Scenario) -> RunSpec:
    """The typed spec of one run: models built, method and workload made, each device class resolved
    (links in bit/s and seconds, arrivals, availability, energy) and the cloud's plan set. The order
    of the builds is the simulator's of old: a random-weights model draws nothing from torch's
    global generator, but the order keeps every draw where it was."""
    torch_device = pick_device(sc.compute_device)
    torch.manual_seed(sc.seed)  # nothing should draw from it; belt and braces for library code
    workload, mask = build_workload(sc)
    edge_model, edge_spec = build_model(sc, "edge", torch_device, workload, mask)
    check_outputs(edge_spec, workload, mask, "edge")
    edge_model = norm.convert(edge_model)
    method = build_method(sc, edge_spec.num_classes)
    classes = device_classes(sc)
    ids = domain_table(sc, classes)
    workload.domains = list(ids)
    gate = method.new_gate()  # the selection policy gating this method's uploads (None: the paper's)
    cloud_profile = profile_of(sc.cloud.profile, "cloud")  # the summary reports its power also when idle
    cloud = cloud_spec(sc, torch_device, workload, mask, edge_spec.num_classes, gate, cloud_profile) \
        if method.uses_cloud else None
    up = sc.upload
    upload = UploadSpec(up.encoding, up.jpeg_quality, up.budget_bytes, up.budget_window_s, up.downscale,
                        up.queue_capacity, up.drop_policy,
                        sc.selection.max_delay_s if gate is not None and gate.expires_uploads else None)
    profiles: dict[str, DeviceProfile] = {}  # one profile object per distinct spec: per-profile costs are cached
    fast = Speedups(torch_device.type == "cpu", sc.fleet.devices, 4 * math.prod(workload.source.image_shape),
                    method.uses_cloud)
    specs = tuple(class_spec(cls, workload, ids, profiles, fast) for cls in classes)
    return RunSpec(seed=sc.seed, horizon_s=sc.duration_s + sc.drain_s, torch_device=torch_device, workload=workload,
                   edge_model=edge_model, edge_spec=edge_spec, method=method, classes=specs, upload=upload,
                   cloud=cloud, protocol=protocol(sc, workload), cloud_gpus=sc.cloud.gpus,
                   cloud_active_w=cloud_profile.active_w)


@dataclass(frozen=True)
class Speedups:
    """What `auto` decides the exact host speed-ups from (docs/usage.md#speed-ups). Both give the
    floats of the plain run where the simulator applies them (tests/test_simulation.py); that is
    tested on the CPU only, so on CUDA auto leaves them off."""

    cpu: bool
    devices: int
    image_bytes: int  # one image as the model sees it (float32)
    uploads: bool  # the method's devices upload, so a window of predictions ahead holds its images

    AHEAD = 64  # 1.9x less CPU than one pass a sample for 10,000 batch-1 devices (benchmarks/README.md)
    AHEAD_BUDGET_BYTES = 256 * 2**20  # the images a fleet's windows may hold

    def merge_forward(self, fleet: Scenario, arrivals: Scenario) -> bool:
        """Merge where devices predict one sample at the same instants: aligned constant arrivals."""
        if fleet.batch_across_devices != "auto":
            return bool(fleet.batch_across_devices)
        return self.cpu and arrivals.process == "constant" and arrivals.aligned and arrivals.batch_size == 1

    def predict_ahead(self, fleet: Scenario, merged: bool) -> int:
        """A batch-1 device's window (the fleet applies it only to batch-1 devices of forward-only methods)."""
        if fleet.predict_ahead != "auto":
            return int(fleet.predict_ahead)
        if not self.cpu or merged:
            return 0
        if not self.uploads:
            return self.AHEAD
        return min(self.AHEAD, self.AHEAD_BUDGET_BYTES // (self.devices * self.image_bytes))


def cloud_spec(sc: Scenario, torch_device: torch.device, workload: Workload, mask: np.ndarray | None,
               num_classes: int, gate, profile: DeviceProfile) -> CloudSpec:
    c = sc.cloud
    foundation, f_spec = build_model(sc, "foundation", torch_device, workload, mask)
    check_outputs(f_spec, workload, mask, "foundation")
    plan = CloudPlan(c.chunk_size, c.replay_min, c.replay_batch, c.replay_only_batch, c.refresh_every,
                     c.refresh_codec, c.refresh_topk, backlog_hint=bool(gate is not None and gate.reads_backlog))
    return CloudSpec(gpus=c.gpus, scheduler=c.scheduler, profile=profile,
                     ingress_bits_per_s=bits_per_s(c.ingress_mbps), egress_bits_per_s=bits_per_s(c.egress_mbps),
                     foundation=norm.convert(foundation), foundation_spec=f_spec,
                     config=cloud_config(sc, num_classes), plan=plan, replay_capacity=c.replay_capacity,
                     shared_replay=c.replay_scope == "shared", shared_foundation=c.foundation_scope == "shared",
                     answer_bytes=sc.method.answer_bytes)


def class_spec(cls: DeviceClass, workload: Workload, ids: dict, profiles: dict[str, DeviceProfile],
               fast: Speedups) -> ClassSpec:
    """One device class as its devices see it: the class's sections merged over the top level."""
    view = cls.view
    key = str(view.fleet.profile)
    if key not in profiles:
        profiles[key] = profile_of(view.fleet.profile, "fleet")
    profile = profiles[key]
    merge = fast.merge_forward(view.fleet, view.arrivals)
    return ClassSpec(name=cls.name, devices=cls.devices, seed=view.seed, planner=Planner(view, workload, ids),
                     profile=profile, uplink=link_spec(view, "uplink"), downlink=link_spec(view, "downlink"),
                     availability=down_spec(view.availability, AVAILABILITY),
                     energy=energy_spec(view.energy, profile), reset_on_segment=view.shift.protocol == "reset",
                     merge_forward=merge, predict_ahead=fast.predict_ahead(view.fleet, merge))


@overload
def bits_per_s(mbps: float) -> float: ...
@overload
def bits_per_s(mbps: None) -> None: ...
def bits_per_s(mbps: float | None) -> float | None:
    """Mbit/s -> bit/s, the only place the simulator's rates are converted (None stays None)."""
    return None if mbps is None else mbps * 1e6


def link_spec(view: Scenario, direction: str) -> LinkSpec:
    """One direction of a device's link: null bandwidth is unlimited (math.inf), milliseconds are seconds,
    a null capacity model is the trace when one is given, else the constant rate."""
    s = view[direction]
    loss = s.loss
    retry_ms = loss.retry_timeout_ms if loss.retry_timeout_ms is not None else 2 * s.latency_ms + 200.0
    loss_spec = LossSpec(loss.model, Params(loss.to_dict()), LOSS_MODELS.get(loss.model) is not None,
                         loss.max_retries, retry_ms / 1e3)
    trace = None if s.trace is None else TraceSpec(s.trace, s.trace_format, s.trace_bin_ms,
                                                    s.trace_phase == "random", s.trace_end)
    shared = None if s.shared_mbps is None else SharedSpec(bits_per_s(s.shared_mbps), s.group_size,
                                                           s.shared_discipline == "fifo")
    outages = down_spec(s.outages, OUTAGES)
    capacity = s.capacity or ("trace" if trace is not None else "constant")
    random = (trace is not None and trace.random_phase) or outages.random or loss_spec.lossy \
        or bool(CAPACITY_MODELS.meta(capacity).get("random"))
    rate = bits_per_s(s.bandwidth_mbps)
    return LinkSpec(direction=direction, capacity=capacity, params=Params(s.capacity_params.to_dict()),
                    bits_per_s=math.inf if rate is None else rate, latency_s=s.latency_ms / 1e3, trace=trace,
                    outages=outages, loss=loss_spec, shared=shared, packet_header_bytes=s.packet_header_bytes,
                    mss_bytes=s.mss_bytes, random=random)


def down_spec(section: Scenario, kinds: Registry) -> DownSpec:
    """An outages or availability section: its process, with what the registry declares of it."""
    return DownSpec(section.process, Params(section.to_dict()), bool(kinds.meta(section.process).get("random")),
                    section.in_flight == "lost")


def energy_spec(energy: Scenario, profile: DeviceProfile) -> EnergySpec:
    """A null per-bit figure is the radio preset's; a null compute power the profile's."""
    radio = RADIOS.get(energy.radio)
    return EnergySpec(radio.name,
                      radio.tx_nj_per_bit if energy.tx_nj_per_bit is None else energy.tx_nj_per_bit,
                      radio.rx_nj_per_bit if energy.rx_nj_per_bit is None else energy.rx_nj_per_bit,
                      profile.active_w if energy.compute_w is None else energy.compute_w,
                      math.nan if energy.compute_nj_per_flop is None else energy.compute_nj_per_flop)


def protocol(sc: Scenario, workload: Workload) -> dict:
    """What a reported number must carry: data, shift protocol, order, metric, weights."""
    return {
        "data": workload.source.protocol,
        "shift_protocol": sc.shift.protocol,
        "fleet_order": sc.shift.order,
        "label_shift": sc.shift.label_shift,
        "metric": "online top-1 accuracy over every prediction (higher is better)",
        "edge_model": sc.models.edge,
        "edge_weights": sc.models.edge_weights or "shipped zoo weights / library cache",
        "foundation_model": sc.models.foundation,
        "foundation_weights": sc.models.foundation_weights or "shipped zoo weights / library cache",
    }
