"""Scenario: the validated, fully-defaulted description of one simulation run.

    keys.py     the schema (SCHEMA): every key, type, unit, default, meaning, bounds (MAX_*)
    loader.py   file -> overrides -> validation -> Scenario; `Scenario.with_overrides`
    checks.py   registries, files, channels, sizes: what the schema alone cannot check
    classes.py  heterogeneous fleets: device classes merged over the top-level sections

Units live in key names (_s, _ms, _mbps, _hz, _bytes). docs/scenario.md is generated from SCHEMA.
"""

from cemasim.scenario.checks import profile_problems
from cemasim.scenario.keys import MAX_DEVICES, MAX_PIECES, MAX_SAMPLES, SCHEMA, schema_markdown
from cemasim.scenario.loader import (
    FILE_KEYS,
    Scenario,
    anchor_paths,
    apply_overrides,
    default_scenario,
    load,
    parse_assignments,
    path_steps,
    set_values,
    validate,
)
from cemasim.yamlfile import oversized_paths, read_yaml

__all__ = ["FILE_KEYS", "MAX_DEVICES", "MAX_PIECES", "MAX_SAMPLES", "SCHEMA", "Scenario", "anchor_paths",
           "apply_overrides", "default_scenario", "load", "oversized_paths", "parse_assignments", "path_steps",
           "profile_problems", "read_yaml", "schema_markdown", "set_values", "validate"]
