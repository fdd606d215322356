"""Faithfulness of the TTA baselines: one step on a tiny model and batch, compared with the
authors' published update written out the way their code does it (a plain nn.BatchNorm model in
train mode, torch.optim.SGD over the BN affine parameters, explicit filters and weights)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cemasim.methods.optim import Learner
from cemasim.methods.tta import EATA, ETA, SAR, Adapter, PseudoLabel, fisher_information, knn_affinity, lame_predict
from cemasim.models import norm

C = 4


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(3, C)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))


def setup(seed: int = 0):
    torch.manual_seed(seed)
    ref = Net()
    with torch.no_grad():
        ref.fc.weight.mul_(20)  # sharper, varied outputs: the filters keep some samples and drop others
    ours = norm.convert(copy.deepcopy(ref))
    # the authors' configure_model: train mode, no running statistics, only BN affine trainable
    ref.train()
    ref.bn.track_running_stats, ref.bn.running_mean, ref.bn.running_var = False, None, None
    for p in ref.parameters():
        p.requires_grad_(False)
    ref.bn.weight.requires_grad_(True)
    ref.bn.bias.requires_grad_(True)
    learner = Learner(norm.initial_state(ours, norm.adaptable_names(ours, False)))
    x = torch.randn(16, 1, 5, 5, generator=torch.Generator().manual_seed(seed + 1))
    return ref, ours, learner, x


def ent(z):
    return -(z.softmax(1) * z.log_softmax(1)).sum(1)


def median_entropy(ref, x) -> float:
    """A margin that keeps about half of the batch: the filters are exercised both ways."""
    with torch.no_grad():
        return float(ent(ref(x)).median()) + 1e-4


def assert_same(ref: Net, learner: Learner):
    assert torch.allclose(learner.state["bn.weight"], ref.bn.weight.detach(), atol=1e-6)
    assert torch.allclose(learner.state["bn.bias"], ref.bn.bias.detach(), atol=1e-6)


def test_tent_two_steps_match_reference():
    ref, ours, learner, x = setup()
    opt = torch.optim.SGD([ref.bn.weight, ref.bn.bias], lr=0.1, momentum=0.9)
    adapter = Adapter(lr=0.1, momentum=0.9)
    for _ in range(2):  # two steps: momentum buffers must match too
        out = ref(x)
        loss = ent(out).mean(0)
        loss.backward()
        opt.step()
        opt.zero_grad()
        logits = adapter.step(ours, learner, x)
        assert torch.allclose(logits, out.detach(), atol=1e-5)  # predictions are pre-update
    assert_same(ref, learner)
    assert not torch.equal(learner.state["bn.weight"], norm.initial_state(ours, ["bn.weight"])["bn.weight"])


def test_pl_matches_reference():
    ref, ours, learner, x = setup()
    opt = torch.optim.SGD([ref.bn.weight, ref.bn.bias], lr=0.05, momentum=0.9)
    out = ref(x)
    F.cross_entropy(out, out.argmax(1)).backward()
    opt.step()
    PseudoLabel(lr=0.05).step(ours, learner, x)
    assert_same(ref, learner)


def eata_reference(ref, x, e_margin, d_margin, current_probs, fishers=None, fisher_alpha=0.0, lr=0.1, opt=None):
    """EATA's forward_and_adapt_eata, transcribed."""
    opt = opt or torch.optim.SGD([ref.bn.weight, ref.bn.bias], lr=lr, momentum=0.9)
    outputs = ref(x)
    entropys = ent(outputs)
    filter_ids_1 = torch.where(entropys < e_margin)
    ids1 = filter_ids_1
    ids2 = torch.where(ids1[0] > -0.1)
    entropys = entropys[filter_ids_1]
    if current_probs is not None:
        cos = F.cosine_similarity(current_probs.unsqueeze(dim=0), outputs[filter_ids_1].softmax(1), dim=1)
        filter_ids_2 = torch.where(torch.abs(cos) < d_margin)
        entropys = entropys[filter_ids_2]
        ids2 = filter_ids_2
    coeff = 1 / (torch.exp(entropys.clone().detach() - e_margin))
    loss = entropys.mul(coeff).mean(0)
    if fishers is not None:
        ewc = 0
        for name, param in (("bn.weight", ref.bn.weight), ("bn.bias", ref.bn.bias)):
            ewc += fisher_alpha * (fishers[name][0] * (param - fishers[name][1]) ** 2).sum()
        loss += ewc
    kept = x[ids1][ids2].size(0)
    if kept != 0:
        loss.backward()
        opt.step()
    opt.zero_grad()
    return kept


