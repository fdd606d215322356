"""Simulator performance, measured side by side in one run (issue: performance and scale).

    python benchmarks/bench_simulator.py [--quick]
        [--only overhead,kernel,scaling,batching,large,residuals,build,batch1,forward]

1. overhead  wall time of a quickstart-like run / the same model work (the run's own batches
             corrupted with its generators, edge forwards, selection, encoding of the selected
             samples, and cloud steps of the run's job sizes) in a tight loop without the simulator
2. kernel    events/s of cemasim's discrete-event core with null models (no torch work) versus a
             minimal SimPy loop doing the same number of arrivals, for 10 .. 10,000 devices
3. scaling   10 .. 10,000 devices at a fixed per-device workload: wall time per predicted sample
             and peak memory per device (each size in a fresh subprocess, RSS high-water mark)
4. batching  one grouped forward pass for G devices with per-device norm state versus G separate
             forward passes, at per-device batch sizes 1, 8 and 64
5. large     peak RSS, build and run time of one process simulating 1,000,000 CEMA devices (--quick: 100,000;
             --devices N another size; --build-only: build the fleet and stop)
5b. residuals peak RSS of 10,000 devices (--quick: 1,000) with float32 and with topk refreshes: the
             cloud's copy of what each device holds, which topk encodes against
6. build     host time of building 50,000 batch-1 CEMA devices (--quick: 5,000), and of the random
             draws alone that identical results need
7. batch1    CPU per prediction at batch 1 against batch 64, same fleet and samples (10,000 devices;
             --quick: 1,000), for source (the edge alone) and cema
8. forward   per sample at batch 1 and 64: the edge model's forward and a batch's corruption

Every ratio is measured in the same process run, on this machine, with torch's thread count shown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import simpy
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from csvlog import append_rows  # noqa: E402  (beside this script)

from cemasim import runner, scenario  # noqa: E402
from cemasim.methods.cema_cloud import distill_step, foundation_step  # noqa: E402
from cemasim.methods.optim import Learner  # noqa: E402
from cemasim.models import norm, zoo  # noqa: E402
from cemasim.models.grouped import grouped_forward  # noqa: E402
from cemasim.sim.edge import MAX_MERGED_SAMPLES  # noqa: E402

QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"
# what a child needs to build a fleet, from this checkout's code or from one before the spec boundary
FLEET_IMPORTS = """try:
    from cemasim.assembly import assemble
except ImportError:  # a checkout from before the spec boundary (--root): Fleet takes the scenario
    assemble = lambda sc: sc
