"""The project's own errors. Library code raises these; only the CLI prints them and picks exit codes."""

from __future__ import annotations


class CemasimError(Exception):
    """Base class: a problem the user can fix, reported without a traceback."""

    exit_code = 1


class ConfigError(CemasimError):
    """Bad input (scenario, override, name). Collects every problem with its YAML path."""

    exit_code = 2

    def __init__(self, problems: list[str] | str, source: str = "scenario"):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: {n} problem{'s' if n != 1 else ''}"
        super().__init__(head + "".join(f"\n  - {p}" for p in self.problems))


class DataError(CemasimError):
    """Missing or malformed data or weights (names the path and the expected layout)."""

    exit_code = 2


class RunError(CemasimError):
    """A run that cannot produce results (nothing predicted, its folder cannot be written)."""

    exit_code = 1


class NonFiniteError(RunError):
    """A learning step gave a non-finite loss or state: the run stops rather than predict with it or ship it
    (docs/usage.md, "Finite state"). The step raises it saying what was not finite; the simulator, which knows the
    device and the time, raises it again with the step's name and hyper-parameters (methods/optim.py)."""
