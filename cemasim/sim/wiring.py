"""Which SimPy actors serve a method: the edge device class and the cloud worker named by the
method's `cloud_worker` (methods/method.py). A method with a new cloud part declares a new name
there and registers its pair here with `@wire(name, device=...)`; Fleet has no per-method code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from cemasim.methods import Method
from cemasim.methods.replay import ReplayBuffer
from cemasim.methods.tta_methods import TTA
from cemasim.rng import torch_generator
from cemasim.sim.cloud_workers import CemaWorker, InferenceWorker, OffloadWorker
from cemasim.sim.edge import CloudInferenceDevice, EdgeDevice
from cemasim.sim.inbox import Inbox
from cemasim.sim.link import Link

if TYPE_CHECKING:
    from cemasim.sim.fleet import Fleet

WorkerFactory = Callable[["Fleet", int, Inbox, Link], None]


@dataclass(frozen=True)
class Wiring:
    device: type[EdgeDevice]
    build_worker: WorkerFactory


WIRINGS: dict[str | None, Wiring] = {}


def _no_worker(fleet: Fleet, d: int, inbox: Inbox, downlink: Link) -> None:
    raise AssertionError("a method without a cloud worker has no uplink")


WIRINGS[None] = Wiring(EdgeDevice, _no_worker)


def wire(name: str, device: type[EdgeDevice] = EdgeDevice) -> Callable[[WorkerFactory], WorkerFactory]:
    """Register the cloud worker factory (and the edge device class) for `Method.cloud_worker == name`."""
    def register(factory: WorkerFactory) -> WorkerFactory:
        WIRINGS[name] = Wiring(device, factory)
        return factory

    return register


def wiring(method: Method) -> Wiring:
    return WIRINGS[method.cloud_worker]


@wire("cema")
def _cema(fleet: Fleet, d: int, inbox: Inbox, downlink: Link) -> None:
    """Foundation step + distillation into the device's student, replay buffer per device or shared."""
    spec, cloud = fleet.cloud_spec(), fleet.cloud_side()
    teacher = cloud.foundation_learner if spec.shared_foundation else cloud.foundation_learner.copy()
    CemaWorker(cloud, d, inbox, fleet.learner(shared=True), downlink,
               fleet.shared_replay or ReplayBuffer(spec.replay_capacity), teacher,
               partial(torch_generator, fleet.spec.seed, "replay", d), shared_replay=fleet.shared_replay is not None,
               own_teacher=not spec.shared_foundation, source_state=fleet.source_state,
               student_borrowed=True)


@wire("offload")
def _offload(fleet: Fleet, d: int, inbox: Inbox, downlink: Link) -> None:
    """The device's own TTA step, run by the cloud on its uploads."""
    cloud, method = fleet.cloud_side(), fleet.method
    assert isinstance(method, TTA) and method.adapter is not None
    per_sample = method.adapter_passes() * fleet.edge_flops.per_sample("backward", "batch")
    OffloadWorker(cloud, d, inbox, fleet.learner(), downlink, method.adapter,
                  lambda n: cloud.profile.seconds(n * per_sample), source_state=fleet.source_state, method=method.name)


@wire("inference", device=CloudInferenceDevice)
def _inference(fleet: Fleet, d: int, inbox: Inbox, downlink: Link) -> None:
    """The frozen foundation model answers every upload; the device computes nothing."""
    cloud = fleet.cloud_side()
    per_sample = cloud.foundation_flops.per_sample("forward", "eval")
    InferenceWorker(cloud, d, inbox, downlink, fleet.cloud_spec().answer_bytes,
                    lambda n: cloud.profile.seconds(n * per_sample))
