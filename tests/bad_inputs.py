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
    return Case(case_id, ("validate", "{d}/s.yaml"), (("s.yaml", body), *extra), code, names, group, absent)


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
        if any("one_of" in c or "registered" in c for c in checks):  # a closed list, or a registry's names
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
        Case("cli:sweep-out-file", ("sweep", "{d}/s.yaml", "--grid", "uplink.latency_ms=1,2", "--out", "{d}/s.yaml"),
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
    return (class_cases() + schema_cases() + shipped_cases() + damaged_folder_cases() + runs_end_cases()
            + t3a_deyo_cases() + roid_rotta_cases() + finite_state_cases() + sweep_integrity_cases())


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
        except Exception as exc:
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


# ---- issue 27: `cemasim plot` on damaged run and sweep folders ------------------------------------------
def _parquet(columns: dict[str, list[Any]]) -> bytes:
    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame(columns).to_parquet(buffer, index=False)
    return buffer.getvalue()


def _run_folder(**damage: bytes | None) -> tuple[tuple[str, bytes], ...]:
    """A complete run folder r/ with the files the run figures read; `damage` replaces (bytes) or leaves
    out (None) a file, e.g. summary_json=b'{'."""
    files: dict[str, bytes | None] = {
        "scenario_yaml": _yaml({"method": {"name": "cema"}}),
        "summary_json": b'{"accuracy": 0.5, "uplink_bytes": 3000}\n',
        "samples_parquet": _parquet({"predicted_s": [1.0, 2.0], "correct": [True, False]}),
        "uploads_parquet": _parquet({"device": [0, 0], "tx_start_s": [0.5, 1.5], "size_bytes": [1000, 2000]})}
    files.update(damage)
    return tuple((f"r/{k.replace('_', '.')}", v) for k, v in files.items() if v is not None)


def _sweep_folder(sweep_yaml: bytes = b"grid:\n  uplink.latency_ms: [1, 2]\n",
                  table: bytes | None = None) -> tuple[tuple[str, bytes], ...]:
    """A sweep folder w/ (sweep.yaml and a results table of two points) without run folders."""
    table = table if table is not None else _parquet({
        "point_id": ["a1", "b2"], "sweep": ["w", "w"], "seed": [0, 0], "uplink.latency_ms": [1, 2],
        "status": ["ok", "ok"], "error": ["", ""], "accuracy": [0.5, 0.6], "uplink_bytes": [1e3, 2e3]})
    return (("w/sweep.yaml", sweep_yaml), ("w/results.parquet", table))


def damaged_folder_cases() -> list[Case]:
    samples = _run_folder()[2][1]
    return [
        Case("plot:summary-not-json", ("plot", "{d}/r", "--out", "{d}/fig"), _run_folder(summary_json=b'{"acc'), 2,
             ("r/summary.json", "not JSON")),
        Case("plot:summary-nulls", ("plot", "{d}/r", "--out", "{d}/fig"),
             _run_folder(summary_json=b'{"accuracy": null, "uplink_bytes": null}'), 2, ("r/summary.json", "accuracy")),
        Case("plot:samples-truncated", ("plot", "{d}/r", "--out", "{d}/fig"),
             _run_folder(samples_parquet=samples[: len(samples) // 2]), 2, ("r/samples.parquet", "unreadable")),
        Case("plot:uploads-missing", ("plot", "{d}/r", "--out", "{d}/fig"), _run_folder(uploads_parquet=None), 2,
             ("r/uploads.parquet", "missing")),
        Case("plot:sweep-yaml-not-yaml", ("plot", "{d}/w"), _sweep_folder(b"grid: {uplink.latency_ms: [1, 2\n"), 2,
             ("w/sweep.yaml", "invalid YAML")),
        Case("plot:sweep-yaml-a-list", ("plot", "{d}/w"), _sweep_folder(b"- uplink.latency_ms\n"), 2,
             ("w/sweep.yaml", "mapping")),
        Case("plot:foreign-table", ("plot", "{d}/w/results.parquet"),
             _sweep_folder(table=_parquet({"user": ["ann"], "score": [3]})), 2, ("w/results.parquet", "no column")),
        Case("plot:two-runs-of-one-point", ("plot", "{d}/w"), _sweep_folder(table=_parquet({
            "point_id": ["a1", "b2"], "sweep": ["w", "w"], "seed": [0, 0], "uplink.latency_ms": [1, 1],
            "status": ["ok", "ok"], "error": ["", ""], "accuracy": [0.5, 0.6], "uplink_bytes": [1e3, 2e3]})), 2,
             ("w/results.parquet", "share their grid values and seed")),
        Case("plot:format-unknown", ("plot", "{d}/w", "--format", "png,jpeg2000"), _sweep_folder(), 2,
             ("--format", "jpeg2000")),
        Case("plot:format-empty", ("plot", "{d}/r", "--format", " , "), _run_folder(), 2, ("--format", "no format")),
        Case("plot:out-a-file", ("plot", "{d}/w", "--out", "{d}/w/sweep.yaml"), _sweep_folder(), 2,
             ("--out", "w/sweep.yaml", "not a folder")),
    ]


# ---- issue 27: every run ends, validate promises what run keeps (engineer C) ----------------------------------
def runs_end_cases() -> list[Case]:
    v, y = _validate, _yaml
    never = {"bandwidth_mbps": None, "latency_ms": 0}  # an attempt takes no simulated time
    ge = {"model": "gilbert_elliott", "p_good_to_bad": 1.0, "p_bad_to_good": 0.0, "loss_good": 1.0, "loss_bad": 1.0}
    fast = ("--quiet", "--out", "{d}/out", "--set", "duration_s=4", "--set", "drain_s=2", "--set", "fleet.devices=1",
            "--set", "output.plots=false", "--set", "compute_device=cpu", "--set", "arrivals.max_wait_s=1")
    return [
        # lost attempts that take no time: once an endless loop, now a bound on the retries
        v("end:uplink-retries-zero-time", y({"uplink": {**never, "loss": {
            "model": "bernoulli", "rate": 1.0, "retry_timeout_ms": 0, "max_retries": 10**12}}}),
          ("uplink.loss.max_retries", "at most 100")),
        v("end:downlink-ge-never-delivers", y({"downlink": {**never, "loss": {**ge, "retry_timeout_ms": 0,
                                                                              "max_retries": 2**40}}}),
          ("downlink.loss.max_retries", "at most 100")),
        v("end:class-retries", y({"fleet": {"classes": [{"name": "a", "count": 1, "uplink": {
            "loss": {"model": "bernoulli", "rate": 1.0, "retry_timeout_ms": 0, "max_retries": 5000}}}]}}),
          ("fleet.classes[0].uplink.loss.max_retries",)),
        # trace pieces that would be ~10^10 events behind a shared segment
        v("end:trace-ns-steps", y({"uplink": {"trace": "{d}/t.csv", "shared_mbps": 5}}), ("uplink.trace", "t.csv",
          "line 3", "1 ms"), extra=(("t.csv", b"time_s,mbps\n0,5\n0.000000001,1\n"),)),
        v("end:mahimahi-bin-ns", y({"downlink": {"trace": "{d}/m.mahimahi", "trace_bin_ms": 1e-6}}),
          ("downlink.trace_bin_ms", "at least 1"), extra=(("m.mahimahi", b"1\n2\n3\n"),)),
        v("end:trace-all-zero", y({"downlink": {"trace": "{d}/z.csv"}}), ("downlink.trace", "z.csv", "line 4"),
          extra=(("z.csv", b"time_s,mbps\n0,0\n5,0\n10,0.0\n"),)),
        # denormal rates and windows (OverflowError at run time) and times past the clock
        v("end:rate-denormal", b"arrivals:\n  rate_hz: 1.0e-310\n", ("arrivals.rate_hz", "at least")),
        v("end:budget-window-denormal", b"upload:\n  budget_bytes: 1000\n  budget_window_s: 1.0e-320\n",
          ("upload.budget_window_s", "at least")),
        v("end:policy-window-denormal", b"selection:\n  policy: budget\n  window_s: 5.0e-324\n",
          ("selection.window_s", "at least")),
        v("end:class-wait-denormal", y({"fleet": {"classes": [{"name": "a", "count": 1,
                                                             "arrivals": {"max_wait_s": 1e-300}}]}}),
          ("fleet.classes[0].arrivals.max_wait_s", "at least")),
        v("end:latency-huge", b"downlink:\n  latency_ms: 1.0e+300\n", ("downlink.latency_ms", "at most")),
        v("end:retry-timeout-huge", b"uplink:\n  loss: {model: bernoulli, retry_timeout_ms: 1.0e+200}\n",
          ("uplink.loss.retry_timeout_ms", "at most")),
        # names the file system cannot take, or that a listing would show as something else
        v("end:name-too-long", y({"name": "run" * 90}), ("name", "200 bytes")),
        v("end:name-surrogate", b'name: "ok\\ud800"\n', ("name", "position 2")),
        v("end:name-del", b'name: "a\\x7fb"\n', ("name", "position 1")),
        v("end:name-bidi", b'name: "exe.\\u202etxt"\n', ("name", "position 4")),
        Case("end:sweep-name-bidi", ("sweep", "{d}/w.yaml", "--out", "{d}/out"),
             (("w.yaml", b'name: "a\\u2066b"\ngrid:\n  uplink.latency_ms: [1, 2]\n'),), 2, ("w.yaml", "name")),
        # CSV integers: device indices no fleet has
        v("end:arrival-device-int64", y({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}}),
          ("arrivals.trace", "r.csv", "line 3"), extra=(("r.csv", b"device,time_s\n0,1\n9223372036854775808,2\n"),)),
        v("end:interval-device-huge", y({"availability": {"process": "trace", "trace": "{d}/o.csv"}}),
          ("availability.trace", "o.csv", "line 2"), extra=(("o.csv", b"start_s,end_s,device\n1,2,123456789012\n"),)),
        # YAML 1.1 booleans as keys, and merge keys that still may not repeat a key
        v("end:key-off", b"arrivals:\n  off: 5\n", ("arrivals.off",), absent=("False",)),
        v("end:key-yes-top", b"yes: 1\n", ("yes: unknown key",), absent=("True",)),
        v("end:merge-duplicate", b"uplink: &a {latency_ms: 1}\ndownlink:\n  <<: *a\n  latency_ms: 2\n  latency_ms: 3\n",
          ("line 4", "line 5", "latency_ms")),
        # resource-sized command-line arguments
        Case("end:run-threads", ("run", "{d}/s.yaml", "--threads", "100000"), (("s.yaml", b"{}\n"),), 2,
             ("--threads", "1024")),
        Case("end:sweep-threads", ("sweep", "{d}/s.yaml", "--grid", "uplink.latency_ms=1,2", "--threads", "4096",
                                   "--out", "{d}/out"), (("s.yaml", b"{}\n"),), 2, ("--threads", "1024")),
        Case("end:profile-threads", ("profile", "--model", "fmnist_edge_cnn", "--threads", "100000", "--out",
                                     "{d}/p.yaml"), (), 2, ("--threads", "1024")),
        Case("end:profile-batch", ("profile", "--model", "fmnist_edge_cnn", "--batch-sizes", "1,100000000", "--out",
                                   "{d}/p.yaml"), (), 2, ("--batch-sizes", "65,536")),
        # nothing predicted: advice for the cause (exit 1: the input was valid)
        Case("end:run-all-devices-off", ("run", "{d}/s.yaml", *fast),
             (("s.yaml", y({"availability": {"process": "trace", "trace": "{d}/off.csv"}})),
              ("off.csv", b"start_s,end_s\n0,100\n")), 1, ("no sample", "off", "availability")),
        Case("end:run-arrivals-after-end", ("run", "{d}/s.yaml", *fast),
             (("s.yaml", y({"arrivals": {"process": "trace", "trace": "{d}/r.csv"}})), ("r.csv", b"time_s\n50\n")),
             1, ("no sample arrived", "arrivals.trace", "duration_s")),
        Case("end:run-no-flops", ("run", "{d}/s.yaml", *fast),
             (("s.yaml", y({"fleet": {"profile": {"peak_flops_per_s": 1e-300}}})),), 1,
             ("no sample", "fleet.profile", "peak_flops_per_s")),
    ]


def t3a_deyo_cases() -> list[Case]:
    v, y = _validate, _yaml
    return [
        v("t3a:filter-k-zero", y({"method": {"name": "t3a", "t3a_filter_k": 0}}), ("method.t3a_filter_k", "got 0")),
        v("t3a:filter-k-minus-two", y({"method": {"name": "t3a", "t3a_filter_k": -2}}),
          ("method.t3a_filter_k", "-1 (keep all)")),
        v("deyo:edge-cannot-train", y({"method": {"name": "deyo", "deployment": "edge"}, "fleet": {"profile": "rpi4"}}),
          ("method.deployment", "deyo", "rpi4", "can train")),
        v("deyo:class-edge-cannot-train", y({"method": {"name": "deyo", "deployment": "edge"}, "fleet": {
            "profile": "jetson-nano", "classes": [{"name": "a", "count": 1, "profile": "rpi4"}]}}),
          ("fleet.classes[0].method.deployment", "rpi4", "can train")),
        v("deyo:deployment-unknown", y({"method": {"name": "deyo", "deployment": "fog"}}),
          ("method.deployment", "fog")),
        v("t3a:deployment-cloud", y({"method": {"name": "t3a", "deployment": "cloud"}}),
          ("method.deployment", "t3a", "device only", "allowed: edge")),
        v("bn_adapt:deployment-cloud", y({"method": {"name": "bn_adapt", "deployment": "cloud"}}),
          ("method.deployment", "bn_adapt", "allowed: edge")),
        v("cema:deployment-edge", y({"method": {"name": "cema", "deployment": "edge"}}),
          ("method.deployment", "cema", "cloud only", "allowed: cloud")),
        v("cloud_inference:deployment-edge", y({"method": {"name": "cloud_inference", "deployment": "edge"}}),
          ("method.deployment", "cloud_inference", "allowed: cloud")),
        v("deyo:patches-zero", y({"method": {"name": "deyo", "deyo_patches": 0}}), ("method.deyo_patches",)),
        v("deyo:patches-above-image", y({"method": {"name": "deyo", "deyo_patches": 12}, "data": {"image_size": 8}}),
          ("method.deyo_patches", "data.image_size")),
    ]


def roid_rotta_cases() -> list[Case]:
    v, y = _validate, _yaml
    cases = []
    for name in ("roid", "rotta"):
        cases += [
            v(f"{name}:edge-cannot-train", y({"method": {"name": name, "deployment": "edge"},
                                             "fleet": {"profile": "rpi4"}}),
              ("method.deployment", name, "rpi4", "can train")),
            v(f"{name}:class-edge-cannot-train", y({"method": {"name": name, "deployment": "edge"}, "fleet": {
                "profile": "jetson-nano", "classes": [{"name": "a", "count": 1, "profile": "rpi4"}]}}),
              ("fleet.classes[0].method.deployment", "rpi4", "can train")),
            v(f"{name}:deployment-unknown", y({"method": {"name": name, "deployment": "fog"}}),
              ("method.deployment", "fog")),
        ]
    return [*cases,
            v("rotta:memory-zero", y({"method": {"name": "rotta", "rotta_memory": 0}}), ("method.rotta_memory",)),
            v("rotta:update-every-zero", y({"method": {"name": "rotta", "rotta_update_every": 0}}),
              ("method.rotta_update_every",))]


# ---- issue 27: finite state (bounds where a hyper-parameter means nothing, non-finite checkpoints and runs) ----
def _checkpoint(model: str, poison: str) -> bytes:
    """A zoo model's state dict with its first floating tensor all NaN ('nan') or one value infinite ('inf')."""
    import torch

    from cemasim.models import zoo

    with torch.random.fork_rng():  # the same bytes in every run, without touching the caller's random state
        torch.manual_seed(0)
        state = zoo.spec(model).builder().state_dict()
    name = next(k for k, t in state.items() if t.is_floating_point())
    if poison == "nan":
        state[name] = torch.full_like(state[name], float("nan"))
    else:
        state[name].view(-1)[0] = float("inf")
    buf = io.BytesIO()
    torch.save(state, buf)
    # run_case replaces '{d}' in every file: random weights held those 3 bytes in about one run in six
    assert b"{d}" not in buf.getvalue()
    return buf.getvalue()


def finite_state_cases() -> list[Case]:
    v, y = _validate, _yaml
    fast = ("--quiet", "--out", "{d}/out", "--set", "duration_s=4", "--set", "drain_s=2", "--set", "fleet.devices=1",
            "--set", "output.plots=false", "--set", "compute_device=cpu", "--set", "arrivals.max_wait_s=1")
    return [
        v("finite:temperature-denormal", y({"cloud": {"temperature": 1e-300}}),
          ("cloud.temperature", "at least 0.001")),
        v("finite:temperature-huge", y({"cloud": {"temperature": 1e300}}), ("cloud.temperature", "at most 100")),
        v("finite:distill-lr-huge", y({"cloud": {"distill_lr": 1e300}}), ("cloud.distill_lr", "at most 10")),
        v("finite:foundation-lr-denormal", y({"cloud": {"foundation_lr": 5e-324}}),
          ("cloud.foundation_lr", "at least 1e-10")),
        v("finite:e0-huge", y({"cloud": {"e0": 1e300}}), ("cloud.e0", "at most 1")),
        v("finite:method-lr-huge", y({"method": {"name": "tent", "lr": 1e300}}), ("method.lr", "at most 10")),
        v("finite:sar-rho-huge", y({"method": {"name": "sar", "sar_rho": 1e300}}), ("method.sar_rho", "at most 10")),
        v("finite:lame-knn-batch", y({"method": {"name": "lame", "lame_knn": 100}, "arrivals": {"batch_size": 16}}),
          ("method.lame_knn", "arrivals.batch_size - 1 = 15", "got 100")),
        v("finite:lame-knn-class-batch", y({"method": {"name": "lame", "lame_knn": 8}, "fleet": {
            "devices": 4, "classes": [{"name": "small", "count": 2, "arrivals": {"batch_size": 4}}]}}),
          ("method.lame_knn", "fleet.classes[0].arrivals.batch_size - 1 = 3")),
        v("finite:replay-min-above-capacity", y({"cloud": {"replay_capacity": 100, "replay_min": 500}}),
          ("cloud.replay_min", "cloud.replay_capacity (100)", "got 500")),
        v("finite:replay-min-at-capacity", y({"cloud": {"replay_capacity": 100, "replay_min": 100}}),
          ("cloud.replay_min", "cloud.replay_only_batch")),
        v("finite:checkpoint-nan", y({"models": {"edge_weights": "{d}/nan.pt"}}),
          ("models.edge_weights", "nan.pt", "non-finite"), extra=(("nan.pt", _checkpoint("fmnist_edge_cnn", "nan")),)),
        v("finite:checkpoint-one-inf", y({"models": {"foundation_weights": "{d}/inf.pt"}}),
          ("models.foundation_weights", "inf.pt", "non-finite"),
          extra=(("inf.pt", _checkpoint("fmnist_foundation_cnn", "inf")),)),
        # inside every bound, yet gamma x CE overflows float32: the run stops at its first distillation (exit 1)
        Case("finite:run-distillation-overflows", ("run", "{d}/s.yaml", *fast),
             (("s.yaml", y({"method": {"name": "upload_all"}, "cloud": {"chunk_size": 4, "gamma": 1e300}})),), 1,
             ("the distillation of device 0", "gamma = 1e+300", "check cloud.distill_lr")),
    ]


def sweep_integrity_cases() -> list[Case]:
    """Issue 27: a sweep's points are what they say (no key the sweep sets itself, nothing twice) and its
    size is refused before any point is validated."""
    scenario = (("s.yaml", b"{}\n"),)

    def sweep_file(case_id: str, data: dict[str, Any], names: tuple[str, ...],
                   extra: tuple[tuple[str, bytes], ...] = ()) -> Case:
        return Case(case_id, ("sweep", "{d}/w.yaml", "--out", "{d}/out"), (("w.yaml", _yaml(data)), *extra), 2,
                    ("w.yaml", *names))

    def cli(case_id: str, args: tuple[str, ...], names: tuple[str, ...]) -> Case:
        return Case(case_id, ("sweep", "{d}/s.yaml", *args, "--out", "{d}/out"), scenario, 2, names)

    ladder = list(range(60))
    return [
        sweep_file("sweep:seed-in-grid", {"grid": {"seed": [3, 4]}}, ("grid.seed", "seeds: [5, 6]")),
        Case("sweep:validate-seed-in-grid", ("validate", "{d}/w.yaml"),
             (("w.yaml", _yaml({"base": None, "grid": {"seed": [1, 9]}})),), 2, ("grid.seed", "seeds")),
        cli("sweep:seed-in-cli-grid", ("--grid", "seed=7,8"), ("grid.seed", "--seeds 5,6")),
        sweep_file("sweep:seed-in-set", {"set": {"seed": 4}, "grid": {"uplink.latency_ms": [1, 2]}},
                   ("set.seed", "seeds")),
        sweep_file("sweep:output-dir-in-grid", {"grid": {"output.dir": ["a", "b"]}}, ("grid.output.dir", "/runs")),
        sweep_file("sweep:seeds-repeated", {"grid": {"uplink.latency_ms": [1, 2]}, "seeds": [2, 5, 2]},
                   ("seeds: 2 is listed twice",)),
        cli("sweep:cli-seeds-repeated", ("--grid", "uplink.latency_ms=1,2", "--seeds", "4,4"),
            ("seeds: 4 is listed twice",)),
        sweep_file("sweep:grid-value-repeated", {"grid": {"downlink.bandwidth_mbps": [3, 3.0]}},
                   ("grid.downlink.bandwidth_mbps: 3.0 is listed twice",)),
        cli("sweep:cli-grid-value-repeated", ("--grid", "method.name=cema,source,cema"),
            ("grid.method.name", "twice")),
        sweep_file("sweep:grid-values-same-scenario", {"grid": {"selection": [None, {}]}},
                   ("grid.selection", "same scenario")),
        cli("sweep:cli-grid-key-twice", ("--grid", "fleet.devices=1,2", "--grid", "fleet.devices=4"),
            ("--grid fleet.devices", "twice")),
        sweep_file("sweep:grid-product-huge", {"grid": {"uplink.latency_ms": ladder, "downlink.latency_ms": ladder,
                                                        "arrivals.max_wait_s": [x + 1 for x in ladder]}},
                   ("grid x seeds", "216,000 runs", "100,000")),
        sweep_file("sweep:seeds-huge", {"grid": {"uplink.latency_ms": [1]}, "seeds": 10**12},
                   ("grid x seeds", "1,000,000,000,000 runs")),
        cli("sweep:cli-seeds-huge", ("--grid", "uplink.latency_ms=1", "--seeds", "1000000000"),
            ("grid x seeds", "1,000,000,000 runs")),
        sweep_file("sweep:base-is-a-sweep", {"base": "inner.yaml", "grid": {"uplink.latency_ms": [1, 2]}},
                   ("inner.yaml", "base"), extra=(("inner.yaml", _yaml({"grid": {"fleet.devices": [1]}})),)),
    ]
