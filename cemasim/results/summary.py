"""Summary metrics (flat, machine-readable) and the per-device, per-time-bin timeline."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from cemasim.results.energy import device_energy, energy_summary, energy_timeline

MESSAGES = ("uploads", "reports", "refreshes", "answers")


def _mean(series: pd.Series) -> float:
    return float(series.mean()) if len(series) else math.nan


def _p95(series: pd.Series) -> float:
    return float(np.percentile(series, 95)) if len(series) else math.nan


def _sent_bytes(messages: pd.DataFrame | None) -> int:
    if messages is None or not len(messages):
        return 0
    return int(messages.loc[messages["tx_start_s"].notna(), "size_bytes"].sum())


def uplink_sent(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every uplink message that went on the wire (uploads and reports): device, tx_start_s, size_bytes.
    Their size_bytes sum to summary's uplink_bytes."""
    parts = [t.loc[t["tx_start_s"].notna(), ["device", "tx_start_s", "size_bytes"]]
             for t in (tables.get("uploads"), tables.get("reports")) if t is not None and len(t)]
    if not parts:
        return pd.DataFrame({"device": pd.Series(dtype=int), "tx_start_s": pd.Series(dtype=float),
                             "size_bytes": pd.Series(dtype=int)})
    return pd.concat(parts, ignore_index=True).sort_values("tx_start_s", kind="stable")


def upload_status(uploads: pd.DataFrame) -> pd.Series:
    """received | dropped | in_flight for each upload attempt."""
    status = np.where(uploads["dropped"] != "", "dropped",
                      np.where(uploads["received_s"].notna(), "received", "in_flight"))
    return pd.Series(status, index=uploads.index, dtype="object")


def _retransmissions(tables: dict[str, pd.DataFrame]) -> int:
    """Attempts beyond the first, over all messages (tables from before retransmission have none)."""
    total = 0
    for name in MESSAGES:
        t = tables.get(name)
        if t is not None and len(t) and "attempts" in t:
            total += int((pd.to_numeric(t["attempts"]) - 1).clip(lower=0).sum())
    return total


def _counts(causes: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in causes.value_counts().items()}


def cloud_keys(jobs: pd.DataFrame | None, uploads: pd.DataFrame, cloud_busy_s: float, gpus: int,
               arrival_period_s: float) -> dict[str, Any]:
    """The cloud's load and saturation. Utilisation is measured over the arrival period [0, duration_s]
    (GPU-seconds busy in it / (GPUs x period)), so a slow link that stretches the drain does not dilute
    it; load counts every job's GPU-seconds against the same period (above 1: the cloud could not keep
    up while samples arrived). GPU wait is a job's time in the GPU queue (request to start), which
    excludes the time its uploads waited in the device's inbox while its previous job ran; that is in
    upload_to_training (upload received -> the job that used it ended)."""
    period = arrival_period_s * gpus
    busy_in_period = 0.0
    wait = pd.Series(dtype=float)
    if jobs is not None and len(jobs):
        start, end = jobs["start_s"].to_numpy(float), jobs["end_s"].to_numpy(float)
        busy_in_period = float((np.minimum(end, arrival_period_s) - np.minimum(start, arrival_period_s)).sum())
        wait = jobs["start_s"] - jobs["requested_s"]
    received = uploads[uploads["received_s"].notna()] if len(uploads) else uploads
    if "trained_s" not in received:  # tables written before uploads recorded it
        received = received.assign(trained_s=np.nan)
    trained = received[received["trained_s"].notna()]
    return {
        "cloud_utilization": busy_in_period / period if period > 0 else 0.0,
        "cloud_load": cloud_busy_s / period if period > 0 else 0.0,
        "gpu_wait_mean_s": _mean(wait),
        "gpu_wait_p95_s": _p95(wait),
        "uploads_trained": len(trained),
        "uploads_never_used": len(received) - len(trained),
        "upload_to_training_mean_s": _mean(trained["trained_s"] - trained["received_s"]),
    }


def _batches_per_device(samples: pd.DataFrame) -> float:
    """Test batches a device predicted, mean over the devices that predicted (NaN without batch numbers)."""
    if not {"device", "batch_seq"} <= set(samples.columns):
        return math.nan
    return float(samples.groupby("device")["batch_seq"].nunique().mean()) if len(samples) else 0.0


