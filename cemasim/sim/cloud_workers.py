"""Cloud actors: one worker per device consumes that device's uploads in arrival order.

CEMA (CemaWorker):
    uplink -> inbox -> replay buffer + pending chunk
        chunk full  -> GPU job: foundation step + distillation (chunk + replay)
        batch report-> GPU job: replay-only distillation if the batch completed no chunk
                    -> every K reports: refresh (snapshot of the device's student) -> downlink
Offloaded TTA (OffloadWorker): batch report -> GPU job: the method's step on the batch's uploads -> refresh
Cloud inference (InferenceWorker): batch report -> GPU job: foundation forward -> answers -> downlink

GPUs are a pool shared by all workers, granted by the scheduling policy (sim/scheduler.py);
a job's duration comes from the cost model and its learning step runs (real torch) when the job
completes. The foundation model is shared (its norm state too, unless cloud.foundation_scope is
device).
"""

from __future__ import annotations

from collections.abc import Callable

import simpy
import torch
from torch import nn

from cemasim.errors import NonFiniteError
from cemasim.methods.cema_cloud import (
    DISTILL_USES,
    FOUNDATION_USES,
    CloudConfig,
    distill_step,
    foundation_step,
    to_float,
)
from cemasim.methods.inference import foundation_answers
from cemasim.methods.optim import Learner, check_finite, hyper_parameters, step_failed
from cemasim.methods.policies import HINT_BYTES
from cemasim.methods.replay import ReplayBuffer
from cemasim.methods.tta import Adapter
from cemasim.models import codecs, norm
from cemasim.models.cost import FlopCounter
from cemasim.models.profiles import DeviceProfile
from cemasim.sim.inbox import Inbox
from cemasim.sim.link import Link
from cemasim.sim.messages import REPORT_BYTES, Answer, BatchReport, Refresh, Upload
from cemasim.sim.records import CloudJob, Recorder
from cemasim.sim.scheduler import GpuPool
from cemasim.specs import CloudPlan


def image_of(upload: Upload) -> torch.Tensor:
    """An upload's encoded-and-decoded image (uint8); every upload the cloud receives carries one."""
    image = upload.image
    assert image is not None
    return image


def payload_of(upload: Upload) -> tuple[torch.Tensor, int]:
    """(the images its batch's uploads share, its row): what the replay buffer keeps, by reference."""
    assert upload.images is not None
    return upload.images, upload.image_row


class Cloud:
    """Shared cloud resources: GPUs, the foundation model and its learner, the cost model."""

    def __init__(self, env: simpy.Environment, gpus: int, profile: DeviceProfile, foundation: nn.Module,
                 edge_model: nn.Module, foundation_flops: FlopCounter, edge_flops: FlopCounter, cfg: CloudConfig,
                 plan: CloudPlan, recorder: Recorder, compute_device: torch.device, scheduler: str = "fifo"):
        self.env, self.profile = env, profile
        self.workers: dict[int, DeviceWorker] = {}
        self.gpu = GpuPool(env, gpus, scheduler, staleness=lambda d: env.now - self.workers[d].last_refresh_s,
                           backlog=lambda d: self.workers[d].backlog())
        self.foundation, self.edge_model, self.cfg, self.plan = foundation, edge_model, cfg, plan
        f_state = norm.initial_state(foundation, norm.adaptable_names(foundation, cfg.foundation_stats))
        self.foundation_learner = Learner(norm.unset_stats(f_state) if cfg.foundation_stats else f_state)
        self.recorder, self.compute_device = recorder, compute_device
        self.busy_s = 0.0
        self._settle: simpy.Event | None = None
        f_bwd, f_fwd = foundation_flops.per_sample("backward"), foundation_flops.per_sample("forward")
        e_bwd = edge_flops.per_sample("backward", "batch" if cfg.student_mode == "batch" else "train")
        self._chunk_flops = (f_bwd, f_fwd, e_bwd)
        self.foundation_flops = foundation_flops

    def settled(self) -> simpy.Event:
        """Fires at this instant once every other event due now has run: uploads arriving at the very
        instant a step starts (an ideal network delivers a whole batch at once) count as received."""
        if self._settle is None or self._settle.triggered:
            self._settle = self.env.event()
            self.env.timeout(0).callbacks.append(self._check_settled)
        return self._settle

    def _check_settled(self, _event: simpy.Event) -> None:
        if self.env.peek() <= self.env.now:  # more is due now: look again behind it
            self.env.timeout(0).callbacks.append(self._check_settled)
        else:
            assert self._settle is not None
            self._settle.succeed()

    def chunk_s(self, n_new: int, n_distill: int) -> float:
        f_bwd, _f_fwd, _e_bwd = self._chunk_flops
        return self.profile.seconds(n_new * f_bwd) + self.replay_s(n_distill)

    def replay_s(self, n: int) -> float:
        _, f_fwd, e_bwd = self._chunk_flops
        return self.profile.seconds(n * f_fwd) + self.profile.seconds(n * e_bwd)


