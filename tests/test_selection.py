"""CEMA's edge selection: S_high (dynamic E_max), S_low (E_min), redundancy filter."""

from __future__ import annotations

import math

import pytest
import torch

from cemasim.methods.losses import entropy
from cemasim.methods.selection import SelectionConfig, SelectionState, dynamic_e_max, select


def logits_with_entropies(targets: list[float], classes: int = 10) -> torch.Tensor:
    """Rows whose entropy is close to each target (by bisection on a one-hot temperature)."""
    rows = []
    for target in targets:
        lo, hi = 0.0, 50.0
        for _ in range(100):
            mid = (lo + hi) / 2
            row = torch.zeros(classes)
            row[0] = mid
            if entropy(row[None]).item() > target:
                lo = mid
            else:
                hi = mid
        rows.append(row)
    return torch.stack(rows)


def test_both_criteria_keep_only_the_middle_band():
    ln_c = math.log(10)
    cfg = SelectionConfig(e0=0.4 * ln_c, e_min=0.02 * ln_c, dynamic_e_max=False)
    ents = [0.01, 0.3, 0.9, 1.5, 2.2]  # below E_min, inside, inside, above E0 (0.921)... check precisely
    logits = logits_with_entropies(ents)
    keep = select(logits, SelectionState(), cfg)
    e = entropy(logits)
    assert keep.tolist() == ((e > cfg.e_min) & (e < cfg.e0)).tolist()
    assert keep.tolist() == [False, True, True, False, False]


def test_e_min_none_disables_s_low():
    cfg = SelectionConfig(e0=1.0, e_min=None, dynamic_e_max=False)
    keep = select(logits_with_entropies([0.0001, 0.5]), SelectionState(), cfg)
    assert keep.tolist() == [True, True]


def test_dynamic_e_max_hand_values():
    """E0 during warm-up; then E0 * lambda * running_mean / warm_mean (current batch included)."""
    cfg = SelectionConfig(e0=1.0, e_min=None, dynamic_e_max=True, lam=2.0, warm_up_n=4)
    st = SelectionState()
    assert dynamic_e_max(st, torch.tensor([1.0, 1.0]), cfg) == 1.0  # 2 seen < 4
    # 4 seen: warm-up ends now, warm mean = (1+1+2+2)/4 = 1.5 -> E0 * 2 * 1.5 / 1.5
    assert dynamic_e_max(st, torch.tensor([2.0, 2.0]), cfg) == pytest.approx(2.0)
    # 6 seen: mean = (6 + 0 + 0)/6 = 1.0 -> 1.0 * 2 * 1.0 / 1.5
    assert dynamic_e_max(st, torch.tensor([0.0, 0.0]), cfg) == pytest.approx(2.0 / 1.5)


def test_static_e_max_ignores_history():
    cfg = SelectionConfig(e0=0.7, e_min=None, dynamic_e_max=False, warm_up_n=0)
    st = SelectionState()
    for batch in ([0.1], [5.0], [3.0]):
        assert dynamic_e_max(st, torch.tensor(batch), cfg) == 0.7


def test_redundancy_filter_first_batch_keeps_all_then_filters_similar():
    cfg = SelectionConfig(e0=10.0, e_min=None, dynamic_e_max=False, redundancy_filter=True, redundancy_eps=0.5)
    st = SelectionState()
    first = torch.tensor([[5.0, 0.0, 0.0], [4.0, 0.0, 0.0]])
    assert select(first, st, cfg).tolist() == [True, True]
    m0 = first.softmax(-1).mean(0)
    assert torch.allclose(st.m, m0)
    # second batch: a row like m (cos ~ 1) is redundant; an orthogonal-ish row is kept
    second = torch.tensor([[5.0, 0.0, 0.0], [-20.0, 20.0, -20.0]])
    keep = select(second, st, cfg)
    assert keep.tolist() == [False, True]
    assert torch.allclose(st.m, 0.9 * m0 + 0.1 * second[1:].softmax(-1).mean(0))
