"""Radio energy presets: energy per bit sent (tx) and received (rx), in nJ/bit.

The figures are the data-dependent slopes of measured power models (mW per Mbit/s = nJ/bit): the
energy a radio spends because bits move. Its tail and base power (the radio staying in a high-power
state after a transfer, or idling connected) are not modelled, so these are lower bounds on what
a real radio draws for the same traffic.
"""

from __future__ import annotations

from dataclasses import dataclass

from cemasim.registry import Registry

_HUANG = ('Huang et al., "A Close Examination of Performance and Power Characteristics of 4G LTE Networks", '
          "MobiSys 2012")


@dataclass(frozen=True)
class Radio:
    name: str
    tx_nj_per_bit: float
    rx_nj_per_bit: float
    source: str = ""


RADIOS: Registry[Radio] = Registry("radio")


def _radio(name: str, tx: float, rx: float, source: str) -> None:
    RADIOS.add(name, Radio(name, tx, rx, source), f"tx {tx:g} nJ/bit, rx {rx:g} nJ/bit: {source}")


# alpha_u (uplink) and alpha_d (downlink) of the paper's power models, mW per Mbit/s
_radio("lte", 438.39, 51.97, f"{_HUANG}, LTE power model (alpha_u, alpha_d)")
_radio("wifi", 283.17, 137.01, f"{_HUANG}, WiFi power model (alpha_u, alpha_d)")
_radio("3g", 868.98, 122.12, f"{_HUANG}, 3G power model (alpha_u, alpha_d)")
_radio("none", 0.0, 0.0, "wired or not modelled: no radio energy")
