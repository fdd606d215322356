"""What a run's summary says about the question it was asked: a saturated cloud, an uplink that
could not carry the selection, or devices that saw too few test batches for methods to separate.
Each is a line a reader must see beside the table, not a number to find in results.parquet."""

from __future__ import annotations

import math
from typing import Any

MIN_TEST_BATCHES = 10  # below this a device's adaptation has barely started: methods cannot separate
QUEUED_SHARE = 0.05  # selected samples still queued at the end, as a share of the selected ones


def _number(summary: dict[str, Any], key: str) -> float:
    value = summary.get(key)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.nan


def _checks(summary: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(kind, how bad: larger is worse, sentence) per problem of one run."""
    out = []
    load = _number(summary, "cloud_load")
    if load > 1.0:
        wait = _number(summary, "gpu_wait_p95_s")
        never = summary.get("uploads_never_used", 0)
        out.append(("cloud", load, f"the cloud is saturated: its load is {100 * load:.0f} % of its GPU time (above "
                    f"100 %), uploads wait {wait:.1f} s for a GPU (p95) and {never} were never trained on; add "
                    "cloud.gpus, a faster cloud.profile or fewer devices"))
    queued, selected = _number(summary, "in_flight_samples"), _number(summary, "selected_samples")
    if queued > 0 and selected > 0 and queued / selected > QUEUED_SHARE:
        out.append(("uplink", queued / selected, f"the uplink did not keep up: {queued:.0f} selected samples "
                    f"({100 * queued / selected:.0f} % of them) were still queued when the run ended, and their "
                    "bytes are not in uplink_bytes; a faster uplink, fewer uploads or a longer drain_s"))
    batches = _number(summary, "test_batches_per_device")
    if batches < MIN_TEST_BATCHES:
        out.append(("short", -batches, f"each device saw {batches:.1f} test batches on average (fewer than "
                    f"{MIN_TEST_BATCHES}): too few for adaptation methods to separate; raise duration_s or "
                    "arrivals.rate_hz"))
    return out


def run_warnings(summary: dict[str, Any]) -> list[str]:
    """One sentence per problem, with its numbers and what to change; [] for a healthy run."""
    return [text for _, _, text in _checks(summary)]


def sweep_warnings(rows: list[dict[str, Any]]) -> list[str]:
    """A sweep's finished runs: per kind of problem, how many runs have it and the worst one's sentence."""
    kinds: dict[str, list[tuple[float, str]]] = {}
    for row in rows:
        for kind, badness, text in _checks(row):
            kinds.setdefault(kind, []).append((badness, text))
    return [f"{len(found)} of {len(rows)} runs (the worst): {max(found)[1]}" for found in kinds.values()]