from cemasim.sim.fleet import Fleet"""


def best_of(fn, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


# ---- 1. overhead ------------------------------------------------------------------------------
# (label, scenario, sets, sets under --quick): the quickstart, the study workload of analysis/, and a
# fleet of 1,000 devices (one batch each, drained at max_wait_s)
OVERHEAD_WORKLOADS = [("quickstart", "quickstart.yaml", [], ["duration_s=120"]),
                      ("study", "study.yaml", [], ["duration_s=240"]),
                      ("1,000 devices", "quickstart.yaml", ["fleet.devices=1000", "duration_s=10"],
                       ["fleet.devices=1000", "duration_s=3"])]


def overhead(quick: bool) -> None:
    """The simulator's wall time against the same model work in a tight loop, per workload: every edge
    batch corrupted with the run's generators, predicted, selected and its selection encoded; every cloud
    job's foundation step and distillation on inputs of the job's size, with the run's models and
    hyper-parameters, in the run's own order (edge batches at their ready time, cloud jobs at their
    start), so the loop meets the same cache traffic between the edge and the foundation models.

    The two alternate, simulator then loop, three times (once under --quick): a drift of the machine
    lands on both. The ratio is best against best; the median of the three paired ratios is beside it.
    Appended to overhead.csv."""
    from cemasim.assembly import assemble
    from cemasim.data.encoding import encode, to_uint8
    from cemasim.sim.fleet import Fleet

    repeats = 1 if quick else 3
    print("\n## 1. overhead: simulator vs the same model work in a tight loop (alternating)")
    print("| workload | predictions | edge batches | cloud jobs | events | simulator wall s | loop wall s | "
          "ratio (target <= 1.05) | median paired ratio |")
    for label, name, sets, quick_sets in OVERHEAD_WORKLOADS:
        sc = scenario.load(ROOT / "scenarios" / name, [*(quick_sets if quick else sets), "output.plots=false",
                                                       "compute_device=cpu"])
        tables, summary, _ = runner.simulate(sc, progress=False)  # warm-up, and the run's job list
        jobs = tables["cloud_jobs"][["start_s", "kind", "samples"]].itertuples(index=False)
        spec = assemble(sc)
        fleet = Fleet(spec)  # the same planned batches, corruptions and selection as the run (not timed)
        assert spec.cloud is not None, "the overhead workloads run CEMA"
        batches = [(dev, b) for dev in fleet.devices for b in dev.batches]
        # The run's order: a batch is predicted when it is ready, a job runs from its start (ties: edge first).
        work = sorted([(b.ready_s, 0, i) for i, (_, b) in enumerate(batches)]
                      + [(float(t), 1, (kind, int(n))) for t, kind, n in jobs], key=lambda w: w[:2])
        edge, method, cloud = fleet.edge_model, fleet.method, spec.cloud
        shape = fleet.workload.source.image_shape
        x_max = torch.rand(128, *shape)

        def model_work() -> None:
            states = {dev.index: method.source_state(edge) for dev, _ in batches}
            selection = {dev.index: method.new_selection_state(dev.index) for dev, _ in batches}
            student = Learner(method.source_state(edge))
            teacher = Learner(norm.initial_state(cloud.foundation, norm.adaptable_names(cloud.foundation, False)))
            for _, is_job, what in work:
                if not is_job:
                    dev, batch = batches[what]
                    x = fleet.workload.materialize(batch)
                    logits = method.predict(edge, dev.learner, states[dev.index], x)
                    keep = method.upload_mask(logits, selection[dev.index])
                    encode(to_uint8(x[keep]), sc.upload.encoding, sc.upload.jpeg_quality)
                    continue
                kind, n = what
                x = x_max[:n] if n <= 128 else torch.rand(n, *shape)
                if kind == "chunk":
                    foundation_step(cloud.foundation, teacher, x[: cloud.plan.chunk_size], cloud.config)
                distill_step(edge, student, cloud.foundation, teacher, x, cloud.config)

        sims, loops = [], []
        for _ in range(repeats):
            sims.append(runner.simulate(sc, progress=False)[1]["wall_time_s"])
            loops.append(best_of(model_work, 1))
        sim_wall, loop_wall = min(sims), min(loops)
        ratio = sim_wall / loop_wall
        paired = float(np.median([s / lp for s, lp in zip(sims, loops, strict=True)]))
        print(f"| {label} | {summary['samples']:,} | {len(batches):,} | {len(work) - len(batches):,} | "
              f"{summary['events']:,} | {sim_wall:.2f} | {loop_wall:.2f} | {ratio:.3f} | {paired:.3f} |")
        _append_csv("overhead.csv", {"date": time.strftime("%Y-%m-%d %H:%M"), "quick": quick,
                                     "predictions": summary["samples"], "cloud_jobs": len(work) - len(batches),
                                     "events": summary["events"], "simulator_wall_s": round(sim_wall, 2),
                                     "loop_wall_s": round(loop_wall, 2), "ratio": round(ratio, 3),
                                     "workload": label, "edge_batches": len(batches), "repeats": repeats,
                                     "root": git_label(ROOT), "order": "run", "median_paired_ratio": round(paired, 3),
                                     "simulator_runs_s": " ".join(f"{t:.2f}" for t in sims),
                                     "loop_runs_s": " ".join(f"{t:.2f}" for t in loops)})


def git_label(root: Path) -> str:
    """'<short commit>[+dirty] (<checkout>)': which code a row measured."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True).stdout.strip()
    dirty = "+dirty" if git("status", "--porcelain", "-uno") else ""
    return f"{git('rev-parse', '--short', 'HEAD') or '?'}{dirty} ({root})"


def _append_csv(name: str, row: dict) -> None:
    """Keep every measurement (one row per invocation) beside this script: the README quotes them."""
    append_rows(Path(__file__).with_name(name), [row])