def test_eta_filters_weights_and_step_match_reference():
    ref, ours, learner, x = setup()
    e_margin = median_entropy(ref, x)
    kept = eata_reference(ref, x, e_margin, 0.4, None)
    assert 0 < kept < len(x), "the tiny batch must exercise the reliability filter"
    ETA(lr=0.1, e_margin=e_margin, d_margin=0.4).step(ours, learner, x)
    assert_same(ref, learner)


def test_eta_redundancy_filter_second_batch_matches_reference():
    """Batch 1 keeps every reliable sample and initialises m; batch 2 keeps |cos(m, p)| < d_margin."""
    ref, ours, learner, x = setup()
    e_margin = 2 * math.log(C)  # every sample reliable: isolate the redundancy filter
    opt = torch.optim.SGD([ref.bn.weight, ref.bn.bias], lr=0.001, momentum=0.9)
    adapter = ETA(lr=0.001, e_margin=e_margin, d_margin=1.0)
    with torch.no_grad():
        m_ref = ref(x).softmax(1).mean(0)  # EATA's update_model_probs on the first batch's outputs
    eata_reference(ref, x, e_margin, 1.0, None, lr=0.001, opt=opt)
    adapter.step(ours, learner, x)
    assert torch.allclose(learner.extra["redundancy"].m, m_ref, atol=1e-6)
    x2 = torch.randn(16, 1, 5, 5, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        cos = F.cosine_similarity(m_ref.unsqueeze(0), ref(x2).softmax(1), dim=1).abs()
    ranked = cos.sort().values
    gap = int((ranked[1:] - ranked[:-1]).argmax())
    d_margin = float(ranked[gap] + ranked[gap + 1]) / 2  # mid-gap: robust to float noise
    adapter.d_margin = d_margin
    kept = eata_reference(ref, x2, e_margin, d_margin, m_ref, lr=0.001, opt=opt)
    assert 0 < kept < 16
    adapter.step(ours, learner, x2)
    assert_same(ref, learner)


def test_eata_fisher_and_regulariser_match_reference():
    ref, ours, learner, x = setup()
    clean = torch.randn(8, 1, 5, 5, generator=torch.Generator().manual_seed(3))
    # EATA's Fisher: per batch of clean samples, squared grads of pseudo-label CE, summed, / batches
    fishers = {}
    batches = clean.split(4)
    for i, xb in enumerate(batches, start=1):
        out = ref(xb)
        F.cross_entropy(out, out.argmax(1)).backward()
        for name, p in (("bn.weight", ref.bn.weight), ("bn.bias", ref.bn.bias)):
            f = p.grad.detach().clone() ** 2 + (fishers[name][0] if i > 1 else 0)
            if i == len(batches):
                f = f / i
            fishers[name] = [f, p.detach().clone()]
            p.grad = None
    ours_fisher = fisher_information(ours, learner, clean, batch_size=4)
    for name in fishers:
        assert torch.allclose(ours_fisher[name], fishers[name][0], atol=1e-7)
    # shift the parameters away from the anchor so the regulariser matters, then one EATA step
    with torch.no_grad():
        ref.bn.weight.add_(0.3)
    learner.state["bn.weight"] = learner.state["bn.weight"] + 0.3
    learner.extra.update(fisher=ours_fisher, anchor={k: v[1] for k, v in fishers.items()})
    e_margin = median_entropy(ref, x)
    eata_reference(ref, x, e_margin, 0.4, None, fishers, fisher_alpha=50.0)
    EATA(lr=0.1, e_margin=e_margin, d_margin=0.4, fisher_alpha=50.0).step(ours, learner, x)
    assert_same(ref, learner)


def test_sar_sam_step_and_reset_match_reference():
    ref, ours, learner, x = setup()
    margin, rho, lr = median_entropy(ref, x), 0.05, 0.1
    params = [ref.bn.weight, ref.bn.bias]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    # SAR: first step
    out = ref(x)
    e = ent(out)
    ids1 = torch.where(e < margin)
    assert 0 < len(ids1[0]) < len(x)
    e[ids1].mean(0).backward()
    grad_norm = torch.norm(torch.stack([p.grad.norm(p=2) for p in params]), p=2)
    old = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p in params:
            p.add_(p.grad * rho / (grad_norm + 1e-12))
    opt.zero_grad()
    # second step at the perturbed point, restore, base optimizer step
    e2 = ent(ref(x))[ids1]
    ids2 = torch.where(e2 < margin)
    loss2 = e2[ids2].mean(0)
    loss2.backward()
    with torch.no_grad():
        for p, o in zip(params, old, strict=True):
            p.copy_(o)
    opt.step()
    adapter = SAR(lr=lr, e_margin=margin, rho=rho, reset_constant=0.0)
    learner.extra["source"] = {n: t.clone() for n, t in learner.state.items()}
    adapter.step(ours, learner, x)
    assert_same(ref, learner)
    assert learner.extra["ema"] == pytest.approx(float(loss2.detach()))
    # model recovery: an EMA loss under the reset constant restores the source state
    SAR(lr=lr, e_margin=margin, rho=rho, reset_constant=10.0).step(ours, learner, x)
    assert torch.equal(learner.state["bn.weight"], learner.extra["source"]["bn.weight"])
    assert learner.extra["resets"] == 1 and not learner.momentum_bufs


def test_lame_affinity_and_smoothing():
    feats = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.0, 1.0], [0.05, 1.0]])
    w = knn_affinity(feats, k=1)
    assert w.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 0]]
    # two confident neighbours pull an uncertain sample to their class
    logits = torch.tensor([[4.0, 0.0], [0.1, 0.0], [0.0, 4.0], [0.0, 4.0]])
    probs = lame_predict(logits, feats, k=1)
    assert torch.allclose(probs.sum(1), torch.ones(4))
    assert probs[1, 0] > logits[1].softmax(0)[0]


