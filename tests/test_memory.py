"""What a run keeps, so that 100,000 devices fit in one process: payloads go once used, devices that
never write their norm tensors share the fleet's, per-sample records are packed columns."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cemasim.assembly import assemble
from cemasim.methods import METHODS
from cemasim.sim.fleet import Fleet
from cemasim.sim.records import Columns
from tests.conftest import small


def run(*overrides: str) -> Fleet:
    fleet = Fleet(assemble(small(*overrides)))
    fleet.run()
    return fleet


def test_payloads_are_released_once_used_or_dropped():
    fleet = run("method.name=cema", "uplink.bandwidth_mbps=0.05", "upload.queue_capacity=4")
    uploads = fleet.recorder.uploads
    trained = [u for u in uploads if not math.isnan(u.trained_s)]
    dropped = [u for u in uploads if u.dropped]
    waiting = [u for u in uploads if math.isnan(u.trained_s) and not u.dropped]
    assert trained and dropped and waiting  # all three kinds occur on this slow, short-queued link
    assert all(u.image is None for u in trained + dropped)
    assert all(u.image is not None for u in waiting)  # a chunk in the making still needs them
    refreshes = fleet.recorder.refreshes
    assert refreshes and all(r.payload is None and r.on_applied is None for r in refreshes
                            if not math.isnan(r.applied_s) or r.dropped)


def test_devices_that_never_write_share_the_source_tensors():
    cases = (("cema", "cloud", True), ("source", "edge", True), ("bn_adapt", "edge", True), ("tent", "cloud", True),
             ("tent", "edge", False), ("onda", "edge", False))
    for method, deployment, shares in cases:
        sc = small(f"method.name={method}", f"method.deployment={deployment}", "fleet.profile=jetson-nano")
        fleet = Fleet(assemble(sc))
        assert fleet.method.edge_writes_state is not shares, method
        assert all((t is fleet.source_state[n]) is shares for n, t in fleet.devices[0].learner.state.items()), method


@pytest.mark.parametrize("method", METHODS.names())
def test_no_method_writes_the_fleets_source_tensors(method):
    """Devices share the fleet's source tensors unless `edge_writes_state`: a method that wrote them in
    place anyway would change every device's starting point, and shows here."""
    fleet = Fleet(assemble(small(f"method.name={method}", "duration_s=12", "drain_s=20", "fleet.profile=jetson-nano")))
    before = {n: t.clone() for n, t in fleet.source_state.items()}
    fleet.run()
    assert all(torch.equal(fleet.source_state[n], t) for n, t in before.items())


def test_refreshed_devices_hold_their_own_tensors():
    fleet = run("method.name=cema")
    refreshed = [d for d in fleet.devices if d.version > 0]
    assert refreshed
    for device in refreshed:
        assert all(t is not fleet.source_state[n] for n, t in device.learner.state.items())


def test_cema_students_borrow_the_source_tensors_until_they_distil():
    """A CEMA worker's student is the fleet's source tensors until its first distillation step copies
    them; the run's tables equal those of students copied at the build (the old way, forced here)."""
    fleet = Fleet(assemble(small("method.name=cema", "fleet.devices=3")))
    workers = list(fleet.cloud_side().workers.values())
    assert workers and all(w.student_borrowed for w in workers)
    assert all(t is fleet.source_state[n] for w in workers for n, t in w.student.state.items())
    copied = Fleet(assemble(small("method.name=cema", "fleet.devices=3")))
    for w in copied.cloud_side().workers.values():
        w.student.state, w.student_borrowed = {n: t.clone() for n, t in w.student.state.items()}, False
    before = {n: t.clone() for n, t in fleet.source_state.items()}
    tables, copied_tables = fleet.run().recorder.tables(), copied.run().recorder.tables()
    distilled = [w for w in workers if w.student.steps > 0]
    assert distilled and not any(w.student_borrowed for w in distilled)
    assert all(t is not fleet.source_state[n] for w in distilled for n, t in w.student.state.items())
    assert all(torch.equal(fleet.source_state[n], t) for n, t in before.items())
    for name in tables:
        pd.testing.assert_frame_equal(tables[name], copied_tables[name], check_exact=True, obj=name)


def test_a_built_fleet_stays_collectable():
    """The build moves its objects to the oldest generation (gc.freeze then unfreeze), not into a frozen
    one: a fleet dropped afterwards, cycles and all, is collected."""
    import gc
    import weakref

    def build() -> weakref.ref:
        fleet = Fleet(assemble(small("method.name=cema", "fleet.devices=3")))
        assert gc.get_freeze_count() == 0 and gc.isenabled()
        return weakref.ref(fleet.devices[0])

    device = build()
    gc.collect()
    assert device() is None


def test_columns_equal_the_concatenated_batches():
    rng = np.random.default_rng(0)
    columns = Columns({"device": np.int32, "x": np.float32, "flag": np.bool_})
    parts = []
    for i in range(300):  # grows several times
        n = int(rng.integers(1, 40))
        x = rng.random(n)
        flag = rng.random(n) < 0.5
        columns.append(n, device=i, x=x, flag=flag)
        parts.append((np.full(n, i, np.int32), x.astype(np.float32), flag))
    got = columns.arrays()
    assert len(columns) == sum(len(p[0]) for p in parts)
    for k, name in enumerate(("device", "x", "flag")):
        want = np.concatenate([p[k] for p in parts])
        assert got[name].dtype == want.dtype and np.array_equal(got[name], want)
