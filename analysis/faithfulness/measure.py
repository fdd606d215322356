"""How close is cemasim to the authors' released CEMA loop, and how close is that loop to itself?

One device, the embedded stream, the transcribed released `CEMA.infer` (tests/released_cema.py) next
to an ideal-network simulation, same tensors, same replay draws. Rows: for each normalisation mode
and length, the agreement of cemasim with the released loop, and two reference perturbations of the
released loop alone (float64 instead of float32; the edge's float tensors instead of decoded uint8
uploads). Writes faithfulness.csv next to this file.

    python analysis/faithfulness/measure.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cemasim.assembly import assemble  # noqa: E402
from cemasim.scenario import load  # noqa: E402
from cemasim.sim.fleet import Fleet  # noqa: E402
from tests import test_released_loop as loop  # noqa: E402

torch.set_num_threads(1)


def flat(state: dict) -> np.ndarray:
    return np.concatenate([state[k].detach().double().reshape(-1).numpy() for k in sorted(state)])


def released(sc, dtype=torch.float32, quantise=True):
    """(preds, masks, flat final state) of the transcribed loop, optionally in float64 / on floats."""
    build, workload = loop.zoo.build, loop.build_workload
    quant = loop.to_uint8

    def build_as(name, *a, **k):
        return build(name, *a, **k).to(dtype)

    def workload_as(sc):
        w, m = workload(sc)
        mat = w.materialize
        w.materialize = lambda b: mat(b).to(dtype)
        return w, m

    loop.zoo.build, loop.build_workload = build_as, workload_as
    if not quantise:
        loop.to_uint8 = lambda s: s.mul(255.0)  # to_uint8(s).div(255) becomes the identity
    try:
        preds, masks, state = loop.released_run(sc)
    finally:
        loop.zoo.build, loop.build_workload, loop.to_uint8 = build, workload, quant
    return preds, masks, flat(state)


def main() -> None:
    rows = []
    for norm_mode in ("batch", "tbr"):
        for n_batches in (16, 32):
            sc = load(None, loop.IDEAL + loop.RELEASED + ["method.name=cema", f"method.norm_mode={norm_mode}",
                                                         f"duration_s={8 * n_batches}"])
            preds, masks, state = released(sc)
            fleet = Fleet(assemble(sc))
            samples = fleet.run().recorder.tables()["samples"]
            sim_state = flat(fleet.devices[0].learner.state)
            comparisons = {
                "cemasim ideal network vs released loop": (samples["pred"].to_numpy(),
                                                           samples["selected"].to_numpy(), sim_state),
                "released loop: float64 vs float32": released(sc, torch.float64),
                "released loop: float uploads vs uint8": released(sc, quantise=False),
            }
            for what, (p, m, s) in comparisons.items():
                rows.append({"norm_mode": norm_mode, "batches": n_batches, "comparison": what,
                             "pred_agreement": float((p == preds).mean()), "mask_agreement": float((m == masks).mean()),
                             "param_max_abs_diff": float(np.abs(s - state).max()), "uploads": int(masks.sum())})
                print(rows[-1], flush=True)
    out = Path(__file__).with_name("faithfulness.csv")
    pd.DataFrame(rows).to_csv(out, index=False, float_format="%.6g")
    print(out)


if __name__ == "__main__":
    main()
