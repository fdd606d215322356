"""A method, a corruption, a capacity model and a GPU scheduler from the user's own package, without
touching cemasim: the example
plugin in tests/plugin_example is installed (offline, pip of a local folder) into a folder of its
own and run through the command line and the Python API with a process pool, each in a fresh
process that finds it by its entry point or by --plugin; tests/test_sweep.py's pool-against-Ray test
runs it on a local Ray cluster. docs/extending.md walks through it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from cemasim.errors import ConfigError
from cemasim.runner import simulate
from tests.conftest import SMALL, small

EXAMPLE = Path(__file__).resolve().parent / "plugin_example"
pytestmark = pytest.mark.usefixtures("registries_restored")  # the plugins this module imports are forgotten after
# the small scenario on the plugin's method and corruption, with the method's own parameter set
USE = [*SMALL, "fleet.devices=1", "duration_s=20", "drain_s=30", "method.name=margin_upload",
       "method.params.margin=0.5", "shift.segments=[{corruption: stripes, severity: 4, duration_s: 20}]",
       "uplink.capacity=day_night", "uplink.capacity_params.day_s=5", "cloud.scheduler=lifo"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The example plugin pip-installed into a folder of its own (nothing downloads, the venv is untouched)."""
    root = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, root / "src")  # pip builds in the source folder: keep tests/ clean
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-build-isolation",
                    "--target", str(root / "site"), str(root / "src")], check=True, capture_output=True)
    return root / "site"


def cemasim(args: list[str], path: Path | None, cwd: Path) -> subprocess.CompletedProcess:
    """`python -m cemasim ARGS` in a fresh process, with `path` on PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(path) if path else "",
                                                                      str(Path.cwd())]))}
    return subprocess.run([sys.executable, "-m", "cemasim", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def sets(items: list[str]) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def scenario_file(folder: Path) -> str:
    """A scenario file for the command line (USE sets the rest)."""
    (folder / "base.yaml").write_text("name: base\n")
    return str(folder / "base.yaml")


def test_installed_plugin_runs_from_the_command_line(installed, tmp_path):
    done = cemasim(["run", scenario_file(tmp_path), "--quiet", "--out", str(tmp_path), *sets(USE), "--set",
                    "name=plug", "--threads", "1"], installed, tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "plug" / "summary.json").read_text())
    assert 0 < summary["upload_ratio"] < 1 and summary["refreshes"] > 0  # it selected some, and CEMA's cloud adapted
    samples = pd.read_parquet(tmp_path / "plug" / "samples.parquet")
    assert set(samples["corruption"]) == {"stripes"}
    listed = cemasim(["list", "methods"], installed, tmp_path)
    assert "margin_upload" in listed.stdout and "[cloud]" in listed.stdout


def test_plugin_module_by_flag_and_its_absence(tmp_path):
    """The package not installed, its folder on PYTHONPATH: --plugin imports it; without, the name is unknown."""
    run = ["run", scenario_file(tmp_path), "--quiet", "--out", str(tmp_path), *sets(USE), "--set", "name=flag",
           "--threads", "1"]
    done = cemasim([*run, "--plugin", "cemasim_example.plugin"], EXAMPLE, tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / "flag" / "scenario.yaml").read_text()
    assert "cemasim_example.plugin" in written  # the run folder says which plugin it needed
    missing = cemasim(run, EXAMPLE, tmp_path)
    assert missing.returncode == 2 and "method.name: method 'margin_upload' is unknown" in missing.stderr
    typo = cemasim([*run, "--plugin", "cemasim_exampel.plugin"], EXAMPLE, tmp_path)
    assert typo.returncode == 2
    assert "--plugin cemasim_exampel.plugin: no module named 'cemasim_exampel.plugin'" in typo.stderr
    assert "Traceback" not in typo.stderr


def test_plugin_through_the_api_and_a_process_pool(installed, tmp_path):
    code = f"""
import cemasim
sc = cemasim.load_scenario(None, {USE!r})
result = cemasim.simulate(sc, progress=False)
table = cemasim.sweep(sc, {{"method.params.margin": [0.2, 0.6]}}, workers=2, threads=1, progress=False)
print(result.summary["upload_ratio"], *sorted(table["upload_ratio_pct"].round(3)))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed), str(Path.cwd())])}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    alone, low, high = map(float, done.stdout.split()[-3:])
    assert 0 < low < high < 100  # a wider margin uploads more: the parameter reaches the workers' method
    assert 0 < alone < 1


