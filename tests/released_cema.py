"""A transcription of the authors' released CEMA loop (chenyaofo/CEMA, commit 7add5d0:
codebase/core/tta/cema.py, tbr.py, bn_utils.py, criterion/distillation.py, criterion/tta.py),
kept in their structure and variable names, plain torch.nn / torch.optim, for the tests to
compare cemasim against. Nothing here imports cemasim.

Changes, each needed to run it here and none changing what it computes:
- the foundation model is passed in (theirs: MODEL.build_from(resnet101, pretrained)), no .cuda();
- `random.sample(history, k)` takes the injected `sample(history, k)`, so both sides can draw the
  same replay indices;
- `quantise(samples)` is applied to the uploaded samples: cemasim's cloud trains on the decoded
  uploads (uint8 images), the one departure its README names; identity reproduces theirs;
- logging and the unused counters of the criteria are left out.
"""

from __future__ import annotations

import copy
import types
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim


# ---- criterion/tta.py -------------------------------------------------------------------------
def entropy(logits: torch.Tensor, reduction="none"):
    min_real = torch.finfo(logits.dtype).min
    logits = torch.clamp(logits, min=min_real)
    p_log_p = F.softmax(logits, dim=-1) * F.log_softmax(logits, dim=-1)
    losses = -p_log_p.sum(-1)
    if reduction == "none":
        return losses
    return losses.mean()


# ---- core/tta/tbr.py + bn_utils.py ------------------------------------------------------------
def tbr_bn_forward_impl(self: nn.BatchNorm2d, x: torch.Tensor):
    batch_var, batch_mean = torch.var_mean(x, dim=(0, 2, 3), keepdim=True)
    batch_std = torch.sqrt(batch_var + self.eps)

    if self.running_mean is None:
        self.running_mean, self.running_var = batch_mean.clone().detach(), batch_var.clone().detach()

    self.running_mean, self.running_var = self.running_mean.view(1, -1, 1, 1), self.running_var.view(1, -1, 1, 1)

    r = batch_std.detach() / torch.sqrt(self.running_var + self.eps)
    d = (batch_mean.detach() - self.running_mean) / torch.sqrt(self.running_var + self.eps)
    x = ((x - batch_mean) / batch_std) * r + d

    if self.training:
        self.running_mean += self.momentum * (batch_mean.detach() - self.running_mean)
        self.running_var += self.momentum * (batch_var.detach() - self.running_var)

    x = self.weight.view(1, -1, 1, 1) * x + self.bias.view(1, -1, 1, 1)
    return x


BN_MODULE_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def get_bn_from_model(model: nn.Module):
    return [(name, bn) for name, bn in model.named_modules() if isinstance(bn, BN_MODULE_TYPES)]


def replace_bn_forward_with(model: nn.Module, fn):
    for name, bn in get_bn_from_model(model):
        bn.forward = types.MethodType(fn, bn)


# ---- criterion/distillation.py (alpha, beta, gamma, temperature; E_max weighting) ----------------
class TTADistillationLoss:
    def __init__(self, alpha, beta, gamma, temperature, E_max):
        self.alpha, self.beta, self.gamma, self.temperature, self.E_max = alpha, beta, gamma, temperature, E_max

    def __call__(self, source_logits: torch.Tensor, target_logits: torch.Tensor):
        ent = entropy(source_logits, reduction="none")
        coeff = 1 / (torch.exp(ent.clone().detach() - self.E_max)) if self.E_max is not None else 1
        ent_loss = ent.mul(coeff).mean()
        if self.E_max is not None:
            ce_ent = entropy(target_logits, reduction="none")
            ce_coeff = 1 / (torch.exp(ce_ent.clone().detach() - self.E_max))
        else:
            ce_coeff = 1
        kl_loss_per_sample = F.kl_div(F.log_softmax(source_logits / self.temperature, dim=-1),
                                      F.softmax(target_logits / self.temperature, dim=-1),
                                      reduction="none", log_target=False).sum(-1) * (self.temperature ** 2)
        kl_loss = kl_loss_per_sample.mul(ce_coeff).mean()
        with torch.no_grad():
            pseudo_labels = torch.argmax(target_logits, dim=-1, keepdim=False)
        ce_loss = F.cross_entropy(source_logits, pseudo_labels, reduction="none").mul(ce_coeff).mean()
        return self.alpha * ent_loss + self.beta * kl_loss + self.gamma * ce_loss


# ---- core/tta/cema.py ---------------------------------------------------------------------------
class AverageMetric:
    def __init__(self, warm_up_n: int):
        self.n, self._value, self._init, self._init_value, self.warm_up_n = 0, 0.0, False, 0.0, warm_up_n

    def update(self, value) -> None:
        self.n += value.numel()
        self._value += value.sum().item()
        if self.n >= self.warm_up_n and not self._init:
            self._init = True
            self._init_value = self.value

    @property
    def is_warm_up(self):
        return self._init

    @property
    def warm_up_value(self):
        return self._init_value

    @property
    def value(self) -> float:
        return 0 if self.n == 0 else self._value / self.n


