"""Workloads end to end: shift protocols, fleet assignments, label shift, arrival processes, and
real dataset formats / external models driving the simulator (tiny generated fixtures)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cemasim import runner
from cemasim.assembly import assemble
from cemasim.data.shifts import GRADUAL, device_schedule, image_order
from cemasim.errors import ConfigError, DataError
from cemasim.sim.fleet import Fleet
from tests.conftest import small
from tests.test_datasets import PER_SEV, cifar10_c_root, imagenet_r_root  # noqa: F401  (fixtures)
from tests.test_simulation import _planned_samples, check_invariants

SEGS = [{"corruption": "fog", "severity": 2, "duration_s": 9.0},
        {"corruption": "contrast", "severity": 4, "duration_s": 9.0}]


def test_gradual_protocol_walks_severity_up_and_down():
    sch = device_schedule(SEGS, "same", False, np.random.default_rng(0), protocol="gradual")
    assert [s for _, s in sch.domains] == list(GRADUAL) * 2
    assert sch.domain_index(np.array([0.5, 4.5, 8.5])).tolist() == [0, 4, 8]


def test_mixed_protocol_draws_domains_per_sample():
    sch = device_schedule(SEGS, "same", True, np.random.default_rng(0), protocol="mixed")
    idx = sch.domain_index(np.zeros(400), np.random.default_rng(1))
    assert set(idx.tolist()) == {0, 1} and 150 < (idx == 0).sum() < 250


def test_disjoint_and_random_fleet_assignments():
    many = [dict(SEGS[0], corruption=c) for c in ("fog", "contrast", "pixelate")]
    for d in range(6):
        sch = device_schedule(many, "disjoint", True, np.random.default_rng(d), device=d)
        assert sch.domains == [(many[d % 3]["corruption"], 2)]
    drawn = {tuple(device_schedule(many, "random", True, np.random.default_rng(d)).domains) for d in range(20)}
    assert any(len(set(o)) < len(o) for o in drawn)  # with replacement: repeats happen


def test_label_shift_modes():
    labels = np.repeat(np.arange(10), 100)
    pool = np.arange(1000)
    rng = np.random.default_rng(0)
    sorted_stream = image_order(pool, labels, 1000, "sorted", rng)
    assert np.all(np.diff(labels[sorted_stream]) >= 0)
    skewed = image_order(pool, labels, 2000, "dirichlet", rng, alpha=0.05)
    counts = np.bincount(labels[skewed], minlength=10)
    assert counts.max() > 0.5 * 2000  # a small alpha concentrates the class mix
    uniform = image_order(pool, labels, 1000, "none", rng)
    assert sorted(uniform.tolist()) == list(range(1000))


def test_reset_protocol_restarts_from_the_source_each_segment():
    cont, _, _ = runner.simulate(small())
    reset, _, _ = runner.simulate(small("shift.protocol=reset"))
    check_invariants(reset, len(cont["samples"]))
    seg2 = reset["samples"]["arrival_s"] >= 20
    first_seg = ~seg2
    pd.testing.assert_series_equal(cont["samples"].loc[first_seg, "pred"], reset["samples"].loc[first_seg, "pred"])
    assert (cont["samples"].loc[seg2, "entropy"] != reset["samples"].loc[seg2, "entropy"]).any()


@pytest.mark.parametrize("extra", [["shift.protocol=gradual"], ["shift.protocol=mixed"], ["shift.order=random"],
                                   ["shift.label_shift=dirichlet"], ["arrivals.process=onoff"]])
def test_protocols_keep_the_invariants(extra):
    sc = small(*extra)
    tables, _summary, _ = runner.simulate(sc)
    check_invariants(tables, _planned_samples(sc))


def test_trace_arrivals(tmp_path):
    trace = tmp_path / "arrivals.csv"
    pd.DataFrame({"device": [0, 0, 0, 1], "time_s": [1.0, 2.5, 2.0, 3.0]}).to_csv(trace, index=False)
    fleet = Fleet(assemble(small(f"arrivals.trace={trace}", "arrivals.process=trace")))
    assert np.concatenate([b.arrival_s for b in fleet.devices[0].batches]).tolist() == [1.0, 2.0, 2.5]
    assert np.concatenate([b.arrival_s for b in fleet.devices[1].batches]).tolist() == [3.0]
    with pytest.raises(ConfigError, match="arrivals.trace: no such file"):
        small(f"arrivals.trace={tmp_path / 'none.csv'}", "arrivals.process=trace")


def test_cifar10_c_with_external_models_runs_the_fleet(cifar10_c_root):  # noqa: F811
    """Pre-corrupted data: each sample comes from its domain's rows; torchvision models, random weights."""
    sc = small("data.dataset=cifar10_c", f"data.root={cifar10_c_root}", "fleet.devices=1", "duration_s=12",
               "models.edge=torchvision:resnet18", "models.edge_weights=random",
               "models.foundation=torchvision:resnet18", "models.foundation_weights=random",
               "shift.segments=[{corruption: gaussian_noise, severity: 2, duration_s: 6}, "
               "{corruption: fog, severity: 5, duration_s: 6}]")
    fleet = Fleet(assemble(sc))
    tables, summary, _ = runner.simulate(sc)
    check_invariants(tables, fleet.n_samples)
    images = np.concatenate([b.image_idx for b in fleet.devices[0].batches])
    domains = np.concatenate([b.domain for b in fleet.devices[0].batches])
    src = fleet.workload.source
    for img, d in zip(images, domains, strict=True):  # the image's file/severity block is the sample's domain
        assert src.domain_names[src.domains[img]] == fleet.workload.domains[d]
    assert summary["uploaded_samples"] >= 0 and fleet.edge_spec.input_shape == (3, 32, 32)


def test_missing_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="expected"):
        Fleet(assemble(small("data.dataset=cifar10_c", f"data.root={tmp_path}", "models.edge=torchvision:resnet18",
                    "models.foundation=torchvision:resnet18", "models.edge_weights=random",
                    "models.foundation_weights=random")))


def test_imagenet_r_masks_outputs_to_its_classes(imagenet_r_root):  # noqa: F811
    sc = small("data.dataset=imagenet_r", f"data.root={imagenet_r_root}", "fleet.devices=1", "duration_s=3",
               "arrivals.rate_hz=2", "method.name=source", "models.edge=torchvision:resnet18",
               "models.edge_weights=random", "models.foundation=torchvision:resnet18",
               "models.foundation_weights=random", "shift.segments=[{corruption: clean, severity: 1, duration_s: 3}]")
    fleet = Fleet(assemble(sc))
    assert fleet.edge_spec.num_classes == 200
    tables, _, _ = runner.simulate(sc)
    assert tables["samples"]["label"].between(0, 199).all() and tables["samples"]["pred"].between(0, 199).all()
