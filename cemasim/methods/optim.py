"""SGD with momentum over a dict of tensors (a device's norm state), matching torch.optim.SGD
(dampening 0, no Nesterov, no weight decay): buf <- m * buf + g (buf = g at the first step);
p <- p - lr * buf. Kept as a plain function so per-device optimizer state is just tensors."""

from __future__ import annotations

import torch
from torch import Tensor


def sgd_step(params: dict[str, Tensor], grads: dict[str, Tensor], momentum_bufs: dict[str, Tensor], lr: float,
             momentum: float) -> None:
    """Update `params` and `momentum_bufs` in place."""
    with torch.no_grad():
        for name, grad in grads.items():
            buf = momentum_bufs.get(name)
            if buf is None:
                buf = momentum_bufs[name] = grad.detach().clone()
            else:
                buf.mul_(momentum).add_(grad)
            params[name].sub_(lr * buf)
