"""The methods table of docs/results.md, printed from the methods sweep's CSVs (docs/methods_figures/):

    python docs/methods_table.py

Rows in the order of scenarios/methods.yaml's grid; accuracy (the CSVs' percent columns) as mean ±
95 % CI half-width over seeds; the paired column from paired_vs_bn_adapt.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
ORDER = yaml.safe_load((HERE.parent / "scenarios" / "methods.yaml").read_text())["grid"]["method.name"]


def main() -> None:
    summary = pd.read_csv(HERE / "methods_figures" / "summary_by_point.csv").set_index("method.name")
    paired = pd.read_csv(HERE / "methods_figures" / "paired_vs_bn_adapt.csv").set_index("method.name")
    print("| method | accuracy % (95 % CI) | minus bn_adapt, same seed (points, 95 % CI) | upload % | uplink MB |")
    print("| --- | --- | --- | --- | --- |")
    for m in ORDER:
        s = summary.loc[m]
        if m in paired.index:
            p = paired.loc[m]
            diff = f"{p['accuracy_pct_diff']:+.2f} [{p['accuracy_pct_diff_lo']:+.2f}, {p['accuracy_pct_diff_hi']:+.2f}]"
        else:
            diff = "(baseline)"
        print(f"| `{m}` | {s['accuracy_pct']:.2f} ± {s['accuracy_pct_ci95']:.2f} | {diff} | "
              f"{s['upload_ratio_pct']:.1f} | {s['uplink_bytes'] / 1e6:.2f} |")


if __name__ == "__main__":
    main()
