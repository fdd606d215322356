"""Run plots (PNG): accuracy over time, accuracy against cumulative uplink bytes, delay distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cemasim.results.summary import uplink_sent


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless; never opens a window
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def segment_changes(samples: pd.DataFrame, most: int = 60) -> np.ndarray:
    """Times at which the lowest-numbered device's stream moves to another domain (corruption and
    severity): the segment boundaries of its shift. Empty when the domain changes too often to draw
    (the mixed protocol draws one per sample)."""
    if not len(samples) or "domain" not in samples:
        return np.zeros(0)
    first = samples[samples["device"] == samples["device"].min()].sort_values("arrival_s", kind="stable")
    domain = first["domain"].to_numpy()
    changes = first["arrival_s"].to_numpy(float)[1:][domain[1:] != domain[:-1]]
    return changes if len(changes) <= most else np.zeros(0)


def accuracy_over_time(timeline: pd.DataFrame, path: Path, title: str, boundaries: np.ndarray | None = None) -> None:
    plt = _pyplot()
    fleet = timeline.groupby("t_start_s")[["samples", "correct"]].sum()
    fleet = fleet[fleet["samples"] > 0]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(fleet.index, 100 * fleet["correct"] / fleet["samples"], marker=".", lw=1.2)
    for i, t in enumerate(boundaries if boundaries is not None else []):
        ax.axvline(t, color="0.5", lw=0.8, ls=":", label="shift segment boundary (device 0)" if i == 0 else None)
    if boundaries is not None and len(boundaries):
        ax.legend(fontsize=7, loc="lower left")
    ax.set(xlabel="simulated time (s)", ylabel="fleet accuracy (%)", title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    _finish(fig, path)


def cumulative_accuracy_vs_uplink(tables: dict[str, pd.DataFrame]) -> tuple[np.ndarray, np.ndarray]:
    """(uplink MB on the wire so far, accuracy % so far) along the run: a point at every prediction and
    at every uplink message sent after the last one. Bytes count every uplink message (uploads and
    reports) when it goes on the wire, so the curve ends at summary's (uplink_bytes, accuracy)."""
    s = tables["samples"].sort_values("predicted_s", kind="stable")
    if not len(s):
        return np.zeros(0), np.zeros(0)
    acc = 100 * s["correct"].cumsum().to_numpy() / np.arange(1, len(s) + 1)
    sent = uplink_sent(tables)
    times, cum = sent["tx_start_s"].to_numpy(float), np.cumsum(sent["size_bytes"].to_numpy(float))
    cum = np.concatenate([[0.0], cum])
    idx = np.searchsorted(times, s["predicted_s"].to_numpy(float), side="right")
    after = cum[idx[-1] + 1:]  # sent after the last prediction (the drain): accuracy no longer moves
    return np.concatenate([cum[idx], after]) / 1e6, np.concatenate([acc, np.full(len(after), acc[-1])])


def accuracy_vs_uplink(tables: dict[str, pd.DataFrame], path: Path, title: str) -> None:
    plt = _pyplot()
    x, acc = cumulative_accuracy_vs_uplink(tables)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(x, acc, lw=1.2)
    if len(x):
        ax.scatter([x[-1]], [acc[-1]], s=18, zorder=3, label=f"final: {acc[-1]:.2f} %, {x[-1]:.2f} MB")
        ax.legend(fontsize=8)
    ax.set(xlabel="uplink sent so far (MB, uploads and reports)", ylabel="accuracy so far (%)", title=title)
    ax.grid(alpha=0.3)
    _finish(fig, path)


def delay_distributions(uploads: pd.DataFrame, samples: pd.DataFrame, path: Path, title: str) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    received = uploads[uploads["received_s"].notna()] if len(uploads) else uploads
    delay = (received["received_s"] - received["enqueued_s"]).to_numpy() if len(received) else np.zeros(0)
    axes[0].hist(delay, bins=40, color="tab:orange")
    axes[0].set(xlabel="upload delay, enqueue -> cloud (s)", ylabel="uploads", title="upload delay")
    axes[1].hist(samples["param_age_s"].to_numpy(), bins=40, color="tab:green")
    axes[1].set(xlabel="age of parameters used (s)", ylabel="predictions", title="parameter age")
    fig.suptitle(title)
    _finish(fig, path)


def write_run_plots(tables: dict[str, pd.DataFrame], timeline: pd.DataFrame, folder: Path, title: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "accuracy_over_time.png", folder / "accuracy_vs_uplink.png", folder / "delays.png"]
    accuracy_over_time(timeline, paths[0], title, segment_changes(tables["samples"]))
    accuracy_vs_uplink(tables, paths[1], title)
    delay_distributions(tables["uploads"], tables["samples"], paths[2], title)
    return paths
