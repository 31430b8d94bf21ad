"""ispad-bench: the ISP-AD benchmark harness, as an Anomalib plugin."""

__version__ = "0.1.0"

from ispad_bench.cli_seed import install as _install_cli_seed  # noqa: E402

_install_cli_seed()  # under `anomalib train`: apply the config's seed_everything (cli_seed.py)
