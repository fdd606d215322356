"""Scenario validation: every problem reported at once with its YAML path; overrides; docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cemasim import scenario
from cemasim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((ROOT / "scenarios").glob("**/*.yaml"))


def problems_of(tmp_path: Path, text: str, overrides: list[str] | None = None) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        scenario.load(path, overrides)
    return info.value.problems


def test_all_problems_reported_with_paths(tmp_path):
    problems = problems_of(tmp_path, """
uplink: {bandwidth_mbps: -5}
method: {name: cemma, e_mni: 0.1}
fleet: {devices: two}
shift:
  segments: [{corruption: fogg, severity: 7}]
""")
    text = "\n".join(problems)
    assert "uplink.bandwidth_mbps: must be > 0, got -5" in text
    assert "method.e_mni: unknown key" in text
    assert "method.name: method 'cemma' is unknown (did you mean 'cema'?); known: " in text
    assert "fleet.devices: must be integer, got str 'two'" in text
    assert "shift.segments[0].severity: must be in [1, 5], got 7" in text
    assert "shift.segments[0].corruption: corruption 'fogg' is unknown (did you mean 'fog'?); known: " in text
    assert len(problems) == 6


def test_unknown_key_suggests_sibling(tmp_path):
    (problem,) = problems_of(tmp_path, "uplink: {bandwith_mbps: 3}\n")
    assert problem == "uplink.bandwith_mbps: unknown key; did you mean 'bandwidth_mbps'?"


def test_bool_is_not_a_number_and_yaml_errors_name_the_line(tmp_path):
    (problem,) = problems_of(tmp_path, "duration_s: true\n")
    assert "duration_s: must be number" in problem
    (problem,) = problems_of(tmp_path, "uplink: {bandwidth_mbps: [1,\n")
    assert "line" in problem and "invalid YAML" in problem


def test_e_min_must_be_below_e_max(tmp_path):
    (problem,) = problems_of(tmp_path, "selection: {e_min: 0.5, e_max: 0.4}\n")
    assert problem.startswith("selection.e_min: must be below selection.e_max")


def test_overrides_apply_and_are_validated():
    sc = scenario.load(None, ["uplink.bandwidth_mbps=2", "shift.segments[0].severity=5", "upload.budget_bytes=null"])
    assert sc.uplink.bandwidth_mbps == 2.0 and isinstance(sc.uplink.bandwidth_mbps, float)
    assert sc.shift.segments[0]["severity"] == 5
    with pytest.raises(ConfigError, match="uplink.bandwidth_mbps: must be > 0"):
        scenario.load(None, ["uplink.bandwidth_mbps=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        scenario.load(None, ["uplink.bandwidth_mbps"])


def test_defaults_fill_everything_and_round_trip(tmp_path):
    sc = scenario.load(None)
    path = tmp_path / "resolved.yaml"
    path.write_text(sc.to_yaml())
    assert scenario.load(path).to_dict() == sc.to_dict()


def test_seed_override():
    assert scenario.load(None, seed=42).seed == 42


def is_sweep(path: Path) -> bool:
    return "grid" in scenario.read_yaml(path)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.name for p in SCENARIOS])
def test_every_shipped_scenario_validates(path):
    """Scenario files validate as scenarios; sweep files validate every point."""
    if is_sweep(path):
        from cemasim.sweeps import load_sweep_file

        assert load_sweep_file(path).points
    else:
        scenario.load(path)


def test_docs_are_generated_from_the_schema():
    """docs/scenario.md documents every key; regenerate with `cemasim docs`."""
    doc = (ROOT / "docs" / "scenario.md").read_text()
    assert doc == scenario.schema_markdown()
    for section, spec in scenario.SCHEMA.fields.items():
        keys = spec.fields if hasattr(spec, "fields") else {section: spec}
        for key in keys:
            assert f"`{key}`" in doc or f".{key}`" in doc  # a key, or a sub-section's heading


def test_scientific_notation_without_sign_is_a_number(tmp_path):
    """PyYAML reads 3.0e11 as a string (YAML 1.1); the schema takes it as the number it means."""
    path = tmp_path / "sci.yaml"
    path.write_text("cloud: {profile: {peak_flops_per_s: 3.0e11}}\nuplink: {bandwidth_mbps: 1e2}\n")
    sc = scenario.load(path)
    assert sc.cloud.profile.peak_flops_per_s == 3.0e11 and sc.uplink.bandwidth_mbps == 100.0


@pytest.mark.parametrize("text,expected", [
    ("name: x\nfleet: {devices: 2}\nmethod: {name: cema}\nfleet:\n  devices: 4\n",
     "line 4, column 1: invalid YAML (duplicate key 'fleet' (first on line 2, again on line 4))"),
    ("uplink:\n  bandwidth_mbps: 1\n  latency_ms: 5\n  bandwidth_mbps: 2\n",
     "line 4, column 3: invalid YAML (duplicate key 'bandwidth_mbps' (first on line 2, again on line 4))"),
])
def test_a_key_given_twice_is_an_error_naming_both_lines(tmp_path, text, expected):
    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        scenario.load(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_a_file_that_is_not_utf8_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\nmethod: {name: caf\xe9}\n".encode("latin-1"))
    with pytest.raises(ConfigError) as err:
        scenario.load(path)
    assert "line 2: not UTF-8 text (byte 0xe9" in str(err.value) and str(path) in str(err.value)


def test_a_view_keeps_what_it_read_without_hiding_its_own_attributes():
    from cemasim.scenario.loader import Scenario

    view = Scenario({"rate": 2, "source": "a key", "to_dict": 3, "section": {"x": 1}}, "file.yaml")
    assert view.rate == view["rate"] == 2 and view.rate == 2  # read, then kept
    assert view.section is view["section"] and view.section.x == 1 and view.section.source == "file.yaml"
    assert view["source"] == "a key" and view.source == "file.yaml"  # the key, and the view's own attribute
    assert view["to_dict"] == 3 and view.to_dict()["to_dict"] == 3
    assert view["source"] == "a key" and view.source == "file.yaml"
    with pytest.raises(AttributeError):
        view.missing
    with pytest.raises(AttributeError, match="read-only"):
        view.rate = 5
