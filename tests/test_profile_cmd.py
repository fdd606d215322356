"""`cemasim profile`: the fit recovers a known law, the written profile loads and predicts this
machine's measured latency, and bad input exits 2 with a message."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
import yaml

from cemasim import scenario
from cemasim.cli import main
from cemasim.errors import ConfigError
from cemasim.models import norm, resolve
from cemasim.models.cost import FlopCounter
from cemasim.models.measure import fit_linear, parse_batch_sizes
from cemasim.models.profiles import is_profile_file, load_profile_file, profile_from

# one thread: on a shared 2-core VM two OpenMP threads stall whenever another process takes a core
FAST = ["--model", "fmnist_edge_cnn", "--weights", "random", "--batch-sizes", "1,16,64", "--repeats", "7",
        "--warmup", "2", "--threads", "1", "--device", "cpu"]


def test_fit_recovers_a_linear_law():
    flops = [5e6 * b for b in (1, 8, 32, 64)]
    exact = fit_linear(flops, [0.002 + f / 4e9 for f in flops])
    assert exact.overhead_s == pytest.approx(0.002) and exact.flops_per_s == pytest.approx(4e9)
    assert exact.r2 == pytest.approx(1.0) and exact.predict(flops[2]) == pytest.approx(0.002 + flops[2] / 4e9)
    noise = np.random.default_rng(0).normal(1.0, 0.02, len(flops))
    noisy = fit_linear(flops, [(0.002 + f / 4e9) * n for f, n in zip(flops, noise, strict=True)])
    assert noisy.flops_per_s == pytest.approx(4e9, rel=0.1) and 0.99 < noisy.r2 <= 1.0


def test_fit_clips_a_negative_overhead_and_needs_two_sizes():
    flops = [1e6, 2e6, 4e6]
    clipped = fit_linear(flops, [f / 1e9 - 1e-4 for f in flops])  # the free line would cross below zero
    assert clipped.overhead_s == 0.0 and clipped.flops_per_s > 0
    with pytest.raises(ConfigError, match="two different batch sizes"):
        fit_linear([1e6, 1e6], [0.1, 0.2])


def test_parse_batch_sizes():
    assert parse_batch_sizes("64, 1,8,8") == [1, 8, 64]
    assert parse_batch_sizes("1,65536") == [1, 65536]
    for bad in ("1,x", "8", "0,8", "", "1,65537"):
        with pytest.raises(ConfigError, match="--batch-sizes"):
            parse_batch_sizes(bad)


def _medians(path) -> dict[int, float]:
    """batch -> median seconds of the forward pass, from the file's provenance comments."""
    forward = path.read_text().split("# backward:")[0]
    return {int(b): float(ms) / 1e3 for b, ms in re.findall(r"#   batch (\d+): median ([\d.]+) ms", forward)}


def test_profile_command_writes_a_profile_that_predicts_the_measurement(tmp_path, capsys):
    out = tmp_path / "vm.yaml"
    threads = torch.get_num_threads()
    assert main(["profile", *FAST, "--train", "--active-w", "12.5", "--out", str(out)]) == 0
    assert torch.get_num_threads() == threads  # restored after --threads
    printed = capsys.readouterr().out
    assert f"fleet.profile: {out}" in printed and "backward" in printed and "ms/sample" in printed

    profile = profile_from(str(out))
    assert profile.flops_per_s > 0 and profile.overhead_s >= 0 and profile.utilization == 1.0
    assert profile.can_train and profile.active_w == 12.5
    model, spec = resolve.build("fmnist_edge_cnn", "random", None, torch.device("cpu"))
    per_sample = FlopCounter(norm.convert(model), spec.input_shape).per_sample("forward", "batch")
    medians = _medians(out)
    assert sorted(medians) == [1, 16, 64]
    for batch, measured in medians.items():  # loose: timing on a shared 2-core VM is noisy
        assert measured / 3 < profile.seconds(per_sample * batch) < 3 * measured, (batch, measured)

    # the same keys are valid as an inline profile in a scenario
    inline = yaml.safe_load(out.read_text())
    sc = scenario.load(None, [f"fleet.profile={json.dumps(inline)}"])
    assert sc.fleet.profile["peak_flops_per_s"] == inline["peak_flops_per_s"]


def test_default_name_and_no_train(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["profile", *FAST, "--repeats", "3"]) == 0
    path = tmp_path / "profiles" / "host-fmnist_edge_cnn.yaml"
    assert not load_profile_file(str(path)).can_train
    assert "backward" not in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--model", "fmnist_edge"], "did you mean 'fmnist_edge_cnn'"),
    (["--model", "fmnist_edge_cnn", "--batch-sizes", "8"], "at least two different"),
    (["--model", "fmnist_edge_cnn", "--batch-sizes", "1,a"], "comma-separated integers"),
    (["--model", "fmnist_edge_cnn", "--repeats", "0"], "--repeats must be >= 1"),
    (["--model", "fmnist_edge_cnn", "--out", "{tmp}/p.json"], "must end in .yaml"),
    (["--model", "fmnist_edge_cnn", "--out", "{tmp}/afile/p.yaml"], "cannot create"),
    (["--model", "fmnist_edge_cnn", "--weights", "{tmp}/none.pt"], "not found"),
])
def test_bad_input_exits_2_with_a_message(args, message, tmp_path, capsys):
    (tmp_path / "afile").write_text("a file, not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "p.yaml")]
    assert main(["profile", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "p.yaml").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_unavailable_exits_2(tmp_path, capsys):
    assert main(["profile", "--model", "fmnist_edge_cnn", "--device", "cuda", "--out", str(tmp_path / "p.yaml")]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_profile_file_errors_name_the_file_and_key(tmp_path):
    assert is_profile_file("profiles/a.yaml") and is_profile_file("b.YML") and not is_profile_file("rpi4")
    bad = tmp_path / "bad.yaml"
    bad.write_text("peak_flops_per_s: -1.0\nutilisation: 1.0\n")
    with pytest.raises(ConfigError) as exc:
        profile_from(str(bad))
    text = str(exc.value)
    assert str(bad) in text and "peak_flops_per_s: must be > 0" in text and "utilisation: unknown key" in text
    bad.write_text("utilization: 1.0\n")
    with pytest.raises(ConfigError, match="peak_flops_per_s: required"):
        load_profile_file(str(bad))
    with pytest.raises(ConfigError, match="no such profile file"):
        load_profile_file(str(tmp_path / "missing.yaml"))