class DeviceWorker:
    """The cloud's side of one device: its inbox, learner and downlink. Subclasses say what an
    upload and an end-of-batch report trigger."""

    def __init__(self, cloud: Cloud, device: int, inbox: Inbox, student: Learner, downlink: Link,
                 source_state: dict | None = None):
        self.cloud, self.env, self.device = cloud, cloud.env, device
        self.inbox, self.student, self.downlink = inbox, student, downlink
        # read-only and shared across workers when given (reset protocol)
        self.source_state = source_state if source_state is not None else \
            {n: t.clone() for n, t in student.state.items()}
        self.segment = 0
        self.reports_seen, self.refreshed_steps = 0, 0
        self.uploads_sent_max_s = float("-inf")
        self.last_refresh_s = 0.0  # when the device's parameters were last sent (scheduling by staleness)
        self.queued = 0  # uploads of this device's job while it waits for the GPU (scheduling by backlog)
        self.held = self.source_held()  # what the device holds, for codecs that encode against it (topk)
        cloud.workers[device] = self
        self.env.process(self.run())

    def run(self):
        while True:
            msg = yield self.inbox.get()
            if msg.segment > self.segment:
                self.segment = msg.segment
                self.reset()
            if isinstance(msg, Upload):
                yield from self.on_upload(msg)
            elif msg.kind == "stats":
                self.on_stats(msg.stats)
                msg.release()  # the student holds them now
            else:
                yield from self.on_report(msg)

    def on_stats(self, stats: dict) -> None:
        """tbr: the device's running statistics as its first batch set them; the student starts there."""
        for name, tensor in stats.items():
            self.student.state[name] = tensor.to(self.cloud.compute_device, copy=True)
            if self.held is not None:  # the student's statistics move in place: the copy is its own
                self.held[name] = tensor.to(self.cloud.compute_device, copy=True)

    def source_held(self) -> norm.NormState | None:
        """The device's state at a segment's start (the source), shared until a refresh replaces a tensor;
        None when the codec does not encode against it."""
        return dict(self.source_state) if codecs.needs_base(self.cloud.plan.refresh_codec) else None

    def on_upload(self, upload: Upload):
        yield from ()

    def backlog(self) -> int:
        """Uploads of this device waiting at the cloud (scheduling by backlog): pending, and those
        waiting for the GPU."""
        return self.waiting_for_gpu() + len(self.pending_uploads())

    def waiting_for_gpu(self) -> int:
        """Uploads that arrived and wait for the GPU: in the inbox (the worker is in a job) and in its job
        waiting for a grant; not the partial chunk that waits for more uploads (backpressure's hint)."""
        return sum(isinstance(m, Upload) for m in self.inbox.items) + self.queued

    def pending_uploads(self) -> list[Upload]:
        return []

    def on_report(self, report: BatchReport):
        yield from ()

    def reset(self) -> None:
        """Reset protocol: the device's cloud state returns to the source (step counts stay monotone), and so
        does the device's."""
        self.student.reset(self.source_state)
        self.held = self.source_held()

    def planned_gpu_job(self, kind: str, plan: Callable[[], tuple[int, float]], queued: int, settle: bool = False):
        """A GPU job whose work is decided when the GPU is granted: plan() -> (samples, seconds); with
        `settle`, after every other event due at that instant has run (see Cloud.settled). Until then
        the `queued` uploads it will use count in the device's backlog."""
        decided: list[tuple[int, float]] = []
        self.queued = queued

        def duration() -> float:
            self.queued = 0
            decided.append(plan())
            return decided[0][1]

        requested, start, _ = yield from self.cloud.gpu.job(self.device, duration,
                                                            settle=self.cloud.settled if settle else None)
        samples, duration_s = decided[0]
        self.cloud.busy_s += duration_s
        self.cloud.recorder.jobs.append(CloudJob(self.device, kind, requested, start, self.env.now, samples))

    def consumed(self, uploads: list[Upload]) -> None:
        """`uploads` were trained on (or answered) by the job that ends now; their images are not read
        again (the replay buffer holds its own copy)."""
        for u in uploads:
            u.trained_s = self.env.now
            u.release()
        self.uploads_sent_max_s = max([self.uploads_sent_max_s] + [u.tx_end_s for u in uploads])

    def maybe_refresh(self) -> None:
        """Every `refresh_every` reports, send the student if it changed since the last refresh."""
        self.reports_seen += 1
        if self.reports_seen % self.cloud.plan.refresh_every == 0 and self.student.steps > self.refreshed_steps:
            self.send_refresh()

    def step_failed(self, exc: NonFiniteError, step: str, config: object, names: tuple[str, ...] | None,
                    keys: str) -> NonFiniteError:
        """`exc` again, naming this device, the time, the step and the hyper-parameters (`names` of `config`)."""
        return step_failed(exc, step, self.device, self.env.now, hyper_parameters(config, names), keys)

    def send_refresh(self) -> None:
        plan = self.cloud.plan
        payload = codecs.encode(self.student.state, plan.refresh_codec, plan.refresh_topk, self.held)
        try:  # the steps check what they write; statistics written by forwards and a lossy cast are checked here
            check_finite(None, payload.values())
        except NonFiniteError as exc:
            raise step_failed(exc, f"refresh ({plan.refresh_codec})", self.device, self.env.now, {},
                              "cloud.refresh_codec (float16 holds magnitudes up to 65504) and the learning rates "
                              "(cloud.distill_lr, method.lr)") from None
        hint = plan.backlog_hint
        refresh = Refresh(self.device, payload.size_bytes + (HINT_BYTES if hint else 0),
                          version=self.student.steps, created_s=self.env.now,
                          uploads_sent_max_s=self.uploads_sent_max_s, payload=payload, segment=self.segment,
                          backlog=self.waiting_for_gpu() if hint else -1,
                          on_applied=self.applied if self.held is not None else None)
        self.refreshed_steps, self.last_refresh_s = self.student.steps, self.env.now
        self.cloud.recorder.refreshes.append(refresh)
        self.downlink.send(refresh)

    def applied(self, payload: codecs.Payload) -> None:
        """The device applied a refresh (its instant acknowledgement): the copy of what it holds follows."""
        assert self.held is not None
        codecs.apply(self.held, payload, self.cloud.compute_device)


