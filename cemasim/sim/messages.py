"""What travels over the links. Each message records its own journey (enqueue, wire, arrival),
so the results tables are read straight off the messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

from cemasim.models.codecs import Payload
from cemasim.models.norm import NormState

REPORT_BYTES = 16  # device id, batch seq, count: the end-of-batch control message
NAN = float("nan")


@dataclass(eq=False, slots=True)
class Message:
    device: int
    size_bytes: int
    enqueued_s: float = NAN
    tx_start_s: float = NAN
    tx_end_s: float = NAN
    received_s: float = NAN
    dropped: str = ""  # drop cause, "" when not dropped
    droppable: bool = True  # control messages (reports, refreshes) bypass the queue bound
    segment: int = 0  # shift segment it belongs to (reset protocol: older segments are stale)
    attempts: int = 0  # transmissions started (retransmissions after loss included)
    wire_bytes: int = 0  # bytes put on the wire over all attempts (radio energy)

    def release(self) -> None:
        """Nothing will read the payload again (used, applied or dropped): let it go, keep the journey
        for the records. A long run or a large fleet would otherwise hold every image and state sent."""


@dataclass(eq=False, slots=True)
class Upload(Message):
    """One selected sample, as the cloud will decode it: row `image_row` of `images`, the uint8
    [N, C, H, W] tensor its batch's uploads share (a view a sample would cost 600 bytes a million times)."""

    sample_id: int = -1
    batch_seq: int = -1
    trained_s: float = NAN  # when the cloud job that used it as a new sample ended (NaN: never used)
    images: Tensor | None = field(default=None, repr=False)
    image_row: int = field(default=0, repr=False)

    @property
    def image(self) -> Tensor | None:
        """The sample's image, uint8 [C, H, W] (None once released)."""
        return None if self.images is None else self.images[self.image_row]

    def release(self) -> None:
        self.images = None


@dataclass(eq=False, slots=True)
class BatchReport(Message):
    """Sent after a test batch's uploads: the cloud's cue for its per-batch work (replay, refresh)."""

    batch_seq: int = -1
    n_selected: int = 0
    droppable: bool = False
    kind: str = "batch"  # "stats": norm_mode tbr's one-off running statistics, sent before the first uploads
    stats: NormState | None = field(default=None, repr=False)

    def release(self) -> None:
        self.stats = None


@dataclass(eq=False, slots=True)
class Refresh(Message):
    """Refreshed edge norm state for one device, encoded by the scenario's refresh codec."""

    droppable: bool = False
    version: int = 0
    created_s: float = NAN
    uploads_sent_max_s: float = NAN  # latest wire-exit time of the uploads it was trained on
    backlog: int = -1  # the device's uploads waiting at the cloud when it was sent (backpressure); -1: none
    applied_s: float = NAN
    payload: Payload | None = field(default=None, repr=False)
    # the device's acknowledgement (instant): the cloud's copy of what the device holds follows it
    on_applied: Callable[[Payload], None] | None = field(default=None, repr=False)

    def release(self) -> None:
        self.payload, self.on_applied = None, None


@dataclass(eq=False, slots=True)
class Answer(Message):
    """Cloud inference results for one batch's uploads (prediction and entropy per sample)."""

    droppable: bool = False
    sample_ids: list[int] = field(default_factory=list)
    preds: list[int] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    applied_s: float = NAN
