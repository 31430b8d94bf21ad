"""A finished sweep's rerun beside the sweep itself, and the sweep folder's size beside ``--keep all``.

Runs ``ispad-bench sweep --all --profile smoke`` on the 20-patch generated set into a fresh folder,
then the same command again on the finished folder (every job skipped), in one run at the same load.
Prints both wall times and their ratio (issue 24 goal: the rerun <= 10 % of the sweep), the folder's
size, and what ``--keep all`` would have left (the folder plus the Anomalib checkpoints each record
says it removed), with the kept model's size per method.

    python benchmarks/noop_rerun.py                       # ~5 min on 2 idle cores
    python benchmarks/noop_rerun.py --methods glass,supervised --keep-folder results/runs/noop
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def sweep(cli: list[str], out: Path, data: Path, methods: str | None) -> float:
    select = ["--methods", methods] if methods else ["--all"]
    t0 = time.perf_counter()
    subprocess.run([*cli, "sweep", *select, "--profile", "smoke", "--data-root", str(data), "--out", str(out)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=ROOT / "datasets/ispad-smoke20")
    parser.add_argument("--methods", help="comma list (default: --all)")
    parser.add_argument("--keep-folder", type=Path, help="run the sweep here and leave it (default: a temp folder)")
    args = parser.parse_args(argv)
    cli = [str(Path(sys.executable).with_name("ispad-bench"))]
    if not args.data_root.is_dir():
        subprocess.run([*cli, "data", "synth", "--root", str(args.data_root), "--patches", "20", "--seed", "0"], check=True)
    scratch = None if args.keep_folder else tempfile.mkdtemp(prefix="noop-rerun-")
    out = Path(args.keep_folder or scratch) / "smoke"
    shutil.rmtree(out, ignore_errors=True)
    try:
        load = os.getloadavg()[0]
        first = sweep(cli, out, args.data_root, args.methods)
        again = sweep(cli, out, args.data_root, args.methods)
        records = [json.loads(p.read_text()) for p in out.rglob("record.json")]
        size, removed = folder_bytes(out), sum((r.get("kept") or {}).get("removed_bytes", 0) for r in records)
        print(f"load average at start {load:.1f} on {os.cpu_count()} cores; {len(records)} jobs")
        print(f"{'':28} {'ours':>10} {'baseline':>10} {'ratio':>7}")
        print(f"{'rerun s vs sweep s':28} {again:10.1f} {first:10.1f} {again / first:7.1%}")
        print(f"{'folder MB vs --keep all':28} {size / MB:10.1f} {(size + removed) / MB:10.1f} {size / (size + removed):7.1%}")
        per: dict[str, list[int]] = defaultdict(list)
        for r in records:
            per[r["method"]].append((r.get("kept") or {}).get("bytes", 0))
        print(f"\n{'method':14} {'jobs':>4} {'model.ckpt MB (mean)':>21} {'max':>8}")
        for method, sizes in per.items():
            print(f"{method:14} {len(sizes):4d} {sum(sizes) / len(sizes) / MB:21.2f} {max(sizes) / MB:8.2f}")
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
