"""``ispad-bench inspect``: a sweep job's model on full acquisitions (issue 23, docs/inspect.md).

One stage per module: :mod:`.load` (the job's model, pre-processing and threshold), :mod:`.tiles`
(reading an acquisition, the paper's window grid), :mod:`.run` (batched scoring of the windows),
:mod:`.blend` (window maps -> one full-size map), :mod:`.regions` (thresholded map -> defect
regions), :mod:`.metrics` (the line's metrics against full-image masks), :mod:`.write` (overlay,
map, ``regions.csv``, ``inspection.json``, summary table); :mod:`.cli` drives them. :mod:`.scan` generates a
plate with planted defects; :mod:`.predict` turns a job's config into one ``anomalib predict`` accepts.
"""