class CemaWorker(DeviceWorker):
    """CEMA's cloud: chunks of uploads drive foundation + distillation steps, with replay."""

    def __init__(self, cloud: Cloud, device: int, inbox: Inbox, student: Learner, downlink: Link,
                 replay: ReplayBuffer, teacher: Learner, generator: Callable[[], torch.Generator],
                 shared_replay: bool = False, own_teacher: bool = False, source_state: dict | None = None,
                 student_borrowed: bool = False):
        """`generator` makes the replay draws' stream, on the first draw: a torch generator holds 2.7 KB,
        which a device that never reaches `replay_min` uploads need not pay. `student_borrowed`: the
        student holds the fleet's source tensors until its first distillation step copies them (a worker
        that never distils holds no copy)."""
        self.replay, self.teacher, self._make_generator = replay, teacher, generator
        self.student_borrowed = student_borrowed
        self._generator: torch.Generator | None = None
        self.shared_replay = shared_replay
        self.teacher_source = {n: t.clone() for n, t in teacher.state.items()} if own_teacher else None
        self.pending: list[Upload] = []
        self.chunk_done = False
        self.in_replay: set[int] | None = None  # ids of inbox uploads already in the replay buffer (causal rule)
        super().__init__(cloud, device, inbox, student, downlink, source_state)

    @property
    def generator(self) -> torch.Generator:
        if self._generator is None:
            self._generator = self._make_generator()
        return self._generator

    def pending_uploads(self) -> list[Upload]:
        return self.pending

    def reset(self) -> None:
        super().reset()  # the student gets its own copy of the source
        self.student_borrowed = False
        self.pending, self.chunk_done, self.in_replay = [], False, None
        self.replay = ReplayBuffer(self.replay.capacity) if not self.shared_replay else self.replay
        if self.teacher_source is not None:  # a per-device foundation model resets with its device
            self.teacher.reset(self.teacher_source)

    def on_upload(self, upload: Upload):
        if self.in_replay is not None and id(upload) in self.in_replay:
            self.in_replay.discard(id(upload))
        else:
            self.replay.keep(*payload_of(upload))
        self.pending.append(upload)
        if len(self.pending) >= self.cloud.plan.chunk_size:
            yield from self.chunk_step()

    def absorb_arrived(self) -> None:
        """Causal replay: a step draws from every upload the cloud has received when it starts, so
        uploads still waiting in the inbox (same segment) join the buffer first. With an ideal network
        a whole batch has arrived by then, which is the released loop (its infer appends the batch's
        uploads to the history before the chunk loop)."""
        for msg in self.inbox.items:
            if msg.segment != self.segment:
                break  # a newer segment resets the buffer first
            if isinstance(msg, Upload):
                if self.in_replay is None:  # made when needed: 200 bytes a worker
                    self.in_replay = set()
                if id(msg) not in self.in_replay:
                    self.replay.keep(*payload_of(msg))
                    self.in_replay.add(id(msg))

    def chunk_step(self):
        plan, cloud = self.cloud.plan, self.cloud
        chunk, self.pending = self.pending[: plan.chunk_size], self.pending[plan.chunk_size:]
        new = torch.stack([image_of(u) for u in chunk])
        drawn: list[torch.Tensor] = []

        def at_start() -> tuple[int, float]:
            self.absorb_arrived()
            drawn.append(self.replay.sample(plan.replay_batch, self.generator)
                         if len(self.replay) >= plan.replay_min else new[:0])
            n = len(new) + len(drawn[0])
            return n, cloud.chunk_s(len(new), n)

        yield from self.planned_gpu_job("chunk", at_start, queued=len(chunk), settle=True)
        dev = cloud.compute_device
        try:
            foundation_step(cloud.foundation, self.teacher, to_float(new, dev), cloud.cfg)
        except NonFiniteError as exc:
            raise self.step_failed(exc, "foundation step", cloud.cfg, *FOUNDATION_USES) from None
        self.distill(to_float(torch.cat([new, drawn[0]]), dev))
        self.consumed(chunk)
        self.chunk_done = True

    def on_report(self, report: BatchReport):
        plan, cloud = self.cloud.plan, self.cloud
        if not self.chunk_done and plan.replay_only_batch > 0 and len(self.replay) > plan.replay_min:
            drawn: list[torch.Tensor] = []

            def at_start() -> tuple[int, float]:
                self.absorb_arrived()
                drawn.append(self.replay.sample(plan.replay_only_batch, self.generator))
                return len(drawn[0]), cloud.replay_s(len(drawn[0]))

            yield from self.planned_gpu_job("replay", at_start, queued=0, settle=True)
            self.distill(to_float(drawn[0], cloud.compute_device))
        self.chunk_done = False
        self.maybe_refresh()

    def distill(self, x: torch.Tensor) -> None:
        """One distillation step of the student on x (the first one copies a borrowed student)."""
        if self.student_borrowed:
            self.student.state = {n: t.clone() for n, t in self.student.state.items()}
            self.student_borrowed = False
        cloud = self.cloud
        try:
            distill_step(cloud.edge_model, self.student, cloud.foundation, self.teacher, x, cloud.cfg)
        except NonFiniteError as exc:
            raise self.step_failed(exc, "distillation", cloud.cfg, *DISTILL_USES) from None


