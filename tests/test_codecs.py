"""Refresh and upload codecs: payload bytes by hand, int8 against torch's own quantization, top-k's
error feedback (converges, survives lost refreshes, never desynchronises), the device predicting with
what it decoded, and the keys' errors."""

from __future__ import annotations

import math

import pytest
import torch
from torch.ao.quantization.observer import MinMaxObserver, PerChannelMinMaxObserver

from cemasim.assembly import assemble
from cemasim.data.encoding import encode
from cemasim.errors import ConfigError
from cemasim.models import codecs
from cemasim.runner import simulate
from cemasim.sim.fleet import Fleet
from tests.conftest import small

# a BN layer of 20 channels with statistics, and a 4-D tensor (CoTTA's refreshes carry conv weights)
SHAPES = {"bn.weight": (20,), "bn.bias": (20,), "bn.running_mean": (20,), "bn.running_var": (20,),
          "conv.weight": (8, 3, 3, 3)}


def state(seed: int = 0, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: scale * torch.randn(s, generator=g) for n, s in SHAPES.items()}


def test_payload_bytes_by_hand():
    s, zeros = state(), {n: torch.zeros(shape) for n, shape in SHAPES.items()}
    n = 4 * 20 + 216  # entries
    expected = {
        "float32": 4 * n,
        "float16": 2 * n,
        "bfloat16": 2 * n,
        "int8": n + 5 * 5,  # one float32 scale and 1-byte zero point per tensor
        "int8_channel": n + 5 * (4 * 20 + 8),  # per channel: every value of a 1-D tensor, 8 for the conv
        "stats": 4 * 2 * 20,  # running_mean and running_var
        # topk 0.1: ceil(2.0) = 2 of each 20-vector, ceil(21.6) = 22 of the conv; float32 value + 1-byte index
        "topk": (4 * 2 + 22) * (4 + 1),
    }
    for codec, size in expected.items():
        assert codecs.encode(s, codec, 0.1, zeros).size_bytes == size, codec
    assert codecs.index_bytes(256) == 1 and codecs.index_bytes(257) == 2 and codecs.index_bytes(70_000) == 4
    assert codecs.topk_count(20, 0.001) == 1 and codecs.topk_count(20, 1.0) == 20


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_is_torchs_affine_quantization(per_channel):
    """Scale and zero point as torch's (PerChannel)MinMaxObserver sets them; values as its fake quantization."""
    for x in (state()["conv.weight"], state(1)["bn.weight"] + 1.0, torch.full((5,), 0.3), torch.zeros(4, 2)):
        decoded, _ = codecs.quantize(x, per_channel)
        if per_channel and x.dim() > 1:
            obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.quint8, qscheme=torch.per_channel_affine)
            obs(x)
            scale, zero = obs.calculate_qparams()
            reference = torch.fake_quantize_per_channel_affine(x, scale, zero.int(), 0, 0, 255)
        elif per_channel:  # a 1-D tensor: one value per channel, each its own range [min(v, 0), max(v, 0)]
            reference = torch.stack([codecs.quantize(v.reshape(1), False)[0][0] for v in x])
        else:
            obs = MinMaxObserver(dtype=torch.quint8)
            obs(x)
            scale, zero = obs.calculate_qparams()
            reference = torch.fake_quantize_per_tensor_affine(x, float(scale), int(zero), 0, 255)
        torch.testing.assert_close(decoded, reference, rtol=0, atol=0)
        step = float((x.max().clamp(min=0) - x.min().clamp(max=0)) / 255)
        assert float((decoded - x).abs().max()) <= step / 2 + 1e-7


def test_casts_decode_to_what_the_dtype_holds():
    s = state()
    for codec, dtype in codecs.CAST.items():
        held = {n: torch.zeros_like(t) for n, t in s.items()}
        codecs.apply(held, codecs.encode(s, codec))
        for n, t in s.items():
            assert held[n].dtype == torch.float32
            assert torch.equal(held[n], t.to(dtype).float()), (codec, n)


def test_stats_codec_sends_the_running_statistics_only():
    s, held = state(), state(seed=5)
    codecs.apply(held, codecs.encode(s, "stats"))
    assert torch.equal(held["bn.running_mean"], s["bn.running_mean"])
    assert torch.equal(held["bn.running_var"], s["bn.running_var"])
    assert not torch.equal(held["bn.weight"], s["bn.weight"])  # the device keeps its own affine parameters


def test_topk_error_feedback_converges_to_the_float32_state():
    """The cloud stops changing: every refresh sends the k largest remaining differences, so after
    ceil(1/k) refreshes the device holds the cloud's float32 state exactly, lost refreshes or not."""
    target, source = state(seed=1), state(seed=2)
    for lost in (set(), {1, 4}):
        device, cloud_copy = dict(source), dict(source)
        sent = 0
        while sent < 100 and any(not torch.equal(device[n], target[n]) for n in target):
            payload = codecs.encode(target, "topk", 0.1, cloud_copy)
            if sent not in lost:  # applied: the device's acknowledgement moves the cloud's copy too
                codecs.apply(device, payload)
                codecs.apply(cloud_copy, payload)
            for n in target:
                assert torch.equal(device[n], cloud_copy[n])
            sent += 1
        assert sent == math.ceil(1 / 0.1) + len(lost)
        for n in target:
            assert torch.equal(device[n], target[n])
        assert all(source[n] is not device[n] for n in source)  # applied to copies, never in place
    assert torch.equal(source["bn.weight"], state(seed=2)["bn.weight"])


