"""Ideal network (infinite bandwidth, zero latency, instant edge and cloud) reduces the
simulation to the plain sequential CEMA loop, prediction for prediction."""

from __future__ import annotations

import numpy as np
import pytest

from cemasim import runner
from cemasim.oracle import sequential_cema
from tests.conftest import small

IDEAL = ["fleet.devices=1", "uplink.bandwidth_mbps=null", "uplink.latency_ms=0", "downlink.bandwidth_mbps=null",
         "downlink.latency_ms=0", "cloud.profile=instant", "fleet.profile=instant", "upload.queue_capacity=null"]


@pytest.mark.parametrize("extra", [["method.name=cema"], ["method.name=upload_all", "method.norm_mode=running"],
                                   ["method.name=cema", "upload.encoding=jpeg", "selection.redundancy_filter=true",
                                    "selection.redundancy_eps=0.4"]])
def test_ideal_network_equals_sequential_loop(extra):
    sc = small(*IDEAL, *extra)
    tables, summary, _ = runner.simulate(sc)
    ref = sequential_cema(sc)
    samples = tables["samples"]
    assert summary["refreshes"] > 3, "the scenario must exercise the cloud"
    np.testing.assert_array_equal(samples["pred"].to_numpy(), ref["pred"])
    np.testing.assert_allclose(samples["entropy"].to_numpy(), ref["entropy"], rtol=1e-5, atol=1e-6)
    # zero delay everywhere: every prediction used parameters of age 0 once the first refresh came
    assert summary["upload_delay_mean_s"] == 0.0


def test_a_real_network_departs_from_the_sequential_loop():
    """With latency and finite bandwidth, parameters arrive late: predictions differ somewhere."""
    sc = small("fleet.devices=1", "uplink.bandwidth_mbps=0.01", "uplink.latency_ms=2000")
    tables, _, _ = runner.simulate(sc)
    ref = sequential_cema(sc)
    assert len(ref["pred"]) == len(tables["samples"])
    assert (tables["samples"]["entropy"].to_numpy() != ref["entropy"]).any()
