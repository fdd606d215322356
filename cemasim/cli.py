"""Command line: `cemasim run|validate|list|zoo|docs`. The only place that prints errors and picks
exit codes: 0 ok, 1 a run failed, 2 bad input, 130 interrupted. Tracebacks only with --debug."""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path
from typing import Any

from cemasim import __version__
from cemasim.errors import CemasimError, ConfigError
from cemasim.results.warnings import run_warnings, sweep_warnings


def cmd_run(args: argparse.Namespace) -> int:
    from cemasim import runner

    scenarios = _load_all(args.files, args.set, args.seed, args.plugin)
    from cemasim.results.writer import check_writable

    for sc in scenarios:  # before any simulation: an unwritable place fails now, not after the run
        check_writable(Path(args.out) if args.out else Path(sc.output.dir), "--out" if args.out else "output.dir")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
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
        from cemasim.results.tables import run_text

        print(run_text(rows))
        _print_warnings([f"{name}: {text}" for name, summary in rows for text in run_warnings(summary)])
    return 1 if failed else 0


def _print_warnings(lines: list[str]) -> None:
    for line in lines:
        print(f"warning: {line}", file=sys.stderr)


def cmd_validate(args: argparse.Namespace) -> int:
    from cemasim import sweeps as sw

    sweeps = [f for f in args.files if _is_sweep_file(f)]
    scenarios = _load_all([f for f in args.files if f not in sweeps], args.set, args.seed, args.plugin)
    for sc in scenarios:
        print(f"{sc.source}: ok")
    for f in sweeps:  # a sweep file: every point of its grid x seeds is validated
        spec = sw.load_sweep_file(f)
        print(f"{f}: ok (sweep, {len(spec.points)} runs)")
    return 0


def _is_sweep_file(path: str) -> bool:
    """A sweep file (name/base/set/grid/seeds) rather than a scenario."""
    from cemasim import scenario

    try:
        data = scenario.read_yaml(path)
    except ConfigError:
        return False  # unreadable: reported with the scenarios, every problem at once
    # grid and base are not scenario keys: such a file is a sweep file, and its other keys are checked as one
    return isinstance(data, dict) and bool({"grid", "base"} & set(data))


def _load_all(files: list[str], overrides: list[str], seed: int | None, plugins: list[str]) -> list[Any]:
    """Validate every file before anything runs; report all problems of all files at once."""
    from cemasim import scenario

    loaded, errors = [], []
    for f in files:
        try:
            loaded.append(scenario.load(f, overrides, seed, plugins))
        except ConfigError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigError([p for e in errors for p in (f"{e.source}: {q}" for q in e.problems)],
                          source=f"{len(errors)} of {len(files)} scenario file(s) invalid")
    return loaded


def cmd_list(args: argparse.Namespace) -> int:
    from cemasim import plugins

    if args.kind not in plugins.REGISTRIES:
        from cemasim.registry import unknown_name

        raise ConfigError(unknown_name("kind", args.kind, list(plugins.REGISTRIES)), source="list")
    for entry in plugins.registry(args.kind).entries():
        where = entry.meta.get("deployments")  # methods: where each may run, its default first
        print(f"{entry.name:24s} " + (f"[{'|'.join(where)}] " if where else "") + entry.help)
    return 0


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


