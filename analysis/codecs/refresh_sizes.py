"""One refresh's bytes per codec for real model definitions, by cemasim's own payload code.

The models are built as a scenario builds them (`models.resolve.build`, random weights: sizes need
none; timm and torchvision definitions, offline), converted as the simulator converts them
(`norm.convert`), and their device state is what a CEMA refresh carries: the norm layers' affine
tensors under method.norm_mode batch, plus the BatchNorm running statistics under tbr or running.
Each codec's bytes are `codecs.encode(state, codec).size_bytes` (topk against the source state: its
size depends on k and the tensor sizes only).

    python analysis/codecs/refresh_sizes.py        # writes refresh_sizes.csv (a minute: builds ViT-B)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from cemasim.models import codecs, norm
from cemasim.models.resolve import build

HERE = Path(__file__).resolve().parent
MODELS = ["fmnist_edge_cnn", "torchvision:resnet50", "timm:resnet50", "timm:mobilenetv3_large_100",
          "timm:vit_base_patch16_224"]
TOPK = [0.1, 0.01]


def sizes(name: str) -> list[dict]:
    model, _ = build(name, "random", None, torch.device("cpu"))
    model = norm.convert(model)
    rows = []
    for with_stats, modes in ((False, "batch"), (True, "tbr, running")):
        state = norm.initial_state(model, norm.adaptable_names(model, with_stats))
        if with_stats and len(state) == rows[0]["tensors"]:
            break  # no BatchNorm (ViT's LayerNorms): no statistics to carry
        row = {"model": name, "norm_mode": modes, "tensors": len(state),
               "values": sum(t.numel() for t in state.values())}
        for codec in codecs.CODECS:
            if codec == "stats" and not with_stats:
                row[codec] = None  # a state without statistics has nothing for this codec to send
            elif codec == "topk":
                for k in TOPK:
                    row[f"topk {k}"] = codecs.encode(state, codec, k, state).size_bytes
            else:
                row[codec] = codecs.encode(state, codec).size_bytes
        rows.append(row)
    return rows


def main() -> None:
    table = pd.DataFrame([row for name in MODELS for row in sizes(name)])
    table.to_csv(HERE / "refresh_sizes.csv", index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
