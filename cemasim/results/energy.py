"""Edge-device energy of a run, computed after the run from its tables (pure pandas, no simpy).

Only the energy the workload causes is counted: compute (the edge model calls) and radio (the bits
each device sends and receives). Idle and base power (the board idling, the radio's tail and
connected states) are not, so totals compare workloads and methods, not battery lives.

    compute  sum(flops) * compute_nj_per_flop when the device has that figure, else busy seconds * compute_w
    tx       8 * wire bytes of the device's uploads and reports * tx_nj_per_bit
    rx       8 * wire bytes of the refreshes and answers sent to it * rx_nj_per_bit

Wire bytes count every attempt (lost attempts and transfers cut by outages included), and a downlink
message costs its receiver whether or not it is later applied: the radio received the bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

UPLINK = ("uploads", "reports")  # sent by the device
DOWNLINK = ("refreshes", "answers")  # received by the device
COLUMNS = ["device", "device_class", "compute_j", "tx_j", "rx_j", "energy_j"]
_ROWS = ["device", "t_s", "energy_j"]


def _params(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The devices table indexed by device; missing W / radio figures count as not modelled (0)."""
    devices = tables.get("devices")
    if devices is None or "device" not in devices:
        return pd.DataFrame(columns=["device_class", "compute_w", "compute_nj_per_flop", "tx_nj_per_bit",
                                     "rx_nj_per_bit"], index=pd.Index([], name="device", dtype=int))
    p = devices.set_index(devices["device"].astype(int).rename("device"))
    out = pd.DataFrame({"device_class": p["device_class"].astype(str) if "device_class" in p else ""},
                       index=p.index)
    for col in ("compute_w", "tx_nj_per_bit", "rx_nj_per_bit"):
        out[col] = pd.to_numeric(p[col], errors="coerce").fillna(0.0) if col in p else 0.0
    # NaN here is meaningful: it selects the W model
    out["compute_nj_per_flop"] = pd.to_numeric(p["compute_nj_per_flop"], errors="coerce") \
        if "compute_nj_per_flop" in p else math.nan
    return out


def _compute_rows(tables: dict[str, pd.DataFrame], params: pd.DataFrame) -> pd.DataFrame:
    """device, t_s (call start), energy_j of each edge model call."""
    c = tables.get("compute")
    if c is None or not len(c):
        return pd.DataFrame(columns=_ROWS)
    c = c[c["device"].astype(int).isin(params.index)]
    p = params.loc[c["device"].astype(int)]
    nj = p["compute_nj_per_flop"].to_numpy(float)
    busy_j = (c["end_s"] - c["start_s"]).to_numpy(float) * p["compute_w"].to_numpy(float)
    flop_j = c["flops"].to_numpy(float) * np.nan_to_num(nj) * 1e-9
    return pd.DataFrame({"device": c["device"].astype(int).to_numpy(), "t_s": c["start_s"].to_numpy(float),
                         "energy_j": np.where(np.isnan(nj), busy_j, flop_j)})


def _radio_rows(tables: dict[str, pd.DataFrame], params: pd.DataFrame, names: tuple[str, ...],
                nj_col: str) -> pd.DataFrame:
    """device, t_s (wire exit, or wire entry for lost / cut attempts), energy_j of each message."""
    frames = [tables[k][["device", "wire_bytes", "tx_start_s", "tx_end_s"]] for k in names
              if tables.get(k) is not None and len(tables[k]) and "wire_bytes" in tables[k]]
    if not frames:
        return pd.DataFrame(columns=_ROWS)
    m = pd.concat(frames, ignore_index=True)
    m = m[(pd.to_numeric(m["wire_bytes"]) > 0) & m["device"].astype(int).isin(params.index)]
    nj = params.loc[m["device"].astype(int), nj_col].to_numpy(float)
    return pd.DataFrame({"device": m["device"].astype(int).to_numpy(),
                         "t_s": m["tx_end_s"].fillna(m["tx_start_s"]).to_numpy(float),
                         "energy_j": 8 * m["wire_bytes"].to_numpy(float) * nj * 1e-9})


def _parts(tables: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    params = _params(tables)
    return params, {"compute_j": _compute_rows(tables, params),
                    "tx_j": _radio_rows(tables, params, UPLINK, "tx_nj_per_bit"),
                    "rx_j": _radio_rows(tables, params, DOWNLINK, "rx_nj_per_bit")}


def device_energy(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per device of tables["devices"]: device, device_class, compute_j, tx_j, rx_j, energy_j."""
    params, parts = _parts(tables)
    out = pd.DataFrame({"device": params.index.to_numpy(int), "device_class": params["device_class"].to_numpy()})
    for col, rows in parts.items():
        sums = rows.groupby("device")["energy_j"].sum() if len(rows) else pd.Series(dtype=float)
        out[col] = sums.reindex(params.index, fill_value=0.0).to_numpy(float)
    out["energy_j"] = out["compute_j"] + out["tx_j"] + out["rx_j"]
    return out[COLUMNS]


def energy_summary(per_device: pd.DataFrame, samples: int, cloud_busy_s: float, cloud_active_w: float
                   ) -> dict[str, Any]:
    """Fleet totals of `device_energy`'s table; energy_mj_per_sample is per predicted sample."""
    total = float(per_device["energy_j"].sum())
    by_class = per_device.groupby("device_class")["energy_j"].sum()
    return {
        "energy_j": total,
        "energy_compute_j": float(per_device["compute_j"].sum()),
        "energy_tx_j": float(per_device["tx_j"].sum()),
        "energy_rx_j": float(per_device["rx_j"].sum()),
        "energy_per_device_mean_j": float(per_device["energy_j"].mean()) if len(per_device) else math.nan,
        "energy_mj_per_sample": 1e3 * total / samples if samples else math.nan,
        "cloud_energy_j": float(cloud_busy_s * cloud_active_w),
        "energy_j_by_class": {str(k): float(v) for k, v in by_class.items()},
    }


def energy_timeline(tables: dict[str, pd.DataFrame], bin_s: float) -> pd.DataFrame:
    """device, bin, energy_j (compute + radio) per time bin, for joining into the run timeline."""
    _, parts = _parts(tables)
    rows = pd.concat([r for r in parts.values() if len(r)] or [pd.DataFrame(columns=_ROWS)], ignore_index=True)
    if not len(rows):
        return pd.DataFrame({"device": pd.Series(dtype=int), "bin": pd.Series(dtype=int),
                             "energy_j": pd.Series(dtype=float)})
    rows = rows.assign(device=rows["device"].astype(int), bin=(rows["t_s"].astype(float) // bin_s).astype(int),
                       energy_j=rows["energy_j"].astype(float))
    return rows.groupby(["device", "bin"], as_index=False)["energy_j"].sum()
