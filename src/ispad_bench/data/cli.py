"""``ispad-bench data synth | check | download | textures | build | defects``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ispad_bench.cli import non_negative_int, positive_float, positive_int
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


def _build(args: argparse.Namespace) -> int:
    from ispad_bench.data.build import BuildParams, build, summary
    from ispad_bench.errors import InputError

    try:
        given = {k: getattr(args, k) for k in ("seed", "window", "stride", "reduced", "test_share", "roi_min", "label_radius",
                                               "area_px", "stream_patches", "unaugmented", "small", "workers")}
        params = BuildParams(**{k: v for k, v in given.items() if v is not None},  # None: BuildParams' default
                             defect_groups=tuple(sorted(args.defect_groups.items())) if args.defect_groups else None)
        results = build(args.source, args.out, modality=args.modality, params=params, verbose=not args.quiet)
    except InputError as err:  # bad input: one line naming the file and the problem
        print(f"ispad-bench data build: error: {err}", file=sys.stderr)
        return 2
    summary(results, args.out)
    return 0


def _defects(args: argparse.Namespace) -> int:
    from ispad_bench.data.build.defects import main_defects

    return main_defects(args.images, args.out, seed=args.seed, strength=args.defect_strength, share=args.share)


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

    # defaults live in data/build/params.py (BuildParams); None here means "its default"
    build = sub.add_parser("build", help="turn full acquisitions of your own line into an ISP-AD dataset (§3.2; docs/data.md)")
    build.add_argument("--source", type=Path, required=True,
                       help="folder with <modality>/good/, defective/<class>/, masks/, defects.csv, roi/ (docs/data.md)")
    build.add_argument("--out", type=Path, required=True, help="dataset root to write (<out>/<modality>/...)")
    build.add_argument("--modality", default=None, help="only this modality; required when --source is a modality folder")
    build.add_argument("--seed", type=int, default=None, help="every random choice (split, reduced, stream; default 0)")
    build.add_argument("--defect-groups", type=parse_defect_groups, default=None,
                       help="defect class -> area|points, e.g. '{blowhole: points}' or a YAML file (default: the "
                            "built-in DEFECT_GROUPS, then the size rule --area-px)")
    build.add_argument("--stream-patches", type=non_negative_int, default=None,
                       help="supervised stream size, half with synthetic defects (default 20,000; paper ~200,000; 0: none)")
    build.add_argument("--unaugmented", type=non_negative_int, default=None,
                       help="also write this many un-augmented fault-free PNGs (§3.2.4)")
    build.add_argument("--window", type=positive_int, default=None, help="window size (default 256, §3.2.2)")
    build.add_argument("--stride", type=positive_int, default=None, help="sliding-window stride (default 160, §3.2)")
    build.add_argument("--reduced", type=positive_int, default=None, help="train_reduced size (default 500, §3.2.1)")
    build.add_argument("--test-share", type=positive_float, default=None,
                       help="share of acquisitions per class in the test split (default 0.5)")
    build.add_argument("--roi-min", type=positive_float, default=None,
                       help="share of a window inside the ROI to keep it (default 0.5)")
    build.add_argument("--label-radius", type=positive_int, default=None,
                       help="a weak label (defects.csv x, y) marks a disc of this radius as defect (default 16)")
    build.add_argument("--area-px", type=positive_int, default=None,
                       help="size rule: a defect of at least this many pixels is 'area', else 'points' (default 1024)")
    build.add_argument("--small", choices=("pad", "skip"), default=None,
                       help="images smaller than a window: pad by reflection (default) or skip")
    build.add_argument("--workers", type=positive_int, default=None, help="writer threads (output does not depend on it)")
    build.add_argument("--quiet", action="store_true", help="no progress bars")
    build.set_defaults(func=_build)

    defects = sub.add_parser("defects", help="random-walk synthetic defects on a folder of your own patches (§3.2, [25])")
    defects.add_argument("--images", type=Path, required=True, help="folder of fault-free patches (PNG, any size)")
    defects.add_argument("--out", type=Path, required=True, help="writes images/<name>.png and masks/<name>_mask.png")
    defects.add_argument("--seed", type=int, default=0)
    defects.add_argument("--share", type=positive_float, default=1.0,
                         help="share of the patches that get a defect (default 1: all; the stream uses 0.5)")
    defects.add_argument("--defect-strength", type=positive_float, default=1.0, help="visibility (1: ISP-AD-like faint)")
    defects.set_defaults(func=_defects)