def test_topk_sends_the_largest_differences():
    base = {"v": torch.zeros(10)}
    target = {"v": torch.tensor([0.0, 5, -7, 0.1, 0, 0, 3, 0, 0, -0.2])}
    payload = codecs.encode(target, "topk", 0.3, base)
    idx, values = payload.sparse["v"]
    assert sorted(idx.tolist()) == [1, 2, 6] and sorted(values.tolist()) == [-7.0, 3.0, 5.0]
    assert payload.size_bytes == 3 * (4 + 1)


# ---- in whole runs -------------------------------------------------------------------------------
LOSSY_DOWNLINK = ("downlink.loss.model=bernoulli", "downlink.loss.rate=0.3", "downlink.loss.max_retries=0",
                  "downlink.loss.retry_timeout_ms=10")


def test_topk_device_and_cloud_copy_agree_through_lost_refreshes():
    fleet = Fleet(assemble(small("cloud.refresh_codec=topk", "cloud.refresh_topk=0.05", *LOSSY_DOWNLINK)))
    result = fleet.run()
    refreshes = result.recorder.tables()["refreshes"]
    assert (refreshes["dropped"] == "loss").sum() > 0 and refreshes["applied_s"].notna().sum() > 0
    cloud = fleet.cloud
    assert cloud is not None
    for device in fleet.devices:
        held = cloud.workers[device.index].held
        assert held is not None
        for name, tensor in device.learner.state.items():
            assert torch.equal(tensor, held[name]), (device.index, name)


def test_refresh_payloads_and_decoded_predictions_in_a_run():
    runs = {c: simulate(small(f"cloud.refresh_codec={c}"))[0] for c in ("float32", "int8", "topk")}
    f32 = runs["float32"]["refreshes"]["size_bytes"]
    assert f32.iloc[0] == 4 * 248  # the edge CNN's three BN layers: (20 + 40 + 64) x (weight, bias)
    assert set(runs["int8"]["refreshes"]["size_bytes"]) == {248 + 5 * 6}  # 1 byte a value, + 5 per tensor
    assert runs["topk"]["refreshes"]["size_bytes"].max() < f32.iloc[0] / 2
    entropy = {c: r["samples"].sort_values(["device", "sample_id"])["entropy"].to_numpy() for c, r in runs.items()}
    refreshed = runs["float32"]["samples"].sort_values(["device", "sample_id"])["param_version"].to_numpy() > 0
    for codec in ("int8", "topk"):  # the device predicts with what it decoded: other outputs once refreshed
        assert (entropy[codec] == entropy["float32"])[~refreshed].all()
        assert (entropy[codec] != entropy["float32"])[refreshed].mean() > 0.9, codec


def test_stats_codec_runs_with_tbr():
    tables, _, _ = simulate(small("cloud.refresh_codec=stats", "method.norm_mode=tbr"))
    tbr, _, _ = simulate(small("method.norm_mode=tbr"))
    assert tables["refreshes"]["size_bytes"].iloc[0] * 2 == tbr["refreshes"]["size_bytes"].iloc[0]


def test_downscaled_uploads_carry_the_small_images_bytes():
    raw, _, _ = simulate(small("method.name=upload_all", "upload.encoding=raw", "upload.downscale=0.5"))
    assert set(raw["uploads"]["size_bytes"]) == {14 * 14}
    images = (torch.rand(4, 1, 28, 28) * 255).to(torch.uint8)
    sizes, decoded = encode(images, "jpeg", 50, downscale=0.5)
    small_sizes, _ = encode(images[:, :, ::2, ::2].contiguous(), "jpeg", 50)
    assert decoded.shape == images.shape and decoded.dtype == torch.uint8  # the cloud's input size
    assert sum(sizes) < sum(encode(images, "jpeg", 50)[0])
    assert abs(sum(sizes) - sum(small_sizes)) < 0.2 * sum(small_sizes)  # a 14x14 JPEG's bytes
    smooth = torch.full((2, 3, 32, 32), 90, dtype=torch.uint8)
    assert torch.equal(encode(smooth, "png", downscale=0.3)[1], smooth)  # a flat image survives the round trip


@pytest.mark.parametrize(("overrides", "message"), [
    (("cloud.refresh_codec=int8", "method.name=cloud_inference"),
     "cloud.refresh_codec: int8 encodes the parameters the cloud sends a device, but cloud_inference"),
    (("cloud.refresh_codec=topk", "method.name=bn_adapt"), "cloud.refresh_codec: topk encodes"),
    (("cloud.refresh_codec=float16", "method.name=tent", "method.deployment=edge", "fleet.profile=jetson-nano"),
     "but tent (deployment edge) is sent none"),
    (("cloud.refresh_codec=stats",), "cloud.refresh_codec: stats sends the BatchNorm running statistics only"),
    (("cloud.refresh_codec=stats", "method.name=tent"), "the state of tent with method.norm_mode batch"),
    (("cloud.refresh_codec=int4",), "cloud.refresh_codec: must be one of float32, float16, bfloat16, int8"),
    (("cloud.refresh_topk=0",), "cloud.refresh_topk: must be in (0, 1], got 0"),
    (("cloud.refresh_topk=1.5",), "cloud.refresh_topk: must be in (0, 1], got 1.5"),
    (("upload.downscale=0",), "upload.downscale: must be in (0, 1], got 0"),
    (("upload.downscale=2",), "upload.downscale: must be in (0, 1], got 2"),
])
def test_codec_keys_name_their_problem(overrides, message):
    with pytest.raises(ConfigError) as err:
        small(*overrides)
    assert any(message in p for p in err.value.problems), err.value.problems


def test_codecs_accepted_where_they_act():
    for overrides in (("cloud.refresh_codec=int8_channel", "method.name=tent"),
                      ("cloud.refresh_codec=stats", "method.norm_mode=running"),
                      ("cloud.refresh_codec=bfloat16", "method.name=upload_all"), ("cloud.refresh_topk=1",)):
        small(*overrides)
