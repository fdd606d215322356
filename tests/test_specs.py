"""The one boundary between the scenario and the simulator: assembly.assemble turns a Scenario into a
RunSpec whose units are bits, bytes and seconds, whose nulls are decided, and from which no Scenario
can be reached (the simulator never sees one; tests/test_layers.py keeps sim/ from importing it)."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pandas as pd
import pytest
import torch

from cemasim import scenario
from cemasim.assembly import assemble, bits_per_s
from cemasim.errors import ConfigError
from cemasim.net.radio import RADIOS
from cemasim.scenario import Scenario
from cemasim.specs import Params
from tests.conftest import small


def reachable(obj, seen: set[int] | None = None, depth: int = 0):
    """Every object reachable from `obj` through dataclass fields, containers and plain instances'
    attributes (not into torch modules or tensors: the models hold no scenario)."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 12 or isinstance(obj, (torch.nn.Module, torch.Tensor, str, bytes, int, float)):
        return
    seen.add(id(obj))
    yield obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        children = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif isinstance(obj, dict):
        children = list(obj.values())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        children = list(obj)
    elif isinstance(obj, Params):
        children = [obj[k] for k in obj]
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("cemasim"):
        children = list(vars(obj).values())
    else:
        children = []
    for child in children:
        yield from reachable(child, seen, depth + 1)


def test_no_scenario_reaches_the_simulator():
    sc = scenario.load("scenarios/commuter.yaml", ["fleet.devices=24", "duration_s=20", "compute_device=cpu"])
    spec = assemble(sc)
    assert len(spec.classes) > 1  # device classes, traces, a shared segment: every kind of section
    found = [type(o).__name__ for o in reachable(spec) if isinstance(o, Scenario)]
    assert not found
    planner = spec.classes[0].planner
    assert not any(isinstance(o, Scenario) for o in reachable(planner))


def test_units_and_nulls_are_decided_at_the_boundary():
    sc = small("uplink.bandwidth_mbps=2.5", "uplink.latency_ms=30", "downlink.bandwidth_mbps=null",
               "uplink.loss.model=bernoulli", "uplink.loss.rate=0.1", "downlink.loss.model=bernoulli",
               "downlink.loss.rate=0.1", "downlink.loss.retry_timeout_ms=50", "uplink.shared_mbps=8",
               "cloud.ingress_mbps=20", "energy.radio=lte", "energy.rx_nj_per_bit=3")
    spec = assemble(sc)
    up, down = spec.classes[0].uplink, spec.classes[0].downlink
    assert (up.bits_per_s, up.latency_s, up.capacity) == (2.5e6, 0.030, "constant")
    assert down.bits_per_s == math.inf  # null bandwidth: unlimited
    assert up.loss.retry_s == pytest.approx((2 * 30 + 200) / 1e3)  # null retry timeout: two latencies + 200 ms
    assert down.loss.retry_s == pytest.approx(0.050)
    assert up.random and down.random and up.shared is not None and up.shared.bits_per_s == 8e6
    assert spec.cloud is not None and spec.cloud.ingress_bits_per_s == 20e6 and spec.cloud.egress_bits_per_s is None
    energy = spec.classes[0].energy
    assert (energy.tx_nj_per_bit, energy.rx_nj_per_bit) == (RADIOS.get("lte").tx_nj_per_bit, 3.0)
    assert energy.compute_w == spec.classes[0].profile.active_w and math.isnan(energy.compute_nj_per_flop)
    assert spec.horizon_s == sc.duration_s + sc.drain_s
    assert (bits_per_s(None), bits_per_s(1.5)) == (None, 1.5e6)


def test_a_method_without_cloud_gets_no_cloud_spec_but_the_summary_its_hardware():
    spec = assemble(small("method.name=source", "cloud.gpus=3"))
    assert spec.cloud is None and spec.cloud_gpus == 3 and spec.upload.expire_s is None


def test_the_staleness_gate_expires_uploads_on_the_uplink():
    spec = assemble(small("selection.policy=staleness", "selection.max_delay_s=7"))
    assert spec.upload.expire_s == 7


def test_params_are_read_only_plain_data_that_pickles():
    params = Params({"rate_hz": 2.0, "inner": {"a": 1}})
    assert params.rate_hz == 2.0 and params["inner"].a == 1 and dict(params) == {"rate_hz": 2.0,
                                                                                 "inner": {"a": 1}}
    with pytest.raises(AttributeError):
        params.rate_hz = 3.0
    with pytest.raises(AttributeError):
        params.missing  # noqa: B018
    assert dict(pickle.loads(pickle.dumps(params))) == dict(params)


