"""Build the simulated world from a Scenario and run it.

    Workload + plans -> EdgeDevice x N -> uplinks -> CloudWorker x N (shared Cloud) -> downlinks
One edge backbone and one foundation model are shared by all devices; each device carries only
its norm state. The run advances simulated time in slices so a progress bar can follow it.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import simpy
import torch

from cemasim.assembly import build_model, build_workload, check_outputs, cloud_config, pick_device, profile_of
from cemasim.methods import build_method
from cemasim.methods.optim import Learner
from cemasim.methods.policies import Gate
from cemasim.methods.replay import ReplayBuffer
from cemasim.models import norm
from cemasim.models.cost import FlopCounter
from cemasim.models.profiles import DeviceProfile
from cemasim.net.capacity import DownIntervals
from cemasim.net.radio import RADIOS
from cemasim.scenario import Scenario
from cemasim.scenario.classes import DeviceClass, device_classes
from cemasim.sim.ahead import PredictAhead
from cemasim.sim.cloud_workers import Cloud, CloudPlan
from cemasim.sim.edge import CloudInferenceDevice, CrossDeviceBatcher, EdgeCost, EdgeDevice, UploadPolicy
from cemasim.sim.link_factory import DEVICE_OFF, LinkFactory, off_intervals
from cemasim.sim.records import Recorder
from cemasim.sim.wiring import wiring
from cemasim.workload import Planner, domain_table, plan_streams


@dataclass
class SimResult:
    recorder: Recorder
    sim_time_s: float
    wall_time_s: float
    events: int
    cloud_busy_s: float
    gpus: int
    compute_device: str
    protocol: dict
    cloud_active_w: float = 0.0


def device_row(d: int, device_class: str, view, profile: DeviceProfile, off: DownIntervals, horizon_s: float) -> dict:
    """The devices table: who the device is and its energy parameters."""
    energy = view.energy
    radio = RADIOS.get(energy.radio)
    return {
        "device": d,
        "device_class": device_class,
        "profile": profile.name,
        "radio": radio.name,
        "tx_nj_per_bit": radio.tx_nj_per_bit if energy.tx_nj_per_bit is None else energy.tx_nj_per_bit,
        "rx_nj_per_bit": radio.rx_nj_per_bit if energy.rx_nj_per_bit is None else energy.rx_nj_per_bit,
        "compute_w": profile.active_w if energy.compute_w is None else energy.compute_w,
        "compute_nj_per_flop": math.nan if energy.compute_nj_per_flop is None else energy.compute_nj_per_flop,
        "available_s": horizon_s - off.down_time(0.0, horizon_s),
    }


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a fleet is built: it only adds live objects, and every
    collection would walk all of them again (a quarter of the build time at 20,000 devices). After
    it, they go straight to the oldest generation (freeze, then unfreeze: two list splices), where
    the collector would move them only after walking them all twice, the first time at the first
    allocation after the build; they stay collectable there."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        if enabled:
            gc.enable()


class Fleet:
    """Everything one run needs, wired together; `run()` executes it."""

    def __init__(self, sc: Scenario):
        self.sc = sc
        self.torch_device = pick_device(sc.compute_device)
        torch.manual_seed(sc.seed)  # nothing should draw from it; belt and braces for library code
        self.workload, self._mask = build_workload(sc)
        edge_model, self.edge_spec = build_model(sc, "edge", self.torch_device, self.workload, self._mask)
        check_outputs(self.edge_spec, self.workload, self._mask, "edge")
        self.edge_model = norm.convert(edge_model)
        self.method = build_method(sc, self.edge_spec.num_classes)
        ids = domain_table(sc)
        self.workload.domains = list(ids)
        self.recorder = Recorder(domains=list(ids))
        self.env = simpy.Environment()
        self.edge_flops = FlopCounter(self.edge_model, self.edge_spec.input_shape)  # one count, edge and cloud
        self._costs: dict[str, EdgeCost] = {}
        self.cloud_profile = profile_of(sc.cloud.profile, "cloud")
        # the selection policy that gates this method's uploads (None: the paper's selection, nothing gated)
        gate = self.method.new_gate()
        self.gate: type[Gate] | None = type(gate) if gate is not None else None
        self.cloud = self._build_cloud() if self.method.uses_cloud else None
        self.source_state = self.method.source_state(self.edge_model)
        self.devices: list[EdgeDevice] = []
        self.shared_replay = ReplayBuffer(sc.cloud.replay_capacity) if sc.cloud.replay_scope == "shared" else None
        policy = UploadPolicy(sc.upload.encoding, sc.upload.jpeg_quality, sc.upload.budget_bytes,
                              sc.upload.budget_window_s, sc.upload.downscale)
        horizon = sc.duration_s + sc.drain_s
        links = LinkFactory(self.env, sc, horizon)
        self.network = links.network
        with gc_paused():
            for cls in device_classes(sc):
                planner, streams = Planner(cls.view, self.workload, ids), plan_streams(cls.view.seed, cls.devices)
                for position, (d, rngs) in enumerate(zip(cls.devices, streams, strict=True)):
                    self.devices.append(self._device(cls, position, d, planner, links, policy, horizon, rngs))
        self.n_samples = sum(dev.batches.n_samples for dev in self.devices)
        self.batcher = CrossDeviceBatcher(self.env, self.edge_model, self.torch_device) \
            if sc.fleet.batch_across_devices \
            else None
        for dev in self.devices:
            dev.batcher = self.batcher
            if sc.fleet.predict_ahead and CrossDeviceBatcher.accepts(dev) and dev.batches.max_batch_size() == 1:
                dev.ahead = PredictAhead(sc.fleet.predict_ahead)

    def cloud_side(self) -> Cloud:
        """The cloud, for the wiring of a method that has a cloud worker."""
        assert self.cloud is not None, "this method has no cloud worker"
        return self.cloud

    def learner(self, shared: bool = False) -> Learner:
        """The source norm state, initialised by the method when it adapts: a fresh copy, or with `shared`
        (a device that never writes it in place) the fleet's own tensors (100,000 copies are 430 MB)."""
        learner = Learner(dict(self.source_state) if shared else {n: t.clone() for n, t in self.source_state.items()})
        if self.method.adapter is not None:  # an adapter on the edge, or its step offloaded to the cloud
            learner = self.method.init_learner(learner, self.edge_model, self._clean_images)
        return learner

    def _clean_images(self, n: int) -> torch.Tensor:
        """The first n clean images of the dataset (EATA's Fisher information)."""
        return self.workload.clean_images(n).to(self.torch_device)

    def _device(self, cls: DeviceClass, position: int, d: int, planner: Planner, links: LinkFactory,
                policy: UploadPolicy, horizon: float, streams: tuple) -> EdgeDevice:
        """Device `d` of class `cls`: its plan (samples missed while off), links, cloud worker and cost."""
        sc, view = self.sc, cls.view
        off = off_intervals(view, sc.seed, d, horizon)
        batches, missed = planner.plan(d, off, streams)
        self.recorder.missed += [(d, float(t), DEVICE_OFF) for t in missed]
        inbox, uplink = simpy.Store(self.env), None
        if self.cloud is not None:
            cloud_inbox = simpy.Store(self.env)
            uplink = links.build("uplink", view, d, position, cls.name, off, cloud_inbox, sc.upload.queue_capacity,
                                 sc.upload.drop_policy,
                                 expire_s=sc.selection.max_delay_s if self.gate and self.gate.expires_uploads else None)
            downlink = links.build("downlink", view, d, position, cls.name, off, inbox)
            wiring(self.method).build_worker(self, d, cloud_inbox, downlink)
        cost = self._edge_cost(view)
        self.recorder.devices.append(device_row(d, cls.name, view, cost.profile, off, horizon))
        device_cls = wiring(self.method).device
        learner = self.learner(shared=not self.method.edge_writes_state)
        return device_cls(self.env, d, batches, self.workload, self.edge_model, learner, self.method, cost, uplink,
                          inbox, policy, self.recorder, self.torch_device,
                          reset_on_segment=view.shift.protocol == "reset",
                          source_state=self.source_state, off=off if len(off.starts) else None)

    def _edge_cost(self, view) -> EdgeCost:
        """FLOPs and simulated seconds of one edge call under the class's profile (cached per profile)."""
        key = str(view.fleet.profile)
        if key not in self._costs:
            kind, passes = self.method.edge_passes()
            mode = self.method.edge_stat_mode()[0]
            per_sample = passes * self.edge_flops.per_sample(kind, "batch" if mode in ("mixed", "ema", "tbr") else mode)
            self._costs[key] = EdgeCost(per_sample, profile_of(view.fleet.profile, "fleet"))
        return self._costs[key]

    def _build_cloud(self) -> Cloud:
        sc = self.sc
        foundation, f_spec = build_model(sc, "foundation", self.torch_device, self.workload, self._mask)
        check_outputs(f_spec, self.workload, self._mask, "foundation")
        foundation = norm.convert(foundation)
        cfg = cloud_config(sc, self.edge_spec.num_classes)
        plan = CloudPlan(sc.cloud.chunk_size, sc.cloud.replay_min, sc.cloud.replay_batch, sc.cloud.replay_only_batch,
                         sc.cloud.refresh_every, sc.cloud.refresh_codec, sc.cloud.refresh_topk,
                         backlog_hint=bool(self.gate and self.gate.reads_backlog))
        f_flops = FlopCounter(foundation, f_spec.input_shape)
        return Cloud(self.env, sc.cloud.gpus, self.cloud_profile, foundation, self.edge_model,
                     f_flops, self.edge_flops, cfg, plan, self.recorder, self.torch_device, sc.cloud.scheduler)

    def run(self, progress: Callable[[float, int], None] | None = None,
            report_every_s: float | None = None) -> SimResult:
        """Run to quiescence, at most duration_s + drain_s; `progress(sim_time, predicted)` now and then."""
        start = time.perf_counter()
        horizon = self.sc.duration_s + self.sc.drain_s
        report_every_s = report_every_s or horizon / 200
        next_report, events, env = report_every_s, 0, self.env
        while env.peek() <= horizon:  # stepping by hand: no leftover `until` events, exact event count
            env.step()
            events += 1
            if progress is not None and env.now >= next_report:
                progress(env.now, self.predicted())
                next_report = env.now + report_every_s
        for device in self.devices:
            if isinstance(device, CloudInferenceDevice):
                device.finalize()
        if progress is not None:
            progress(env.now, self.predicted())
        wall = time.perf_counter() - start
        return SimResult(self.recorder, float(env.now), wall, events,
                         self.cloud.busy_s if self.cloud else 0.0, self.sc.cloud.gpus,
                         str(self.torch_device), self.protocol(),
                         self.cloud_profile.active_w)

    def protocol(self) -> dict:
        """What a reported number must carry: data, shift protocol, order, metric, weights."""
        sc = self.sc
        return {
            "data": self.workload.source.protocol,
            "shift_protocol": sc.shift.protocol,
            "fleet_order": sc.shift.order,
            "label_shift": sc.shift.label_shift,
            "metric": "online top-1 accuracy over every prediction (higher is better)",
            "edge_model": sc.models.edge,
            "edge_weights": sc.models.edge_weights or "shipped zoo weights / library cache",
            "foundation_model": sc.models.foundation,
            "foundation_weights": sc.models.foundation_weights or "shipped zoo weights / library cache",
        }

    def predicted(self) -> int:
        return self.recorder.predicted
