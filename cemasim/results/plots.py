"""Run plots (PNG): accuracy over time, accuracy against cumulative uplink bytes, delay distributions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless; never opens a window
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)


def accuracy_over_time(timeline: pd.DataFrame, path: Path, title: str) -> None:
    plt = _pyplot()
    fleet = timeline.groupby("t_start_s")[["samples", "correct"]].sum()
    fleet = fleet[fleet["samples"] > 0]
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(fleet.index, 100 * fleet["correct"] / fleet["samples"], marker=".", lw=1.2)
    ax.set(xlabel="simulated time (s)", ylabel="fleet accuracy (%)", title=title, ylim=(0, 100))
    ax.grid(alpha=0.3)
    _finish(fig, path)


def cumulative_accuracy_vs_uplink(samples: pd.DataFrame, uploads: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(uplink MB sent so far, accuracy % so far) at every prediction, in simulated-time order."""
    s = samples.sort_values("predicted_s")
    acc = 100 * s["correct"].cumsum().to_numpy() / np.arange(1, len(s) + 1)
    sent = uploads.dropna(subset=["tx_end_s"]).sort_values("tx_end_s") if len(uploads) else uploads
    cum_bytes = np.concatenate([[0], np.cumsum(sent["size_bytes"].to_numpy(dtype=float))]) if len(sent) \
        else np.zeros(1)
    idx = np.searchsorted(sent["tx_end_s"].to_numpy(), s["predicted_s"].to_numpy(), side="right") if len(sent) \
        else np.zeros(len(s), int)
    return cum_bytes[idx] / 1e6, acc


def accuracy_vs_uplink(samples: pd.DataFrame, uploads: pd.DataFrame, path: Path, title: str) -> None:
    plt = _pyplot()
    x, acc = cumulative_accuracy_vs_uplink(samples, uploads)
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.plot(x, acc, lw=1.2)
    ax.set(xlabel="cumulative uplink (MB)", ylabel="cumulative accuracy (%)", title=title)
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
    accuracy_over_time(timeline, paths[0], title)
    accuracy_vs_uplink(tables["samples"], tables["uploads"], paths[1], title)
    delay_distributions(tables["uploads"], tables["samples"], paths[2], title)
    return paths