# ---- 2. kernel --------------------------------------------------------------------------------
def kernel(quick: bool) -> None:
    from cemasim.sim import edge as edge_mod

    print("\n## 2. event kernel with null models vs a minimal SimPy loop")
    print("| devices | cemasim events | cemasim events/s | minimal SimPy events/s | ratio |")
    sizes = [10, 100, 1000] if quick else [10, 100, 1000, 10000]
    original = edge_mod.EdgeDevice.predict
    edge_mod.EdgeDevice.predict = null_predict  # null model: record nothing, compute nothing
    try:
        for n in sizes:
            total_samples = 20_000 if quick else 60_000
            duration = max(total_samples / (n * 4.0), 2.0)
            sc = scenario.load(QUICKSTART, [f"fleet.devices={n}", f"duration_s={duration}", "drain_s=0",
                                            "method.name=source", "arrivals.batch_size=1", "output.plots=false"])
            from cemasim.assembly import assemble
            from cemasim.sim.fleet import Fleet

            fleet = Fleet(assemble(sc))
            result = fleet.run()
            rate = result.events / result.wall_time_s
            mini_rate = minimal_simpy(n, result.events)
            print(f"| {n} | {result.events} | {rate:,.0f} | {mini_rate:,.0f} | {rate / mini_rate:.2f} |")
    finally:
        edge_mod.EdgeDevice.predict = original


def null_predict(self, batch) -> None:
    self.recorder.predicted += len(batch)


