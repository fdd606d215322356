"""Selection policies (methods/policies.py): each meets its target on synthetic streams, and with an
unconstrained link every policy reduces to the paper's selection."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cemasim.methods.policies import (
    SELECTION_POLICIES,
    BackpressureGate,
    BudgetGate,
    LinkView,
    PolicyConfig,
    RateMeter,
    StalenessGate,
    make_gate,
)
from cemasim.scenario.keys import SCHEMA

ROOT = Path(__file__).resolve().parent.parent


def stream(gate, seconds: float, every_s: float, n: int, rate_bps, seed: int = 0):
    """Feed `gate` batches of n candidates (uniform scores, PNG-like sizes 600-800 bytes) every
    `every_s` seconds; `rate_bps(t)` is the link rate the device measures. Returns (time, bytes) sent."""
    rng = np.random.default_rng(seed)
    sent = []
    t = 0.0
    while t < seconds:
        scores = rng.random(n)
        sizes = rng.integers(600, 801, n)
        chosen = gate.choose(LinkView(t, 0, rate_bps(t)), scores, sizes)
        assert np.all(np.diff(chosen) > 0), "indices ascending, each once"
        sent += [(t, int(sizes[i])) for i in chosen]
        t += every_s
    return pd.DataFrame(sent, columns=["t", "bytes"])


def per_window(sent: pd.DataFrame, window_s: float, start_s: float, end_s: float) -> np.ndarray:
    edges = np.arange(start_s, end_s + 1e-9, window_s)
    return np.histogram(sent["t"], bins=edges, weights=sent["bytes"])[0]


def test_policy_names_match_the_schema():
    assert SELECTION_POLICIES.names() == ["static", "dynamic", "budget", "staleness", "backpressure"]
    assert StalenessGate.expires_uploads and BackpressureGate.reads_backlog and not BudgetGate.expires_uploads
    assert make_gate(PolicyConfig("static")) is None and make_gate(PolicyConfig("dynamic")) is None
    for name, cls in (("budget", BudgetGate), ("staleness", StalenessGate), ("backpressure", BackpressureGate)):
        assert type(make_gate(PolicyConfig(name))) is cls


@pytest.mark.parametrize("every_s, n", [(0.25, 1), (16.0, 64)])
def test_budget_meets_a_byte_budget_on_a_stationary_stream(every_s, n):
    """4 samples/s one at a time, or in batches of 64 every 16 s (a 60 s window then holds 3 or 4
    decisions): every window's bytes within 5 % of the budget, and never above it."""
    budget = 0.3 * 4 * 700  # 30 % of the offered bytes per second
    for seed in range(3):
        gate = BudgetGate(PolicyConfig("budget", budget_bytes_per_s=budget, window_s=60.0))
        windows = per_window(stream(gate, 3600, every_s, n, lambda t: None, seed), 60.0, 0.0, 3600.0)
        assert np.all(windows <= budget * 60)
        assert np.all(windows >= 0.95 * budget * 60), windows / (budget * 60)


def test_budget_keeps_the_most_informative_candidates():
    gate = BudgetGate(PolicyConfig("budget", budget_bytes_per_s=0.25 * 64 * 700 / 16, window_s=60.0))
    rng = np.random.default_rng(1)
    kept, dropped = [], []
    for k in range(200):
        scores = rng.random(64)
        chosen = gate.choose(LinkView(16.0 * k, 0, None), scores, np.full(64, 700))
        mask = np.zeros(64, bool)
        mask[chosen] = True
        if k >= 10:
            kept += scores[mask].tolist()
            dropped += scores[~mask].tolist()
    assert np.mean(kept) > 0.7 and np.mean(dropped) < 0.45  # the top quarter of a uniform stream, roughly


def test_budget_follows_a_step_in_the_measured_link_rate():
    """link_fraction of the measured rate: the rate drops 4x at t = 1810 s. The window in which it drops
    spends at most the old budget; every full window after it is within 5 % of the new one."""
    offered = 4 * 700 * 8  # bits per second offered at 4 Hz
    rate = lambda t: 0.5 * offered if t < 1810 else 0.125 * offered  # noqa: E731
    old, new = (0.8 * 0.5 * offered / 8 * 60), (0.8 * 0.125 * offered / 8 * 60)
    sent = stream(BudgetGate(PolicyConfig("budget", link_fraction=0.8, window_s=60.0)), 3600, 0.25, 1, rate)
    windows = per_window(sent, 60.0, 0.0, 3600.0)
    assert np.all(np.abs(windows[:30] / old - 1) < 0.05)
    assert windows[30] <= old
    assert np.all(np.abs(windows[31:] / new - 1) < 0.05), windows[31:] / new


