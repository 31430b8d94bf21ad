"""The known third-party deprecation warnings are silenced at the entry points; others still show."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

from ispad_bench.quiet import quiet_known_warnings


def test_only_the_known_warnings_are_filtered():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_known_warnings()
        for module, message in (("timm.models.layers", "Importing from timm.models.layers is deprecated, please"),
                                ("anomalib.models.image.dinomaly.components.layers",
                                 "The anomalib.models.components.dinov2 package is deprecated and will be removed"),
                                ("ispad_bench.data.datamodule", "Importing from timm.models.layers is deprecated"),
                                ("timm.models.layers", "something else")):
            warnings.warn_explicit(message, FutureWarning, "x.py", 1, module=module)
        warnings.warn_explicit("Importing from timm.models.layers is deprecated", UserWarning, "x.py", 1,
                               module="timm.models.layers")
    assert [(str(w.message), w.category) for w in seen] == [
        ("Importing from timm.models.layers is deprecated", FutureWarning),  # the project's own: shown
        ("something else", FutureWarning),
        ("Importing from timm.models.layers is deprecated", UserWarning),
    ]


@pytest.mark.slow  # two interpreters importing Anomalib: ~10 s idle, a minute under load
def test_real_imports_print_nothing_after_quieting():
    code = "from ispad_bench.quiet import quiet_known_warnings as q; q(); import timm.models.layers; import anomalib.models"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "FutureWarning" not in proc.stderr
    loud = subprocess.run([sys.executable, "-c", code.split("; ", 2)[2]], capture_output=True, text=True, timeout=300)
    assert "timm.models.layers is deprecated" in loud.stderr and "dinov2 package is deprecated" in loud.stderr