def cmd_sweep(args: argparse.Namespace) -> int:
    from cemasim import sweeps as sw
    from cemasim.results.figures import paired_figures

    spec = _sweep_from_args(args)
    if args.baseline:
        _check_baseline(spec, args.baseline)  # a typo stops here, not after the whole sweep ran
    out = Path(args.out)
    from cemasim.results.writer import check_writable

    check_writable(out)
    print(f"sweep {spec.name}: {len(spec.points)} runs ({len(spec.points) // len(spec.seeds)} points x "
          f"{len(spec.seeds)} seeds), backend {args.backend}", file=sys.stderr)
    table = sw.run_sweep(spec, out, args.backend, args.workers, args.address, progress=not args.quiet,
                         threads=args.threads)
    folder = out / spec.name
    keys = list(spec.grid)
    metrics = ["accuracy", "upload_ratio", "uplink_bytes", "upload_delay_p95_s", "dropped_samples",
               "param_age_mean_s", "cloud_utilization", "cloud_load", "gpu_wait_p95_s", "uploads_never_used",
               "in_flight_samples"]
    ok = table[table["status"] == "ok"] if len(table) else table
    if len(ok):
        from cemasim.results.tables import sweep_text

        shown = [m for m in metrics if m in ok]
        print(sweep_text(sw.summarize_sweep(ok, keys, shown), keys, shown))
        _print_warnings(sweep_warnings(ok.to_dict("records")))
        if args.baseline:
            _print_paired(ok, keys, args.baseline)
        if not args.no_plots:
            _figures_with_progress(table, keys, folder / "figures", ("png", "pdf"), args.quiet)
            if args.baseline:
                paired_figures(table, keys, _baseline(args.baseline), folder / "figures")
    failed = int((table["status"] == "failed").sum()) if len(table) else 0
    print(f"results: {sw.results_path(out, spec)} ({len(ok)} ok, {failed} failed)", file=sys.stderr)
    return 1 if failed else 0