def test_staleness_never_sends_a_sample_predicted_late():
    cfg = PolicyConfig("staleness", max_delay_s=10.0)
    gate = StalenessGate(cfg)
    rng = np.random.default_rng(2)
    for _ in range(200):
        queued, rate = int(rng.integers(0, 20_000)), float(rng.uniform(1e3, 1e5))
        scores, sizes = rng.random(32), rng.integers(600, 801, 32)
        chosen = gate.choose(LinkView(0.0, queued, rate), scores, sizes)
        # the chosen are the best-scored prefix, and the last of them still arrives within the bound
        order = np.argsort(-scores, kind="stable")
        assert sorted(order[:len(chosen)].tolist()) == chosen.tolist()
        if len(chosen):
            assert (queued + sizes[chosen].sum()) * 8 / rate <= cfg.max_delay_s + 1e-9
        if len(chosen) < 32:  # and the next one would not have
            nxt = order[len(chosen)]
            assert (queued + sizes[chosen].sum() + sizes[nxt]) * 8 / rate > cfg.max_delay_s


def test_backpressure_halves_above_the_target_and_recovers_below():
    cfg = PolicyConfig("backpressure", backlog_target=16, increase=0.1, floor=0.05)
    gate = BackpressureGate(cfg)
    rng = np.random.default_rng(3)
    for _ in range(20):  # history of scores
        gate.choose(LinkView(0.0, 0, None), rng.random(64), np.full(64, 700))
    assert gate.share == 1.0
    gate.hint(1.0, 40)
    gate.hint(2.0, 40)
    assert gate.share == 0.25
    kept = np.mean([len(gate.choose(LinkView(0.0, 0, None), rng.random(64), np.full(64, 700))) / 64
                    for _ in range(100)])
    assert abs(kept - 0.25) < 0.05
    for _ in range(10):
        gate.hint(3.0, 16)  # at the target: not above it
    assert gate.share == 1.0
    for _ in range(10):
        gate.hint(4.0, 1000)
    assert gate.share == cfg.floor


def test_rate_meter_follows_a_step_within_its_window():
    meter = RateMeter(n=16)
    assert meter.rate_bps() is None
    t = 0.0
    for _ in range(40):
        meter.observe(1000, t, t + 0.8)  # 10 kbit/s
        t += 1
    assert meter.rate_bps() == pytest.approx(1e4)
    for _ in range(16):
        meter.observe(1000, t, t + 3.2)  # 2.5 kbit/s
        t += 4
    assert meter.rate_bps() == pytest.approx(2.5e3)
    meter.observe(1000, t, t)
    assert math.isfinite(meter.rate_bps() or 0.0)


def test_policy_defaults_are_the_validation_choice():
    """The schema's defaults are what analysis/adaptive/choose_policies.py chose on the validation
    corruptions (selected.csv)."""
    chosen = pd.read_csv(ROOT / "analysis" / "adaptive" / "selected.csv")
    assert sorted(chosen["policy"]) == ["backpressure", "budget", "staleness"]
    for key, value in zip(chosen["key"], chosen["value"], strict=True):
        section, name = key.split(".")
        assert SCHEMA.fields[section].fields[name].default == pytest.approx(value), key
        assert getattr(PolicyConfig(), name) == pytest.approx(value), f"PolicyConfig.{name}"


# --- in the simulator -------------------------------------------------------------------------------

SHORT = {"fleet.devices": 3, "duration_s": 120, "drain_s": 60, "output.plots": False}


def run(**overrides):
    import cemasim

    return cemasim.simulate(cemasim.load_scenario(ROOT / "scenarios" / "quickstart.yaml", {**SHORT, **overrides}))


@pytest.fixture(scope="module")
def paper():
    return run()


