"""cemasim: a discrete-event simulator of cloud-edge model adaptation (CEMA, ICLR 2024).

SimPy decides *when* things happen; real PyTorch models decide *what* happens.

    import cemasim
    sc = cemasim.load_scenario("scenarios/quickstart.yaml", {"fleet.devices": 4})
    result = cemasim.simulate(sc)

The API (load_scenario, simulate, sweep, paired, plot, Scenario, RunResult) is imported on first use, so
`import cemasim` stays light; see docs/python.md.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["RunResult", "Scenario", "load_scenario", "paired", "plot", "simulate", "sweep"]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__} - {"Any"})  # the lazily imported API shows in dir() and completion


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cemasim import api

        return getattr(api, name)
    raise AttributeError(f"module 'cemasim' has no attribute {name!r}")
