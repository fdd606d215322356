"""Adaptation methods: how an edge device predicts, what it uploads, and what the cloud does.

A method fixes the edge side (statistics mode of its norm layers, an optional local adaptation
step, the upload mask per test batch) and its cloud worker (`Method.cloud_worker`):

    (none)     forward-only on the edge, nothing uploaded          source, bn_adapt, onda, lame
    cema       foundation step + distillation into the device       cema, upload_all, random_upload
    offload    the cloud runs the device's TTA step on its uploads  tent, pl, eta, eata, sar (deployment: cloud)
    inference  the foundation model answers every uploaded sample   cloud_inference

TTA methods with `method.deployment: edge` adapt on the device itself (profiles with can_train).
Pure torch: nothing here knows about simulated time. The hierarchy is in method.py; this module
is the registry: one line per method name.
"""

from __future__ import annotations

import math
from typing import Any

from cemasim.methods.method import (
    ADAPTERS,
    TTA,
    BNAdapt,
    Cema,
    CloudInference,
    FilteredTTA,
    Lame,
    Method,
    Onda,
    RandomUpload,
    UploadAll,
)
from cemasim.methods.selection import SelectionConfig
from cemasim.methods.tta import EATA, ETA, SAR, Adapter, CoTTA, PseudoLabel, cotta_anchor
from cemasim.registry import Registry

__all__ = ["ADAPTERS", "METHODS", "Method", "build_method"]


METHODS: Registry[Any] = Registry("method")


def _ln_c(num_classes: int) -> float:
    return math.log(num_classes)


def _lr(sc: Any, method: str) -> float:
    from cemasim.methods.presets import method_lr

    return method_lr(sc, method)


def _tta(adapter_fn, filtered: bool = False, clean: bool = False):
    def build(sc: Any, num_classes: int) -> Method:
        cls = FilteredTTA if filtered and sc.method.deployment == "cloud" else TTA
        return cls(name=sc.method.name, norm_mode="batch", deployment=sc.method.deployment,
                   adapter=adapter_fn(sc, num_classes), clean_samples=sc.method.fisher_samples if clean else 0)

    return build


def _cema(sc: Any, num_classes: int) -> Method:
    s, ln_c = sc.selection, _ln_c(num_classes)
    cfg = SelectionConfig(
        e0=s.e_max * ln_c,
        e_min=None if s.e_min is None else s.e_min * ln_c,
        dynamic_e_max=s.dynamic_e_max,
        lam=s["lambda"],
        warm_up_n=s.warm_up_n,
        redundancy_filter=s.redundancy_filter,
        redundancy_eps=s.redundancy_eps,
    )
    return Cema(name="cema", norm_mode=sc.method.norm_mode, selection=cfg)


def _eta_kwargs(sc: Any, num_classes: int) -> dict[str, Any]:
    return {"lr": _lr(sc, sc.method.name), "e_margin": sc.method.e_margin * _ln_c(num_classes),
            "d_margin": sc.method.d_margin}


METHODS.add("source", lambda sc, c: Method(name="source"), "frozen source model, source BN statistics, uploads nothing")
METHODS.add("bn_adapt", lambda sc, c: BNAdapt(name="bn_adapt", prior=sc.method.bn_prior),
            "test-batch BN statistics on the edge (method.bn_prior mixes in the source's), uploads nothing")
METHODS.add("onda", lambda sc, c: Onda(name="onda"),
            "EMA of BN statistics from the source (momentum 0.1), uploads nothing")
METHODS.add("lame", lambda sc, c: Lame(name="lame", knn=sc.method.lame_knn),
            "frozen model + kNN Laplacian output correction over each batch, uploads nothing")
METHODS.add("tent", _tta(lambda sc, c: Adapter(lr=_lr(sc, "tent"))),
            "entropy minimisation of BN affine; on the edge or offloaded (method.deployment)")
METHODS.add("pl", _tta(lambda sc, c: PseudoLabel(lr=_lr(sc, "pl"))),
            "hard pseudo-label cross-entropy on BN affine; on the edge or offloaded")
METHODS.add("eta", _tta(lambda sc, c: ETA(**_eta_kwargs(sc, c)), filtered=True),
            "reliable + non-redundant samples, weighted entropy; on the edge or offloaded (edge pre-filters)")
METHODS.add("eata", _tta(lambda sc, c: EATA(**_eta_kwargs(sc, c), fisher_alpha=sc.method.fisher_alpha),
                         filtered=True, clean=True),
            "ETA + Fisher regulariser from clean samples; on the edge or offloaded (edge pre-filters)")
METHODS.add("sar", _tta(lambda sc, c: SAR(lr=_lr(sc, "sar"), e_margin=sc.method.e_margin * _ln_c(c),
                                          rho=sc.method.sar_rho, reset_constant=sc.method.sar_reset)),
            "sharpness-aware reliable entropy minimisation with reset; on the edge or offloaded")
METHODS.add("cotta", _tta(lambda sc, c: CoTTA(lr=_lr(sc, "cotta"), anchor_threshold=cotta_anchor(c)
                                              if sc.method.cotta_anchor is None else sc.method.cotta_anchor,
                                              views=sc.method.cotta_views, restore_p=sc.method.cotta_restore)),
            "all parameters towards an EMA teacher (augmentation-averaged when unsure), stochastic restore")
METHODS.add("upload_all", lambda sc, c: UploadAll(name="upload_all", norm_mode=sc.method.norm_mode),
            "every sample uploaded; cloud foundation step + distillation (CEMA's cloud)")
METHODS.add("random_upload", lambda sc, c: RandomUpload(name="random_upload", norm_mode=sc.method.norm_mode,
                                                        rate=sc.selection.random_rate, seed=sc.seed),
            "ablation: uploads a random selection.random_rate of the samples; CEMA's cloud")
METHODS.add("cema", _cema, "entropy-selected uploads (E_min < E < E_max); cloud foundation step + distillation")
METHODS.add("cloud_inference", lambda sc, c: CloudInference(name="cloud_inference"),
            "every sample uploaded; the frozen foundation model's answer is the prediction")


def build_method(sc: Any, num_classes: int) -> Method:
    return METHODS.get(sc.method.name)(sc, num_classes)
