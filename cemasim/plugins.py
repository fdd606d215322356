"""Plugins: third-party methods, corruptions, datasets and models, registered without forking cemasim.

A plugin is an importable module that registers its parts with cemasim's registries when it is
imported (docs/extending.md). Three ways in, all loaded before a scenario is validated, so in
every process that runs one (the command line, the Python API, local pool workers and Ray workers
validate the scenario they run):

- an installed package's entry point in the group `cemasim.plugins` (its value a module);
- a scenario's `plugins:` list of module names (they travel with the scenario, to any worker);
- `--plugin MODULE` on the command line, which adds MODULE to the scenario's list.

Plugin authors import what they register with from here: every registry of REGISTRIES (METHODS,
CORRUPTIONS, DATASETS, MODELS, PROFILES, RADIOS, ARRIVALS, SELECTION_POLICIES, LOSS_MODELS, OUTAGES,
AVAILABILITY, CAPACITY_MODELS, SCHEDULERS), and Field / Section for the parameters a method or a
capacity model declares (`method.params`, `uplink.capacity_params`).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from typing import Any

GROUP = "cemasim.plugins"
_entry_points_problems: list[str] | None = None  # loaded once a process
# Every registry a plugin may add to, by the kind `cemasim list KIND` names: (module, attribute). Plugin
# authors import them from here; the command line lists them; tests restore them after a plugin.
REGISTRIES = {"methods": ("cemasim.methods", "METHODS"), "models": ("cemasim.models.zoo", "MODELS"),
              "profiles": ("cemasim.models.profiles", "PROFILES"),
              "corruptions": ("cemasim.data.corruptions", "CORRUPTIONS"),
              "arrivals": ("cemasim.data.arrivals", "ARRIVALS"), "datasets": ("cemasim.data.datasets", "DATASETS"),
              "radios": ("cemasim.net.radio", "RADIOS"), "policies": ("cemasim.methods.policies", "SELECTION_POLICIES"),
              "losses": ("cemasim.net.loss", "LOSS_MODELS"), "outages": ("cemasim.net.intervals", "OUTAGES"),
              "availability": ("cemasim.net.intervals", "AVAILABILITY"),
              "capacities": ("cemasim.net.capacity_models", "CAPACITY_MODELS"),
              "schedulers": ("cemasim.scheduling", "SCHEDULERS")}
_EXPORTS = {name: module for module, name in REGISTRIES.values()} | {"Field": "cemasim.schema",
                                                                     "Section": "cemasim.schema"}


def registry(kind: str) -> Any:
    """The registry `cemasim list KIND` shows (imported now)."""
    module, name = REGISTRIES[kind]
    return getattr(importlib.import_module(module), name)


def __getattr__(name: str) -> Any:
    """The registries, imported on first use (torch is heavy; validation imports this module early)."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cemasim.plugins' has no attribute {name!r}")


def load_entry_points() -> list[str]:
    """Import every installed plugin (entry points of group `cemasim.plugins`), once a process; the
    problems, each naming its entry point."""
    global _entry_points_problems
    if _entry_points_problems is None:
        _entry_points_problems = []
        for ep in importlib.metadata.entry_points(group=GROUP):
            problem = load_module(ep.value.split(":")[0])
            if problem:
                _entry_points_problems.append(f"entry point {GROUP} '{ep.name}' of {_dist(ep)}: {problem}")
    return list(_entry_points_problems)


def with_modules(listed: Any, extra: list[str]) -> Any:
    """A scenario's plugins list with `extra` (--plugin) appended, each once; a malformed list unchanged
    (the schema reports it)."""
    if not extra:
        return listed
    if listed is None:
        listed = []
    if not isinstance(listed, list):
        return listed
    return listed + [m for m in extra if m not in listed]


def load(modules: Any, path: str = "plugins") -> list[str]:
    """Import the installed plugins and `modules` (a scenario's `plugins` list); the problems, each
    naming `path[i]`. A value that is not a list of names is left to the schema to report."""
    problems = load_entry_points()
    if isinstance(modules, list):
        for i, name in enumerate(modules):
            if isinstance(name, str) and name.strip():
                problem = load_module(name.strip())
                if problem:
                    problems.append(f"{path}[{i}]: {problem}")
    return problems


def load_module(module: str) -> str | None:
    """Import `module`; None, or why it failed in one line (the plugin's own exception, not a traceback)."""
    if module in sys.modules:
        return None
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            return (f"no module named '{module}' (install the package that provides it, or put its folder on "
                    "PYTHONPATH)")
        return f"importing '{module}' failed: ModuleNotFoundError: {exc}"
    except Exception as exc:  # the plugin's own error: say which and where, then go on to report the rest
        return f"importing '{module}' failed: {type(exc).__name__}: {exc}"
    return None


def _dist(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an installed package"
