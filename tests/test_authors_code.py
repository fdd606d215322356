"""cemasim's method kernels against transcriptions of the authors' own code (their structure, their
variable names, plain torch.nn / torchvision), one per behaviour issue 12 names:

- TBR forward and gradient (chenyaofo/CEMA tbr.py; transcribed in tests/released_cema.py)
- SAR's parameter set (mr-eggplant/SAR sar.py collect_params) on torchvision / timm models
- BN adaptation with a source prior (chenyaofo/CEMA bn_adapt.py, commit 9a6ef17): unbiased variance
- CoTTA's augmentations (qinenergy/cotta cifar/cotta.py get_tta_transforms + my_transforms.py)
  and its anchor threshold per class count
"""

from __future__ import annotations

import copy
import types

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms as transforms
import torchvision.transforms.functional as TF
from torch import nn
from torchvision.transforms import ColorJitter, InterpolationMode

from cemasim.methods import build_method
from cemasim.methods.optim import Learner, gradient_step
from cemasim.methods.tta import SAR, augment, cotta_anchor
from cemasim.models import norm, zoo
from tests.conftest import small
from tests.released_cema import prepare_model_for_tent_tta, replace_bn_forward_with, tbr_bn_forward_impl


def tiny_bn_net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.BatchNorm2d(6),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 3))
    with torch.no_grad():  # source statistics and affine away from the defaults
        for bn in (net[1], net[4]):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    return net.eval()