def prepare_model_for_tent_tta(model: nn.Module, is_tbr=False, update_all_parameters=False):
    model.train()
    model.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            m.requires_grad_(True)
            m.track_running_stats = False
            m.running_mean = None
            m.running_var = None
        if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
            m.eval()
        if isinstance(m, (nn.GroupNorm, nn.LayerNorm)):
            m.requires_grad_(True)
    if update_all_parameters:
        for p in model.parameters():
            p.requires_grad_(True)
    return model


def set_bn_training_mode(model: nn.Module, mode: bool):
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)):
            m.train(mode=mode)
    return model


class EntropyCriterion:
    def __init__(self, ent_high_margin, ent_low_margin, warm_up_batch_size, ent_high_margin_coeff):
        self.ent_high_margin, self.ent_low_margin = ent_high_margin, ent_low_margin
        self.warm_up_batch_size = 10 ** 12 if warm_up_batch_size is None else warm_up_batch_size
        self.ent_high_margin_coeff = ent_high_margin_coeff
        self.avg_ent = AverageMetric(self.warm_up_batch_size)

    @property
    def cnt_ent_high_margin(self):
        if self.avg_ent.is_warm_up:
            return self.ent_high_margin * (self.avg_ent.value / self.avg_ent.warm_up_value) * self.ent_high_margin_coeff
        return self.ent_high_margin

    def filter_out(self, logits: torch.Tensor):
        with torch.no_grad():
            batch_size, *_ = logits.shape
            ents = entropy(logits, reduction="none")
            self.avg_ent.update(ents)
            if self.ent_high_margin is not None:
                remain_ids, *_ = torch.where(ents < self.cnt_ent_high_margin)
            if self.ent_low_margin is not None:
                remain_ent = ents[remain_ids]
                sec_remain_ids, *_ = torch.where(remain_ent > self.ent_low_margin)
                remain_ids = remain_ids[sec_remain_ids]
        return remain_ids


def update_model_probs(current_model_probs, new_probs):
    if current_model_probs is None:
        if new_probs.size(0) == 0:
            return None
        with torch.no_grad():
            return new_probs.mean(0)
    if new_probs.size(0) == 0:
        return current_model_probs
    with torch.no_grad():
        return 0.9 * current_model_probs + (1 - 0.9) * new_probs.mean(0)


class SimilarityCriterion:
    def __init__(self, history_model_probs=None, d_margin=None):
        self.history_model_probs, self.d_margin = history_model_probs, d_margin

    def filter_out(self, logits: torch.Tensor):
        with torch.no_grad():
            batch_size, *_ = logits.shape
            if self.d_margin is None:
                return torch.arange(batch_size, device=logits.device)
            if self.history_model_probs is not None:
                cosine_similarities = F.cosine_similarity(self.history_model_probs.unsqueeze(dim=0), logits.softmax(1),
                                                          dim=1)
                remain_ids, *_ = torch.where(torch.abs(cosine_similarities) < self.d_margin)
                self.history_model_probs = update_model_probs(self.history_model_probs, logits[remain_ids].softmax(1))
            else:
                self.history_model_probs = update_model_probs(self.history_model_probs, logits.softmax(1))
                remain_ids = torch.arange(batch_size, device=logits.device)
            return remain_ids