@pytest.mark.parametrize("overrides, message", [
    (["uplink.capacity=trace"], "uplink.trace: required when uplink.capacity is trace"),
    (["downlink.capacity=constant", "downlink.trace=scenarios/traces/wifi_office.csv"],
     "downlink.capacity: constant ignores downlink.trace (scenarios/traces/wifi_office.csv); set one of them"),
    (["uplink.capacity_params={a: 1}"], "uplink.capacity_params: uplink.capacity is not set, so no model reads them"),
    (["uplink.capacity=constant", "uplink.capacity_params={a: 1}"],
     "uplink.capacity_params: constant declares no parameters, got a"),
    (["uplink.capacity=fluid"], "uplink.capacity: capacity model 'fluid' is unknown"),
    (["cloud.scheduler=lifo"], "cloud.scheduler: GPU scheduling policy 'lifo' is unknown"),
    (["fleet.predict_ahead=soon"], "fleet.predict_ahead: must be auto or a number of samples, got 'soon'"),
    (["fleet.predict_ahead=-1"], "fleet.predict_ahead: must be >= 0, got -1"),
    (["fleet.batch_across_devices=maybe"], "fleet.batch_across_devices: must be auto or true or false, got 'maybe'"),
    (["fleet.batch_across_devices=1"], "fleet.batch_across_devices: must be boolean or string"),
])
def test_capacity_scheduler_and_speed_up_keys_say_what_is_wrong(overrides, message):
    with pytest.raises(ConfigError) as err:
        small(*overrides)
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


def test_an_explicit_trace_model_equals_the_implicit_one():
    trace = "uplink.trace=scenarios/traces/wifi_office.csv"
    a, b = assemble(small(trace)).classes[0].uplink, assemble(small(trace, "uplink.capacity=trace")).classes[0].uplink
    assert a == b


def test_the_exact_speed_ups_are_decided_by_the_simulator():
    from cemasim.assembly import Speedups

    auto = Params({"batch_across_devices": "auto", "predict_ahead": "auto"})
    aligned = Params({"process": "constant", "aligned": True, "batch_size": 1})
    random = Params({"process": "constant", "aligned": False, "batch_size": 1})
    cpu = Speedups(True, 10_000, 4 * 28 * 28, uploads=True)
    assert cpu.merge_forward(auto, aligned) and not cpu.merge_forward(auto, random)
    assert not cpu.merge_forward(auto, Params({**aligned, "batch_size": 8}))  # merging batches of 8 lost time
    assert cpu.predict_ahead(auto, merged=True) == 0  # merged devices need no window
    assert cpu.predict_ahead(auto, merged=False) == 256 * 2**20 // (10_000 * 3136) == 8  # held images bounded
    assert Speedups(True, 10_000, 3136, uploads=False).predict_ahead(auto, merged=False) == 64  # nothing held
    assert Speedups(True, 10**6, 3136, uploads=True).predict_ahead(auto, merged=False) == 0
    gpu = Speedups(False, 10, 3136, uploads=False)  # equality with the plain run is tested on the CPU only
    assert not gpu.merge_forward(auto, aligned) and gpu.predict_ahead(auto, merged=False) == 0
    forced = Params({"batch_across_devices": True, "predict_ahead": 5})
    assert gpu.merge_forward(forced, random) and gpu.predict_ahead(forced, merged=True) == 5
    off = Params({"batch_across_devices": False, "predict_ahead": 0})
    assert not cpu.merge_forward(off, aligned) and cpu.predict_ahead(off, merged=False) == 0


def test_a_default_batch_one_fleet_predicts_ahead_and_records_the_plain_run():
    from cemasim.runner import simulate
    from cemasim.sim.fleet import Fleet

    sets = ["arrivals.batch_size=1", "duration_s=12", "method.name=source", "compute_device=cpu"]
    fleet = Fleet(assemble(small(*sets)))
    assert all(d.ahead is not None and d.ahead.limit == 64 for d in fleet.devices) and fleet.batcher is None
    fast = fleet.run().recorder.tables()
    plain, _, _ = simulate(small(*sets, "fleet.predict_ahead=0"))
    assert sum(d.ahead.passes for d in fleet.devices) < len(plain["samples"]) / 4
    for name in plain:
        pd.testing.assert_frame_equal(plain[name], fast[name], check_exact=True, obj=name)
    aligned = [*sets, "arrivals.process=constant", "arrivals.aligned=true"]
    merged = Fleet(assemble(small(*aligned)))
    assert merged.batcher is not None and all(d.ahead is None and d.batcher is merged.batcher for d in merged.devices)
    tables, summary, _ = simulate(small(*aligned))
    plain, plain_summary, _ = simulate(small(*aligned, "fleet.batch_across_devices=false"))
    assert summary["events"] == plain_summary["events"]  # the merge's own flush events are not counted
    for name in plain:
        pd.testing.assert_frame_equal(plain[name], tables[name], check_exact=True, obj=name)
