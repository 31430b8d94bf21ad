"""Stage 4 of ``data build``: real-defect crops for supervision, grouped ``area`` / ``points``.

§3.2: "real defective patches were manually extracted on selected defective samples ...
central defect labeling with patch sizes of 512 x 512 px ensures proper defect positioning within
augmented patches, which are cropped to a final size of 256 x 256 px during training." A position
per defect is enough (weak labels). Each labelled defect of a *training* acquisition gives one
512x512 single-channel crop centred on it (reflection where the crop leaves the image), written as
``supervised/real_defects/<group>/<name>.png``, the folders ``ISPADSupervised`` reads
(``data/hdf5.py:real_defect_pools``). The paper took them from defective samples of both splits;
the builder takes only training acquisitions so that no test acquisition's pixels reach training.

Group of a defect, first that applies: the ``group`` column of defects.csv; the class mapping
(``--defect-groups``, else the built-in ``DEFECT_GROUPS``) of its defect class; the size rule
``area`` when the defect's pixel area is at least ``area_px`` (default 1024 px, a 32x32 square;
a weak label counts as its disc, ~804 px: ``points``), else ``points``.
"""

from __future__ import annotations

import numpy as np

from ispad_bench.data.build.windows import Defect, reflect_crop
from ispad_bench.data.layout import DEFECT_GROUPS, GROUPS
from ispad_bench.data.modality import REAL_DEFECT_SIZE

AREA_PX = 1024  # size rule: defects of at least this many pixels are "area" (project default, overridable)


def group_of(defect: Defect, defect_class: str | None, mapping: dict[str, str] | None = None,
             area_px: int = AREA_PX) -> str:
    """``area`` or ``points`` for one defect (see the module docstring for the order of the rules)."""
    if defect.group is not None:
        return defect.group
    mapped = (DEFECT_GROUPS if mapping is None else mapping).get(defect_class or "")
    if mapped in GROUPS:
        return mapped
    return "area" if defect.area >= area_px else "points"


def centred_crop(gray: np.ndarray, defect: Defect, size: int = REAL_DEFECT_SIZE) -> np.ndarray:
    """The ``size`` x ``size`` crop whose centre pixel (``size // 2``) is the defect's centre pixel."""
    cy, cx = int(round(defect.y)), int(round(defect.x))
    return np.ascontiguousarray(reflect_crop(gray, cy - size // 2, cx - size // 2, size, size))


REAL_IDS_FILE = "real_ids.json"


def fraction_lists(pool_ids: dict[str, list[str]], real_seed: int = 0) -> dict[str, dict[str, list[str]]]:
    """The real defects of every group and §5.2 fraction, as a ``real_ids_file`` (data/real_ids.py format).

    The lists are exactly what ``ISPADSupervised``'s seeded shuffle picks for ``real_seed`` (its
    ``select_real``), written out so a user can read, review or pin the selection, and so a profile's
    ``real_ids_file`` can point at the data's own ids (``{modality_dir}/supervised/real_ids.json``).
    """
    from ispad_bench.data.supervised import FRACTIONS, REAL_GROUPS, select_real

    out: dict[str, dict[str, list[str]]] = {}
    for group in REAL_GROUPS:
        if not (pool_ids.get(group) if group in GROUPS else any(pool_ids.values())):
            continue
        out[group] = {str(f): [f"{g}/{pool_ids[g][i]}" for g, i in select_real(pool_ids, group, f, real_seed)]
                      for f in FRACTIONS if f}
    return out


def write_real_ids(modality_dir) -> None:
    """``<modality_dir>/supervised/real_ids.json``: :func:`fraction_lists` of the real defects found there
    (``data build`` and ``data synth`` write it; the smoke profile's ``real_ids_file`` points at it)."""
    from pathlib import Path

    from ispad_bench.data.hdf5 import discover_real_defects
    from ispad_bench.data.layout import SUPERVISED_DIR
    from ispad_bench.files import write_json

    modality_dir = Path(modality_dir)
    pools = {g: [p.stem for p in files] for g, files in discover_real_defects(modality_dir).items() if files}
    if pools:
        write_json(modality_dir / SUPERVISED_DIR / REAL_IDS_FILE, fraction_lists(pools))