def summarize(tables: dict[str, pd.DataFrame], sim_time_s: float, wall_time_s: float, events: int,
              cloud_busy_s: float, gpus: int, cloud_active_w: float = 0.0,
              arrival_period_s: float | None = None) -> dict[str, Any]:
    """Flat run metrics. Optional tables add keys: missed (samples lost to a device being off) and,
    with a devices table, energy (see cemasim.results.energy; cloud energy = busy GPU-seconds * cloud_active_w).
    `arrival_period_s` (the scenario's duration_s) is the period cloud utilisation is measured over
    (default: the whole simulated time)."""
    samples, uploads, _reports, refreshes = (tables[k] for k in ("samples", "uploads", "reports", "refreshes"))
    status = upload_status(uploads)
    sent = uploads[uploads["tx_start_s"].notna()]
    received = uploads[status == "received"]
    delay = received["received_s"] - received["enqueued_s"]
    drops = uploads.loc[status == "dropped", "dropped"].value_counts().to_dict()
    applied = refreshes[refreshes["applied_s"].notna()] if len(refreshes) else refreshes
    uplink_bytes = int(uplink_sent(tables)["size_bytes"].sum())
    n = len(samples)
    summary: dict[str, Any] = {
        "accuracy": float(samples["correct"].mean()) if n else math.nan,
        "samples": n,
        "selected_samples": int(samples["selected"].sum()) if n else 0,
        "uploaded_samples": len(received),
        "upload_ratio": len(received) / n if n else math.nan,
        "uplink_bytes": uplink_bytes,
        "downlink_bytes": _sent_bytes(refreshes) + _sent_bytes(tables.get("answers")),
        "dropped_samples": int((status == "dropped").sum()),
        "in_flight_samples": int((status == "in_flight").sum()),
        "drops": {str(k): int(v) for k, v in drops.items()},
        "upload_wait_mean_s": _mean(sent["tx_start_s"] - sent["enqueued_s"]),
        "upload_delay_mean_s": _mean(delay),
        "upload_delay_p95_s": _p95(delay),
        "refreshes": len(applied),
        "refresh_delay_mean_s": _mean(applied["applied_s"] - applied["created_s"]) if len(applied) else math.nan,
        "refresh_delay_p95_s": _p95(applied["applied_s"] - applied["created_s"]) if len(applied) else math.nan,
        "param_age_mean_s": _mean(samples["param_age_s"]) if n else math.nan,
        "test_batches_per_device": _batches_per_device(samples),
        "prediction_latency_mean_s": _mean(samples["latency_s"]) if n else math.nan,
        **cloud_keys(tables.get("cloud_jobs"), uploads, cloud_busy_s, gpus,
                     sim_time_s if arrival_period_s is None else arrival_period_s),
        "sim_time_s": sim_time_s,
        "wall_time_s": wall_time_s,
        "events": events,
    }
    for cause in ("queue_full", "budget", "expired", "loss", "link_outage", "device_off"):
        summary[f"drops_{cause}"] = summary["drops"].get(cause, 0)
    summary["refresh_drops"] = _counts(refreshes.loc[refreshes["dropped"] != "", "dropped"]) if len(refreshes) else {}
    summary["retransmissions"] = _retransmissions(tables)
    missed = tables.get("missed")
    has_missed = missed is not None and len(missed) > 0
    summary["missed_samples"] = len(missed) if missed is not None and has_missed else 0
    summary["missed"] = _counts(missed["cause"]) if missed is not None and has_missed else {}
    if tables.get("devices") is not None:
        summary.update(energy_summary(device_energy(tables), n, cloud_busy_s, cloud_active_w))
    return summary


def accuracy_by_domain(samples: pd.DataFrame) -> pd.DataFrame:
    return (samples.groupby(["corruption", "severity"], observed=True)
            .agg(samples=("correct", "size"), accuracy=("correct", "mean"), selected_ratio=("selected", "mean"))
            .reset_index())


def timeline(tables: dict[str, pd.DataFrame], bin_s: float) -> pd.DataFrame:
    """Per device and time bin: samples, accuracy, selected samples, uplink bytes, refreshes and, with
    a devices table, energy_j (compute + radio)."""
    samples, refreshes = tables["samples"], tables["refreshes"]
    s = samples.assign(bin=(samples["predicted_s"] // bin_s).astype(int))
    out = s.groupby(["device", "bin"]).agg(samples=("correct", "size"), correct=("correct", "sum"),
                                           selected=("selected", "sum"), param_age_mean_s=("param_age_s", "mean"))
    sent = uplink_sent(tables)
    if len(sent):  # counted when each message went on the wire, as summary's uplink_bytes
        ub = sent.assign(bin=(sent["tx_start_s"] // bin_s).astype(int)).groupby(["device", "bin"])["size_bytes"].sum()
        out = out.join(ub.rename("uplink_bytes"), how="outer")
    if len(refreshes):
        r = refreshes[refreshes["applied_s"].notna()]
        rb = r.assign(bin=(r["applied_s"] // bin_s).astype(int)).groupby(["device", "bin"]).size()
        out = out.join(rb.rename("refreshes"), how="outer")
    with_energy = tables.get("devices") is not None
    if with_energy:
        eb = energy_timeline(tables, bin_s).set_index(["device", "bin"])["energy_j"]
        if len(eb):
            out = out.join(eb, how="outer")
    out = out.fillna(0).reset_index()
    for col in ("uplink_bytes", "refreshes") + (("energy_j",) if with_energy else ()):
        if col not in out:
            out[col] = 0
    out["t_start_s"] = out["bin"] * bin_s
    out["accuracy"] = np.where(out["samples"] > 0, out["correct"] / out["samples"].where(out["samples"] > 0, 1), np.nan)
    return out.astype({"samples": int, "correct": int, "selected": int, "uplink_bytes": int, "refreshes": int,
                       **({"energy_j": float} if with_energy else {})})