class CEMA:
    def __init__(self, model: nn.Module, foundation_model: nn.Module, ent_low_margin, ent_high_margin, d_margin,
                 warm_up_batch_size, ent_high_margin_coeff, batch_size, alpha, beta, gamma, temperature,
                 replay_buffer_size, s_tta_lr, t_tta_lr, n_class, is_tbr=False, K=1,
                 sample: Callable[[list, int], list] | None = None,
                 quantise: Callable[[torch.Tensor], torch.Tensor] = lambda s: s):
        import math

        self.is_tbr = is_tbr
        self.replay_buffer_size = replay_buffer_size
        self.edge_model = model
        self.foundation_model = foundation_model
        if self.is_tbr:
            replace_bn_forward_with(model=self.edge_model, fn=tbr_bn_forward_impl)
            replace_bn_forward_with(model=self.foundation_model, fn=tbr_bn_forward_impl)
        prepare_model_for_tent_tta(self.edge_model, is_tbr=self.is_tbr)
        self.tta_e_optimizer = optim.SGD(params=[p for name, p in self.edge_model.named_parameters()
                                                 if p.requires_grad],
                                         lr=s_tta_lr, momentum=0.9)
        prepare_model_for_tent_tta(self.foundation_model, is_tbr=self.is_tbr)
        self.tta_f_optimizer = optim.SGD(
            params=[p for name, p in self.foundation_model.named_parameters() if p.requires_grad],
            lr=t_tta_lr, momentum=0.9)
        self.ent_high_margin = None if ent_high_margin is None else ent_high_margin * math.log(n_class)
        self.ent_low_margin = None if ent_low_margin is None else ent_low_margin * math.log(n_class)
        self.entropy_criterion = EntropyCriterion(ent_low_margin=self.ent_low_margin,
                                                  ent_high_margin=self.ent_high_margin,
                                                  warm_up_batch_size=warm_up_batch_size,
                                                  ent_high_margin_coeff=ent_high_margin_coeff)
        self.d_margin = d_margin
        self.similarity_criterion = SimilarityCriterion(d_margin=self.d_margin)
        self.distill_loss = TTADistillationLoss(alpha=alpha, beta=beta, gamma=gamma, temperature=temperature,
                                                E_max=self.ent_high_margin)
        self.cloud_buffer = []
        self.history_buffer = []
        self.batch_size = batch_size
        self.iters = 0
        self.K = K
        self.sample = sample
        self.quantise = quantise
        self.last_remain_ids = None  # (test hook) the uploaded rows of the last batch

    def infer(self, x: torch.Tensor):
        self.iters += 1
        # excuted in edge
        with torch.no_grad():
            if self.iters < 10:
                set_bn_training_mode(self.edge_model, mode=False)
                edge_outputs = self.edge_model(x)
            else:
                if self.iters % self.K == 0 or self.iters == 10:
                    self.edge_model_shadow = copy.deepcopy(self.edge_model)
                set_bn_training_mode(self.edge_model_shadow, mode=False)
                edge_outputs = self.edge_model_shadow(x)
            ent_remain_ids = self.entropy_criterion.filter_out(edge_outputs)
            filtered_samples_outputs = edge_outputs[ent_remain_ids]
            sim_remain_ids = self.similarity_criterion.filter_out(filtered_samples_outputs)
            filtered_samples = self.quantise(x[ent_remain_ids][sim_remain_ids])
            self.last_remain_ids = ent_remain_ids[sim_remain_ids]

            self.cloud_buffer += filtered_samples.unbind(dim=0)
            if self.replay_buffer_size != 0:
                b_samples = filtered_samples.unbind(dim=0)
                b_samples = [s.cpu() for s in b_samples]
                self.history_buffer += b_samples

        # excuted in cloud
        if len(self.history_buffer) > self.replay_buffer_size:
            self.history_buffer = self.history_buffer[-self.replay_buffer_size:]

        is_excuted = False
        while len(self.cloud_buffer) >= self.batch_size:
            is_excuted = True
            uploaded_samples = self.cloud_buffer[:self.batch_size]
            uploaded_samples = torch.stack(uploaded_samples, dim=0)
            self.cloud_buffer = self.cloud_buffer[self.batch_size:]

            # step 1: Adaptation of the foundation model via entropy minimization
            set_bn_training_mode(self.foundation_model, mode=True)
            uploaded_samples_outputs = self.foundation_model(uploaded_samples)
            ent = entropy(uploaded_samples_outputs, reduction="none")
            coeff = 1 / (torch.exp(ent.clone().detach() - self.ent_high_margin)) if self.ent_high_margin is not None \
                else 1
            loss = ent.mul(coeff).mean()
            self.tta_f_optimizer.zero_grad()
            loss.backward()
            self.tta_f_optimizer.step()

            # step 2: Adaptation of the edge model via knowledge distillation
            set_bn_training_mode(self.foundation_model, mode=False)
            set_bn_training_mode(self.edge_model, mode=True)
            if len(self.history_buffer) < 256 or self.replay_buffer_size == 0:
                with torch.no_grad():
                    f_logits = self.foundation_model(uploaded_samples)
                e_logits = self.edge_model(uploaded_samples)
                distill_loss = self.distill_loss(e_logits, f_logits.detach())
                self.tta_e_optimizer.zero_grad()
                distill_loss.backward()
                self.tta_e_optimizer.step()
            else:
                random_history_samples = self.sample(self.history_buffer, self.batch_size * 3)
                random_history_samples = torch.stack(random_history_samples, dim=0)
                concat_samples = torch.cat([uploaded_samples, random_history_samples], dim=0)
                with torch.no_grad():
                    f_logits = self.foundation_model(concat_samples)
                e_logits = self.edge_model(concat_samples)
                distill_loss = self.distill_loss(e_logits, f_logits.detach())
                self.tta_e_optimizer.zero_grad()
                distill_loss.backward()
                self.tta_e_optimizer.step()

        if not is_excuted and len(self.history_buffer) > 256 and self.replay_buffer_size != 0:
            random_history_samples = self.sample(self.history_buffer, self.batch_size * 4)
            random_history_samples = torch.stack(random_history_samples, dim=0)
            with torch.no_grad():
                f_logits = self.foundation_model(random_history_samples)
            e_logits = self.edge_model(random_history_samples)
            distill_loss = self.distill_loss(e_logits, f_logits.detach())
            self.tta_e_optimizer.zero_grad()
            distill_loss.backward()
            self.tta_e_optimizer.step()

        return edge_outputs
