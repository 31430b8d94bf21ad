"""The benchmark sweep: grid expansion, resumable job runner, executors, tables and figures.

``ispad-bench sweep --all`` expands methods x modalities x seeds (plus the supervised rows of
Tables 2-3) from ``configs/``, runs every job through Anomalib's ``Engine`` in its own process
and writes one JSON record per job; ``ispad-bench report RUNS_DIR`` turns the records into the
paper's Tables 2-6 with a delta-to-paper column, anomaly-map overlay grids and ROC curves.
"""
