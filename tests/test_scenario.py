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
        _ = view.missing
    with pytest.raises(AttributeError, match="read-only"):
        view.rate = 5


def test_yaml_merge_keys_are_accepted_and_own_keys_override_them(tmp_path):
    """`<<: *anchor` is standard YAML 1.1; the mapping's own keys win over the merged ones."""
    path = tmp_path / "merge.yaml"
    path.write_text("uplink: &link {bandwidth_mbps: 5, latency_ms: 10}\n"
                    "downlink:\n  <<: *link\n  latency_ms: 30\n")
    sc = scenario.load(path)
    assert (sc.downlink.bandwidth_mbps, sc.downlink.latency_ms) == (5.0, 30.0)
    path.write_text("uplink: &link {bandwidth_mbps: 5}\ndownlink:\n  <<: *link\n  latency_ms: 1\n  latency_ms: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'latency_ms'"):
        scenario.load(path)


@pytest.mark.parametrize("word", ["off", "on", "yes", "no", "On"])
def test_yaml_11_boolean_words_as_keys_stay_the_key_written(tmp_path, word):
    """`off:` is the key 'off' in messages, not `False`, also where a merge brings it in; values keep YAML's
    booleans."""
    problems = problems_of(tmp_path, f"arrivals:\n  {word}: 3\nuplink: {{<<: {{{word}: 1}}}}\noutput: {{plots: off}}\n")
    assert [p.split(":")[0] for p in problems] == [f"arrivals.{word}", f"uplink.{word}"]


@pytest.mark.parametrize("override,message", [
    ("arrivals.rate_hz=1e-310", "arrivals.rate_hz: must be at least 1e-09 1/s"),
    ("selection.window_s=1e-320", "selection.window_s: must be at least 1e-06 s"),
    ("upload.budget_window_s=5e-7", "upload.budget_window_s: must be at least 1e-06 s"),
    ("uplink.latency_ms=1e300", "uplink.latency_ms: must be at most 1e+12 ms"),
    ("drain_s=1.5e9", "drain_s: must be at most 1e+09 s"),
    ("downlink.loss.max_retries=101", "downlink.loss.max_retries: must be at most 100"),
    ("uplink.trace_bin_ms=0.5", "uplink.trace_bin_ms: must be at least 1"),
])
def test_times_rates_and_retries_that_would_not_end_or_overflow_are_refused(override, message):
    with pytest.raises(ConfigError) as info:
        scenario.load(None, [override])
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


@pytest.mark.parametrize("override", ["arrivals.rate_hz=1e-9", "selection.window_s=1e-6", "uplink.latency_ms=1e12",
                                      "drain_s=0", "uplink.latency_ms=0", "uplink.loss.max_retries=100",
                                      "uplink.trace_bin_ms=1"])
def test_the_bounds_themselves_are_accepted(override):
    scenario.load(None, [override])


@pytest.mark.parametrize("name,message", [
    ("a\\x7fb", "'\\x7f' at position 1"),  # YAML escapes: the file itself stays printable
    ("x\\u202ey", "'\\u202e' at position 1"),
    ("\\ud800", "'\\ud800' at position 0"),
    ("\u00e9" * 101, "at most 200 bytes of UTF-8"),
])
def test_names_a_folder_cannot_hold_or_a_listing_would_misshow_are_refused(tmp_path, name, message):
    problems = problems_of(tmp_path, f'name: "{name}"\n')
    assert len(problems) == 1 and problems[0].startswith("name: ") and message in problems[0], problems


def test_a_long_name_within_the_bound_is_accepted():
    assert scenario.load(None, ["name=" + "\u00e9" * 100]).name == "\u00e9" * 100