def _figures_with_progress(table, keys: list[str], out: Path, formats: tuple[str, ...], quiet: bool) -> list[Path]:
    """Sweep figures with a progress bar (a sweep of many keys draws dozens of PNG + PDF files)."""
    from tqdm import tqdm

    from cemasim.results.figures import sweep_figures

    bar = None if quiet else tqdm(desc="figures", unit="figure", file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.update(done - bar.n)

    try:
        return sweep_figures(table, keys, out, formats, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


MAX_THREADS = 1024  # torch CPU threads; a fixed bound, since sweep runs may go to larger Ray machines


def _threads(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_THREADS:  # torch would try to start them all (100000 is a MemoryError)
        raise argparse.ArgumentTypeError(f"must be at most {MAX_THREADS} (CPU threads; more than the cores only "
                                         f"slows torch down), got {value}")
    return value


def _seeds(text: str) -> int | list[int]:
    """--seeds 3 (seeds 0, 1, 2) or --seeds 5,6 (those seeds); sizes are checked with the grid."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count (3) or a list of seeds (5,6), got {text!r}") from None
    return values if "," in text else values[0]


def _baseline(text: str) -> tuple[str, Any]:
    from cemasim.results.stats import parse_baseline

    try:
        return parse_baseline(text)
    except ValueError as exc:
        raise ConfigError(str(exc), source="sweep") from None


def _check_baseline(spec, text: str) -> None:
    """--baseline KEY=VALUE names a swept key and one of its values (1 and 1.0 are the same value)."""
    key, value = _baseline(text)
    if key not in spec.grid:
        raise ConfigError(f"--baseline {text}: {key} is not a swept key (swept: {', '.join(spec.grid) or 'none'})",
                          source="sweep")
    values = spec.grid[key]
    if not any(v == value and isinstance(v, bool) == isinstance(value, bool) for v in values):  # True is not 1
        raise ConfigError(f"--baseline {text}: {value!r} is not one of {key}'s values "
                          f"({', '.join(map(repr, values))})", source="sweep")


def _print_paired(table, keys: list[str], text: str) -> None:
    """The paired-difference table (same seed, same other keys) against --baseline KEY=VALUE."""
    from cemasim.results.stats import paired_differences

    metrics = [m for m in ("accuracy", "uplink_bytes", "upload_delay_p95_s") if m in table]
    try:
        diffs = paired_differences(table, keys, metrics, _baseline(text))
    except ValueError as exc:
        raise ConfigError(str(exc), source="sweep") from None
    from cemasim.results.tables import paired_text

    print(f"\npaired differences vs {text} (same seed; mean ± 95 % t CI half-width):")
    print(paired_text(diffs, keys, metrics))


def _sweep_from_args(args: argparse.Namespace):
    from cemasim import scenario
    from cemasim import sweeps as sw
    from cemasim.schema import plain_name

    scenario.read_yaml(args.file)  # a missing or unreadable file: its own clear error first
    if args.name is not None and plain_name(args.name):
        raise ConfigError(f"--name {args.name!r}: {plain_name(args.name)}", source="sweep")
    grid = sw.parse_grid(args.grid)
    if _is_sweep_file(args.file):  # read, then built once with the command line's changes (not validated twice)
        spec = sw.read_sweep_file(args.file)
        fixed = _with_plugins({**spec["fixed"], **_fixed(args.set)}, spec["base"], args.plugin)
        return sw.build_sweep(args.name or spec["name"], spec["base"], fixed,
                              {**spec["grid"], **grid}, args.seeds if args.seeds is not None else spec["seeds"],
                              source=args.file, progress=not args.quiet)
    if not grid:
        raise ConfigError(f"{args.file} is a scenario: give --grid KEY=V1,V2,... (or use a sweep file with "
                          "a 'grid:' section)", source="sweep")
    fixed = _with_plugins(_fixed(args.set), Path(args.file), args.plugin)
    return sw.build_sweep(args.name or f"{Path(args.file).stem}-sweep", Path(args.file), fixed, grid,
                          args.seeds if args.seeds is not None else 1, source=args.file, progress=not args.quiet)


def _with_plugins(fixed: dict[str, Any], base: Any, extra: list[str]) -> dict[str, Any]:
    """A sweep's fixed keys with the --plugin modules added to the plugins list of the base (or of --set),
    so every point, in every worker, imports them."""
    if not extra:
        return fixed
    from cemasim import scenario
    from cemasim.plugins import with_modules

    listed = fixed["plugins"] if "plugins" in fixed else \
        (scenario.read_yaml(base).get("plugins") if isinstance(base, (str, Path)) else None)
    return {**fixed, "plugins": with_modules(listed, extra)}


def _fixed(items: list[str]) -> dict[str, Any]:
    """--set KEY=VALUE strings of a sweep as a mapping (values parsed as YAML, checked as `run --set` does)."""
    from cemasim.scenario import parse_assignments

    pairs, problems = parse_assignments(items)
    if problems:
        raise ConfigError(problems, source="sweep")
    return dict(pairs)


def cmd_plot(args: argparse.Namespace) -> int:
    """Read and check every input and output folder first, then draw: a damaged input or a bad --format or
    --out stops the command before any figure is written."""
    from cemasim import sweeps as sw
    from cemasim.results.figures import check_formats, paired_figures, run_figures
    from cemasim.results.writer import check_writable

    formats = check_formats(args.format)
    baseline = _baseline(args.baseline) if args.baseline else None
    sweeps, runs, notes = sw.plot_sources(list(map(Path, args.paths)), Path(args.out) if args.out else None)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    run_out = Path(args.out) if args.out else Path("figures")
    for out in [out for *_, out in sweeps] + ([run_out] if runs else []):
        check_writable(out, "--out" if args.out else "figure folder")
    written = []
    for df, keys, out in sweeps:
        written += _figures_with_progress(df, keys, out, formats, args.quiet)
        if baseline is not None:
            _print_paired(df[df["status"] == "ok"], keys, args.baseline)
            written += paired_figures(df, keys, baseline, out, formats)
    if runs:
        written += run_figures(runs, run_out, formats)
    for path in written:
        print(path)
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


def cmd_profile(args: argparse.Namespace) -> int:
    """Time a model on this machine, fit overhead + FLOPs / rate, write the fit as a profile file."""
    import os
    import re

    import torch

    from cemasim.assembly import pick_device
    from cemasim.models import measure, norm, resolve
    from cemasim.models.profiles import is_profile_file, load_profile_file
    from cemasim.models.zoo import MODELS

    if not resolve.known(args.model):
        raise ConfigError(f"--model: {MODELS.unknown(args.model)} (or timm:ARCH / torchvision:ARCH)", source="profile")
    sizes = measure.parse_batch_sizes(args.batch_sizes)
    lows = {"--repeats": (args.repeats, 1), "--warmup": (args.warmup, 0), "--active-w": (args.active_w, 0)}
    bad = [f"{flag} must be >= {lo}, got {v}" for flag, (v, lo) in lows.items() if not v >= lo]
    if bad:
        raise ConfigError(bad, source="profile")
    name = args.name or "host-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", args.model)
    out = Path(args.out or f"profiles/{name}.yaml")
    if not is_profile_file(str(out)):
        raise ConfigError(f"--out {out}: must end in .yaml or .yml (that is how fleet.profile tells a file from "
                          "a profile name)", source="profile")
    try:  # fail before measuring, not after
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create its folder {out.parent}: {exc.strerror}",
                          source="profile") from None
    if out.is_dir() or not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ConfigError(f"cannot write {out}", source="profile")
    device = pick_device(args.device, "--device")
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:  # restore the thread count: main() may run in-process (tests)
        model, spec = resolve.build(args.model, args.weights, None, device)
        timings = measure.time_passes(norm.convert(model), spec.input_shape, sizes, args.repeats, args.warmup,
                                      args.train)
        info = {"name": name, **measure.provenance(args.model, args.weights or "zoo", device, args.repeats,
                                                    args.warmup)}
    finally:
        torch.set_num_threads(threads)
    try:
        out.write_text(measure.render_profile(timings, args.active_w, info))
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}", source="profile") from None
    load_profile_file(str(out))  # what was written must load
    print(f"{args.model} on {info['hardware']} ({device}, {info['threads']} threads, median of {args.repeats})")
    for t in timings:
        print(f"\n{t.kind}{' (forward + backward of the norm affine tensors)' if t.kind == 'backward' else ''}")
        print(measure.table(t))
        print(measure.summary(t))
    if args.train:
        print("\nthe profile's rate is the forward fit (the simulator times backward passes with it too)")
    print(f"\nwrote {out}\nuse it with `fleet.profile: {out}` in a scenario (or --set fleet.profile={out})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cemasim", description="Simulate cloud-edge model adaptation (CEMA) fleets.")
    p.add_argument("--version", action="version", version=f"cemasim {__version__}")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    def plugin_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                        help="import MODULE first: it registers methods, corruptions, capacity models or any "
                             "other kind `cemasim list` shows (docs/extending.md); added to the scenario's plugins, "
                             "so workers import it too (repeatable)")

    def scenario_args(sp: argparse.ArgumentParser) -> None:
        plugin_arg(sp)
        sp.add_argument("files", nargs="+", help="scenario YAML files")
        sp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a scenario key, e.g. --set uplink.bandwidth_mbps=2 (repeatable)")
        sp.add_argument("--seed", type=int, default=None, help="override the scenario seed")

    run = sub.add_parser("run", help="run scenarios and write result folders")
    scenario_args(run)
    run.add_argument("--out", default=None, help="parent folder of the run folders (default: output.dir)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument("--threads", type=_threads, default=None,
                     help="torch CPU threads (default: torch's own, the core count)")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="validate scenarios without running them")
    scenario_args(val)
    val.set_defaults(func=cmd_validate)

    from cemasim.plugins import REGISTRIES

    lst = sub.add_parser("list", help=f"list what is registered: {', '.join(REGISTRIES)}")
    lst.add_argument("kind")
    plugin_arg(lst)
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

    swp = sub.add_parser("sweep", help="run a grid of scenarios x seeds (local pool or Ray) into one table")
    swp.add_argument("file", help="a sweep file (base/set/grid/seeds) or a scenario file used as the base")
    plugin_arg(swp)
    swp.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                     help="swept key and its values (repeatable); on a sweep file it adds the key to the "
                          "grid, or replaces that key's values when the grid already has it")
    swp.add_argument("--seeds", type=_seeds, default=None,
                     help="number of seeds per point (0..N-1), or a comma-separated list of seeds, e.g. 5,6")
    swp.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="fixed override")
    swp.add_argument("--name", default=None, help="sweep name (folder under --out)")
    swp.add_argument("--backend", choices=("local", "ray"), default="local")
    swp.add_argument("--workers", type=_positive_int, default=1, help="parallel runs (local processes or Ray CPUs)")
    swp.add_argument("--threads", type=_threads, default=None,
                     help="torch CPU threads per run (default: cores / workers)")
    swp.add_argument("--address", default=None, help="Ray cluster address (default: start a local one)")
    swp.add_argument("--out", default="sweeps", help="parent folder of the sweep folder")
    swp.add_argument("--no-plots", action="store_true", help="skip the figures")
    swp.add_argument("--baseline", default=None, metavar="KEY=VALUE",
                     help="also report paired differences against this grid value, e.g. method.name=bn_adapt "
                          "(same seed, same other keys; 95 %% t CIs over seeds)")
    swp.add_argument("--quiet", action="store_true", help="no progress bar")
    swp.set_defaults(func=cmd_sweep)

    plot = sub.add_parser("plot", help="figures from sweep folders/tables or run folders")
    plot.add_argument("paths", nargs="+", help="sweep folders, results.parquet files or run folders")
    plot.add_argument("--out", default=None, help="figure folder (default: <sweep>/figures or ./figures)")
    plot.add_argument("--format", default="png,pdf", help="comma-separated formats")
    plot.add_argument("--baseline", default=None, metavar="KEY=VALUE",
                      help="for sweeps: paired differences against this grid value (table, CSV and figures)")
    plot.add_argument("--quiet", action="store_true", help="no progress bar")
    plot.set_defaults(func=cmd_plot)

    docs = sub.add_parser("docs", help="write docs/scenario.md from the scenario schema")
    docs.add_argument("--output", default="docs/scenario.md")
    docs.add_argument("--check", action="store_true", help="fail if the file is out of date")
    plugin_arg(docs)
    docs.set_defaults(func=cmd_docs)

    prof = sub.add_parser("profile", help="measure a model's latency on this machine and write a device profile")
    prof.add_argument("--model", required=True, help="model to time (`cemasim list models`, or timm:/torchvision:)")
    prof.add_argument("--weights", default=None,
                      help="checkpoint path, or random (timing needs only the architecture); default: zoo weights")
    prof.add_argument("--batch-sizes", default="1,8,32,64", help="comma-separated batch sizes to time and fit")
    prof.add_argument("--repeats", type=int, default=20, help="timed calls per batch size (the median is kept)")
    prof.add_argument("--warmup", type=int, default=3, help="untimed calls before timing each batch size")
    prof.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    prof.add_argument("--threads", type=_threads, default=None, help="torch CPU threads (default: torch's own)")
    prof.add_argument("--train", action="store_true",
                      help="also time backward passes w.r.t. the norm affine tensors and set can_train: true")
    prof.add_argument("--active-w", type=float, default=0.0, help="power while computing, W (0 = not modelled)")
    prof.add_argument("--name", default=None, help="profile name (default: host-<model>)")
    prof.add_argument("--out", default=None, help="output YAML (default: profiles/<name>.yaml)")
    prof.set_defaults(func=cmd_profile)
    return p


def _interrupt_on_sigterm() -> Any:
    """SIGTERM (a scheduler's kill, `timeout`) takes the Ctrl-C path: workers stopped, finished runs
    kept. Returns the handler it replaced (None off the main thread, where signals cannot be set)."""
    import signal
    import threading

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


def _load_plugins(modules: list[str] | None) -> None:
    """The installed plugins, and --plugin's modules, before any registry is read."""
    if modules is None:
        return  # a command that reads no registry
    from cemasim import plugins

    problems = plugins.load_entry_points()
    problems += [f"--plugin {m}: {p}" for m in modules if (p := plugins.load_module(m))]
    if problems:
        raise ConfigError(problems, source="plugins")


def main(argv: list[str] | None = None) -> int:
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _interrupt_on_sigterm() if args.command in ("run", "sweep") else None
    try:
        return _dispatch(args)
    finally:
        if previous is not None:  # main() also runs in-process (tests, notebooks)
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    try:
        _load_plugins(getattr(args, "plugin", None))
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
