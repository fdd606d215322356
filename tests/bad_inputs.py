"""Bad inputs, as a hostile file or a hurried user would give them: generated mutations of every
schema key and of the shipped scenarios, plus the classes of issue 14 (encodings, non-finite and
huge numbers, YAML bombs, broken traces and checkpoints, bad command lines, paths that escape).

Each case is a command line and the files it reads; `run_case` runs it in-process through
`cemasim.cli.main` and `judge` classifies the outcome:

    clear     the expected exit code and a message naming every expected YAML path / file / line
    internal  'internal error' or a traceback
    accepted  exit 0 (nonsense taken as valid)
    vague     any other outcome (a wrong code, or a message that does not say where)
    hang      (set by the caller when a case outlives its time limit)

tests/test_bad_inputs.py asserts every case is clear; analysis/robustness/measure.py counts them.
"""

from __future__ import annotations

import contextlib
import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = REPO / "scenarios"


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # '{d}' is the case's own folder
    files: tuple[tuple[str, bytes], ...] = ()  # written into the case folder first
    code: int = 2
    names: tuple[str, ...] = ()  # each must appear in the message: a YAML path, a file name, 'line N'
    group: str = "class"
    absent: tuple[str, ...] = ()  # must not appear (file contents echoed, advice to unpickle code)


def _yaml(data: Any) -> bytes:
    return yaml.safe_dump(data, sort_keys=False).encode()


def _validate(case_id: str, scenario: Any, names: tuple[str, ...], group: str = "class",
              extra: tuple[tuple[str, bytes], ...] = (), code: int = 2, absent: tuple[str, ...] = ()) -> Case:
    body = scenario if isinstance(scenario, bytes) else _yaml(scenario)
    return Case(case_id, ("validate", "{d}/s.yaml"), (("s.yaml", body),) + extra, code, names, group, absent)


# ---- generated: every schema key with values of the wrong kind ---------------------------------------
def _leaves(section: Any, path: str = "") -> list[tuple[str, Any]]:
    from cemasim.schema import Section

    out = []
    for name, spec in section.fields.items():
        where = f"{path}.{name}" if path else name
        if isinstance(spec, Section):
            out += _leaves(spec, where)
        else:
            out.append((where, spec))
    return out


def _nest(path: str, value: Any) -> dict[str, Any]:
    node: Any = value
    for step in reversed(path.split(".")):
        node = {step: node}
    return node


def _bad_values(spec: Any) -> list[tuple[str, Any]]:
    """(label, value) pairs that the field must reject."""
    from cemasim import schema

    checks = {getattr(c, "__qualname__", "") for c in spec.checks}
    if dict in spec.types:
        return [("list", [1])]
    if list in spec.types:
        return [("text", "abc"), ("number", 3)]
    if bool in spec.types:
        return [("text", "maybe"), ("number", 2)]
    if float in spec.types:
        out = [("inf", float("inf")), ("-inf", float("-inf")), ("nan", float("nan")), ("text", "fast"),
               ("list", [1.0])]
        if schema.positive.__qualname__ in checks:
            out += [("zero", 0), ("negative", -1.5)]
        elif schema.non_negative.__qualname__ in checks:
            out.append(("negative", -1.5))
        elif any("between" in c for c in checks):
            out.append(("above", 1e9))
        return out
    if int in spec.types:
        out = [("fraction", 1.5), ("text", "many"), ("inf", float("inf")), ("bool", True)]
        if schema.positive.__qualname__ in checks:
            out.append(("zero", 0))
        if schema.positive.__qualname__ in checks or schema.non_negative.__qualname__ in checks:
            out.append(("negative", -3))
        return out
    if str in spec.types:
        out = [("number", 7), ("list", ["a"])]
        if any("one_of" in c for c in checks):
            out.append(("unknown", "bogus"))
        return out
    return []


def schema_cases() -> list[Case]:
    from cemasim.scenario import SCHEMA

    cases = []
    for path, spec in _leaves(SCHEMA):
        for label, value in _bad_values(spec):
            cases.append(_validate(f"schema:{path}={label}", _nest(path, value), (path,), "schema"))
    return cases


