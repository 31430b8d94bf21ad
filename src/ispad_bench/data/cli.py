"""``ispad-bench data synth | check | download``."""

from __future__ import annotations

import argparse
from pathlib import Path


def _synth(args: argparse.Namespace) -> int:
    from ispad_bench.data.synth import generate

    generate(args.root, patches=args.patches, seed=args.seed, modalities=args.modalities)
    return 0


def _check(args: argparse.Namespace) -> int:
    from ispad_bench.data.check import main_check

    return main_check(args.root)


def _download(args: argparse.Namespace) -> int:
    from ispad_bench.data.download import main_download

    return main_download(args.root, record=args.record, api_url=args.api_url)


def add_parser(subparsers) -> None:
    data = subparsers.add_parser("data", help="generate, check or download ISP-AD data")
    sub = data.add_subparsers(dest="data_command", required=True)

    synth = sub.add_parser("synth", help="write a generated ISP-AD-like dataset (all parts, same layout)")
    synth.add_argument("--root", type=Path, required=True)
    synth.add_argument("--patches", type=int, default=200, help="patches per modality (see README)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--modalities", nargs="+", default=None, help="default: all three")
    synth.set_defaults(func=_synth)

    check = sub.add_parser("check", help="validate a dataset root; exit 1 listing every problem")
    check.add_argument("--root", type=Path, required=True)
    check.set_defaults(func=_check)

    download = sub.add_parser("download", help="download ISP-AD from Zenodo (md5-verified, resumable)")
    download.add_argument("--root", type=Path, required=True)
    download.add_argument("--record", default="14911043", help="Zenodo record id (default: ISP-AD)")
    download.add_argument("--api-url", default="https://zenodo.org/api/records", help=argparse.SUPPRESS)
    download.set_defaults(func=_download)
