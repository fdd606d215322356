"""A tiny declarative schema: typed fields with defaults, units, docs and checks.

The scenario schema (cemasim.scenario) is written with these pieces; validation walks user YAML
against it, collecting *every* problem with its YAML path before anything runs.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cemasim.csvfile import MAX_TIME_S
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
    items: Section | None = None  # for lists of mappings (e.g. shift segments)
    alt: Section | None = None  # a mapping accepted instead of a scalar (e.g. inline profile)

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
    fields: dict[str, Field | Section] = field(default_factory=dict)


_TYPE_NAMES = {int: "integer", float: "number", str: "string", bool: "boolean", list: "list", dict: "mapping"}


_SHOW = reprlib.Repr()
_SHOW.maxlevel, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxstring, _SHOW.maxother = 2, 4, 4, 40, 40


def show(value: Any) -> str:
    """repr cut to a few dozen characters: a YAML alias bomb expands to 10^8 items, and a message
    quoting it in full would never finish."""
    return _SHOW.repr(value)


# ---- reusable checks -------------------------------------------------------------------------
def positive(v: Any) -> str | None:
    return None if v > 0 else f"must be > 0, got {v!r}"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else f"must be >= 0, got {v!r}"


def at_most(limit: float, why: str) -> Check:
    """An upper bound on a value that sizes memory or work, with the reason in the message."""
    def check(v: Any) -> str | None:
        return None if v <= limit else f"must be at most {limit:,} ({why}), got {v:,}"

    return check


def auto_or(what: str, *checks: Check) -> Check:
    """`auto` (the simulator decides), or `what`: a value that passes `checks`."""
    def check(v: Any) -> str | None:
        if isinstance(v, str):
            return None if v == "auto" else f"must be auto or {what}, got {show(v)}"
        return next((msg for msg in (c(v) for c in checks) if msg), None)

    return check


def at_least(limit: float, why: str) -> Check:
    """A lower bound below which a value means nothing (or makes the run endless), with the reason."""
    def check(v: Any) -> str | None:
        return None if v >= limit else f"must be at least {limit:g} ({why}), got {v!r}"

    return check


MAX_NAME_BYTES = 200  # a folder name is at most 255 bytes; run folders add '-2', '-3', ... to it


def plain_name(v: Any) -> str | None:
    """A label that becomes one folder name: no path separators, no '.'/'..' (`name: ../../x` must not
    write outside the output folder), printable (no control or bidi characters that make a listing lie,
    no lone surrogate that cannot be written), short enough for the file system."""
    if not v or v in (".", "..") or any(c in v for c in "/\\"):
        return f"must be a plain name (one folder: no '/', '\\' or '..'), got {show(v)}"
    odd = next((c for c in v if not c.isprintable()), None)
    if odd is not None:
        return (f"must be printable text, got {show(v)}: {odd!a} at position {v.index(odd)} is a control, "
                "format (e.g. bidi) or unencodable character")
    size = len(v.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return (f"must be at most {MAX_NAME_BYTES} bytes of UTF-8 (a folder name: file systems allow 255 and run "
                f"folders add a suffix), got {size} bytes")
    return None


def between(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        return None if lo <= v <= hi else f"must be in [{lo}, {hi}], got {v!r}"

    return check


def one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        if v in choices:
            return None
        return f"must be one of {', '.join(choices)}, got {show(v)}{did_you_mean(str(v)[:100], list(choices))}"

    return check


# ---- validation ------------------------------------------------------------------------------
def registered(module: str, name: str) -> Check:
    """A name in a registry or a tuple of names (`module.name`), looked up when checked: plugins have
    registered theirs by then (the module is imported only then; torch is heavy)."""
    def check(v: Any) -> str | None:
        import importlib

        names = getattr(importlib.import_module(module), name)
        if isinstance(names, tuple):
            return one_of(*names)(v)
        return None if v in names else names.unknown(v)

    return check


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # YAML true is not a number
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def resolve(section: Section, data: Any, path: str, problems: list[str], item: bool = False) -> dict[str, Any]:
    """Return `data` merged onto the section's defaults; append '<path>: <problem>' strings.
    A missing section (null) takes the defaults; a list item must be a mapping (`[null]` is a mistake)."""
    if data is None and not item:
        data = {}
    if not isinstance(data, dict):
        got = "null" if data is None else f"{type(data).__name__} {show(data)}"
        problems.append(f"{path or '<top>'}: must be a mapping, got {got}")
        data = {}
    known = list(section.fields)
    for key in data:
        if key not in section.fields:
            where = f"{path}.{key}" if path else str(key)
            problems.append(f"{where}: unknown key{did_you_mean(str(key)[:100], known)}")
    out: dict[str, Any] = {}
    for name, spec in section.fields.items():
        where = f"{path}.{name}" if path else name
        if isinstance(spec, Section):
            out[name] = resolve(spec, data.get(name), where, problems)
        else:
            out[name] = resolve_field(spec, data.get(name, spec.default), where, problems)
    return out


_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


# Times the simulated clock can hold, by unit: at most MAX_TIME_S (~32 years); a time that must be > 0 is at
# least MIN_TIME_S, and a rate at least 1 / MAX_TIME_S, so that horizon / time and 1 / rate stay finite (a
# denormal 1e-310 would overflow them at run time). Near 10^9 s the clock's float resolution is 0.2 us anyway.
MIN_TIME_S = 1e-6
_SECONDS_PER_UNIT = {"s": 1.0, "ms": 1e-3}


def _clock_problem(spec: Field, value: float) -> str | None:
    """The unit-wide bounds above, for values that passed the field's own checks."""
    if spec.unit in _SECONDS_PER_UNIT:
        scale = _SECONDS_PER_UNIT[spec.unit]
        if value * scale > MAX_TIME_S:
            return f"must be at most {MAX_TIME_S / scale:g} {spec.unit} (~32 years, the longest time), got {value!r}"
        if positive in spec.checks and value * scale < MIN_TIME_S:
            return f"must be at least {MIN_TIME_S / scale:g} {spec.unit} (1 us), got {value!r}"
    if spec.unit == "1/s" and value < 1 / MAX_TIME_S:
        return f"must be at least {1 / MAX_TIME_S:g} {spec.unit} (one per {MAX_TIME_S:g} s), got {value!r}"
    return None


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
        problems.append(f"{path}: must be {spec.type_name()}, got {type(value).__name__} {show(value)}")
        return value
    if float in spec.types and isinstance(value, int) and not isinstance(value, bool) and int not in spec.types:
        value = float(value) if abs(value) < 2 ** 1023 else math.inf  # float(10**400) would raise
    if isinstance(value, float) and not math.isfinite(value):  # .inf passes every '> 0' check
        hint = " (null means none / unlimited)" if spec.nullable else ""
        problems.append(f"{path}: must be a finite number{hint}, got {value}")
        return value
    if spec.items is not None and isinstance(value, list):
        return [resolve(spec.items, item, f"{path}[{i}]", problems, item=True) for i, item in enumerate(value)]
    for check in spec.checks:
        msg = check(value)
        if msg:
            problems.append(f"{path}: {msg}")
            return value
    clock = _clock_problem(spec, value) if isinstance(value, float) else None
    if clock:
        problems.append(f"{path}: {clock}")
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
    for name, part in section.fields.items():
        if isinstance(part, Section):
            lines += document(part, _join(path, name), level + 1 if path else level)
    return lines


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
