"""Networks: link capacity over time (traces, outages), loss processes and on/off intervals; no simpy."""
