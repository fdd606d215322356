"""cemasim: a discrete-event simulator of cloud-edge model adaptation (CEMA, ICLR 2024).

SimPy decides *when* things happen; real PyTorch models decide *what* happens.
"""

__version__ = "0.1.0"