def minimal_simpy(n_devices: int, events: int) -> float:
    """Events/s of Poisson arrivals into per-device Stores consumed by per-device processes."""
    env = simpy.Environment()
    rng = np.random.default_rng(0)
    per_device = max(events // (3 * n_devices), 1)  # timeout + put + get per arrival

    def source(store):
        for gap in rng.exponential(1.0, per_device):
            yield env.timeout(gap)
            store.put(1)

    def sink(store):
        while True:
            yield store.get()

    for _ in range(n_devices):
        store = simpy.Store(env)
        env.process(source(store))
        env.process(sink(store))
    count = 0
    start = time.perf_counter()
    while env.peek() < float("inf"):
        env.step()
        count += 1
    return count / (time.perf_counter() - start)


# ---- 3. scaling -------------------------------------------------------------------------------
SCALING_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch; torch.set_num_threads({threads})
from cemasim import scenario
from cemasim.results.summary import summarize
{fleet_imports}

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4  # resident pages of 4 KiB

n = int(sys.argv[1])
sc = scenario.load({qs!r}, [f"fleet.devices={{n}}", "duration_s=16", "drain_s=30", "arrivals.process=constant",
                            "arrivals.rate_hz=2", "arrivals.batch_size=16", "method.name={method}",
                            "output.plots=false", "compute_device=cpu"])
Fleet(assemble(scenario.load({qs!r}, ["fleet.devices=1", "method.name={method}"])))  # warm imports, models, data
before = rss_kb()
fleet = Fleet(assemble(sc))
built = rss_kb()
plans = sum(d.batches.nbytes for d in fleet.devices) / 1024
t0 = time.perf_counter()
result = fleet.run()
wall = time.perf_counter() - t0
after = rss_kb()
print(json.dumps({{"n": n, "samples": fleet.n_samples, "wall": wall, "built_kb": built - before,
                   "plans_kb": plans, "after_kb": after - before}}))
"""


def scaling(quick: bool, method: str = "cema") -> None:
    print(f"\n## 3. scaling at a fixed per-device workload (32 samples each, method {method})")
    print("| devices | samples | wall s | wall ms / sample | KB / device built (actors + state) | "
          "of which batch plans (data) | KB / device after the run (with records) |")
    sizes = [10, 100, 1000] if quick else [10, 100, 1000, 10000]
    rows = []
    for n in sizes:
        r = _run_child(SCALING_CHILD, n, method=method)
        rows.append(r)
        print(f"| {n} | {r['samples']} | {r['wall']:.2f} | {1e3 * r['wall'] / r['samples']:.3f} | "
              f"{r['built_kb'] / n:.1f} | {r['plans_kb'] / n:.1f} | {r['after_kb'] / n:.1f} |")
    per_sample = [r["wall"] / r["samples"] for r in rows]
    print(f"wall per sample, largest / smallest fleet: {per_sample[-1] / per_sample[0]:.2f} (target <= 1.5); "
          f"memory per device beyond its data buffers at {sizes[-1]}: "
          f"{(rows[-1]['built_kb'] - rows[-1]['plans_kb']) / sizes[-1]:.1f} KB (target <= 100)")


# ---- 4. batching ------------------------------------------------------------------------------
def batching(quick: bool) -> None:
    print("\n## 4. cross-device batching: one grouped forward vs one forward per device")
    print(f"| devices | per-device batch | per-device loop img/s | grouped img/s (<= {MAX_MERGED_SAMPLES} samples "
          "a call) | speed-up (target >= 3 at 1) |")
    edge = norm.convert(zoo.build("fmnist_edge_cnn"))
    names = norm.adaptable_names(edge, False)
    devices = 64
    g = torch.Generator().manual_seed(0)
    states = []
    for _ in range(devices):
        s = norm.initial_state(edge, names)
        states.append({k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in s.items()})
    for n in (1, 8, 64):
        xs = [torch.rand(n, 1, 28, 28, generator=g) for _ in range(devices)]
        mode = "eval" if n == 1 else "batch"  # one sample has no batch statistics: running stats

        def loop() -> None:
            with torch.no_grad():
                for s, x in zip(states, xs, strict=True):
                    norm.forward(edge, s, x, mode)

        per_call = max(1, MAX_MERGED_SAMPLES // n)  # as many as the simulator's CrossDeviceBatcher merges

        def grouped() -> None:
            with torch.no_grad():
                for i in range(0, devices, per_call):
                    if per_call == 1:
                        norm.forward(edge, states[i], xs[i], mode)
                    else:
                        grouped_forward(edge, states[i:i + per_call], torch.stack(xs[i:i + per_call]), mode)

        reps = 2 if quick else 3
        t_loop, t_group = best_of(loop, reps), best_of(grouped, reps)
        imgs = devices * n
        print(f"| {devices} | {n} | {imgs / t_loop:,.0f} | {imgs / t_group:,.0f} | {t_loop / t_group:.2f} |")
    print("\nin the simulator (64 devices, synchronised constant arrivals, bn_adapt, 8 batches per device):")
    print("| per-device batch | unbatched wall s | fleet.batch_across_devices wall s | speed-up |")
    for n in (1, 8, 64):
        walls = []
        for merge in (False, True):
            sc = scenario.load(QUICKSTART, ["fleet.devices=64", "arrivals.process=constant", "arrivals.aligned=true",
                                            f"arrivals.batch_size={n}", f"arrivals.rate_hz={n}", "duration_s=8",
                                            "method.name=bn_adapt", "fleet.profile=instant",
                                            f"fleet.batch_across_devices={str(merge).lower()}",
                                            "output.plots=false", "compute_device=cpu"])
            walls.append(runner.simulate(sc)[1]["wall_time_s"])
        print(f"| {n} | {walls[0]:.2f} | {walls[1]:.2f} | {walls[0] / walls[1]:.2f} |")


# ---- 5. a very large fleet in one process ------------------------------------------------------
LARGE_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch; torch.set_num_threads({threads})
from cemasim import scenario
{fleet_imports}

n = int(sys.argv[1])
sc = scenario.load({qs!r}, [f"fleet.devices={{n}}", "duration_s=4", "drain_s=30", "arrivals.process=constant",
                            "arrivals.rate_hz=2", "arrivals.batch_size=8", "method.name=cema",
                            "output.plots=false", "compute_device=cpu"])
t0 = time.perf_counter()
fleet = Fleet(assemble(sc))
built = time.perf_counter()
print(json.dumps({{"n": n, "samples": fleet.n_samples, "build_s": built - t0,  # a stopped run still tells it
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}), flush=True)
if {build_only}:
    sys.exit(0)
fleet.run()
done = time.perf_counter()
print(json.dumps({{"n": n, "samples": fleet.n_samples, "build_s": built - t0, "run_s": done - built,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def _run_child(template: str, n: int, **fields: str) -> dict:
    """Run a child script in a fresh process (its own imports and memory, the --root checkout's code)
    and return the JSON of its last line."""
    code = template.format(root=str(ROOT), qs=str(QUICKSTART), threads=torch.get_num_threads(),
                           fleet_imports=FLEET_IMPORTS, **fields)
    out = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True)
    if out.returncode:  # stopped or failed: what it printed so far (the large section's build line) still counts
        sys.exit(f"the child stopped (exit {out.returncode}) after printing:\n{out.stdout}{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


BUILD_ONLY = False  # --build-only
LARGE_DEVICES = 0  # --devices (0: the section's own size)


def large(quick: bool) -> None:
    """Peak resident memory of one process simulating a CEMA fleet of 1,000,000 devices (8 samples each,
    one 8-sample batch a device), records included, its build time a device and its run time; appended
    to large_fleet.csv. (100,000 devices until issue 31.)"""
    n = LARGE_DEVICES or (100_000 if quick else 1_000_000)
    print(f"\n## 5. {n:,} CEMA devices in one process (8 samples each){' (built, not run)' if BUILD_ONLY else ''}")
    r = _run_child(LARGE_CHILD, n, build_only=str(BUILD_ONLY))
    run_s = f"{r['run_s']:.1f}" if "run_s" in r else "not run"
    print(f"| devices | samples | build s (ms a device; target <= 0.2) | run s | peak RSS MB (target <= 16,384 at "
          f"1,000,000) |\n| {r['n']:,} | {r['samples']:,} | {r['build_s']:.1f} ({r['build_s'] * 1e3 / n:.3f}) | "
          f"{run_s} | {r['peak_rss_mb']:,.0f} |")
    _append_csv("large_fleet.csv", {"date": time.strftime("%Y-%m-%d %H:%M"), "root": str(ROOT), **{k: round(v, 2) if
                                    isinstance(v, float) else v for k, v in r.items()}})


# ---- 5b. the cloud's copies of what each device holds (topk refreshes) -------------------------
RESIDUALS_CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import torch; torch.set_num_threads({threads})
from cemasim import scenario
{fleet_imports}

n = int(sys.argv[1])
sc = scenario.load({qs!r}, [f"fleet.devices={{n}}", "duration_s=4", "drain_s=60", "arrivals.process=constant",
                            "arrivals.rate_hz=2", "arrivals.batch_size=8", "method.name=tent",
                            "cloud.refresh_codec={codec}",
                            "output.plots=false", "compute_device=cpu"])
t0 = time.perf_counter()
fleet = Fleet(assemble(sc))
built = time.perf_counter()
result = fleet.run()
done = time.perf_counter()
applied = sum(r.applied_s == r.applied_s for r in result.recorder.refreshes)
copies = [w.held for w in fleet.cloud.workers.values() if w.held is not None]
own = sum(t.numel() * t.element_size() for held, w in zip(copies, fleet.cloud.workers.values())
          for name, t in held.items() if t is not w.source_state[name])  # tensor data the copies own
print(json.dumps({{"n": n, "codec": "{codec}", "refreshes_applied": applied, "copies_data_mb": own / 2**20,
                   "build_s": built - t0,
                   "run_s": done - built, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def residuals(quick: bool) -> None:
    """Peak resident memory of a fleet whose every device gets refreshes (Tent offloaded: one 8-sample step
    on the edge model a batch, cheap enough for 10,000 devices), with float32 refreshes (the cloud keeps
    nothing per device) and topk ones (the cloud keeps a copy of what each device holds, and the tensor
    data those copies own is counted too); each in a fresh process; appended to residuals.csv."""
    n = 1_000 if quick else 10_000
    print(f"\n## 5b. {n:,} devices: the cloud's per-device copies under topk refreshes")
    print("| refresh codec | refreshes applied | copies' tensor data MB | build s | run s | peak RSS MB |\n"
          "|---|---|---|---|---|---|")
    rows = []
    for codec in ("float32", "topk"):
        r = _run_child(RESIDUALS_CHILD, n, codec=codec)
        rows.append(r)
        print(f"| {codec} | {r['refreshes_applied']:,} | {r['copies_data_mb']:.2f} | {r['build_s']:.1f} | "
              f"{r['run_s']:.1f} | "
              f"{r['peak_rss_mb']:,.0f} |")
        _append_csv("residuals.csv", {"date": time.strftime("%Y-%m-%d %H:%M"), **{k: round(v, 2) if
                                      isinstance(v, float) else v for k, v in r.items()}})
    extra = (rows[1]["peak_rss_mb"] - rows[0]["peak_rss_mb"]) * 1024 / n
    print(f"topk's copies: {extra:.2f} kB a device of peak RSS")


# ---- 5c. where a large fleet's memory goes ------------------------------------------------------
MEMORY_CHILD = """
import collections, gc, json, sys
sys.path.insert(0, {root!r})
import torch; torch.set_num_threads({threads})
from cemasim import scenario
{fleet_imports}

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

n = int(sys.argv[1])
sc = scenario.load({qs!r}, [f"fleet.devices={{n}}", "duration_s=4", "drain_s=30", "arrivals.process=constant",
                            "arrivals.rate_hz=2", "arrivals.batch_size=8", "method.name=cema",
                            "output.plots=false", "compute_device=cpu"])
start = rss_mb()
fleet = Fleet(assemble(sc))
built = rss_mb()
fleet.run()
done = rss_mb()
gc.collect()
objects = gc.get_objects()
storages = {{}}
for o in objects:
    if isinstance(o, torch.Tensor):
        storages[o.untyped_storage().data_ptr()] = o.untyped_storage().nbytes()
kinds = collections.Counter(type(o).__name__ for o in objects)
print(json.dumps({{"n": n, "start_mb": start, "built_mb": built, "run_mb": done,
                   "tensors": kinds["Tensor"], "tensor_data_mb": sum(storages.values()) / 2**20,
                   "objects": len(objects), "top_kinds": kinds.most_common(12)}}))
"""


def memory(quick: bool) -> None:
    """Resident memory a device adds to a CEMA fleet (the `large` section's workload) when it is built and
    when it has run, and what is alive after the run: tensors and their data, and the gc-tracked objects
    by kind. The ground for a million devices (issue 31); appended to fleet_memory.csv."""
    n = 2_000 if quick else 20_000
    print(f"\n## 5c. {n:,} CEMA devices: where a device's memory goes")
    r = _run_child(MEMORY_CHILD, n)
    built, ran = (r["built_mb"] - r["start_mb"]) * 1024 / n, (r["run_mb"] - r["built_mb"]) * 1024 / n
    print(f"build: {built:.1f} kB a device; run: {ran:.1f} kB more; alive after the run: {r['tensors'] / n:.1f} "
          f"tensors ({r['tensor_data_mb'] * 1024 / n:.1f} kB of data) and {r['objects'] / n:.0f} tracked objects a "
          f"device; most: {', '.join(f'{k} {v / n:.1f}' for k, v in r['top_kinds'])}")
    _append_csv("fleet_memory.csv", {"date": time.strftime("%Y-%m-%d %H:%M"), "root": str(ROOT), "n": n,
                                     "start_mb": round(r["start_mb"], 1), "built_kb_per_device": round(built, 2),
                                     "run_kb_per_device": round(ran, 2),
                                     "tensors_per_device": round(r["tensors"] / n, 2),
                                     "tensor_data_kb_per_device": round(r["tensor_data_mb"] * 1024 / n, 2),
                                     "objects_per_device": round(r["objects"] / n, 1),
                                     "top_kinds_per_device": "; ".join(f"{k} {v / n:.2f}" for k, v in r["top_kinds"])})


# ---- 6. building a fleet -----------------------------------------------------------------------
BUILD_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch; torch.set_num_threads({threads})
from cemasim import scenario
{fleet_imports}

n = int(sys.argv[1])
sets = [f"fleet.devices={{n}}", "duration_s=60", "arrivals.batch_size=1", "method.name=cema", "compute_device=cpu"]
Fleet(assemble(scenario.load({qs!r}, ["fleet.devices=1", *sets[1:]])))  # warm imports, models, data
sc = scenario.load({qs!r}, sets)
t0 = time.perf_counter()
fleet = Fleet(assemble(sc))
build_s = time.perf_counter() - t0
# what identical results require of any build: each device's three numpy streams and its draw from the pool
import numpy as np
names, pool, t0 = [(name, d) for d in range(n) for name in ("arrivals", "shift", "images")], \
    len(fleet.workload.labels), time.perf_counter()
try:
    from cemasim.rng import numpy_rngs
    streams = numpy_rngs(sc.seed, names)  # seeded in one pass, as the build does
except ImportError:  # a checkout from before it (--root): a SeedSequence a stream
    from cemasim.rng import numpy_rng
    streams = (numpy_rng(sc.seed, *name) for name in names)
for i, rng in enumerate(streams):
    if i % 3 == 2:
        rng.permutation(pool)
print(json.dumps({{"n": n, "samples": fleet.n_samples, "build_s": build_s, "draws_s": time.perf_counter() - t0}}))
"""


def build(quick: bool) -> None:
    """Host time of `Fleet(scenario)` per device: plans (arrivals, shift, images, batch bounds), links,
    cloud workers and learners of a CEMA fleet of batch-1 devices (4 samples/s for 60 s), and of the
    random draws alone that the same results need (three numpy streams a device, seeded as the
    checkout seeds them, and a permutation of the image pool); build.csv."""
    n = 5_000 if quick else 50_000
    print(f"\n## 6. building a fleet of {n:,} CEMA devices (batch 1, 240 samples each)")
    r = _run_child(BUILD_CHILD, n)
    print(f"| devices | samples | build s | ms / device (target < 0.2 at 50,000) | of which the draws alone |\n"
          f"| {r['n']:,} | {r['samples']:,} | {r['build_s']:.1f} | {1e3 * r['build_s'] / r['n']:.2f} | "
          f"{1e3 * r['draws_s'] / r['n']:.2f} |")
    _append_csv("build.csv", {"date": time.strftime("%Y-%m-%d %H:%M"), "root": str(ROOT), **r,
                              "ms_per_device": round(1e3 * r["build_s"] / r["n"], 3),
                              "draws_ms_per_device": round(1e3 * r["draws_s"] / r["n"], 3)})


# ---- 7. batch-1 devices against the same samples in batches of 64 --------------------------------
BATCH_CHILD = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch; torch.set_num_threads(1)
from cemasim import scenario
{fleet_imports}

n, batch, method = int(sys.argv[1]), {batch}, {method!r}
sets = [f"fleet.devices={{n}}", "duration_s=16", "drain_s=30", "arrivals.process=constant", "arrivals.rate_hz=4",
        f"arrivals.batch_size={{batch}}", f"method.name={{method}}", "output.plots=false", "compute_device=cpu",
        *{extra}]
Fleet(assemble(scenario.load({qs!r}, ["fleet.devices=2", *sets[1:]]))).run()  # warm imports, models, data
fleet = Fleet(assemble(scenario.load({qs!r}, sets)))
t0 = time.process_time()
fleet.run()
import resource
print(json.dumps({{"n": n, "method": method, "batch": batch, "predictions": fleet.predicted(),
                   "cloud_jobs": len(fleet.recorder.jobs), "cpu_s": time.process_time() - t0,
                   "merged": fleet.batcher.merged if fleet.batcher else 0,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


BATCH1_METHODS = ["source", "cema"]
# (label, sets at batch 64, sets at batch 1). Random phases: each device's arrivals at its own offset, so
# no two devices predict at the same instant; "ahead": a batch-1 device predicts its next samples in one pass
# (fleet.predict_ahead); aligned: every device at the same instants, at batch 1 merged across devices;
# "off": both speed-ups forced off; "default": what the simulator decides (auto, since issue 31)
ALIGNED = "arrivals.aligned=true"
OFF = ["fleet.predict_ahead=0", "fleet.batch_across_devices=false"]
VARIANTS = [("random", OFF, OFF), ("random, ahead", OFF, ["fleet.predict_ahead=64"]),
            ("aligned, merged", [ALIGNED, *OFF], [ALIGNED, "fleet.batch_across_devices=true"]),
            ("random, default", [], []), ("aligned, default", [ALIGNED], [ALIGNED])]
BATCH1_VARIANTS = [label for label, *_ in VARIANTS]


def batch_one(quick: bool) -> None:
    """CPU time per prediction of a fleet whose devices predict one sample at a time, against the same
    fleet and samples (64 a device: 4 a second for 16 s) in batches of 64, with random phases (batch 1
    as is, and predicted ahead) and with aligned arrivals (batch 1 merged across devices); one torch
    thread, each run in its own process, the run only (not the build). `source` is the edge's work
    alone; `cema` adds the cloud's, which is not the same work at batch 1 (a report, and so a replay
    step and a refresh, per batch). Appended to batch1.csv."""
    n = 1_000 if quick else 10_000
    print(f"\n## 7. {n:,} devices, 64 samples each: batch 1 against batch 64 (CPU of the run, 1 thread)")
    print("| method | variant | batch | predictions | merged | cloud jobs | CPU s | ms / prediction | batch 1 / 64 | "
          "peak RSS MB |")
    for method in BATCH1_METHODS:
        for label, *extra in [v for v in VARIANTS if v[0] in BATCH1_VARIANTS]:
            rows = {b: _run_child(BATCH_CHILD, n, batch=str(b), method=method, extra=repr(sets))
                    for b, sets in zip((64, 1), extra, strict=True)}
            per = {b: r["cpu_s"] / r["predictions"] for b, r in rows.items()}
            for b, r in rows.items():
                print(f"| {method} | {label} | {b} | {r['predictions']:,} | {r['merged']:,} | {r['cloud_jobs']:,} | "
                      f"{r['cpu_s']:.1f} | {1e3 * per[b]:.3f} | {per[1] / per[64]:.2f} | {r['peak_rss_mb']:,.0f} |")
                _append_csv("batch1.csv", {"date": time.strftime("%Y-%m-%d %H:%M"), "root": str(ROOT), **r,
                                           "ms_per_prediction": round(1e3 * per[b], 4),
                                           "batch1_over_batch64": round(per[1] / per[64], 3), "phases": label})
    print("target: batch 1 within 2x of batch 64 per prediction")


# ---- 8. where a batch-1 prediction goes ----------------------------------------------------------
def forward_cost(quick: bool) -> None:
    """Per sample, at batch 1 and batch 64, in this process (1 torch thread): the edge model's forward
    (norm.forward, eval statistics) and the corruption of a test batch (Workload.materialize): the
    fixed costs a batch-1 device pays. Appended to forward.csv."""
    from cemasim.assembly import assemble
    from cemasim.sim.fleet import Fleet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    print("\n## 8. per sample at batch 1 and 64: edge forward and corruption (1 thread)")
    print("| batch | forward us / sample | corruption us / sample |")
    per: dict[int, tuple[float, float]] = {}
    for batch in (64, 1):
        sc = scenario.load(QUICKSTART, ["fleet.devices=8", "duration_s=16", "arrivals.process=constant",
                                        "arrivals.rate_hz=4", f"arrivals.batch_size={batch}", "method.name=source",
                                        "compute_device=cpu"])
        fleet = Fleet(assemble(sc))
        batches = [(d, b) for d in fleet.devices for b in d.batches][: (64 if quick else 512) // batch * 8]
        n = sum(len(b) for _, b in batches)
        xs = [fleet.workload.materialize(b) for _, b in batches]  # warm
        t0 = time.perf_counter()
        xs = [fleet.workload.materialize(b) for _, b in batches]
        corrupt_us = 1e6 * (time.perf_counter() - t0) / n
        with torch.no_grad():
            for (d, _), x in zip(batches, xs, strict=True):
                norm.forward(d.model, d.state, x, "eval")
            t0 = time.perf_counter()
            for (d, _), x in zip(batches, xs, strict=True):
                norm.forward(d.model, d.state, x, "eval")
        forward_us = 1e6 * (time.perf_counter() - t0) / n
        per[batch] = (forward_us, corrupt_us)
        print(f"| {batch} | {forward_us:.0f} | {corrupt_us:.0f} |")
        _append_csv("forward.csv", {"date": time.strftime("%Y-%m-%d %H:%M"), "batch": batch, "samples": n,
                                    "forward_us_per_sample": round(forward_us, 1),
                                    "corruption_us_per_sample": round(corrupt_us, 1)})
    print(f"batch 1 / batch 64: forward {per[1][0] / per[64][0]:.2f}, corruption {per[1][1] / per[64][1]:.2f}")
    torch.set_num_threads(threads)


SECTIONS = {"overhead": overhead, "kernel": kernel, "scaling": scaling, "batching": batching, "large": large,
            "residuals": residuals, "memory": memory, "build": build, "batch1": batch_one, "forward": forward_cost}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller workloads (about 2 minutes)")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1],
                        help="checkout whose cemasim the child processes (scaling, large, memory, build, batch1) "
                             "import; overhead, kernel and batching run in this process: run another checkout's "
                             "own copy of this script for them")
    parser.add_argument("--build-only", action="store_true",
                        help="the large section builds its fleet and stops (a million devices: minutes, not an hour)")
    parser.add_argument("--devices", type=int, default=0,
                        help="the large section's fleet size (default 1,000,000; --quick 100,000)")
    parser.add_argument("--methods", default=",".join(BATCH1_METHODS),
                        help="methods of the batch1 section, comma-separated (cema at 10,000 devices: ~40 CPU-min)")
    parser.add_argument("--variants", default=";".join(BATCH1_VARIANTS),
                        help="variants of the batch1 section, separated by ';' (labels of VARIANTS, which hold commas)")
    args = parser.parse_args()
    global BUILD_ONLY, LARGE_DEVICES
    BUILD_ONLY, LARGE_DEVICES = args.build_only, args.devices
    BATCH1_METHODS[:] = args.methods.split(",")
    BATCH1_VARIANTS[:] = [v.strip() for v in args.variants.split(";")]
    unknown = set(BATCH1_VARIANTS) - {label for label, *_ in VARIANTS}
    if unknown:
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))}; known: {'; '.join(v[0] for v in VARIANTS)}")
    global ROOT, QUICKSTART
    ROOT, QUICKSTART = args.root.resolve(), args.root.resolve() / "scenarios" / "quickstart.yaml"
    print(f"# cemasim simulator benchmarks ({platform.platform()}, python {platform.python_version()}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores)")
    for name in args.only.split(","):
        SECTIONS[name.strip()](args.quick)


if __name__ == "__main__":
    main()
