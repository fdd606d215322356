"""T3A and DeYO against transcriptions of their authors' code (tests/authors_t3a_deyo.py) on a tiny
model and fixed tensors, and as methods: where they may run, what they cost, their keys."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cemasim import scenario
from cemasim.assembly import assemble
from cemasim.errors import ConfigError
from cemasim.methods import build_method
from cemasim.methods.deyo import DeYO, patch_shuffle
from cemasim.methods.optim import Learner
from cemasim.methods.t3a import T3A
from cemasim.models import norm
from cemasim.sim.fleet import Fleet
from tests import authors_t3a_deyo as authors
from tests.conftest import small

C = 4


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.bn = nn.BatchNorm2d(3)
        self.fc = nn.Linear(12, C)

    def features(self, x):  # a 2 x 2 grid of pooled features: shuffling the patches changes them
        return F.adaptive_avg_pool2d(self.bn(self.conv(x)).relu(), 2).flatten(1)

    def forward(self, x):
        return self.fc(self.features(x))


def tiny(seed: int = 0) -> tuple[Net, nn.Module]:
    torch.manual_seed(seed)
    ref = Net()
    with torch.no_grad():
        ref.fc.weight.mul_(20)  # sharp, varied outputs: the filters keep some samples and drop others
        ref.bn.running_mean.uniform_(-0.5, 0.5)
        ref.bn.running_var.uniform_(0.5, 2)
    return ref, norm.convert(copy.deepcopy(ref))


def batches(n: int, size: int, side: int = 5, seed: int = 1) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(size, 1, side, side, generator=gen) for _ in range(n)]


# ---- T3A -------------------------------------------------------------------------------------
def run_t3a(filter_k: int | None, authors_k: int) -> tuple[list[torch.Tensor], list[torch.Tensor], Learner, object]:
    ref, ours = tiny()
    ref.eval()  # DomainBed evaluates in eval mode: source statistics
    theirs = authors.AuthorsT3A(ref.features, ref.fc, C, authors_k)
    method = T3A(name="t3a", filter_k=filter_k, num_classes=C)
    learner = Learner(norm.initial_state(ours, method.state_names(ours)))
    got, want = [], []
    for x in batches(4, 8):
        want.append(theirs.forward(x))
        got.append(method.predict(ours, learner, learner.state, x))
    return got, want, learner, theirs


@pytest.mark.parametrize("k", [1, 3])
def test_t3a_logits_and_supports_equal_the_authors_over_batches(k):
    got, want, learner, theirs = run_t3a(k, k)
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-6)
    supports = learner.extra["t3a"]
    assert torch.allclose(supports.features, theirs.supports, atol=1e-6)
    assert torch.equal(supports.labels, theirs.labels.argmax(1))
    assert len(supports.labels) <= C * k
    # the supports moved the prototypes: T3A's logits are not the classifier's
    assert not torch.allclose(got[-1], theirs.classifier(theirs.featurizer(batches(4, 8)[-1])), atol=1e-3)


def test_t3a_keeps_every_support_when_unlimited():
    """null / -1 keep all (the authors' evident intent); their code's -1 slices [:-1], dropping each class's
    highest-entropy support, so the comparison uses a K larger than the stream."""
    got, want, learner, _ = run_t3a(None, 10**6)
    assert all(torch.allclose(g, w, atol=1e-6) for g, w in zip(got, want, strict=True))
    assert len(learner.extra["t3a"].labels) == C + 4 * 8
    *_, theirs = run_t3a(None, -1)
    assert len(theirs.labels) < C + 4 * 8  # the departure, documented in docs/methods.md


def test_t3a_state_is_per_device_and_a_reset_empties_it():
    sc = small("method.name=t3a", "fleet.profile=rpi4", "duration_s=12", "drain_s=20")  # rpi4 cannot train
    fleet = Fleet(assemble(sc))
    fleet.run()
    a, b = (d.learner.extra["t3a"] for d in fleet.devices[:2])
    assert len(a.labels) > 10 and not (len(a.labels) == len(b.labels) and torch.equal(a.features, b.features))
    learner = fleet.devices[0].learner
    learner.reset(fleet.source_state)
    assert "t3a" not in learner.extra


def test_t3a_filter_k_keys():
    assert build_method(scenario.load(None, ["method.name=t3a", "method.t3a_filter_k=-1"]), 10).filter_k is None
    assert build_method(scenario.load(None, ["method.name=t3a", "method.t3a_filter_k=null"]), 10).filter_k is None
    assert build_method(scenario.load(None, ["method.name=t3a"]), 10).filter_k == 100
    for bad in (0, -2):
        with pytest.raises(ConfigError, match=f"method.t3a_filter_k: must be -1 .keep all. or at least 1, got {bad}"):
            scenario.load(None, ["method.name=t3a", f"method.t3a_filter_k={bad}"])


# ---- DeYO ------------------------------------------------------------------------------------
def deyo_pair(side: int, patches: int, lr: float = 0.1):
    """The authors' configure_model (train mode, no running statistics, BN affine trainable) and ours."""
    ref, ours = tiny()
    ref.train()
    ref.bn.track_running_stats, ref.bn.running_mean, ref.bn.running_var = False, None, None
    for p in ref.parameters():
        p.requires_grad_(False)
    ref.bn.weight.requires_grad_(True)
    ref.bn.bias.requires_grad_(True)
    opt = torch.optim.SGD([ref.bn.weight, ref.bn.bias], lr, momentum=0.9)
    learner = Learner(norm.initial_state(ours, norm.adaptable_names(ours, False)))
    return ref, ours, opt, learner


@pytest.mark.parametrize("side, patches", [(8, 4), (10, 4), (6, 2)])
def test_deyo_two_steps_equal_the_authors(side, patches):
    """Both filters act (some samples kept, some dropped), the weights, the step and its momentum; side 10
    takes the authors' resize to a multiple of the grid and back."""
    ref, ours, opt, learner = deyo_pair(side, patches)
    xs = batches(1, 16, side) * 2  # the same batch twice: the second step meets the momentum buffers
    with torch.no_grad():
        ent = authors.softmax_entropy(ref(xs[0]))
    margin, e0 = float(ent.quantile(0.75)), float(ent.median())
    adapter = DeYO(lr=0.1, margin=margin, e0=e0, plpd_threshold=0.05, patches=patches)
    gen = torch.Generator().manual_seed(3)
    learner.extra["generator"] = torch.Generator().manual_seed(3)
    counts = []
    for x in xs:
        outputs, backward, final = authors.forward_and_adapt_deyo(x, ref, opt, margin, e0, 0.05, patches, gen)
        counts.append((len(x), backward, final))
        logits = adapter.step(ours, learner, x)
        assert torch.allclose(logits, outputs.detach(), atol=1e-6)  # pre-update predictions
        assert torch.allclose(learner.state["bn.weight"], ref.bn.weight.detach(), atol=1e-6)
        assert torch.allclose(learner.state["bn.bias"], ref.bn.bias.detach(), atol=1e-6)
    assert counts[0][0] > counts[0][1] > counts[0][2] > 0, counts  # both filters drop and keep samples
    assert learner.steps == 2 and counts[1][2] > 0, counts


def test_deyo_skips_the_step_when_no_sample_passes():
    _ref, ours, _opt, learner = deyo_pair(8, 4)
    x = batches(1, 8, 8)[0]
    before = {n: t.clone() for n, t in learner.state.items()}
    DeYO(lr=0.5, margin=1e-6).step(ours, learner, x)  # no sample is that certain
    DeYO(lr=0.5, margin=10.0, plpd_threshold=1.0).step(ours, learner, x)  # no PLPD exceeds 1
    assert learner.steps == 0 and all(torch.equal(before[n], t) for n, t in learner.state.items())


def test_patch_shuffle_permutes_whole_tiles():
    x = torch.arange(2 * 16 * 16, dtype=torch.float32).reshape(2, 1, 16, 16)
    y = patch_shuffle(x, 4, torch.Generator().manual_seed(0))
    tiles = authors.rearrange_to_tiles(x, 4)
    shuffled = authors.rearrange_to_tiles(y, 4)
    for b in range(2):
        assert sorted(t.sum().item() for t in tiles[b]) == sorted(t.sum().item() for t in shuffled[b])
    assert not torch.equal(x, y)


def test_deyo_imagenet_defaults_are_the_authors():
    sc = scenario.load(None, ["method.name=deyo", "method.preset=imagenet"])
    adapter = build_method(sc, 1000).adapter
    d = authors.IMAGENET_DEFAULTS
    assert isinstance(adapter, DeYO)
    assert adapter.margin == pytest.approx(d["deyo_margin"]) and adapter.e0 == pytest.approx(d["margin_e0"])
    assert (adapter.plpd_threshold, adapter.patches, adapter.lr, adapter.momentum) == (
        d["plpd_threshold"], d["patch_len"], d["lr"], d["momentum"])


def test_deyo_adapts_the_authors_parameter_set():
    """collect_params skips ResNet's layer4 (SAR's rule): those tensors stay out of the device state."""
    net = nn.Sequential()
    net.add_module("layer3", nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2)))
    net.add_module("layer4", nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)))
    method = build_method(small("method.name=deyo"), 10)
    assert method.state_names(norm.convert(net)) == ["layer3.1.weight", "layer3.1.bias"]


def test_deyo_charges_its_shuffled_forward_and_runs_where_tent_runs():
    edge = ["method.deployment=edge", "fleet.profile=jetson-nano"]
    deyo, tent = Fleet(assemble(small("method.name=deyo", *edge))), Fleet(assemble(small("method.name=tent", *edge)))
    assert deyo.devices[0].cost.flops_per_sample == pytest.approx(2 * tent.devices[0].cost.flops_per_sample)
    assert deyo.method.adapts_on_edge and not deyo.method.uses_cloud
    offloaded = build_method(small("method.name=deyo"), 10)
    assert offloaded.cloud_worker == "offload" and bool(offloaded.select(torch.zeros(5, 10), None).all())
    with pytest.raises(ConfigError, match="method.deployment: deyo on the edge needs a device profile that can train"):
        small("method.name=deyo", "method.deployment=edge", "fleet.profile=rpi4")
    with pytest.raises(ConfigError, match="method.deployment"):
        small("method.name=deyo", "method.deployment=fog")
