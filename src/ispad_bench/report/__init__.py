"""The report (layer: report; reads records only and imports no anomalib, lightning or torch).

``load`` (records and the arrays jobs saved) -> ``tables`` (the paper's Tables 2-6 layout),
``stats`` (intervals, significance marks), ``notes`` (procedure, data provenance, order),
``figures`` -> ``write`` (everything below a sweep folder) and ``html``; ``cli``: ``ispad-bench report``.
Public surface: :func:`write_report`, :func:`summarise`.
"""

from ispad_bench.lazy import lazy_attributes

__getattr__ = lazy_attributes(__name__, {
    "write_report": "ispad_bench.report.write",
    "no_success_message": "ispad_bench.report.write",
    "summarise": "ispad_bench.report.tables",
})
__all__ = ["no_success_message", "summarise", "write_report"]
