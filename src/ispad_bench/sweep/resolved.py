"""Resolved job configs kept between invocations of one sweep folder (``<out>/.resolved.json``).

Rerunning a finished sweep parsed every job's config again with the ``anomalib train`` parser
(~2 s per job on 2 cores, 36 smoke jobs: most of a 66 s no-op rerun, issue 24). A job's resolved
config is a function of its inputs: the config file's bytes, its arguments, the data root's
folder names (``{modality_dir}``) and the code that fills in the defaults. :func:`inputs_key`
hashes exactly those (the code as the versions of the parsing libraries and the source of this
package), so a cached entry is used only when a parse would give the same config and key.
A job whose config names a class outside Anomalib, Lightning, torch and this package (a user's
own model) is always parsed: its source is not part of the hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ispad_bench.files import read_json, write_json

if TYPE_CHECKING:
    from ispad_bench.sweep.grid import Job

CACHE = ".resolved.json"
KNOWN_CODE = ("anomalib.", "ispad_bench.", "lightning.", "torch.", "torchvision.", "timm.")
CLASS_PATH = re.compile(r"\b[A-Za-z_]\w*(?:\.\w+)*\.[A-Z]\w*\b")  # dotted names ending in a class (a.b.Name)
LIBRARIES = ("anomalib", "jsonargparse", "lightning", "torch", "torchvision", "timm")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Versions of the libraries whose defaults a resolved config holds, and this package's source."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    for dist in LIBRARIES:
        try:
            h.update(f"{dist}={version(dist)};".encode())
        except PackageNotFoundError:
            h.update(f"{dist}=-;".encode())
    package = Path(__file__).resolve().parents[1]
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=None)
def _folder_names(root: str) -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(root)))
    except OSError:
        return ()


def inputs_key(job: Job) -> str | None:
    """Hash of everything the job's resolved config depends on; ``None``: not cacheable (own code, unreadable)."""
    try:
        text = Path(job.config_file).read_bytes()
    except OSError:
        return None
    named = CLASS_PATH.findall("\n".join((text.decode(errors="replace"), *job.args)))
    if any(not p.startswith(KNOWN_CODE) for p in named):
        return None
    roots = sorted({str(v) for k, v in job.data_args if k == "root"})
    payload = {
        "job": [job.method, job.modality, job.seed, job.row.slug if job.row else None, str(job.config_file)],
        "args": list(job.args), "data_args": [list(map(str, kv)) for kv in job.data_args],
        "config": hashlib.sha256(text).hexdigest(), "roots": {r: _folder_names(r) for r in roots},
        "code": code_fingerprint(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def resolve_all(jobs: list[Job], out_dir: Path, resolve, on_parse=None) -> tuple[list[Job], int]:
    """Every job resolved: from the cache where its inputs are unchanged, else by ``resolve`` (an error it
    raises carries the job as ``err.job``); returns the jobs and how many were parsed. The cache is rewritten when anything was parsed."""
    path = Path(out_dir) / CACHE
    cache = read_json(path) or {}
    entries = cache.get("entries", {}) if cache.get("schema") == 1 else {}
    out, parsed, fresh = [], 0, {}
    for job in jobs:
        key = inputs_key(job)
        hit = entries.get(key) if key else None
        if hit is not None:
            resolved = replace(job, args=tuple(hit["args"]), data_args=(), key=hit["key"], config=hit["config"])
        else:
            if on_parse is not None:
                on_parse(job)
            try:
                resolved = resolve(job)
            except (Exception, SystemExit) as err:
                err.job = job  # the caller names the job whose config is bad
                raise
            parsed += 1
        if key:
            fresh[key] = {"args": list(resolved.args), "key": resolved.key, "config": resolved.config}
        out.append(resolved)
    if parsed and Path(out_dir).is_dir():
        try:
            write_json(path, {"schema": 1, "entries": fresh})
        except OSError:
            pass  # a cache only: a read-only or full folder is reported by the sweep's own checks
    return out, parsed