def test_method_params_are_validated_against_the_declaration(monkeypatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    base = [a for a in USE if not a.startswith("method.params")]
    cases = {"method.params.margni=0.3": "method.params.margni: unknown key; did you mean 'margin'?",
             "method.params.margin=2": "method.params.margin: must be in (0, 1], got 2",
             "method.params.margin=wide": "method.params.margin: must be number"}
    for override, message in cases.items():
        with pytest.raises(ConfigError) as err:
            small(*base, override, "plugins=[cemasim_example.plugin]")
        assert any(message in p for p in err.value.problems), err.value.problems
    sc = small(*base, "plugins=[cemasim_example.plugin]")
    assert sc.method.params.margin == 0.2  # the declared default
    with pytest.raises(ConfigError) as err:
        small("method.params.margin=0.3")
    assert "method.params: cema declares no parameters, got margin" in err.value.problems


def test_plugin_problems_name_where_they_came_from(tmp_path, monkeypatch):
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('no licence file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        small("plugins=[broken_plugin, nosuch_module]")
    assert err.value.problems[:2] == [
        "plugins[0]: importing 'broken_plugin' failed: RuntimeError: no licence file",
        "plugins[1]: no module named 'nosuch_module' (install the package that provides it, or put its folder "
        "on PYTHONPATH)"]
    with pytest.raises(ConfigError) as err:
        small("plugins=[3]")
    assert "plugins: must be a list of module names, got 3 among them" in err.value.problems


def test_a_radio_and_an_arrival_process_from_a_plugin(tmp_path, monkeypatch):
    (tmp_path / "more_plugin.py").write_text(
        "import numpy as np\nfrom cemasim.net.radio import Radio\nfrom cemasim.plugins import ARRIVALS, RADIOS\n"
        "RADIOS.add('nb-iot', Radio('nb-iot', 500.0, 200.0, 'made up'), 'tx 500 nJ/bit')\n"
        "@ARRIVALS.register('bursty', help='every arrival doubled')\n"
        "def bursty(cfg, duration_s, rng, device=0):\n"
        "    times = np.cumsum(rng.exponential(2.0 / cfg.rate_hz, size=int(cfg.rate_hz * duration_s)))\n"
        "    return np.repeat(times[times < duration_s], 2)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        small("energy.radio=nb-iot", "arrivals.process=bursty")
    assert any("nb-iot" in p for p in err.value.problems)
    assert any(p.startswith("arrivals.process: arrival process 'bursty' is unknown") for p in err.value.problems)
    sc = small("plugins=[more_plugin]", "energy.radio=nb-iot", "arrivals.process=bursty")
    tables, _, _ = simulate(sc)
    arrivals = tables["samples"].groupby("device")["arrival_s"]
    assert (arrivals.apply(lambda t: t.duplicated().mean()) > 0.4).all()  # every arrival came twice


def test_docs_document_a_plugins_parameters(tmp_path):
    out = tmp_path / "scenario.md"
    done = cemasim(["docs", "--output", str(out), "--plugin", "cemasim_example.plugin"], EXAMPLE, tmp_path)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "### `method.params (margin_upload)`" in text and "| `margin` | number |" in text


def test_a_capacity_model_and_a_scheduler_from_a_plugin(monkeypatch):
    from cemasim.assembly import assemble
    from cemasim.net.capacity_models import CAPACITY_MODELS
    from cemasim.scheduling import SCHEDULERS
    from cemasim.sim.scheduler import GpuPool

    monkeypatch.syspath_prepend(str(EXAMPLE))
    base = [*[a for a in USE if not a.startswith(("uplink.capacity", "cloud.scheduler"))],
            "plugins=[cemasim_example.plugin]"]
    cases = {"uplink.capacity_params.day=5": "uplink.capacity_params.day: unknown key; did you mean 'day_s'?",
             "uplink.capacity_params.night_share=0": "uplink.capacity_params.night_share: must be in (0, 1], got 0"}
    for override, message in cases.items():
        with pytest.raises(ConfigError) as err:
            small(*base, "uplink.capacity=day_night", override)
        assert any(message in p for p in err.value.problems), err.value.problems
    with pytest.raises(ConfigError) as err:
        small(*base, "uplink.capacity_params.day_s=5")
    assert "uplink.capacity_params: uplink.capacity is not set, so no model reads them" in err.value.problems
    sc = small(*base, "uplink.capacity=day_night", "uplink.capacity_params.night_share=0.25", "uplink.bandwidth_mbps=4",
               "cloud.scheduler=lifo")
    link = assemble(sc).classes[0].uplink
    assert (link.capacity, link.params.day_s, link.bits_per_s) == ("day_night", 60.0, 4e6)  # the declared default
    rate, latency = CAPACITY_MODELS.get("day_night")(link, None)
    assert (rate.rate_at(30.0), rate.rate_at(90.0), rate.rate_at(150.0), latency) == (4e6, 1e6, 4e6, None)
    tables, _, _ = simulate(sc)
    assert len(tables["uploads"]) and len(tables["cloud_jobs"])

    import simpy

    env = simpy.Environment()
    pool, order = GpuPool(env, 1, "lifo"), []

    def run(d: int):
        yield from pool.job(d, 1.0)
        order.append(d)

    for d in (9, 1, 2, 3):  # 9 holds the GPU while 1, 2, 3 queue: the last request runs first
        env.process(run(d))
    env.run()
    assert order == [9, 3, 2, 1] and "lifo" in SCHEDULERS
