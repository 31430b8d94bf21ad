"""``ispad-bench data synth | check | download | textures``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ispad_bench.cli import positive_float, positive_int
from ispad_bench.data.download import MAX_EXTRACT_GIB, MAX_RATIO


def _synth(args: argparse.Namespace) -> int:
    from ispad_bench.data.synth import generate

    try:
        generate(
            args.root, patches=args.patches, seed=args.seed, modalities=args.modalities,
            stream_patches=args.stream_patches, real_defects=args.real_defects,
            defect_strength=args.defect_strength, overwrite=args.overwrite, workers=args.workers,
        )
    except (FileExistsError, ValueError) as err:  # existing data, bad sizes: one line, no traceback
        print(f"ispad-bench data synth: error: {err}", file=sys.stderr)
        return 2
    return 0


def parse_defect_groups(text: str) -> dict[str, str]:
    """``'{blowhole: points, crack: area}'`` (YAML/JSON, as for ``data.init_args.defect_groups``) or a YAML file."""
    import yaml

    path = Path(text)
    try:
        value = yaml.safe_load(path.read_text() if path.is_file() else text)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"not a YAML mapping: {text!r} ({err})") from err
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise argparse.ArgumentTypeError(f"expected a mapping folder: group, e.g. '{{blowhole: points}}', got {text!r}")
    return value


def _check(args: argparse.Namespace) -> int:
    from ispad_bench.data.check import main_check

    return main_check(args.root, defect_groups=args.defect_groups, verbose=args.verbose, input_size=args.input_size)


def _download(args: argparse.Namespace) -> int:
    from ispad_bench.data.download import main_download

    return main_download(args.root, record=args.record, api_url=args.api_url, max_gib=args.max_extract_gib,
                         max_ratio=args.max_ratio)


def _textures(args: argparse.Namespace) -> int:
    from ispad_bench.data.dtd import main_textures

    return main_textures(args.root, **({"url": args.url} if args.url else {}))


def add_parser(subparsers) -> None:
    data = subparsers.add_parser("data", help="generate, check or download ISP-AD data")
    sub = data.add_subparsers(dest="data_command", required=True)

    synth = sub.add_parser("synth", help="write a generated ISP-AD-like dataset (all parts, same layout)")
    synth.add_argument("--root", type=Path, required=True)
    synth.add_argument("--patches", type=int, default=200, help="test patches per modality; train/stream sizes derive from it (docs/synth.md)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--modalities", nargs="+", default=None, help="default: all three")
    synth.add_argument("--stream-patches", type=int, default=None, help="supervised stream size (default 4 x patches)")
    synth.add_argument("--real-defects", type=int, default=None, help="real-defect patches per group (default: Table 7 scaled, >= 4)")
    synth.add_argument("--defect-strength", type=float, default=1.0,
                       help="visibility of every defect: 1 = ISP-AD-like faint (default); >1 stronger (docs/synth.md)")
    synth.add_argument("--overwrite", action="store_true", help="replace modality folders that already exist")
    synth.add_argument("--workers", type=int, default=None, help="render threads (default: up to 2)")
    synth.set_defaults(func=_synth)

    check = sub.add_parser("check", help="validate a dataset root: errors (exit 1) and warnings, counts vs Table 7")
    check.add_argument("--root", type=Path, required=True)
    check.add_argument("--defect-groups", type=parse_defect_groups, default=None,
                       help="test folder -> group mapping, as data.init_args.defect_groups: '{blowhole: points, "
                            "crack: area}' or a YAML file (default: the built-in DEFECT_GROUPS)")
    check.add_argument("--verbose", "-v", action="store_true", help="list every finding, not a few per kind")
    check.add_argument("--input-size", type=positive_int, default=None,
                       help="also warn about defect masks that vanish at this model input size (e.g. 64)")
    check.set_defaults(func=_check)

    download = sub.add_parser("download", help="download ISP-AD from Zenodo (checksum-verified, resumable)")
    download.add_argument("--root", type=Path, required=True)
    download.add_argument("--record", default="14911043", help="Zenodo record id (default: ISP-AD)")
    download.add_argument("--api-url", default="https://zenodo.org/api/records", help=argparse.SUPPRESS)
    download.add_argument("--max-extract-gib", type=positive_float, default=MAX_EXTRACT_GIB,
                          help=f"refuse an archive that extracts to more (default {MAX_EXTRACT_GIB:g} GiB)")
    download.add_argument("--max-ratio", type=positive_float, default=MAX_RATIO,
                          help=f"refuse an archive that extracts to more than this x its size (default {MAX_RATIO:g})")
    download.set_defaults(func=_download)

    textures = sub.add_parser("textures", help="download DTD textures for GLASS (SHA-256-verified, resumable)")
    textures.add_argument("--root", type=Path, required=True, help="target folder; GLASS texture_dir (configs: datasets/dtd)")
    textures.add_argument("--url", default=None, help=argparse.SUPPRESS)
    textures.set_defaults(func=_textures)