@pytest.mark.parametrize("policy", ["budget", "staleness", "backpressure"])
def test_with_an_unconstrained_link_every_policy_is_the_papers_selection(paper, policy):
    """5 Mbit/s per device, an idle T4: no gate holds anything back; every table equals dynamic's
    (the refreshes of backpressure carry 4 more bytes, its hint)."""
    result = run(**{"selection.policy": policy})
    for name in ("samples", "uploads", "cloud_jobs"):
        pd.testing.assert_frame_equal(result.tables[name], paper.tables[name], check_like=True)
    hint = 4 if policy == "backpressure" else 0
    assert (result.tables["refreshes"]["size_bytes"] == paper.tables["refreshes"]["size_bytes"] + hint).all()


def test_budget_holds_each_device_to_its_share_of_the_measured_link():
    """10 kbit/s, link_fraction 0.5: once a device has measured its link, its enqueued upload bytes per
    60 s window never exceed 0.5 x 10 kbit/s x 60 s, and the queue stays short (the paper's selection
    queues minutes of uploads here)."""
    slow = {"uplink.bandwidth_mbps": 0.01, "duration_s": 300}
    result = run(**slow, **{"selection.policy": "budget", "selection.link_fraction": 0.5})
    ups = result.tables["uploads"]
    budget = 0.5 * 0.01e6 / 8 * 60
    for _, dev in ups.groupby("device"):
        first_measured = dev["tx_end_s"].min()
        later = dev[dev["enqueued_s"] >= (first_measured // 60 + 1) * 60]
        per_window = later.groupby(later["enqueued_s"] // 60)["size_bytes"].sum()
        assert len(per_window) >= 3 and (per_window <= budget).all(), per_window
    paper_slow = run(**slow)
    assert result.summary["upload_delay_p95_s"] < 0.5 * paper_slow.summary["upload_delay_p95_s"]


def test_staleness_sends_nothing_that_waited_past_its_bound():
    result = run(**{"uplink.bandwidth_mbps": 0.01, "selection.policy": "staleness", "selection.max_delay_s": 10.0})
    ups = result.tables["uploads"]
    sent = ups[ups["dropped"] == ""]
    assert len(sent) > 0 and ((sent["tx_start_s"] - sent["enqueued_s"]) <= 10.0 + 1e-9).all()
    assert result.summary["drops_queue_full"] == 0


def test_backpressure_slows_devices_whose_cloud_backlog_is_above_the_target():
    """A cloud 1,000x slower than a T4 (jobs queue for minutes): with a target of 1 upload the devices'
    shares fall, so they upload less than the paper's selection on the same stream."""
    slow_cloud = {"cloud.profile": {"peak_flops_per_s": 1.0e9, "utilization": 0.3, "overhead_s": 0.002,
                                    "can_train": True}, "duration_s": 240}
    paper_slow = run(**slow_cloud)
    result = run(**slow_cloud, **{"selection.policy": "backpressure", "selection.backlog_target": 1})
    hints = result.tables["refreshes"]["backlog"]
    assert (hints >= 0).all() and (hints > 1).any()
    assert (paper_slow.tables["refreshes"]["backlog"] == -1).all()
    assert result.summary["uploaded_samples"] < 0.8 * paper_slow.summary["uploaded_samples"]


def test_policies_gate_only_the_methods_that_feed_cemas_cloud():
    import cemasim
    from cemasim.errors import ConfigError

    gated = "upload_all, random_upload, cema"  # the methods registered as gateable, in registration order
    with pytest.raises(ConfigError, match=f"selection.policy: budget gates the uploads of {gated}"):
        cemasim.load_scenario(ROOT / "scenarios" / "quickstart.yaml",
                              {"method.name": "tent", "selection.policy": "budget"})


def test_a_fixed_byte_budget_per_window_from_the_scenario():
    """selection.budget_bytes_per_s and window_s: at most 500 B/s x 30 s enqueued per device and window
    (the link is fast: the fixed target, not the measured rate, binds)."""
    result = run(**{"selection.policy": "budget", "selection.budget_bytes_per_s": 500.0, "selection.window_s": 30.0})
    ups = result.tables["uploads"]
    per_window = ups.groupby([ups["device"], ups["enqueued_s"] // 30])["size_bytes"].sum()
    assert len(per_window) >= 8 and (per_window <= 500 * 30).all(), per_window
    assert per_window.max() >= 0.9 * 500 * 30  # and it spends the budget when the stream offers enough
