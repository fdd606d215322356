"""Edge device actor: predict each test batch with the parameters held at that moment, select
samples, encode and enqueue them on the uplink; apply refreshes as they arrive (never older).

    stream -> [infer: cost-model seconds] -> predict (real torch) -> select -> encode
           -> [gate: selection policy on what the device observes of its uplink] -> uplink
    downlink -> inbox -> apply refresh (version must increase; a backlog hint goes to the gate)
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy
import torch
from torch import nn

from cemasim.data.encoding import encode, to_uint8
from cemasim.errors import NonFiniteError
from cemasim.methods import Method
from cemasim.methods.inference import grouped_edge_logits
from cemasim.methods.losses import entropy
from cemasim.methods.optim import Learner, hyper_parameters, step_failed
from cemasim.methods.policies import Gate, LinkView, RateMeter
from cemasim.models import codecs, grouped, norm
from cemasim.models.profiles import DeviceProfile
from cemasim.net.capacity import DownIntervals
from cemasim.sim.link import Link
from cemasim.sim.mailbox import Mailbox
from cemasim.sim.messages import REPORT_BYTES, Answer, BatchReport, Refresh, Upload
from cemasim.sim.records import Recorder
from cemasim.specs import UploadSpec
from cemasim.workload import DevicePlan, TestBatch, Workload

if TYPE_CHECKING:
    from cemasim.sim.ahead import PredictAhead


@dataclass(frozen=True)
class EdgeCost:
    """Simulated time and FLOPs of the device's model calls (cost model, see models/cost.py)."""

    flops_per_sample: float
    profile: DeviceProfile

    def flops(self, n: int) -> float:
        return n * self.flops_per_sample

    def seconds(self, n: int) -> float:
        return 0.0 if self.flops_per_sample == 0 else self.profile.seconds(self.flops(n))


