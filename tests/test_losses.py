"""Pure-torch kernels against hand-computed values on tiny tensors (reference: cema.md)."""

from __future__ import annotations

import math

import pytest
import torch

from cemasim.methods.losses import confidence_weight, distillation_loss, entropy, foundation_loss
from cemasim.methods.optim import sgd_step


def test_entropy_of_uniform_and_one_hot():
    """Uniform over C classes has entropy ln C; a near-one-hot row has entropy ~0."""
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    ent = entropy(logits)
    assert ent[0].item() == pytest.approx(math.log(4))
    assert ent[1].item() == pytest.approx(0.0, abs=1e-6)


def test_entropy_hand_value():
    """p = softmax([ln 1, ln 3]) = [1/4, 3/4]: E = -(1/4 ln 1/4 + 3/4 ln 3/4)."""
    logits = torch.tensor([[0.0, math.log(3.0)]])
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert entropy(logits).item() == pytest.approx(expected, rel=1e-6)


def test_foundation_loss_weights_by_exp_e0_minus_e():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    e = [-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)), math.log(2)]
    e0 = 0.4 * math.log(2)
    expected = sum(math.exp(e0 - ei) * ei for ei in e) / 2
    assert foundation_loss(logits, e0).item() == pytest.approx(expected, rel=1e-6)


def test_confidence_weight_is_detached():
    ent = torch.tensor([0.5], requires_grad=True)
    assert not confidence_weight(ent, 1.0).requires_grad


def test_distillation_loss_hand_value():
    """Three terms on one sample, computed by hand from the formula in cema.md."""
    zs = torch.tensor([[1.0, 0.0, -1.0]])
    zt = torch.tensor([[0.0, 2.0, 0.0]])
    e0, a, b, g, t = 0.4 * math.log(3), 3.0, 3.0, 1.0, 2.0
    ps, pt = torch.softmax(zs[0], 0).tolist(), torch.softmax(zt[0], 0).tolist()
    es = -sum(p * math.log(p) for p in ps)
    et = -sum(p * math.log(p) for p in pt)
    qs, qt = torch.softmax(zs[0] / t, 0).tolist(), torch.softmax(zt[0] / t, 0).tolist()
    kl = sum(q * math.log(q / r) for q, r in zip(qt, qs, strict=True)) * t * t
    ce = -math.log(ps[1])  # teacher's argmax is class 1
    expected = a * math.exp(e0 - es) * es + b * math.exp(e0 - et) * kl + g * math.exp(e0 - et) * ce
    got = distillation_loss(zs, zt, e0, a, b, g, t).item()
    assert got == pytest.approx(expected, rel=1e-5)


def test_distillation_gradient_flows_only_to_student():
    zs = torch.randn(4, 5, requires_grad=True)
    zt = torch.randn(4, 5, requires_grad=True)
    distillation_loss(zs, zt, 0.6, 3, 3, 1, 1).backward()
    assert zs.grad is not None and zt.grad is None


def test_sgd_step_matches_torch_sgd():
    """Two momentum steps of our dict-SGD equal torch.optim.SGD(momentum=0.9)."""
    p_ref = torch.tensor([1.0, -2.0], requires_grad=True)
    opt = torch.optim.SGD([p_ref], lr=0.1, momentum=0.9)
    params, bufs = {"w": torch.tensor([1.0, -2.0])}, {}
    for grad in (torch.tensor([0.5, 1.0]), torch.tensor([-1.0, 2.0])):
        p_ref.grad = grad.clone()
        opt.step()
        sgd_step(params, {"w": grad}, bufs, lr=0.1, momentum=0.9)
    assert torch.allclose(params["w"], p_ref.detach())
    # by hand: buf1 = g1; p1 = p0 - .1 g1; buf2 = .9 g1 + g2; p2 = p1 - .1 buf2
    assert torch.allclose(params["w"], torch.tensor([1.0 - 0.05 - 0.1 * (0.45 - 1.0), -2.0 - 0.1 - 0.1 * (0.9 + 2.0)]))
