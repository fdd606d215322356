"""Replay buffer, norm-state handling and the FLOP cost model."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cemasim.methods.replay import ReplayBuffer
from cemasim.models import cost, norm, zoo
from cemasim.models.cost import FlopCounter
from cemasim.models.profiles import PROFILES, profile_from


def imgs(values: list[int]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1, 1)


def test_replay_is_fifo_with_capacity():
    buf = ReplayBuffer(capacity=100)
    for start in range(0, 250, 10):
        buf.add(imgs(list(range(start, start + 10))))
    assert len(buf) == 100
    held = sorted(buf.sample(1000, torch.Generator().manual_seed(0)).flatten().tolist())
    assert held == list(range(150, 250))  # the 100 newest, each exactly once


def test_replay_draws_index_the_images_oldest_first():
    """The draws are randperm(size) over the held images oldest first, before and after the ring wraps
    (what the released code's history indexing and every earlier cemasim gave for one seed)."""
    for capacity, added in ((7, 5), (7, 7), (7, 19), (1, 3)):
        buf, held = ReplayBuffer(capacity), []
        for v in range(added):
            buf.keep(torch.tensor([[v]], dtype=torch.uint8), 0)
            held = [*held, v][-capacity:]
        for n in (1, 3, 100):
            g, ref = torch.Generator().manual_seed(n), torch.Generator().manual_seed(n)
            want = torch.tensor(held)[torch.randperm(len(held), generator=ref)[:n]]
            assert buf.sample(n, g).flatten().tolist() == want.tolist()


def test_replay_keeps_the_upload_image_itself():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    buf = ReplayBuffer(4)
    buf.keep(images, 1)
    assert buf._held[0][0] is images  # shared with the waiting upload, not a second copy


def test_replay_sampling_is_uniform_without_replacement():
    buf = ReplayBuffer(capacity=50)
    buf.add(imgs(list(range(50))))
    g = torch.Generator().manual_seed(1)
    counts = torch.zeros(50)
    for _ in range(400):
        draw = buf.sample(10, g).flatten()
        assert len(set(draw.tolist())) == 10
        counts[draw.long()] += 1
    assert counts.min() > 40 and counts.max() < 125  # mean 80


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).relu().mean((2, 3)))


def tiny():
    torch.manual_seed(0)
    net = TinyNet()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
        net.bn.weight.uniform_(0.5, 1.5)
    ref = TinyNet()
    ref.load_state_dict(net.state_dict())
    return norm.convert(net), ref.eval()


def test_eval_and_batch_modes_match_torch_batchnorm():
    net, ref = tiny()
    x = torch.randn(6, 1, 5, 5)
    state = norm.initial_state(net, norm.adaptable_names(net, with_stats=True))
    with torch.no_grad():
        assert torch.allclose(norm.forward(net, state, x, "eval"), ref(x), atol=1e-6)
        ref.bn.train()
        ref.bn.track_running_stats = False
        ref.bn.running_mean = ref.bn.running_var = None
        assert torch.allclose(norm.forward(net, state, x, "batch"), ref(x), atol=1e-5)


def test_train_mode_updates_only_the_state_passed_in():
    net, _ = tiny()
    state = norm.initial_state(net, norm.adaptable_names(net, with_stats=True))
    before_module = net.bn.running_mean.clone()
    before_state = state["bn.running_mean"].clone()
    norm.forward(net, state, torch.randn(8, 1, 5, 5) + 3, "train")
    assert torch.equal(net.bn.running_mean, before_module)  # the shared backbone is untouched
    assert not torch.equal(state["bn.running_mean"], before_state)


def test_mixed_mode_interpolates_statistics():
    net, _ = tiny()
    state = norm.initial_state(net, norm.adaptable_names(net, with_stats=True))
    x = torch.randn(6, 1, 5, 5)
    with torch.no_grad():
        assert torch.allclose(norm.forward(net, state, x, "mixed", prior=1.0), norm.forward(net, state, x, "eval"),
                              atol=1e-6)
        # prior 0: batch statistics with the unbiased variance (the authors' BNAdaptation, momentum 1),
        # which is what tbr computes for a layer's first batch
        assert torch.allclose(norm.forward(net, state, x, "mixed", prior=0.0),
                              norm.forward(net, norm.unset_stats(state), x, "tbr"), atol=1e-5)


def test_adaptable_names_and_payload_bytes():
    net, _ = tiny()
    assert norm.adaptable_names(net, False) == ["bn.weight", "bn.bias"]
    state = norm.initial_state(net, norm.adaptable_names(net, True))
    assert norm.state_bytes(state) == 4 * 4 * 4
    assert norm.state_bytes(norm.cast_state(state, torch.float16)) == 4 * 4 * 2


def test_flops_are_counted_per_sample_and_backward_costs_more():
    net, _ = tiny()
    fc = FlopCounter(net, (1, 5, 5))
    conv = 2 * 1 * 4 * 9 * 25  # multiply-adds of the 3x3 conv, 2 FLOPs each
    lin = 2 * 4 * 3
    assert fc.per_sample("forward") == pytest.approx(conv + lin)
    assert fc.per_sample("backward") > fc.per_sample("forward")


class TorchFlopCounterMode(FlopCounterMode):
    """torch's own counter, with the total where cemasim's FlopCount keeps it."""

    def __init__(self) -> None:
        super().__init__(display=False)

    @property
    def total(self) -> int:
        return self.get_total_flops()


@pytest.mark.parametrize("name", ["fmnist_edge_cnn", "fmnist_foundation_cnn"])
def test_flop_count_is_torchs_flop_counter_mode(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = zoo.build(name)
    passes = [(kind, mode) for kind in ("forward", "backward") for mode in ("batch", "eval", "tbr")]
    ours = [FlopCounter(model, (1, 28, 28)).per_sample(*p) for p in passes]
    monkeypatch.setattr(cost, "FlopCount", TorchFlopCounterMode)
    theirs = [FlopCounter(model, (1, 28, 28)).per_sample(*p) for p in passes]
    assert ours == theirs and min(ours) > 0


def test_counting_flops_does_not_import_dynamo() -> None:
    # The reason FlopCount exists: FlopCounterMode imports torch._dynamo in every process that counts.
    code = ("import sys; from cemasim.models import zoo; from cemasim.models.cost import FlopCounter; "
            "FlopCounter(zoo.build('fmnist_edge_cnn'), (1, 28, 28)).per_sample('backward'); "
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_profiles_time_and_instant():
    p = PROFILES.get("t4")
    assert p.seconds(p.flops_per_s) == pytest.approx(1 + p.overhead_s)
    assert PROFILES.get("instant").seconds(1e18) == 0.0
    inline = profile_from({"peak_flops_per_s": 1e9, "utilization": 0.5, "overhead_s": 0.01, "can_train": False})
    assert inline.seconds(1e9) == pytest.approx(2.01)
    assert math.isinf(PROFILES.get("instant").peak_flops_per_s)
