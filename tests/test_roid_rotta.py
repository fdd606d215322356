"""ROID and RoTTA (cemasim/methods/roid.py, rotta.py) against transcriptions of their authors' code
(tests/authors_roid_rotta.py) on a tiny BN network, fixed tensors and the same augmentation draws: logits,
weights, memory, student and teacher to 1e-6; and as methods: where they run, what they cost and hold,
defaults that act."""

from __future__ import annotations

import copy
import functools
import random

import numpy as np
import pytest
import torch

from cemasim.assembly import assemble
from cemasim.errors import ConfigError
from cemasim.methods import build_method
from cemasim.methods.optim import Learner
from cemasim.methods.roid import ROID, roid_weights
from cemasim.methods.rotta import MemoryBank, RoTTA
from cemasim.methods.tta import augment
from cemasim.models import norm
from cemasim.runner import simulate
from cemasim.sim.fleet import Fleet
from tests import authors_roid_rotta as theirs
from tests.conftest import small
from tests.test_authors_code import tiny_bn_net

SIZE = 12  # tiny_bn_net: 1 channel, 3 classes


def batches(n: int, size: int, seed: int = 0) -> list[torch.Tensor]:
    """Batches that differ in brightness and contrast, so that the predictions and weights spread."""
    gen = torch.Generator().manual_seed(seed)
    return [(torch.rand(size, 1, SIZE, SIZE, generator=gen) * (0.4 + 0.3 * i) + 0.1 * i).clamp(0, 1)
            for i in range(n)]


