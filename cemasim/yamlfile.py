"""YAML input files: safe loading only, keys unique, UTF-8 text, and no value that YAML aliases
expand past MAX_NODES items. Scenario, sweep and profile files all come through `read_yaml`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from cemasim.errors import ConfigError

_MERGE, _BOOL, _STR = "tag:yaml.org,2002:merge", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:str"


class UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML that rejects a key given twice in one mapping (YAML says keys are unique; PyYAML
    would silently keep the last, e.g. a second `fleet:` section replacing the first). Merge keys
    (`<<: *anchor`) are standard YAML 1.1: the mapping's own keys override the merged ones, so only
    its own keys must be unique. Keys that YAML 1.1 reads as booleans (`off`, `on`, `yes`, `no`)
    stay the strings the user wrote; values keep YAML's booleans."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            _string_key(key_node)
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key]}, again on line {line})",
                    key_node.start_mark)
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        super().flatten_mapping(node)
        for key_node, _ in node.value:  # the keys merged in, too
            _string_key(key_node)


def _string_key(key_node: yaml.Node) -> None:
    if key_node.tag == _BOOL and isinstance(key_node, yaml.ScalarNode):
        key_node.tag = _STR


def read_yaml(path: str | Path, what: str = "scenario") -> dict[str, Any]:
    """A YAML file whose top level is a mapping (a scenario, a profile file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no such {what} file: {path}", source=str(path))
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
                          f"{exc.start}); save the {what} file as UTF-8", source=str(path)) from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}invalid YAML ({getattr(exc, 'problem', exc)})", source=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"top level must be a mapping, got {type(data).__name__}", source=str(path))
    oversized = oversized_paths(data)
    if oversized:
        raise ConfigError(oversized, source=str(path))
    return data


MAX_NODES = 100_000  # values in one file after YAML aliases are expanded; scenarios need a few hundred


def _count_nodes(value: Any, budget: int = MAX_NODES) -> int:
    """Values under `value` counting every alias again (as a reader would expand them), up to budget + 1."""
    stack, n = [value], 0
    while stack and n <= budget:
        node = stack.pop()
        n += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return n


def oversized_paths(data: Any, path: str = "") -> list[str]:
    """Problems for values that expand past MAX_NODES: YAML aliases of aliases (a 'billion laughs')
    keep a file small while a reader - or a message quoting the value - would never finish."""
    if _count_nodes(data) <= MAX_NODES:
        return []
    if isinstance(data, dict):
        found = [p for key, value in data.items()
                 for p in oversized_paths(value, f"{path}.{key}" if path else str(key))]
        if found:
            return found
    return [f"{path or '<top>'}: expands to more than {MAX_NODES:,} values (YAML aliases of aliases?); a scenario "
            "needs a few hundred"]