# ---- generated: the shipped scenarios with one key broken -------------------------------------------
def _scenario_leaves(data: Any, path: str = "") -> list[str]:
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _scenario_leaves(v, f"{path}.{k}" if path else str(k))]
    return [path] if path and "[" not in path else []


def _set_leaf(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for step in parents:
        data = data[step]
    data[last] = value


def _absolute_files(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """A copy written elsewhere must still find the shipped traces."""
    from cemasim.scenario import anchor_paths

    anchor_paths(data, folder)
    return data


SHIPPED = ["quickstart.yaml", "study.yaml", "methods.yaml", "commuter.yaml", "cema_released_code.yaml"]


def shipped_cases() -> list[Case]:
    import copy

    cases = []
    for name in SHIPPED:
        original = yaml.safe_load((SCENARIOS / name).read_text())
        if not isinstance(original, dict) or {"grid", "base"} & set(original):
            continue
        original = _absolute_files(original, SCENARIOS)
        for path in _scenario_leaves(original):
            if path in ("name", "output.dir"):
                continue
            data = copy.deepcopy(original)
            current = eval_path(data, path)
            # a string where a number is meant, a list where a string is meant
            _set_leaf(data, path, [current] if isinstance(current, str) else "?")
            cases.append(_validate(f"shipped:{name}:{path}", data, (path,), "shipped"))
    return cases


def eval_path(data: dict[str, Any], path: str) -> Any:
    for step in path.split("."):
        data = data[step]
    return data


# ---- hand-written: the classes of issue 14 ----------------------------------------------------------
def _billion_laughs(levels: int = 9) -> bytes:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return ("\n".join(lines) + f"\nname: *a{levels - 1}\n").encode()


def _pickle_payload() -> bytes:
    import os

    return pickle.dumps(os.getcwd)  # a global reference: weights_only must refuse to call it


def _tensor_file() -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(torch.zeros(3), buf)
    return buf.getvalue()


def class_cases() -> list[Case]:
    v = _validate
    mm = b"5\n10\n15\n20\n"  # a valid Mahimahi trace
    cases = [
        # duplicate keys and encodings
        v("dup:top", b"fleet:\n  devices: 2\nfleet:\n  devices: 3\n", ("line 1", "line 3", "fleet")),
        v("dup:nested", b"uplink:\n  latency_ms: 5\n  latency_ms: 6\n", ("line 2", "line 3", "latency_ms")),
        v("enc:latin1", b"name: caf\xe9\n", ("s.yaml", "line 1")),
        v("enc:binary", bytes(range(256)) * 4, ("s.yaml",)),
        v("enc:utf16", "name: x\n".encode("utf-16"), ("s.yaml",)),
        v("enc:trace-latin1", _yaml({"uplink": {"trace": "{d}/t.csv"}}),
          ("uplink.trace", "t.csv"), extra=(("t.csv", b"time_s,mbps\n0,5\xe9\n"),)),
        v("enc:trace-binary", _yaml({"uplink": {"trace": "{d}/t.bin"}}),
          ("uplink.trace", "t.bin"), extra=(("t.bin", bytes(range(256))),)),
        v("enc:trace-nul", _yaml({"downlink": {"trace": "{d}/t"}}),
          ("downlink.trace", "t"), extra=(("t", b"HOME=/x\x00PATH=/y\x00SECRET=z\x00"),), absent=("SECRET",)),
        v("enc:outage-latin1", _yaml({"uplink": {"outages": {"process": "trace", "trace": "{d}/o.csv"}}}),
          ("uplink.outages.trace", "o.csv"), extra=(("o.csv", b"start_s,end_s\n1,2\xff\n"),)),
        v("enc:avail-binary", _yaml({"availability": {"process": "trace", "trace": "{d}/a.csv"}}),
          ("availability.trace", "a.csv"), extra=(("a.csv", bytes(range(256))),)),
        v("enc:arrivals-latin1", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv"), extra=(("r.csv", b"time_s\n0.5\xe9\n"),)),
        # non-finite and huge numbers (sizes named)
        v("num:duration-inf", b"duration_s: .inf\n", ("duration_s", "finite")),
        v("num:rate-inf", b"arrivals:\n  rate_hz: .inf\n", ("arrivals.rate_hz", "finite")),
        v("num:drain-inf", b"drain_s: .inf\n", ("drain_s", "finite")),
        v("num:bandwidth-inf", b"uplink:\n  bandwidth_mbps: .inf\n", ("uplink.bandwidth_mbps", "null")),
        v("num:duration-huge", b"duration_s: 1.0e12\n", ("duration_s", "at most")),
        v("num:rate-huge", b"arrivals:\n  rate_hz: 1.0e9\n", ("samples", "at most")),
        v("num:devices-huge", b"fleet:\n  devices: 1000000000\n", ("fleet.devices", "at most")),
        v("num:fraction-nan", b"fleet:\n  classes:\n  - {name: a, fraction: .nan}\n",
          ("fleet.classes[0].fraction",)),
        v("num:class-inf", b"fleet:\n  classes:\n  - {name: a, count: 1, uplink: {bandwidth_mbps: .inf}}\n",
          ("fleet.classes[0].uplink.bandwidth_mbps",)),
        v("num:timeline-bins", b"output:\n  timeline_bin_s: 1.0e-9\n", ("output.timeline_bin_s", "at most")),
        v("num:segments-tiny", b"shift:\n  segments:\n  - {duration_s: 1.0e-9}\n",
          ("shift.segments", "at most")),
        v("num:outage-tiny", b"uplink:\n  outages: {process: exponential, up_s: 1.0e-9, down_s: 1.0e-9}\n",
          ("uplink.outages", "at most")),
        v("num:onoff-tiny", b"availability: {process: onoff, on_s: 1.0e-9, off_s: 1.0e-9}\n",
          ("availability", "at most")),
        v("num:seed-huge", b"seed: 100000000000000000000000\n", ("seed", "at most")),
        v("num:cotta-views-huge", b"method:\n  cotta_views: 100000000\n", ("method.cotta_views", "at most")),
        v("num:image-size-huge", b"data:\n  image_size: 1000000\n", ("data.image_size", "at most")),
        v("num:gpus-huge", b"cloud:\n  gpus: 1000000000\n", ("cloud.gpus", "at most")),
        # YAML bombs and structure
        v("yaml:billion-laughs", _billion_laughs(), ("name",)),
        v("yaml:laughs-in-segments", _billion_laughs().replace(b"name: *a8", b"shift:\n  segments: *a8"),
          ("shift.segments",)),
        v("yaml:segments-null", b"shift:\n  segments: [null]\n", ("shift.segments[0]",)),
        v("yaml:segments-number", b"shift:\n  segments: [3]\n", ("shift.segments[0]",)),
        v("yaml:classes-null", b"fleet:\n  classes: [null]\n", ("fleet.classes[0]",)),
        v("yaml:top-list", b"- 1\n- 2\n", ("s.yaml", "mapping")),
        v("yaml:syntax", b"fleet: {devices: 2\n", ("s.yaml", "line")),
        v("yaml:tab", b"fleet:\n\tdevices: 2\n", ("s.yaml", "line")),
        v("yaml:python-tag", b"name: !!python/object/apply:os.system ['true']\n", ("s.yaml", "line 1")),
        v("yaml:key-not-string", b"1: 2\n", ("1",)),
        # traces
        v("trace:mahimahi-huge-stamp", _yaml({"uplink": {"trace": "{d}/t.mahimahi"}}),
          ("uplink.trace", "t.mahimahi", "at most"), extra=(("t.mahimahi", b"1\n900000000000000\n"),)),
        v("trace:bin-tiny", _yaml({"uplink": {"trace": "{d}/t.mahimahi", "trace_bin_ms": 1e-6}}),
          ("uplink", "at most"), extra=(("t.mahimahi", mm),)),
        v("trace:csv-1e308", _yaml({"uplink": {"trace": "{d}/t.csv"}}),
          ("uplink.trace", "t.csv", "line 3"), extra=(("t.csv", b"time_s,mbps\n0,5\n1e308,2\n"),)),
        v("trace:csv-nan", _yaml({"uplink": {"trace": "{d}/t.csv"}}),
          ("uplink.trace", "t.csv", "line 3"), extra=(("t.csv", b"time_s,mbps\n0,5\n1,nan\n"),)),
        v("trace:csv-header-only", _yaml({"downlink": {"trace": "{d}/t.csv"}}),
          ("downlink.trace", "t.csv"), extra=(("t.csv", b"time_s,mbps\n"),)),
        v("trace:csv-missing", _yaml({"uplink": {"trace": "{d}/nope.csv"}}), ("uplink.trace", "nope.csv")),
        v("trace:class-bad", _yaml({"fleet": {"classes": [{"name": "a", "count": 1,
                                                              "uplink": {"trace": "{d}/t.csv"}}]}}),
          ("fleet.classes[0].uplink.trace", "t.csv"), extra=(("t.csv", b"time_s,mbps\n0,-5\n"),)),
        v("trace:quote-limit", _yaml({"uplink": {"trace": "{d}/t"}}), ("uplink.trace",),
          extra=(("t", b"A_SECRET_VALUE_THAT_MUST_NOT_BE_QUOTED_IN_FULL_XXXXXXXXXXXXXXXXXXXXXXXXX,y\n1,2\n"),),
          absent=("QUOTED_IN_FULL",)),
        v("outage:negative", _yaml({"uplink": {"outages": {"process": "trace", "trace": "{d}/o.csv"}}}),
          ("uplink.outages.trace", "o.csv", "line 2"), extra=(("o.csv", b"start_s,end_s\n-1,2\n"),)),
        v("outage:nan", _yaml({"uplink": {"outages": {"process": "trace", "trace": "{d}/o.csv"}}}),
          ("uplink.outages.trace", "o.csv", "line 2"), extra=(("o.csv", b"start_s,end_s\nnan,2\n"),)),
        v("outage:inf", _yaml({"availability": {"process": "trace", "trace": "{d}/o.csv"}}),
          ("availability.trace", "o.csv", "line 2"), extra=(("o.csv", b"start_s,end_s\n1,inf\n"),)),
        v("outage:no-header", _yaml({"availability": {"process": "trace", "trace": "{d}/o.csv"}}),
          ("availability.trace", "o.csv"), extra=(("o.csv", b"1,2\n"),)),
        v("outage:device-bad", _yaml({"availability": {"process": "trace", "trace": "{d}/o.csv"}}),
          ("availability.trace", "o.csv", "line 2"), extra=(("o.csv", b"start_s,end_s,device\n1,2,x\n"),)),
        v("arrivals:negative", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "line 3"), extra=(("r.csv", b"time_s\n0.5\n-1\n"),)),
        v("arrivals:nan", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "line 2"), extra=(("r.csv", b"time_s\nnan\n"),)),
        v("arrivals:inf", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "line 2"), extra=(("r.csv", b"time_s\ninf\n"),)),
        v("arrivals:text", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "line 2"), extra=(("r.csv", b"time_s\nsoon\n"),)),
        v("arrivals:no-column", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "time_s"), extra=(("r.csv", b"when\n1\n"),)),
        v("arrivals:empty", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv"), extra=(("r.csv", b""),)),
        v("arrivals:device-bad", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "line 2"), extra=(("r.csv", b"device,time_s\n0.5,1\n"),)),
        v("arrivals:huge", _yaml({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "line 2"), extra=(("r.csv", b"time_s\n1e308\n"),)),
        # checkpoints
        *[v(f"ckpt:{role}-{kind}", _yaml({"models": {f"{role}_weights": "{d}/w.pt"}}),
            (f"models.{role}_weights", "w.pt"), extra=(("w.pt", payload),), absent=("weights_only=False",))
          for role in ("edge", "foundation")
          for kind, payload in (("pickle", _pickle_payload()), ("text", b"not a checkpoint\n"),
                                ("bytes", bytes(range(256)) * 8), ("tensor", _tensor_file()),
                                ("empty", b""))],
        v("ckpt:missing", _yaml({"models": {"edge_weights": "{d}/nope.pt"}}), ("models.edge_weights", "nope.pt")),
        # names, data, channels
        v("model:timm-typo", b"models:\n  edge: timm:resnet181\n", ("models.edge", "resnet181")),
        v("model:unknown-library", b"models:\n  foundation: hf:resnet18\n", ("models.foundation", "hf")),
        v("model:torchvision-typo", b"models:\n  foundation: torchvision:resnet5\n", ("models.foundation",)),
        v("model:empty-arch", b"models:\n  edge: 'timm:'\n", ("models.edge",)),
        v("model:channels", b"models:\n  edge: timm:resnet18\n", ("models.edge", "channel")),
        v("data:root-missing", b"data:\n  root: /no/such/folder\n", ("data.root", "/no/such/folder")),
        v("data:root-file", b"data:\n  root: {d}/s.yaml\n".replace(b"{d}", b"{d}"), ("data.root",)),
        v("name:traversal", b"name: ../../x\n", ("name", "../../x")),
        v("name:absolute", b"name: /tmp/x\n", ("name",)),
        v("name:empty", b"name: ''\n", ("name",)),
        v("profile:inline-inf", b"fleet:\n  profile: {peak_flops_per_s: .inf}\n", ("fleet.profile.peak_flops_per_s",)),
        # command lines
        Case("cli:set-not-yaml", ("validate", "{d}/s.yaml", "--set", "fleet={devices: 2"), (("s.yaml", b"{}\n"),),
             2, ("--set", "fleet")),
        Case("cli:set-no-equals", ("validate", "{d}/s.yaml", "--set", "fleet.devices"), (("s.yaml", b"{}\n"),),
             2, ("--set",)),
        Case("cli:set-index-missing", ("validate", "{d}/s.yaml", "--set", "shift.segments[7].severity=2"),
             (("s.yaml", b"{}\n"),), 2, ("--set", "[7]")),
        Case("cli:set-laughs", ("validate", "{d}/s.yaml", "--set",
                                "name=[&a [1,1,1,1,1,1,1,1,1,1], [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]]"),
             (("s.yaml", b"{}\n"),), 2, ("name",)),
        Case("cli:grid-empty-value", ("sweep", "{d}/s.yaml", "--grid", "uplink.bandwidth_mbps=1,,2", "--out",
                                      "{d}/out"), (("s.yaml", b"{}\n"),), 2, ("--grid", "uplink.bandwidth_mbps")),
        Case("cli:grid-not-yaml", ("sweep", "{d}/s.yaml", "--grid", "fleet={devices: 2", "--out", "{d}/out"),
             (("s.yaml", b"{}\n"),), 2, ("--grid", "fleet")),
        Case("cli:grid-no-values", ("sweep", "{d}/s.yaml", "--grid", "seed=", "--out", "{d}/out"),
             (("s.yaml", b"{}\n"),), 2, ("--grid",)),
        Case("cli:grid-bad-value", ("sweep", "{d}/s.yaml", "--grid", "fleet.devices=2,many", "--out", "{d}/out"),
             (("s.yaml", b"{}\n"),), 2, ("fleet.devices", "many")),
        Case("cli:sweep-set-not-yaml", ("sweep", "{d}/s.yaml", "--grid", "seed=1,2", "--set", "name=[x",
                                        "--out", "{d}/out"), (("s.yaml", b"{}\n"),), 2, ("--set", "name")),
        Case("cli:workers-zero", ("sweep", "{d}/s.yaml", "--grid", "seed=1,2", "--workers", "0"),
             (("s.yaml", b"{}\n"),), 2, ("--workers",)),
        Case("cli:threads-text", ("run", "{d}/s.yaml", "--threads", "two"), (("s.yaml", b"{}\n"),), 2,
             ("--threads",)),
        Case("cli:seed-negative", ("validate", "{d}/s.yaml", "--seed", "-1"), (("s.yaml", b"{}\n"),), 2,
             ("seed",)),
        Case("cli:run-out-file", ("run", "{d}/s.yaml", "--out", "{d}/s.yaml"), (("s.yaml", b"{}\n"),), 2,
             ("--out", "s.yaml")),
        Case("cli:sweep-out-file", ("sweep", "{d}/s.yaml", "--grid", "seed=1,2", "--out", "{d}/s.yaml"),
             (("s.yaml", b"{}\n"),), 2, ("--out", "s.yaml")),
        Case("cli:sweep-name-traversal", ("sweep", "{d}/s.yaml", "--grid", "seed=1,2", "--name", "../..", "--out",
                                          "{d}/out"), (("s.yaml", b"{}\n"),), 2, ("--name", "../..")),
        Case("cli:sweep-file-name-traversal", ("sweep", "{d}/w.yaml", "--out", "{d}/out"),
             (("w.yaml", b"name: ../../escape\ngrid:\n  seed: [1, 2]\n"),), 2, ("w.yaml", "name")),
        Case("cli:sweep-file-unknown-key", ("sweep", "{d}/w.yaml", "--out", "{d}/out"),
             (("w.yaml", b"grid:\n  seed: [1, 2]\nsedes: 2\n"),), 2, ("w.yaml", "sedes", "seeds")),
        Case("cli:validate-sweep-unknown-key", ("validate", "{d}/w.yaml"),
             (("w.yaml", b"base: null\ngrid:\n  seed: [1, 2]\nsets: {}\n"),), 2, ("w.yaml", "sets")),
        Case("cli:sweep-grid-empty-list", ("sweep", "{d}/w.yaml", "--out", "{d}/out"),
             (("w.yaml", b"grid:\n  seed: []\n"),), 2, ("w.yaml", "grid.seed")),
        Case("cli:sweep-grid-laughs", ("sweep", "{d}/w.yaml", "--out", "{d}/out"),
             (("w.yaml", _billion_laughs().replace(b"name: *a8", b"grid:\n  name: *a8")),), 2, ("w.yaml", "grid")),
        Case("cli:sweep-seeds-bad", ("sweep", "{d}/w.yaml", "--out", "{d}/out"),
             (("w.yaml", b"grid:\n  seed: [1, 2]\nseeds: [a]\n"),), 2, ("w.yaml", "seeds")),
        Case("cli:plot-not-a-run", ("plot", "{d}"), (("x.txt", b"x"),), 2, ("plot",)),
        Case("cli:plot-partial-run", ("plot", "{d}/r"), (("r/scenario.yaml", b"{}\n"),), 2, ("r",)),
        Case("cli:plot-bad-parquet", ("plot", "{d}/results.parquet"), (("results.parquet", b"PAR1 not really"),),
             2, ("results.parquet",)),
        Case("cli:list-unknown", ("list", "metods"), (), 2, ("metods", "methods")),
        # a run that predicts nothing: a run-time data problem, exit 1, and no folder that looks complete
        Case("run:zero-predictions", ("run", "{d}/s.yaml", "--quiet", "--out", "{d}/out", "--set", "duration_s=1",
                                      "--set", "drain_s=0", "--set", "output.plots=false",
                                      "--set", "compute_device=cpu"), (("s.yaml", b"{}\n"),), 1,
             ("no sample", "duration_s")),
    ]
    return cases


def all_cases() -> list[Case]:
    return class_cases() + schema_cases() + shipped_cases()


# ---- running and judging ------------------------------------------------------------------------------
@dataclass
class Outcome:
    code: int
    message: str  # stdout + stderr


def run_case(case: Case, folder: Path) -> Outcome:
    """Write the case's files into `folder` and run its command line in this process."""
    from cemasim import cli

    folder.mkdir(parents=True, exist_ok=True)
    for name, body in case.files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body.replace(b"{d}", str(folder).encode()))
    argv = [a.replace("{d}", str(folder)) for a in case.argv]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
        except Exception as exc:  # noqa: BLE001 - an escaped exception is what we count
            import traceback

            traceback.print_exc()
            code = -1
            err.write(f"Traceback: {exc!r}")
    return Outcome(code, out.getvalue() + err.getvalue())


def judge(case: Case, outcome: Outcome, folder: Path) -> str:
    text = outcome.message
    if "internal error" in text or "Traceback" in text:
        return "internal"
    if outcome.code == 0:
        return "accepted"
    names = [n.replace("{d}", str(folder)) for n in case.names]
    if any(a in text for a in case.absent):
        return "vague"
    if outcome.code == case.code and all(n in text for n in names):
        return "clear"
    return "vague"
