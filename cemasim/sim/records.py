"""Recorder: what happened, collected cheaply during the run and turned into tables at the end.

Predictions are appended per batch as arrays; messages record their own journey, so uploads,
reports and refreshes tables are read straight off the message objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import pandas as pd

from cemasim.sim.messages import Answer, BatchReport, Message, Refresh, Upload

# the samples table's recorded columns and their types
SAMPLE_COLUMNS = {"device": np.int32, "sample_id": np.int64, "batch_seq": np.int32, "arrival_s": np.float64,
                  "predicted_s": np.float64, "domain": np.int32, "label": np.int16, "pred": np.int16,
                  "entropy": np.float32, "selected": np.bool_, "param_version": np.int32, "param_age_s": np.float64,
                  "e_max": np.float32}


class Columns:
    """Typed columns appended batch by batch into arrays that double when full: a batch of one sample
    costs its values, not a dozen small arrays (and a dict) of its own."""

    def __init__(self, dtypes: dict[str, type]):
        self._data: dict[str, np.ndarray] = {name: np.empty(0, dtype) for name, dtype in dtypes.items()}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def reserve(self, n: int) -> None:
        """Room for n rows in all (the fleet knows its samples: no doubling slack, no copy while growing)."""
        if n > len(next(iter(self._data.values()))):
            for name, column in self._data.items():
                grown = np.empty(n, column.dtype)
                grown[: self._n] = column[: self._n]
                self._data[name] = grown

    def append(self, n: int, **values: object) -> None:
        """n rows: each column's value is an array of n or one value for all of them."""
        if self._n + n > len(next(iter(self._data.values()))):
            self.reserve(max(64, 2 * (self._n + n)))
        for name, column in self._data.items():
            column[self._n: self._n + n] = values[name]
        self._n += n

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: column[: self._n] for name, column in self._data.items()}


# the devices table: who each device is and its energy parameters (sim/fleet.device_row)
DEVICE_COLUMNS = ("device", "device_class", "profile", "radio", "tx_nj_per_bit", "rx_nj_per_bit", "compute_w",
                  "compute_nj_per_flop", "available_s")

@dataclass
class CloudJob:
    device: int
    kind: str  # chunk | replay
    requested_s: float
    start_s: float
    end_s: float
    samples: int


@dataclass
class Recorder:
    domains: list[tuple[str, int]]
    _samples: Columns = field(default_factory=lambda: Columns(SAMPLE_COLUMNS))
    uploads: list[Upload] = field(default_factory=list)
    reports: list[BatchReport] = field(default_factory=list)
    refreshes: list[Refresh] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    jobs: list[CloudJob] = field(default_factory=list)
    compute: list[tuple[int, float, float, float]] = field(default_factory=list)  # device, start, end, flops
    missed: list[tuple[int, float, str]] = field(default_factory=list)  # device, arrival_s, cause
    devices: list[tuple] = field(default_factory=list)  # a DEVICE_COLUMNS row per device (a dict is 270 bytes more)
    predicted: int = 0

    def expect_predictions(self, n: int) -> None:
        """Room for the n predictions a fleet's samples can make (each at most once)."""
        self._samples.reserve(n)

    def predictions(self, batch, predicted_s: float, pred: np.ndarray, entropy: np.ndarray, selected: np.ndarray,
                    version: int, version_created_s: float, e_max: float, rows: np.ndarray | None = None) -> None:
        """Record predictions of `batch` (or of its `rows`) made at `predicted_s`."""
        if rows is None:  # the whole batch: its arrays as they are (a batch-1 device records per sample)
            n, arrival_s, domain, label = len(batch), batch.arrival_s, batch.domain, batch.labels
            sample_id = batch.first_sample_id + np.arange(n) if n > 1 else batch.first_sample_id
        else:
            n, arrival_s, domain, label = len(rows), batch.arrival_s[rows], batch.domain[rows], batch.labels[rows]
            sample_id = batch.first_sample_id + rows
        self.predicted += n
        self._samples.append(n, device=batch.device, sample_id=sample_id,
                             batch_seq=batch.seq, arrival_s=arrival_s, predicted_s=predicted_s,
                             domain=domain, label=label, pred=pred, entropy=entropy,
                             selected=selected, param_version=version, param_age_s=predicted_s - version_created_s,
                             e_max=e_max)

    def samples_table(self) -> pd.DataFrame:
        if not len(self._samples):
            return pd.DataFrame(columns=["device", "sample_id", "correct"])
        df = pd.DataFrame(self._samples.arrays())
        df["correct"] = df["pred"] == df["label"]
        names = np.array([c for c, _ in self.domains] or [""], dtype=object)
        df["corruption"] = pd.Categorical(names[df["domain"].to_numpy()])
        df["severity"] = np.array([s for _, s in self.domains], np.int8)[df["domain"].to_numpy()]
        df["latency_s"] = df["predicted_s"] - df["arrival_s"]
        return df.sort_values(["device", "sample_id"], kind="stable").reset_index(drop=True)

    def message_table(self, messages: Sequence[Message], cls: type,
                      skip: tuple[str, ...] = ("images", "image_row", "payload", "on_applied", "stats", "droppable")
                      ) -> pd.DataFrame:
        cols = [f.name for f in fields(cls) if f.name not in skip]
        if not messages:
            return pd.DataFrame(columns=cols)
        return pd.DataFrame({c: [getattr(m, c) for m in messages] for c in cols})

    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "samples": self.samples_table(),
            "uploads": self.message_table(self.uploads, Upload),
            "reports": self.message_table(self.reports, BatchReport),
            "refreshes": self.message_table(self.refreshes, Refresh),
            "answers": self.message_table(self.answers, Answer, skip=("sample_ids", "preds", "entropies", "droppable")),
            "cloud_jobs": pd.DataFrame([vars(j) for j in self.jobs],
                                       columns=[f.name for f in fields(CloudJob)]),
            "compute": pd.DataFrame(self.compute, columns=["device", "start_s", "end_s", "flops"]),
            "missed": pd.DataFrame(self.missed, columns=["device", "arrival_s", "cause"]),
            "devices": pd.DataFrame(self.devices, columns=DEVICE_COLUMNS),
        }