def test_cotta_step_matches_reference_without_augmentation():
    """CoTTA's forward_and_adapt (CIFAR loss) with a confident anchor (no augmented views):
    student SGD on soft CE to the EMA teacher, EMA update, stochastic restore (p = 0 and p = 1)."""
    from cemasim.methods.tta import CoTTA

    ref, ours, _, x = setup()
    for p in ref.parameters():
        p.requires_grad_(True)
    teacher, anchor = copy.deepcopy(ref), copy.deepcopy(ref)
    source = {k: v.clone() for k, v in ref.state_dict().items()}
    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    with torch.no_grad():
        anchor_conf = anchor(x).softmax(1).max(1)[0]
        out_ema = teacher(x)
    out = ref(x)
    loss = (-(out_ema.softmax(1) * out.log_softmax(1)).sum(1)).mean(0)
    loss.backward()
    opt.step()
    with torch.no_grad():
        for t, s in zip(teacher.parameters(), ref.parameters(), strict=True):
            t.mul_(0.999).add_(0.001 * s)
    names = [n for n, _ in ours.named_parameters()]
    learner = Learner(norm.initial_state(ours, names))
    learner.extra["source"] = {n: t.clone() for n, t in learner.state.items()}
    adapter = CoTTA(lr=0.05, anchor_threshold=float(anchor_conf.mean()) - 1e-3, restore_p=0.0, symmetric=False)
    logits = adapter.step(ours, learner, x)
    assert torch.allclose(logits, out_ema, atol=1e-5)  # CoTTA predicts with the teacher
    for n, p in ref.named_parameters():
        assert torch.allclose(learner.state[n], p.detach(), atol=1e-6), n
        assert torch.allclose(learner.extra["teacher"][n], dict(teacher.named_parameters())[n], atol=1e-6), n
    # p = 1 restores every weight to the source
    CoTTA(lr=0.05, restore_p=1.0, views=0).step(ours, learner, x)
    for n in names:
        assert torch.equal(learner.state[n], learner.extra["source"][n])
    assert source  # (the reference's source copy is what restore would use)
