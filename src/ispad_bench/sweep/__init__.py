"""The benchmark sweep (layer: sweep; plans and runs, never renders — the report is ``ispad_bench.report``).

Plan: ``profile`` (named settings, supervised rows) -> ``catalog`` (configs for Anomalib models and
class paths) -> ``grid`` (the ``Selection`` of methods x modalities, made once, and its jobs) ->
``overrides`` (command-line overrides fitted to each method) -> ``resolve`` (each job's config as
``anomalib train`` parses it, and its key).
Run: ``runner`` (skip finished jobs, record every outcome) -> ``executors`` (local, ``--devices``,
Ray; one process per attempt) -> ``job`` (fit + test through Anomalib's ``Engine``, with the
``callbacks`` and ``procedure`` tracking) -> ``records`` (a job folder's files). ``lock``: one
sweep per folder. ``cli``: ``ispad-bench sweep``, ``methods``, ``config``.
"""
