"""ispad-bench: the ISP-AD benchmark harness, as an Anomalib plugin."""

__version__ = "0.1.0"
