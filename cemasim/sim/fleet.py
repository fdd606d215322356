"""Build the simulated world from a run's spec (assembly.assemble) and run it.

    Workload + plans -> EdgeDevice x N -> uplinks -> CloudWorker x N (shared Cloud) -> downlinks
One edge backbone and one foundation model are shared by all devices; each device carries only
its norm state. The run advances simulated time in slices so a progress bar can follow it.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import simpy
import torch

from cemasim.methods.optim import Learner
from cemasim.methods.replay import ReplayBuffer
from cemasim.models.cost import FlopCounter
from cemasim.models.profiles import DeviceProfile
from cemasim.net.capacity import DownIntervals
from cemasim.sim.ahead import PredictAhead
from cemasim.sim.cloud_workers import Cloud
from cemasim.sim.edge import CloudInferenceDevice, CrossDeviceBatcher, EdgeCost, EdgeDevice
from cemasim.sim.inbox import Inbox
from cemasim.sim.link_factory import DEVICE_OFF, LinkFactory, off_intervals
from cemasim.sim.mailbox import Mailbox
from cemasim.sim.records import Recorder
from cemasim.sim.wiring import wiring
from cemasim.specs import ClassSpec, CloudSpec, RunSpec
from cemasim.workload import plan_streams


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


def device_row(d: int, cls: ClassSpec, off: DownIntervals, horizon_s: float) -> tuple:
    """The devices table's row (records.DEVICE_COLUMNS): who the device is and its energy parameters."""
    energy = cls.energy
    return (d, cls.name, cls.profile.name, energy.radio, energy.tx_nj_per_bit, energy.rx_nj_per_bit, energy.compute_w,
            energy.compute_nj_per_flop, horizon_s - off.down_time(0.0, horizon_s))


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
    """Everything one run needs, wired together from its spec (assembly.assemble); `run()` executes it."""

    def __init__(self, spec: RunSpec):
        self.spec = spec
        self.torch_device, self.workload, self.method = spec.torch_device, spec.workload, spec.method
        self.edge_model, self.edge_spec = spec.edge_model, spec.edge_spec
        self.recorder = Recorder(domains=list(self.workload.domains))
        self.env = simpy.Environment()
        self.edge_flops = FlopCounter(self.edge_model, self.edge_spec.input_shape)  # one count, edge and cloud
        self._costs: dict[int, EdgeCost] = {}
        self.cloud = self._build_cloud(spec.cloud) if spec.cloud is not None else None
        self.source_state = self.method.source_state(self.edge_model)
        self.devices: list[EdgeDevice] = []
        cloud = spec.cloud
        self.shared_replay = ReplayBuffer(cloud.replay_capacity) if cloud is not None and cloud.shared_replay else None
        links = LinkFactory(self.env, spec.seed, spec.horizon_s, spec.cloud)
        self.network = links.network
        with gc_paused():
            for cls in spec.classes:
                streams = plan_streams(cls.seed, cls.devices)
                for position, (d, rngs) in enumerate(zip(cls.devices, streams, strict=True)):
                    self.devices.append(self._device(cls, position, d, links, rngs))
        self.n_samples = sum(dev.batches.n_samples for dev in self.devices)
        self.recorder.expect_predictions(self.n_samples)
        merging = any(cls.merge_forward for cls in spec.classes)
        self.batcher = CrossDeviceBatcher(self.env, self.edge_model, self.torch_device) if merging else None
        for cls in spec.classes:  # the speed-ups, where they give the plain run's floats
            if not (cls.merge_forward or cls.predict_ahead):
                continue
            for dev in self.devices[cls.devices.start:cls.devices.stop]:
                if not CrossDeviceBatcher.accepts(dev):  # decided once: nothing it reads changes
                    continue
                if cls.merge_forward:
                    dev.batcher = self.batcher
                if cls.predict_ahead and dev.batches.max_batch_size() == 1:
                    dev.ahead = PredictAhead(cls.predict_ahead)

    def cloud_side(self) -> Cloud:
        """The cloud, for the wiring of a method that has a cloud worker."""
        assert self.cloud is not None, "this method has no cloud worker"
        return self.cloud

    def cloud_spec(self) -> CloudSpec:
        assert self.spec.cloud is not None, "this method has no cloud worker"
        return self.spec.cloud

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

    def _device(self, cls: ClassSpec, position: int, d: int, links: LinkFactory, streams: tuple) -> EdgeDevice:
        """Device `d` of class `cls`: its plan (samples missed while off), links, cloud worker and cost."""
        spec = self.spec
        off = off_intervals(cls.availability, spec.seed, d, spec.horizon_s)
        batches, missed = cls.planner.plan(d, off, streams)
        self.recorder.missed += [(d, float(t), DEVICE_OFF) for t in missed]
        inbox, uplink = Mailbox(self.env), None
        if self.cloud is not None:
            cloud_inbox = Inbox(self.env)
            uplink = links.build(cls.uplink, d, position, cls.name, off, cloud_inbox, spec.upload.queue_capacity,
                                 spec.upload.drop_policy, expire_s=spec.upload.expire_s)
            downlink = links.build(cls.downlink, d, position, cls.name, off, inbox)
            wiring(self.method).build_worker(self, d, cloud_inbox, downlink)
        cost = self._edge_cost(cls.profile)
        self.recorder.devices.append(device_row(d, cls, off, spec.horizon_s))
        device_cls = wiring(self.method).device
        learner = self.learner(shared=not self.method.edge_writes_state)
        return device_cls(self.env, d, batches, self.workload, self.edge_model, learner, self.method, cost, uplink,
                          inbox, spec.upload, self.recorder, self.torch_device,
                          reset_on_segment=cls.reset_on_segment,
                          source_state=self.source_state, off=off if len(off.starts) else None)

    def _edge_cost(self, profile: DeviceProfile) -> EdgeCost:
        """FLOPs and simulated seconds of one edge call under a class's profile (cached per profile)."""
        key = id(profile)  # assembly makes one profile object per distinct profile
        if key not in self._costs:
            kind, passes = self.method.edge_passes()
            mode = self.method.edge_stat_mode()[0]
            per_sample = passes * self.edge_flops.per_sample(kind, "batch" if mode in ("mixed", "ema", "tbr") else mode)
            self._costs[key] = EdgeCost(per_sample, profile)
        return self._costs[key]

    def _build_cloud(self, c: CloudSpec) -> Cloud:
        f_flops = FlopCounter(c.foundation, c.foundation_spec.input_shape)
        return Cloud(self.env, c.gpus, c.profile, c.foundation, self.edge_model, f_flops, self.edge_flops, c.config,
                     c.plan, self.recorder, self.torch_device, c.scheduler)

    def run(self, progress: Callable[[float, int], None] | None = None,
            report_every_s: float | None = None) -> SimResult:
        """Run to quiescence, at most duration_s + drain_s; `progress(sim_time, predicted)` now and then."""
        start = time.perf_counter()
        horizon = self.spec.horizon_s
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
        if self.batcher is not None:  # a host speed-up's own events are not the simulation's
            events -= self.batcher.own_events
        return SimResult(self.recorder, float(env.now), wall, events,
                         self.cloud.busy_s if self.cloud else 0.0, self.spec.cloud_gpus,
                         str(self.torch_device), self.spec.protocol, self.spec.cloud_active_w)

    def predicted(self) -> int:
        return self.recorder.predicted
