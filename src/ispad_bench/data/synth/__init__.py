"""The generator of ISP-AD-like data (``ispad-bench data synth``; docs/synth.md).

Writes datasets in the layout the readers of :mod:`ispad_bench.data` read; uses only numpy, scipy,
PIL and h5py. ``patterns`` draws the printed product and the sensor, ``defects`` the synthetic
defects (the random walk with momentum of the paper's ref. [25], and scene edits for test
defects), ``generate`` writes whole modalities.
"""

from ispad_bench.data.synth.defects import DEFECT_TYPES, synthesize_defect
from ispad_bench.data.synth.generate import GENERATOR, Plan, generate, plan, recorded
from ispad_bench.data.synth.sheet import contact_sheet

__all__ = ["DEFECT_TYPES", "GENERATOR", "Plan", "contact_sheet", "generate", "plan", "recorded", "synthesize_defect"]
