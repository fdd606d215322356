"""The layers stay layered: the pure ML and data layers never import the simulator (SimPy), the
scenario or anything above them; results never import the simulator, the sweep or the CLI; the
simulator never imports the scenario (it receives specs) nor what runs, prints or plots it. Lazy imports inside
functions count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "cemasim"
ABOVE_PURE = ("cemasim.sim", "simpy", "cemasim.scenario", "cemasim.assembly", "cemasim.workload", "cemasim.oracle",
              "cemasim.runner", "cemasim.sweeps", "cemasim.api", "cemasim.cli", "cemasim.results")
RULES = {
    "data": ABOVE_PURE,
    "net": ABOVE_PURE,
    "models": ABOVE_PURE,
    "methods": ABOVE_PURE,
    "scenario": ("cemasim.sim", "simpy", "cemasim.assembly", "cemasim.workload", "cemasim.oracle", "cemasim.runner",
                 "cemasim.sweeps", "cemasim.api", "cemasim.cli", "cemasim.results"),
    # results reads tables and summaries; the recorder that the simulator writes lives in sim/
    "results": ("cemasim.sim", "simpy", "cemasim.sweeps", "cemasim.cli", "cemasim.api", "cemasim.runner"),
    # the simulator runs one run's spec (cemasim/specs.py, built by assembly.py): it never sees the
    # scenario, nor reaches up to what runs many, prints or plots
    "sim": ("cemasim.scenario", "cemasim.assembly", "cemasim.sweeps", "cemasim.cli", "cemasim.api",
            "cemasim.runner", "cemasim.results.figures", "cemasim.results.plots", "matplotlib"),
}


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


@pytest.mark.parametrize("layer", sorted(RULES))
def test_layer_imports_nothing_above_it(layer):
    bad = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for line, name in imports(path):
            if any(name == f or name.startswith(f + ".") for f in RULES[layer]):
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_rule_sees_lazy_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("def f():\n    from cemasim.sim.fleet import Fleet\n    import simpy\n")
    names = [n for _, n in imports(sample)]
    assert "cemasim.sim.fleet" in names and "simpy" in names
