"""The plain sequential CEMA loop (the released code's structure), with no simulator at all.

For one device: predict batch t with the parameters produced by the cloud steps of batches
<= t-1, select, upload, run the cloud steps for batch t, copy the student back to the edge.
An ideal network (infinite bandwidth, zero latency, instant compute) must reproduce it
prediction for prediction; tests/test_ideal_network.py checks that.
"""

from __future__ import annotations

import numpy as np
import torch

from cemasim.data.encoding import encode, to_uint8
from cemasim.methods import build_method
from cemasim.methods.cema_cloud import distill_step, foundation_step, to_float
from cemasim.methods.optim import Learner
from cemasim.methods.replay import ReplayBuffer
from cemasim.models import norm
from cemasim.rng import torch_generator
from cemasim.workload import domain_table, plan_device


def sequential_cema(sc, device_index: int = 0) -> dict[str, np.ndarray]:
    """Predictions (and entropies) of one device under the sequential loop."""
    from cemasim.assembly import build_model, build_workload, cloud_config

    dev = torch.device("cpu")
    workload, mask = build_workload(sc)
    edge_model, spec = build_model(sc, "edge", dev, workload, mask)
    edge = norm.convert(edge_model)
    foundation = norm.convert(build_model(sc, "foundation", dev, workload, mask)[0])
    method = build_method(sc, spec.num_classes)
    ids = domain_table(sc)
    workload.domains = list(ids)
    batches = plan_device(device_index, sc, workload, ids)
    edge_state = method.source_state(edge)
    student = Learner({n: t.clone() for n, t in edge_state.items()})
    cfg = cloud_config(sc, spec.num_classes)
    f_state = norm.initial_state(foundation, norm.adaptable_names(foundation, cfg.foundation_stats))
    teacher = Learner(norm.unset_stats(f_state) if cfg.foundation_stats else f_state)
    c = sc.cloud
    replay, gen = ReplayBuffer(c.replay_capacity), torch_generator(sc.seed, "replay", device_index)
    selection_state = method.new_selection_state()
    mode, prior = method.edge_stat_mode()
    preds, ents, pending = [], [], []
    for t, batch in enumerate(batches):
        x = workload.materialize(batch)
        with torch.no_grad():
            logits = norm.forward(edge, edge_state, x, mode, prior)
            keep = method.select(logits, selection_state)
        if t == 0 and method.sends_stats:  # tbr: the first batch set the statistics; the student starts there
            student.state.update(norm.cast_state(norm.stats_of(edge_state), torch.float32))
        preds.append(logits.argmax(1).numpy())
        ents.append((-(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)).numpy())
        if not method.uses_cloud:
            continue
        _, received = encode(to_uint8(x[keep]), sc.upload.encoding, sc.upload.jpeg_quality, sc.upload.downscale)
        replay.add(received)  # the released infer: the whole batch joins the history first
        pending += list(received)
        chunk_done = False
        while len(pending) >= c.chunk_size:
            new, pending = torch.stack(pending[: c.chunk_size]), pending[c.chunk_size:]
            old = replay.sample(c.replay_batch, gen) if len(replay) >= c.replay_min else new[:0]
            foundation_step(foundation, teacher, to_float(new, dev), cfg)
            distill_step(edge, student, foundation, teacher, to_float(torch.cat([new, old]), dev), cfg)
            chunk_done = True
        if not chunk_done and c.replay_only_batch > 0 and len(replay) > c.replay_min:
            distill_step(edge, student, foundation, teacher,
                         to_float(replay.sample(c.replay_only_batch, gen), dev), cfg)
        edge_state = norm.cast_state(student.state, torch.float32)
    return {"pred": np.concatenate(preds), "entropy": np.concatenate(ents)}
