"""Per-transfer loss: each attempt to send a message is lost or not.

    bernoulli        every attempt lost with probability `rate`
    gilbert_elliott  a two-state Markov chain advanced once per attempt (good -> bad with p_gb,
                     bad -> good with p_bg) losing with loss_good / loss_bad: bursty loss
The chain starts in its stationary state, so the long-run loss rate is `stationary_rate()`.
"""

from __future__ import annotations

import numpy as np


class LossProcess:
    def __init__(self, model: str, rng: np.random.Generator, rate: float = 0.0, p_gb: float = 0.0, p_bg: float = 1.0,
                 loss_good: float = 0.0, loss_bad: float = 1.0):
        if model not in ("none", "bernoulli", "gilbert_elliott"):
            raise ValueError(f"loss model must be none, bernoulli or gilbert_elliott, got {model!r}")
        self.model, self.rng = model, rng
        self.rate, self.p_gb, self.p_bg, self.loss_good, self.loss_bad = rate, p_gb, p_bg, loss_good, loss_bad
        self.bad = model == "gilbert_elliott" and rng.random() < self.bad_share()

    def bad_share(self) -> float:
        """Stationary probability of the bad state."""
        return self.p_gb / (self.p_gb + self.p_bg) if self.p_gb + self.p_bg > 0 else 0.0

    def stationary_rate(self) -> float:
        if self.model == "none":
            return 0.0
        if self.model == "bernoulli":
            return self.rate
        pi_b = self.bad_share()
        return (1 - pi_b) * self.loss_good + pi_b * self.loss_bad

    def lost(self) -> bool:
        """Draw the fate of one attempt."""
        if self.model == "none":
            return False
        if self.model == "bernoulli":
            return bool(self.rng.random() < self.rate)
        loss = self.loss_bad if self.bad else self.loss_good
        fate = bool(self.rng.random() < loss)
        self.bad = bool(self.rng.random() < (1 - self.p_bg if self.bad else self.p_gb))
        return fate
