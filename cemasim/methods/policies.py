"""Selection policies that adapt to the link and the cloud (`selection.policy`), beyond the paper.

The paper's selection (methods/selection.py) picks a batch's *candidates*: the samples inside the
entropy band (E_min, E_max), with a fixed (`static`) or stream-following (`dynamic`) E_max. A
policy here is a *gate* after it: per batch, on what a device can observe itself, it decides
which candidates travel. Each gate ranks candidates by the method's score (entropy for CEMA:
within the reliable band, higher entropy = more informative, as S_low's reason says) and keeps
the best ones it allows; a gate that allows everything leaves the paper's selection unchanged.

    budget       bytes per window at a target (a fixed rate, or a fraction of the measured uplink
                 rate, times `window_s`), never more. State: the window's bytes so far, and a score
                 threshold at the quantile of recent candidate scores that spends what is left of
                 the window's budget evenly over the rest of the window.
    staleness    a candidate whose predicted queueing delay (bytes already waiting + its own, over the
                 measured uplink rate) exceeds `max_delay_s` is not sent. State: none beyond the
                 rate meter. (The link also discards uploads that waited longer, see sim/link.py.)
    backpressure refreshes carry the cloud's backlog for this device (its uploads that arrived and
                 wait for the GPU, not the partial chunk that waits for more uploads); above
                 `backlog_target` the device halves the share of candidates it sends, at or below
                 it adds `increase` back (AIMD). State: the share and recent candidate scores.

Pure numpy: the device (sim/edge.py) builds a `LinkView` of what it observes and calls the gate.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from cemasim.registry import Registry

HINT_BYTES = 4  # a refresh's backlog hint (uint32 uploads waiting)


@dataclass(frozen=True)
class PolicyConfig:
    name: str = "dynamic"
    budget_bytes_per_s: float | None = None  # budget: fixed target; None = link_fraction x measured rate
    link_fraction: float = 0.8  # budget: share of the measured uplink rate to use
    window_s: float = 60.0  # budget: the budget's window (windows start at multiples of it)
    max_delay_s: float = 10.0  # staleness: longest predicted queueing delay worth sending
    backlog_target: int = 8  # backpressure: uploads waiting at the cloud above which the device slows
    increase: float = 0.1  # backpressure: share added back per refresh below the target
    floor: float = 0.05  # backpressure: the share never falls below this
    history: int = 512  # candidate scores kept for the quantile thresholds


@dataclass(frozen=True)
class LinkView:
    """What a device knows of its uplink when it decides: the time, the bytes waiting or on the wire
    ahead of a new message, and the goodput its last uploads saw (None before any finished)."""

    now_s: float
    queued_bytes: int
    rate_bps: float | None


class RateMeter:
    """Uplink goodput the device measures on its own finished uploads: bits over wire time of the
    last `n` uploads (a sliding window, so a step in the link shows within `n` uploads)."""

    def __init__(self, n: int = 16):
        self.samples: deque[tuple[float, float]] = deque(maxlen=n)  # (bits, seconds on the wire)

    def observe(self, size_bytes: int, tx_start_s: float, tx_end_s: float) -> None:
        self.samples.append((8.0 * size_bytes, max(0.0, tx_end_s - tx_start_s)))

    def rate_bps(self) -> float | None:
        if not self.samples:
            return None
        bits = sum(b for b, _ in self.samples)
        seconds = sum(s for _, s in self.samples)
        return math.inf if seconds == 0 else bits / seconds


class Gate:
    """Keeps every candidate (the paper's selection). A gate declares what else the simulator does for it:
    `expires_uploads` (the uplink discards uploads that waited longer than max_delay_s) and
    `reads_backlog` (refreshes carry the cloud's backlog for the device, HINT_BYTES more)."""

    expires_uploads: ClassVar[bool] = False
    reads_backlog: ClassVar[bool] = False

    def __init__(self, cfg: PolicyConfig):
        self.cfg = cfg
        self.recent: deque[float] = deque(maxlen=cfg.history)  # candidate scores, for `threshold`

    def choose(self, view: LinkView, scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        """Indices (ascending) of the candidates to send, given their scores and encoded sizes."""
        return np.arange(len(scores))

    def hint(self, now_s: float, backlog: int) -> None:
        """The cloud's backlog for this device, carried by a refresh."""

    def threshold(self, share: float) -> float:
        """Score above which `share` of the recent candidates lie (-inf: all of them)."""
        if share >= 1.0 or not self.recent:
            return -math.inf
        return float(np.quantile(np.fromiter(self.recent, float), 1.0 - max(share, 0.0)))


class BudgetGate(Gate):
    def __init__(self, cfg: PolicyConfig):
        super().__init__(cfg)
        self.window, self.spent = -1, 0.0  # the current budget window (now // window_s) and its bytes
        self.last_s: float | None = None
        self.gap_s: float | None = None  # EMA of the time between decisions
        self.offered: float | None = None  # EMA of candidate bytes per decision

    def target_bytes_per_s(self, view: LinkView) -> float | None:
        if self.cfg.budget_bytes_per_s is not None:
            return self.cfg.budget_bytes_per_s
        return None if view.rate_bps is None else self.cfg.link_fraction * view.rate_bps / 8

    def choose(self, view: LinkView, scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        self.recent.extend(scores.tolist())
        rate = self.target_bytes_per_s(view)
        if rate is None or math.isinf(rate):  # nothing measured yet, or no limit: the paper's selection
            return np.arange(len(scores))
        if self.last_s is not None:
            gap = view.now_s - self.last_s
            self.gap_s = gap if self.gap_s is None else 0.9 * self.gap_s + 0.1 * gap
        self.last_s = view.now_s
        offered = float(sizes.sum())
        self.offered = offered if self.offered is None else 0.9 * self.offered + 0.1 * offered
        window_s = self.cfg.window_s
        window = int(view.now_s // window_s)
        if window != self.window:
            self.window, self.spent = window, 0.0
        left = rate * window_s - self.spent  # with the target as measured now: a slower link cuts it at once
        # the share of candidates that spends what is left evenly over the rest of the window
        if self.gap_s is None or not self.offered:
            share = 1.0
        else:
            rest_s = max((window + 1) * window_s - view.now_s, 1e-9)
            # the window's last decision spends what is left, best first (no threshold to miss it by)
            share = math.inf if rest_s < 1.5 * self.gap_s else left / rest_s * max(self.gap_s, 1e-9) / self.offered
        tau = self.threshold(share)
        chosen = []
        for i in np.argsort(-scores, kind="stable"):
            if scores[i] < tau:
                break  # most informative first
            if sizes[i] > left:
                continue  # a smaller one may still fit
            left -= float(sizes[i])
            self.spent += float(sizes[i])
            chosen.append(i)
        return np.sort(np.array(chosen, dtype=int))


class StalenessGate(Gate):
    expires_uploads: ClassVar[bool] = True

    def choose(self, view: LinkView, scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        if view.rate_bps is None or math.isinf(view.rate_bps):
            return np.arange(len(scores))
        queued, chosen = float(view.queued_bytes), []
        for i in np.argsort(-scores, kind="stable"):
            if (queued + sizes[i]) * 8 / view.rate_bps > self.cfg.max_delay_s:
                break
            queued += float(sizes[i])
            chosen.append(i)
        return np.sort(np.array(chosen, dtype=int))


class BackpressureGate(Gate):
    reads_backlog: ClassVar[bool] = True

    def __init__(self, cfg: PolicyConfig):
        super().__init__(cfg)
        self.share = 1.0

    def hint(self, now_s: float, backlog: int) -> None:
        if backlog > self.cfg.backlog_target:
            self.share = max(self.cfg.floor, self.share / 2)
        else:
            self.share = min(1.0, self.share + self.cfg.increase)

    def choose(self, view: LinkView, scores: np.ndarray, sizes: np.ndarray) -> np.ndarray:
        self.recent.extend(scores.tolist())
        return np.flatnonzero(scores >= self.threshold(self.share))


# selection.policy: name -> the gate class (None: the paper's selection, nothing gated). `fixed_e_max`:
# E_max stays at selection.e_max whatever selection.dynamic_e_max says.
SELECTION_POLICIES: Registry[type[Gate] | None] = Registry("selection policy")
SELECTION_POLICIES.add("static", None, "the paper's selection with E_max fixed (as dynamic_e_max: false)",
                       fixed_e_max=True)
SELECTION_POLICIES.add("dynamic", None, "the paper's selection: E_max follows the stream")
SELECTION_POLICIES.add("budget", BudgetGate, "bytes per second at a target, spent on the highest scores")
SELECTION_POLICIES.add("staleness", StalenessGate, "not sent if the predicted queueing delay exceeds max_delay_s")
SELECTION_POLICIES.add("backpressure", BackpressureGate, "refreshes carry the cloud's backlog; the device sends "
                       "less above backlog_target (AIMD)")


def make_gate(cfg: PolicyConfig | None) -> Gate | None:
    """The device's gate for `cfg.name`; None for the paper's policies (nothing to gate)."""
    if cfg is None:
        return None
    gate = SELECTION_POLICIES.get(cfg.name)
    return None if gate is None else gate(cfg)
