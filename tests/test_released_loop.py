"""End to end against the authors' loop: one device, 16 to 24 test batches of the embedded stream, the
transcribed released `CEMA.infer` (tests/released_cema.py) next to `sequential_cema` and an
ideal-network simulation, on the same tensors with the same replay draws. Predictions and upload
masks must agree on every batch and the final edge parameters to float noise, for the released
configurations (batch statistics and TBR) and for cemasim's default selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cemasim.assembly import assemble, build_workload
from cemasim.data.encoding import to_uint8
from cemasim.methods.presets import cloud_lrs
from cemasim.models import zoo
from cemasim.oracle import sequential_cema
from cemasim.rng import torch_generator
from cemasim.scenario import load
from cemasim.sim.fleet import Fleet
from cemasim.workload import domain_table, plan_device
from tests.released_cema import CEMA

IDEAL = ["fleet.devices=1", "uplink.bandwidth_mbps=null", "uplink.latency_ms=0", "downlink.bandwidth_mbps=null",
         "downlink.latency_ms=0", "cloud.profile=instant", "fleet.profile=instant", "upload.queue_capacity=null",
         "compute_device=cpu", "output.plots=false", "arrivals.process=constant", "arrivals.rate_hz=8",
         "arrivals.batch_size=64", "duration_s=256", "drain_s=10"]

RELEASED = ["selection.e_max=0.4", "selection.e_min=null", "selection.dynamic_e_max=false",
            "selection.redundancy_filter=true", "selection.redundancy_eps=0.4"]
DEFAULT_SELECTION: list[str] = []  # E_min 0.02 ln C, dynamic E_max (lambda, warm-up), no redundancy filter


def released_run(sc):
    """The transcribed released loop on device 0's batches: (preds, upload masks, final edge state)."""
    workload, _ = build_workload(sc)
    ids = domain_table(sc)
    workload.domains = list(ids)
    batches = plan_device(0, sc, workload, ids)
    s = sc.selection
    foundation_lr, distill_lr = cloud_lrs(sc)
    gen = torch_generator(sc.seed, "replay", 0)
    edge = zoo.build(sc.models.edge)
    cema = CEMA(edge, zoo.build(sc.models.foundation), ent_low_margin=s.e_min, ent_high_margin=s.e_max,
                d_margin=s.redundancy_eps if s.redundancy_filter else None,
                warm_up_batch_size=s.warm_up_n if s.dynamic_e_max else None, ent_high_margin_coeff=s["lambda"],
                batch_size=sc.cloud.chunk_size, alpha=3, beta=3, gamma=1, temperature=1,
                replay_buffer_size=sc.cloud.replay_capacity, s_tta_lr=distill_lr, t_tta_lr=foundation_lr,
                n_class=10, is_tbr=sc.method.norm_mode == "tbr",
                sample=lambda history, k: [history[i] for i in torch.randperm(len(history), generator=gen)[:k]],
                quantise=lambda samples: to_uint8(samples).to(samples.dtype).div(255.0))
    preds, masks = [], []
    for batch in batches:
        x = workload.materialize(batch)
        preds.append(cema.infer(x).argmax(1).numpy())
        mask = np.zeros(len(x), bool)
        mask[cema.last_remain_ids.numpy()] = True
        masks.append(mask)
    state = {n: t.detach().reshape(-1) for n, t in edge.state_dict().items() if "running" in n or (n in
             dict(edge.named_parameters()) and dict(edge.named_parameters())[n].requires_grad)}
    return np.concatenate(preds), np.concatenate(masks), state


# (norm_mode, selection, test batches, parameter tolerance). The released loop is itself sensitive to
# float rounding: run in float64 instead of float32 its final parameters move by 1.8e-3 (batch
# statistics, 32 batches) and 4.9e-2 (TBR, 32 batches; 1.4 % of predictions change), as near-ties in
# pseudo-labels and thresholds flip. So the tolerances are those of float noise over these runs, and
# TBR (16 batches) and the default selection (24) are held to exact agreement before such a flip occurs.
CASES = {
    "released-batch-stats": ("batch", RELEASED, 24, 2e-3),
    "released-tbr": ("tbr", RELEASED, 16, 1e-3),
    "cemasim-selection": ("batch", DEFAULT_SELECTION, 24, 2e-3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_ideal_network_and_sequential_loop_equal_the_released_code(case):
    norm_mode, selection, n_batches, atol = CASES[case]
    sc = load(None, IDEAL + selection + ["method.name=cema", f"method.norm_mode={norm_mode}",
                                         f"duration_s={8 * n_batches}"])
    preds, masks, released_state = released_run(sc)
    assert len(preds) == n_batches * 64
    assert masks.sum() > 300, "enough uploads that replay (256) is exercised"

    fleet = Fleet(assemble(sc))
    tables = fleet.run().recorder.tables()
    samples = tables["samples"]
    np.testing.assert_array_equal(samples["selected"].to_numpy(), masks)
    np.testing.assert_array_equal(samples["pred"].to_numpy(), preds)
    np.testing.assert_array_equal(sequential_cema(sc)["pred"], preds)
    jobs = tables["cloud_jobs"]
    assert (jobs["kind"] == "chunk").sum() == masks.sum() // 32
    assert (jobs.loc[jobs["kind"] == "chunk", "samples"] == 32 + 96).sum() > 0  # chunk steps with replay

    device_state = fleet.devices[0].learner.state
    assert set(device_state) == set(released_state)
    for name, tensor in released_state.items():
        torch.testing.assert_close(device_state[name].reshape(-1), tensor, rtol=0, atol=atol, msg=name)