class EdgeDevice:
    def __init__(self, env: simpy.Environment, index: int, batches: DevicePlan, workload: Workload,
                 model: nn.Module, learner: Learner, method: Method, cost: EdgeCost,
                 uplink: Link | None, inbox: Mailbox, policy: UploadSpec, recorder: Recorder,
                 compute_device: torch.device, reset_on_segment: bool = False,
                 source_state: norm.NormState | None = None, off: DownIntervals | None = None):
        self.env, self.index, self.batches, self.workload = env, index, batches, workload
        self.reset_on_segment, self.segment = reset_on_segment, batches.first_segment()
        # read-only, shared by the fleet: 10,000 devices must not each hold a copy
        self.source_state = source_state if source_state is not None else \
            {n: t.clone() for n, t in learner.state.items()}
        self.batcher: CrossDeviceBatcher | None = None
        self.ahead: PredictAhead | None = None  # fleet.predict_ahead (set by the fleet where it applies)
        self.model, self.learner, self.method = model, learner, method
        self.cost, self.uplink, self.inbox, self.policy = cost, uplink, inbox, policy
        self.off = off  # when the device is off (None: always on)
        self.recorder, self.compute_device = recorder, compute_device
        self.version, self.version_created_s = 0, 0.0
        self.selection_state: Any = method.new_selection_state(index)
        self.stats_unsent = method.sends_stats  # tbr: the first batch sets the statistics; the cloud needs them
        self._budget_window, self._budget_used = -1, 0
        # selection policy (methods/policies.py): kept across segment resets (it follows the network)
        self.gate: Gate | None = method.new_gate() if uplink is not None else None
        # the gate's view of the uplink: only a gated device measures its uploads (two deques, 1.5 kB)
        self.meter: RateMeter | None = RateMeter() if self.gate is not None else None
        self._in_flight: deque[Upload] | None = deque() if self.gate is not None else None
        env.process(self.run())
        inbox.handler = self.apply  # refreshes (or answers) are applied as the downlink delivers them

    @property
    def state(self) -> norm.NormState:
        """The norm tensors this device predicts with now."""
        return self.learner.state

    def run(self):
        for batch in self.batches:
            if batch.ready_s > self.env.now:
                yield self.env.timeout(batch.ready_s - self.env.now)
            if self.off is not None and self.off.up_at(self.env.now) > self.env.now:
                # off when the batch closes: it is lost with the device's memory, like samples arriving while off
                self.recorder.missed += [(self.index, float(t), "device_off") for t in batch.arrival_s]
                continue
            start = self.env.now
            yield self.env.timeout(self.cost.seconds(len(batch)))
            self.recorder.compute.append((self.index, start, self.env.now, self.cost.flops(len(batch))))
            if self.batcher is not None:
                yield self.batcher.submit(self, batch)
            else:
                self.predict(batch)

    def prepare(self, batch: TestBatch) -> torch.Tensor:
        """The batch's images, after a segment reset when one is due."""
        self.reset_if_due(batch)
        return self.workload.materialize(batch)

    def reset_if_due(self, batch: TestBatch) -> None:
        if self.reset_on_segment and batch.segment != self.segment:
            self.reset(batch.segment)

    def predict(self, batch: TestBatch) -> None:
        if self.ahead is not None:
            x, logits = self.ahead.take(self, batch)
        else:
            x = self.prepare(batch)
            try:
                logits = self.method.predict(self.model, self.learner, self.state, x.to(self.compute_device))
            except NonFiniteError as exc:  # an edge adapter's step
                raise self.step_failed(exc) from None
        self.finish(batch, x, logits)

    def step_failed(self, exc: NonFiniteError) -> NonFiniteError:
        """`exc` again, naming the edge step, this device, the time and the adapter's hyper-parameters."""
        name = self.method.name
        return step_failed(exc, f"{name} edge step", self.index, self.env.now, hyper_parameters(self.method.adapter),
                           f"method.lr and the method.* keys of {name}")

    def finish(self, batch: TestBatch, x: torch.Tensor | None, logits: torch.Tensor) -> None:
        """Select, record and upload, given this batch's logits (its images `x` may be None on a device
        without an uplink: nothing reads them there)."""
        keep = self.method.upload_mask(logits, self.selection_state)
        encoded = None
        if self.gate is not None and bool(keep.any()):
            assert x is not None
            keep, encoded = self.gate_uploads(x, logits, keep)
        e_max = self.method.recorded_threshold(self.selection_state)
        self.recorder.predictions(batch, self.env.now, logits.argmax(1).cpu().numpy(), entropy(logits).cpu().numpy(),
                                  keep.cpu().numpy(), self.version, self.version_created_s,
                                  float("nan") if e_max is None else e_max)
        if self.method.adapts_on_edge:
            self.version, self.version_created_s = self.learner.steps, self.env.now
        if self.method.uses_cloud and self.uplink is not None:
            assert x is not None
            self.upload(batch, x, keep.cpu(), encoded)

    def gate_uploads(self, x: torch.Tensor, logits: torch.Tensor, keep: torch.Tensor):
        """The selected samples the policy's gate lets travel, and their encodings (sizes are what the
        gate budgets, so the selected samples are encoded first)."""
        assert self.gate is not None
        rows = keep.nonzero().squeeze(1)
        sizes, images = self.encode(x[rows.to(x.device)])
        scores = self.method.upload_scores(logits[rows], self.selection_state)
        chosen = self.gate.choose(self.link_view(), scores.detach().cpu().numpy(), np.asarray(sizes))
        gated = torch.zeros_like(keep)
        gated[rows[torch.from_numpy(chosen).to(rows.device)]] = True
        return gated, ([sizes[i] for i in chosen], images[torch.from_numpy(chosen)])

    def encode(self, x: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """(payload sizes, images as the cloud decodes them) of samples to upload."""
        p = self.policy
        return encode(to_uint8(x), p.encoding, p.jpeg_quality, p.downscale)

    def link_view(self) -> LinkView:
        """What the device observes of its uplink now: bytes ahead of a new message and the goodput of
        its own finished uploads."""
        assert self.uplink is not None and self.meter is not None and self._in_flight is not None
        while self._in_flight and (self._in_flight[0].dropped or not np.isnan(self._in_flight[0].tx_end_s)):
            up = self._in_flight.popleft()
            if not up.dropped:
                self.meter.observe(up.size_bytes, up.tx_start_s, up.tx_end_s)
        return LinkView(self.env.now, self.uplink.backlog_bytes, self.meter.rate_bps())

    def reset(self, segment: int) -> None:
        """Reset protocol: a new segment starts from the source model (the version never decreases)."""
        self.segment = segment
        self.learner.reset(self.source_state)
        self.selection_state = self.method.new_selection_state(self.index)
        self.stats_unsent = self.method.sends_stats
        self.version_created_s = self.env.now

    def upload(self, batch: TestBatch, x: torch.Tensor, keep: torch.Tensor, encoded=None) -> None:
        """Encode (unless the gate did) and enqueue the kept samples, then the batch report."""
        if self.stats_unsent:
            self.send_stats(batch)
        rows = keep.nonzero().squeeze(1)
        sizes, images = encoded or self.encode(x[rows])
        for i, (row, size) in enumerate(zip(rows.tolist(), sizes, strict=True)):
            up = Upload(self.index, size, sample_id=batch.first_sample_id + row, batch_seq=batch.seq, images=images,
                        image_row=i, segment=self.segment)
            self.recorder.uploads.append(up)
            if self.within_budget(size):
                self.send(up)
                if self._in_flight is not None:
                    self._in_flight.append(up)
            else:
                up.enqueued_s, up.dropped = self.env.now, "budget"
                up.release()
        report = BatchReport(self.index, REPORT_BYTES, batch_seq=batch.seq, n_selected=len(rows), segment=self.segment)
        self.recorder.reports.append(report)
        self.send(report)

    def send(self, message: Upload | BatchReport) -> None:
        assert self.uplink is not None, "only devices of methods with a cloud worker send"
        self.uplink.send(message)

    def send_stats(self, batch: TestBatch) -> None:
        """One control message with the running statistics this device's first batch set (tbr), ahead of
        its uploads on the same FIFO link, so the cloud's student starts from them as the released code's
        shared edge model does."""
        stats = norm.cast_state(norm.stats_of(self.state), torch.float32)
        report = BatchReport(self.index, REPORT_BYTES + norm.state_bytes(stats), batch_seq=batch.seq,
                             segment=self.segment, kind="stats", stats=stats)
        self.recorder.reports.append(report)
        self.send(report)
        self.stats_unsent = False

    def within_budget(self, size: int) -> bool:
        if self.policy.budget_bytes is None:
            return True
        window = int(self.env.now // self.policy.budget_window_s)
        if window != self._budget_window:
            self._budget_window, self._budget_used = window, 0
        if self._budget_used + size > self.policy.budget_bytes:
            return False
        self._budget_used += size
        return True

    def apply(self, refresh: Refresh) -> None:
        if self.gate is not None and refresh.backlog >= 0:
            self.gate.hint(self.env.now, refresh.backlog)  # the hint counts even when the state is stale
        if refresh.version <= self.version or refresh.segment < self.segment:
            refresh.dropped = "stale"
            refresh.release()
            return
        assert refresh.payload is not None, "a refresh is applied once"
        codecs.apply(self.learner.state, refresh.payload, self.compute_device)
        if refresh.on_applied is not None:
            refresh.on_applied(refresh.payload)
        self.version, self.version_created_s = refresh.version, refresh.created_s
        refresh.applied_s = self.env.now
        refresh.release()  # the device holds it now


class CloudInferenceDevice(EdgeDevice):
    """Uploads every sample and computes nothing; a sample's prediction is the cloud's answer, counted
    when it arrives. Samples never answered (dropped uploads, end of run) count as wrong (pred -1)."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.waiting: dict[int, tuple[TestBatch, int]] = {}  # sample_id -> (batch, row)

    def predict(self, batch: TestBatch) -> None:
        x = self.workload.materialize(batch)
        for row in range(len(batch)):
            self.waiting[batch.first_sample_id + row] = (batch, row)
        if self.uplink is not None:
            self.upload(batch, x, torch.ones(len(batch), dtype=torch.bool))

    def apply(self, answer: Answer) -> None:  # type: ignore[override]  # its downlink carries answers
        for sample_id, pred, ent in zip(answer.sample_ids, answer.preds, answer.entropies, strict=True):
            batch, row = self.waiting.pop(sample_id)
            self.recorder.predictions(batch, self.env.now, np.array([pred]), np.array([ent]), np.array([True]),
                                      0, 0.0, float("nan"), rows=np.array([row]))
        answer.applied_s = self.env.now

    def finalize(self) -> None:
        """Record the samples that never got an answer."""
        for _sample_id, (batch, row) in sorted(self.waiting.items()):
            self.recorder.predictions(batch, self.env.now, np.array([-1]), np.array([float("nan")]),
                                      np.array([True]), 0, 0.0, float("nan"), rows=np.array([row]))
        self.waiting.clear()


# samples in one merged forward: larger merged tensors are mapped fresh from the OS on every call (page
# faults in each layer); of 32 to 256, 64 and 128 were fastest for batch-1 devices on the 2-core VM
MAX_MERGED_SAMPLES = 64


class CrossDeviceBatcher:
    """Merges the edge forward passes of devices whose inference ends at the same simulated instant
    into one grouped call (shared layers once, norm state per device): the same floats as one call per
    device (models/grouped.py), less host time.

    Submissions at time t are flushed by a zero-delay event queued behind every event already due
    at t. Only forward-only methods with eval or test-batch statistics, on a model whose layers
    `grouped.mergeable` knows, are merged.
    """

    def __init__(self, env: simpy.Environment, model: nn.Module, compute_device: torch.device,
                 max_merged_samples: int = MAX_MERGED_SAMPLES):
        self.env, self.model, self.compute_device = env, model, compute_device
        self.max_merged_samples = max_merged_samples
        self.pending: list[tuple[EdgeDevice, TestBatch, simpy.Event]] = []
        self.calls = self.merged = 0
        self.own_events = 0  # a flush per instant, a wake-up per submission: not the simulation's (Fleet.run)

    @staticmethod
    def accepts(device: EdgeDevice) -> bool:
        return type(device) is EdgeDevice and device.method.merges_forward and grouped.mergeable(device.model) \
            and grouped.holds_norm_tensors_only(device.model, device.state)

    def submit(self, device: EdgeDevice, batch: TestBatch) -> simpy.Event:
        done = self.env.event()
        self.own_events += 1
        if not self.pending:
            self.env.timeout(0).callbacks.append(self.flush)
            self.own_events += 1
        self.pending.append((device, batch, done))
        return done

    def flush(self, _event: simpy.Event) -> None:
        pending, self.pending = self.pending, []
        groups: dict[tuple[int, str], list] = {}
        for item in pending:
            device, batch, _ = item
            groups.setdefault((len(batch), device.method.edge_stat_mode()[0]), []).append(item)
        for (n, mode), items in groups.items():
            per_call = max(1, self.max_merged_samples // n)  # huge merged batches fall out of cache
            for start in range(0, len(items), per_call):
                self._run(items[start:start + per_call], mode)

    def _run(self, items: list, mode: str) -> None:
        for device, batch, _ in items:
            device.reset_if_due(batch)
        x = items[0][0].workload.materialize_many([batch for _, batch, _ in items])  # one load for all
        xs = x.split(len(items[0][1]))
        if len(items) == 1:
            device, batch, done = items[0]
            logits: list[torch.Tensor] | torch.Tensor = [
                device.method.predict(self.model, device.learner, device.state, x.to(self.compute_device))]
        else:
            logits = grouped_edge_logits(self.model, [d.state for d, _, _ in items],
                                         x.view(len(items), -1, *x.shape[1:]).to(self.compute_device), mode)
            self.calls += 1
            self.merged += len(items)
        for (device, batch, done), images, z in zip(items, xs, logits, strict=True):
            device.finish(batch, images, z)
            done.succeed()
