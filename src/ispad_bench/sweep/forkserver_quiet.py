"""Imported first by the sweep's fork server (``executors.PRELOAD``): silence the known third-party
deprecation warnings (``ispad_bench.quiet``) before it imports Anomalib, so neither the server nor
the jobs it forks print them."""

from ispad_bench.quiet import quiet_known_warnings

quiet_known_warnings()
