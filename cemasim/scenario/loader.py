"""From a file and overrides to a validated Scenario.

    YAML file -> anchor relative paths -> `--set` overrides -> schema (every problem with its YAML
    path) -> checks (registries, files, sizes) -> Scenario (attribute access, read-only)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from cemasim.errors import ConfigError
from cemasim.scenario.keys import SCHEMA
from cemasim.schema import defaults, resolve, show
from cemasim.yamlfile import oversized_paths, read_yaml


class Scenario:
    """Read-only attribute view of a resolved scenario mapping (`sc.uplink.bandwidth_mbps`)."""

    def __init__(self, data: dict[str, Any], source: str = "<scenario>", given: dict[str, Any] | None = None):
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "_given", given)  # what it was validated from (None for views)

    def __getattr__(self, name: str) -> Any:
        """A key's value, a section as a view; kept as an instance attribute, so that the next lookup
        does not come here (a fleet build asks dozens a device)."""
        if name == "_data" or name.startswith("__"):  # unpickling asks before __init__ has run: no _data yet
            raise AttributeError(name)
        try:
            value = self._data[name]
        except KeyError:
            raise AttributeError(name) from None
        if isinstance(value, dict):
            value = Scenario(value, self.source)
        if name not in _NOT_KEPT:
            object.__setattr__(self, name, value)
        return value

    def __getitem__(self, name: str) -> Any:
        kept = self.__dict__
        return kept[name] if name in kept and name not in _NOT_KEPT else self.__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Scenario is read-only; use with_overrides()")

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self._data)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self._data, sort_keys=False)

    def with_overrides(self, overrides: dict[str, Any] | list[str]) -> Scenario:
        """A new, validated scenario: `{"fleet.devices": 16, "shift.segments[0].severity": 5}` (values as
        Python objects) or `["fleet.devices=16"]` (values as YAML, like `--set`), applied to what this
        scenario was built from (so device classes follow a changed top-level key as in a file)."""
        data = copy.deepcopy(self._given if self._given is not None else self._data)
        if isinstance(overrides, dict):
            problems = set_values(data, overrides)
        else:
            problems = apply_overrides(data, list(overrides))
        if problems:
            raise ConfigError(problems, source=self.source)
        return validate(data, self.source)


# a key named like the view's own attributes is read, never kept (it would hide them)
_NOT_KEPT = frozenset(dir(Scenario)) | {"_data", "source", "_given"}


def parse_assignments(items: list[str], flag: str = "--set") -> tuple[list[tuple[str, Any]], list[str]]:
    """'KEY=VALUE' strings (VALUE parsed as YAML) as (key, value) pairs in order, and the problems of
    those that are not: no '=', not YAML, or a value that YAML aliases blow up."""
    pairs: list[tuple[str, Any]] = []
    problems: list[str] = []
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            problems.append(f"{flag} {show(item)}: expected KEY=VALUE, e.g. uplink.bandwidth_mbps=2")
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problems.append(f"{flag} {key}: value {show(text)} is not valid YAML ({getattr(exc, 'problem', exc)}); "
                            f"quote a string that starts with a YAML symbol: {flag} 'name=\"[x\"'")
            continue
        big = oversized_paths(value, f"{flag} {key}")
        if big:
            problems += big
            continue
        pairs.append((key, value))
    return pairs, problems


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> list[str]:
    """Apply `a.b=value` / `a.list[0].c=value` strings in place, in order; return problems."""
    pairs, problems = parse_assignments(overrides)
    for key, value in pairs:
        problem = _set_path(data, path_steps(key), value)
        if problem:
            problems.append(f"--set {key}: {problem}")
    return problems


def set_values(data: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """Apply {'a.b': value, 'a.list[0].c': value} in place (values as given, not parsed); return problems."""
    problems = []
    for key, value in values.items():
        big = oversized_paths(value, str(key))
        problem = big[0] if big else _set_path(data, path_steps(str(key).strip()), copy.deepcopy(value))
        if problem:
            problems.append(problem if big else f"{key}: {problem}")
    return problems


def path_steps(key: str) -> list[str | int]:
    steps: list[str | int] = []
    for part in key.split("."):
        name, *indices = part.replace("]", "").split("[")
        steps.append(name)
        steps += [int(i) if i.isdigit() else i for i in indices]
    return steps


def _set_path(node: Any, steps: list[str | int], value: Any) -> str | None:
    for depth, step in enumerate(steps):
        last = depth == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                return f"index [{step}] does not exist"
            if last:
                node[step] = value
                return None
            node = node[step]
            continue
        if not isinstance(node, dict):
            return f"'{step}' is inside a value that is not a mapping"
        if last:
            node[step] = value
            return None
        if node.get(step) is None:
            node[step] = copy.deepcopy(_default_at(steps[: depth + 1]))
        node = node[step]
    return None


def _default_at(steps: list[str | int]) -> Any:
    """The schema default below `steps` (so `--set shift.segments[0].severity=5` edits the defaults)."""
    node: Any = default_scenario()
    for step in steps:
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            return {}
    return node if isinstance(node, (dict, list)) else {}


def validate(data: dict[str, Any], source: str = "<scenario>") -> Scenario:
    """Schema + registry validation; raises ConfigError listing every problem."""
    from cemasim import plugins
    from cemasim.scenario.checks import check

    given = copy.deepcopy(data)
    problems = plugins.load(data.get("plugins") if isinstance(data, dict) else None)  # they register names
    resolved = resolve(SCHEMA, data, "", problems)
    check(resolved, problems)
    if problems:
        raise ConfigError(problems, source=source)
    return Scenario(resolved, source, given)


FILE_KEYS = (("arrivals", "trace"), ("uplink", "trace"), ("downlink", "trace"), ("uplink", "outages", "trace"),
             ("downlink", "outages", "trace"), ("availability", "trace"), ("fleet", "profile"), ("cloud", "profile"))


def anchor_paths(data: dict[str, Any], folder: Path) -> None:
    """Relative file paths in a scenario file mean files next to it when they exist there (else the
    working directory), so `cemasim run scenarios/x.yaml` works from anywhere."""
    def fix(node: Any, steps: tuple[str, ...]) -> None:
        for step in steps[:-1]:
            node = node.get(step) if isinstance(node, dict) else None
        value = node.get(steps[-1]) if isinstance(node, dict) else None
        if isinstance(value, str) and (steps[-1] == "trace" or value.endswith((".yaml", ".yml"))) \
                and not Path(value).is_absolute() and (folder / value).is_file():
            node[steps[-1]] = str(folder / value)

    for steps in FILE_KEYS:
        fix(data, steps)
    classes = data.get("fleet", {}).get("classes") if isinstance(data.get("fleet"), dict) else None
    for cls in classes if isinstance(classes, list) else []:
        for steps in FILE_KEYS:
            fix(cls, steps[1:] if steps[0] == "fleet" else steps)


def load(path: str | Path | None = None, overrides: list[str] | None = None, seed: int | None = None,
         plugins: list[str] | None = None) -> Scenario:
    """Read a scenario file (or the defaults), apply overrides, add `plugins` (--plugin) and validate."""
    from cemasim.plugins import with_modules

    data = read_yaml(path) if path is not None else {}
    if path is not None:
        anchor_paths(data, Path(path).parent)
    problems = apply_overrides(data, overrides or [])
    if seed is not None:
        data["seed"] = seed
    if plugins:
        data["plugins"] = with_modules(data.get("plugins"), plugins)
    source = str(path) if path is not None else "<defaults>"
    if problems:
        raise ConfigError(problems, source=source)
    return validate(data, source)


def default_scenario() -> dict[str, Any]:
    return defaults(SCHEMA)
