"""Every bad input of tests/bad_inputs.py (hundreds of generated mutations plus the classes of
issue 14) gets a clear message and the right exit code: never a traceback, an internal error, a
hang or nonsense accepted."""

from __future__ import annotations

import pytest

from tests.bad_inputs import all_cases, judge, run_case

CASES = all_cases()


def test_the_table_is_large_and_names_where():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)
    assert all(c.names for c in CASES)  # every case says what its message must name


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_a_clear_error(case, tmp_path):
    outcome = run_case(case, tmp_path)
    verdict = judge(case, outcome, tmp_path)
    assert verdict == "clear", f"{verdict}: exit {outcome.code}, expected {case.code} naming {case.names}:\n" \
                               f"{outcome.message[-2000:]}"
