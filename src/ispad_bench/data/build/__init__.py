"""``ispad-bench data build``: the paper's dataset pipeline (§3.2) for a user's own line.

From a folder of full acquisitions (fault-free and defective, masks and/or weak labels, optional
ROIs; layout in ``sources.py`` and docs/data.md) to the ISP-AD layout that ``ISPAD``,
``ISPADSupervised`` and ``data check`` read. One stage per module: ``sources`` (read + validate),
``split`` (by acquisition), ``windows`` (sliding windows), ``crops`` (real defects and groups),
``stream`` (supervised HDF5), ``manifest`` (provenance, fingerprint, resume), ``extract`` (one
acquisition), ``run`` (orchestration, progress, summary); ``params`` holds every parameter.
"""

from ispad_bench.data.build.params import BuildParams
from ispad_bench.data.build.run import BuildResult, build, summary
from ispad_bench.data.build.sources import SourceError

__all__ = ["BuildParams", "BuildResult", "SourceError", "build", "summary"]
