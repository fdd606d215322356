"""Methods that adapt nothing in the cloud and upload nothing: the source model, BN statistics
(test-batch, or an EMA from the source) and LAME's output correction."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from cemasim.methods.method import Method
from cemasim.methods.registry import METHODS, ON_EDGE
from cemasim.methods.tta import classifier_features, lame_predict
from cemasim.models import norm


@dataclass
class BNAdapt(Method):
    """Test-batch BN statistics (optionally mixed with the source's), no gradient, no upload."""

    prior: float = 0.0

    def edge_stat_mode(self) -> tuple[str, float]:
        return ("mixed", self.prior) if self.prior > 0 else ("batch", 0.0)


@dataclass
class Onda(Method):
    """Running statistics updated online from the source by an EMA of test batches."""

    @property
    def carries_stats(self) -> bool:
        return True

    def edge_stat_mode(self) -> tuple[str, float]:
        return "ema", 0.0


@dataclass
class Lame(Method):
    """Frozen model; kNN-Laplacian correction of the batch's outputs (returned as log-probabilities)."""

    knn: int = 5

    def edge_logits(self, model: nn.Module, state: norm.NormState, x: Tensor) -> Tensor:
        logits, features = classifier_features(model, state, x, "eval")
        return lame_predict(logits, features, self.knn).clamp_min(1e-20).log()


METHODS.add("source", lambda sc, c: Method(name="source"), "frozen source model, source BN statistics, uploads nothing",
            deployments=ON_EDGE)
METHODS.add("bn_adapt", lambda sc, c: BNAdapt(name="bn_adapt", prior=sc.method.bn_prior),
            "test-batch BN statistics on the edge (method.bn_prior mixes in the source's), uploads nothing",
            deployments=ON_EDGE)
METHODS.add("onda", lambda sc, c: Onda(name="onda"),
            "EMA of BN statistics from the source (momentum 0.1), uploads nothing", deployments=ON_EDGE)
METHODS.add("lame", lambda sc, c: Lame(name="lame", knn=sc.method.lame_knn),
            "frozen model + kNN Laplacian output correction over each batch, uploads nothing", deployments=ON_EDGE)
