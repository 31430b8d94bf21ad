"""ispad-bench: the ISP-AD benchmark harness, as an Anomalib plugin."""

__version__ = "0.1.0"

from ispad_bench.anomalib_cli import install as _install_anomalib_cli

_install_anomalib_cli()  # under `anomalib train`: apply seed_everything, bad input in one line
