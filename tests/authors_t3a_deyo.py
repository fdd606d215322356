"""Transcriptions of the authors' T3A and DeYO updates (their structure and variable names, plain
torch), for tests/test_t3a_deyo.py to hold cemasim's kernels against. Not imported by cemasim.

- T3A: matsuolab/T3A, domainbed/adapt_algorithms.py, class T3A (forward with adapt=True,
  select_supports), verbatim but for torch.sort made stable (ties never occur in the tests).
- DeYO: Jhyun17/DeYO, methods/deyo.py, forward_and_adapt_deyo with its defaults (filter_ent,
  filter_plpd, reweight_ent, reweight_plpd all 1; aug_type 'patch'); the permutation's torch.rand
  draws from a given generator instead of torch's global one.
"""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn


def softmax_entropy(x: torch.Tensor) -> torch.Tensor:
    return -(x.softmax(1) * x.log_softmax(1)).sum(1)


class AuthorsT3A:
    def __init__(self, featurizer: nn.Module, classifier: nn.Linear, num_classes: int, filter_K: int):
        self.featurizer = featurizer
        self.classifier = classifier
        warmup_supports = self.classifier.weight.data
        self.warmup_supports = warmup_supports
        warmup_prob = self.classifier(self.warmup_supports)
        self.warmup_ent = softmax_entropy(warmup_prob)
        self.warmup_labels = torch.nn.functional.one_hot(warmup_prob.argmax(1), num_classes=num_classes).float()
        self.supports = self.warmup_supports.data
        self.labels = self.warmup_labels.data
        self.ent = self.warmup_ent.data
        self.filter_K = filter_K
        self.num_classes = num_classes

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.featurizer(x)
        p = self.classifier(z)
        yhat = torch.nn.functional.one_hot(p.argmax(1), num_classes=self.num_classes).float()
        ent = softmax_entropy(p)
        self.supports = torch.cat([self.supports, z])
        self.labels = torch.cat([self.labels, yhat])
        self.ent = torch.cat([self.ent, ent])
        supports, labels = self.select_supports()
        supports = torch.nn.functional.normalize(supports, dim=1)
        weights = (supports.T @ (labels))
        return z @ torch.nn.functional.normalize(weights, dim=0)

    def select_supports(self):
        ent_s = self.ent
        y_hat = self.labels.argmax(dim=1).long()
        filter_K = self.filter_K
        indices = []
        indices1 = torch.LongTensor(list(range(len(ent_s))))
        for i in range(self.num_classes):
            _, indices2 = torch.sort(ent_s[y_hat == i], stable=True)
            indices.append(indices1[y_hat == i][indices2][:filter_K])
        indices = torch.cat(indices)
        self.supports = self.supports[indices]
        self.labels = self.labels[indices]
        self.ent = self.ent[indices]
        return self.supports, self.labels


def rearrange_to_tiles(x: torch.Tensor, ps: int) -> torch.Tensor:
    """einops 'b c (ps1 h) (ps2 w) -> b (ps1 ps2) c h w' (einops is not a dependency): tile i * ps + j
    is row block i, column block j."""
    h, w = x.shape[-2] // ps, x.shape[-1] // ps
    return torch.stack([x[:, :, i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(ps) for j in range(ps)], 1)


def rearrange_from_tiles(t: torch.Tensor, ps: int) -> torch.Tensor:
    """einops 'b (ps1 ps2) c h w -> b c (ps1 h) (ps2 w)'."""
    rows = [torch.cat([t[:, i * ps + j] for j in range(ps)], -1) for i in range(ps)]
    return torch.cat(rows, -2)


def forward_and_adapt_deyo(x, model, optimizer, deyo_margin, margin, plpd_threshold, patch_len, gen):
    """Returns (outputs, backward, final_backward) as theirs."""
    outputs = model(x)
    optimizer.zero_grad()
    entropys = softmax_entropy(outputs)
    filter_ids_1 = torch.where((entropys < deyo_margin))
    entropys = entropys[filter_ids_1]
    backward = len(entropys)
    if backward == 0:
        return outputs, 0, 0
    x_prime = x[filter_ids_1]
    x_prime = x_prime.detach()
    resize_t = torchvision.transforms.Resize(((x.shape[-1] // patch_len) * patch_len,
                                              (x.shape[-1] // patch_len) * patch_len))
    resize_o = torchvision.transforms.Resize((x.shape[-1], x.shape[-1]))
    x_prime = resize_t(x_prime)
    x_prime = rearrange_to_tiles(x_prime, patch_len)
    perm_idx = torch.argsort(torch.rand(x_prime.shape[0], x_prime.shape[1], generator=gen), dim=-1)
    x_prime = x_prime[torch.arange(x_prime.shape[0]).unsqueeze(-1), perm_idx]
    x_prime = rearrange_from_tiles(x_prime, patch_len)
    x_prime = resize_o(x_prime)
    with torch.no_grad():
        outputs_prime = model(x_prime)
    prob_outputs = outputs[filter_ids_1].softmax(1)
    prob_outputs_prime = outputs_prime.softmax(1)
    cls1 = prob_outputs.argmax(dim=1)
    plpd = torch.gather(prob_outputs, dim=1, index=cls1.reshape(-1, 1)) - torch.gather(
        prob_outputs_prime, dim=1, index=cls1.reshape(-1, 1))
    plpd = plpd.reshape(-1)
    filter_ids_2 = torch.where(plpd > plpd_threshold)
    entropys = entropys[filter_ids_2]
    final_backward = len(entropys)
    if final_backward == 0:
        return outputs, backward, 0
    plpd = plpd[filter_ids_2]
    coeff = (1 * (1 / (torch.exp(((entropys.clone().detach()) - margin))))
             + 1 * (1 / (torch.exp(-1. * plpd.clone().detach()))))
    entropys = entropys.mul(coeff)
    loss = entropys.mean(0)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
    return outputs, backward, final_backward


IMAGENET_DEFAULTS = {"deyo_margin": 0.5 * math.log(1000), "margin_e0": 0.4 * math.log(1000), "plpd_threshold": 0.2,
                     "patch_len": 4, "lr": 0.00025, "momentum": 0.9}