class OffloadWorker(DeviceWorker):
    """A TTA method run by the cloud for the device: one adaptation step per test batch on the
    samples of that batch that arrived, then a refresh."""

    def __init__(self, cloud: Cloud, device: int, inbox: Inbox, student: Learner, downlink: Link,
                 adapter: Adapter, step_s: Callable[[int], float], source_state: dict | None = None,
                 method: str = "tta"):
        self.adapter, self.step_s, self.method = adapter, step_s, method
        self.batch: list[Upload] = []
        super().__init__(cloud, device, inbox, student, downlink, source_state)

    def on_upload(self, upload: Upload):
        self.batch.append(upload)
        yield from ()

    def pending_uploads(self) -> list[Upload]:
        return self.batch

    def on_report(self, report: BatchReport):
        if self.batch:
            uploads, self.batch = self.batch, []
            yield from self.planned_gpu_job("adapt", lambda: (len(uploads), self.step_s(len(uploads))),
                                            queued=len(uploads))
            x = to_float(torch.stack([image_of(u) for u in uploads]), self.cloud.compute_device)
            try:
                self.adapter.step(self.cloud.edge_model, self.student, x)
            except NonFiniteError as exc:
                raise self.step_failed(exc, f"offloaded {self.method} step", self.adapter, None,
                                       f"method.lr and the method.* keys of {self.method}") from None
            self.consumed(uploads)
        self.maybe_refresh()


