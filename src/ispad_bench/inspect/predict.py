"""``ispad-bench config --predict JOB_DIR``: the job's config as ``anomalib predict --config`` accepts it.

A job's ``config.yaml`` is an ``anomalib train`` config; ``anomalib predict`` refuses its training-only
keys ("does not accept option 'optimizer'"). The predict config is the same resolved config without
them, with ``ckpt_path`` set to the job's ``model.ckpt`` (restored through the hook of
:mod:`ispad_bench.models.keep`, which the config's ``ispad_bench`` classes install when Anomalib's CLI
imports them; the config's ``seed_everything`` rebuilds the tensors the checkpoint leaves to it).
``anomalib predict --config predict.yaml`` then predicts the job's test split; ``--data.path`` style
overrides of Anomalib point it elsewhere.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from ispad_bench.sweep import records

TRAIN_ONLY = ("optimizer", "lr_scheduler")  # keys of `anomalib train` that `anomalib predict` does not accept


def predict_config(job: Path) -> dict:
    """The predict config of a job folder (or its ``record.json``) that kept its model."""
    from ispad_bench.inspect.load import JobError, job_folder, read_job_record

    job_dir = job_folder(job)
    read_job_record(job_dir)
    ckpt, config = job_dir / records.MODEL, job_dir / records.CONFIG
    if not ckpt.is_file():
        raise JobError(f"{job_dir}: no {records.MODEL}; rerun the job with `ispad-bench sweep ... --keep model` "
                       "(the default) to keep the tested model")
    try:
        data = yaml.safe_load(config.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise JobError(f"{config}: unreadable ({type(err).__name__}: {err})") from err
    out = {k: v for k, v in data.items() if k not in TRAIN_ONLY and k != "ckpt_path"}
    out["ckpt_path"] = str(ckpt.resolve())
    return out


def main_predict_config(job: Path) -> int:
    from ispad_bench.errors import InputError, one_line

    try:
        config = predict_config(job)
    except InputError as err:
        print(f"config: {one_line(err)}", file=sys.stderr)
        return 2
    print(f"# {job}: run: anomalib predict --config <this file>")
    print(yaml.safe_dump(config, sort_keys=False), end="")
    return 0
