"""Per-transfer loss: each attempt to send a message is lost or not (`uplink/downlink.loss.model`).

    none             nothing is lost (no retransmission machinery at all)
    bernoulli        every attempt lost with probability `rate`
    gilbert_elliott  a two-state Markov chain advanced once per attempt (good -> bad with p_gb,
                     bad -> good with p_bg) losing with loss_good / loss_bad: bursty loss;
                     the chain starts in its stationary state, so the long-run loss rate is
                     `stationary_rate()`

LOSS_MODELS maps each name to a builder of the scenario's `loss` section and the link's random
generator (None: nothing is lost); a plugin may register more.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from cemasim.registry import Registry


class LossModel(Protocol):
    def lost(self) -> bool:
        """Draw the fate of one attempt."""

    def stationary_rate(self) -> float:
        """The long-run share of attempts lost."""


class Bernoulli:
    def __init__(self, rng: np.random.Generator, rate: float):
        self.rng, self.rate = rng, rate

    def lost(self) -> bool:
        return bool(self.rng.random() < self.rate)

    def stationary_rate(self) -> float:
        return self.rate


class GilbertElliott:
    def __init__(self, rng: np.random.Generator, p_gb: float = 0.0, p_bg: float = 1.0, loss_good: float = 0.0,
                 loss_bad: float = 1.0):
        self.rng, self.p_gb, self.p_bg, self.loss_good, self.loss_bad = rng, p_gb, p_bg, loss_good, loss_bad
        self.bad = bool(rng.random() < self.bad_share())

    def bad_share(self) -> float:
        """Stationary probability of the bad state."""
        return self.p_gb / (self.p_gb + self.p_bg) if self.p_gb + self.p_bg > 0 else 0.0

    def stationary_rate(self) -> float:
        pi_b = self.bad_share()
        return (1 - pi_b) * self.loss_good + pi_b * self.loss_bad

    def lost(self) -> bool:
        loss = self.loss_bad if self.bad else self.loss_good
        fate = bool(self.rng.random() < loss)
        self.bad = bool(self.rng.random() < (1 - self.p_bg if self.bad else self.p_gb))
        return fate


LossBuilder = Callable[[Any, np.random.Generator], LossModel]
LOSS_MODELS: Registry[LossBuilder | None] = Registry("loss model")
LOSS_MODELS.add("none", None, "nothing is lost")
LOSS_MODELS.add("bernoulli", lambda cfg, rng: Bernoulli(rng, cfg.rate),
                "every attempt lost with probability rate")
LOSS_MODELS.add("gilbert_elliott", lambda cfg, rng: GilbertElliott(rng, cfg.p_good_to_bad, cfg.p_bad_to_good,
                                                                   cfg.loss_good, cfg.loss_bad),
                "bursty: a good/bad Markov chain advanced per attempt, losing with loss_good / loss_bad")


def loss_model(cfg: Any, rng: np.random.Generator | None) -> LossModel | None:
    """The loss model of a `loss` section (None: nothing is lost; then no generator is needed)."""
    build = LOSS_MODELS.get(cfg.model)
    if build is None:
        return None
    assert rng is not None, "a lossy link draws from its own stream"
    return build(cfg, rng)