class InferenceWorker(DeviceWorker):
    """Cloud inference: the frozen foundation model answers each batch's uploads."""

    def __init__(self, cloud: Cloud, device: int, inbox: Inbox, downlink: Link, answer_bytes: int,
                 infer_s: Callable[[int], float]):
        self.answer_bytes, self.infer_s = answer_bytes, infer_s
        self.batch: list[Upload] = []
        super().__init__(cloud, device, inbox, Learner({}), downlink)

    def on_upload(self, upload: Upload):
        self.batch.append(upload)
        yield from ()

    def on_report(self, report: BatchReport):
        if not self.batch:
            return
        uploads, self.batch = self.batch, []
        yield from self.planned_gpu_job("infer", lambda: (len(uploads), self.infer_s(len(uploads))),
                                        queued=len(uploads))
        x = to_float(torch.stack([image_of(u) for u in uploads]), self.cloud.compute_device)
        self.consumed(uploads)
        preds, entropies = foundation_answers(self.cloud.foundation, self.cloud.foundation_learner.state, x)
        answer = Answer(self.device, REPORT_BYTES + self.answer_bytes * len(uploads),
                        sample_ids=[u.sample_id for u in uploads], preds=preds, entropies=entropies)
        self.cloud.recorder.answers.append(answer)
        self.downlink.send(answer)
