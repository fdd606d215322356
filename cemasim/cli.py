"""Command line: `cemasim run|validate|list|zoo|docs`. The only place that prints errors and picks
exit codes: 0 ok, 1 a run failed, 2 bad input, 130 interrupted. Tracebacks only with --debug."""

from __future__ import annotations

import argparse
import math
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from cemasim import __version__
from cemasim.errors import CemasimError, ConfigError

SUMMARY_COLUMNS = [
    ("accuracy", "acc %", lambda v: f"{100 * v:.2f}"),
    ("samples", "samples", str),
    ("upload_ratio", "upload %", lambda v: f"{100 * v:.1f}"),
    ("uplink_bytes", "uplink MB", lambda v: f"{v / 1e6:.2f}"),
    ("downlink_bytes", "downlink MB", lambda v: f"{v / 1e6:.2f}"),
    ("dropped_samples", "dropped", str),
    ("upload_delay_mean_s", "delay s", lambda v: f"{v:.3f}"),
    ("param_age_mean_s", "param age s", lambda v: f"{v:.1f}"),
    ("refreshes", "refreshes", str),
    ("cloud_utilization", "cloud util", lambda v: f"{v:.2f}"),
    ("wall_time_s", "wall s", lambda v: f"{v:.1f}"),
]


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A plain-text table of summaries, one row per run."""

    def cell(fmt: Callable[[Any], str], v: Any) -> str:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt(v)

    header = ["run"] + [title for _, title, _ in SUMMARY_COLUMNS]
    body = [[name] + [cell(fmt, s.get(key)) for key, _, fmt in SUMMARY_COLUMNS] for name, s in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + body]
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from cemasim import runner, scenario

    scenarios = _load_all(args.files, args.set, args.seed)
    rows, failed = [], 0
    for sc in scenarios:
        try:
            out = runner.run(sc, Path(args.out) if args.out else None, progress=not args.quiet)
        except CemasimError as exc:
            failed += 1
            print(f"error: {sc.source}: run failed: {exc}", file=sys.stderr)
            continue
        rows.append((sc.name, out.summary))
        print(f"{sc.source}: results in {out.folder}", file=sys.stderr)
    if rows:
        print(format_table(rows))
    return 1 if failed else 0


def cmd_validate(args: argparse.Namespace) -> int:
    scenarios = _load_all(args.files, args.set, args.seed)
    for sc in scenarios:
        print(f"{sc.source}: ok")
    return 0


def _load_all(files: list[str], overrides: list[str], seed: int | None) -> list[Any]:
    """Validate every file before anything runs; report all problems of all files at once."""
    from cemasim import scenario

    loaded, errors = [], []
    for f in files:
        try:
            loaded.append(scenario.load(f, overrides, seed))
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigError([p for e in errors for p in (f"{e.source}: {q}" for q in e.problems)],
                          source=f"{len(errors)} of {len(files)} scenario file(s) invalid")
    return loaded


def cmd_list(args: argparse.Namespace) -> int:
    registries = _registries()
    if args.kind not in registries:
        from cemasim.registry import did_you_mean

        raise ConfigError(f"unknown kind '{args.kind}'{did_you_mean(args.kind, list(registries))} "
                          f"known: {', '.join(registries)}", source="list")
    for entry in registries[args.kind]().entries():
        print(f"{entry.name:24s} {entry.help}")
    return 0


def _registries() -> dict[str, Callable[[], Any]]:
    def methods():
        from cemasim.methods import METHODS
        return METHODS

    def models():
        from cemasim.models.zoo import MODELS
        return MODELS

    def profiles():
        from cemasim.models.cost import PROFILES
        return PROFILES

    def corruptions():
        from cemasim.data.corruptions import CORRUPTIONS
        return CORRUPTIONS

    def arrivals():
        from cemasim.data.arrivals import ARRIVALS
        return ARRIVALS

    return {"methods": methods, "models": models, "profiles": profiles, "corruptions": corruptions,
            "arrivals": arrivals}


def cmd_zoo_train(args: argparse.Namespace) -> int:
    from cemasim.models import train, zoo

    names = args.model or zoo.MODELS.names()
    for name in names:
        zoo.MODELS.get(name)  # fail fast with a suggestion
    for name in names:
        info = train.train_model(name, args.data, epochs=args.epochs, seed=args.seed, progress=not args.quiet)
        print(f"{name}: clean test accuracy {100 * info['clean_test_accuracy']:.2f}%")
        if not args.skip_eval:
            train.evaluate_corruptions(name)
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from cemasim.scenario import schema_markdown

    path = Path(args.output)
    text = schema_markdown()
    if args.check:
        if not path.is_file() or path.read_text() != text:
            raise ConfigError(f"{path} is out of date; run `cemasim docs`", source="docs")
        print(f"{path}: up to date")
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cemasim", description="Simulate cloud-edge model adaptation (CEMA) fleets.")
    p.add_argument("--version", action="version", version=f"cemasim {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def scenario_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("files", nargs="+", help="scenario YAML files")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario key, e.g. --set uplink.bandwidth_mbps=2 (repeatable)")
        sp.add_argument("--seed", type=int, default=None, help="override the scenario seed")

    run = sub.add_parser("run", help="run scenarios and write result folders")
    scenario_args(run)
    run.add_argument("--out", default=None, help="parent folder of the run folders (default: output.dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="validate scenarios without running them")
    scenario_args(val)
    val.set_defaults(func=cmd_validate)

    lst = sub.add_parser("list", help="list registered methods, models, profiles, corruptions, arrivals")
    lst.add_argument("kind")
    lst.set_defaults(func=cmd_list)

    zoo = sub.add_parser("zoo", help="model zoo maintenance")
    zsub = zoo.add_subparsers(dest="zoo_command", required=True)
    tr = zsub.add_parser("train", help="train the embedded models reproducibly from a Fashion-MNIST folder")
    tr.add_argument("--data", required=True, help="folder with the Fashion-MNIST idx files")
    tr.add_argument("--model", action="append", default=None, help="model name (repeatable; default: all)")
    tr.add_argument("--epochs", type=int, default=None, help="training epochs (default: the model's own)")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--skip-eval", action="store_true", help="skip the per-corruption evaluation")
    tr.add_argument("--quiet", action="store_true")
    tr.set_defaults(func=cmd_zoo_train)

    docs = sub.add_parser("docs", help="write docs/scenario.md from the scenario schema")
    docs.add_argument("--output", default="docs/scenario.md")
    docs.add_argument("--check", action="store_true", help="fail if the file is out of date")
    docs.set_defaults(func=cmd_docs)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CemasimError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept in their folders", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: say so plainly, full traceback with --debug
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