def close(got: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_roid_view_equals_the_authors_transform(seed):
    """get_tta_transforms(cotta_augs=False, padding_mode='reflect'): no blur, no noise, reflect padding."""
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 1.2 - 0.1
    torch.manual_seed(seed)
    expected = theirs.get_tta_transforms(28, padding_mode="reflect", cotta_augs=False)(x)
    got = augment(x, torch.Generator().manual_seed(seed), padding_mode="reflect", cotta_augs=False)
    close(got, expected)
    assert not torch.allclose(got, augment(x, torch.Generator().manual_seed(seed)), atol=1e-3)


def test_roid_update_equals_the_authors_code():
    """Four batches: prior-corrected logits, the certainty x diversity weights, the SGD (Nesterov) step,
    the weight ensembling towards the source and the class-prior EMA, as forward_and_adapt."""
    net, lr = tiny_bn_net(), 0.05  # a rate that moves the tiny net within four steps
    ref = theirs.ROID(copy.deepcopy(net), num_classes=3, img_size=SIZE, batch_size=16, lr=lr)
    ours = norm.convert(copy.deepcopy(net))
    state = norm.initial_state(ours, norm.adaptable_names(ours, with_stats=False))
    learner = Learner(state, extra={"source": {n: t.clone() for n, t in state.items()}})
    adapter = ROID(lr=lr)
    torch.manual_seed(0)  # their augmentation draws from the global generator; ours from a generator seeded 0
    for x in batches(4, 16):
        with torch.no_grad():
            pre = norm.forward(ours, learner.state, x, "batch")
            class_probs = learner.extra.get("class_probs", torch.full((3,), 1 / 3))
            weights, keep = roid_weights(pre, class_probs, adapter.temperature)  # type: ignore[misc]
        close(adapter.step(ours, learner, x), ref.forward_and_adapt([x]))
        close(weights, ref.last_weights)
        assert 0 < int(keep.sum()) < len(x)
        close(learner.extra["class_probs"], ref.class_probs_ema)
    params = dict(ref.model.named_parameters())
    for name, tensor in learner.state.items():
        close(tensor, params[name].detach())
        assert not torch.allclose(tensor, learner.extra["source"][name], atol=1e-4), name  # it moved


def test_roid_skips_a_batch_whose_weights_are_undefined():
    """One sample: the min-max scaling divides by zero; the authors' code would write NaN into the model."""
    net = norm.convert(tiny_bn_net())
    state = norm.initial_state(net, norm.adaptable_names(net, with_stats=False))
    learner = Learner({n: t.clone() for n, t in state.items()}, extra={"source": state})
    logits = ROID(lr=0.05).step(net, learner, batches(1, 1)[0])
    assert bool(torch.isfinite(logits).all()) and learner.steps == 0
    assert all(torch.equal(learner.state[n], state[n]) for n in state)


def test_rotta_memory_bank_equals_cstu():
    """Category balance, eviction by timeliness and uncertainty, ages: the same items in the same order."""
    rng = random.Random(0)
    ours, ref = MemoryBank(10, 4), theirs.CSTU(10, 4)
    for i in range(300):
        label, uncertainty = rng.choice([0, 0, 0, 1, 2, 3]), rng.random() * 1.4
        data = torch.tensor([float(i)])
        ours.add(data, label, uncertainty)
        ref.add_instance((data, label, uncertainty))
        got, expected = ours.contents(), ref.get_memory()
        assert [float(t) for t in got[0]] == [float(t) for t in expected[0]] and got[1] == expected[1]
    assert len(ours.contents()[0]) == 10 and min(len(c) for c in ours.classes) > 0


def test_rotta_update_equals_the_authors_code():
    """Five batches of 6 with updates every 8 samples (mid-batch): the teacher's logits, its robust
    statistics and EMA affine, the student's (Adam step on timeliness-weighted soft CE, robust statistics
    from the strong augmentation)."""
    net, kw = tiny_bn_net(), {"lr": 0.05, "memory_size": 8, "update_frequency": 8, "nu": 0.2, "alpha": 0.05}
    ref = theirs.RoTTA(copy.deepcopy(net), num_class=3, img_size=SIZE, **kw)
    ours = norm.convert(copy.deepcopy(net))
    learner = Learner(norm.initial_state(ours, norm.adaptable_names(ours, with_stats=True)))
    adapter = RoTTA(num_classes=3, **kw)
    torch.manual_seed(0)
    for x in batches(5, 6, seed=1):
        close(adapter.step(ours, learner, x), ref.forward_and_adapt(x, ref.model, ref.optimizer))
    assert learner.steps == 3
    for mine, model in ((learner.state, ref.model_ema), (learner.extra["student"], ref.model)):
        tensors = dict(model.named_parameters()) | {n.replace("source_", "running_"): t
                                                     for n, t in model.named_buffers() if "source_" in n}
        for name, tensor in mine.items():
            close(tensor, tensors[name].detach())
    source = norm.initial_state(ours, list(learner.state))
    assert not torch.allclose(learner.state["1.running_mean"], source["1.running_mean"])
    assert not torch.allclose(learner.state["1.weight"], source["1.weight"])


def test_rotta_device_state_is_the_teacher_with_its_statistics():
    method = build_method(small("method.name=rotta"), 10)
    names = method.state_names(norm.convert(tiny_bn_net()))
    assert names == ["1.weight", "1.bias", "1.running_mean", "1.running_var",
                     "4.weight", "4.bias", "4.running_mean", "4.running_var"]
    assert method.edge_stat_mode() == ("eval", 0.0)


@pytest.mark.parametrize("name", ["roid", "rotta"])
def test_charged_as_two_passes_and_run_where_tent_runs(name):
    edge = ["method.deployment=edge", "fleet.profile=jetson-nano"]
    fleet = Fleet(assemble(small(f"method.name={name}", *edge)))
    tent = Fleet(assemble(small("method.name=tent", *edge)))
    assert fleet.devices[0].cost.flops_per_sample == pytest.approx(2 * tent.devices[0].cost.flops_per_sample,
                                                                   rel=0.01)
    assert fleet.method.adapts_on_edge and not fleet.method.uses_cloud
    offloaded = build_method(small(f"method.name={name}"), 10)
    assert offloaded.cloud_worker == "offload" and bool(offloaded.select(torch.zeros(5, 10), None).all())
    with pytest.raises(ConfigError, match=f"method.deployment: {name} on the edge needs a device profile that can"):
        small(f"method.name={name}", "method.deployment=edge", "fleet.profile=rpi4")
    with pytest.raises(ConfigError, match="method.deployment"):
        small(f"method.name={name}", "method.deployment=fog")


SHORT = ("duration_s=20", "drain_s=30")


@functools.cache  # bn_adapt and roid's default run serve two tests each
def predictions(*overrides: str) -> np.ndarray:
    samples = simulate(small(*overrides, *SHORT, seed=1))[0]["samples"]
    return samples.sort_values(["device", "arrival_s"])["pred"].to_numpy()


@pytest.mark.parametrize("name", ["roid", "rotta"])
def test_default_step_changes_predictions(name):
    """Defaults that act: with the preset's rate each predicts differently from BN adaptation (RoTTA mostly
    through its robust statistics: its teacher takes 0.1 % of the student's change per update)."""
    assert (predictions(f"method.name={name}") != predictions("method.name=bn_adapt")).sum() > 0


def test_roid_gradient_step_itself_changes_predictions():
    """Not only the prior correction: the default rate flips predictions that a vanishing one does not."""
    assert (predictions("method.name=roid") != predictions("method.name=roid", "method.lr=1e-10")).sum() > 0