# ---- TBR --------------------------------------------------------------------------------------------
def test_tbr_forward_gradient_and_statistics_equal_the_released_code():
    """Eval-mode forward (statistics set by the first batch), then two SGD steps in training mode (value
    normalised by running statistics, gradient through the batch's, running statistics updated)."""
    ref = tiny_bn_net()
    ours = norm.convert(copy.deepcopy(ref))
    replace_bn_forward_with(ref, tbr_bn_forward_impl)
    prepare_model_for_tent_tta(ref, is_tbr=True)
    opt = torch.optim.SGD([p for p in ref.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    learner = Learner(norm.unset_stats(norm.initial_state(ours, norm.adaptable_names(ours, with_stats=True))))
    g = torch.Generator().manual_seed(1)
    batches = [torch.randn(16, 1, 8, 8, generator=g) * s + s for s in (1.0, 2.0, 0.5)]

    with torch.no_grad():  # the edge's first prediction: eval mode, statistics None -> this batch's
        for m in ref.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train(False)
        z_ref = ref(batches[0])
        z = norm.forward(ours, learner.state, batches[0], "tbr")
    torch.testing.assert_close(z, z_ref, rtol=0, atol=1e-6)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.train(True)
    for x in batches[1:]:
        loss_ref = ref(x).logsumexp(-1).mean()
        opt.zero_grad()
        loss_ref.backward()
        opt.step()
        _, loss = gradient_step(ours, learner, x, "tbr_train", lambda z: z.logsumexp(-1).mean(), 0.1, 0.9)
        torch.testing.assert_close(loss, loss_ref.detach(), rtol=1e-6, atol=1e-6)
    for name, bn in (("1", ref[1]), ("4", ref[4])):
        torch.testing.assert_close(learner.state[f"{name}.weight"], bn.weight.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(learner.state[f"{name}.bias"], bn.bias.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(learner.state[f"{name}.running_mean"], bn.running_mean.view(-1), rtol=1e-5,
                                   atol=1e-6)
        torch.testing.assert_close(learner.state[f"{name}.running_var"], bn.running_var.view(-1), rtol=1e-5,
                                   atol=1e-6)


def test_tbr_is_not_train_mode_bn():
    """The difference the issue measured: one step of TBR and of plain train-mode BN part."""
    net = norm.convert(tiny_bn_net())
    x = torch.randn(16, 1, 8, 8) * 2 + 1
    states = {}
    for mode in ("tbr_train", "train"):
        learner = Learner(norm.initial_state(net, norm.adaptable_names(net, with_stats=True)))
        gradient_step(net, learner, x, mode, lambda z: z.logsumexp(-1).mean(), 0.1, 0.9)
        states[mode] = learner.state["1.weight"]
    assert not torch.allclose(states["tbr_train"], states["train"], atol=1e-4)


def test_tbr_scenario_sends_statistics_once_and_refreshes_carry_them():
    """Each device sends the statistics its first batch set, once, ahead of its uploads; its bytes count
    in the uplink; every refresh carries affine tensors and statistics (124 BN channels in the edge CNN)."""
    from cemasim import runner

    tables, summary, _ = runner.simulate(small("method.name=cema", "method.norm_mode=tbr"))
    reports, uploads = tables["reports"], tables["uploads"]
    stats = reports[reports["kind"] == "stats"]
    assert sorted(stats["device"]) == [0, 1]
    assert (stats["size_bytes"] == 16 + 2 * 124 * 4).all()
    for d, row in stats.set_index("device").iterrows():
        assert row["enqueued_s"] <= uploads.loc[uploads["device"] == d, "enqueued_s"].min()
    assert (tables["refreshes"]["size_bytes"] == 4 * 124 * 4).all()
    sent = uploads.loc[uploads["tx_start_s"].notna(), "size_bytes"].sum()
    assert summary["uplink_bytes"] == sent + reports.loc[reports["tx_start_s"].notna(), "size_bytes"].sum()
    samples = tables["samples"]
    assert samples["entropy"].notna().all() and summary["refreshes"] > 0


# ---- SAR ----------------------------------------------------------------------------------------------
def sar_collect_params(model):
    """mr-eggplant/SAR sar.py collect_params, verbatim (names only)."""
    params = []
    names = []
    for nm, m in model.named_modules():
        # skip top layers for adaptation: layer4 for ResNets and blocks9-11 for Vit-Base
        if 'layer4' in nm:
            continue
        if 'blocks.9' in nm:
            continue
        if 'blocks.10' in nm:
            continue
        if 'blocks.11' in nm:
            continue
        if 'norm.' in nm:
            continue
        if nm in ['norm']:
            continue

        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
            for np, p in m.named_parameters():
                if np in ['weight', 'bias']:  # weight is scale, bias is shift
                    params.append(p)
                    names.append(f"{nm}.{np}")

    return params, names


def sar_names(model: nn.Module) -> list[str]:
    converted = norm.convert(copy.deepcopy(model))
    return SAR().adapted_names(converted, norm.adaptable_names(converted, with_stats=False))


@pytest.mark.parametrize("library", ["torchvision", "timm"])
def test_sar_adapts_the_authors_layers_of_a_resnet18(library):
    if library == "timm":
        model = pytest.importorskip("timm").create_model("resnet18", pretrained=False)
    else:
        import torchvision

        model = torchvision.models.resnet18(weights=None)
    _, expected = sar_collect_params(model)
    assert sar_names(model) == expected
    assert not any("layer4" in n for n in expected) and any("layer3" in n for n in expected)


def test_sar_adapts_the_authors_layers_of_a_vit():
    timm = pytest.importorskip("timm")
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10)
    _, expected = sar_collect_params(model)
    assert sar_names(model) == expected
    assert "blocks.8.norm1.weight" in expected and "blocks.9.norm1.weight" not in expected
    assert "norm.weight" not in expected


def test_sar_on_the_zoo_edge_cnn_adapts_every_norm_layer_and_its_device_state_is_that_set():
    """The choice for the zoo: SAR's rule matches none of the edge CNN's layers, so all three adapt."""
    edge = norm.convert(zoo.build("fmnist_edge_cnn", pretrained=False))
    names = norm.adaptable_names(edge, with_stats=False)
    assert SAR().adapted_names(edge, names) == names
    method = build_method(small("method.name=sar"), 10)
    assert list(method.source_state(edge)) == names


def test_a_frozen_layer_stays_at_the_source_and_leaves_the_payload():
    import torchvision

    model = norm.convert(torchvision.models.resnet18(weights=None, num_classes=10))
    method = build_method(small("method.name=sar", "method.lr=0.01"), 10)
    state = method.source_state(model)
    assert state and not any(n.startswith("layer4") for n in state)
    learner = method.init_learner(Learner({n: t.clone() for n, t in state.items()}), model, None)
    x = torch.rand(8, 3, 32, 32)
    method.adapter.step(model, learner, x)
    assert set(learner.state) == set(state)  # frozen layers: the backbone's own (source) tensors


# ---- BN adaptation with a source prior ------------------------------------------------------------
def bn_mean_var(x: torch.Tensor):
    var, mean = torch.var_mean(x, dim=[0, 2, 3], keepdim=False, unbiased=True)
    return mean, var


def bn_adapt_bn_forward_impl(self: nn.BatchNorm2d, x: torch.Tensor, momentum: float):
    mean, var = bn_mean_var(x)

    batch_running_mean = (1 - momentum) * self.running_mean + momentum * mean
    batch_running_var = (1 - momentum) * self.running_var + momentum * var

    return F.batch_norm(
        x,
        batch_running_mean,
        batch_running_var,
        self.weight,
        self.bias,
        training=False,
        momentum=self.momentum,
        eps=self.eps
    )


@pytest.mark.parametrize("prior", [0.5, 0.9, 0.1])
def test_bn_prior_equals_the_authors_bn_adaptation(prior):
    """bn_prior > 0 (bn_prior 0 is plain test-batch BN, train-mode statistics, as Tent normalises)."""
    import functools

    ref = tiny_bn_net()
    ours = norm.convert(copy.deepcopy(ref))
    for bn in (ref[1], ref[4]):
        bn.forward = types.MethodType(functools.partial(bn_adapt_bn_forward_impl, momentum=1 - prior), bn)
    method = build_method(small("method.name=bn_adapt", f"method.bn_prior={prior}"), 3)
    x = torch.randn(5, 1, 8, 8) * 2 + 1  # a small batch: biased and unbiased variance differ by 5/4
    with torch.no_grad():
        state = method.source_state(ours)
        torch.testing.assert_close(method.edge_logits(ours, state, x), ref(x), rtol=1e-5, atol=1e-6)


# ---- CoTTA --------------------------------------------------------------------------------------------
class GaussianNoise(torch.nn.Module):
    def __init__(self, mean=0., std=1.):
        super().__init__()
        self.std = std
        self.mean = mean

    def forward(self, img):
        noise = torch.randn(img.size()) * self.std + self.mean
        noise = noise.to(img.device)
        return img + noise


class Clip(torch.nn.Module):
    def __init__(self, min_val=0., max_val=1.):
        super().__init__()
        self.min_val = min_val
        self.max_val = max_val

    def forward(self, img):
        return torch.clip(img, self.min_val, self.max_val)


class ColorJitterPro(ColorJitter):
    """Randomly change the brightness, contrast, saturation, and gamma correction of an image."""

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0, gamma=0):
        super().__init__(brightness, contrast, saturation, hue)
        self.gamma = self._check_input(gamma, 'gamma')

    def forward(self, img):
        fn_idx = torch.randperm(5)
        for fn_id in fn_idx:
            if fn_id == 0 and self.brightness is not None:
                brightness = self.brightness
                brightness_factor = torch.tensor(1.0).uniform_(brightness[0], brightness[1]).item()
                img = TF.adjust_brightness(img, brightness_factor)

            if fn_id == 1 and self.contrast is not None:
                contrast = self.contrast
                contrast_factor = torch.tensor(1.0).uniform_(contrast[0], contrast[1]).item()
                img = TF.adjust_contrast(img, contrast_factor)

            if fn_id == 2 and self.saturation is not None:
                saturation = self.saturation
                saturation_factor = torch.tensor(1.0).uniform_(saturation[0], saturation[1]).item()
                img = TF.adjust_saturation(img, saturation_factor)

            if fn_id == 3 and self.hue is not None:
                hue = self.hue
                hue_factor = torch.tensor(1.0).uniform_(hue[0], hue[1]).item()
                img = TF.adjust_hue(img, hue_factor)

            if fn_id == 4 and self.gamma is not None:
                gamma = self.gamma
                gamma_factor = torch.tensor(1.0).uniform_(gamma[0], gamma[1]).item()
                img = img.clamp(1e-8, 1.0)  # to fix Nan values in gradients, which happens when applying gamma
                # after contrast
                img = TF.adjust_gamma(img, gamma_factor)

        return img


def get_tta_transforms(img_shape, gaussian_std: float = 0.005, soft=False, clip_inputs=False):
    """qinenergy/cotta cifar/cotta.py; img_shape is a parameter (theirs: (32, 32, 3)); `resample=
    PIL.Image.BILINEAR, fillcolor=None` is spelled `interpolation=BILINEAR` in today's torchvision."""
    n_pixels = img_shape[0]

    clip_min, clip_max = 0.0, 1.0

    p_hflip = 0.5

    tta_transforms = transforms.Compose([
        Clip(0.0, 1.0),
        ColorJitterPro(
            brightness=[0.8, 1.2] if soft else [0.6, 1.4],
            contrast=[0.85, 1.15] if soft else [0.7, 1.3],
            saturation=[0.75, 1.25] if soft else [0.5, 1.5],
            hue=[-0.03, 0.03] if soft else [-0.06, 0.06],
            gamma=[0.85, 1.15] if soft else [0.7, 1.3]
        ),
        transforms.Pad(padding=int(n_pixels / 2), padding_mode='edge'),
        transforms.RandomAffine(
            degrees=[-8, 8] if soft else [-15, 15],
            translate=(1/16, 1/16),
            scale=(0.95, 1.05) if soft else (0.9, 1.1),
            shear=None,
            interpolation=InterpolationMode.BILINEAR,
        ),
        transforms.GaussianBlur(kernel_size=5, sigma=[0.001, 0.25] if soft else [0.001, 0.5]),
        transforms.CenterCrop(size=n_pixels),
        transforms.RandomHorizontalFlip(p=p_hflip),
        GaussianNoise(0, gaussian_std),
        Clip(clip_min, clip_max)
    ])
    return tta_transforms


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
@pytest.mark.parametrize("seed", range(6))
def test_cotta_augmentation_equals_the_authors_transform(channels, size, seed):
    x = torch.rand(8, channels, size, size, generator=torch.Generator().manual_seed(100 + seed)) * 1.2 - 0.1
    torch.manual_seed(seed)
    expected = get_tta_transforms((size, size, channels))(x)
    got = augment(x, torch.Generator().manual_seed(seed))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(got, x.clamp(0, 1), atol=1e-2)  # it does augment


def test_cotta_anchor_threshold_follows_the_authors_per_class_count():
    assert (cotta_anchor(10), cotta_anchor(100), cotta_anchor(1000)) == (0.92, 0.72, 0.1)
    assert build_method(small("method.name=cotta"), 10).adapter.anchor_threshold == 0.92
    assert build_method(small("method.name=cotta", "method.cotta_anchor=0.3"), 10).adapter.anchor_threshold == 0.3


def test_cotta_augmented_branch_runs_on_the_zoo():
    """With 10 classes and the CIFAR-10 threshold, the teacher averages augmented views on shifted data
    (with ImageNet's 0.1 it never could: a 10-class mean confidence is at least 0.1)."""
    from cemasim.methods.tta import CoTTA

    edge = norm.convert(zoo.build("fmnist_edge_cnn"))
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))  # noise: unsure anchor
    outs = {}
    for views in (0, 4):
        state = {n: t.clone() for n, t in edge.named_parameters()}
        learner = Learner(state, extra={"source": {n: t.clone() for n, t in state.items()}})
        outs[views] = CoTTA(lr=0.0, views=views, anchor_threshold=cotta_anchor(10)).step(edge, learner, x)
    assert not torch.allclose(outs[0], outs[4])
