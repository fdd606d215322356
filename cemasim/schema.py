"""A tiny declarative schema: typed fields with defaults, units, docs and checks.

The scenario schema (cemasim.scenario) is written with these pieces; validation walks user YAML
against it, collecting *every* problem with its YAML path before anything runs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from cemasim.registry import did_you_mean

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class Field:
    """One scalar-or-list leaf of the schema."""

    types: tuple[type, ...]
    default: Any
    doc: str
    unit: str = ""
    checks: tuple[Check, ...] = ()
    nullable: bool = False
    items: "Section | None" = None  # for lists of mappings (e.g. shift segments)
    alt: "Section | None" = None  # a mapping accepted instead of a scalar (e.g. inline profile)

    def type_name(self) -> str:
        names = [_TYPE_NAMES.get(t, t.__name__) for t in self.types]
        if self.alt is not None:
            names.append("mapping")
        if self.nullable:
            names.append("null")
        return " or ".join(names)


@dataclass(frozen=True)
class Section:
    """A mapping of named fields and sub-sections."""

    doc: str
    fields: dict[str, "Field | Section"] = field(default_factory=dict)


_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "list", dict: "mapping"}


# ---- reusable checks -------------------------------------------------------------------------
def positive(v: Any) -> str | None:
    return None if v > 0 else f"must be > 0, got {v!r}"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else f"must be >= 0, got {v!r}"


def finite(v: Any) -> str | None:
    return None if isinstance(v, str) or math.isfinite(v) else f"must be finite, got {v!r}"


def between(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be in [{lo}, {hi}], got {v!r}"

    return check


def one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        if v in choices:
            return None
        return f"must be one of {', '.join(choices)}, got {v!r}{did_you_mean(str(v), list(choices))}"

    return check


# ---- validation ------------------------------------------------------------------------------
def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # YAML true is not a number
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def resolve(section: Section, data: Any, path: str, problems: list[str]) -> dict[str, Any]:
    """Return `data` merged onto the section's defaults; append '<path>: <problem>' strings."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{path or '<top>'}: must be a mapping, got {type(data).__name__}")
        data = {}
    known = list(section.fields)
    for key in data:
        if key not in section.fields:
            where = f"{path}.{key}" if path else str(key)
            problems.append(f"{where}: unknown key{did_you_mean(str(key), known)}")
    out: dict[str, Any] = {}
    for name, spec in section.fields.items():
        where = f"{path}.{name}" if path else name
        if isinstance(spec, Section):
            out[name] = resolve(spec, data.get(name), where, problems)
        else:
            out[name] = resolve_field(spec, data.get(name, spec.default), where, problems)
    return out


_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def resolve_field(spec: Field, value: Any, path: str, problems: list[str]) -> Any:
    if isinstance(value, str) and float in spec.types and _YAML11_FLOAT.match(value):
        value = float(value)  # PyYAML (YAML 1.1) reads 3.0e11 as a string; users mean a number
    if value is None:
        if not spec.nullable:
            problems.append(f"{path}: must be {spec.type_name()}, got null")
        return None
    if spec.alt is not None and isinstance(value, dict):
        return resolve(spec.alt, value, path, problems)
    if not _type_ok(value, spec.types):
        problems.append(f"{path}: must be {spec.type_name()}, got {type(value).__name__} {value!r}")
        return value
    if float in spec.types and isinstance(value, int) and not isinstance(value, bool) and int not in spec.types:
        value = float(value)
    if spec.items is not None and isinstance(value, list):
        return [resolve(spec.items, item, f"{path}[{i}]", problems) for i, item in enumerate(value)]
    for check in spec.checks:
        msg = check(value)
        if msg:
            problems.append(f"{path}: {msg}")
            break
    return value


def defaults(section: Section) -> dict[str, Any]:
    """The fully-defaulted mapping of a section."""
    return resolve(section, {}, "", [])


# ---- documentation ---------------------------------------------------------------------------
def document(section: Section, path: str = "", level: int = 2) -> list[str]:
    """Markdown tables describing every key, its type, unit, default and meaning."""
    lines = [f"{'#' * level} `{path or 'top level'}`", "", section.doc, ""]
    rows = [(n, s) for n, s in section.fields.items() if isinstance(s, Field)]
    if rows:
        lines += ["| key | type | unit | default | meaning |", "| --- | --- | --- | --- | --- |"]
        for name, spec in rows:
            default = "—" if spec.default is None else f"`{_short(spec.default)}`"
            lines.append(f"| `{name}` | {spec.type_name()} | {spec.unit or ''} | {default} | {spec.doc} |")
        lines.append("")
    for name, spec in rows:
        sub = spec.items or spec.alt
        if sub is not None:
            kind = "each item of" if spec.items else "inline mapping for"
            lines += document(Section(f"({kind} `{name}`) {sub.doc}", sub.fields), _join(path, name), level + 1)
    for name, spec in section.fields.items():
        if isinstance(spec, Section):
            lines += document(spec, _join(path, name), level + 1 if path else level)
    return lines


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
