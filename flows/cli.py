"""The ``pmodel`` command line.

Exit codes: 0 success, 1 the data (or a run) failed, 2 a usage error.
Heavy imports (Great Expectations, Pillow, the land mask) happen inside the
subcommands, so ``pmodel --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _cmd_data_build(args: argparse.Namespace) -> int:
    from pmodel.datasets.build import BuildConfig, build_all

    config = BuildConfig(seed=args.seed, n_train=args.n_train, n_heldout=args.n_heldout)
    out = Path(args.out) if args.out else None
    manifest_path = build_all(config, out_dir=out, progress=True, log=print)
    print(f"manifest: {manifest_path}")
    return EXIT_OK


def _cmd_validate(args: argparse.Namespace) -> int:
    from tasks.validation import validate

    path = Path(args.path)
    if not path.exists():
        print(f"pmodel validate: {path} does not exist", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = validate(args.kind, path)
    except ValueError as exc:  # an unusable KIND or schema file: a usage error
        print(f"pmodel validate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(report.summary())
    return EXIT_OK if report.success else EXIT_FAILED


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from pmodel.datasets.build import BuildConfig

    parser = argparse.ArgumentParser(
        prog="pmodel", description="Fit, sample and score generative models (Chapter 1 of "
        "Generative Deep Learning).")
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="build the built-in datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    build = data_sub.add_parser(
        "build", help="write fashion, pixels and land (train + held-out) and a manifest")
    defaults = BuildConfig()
    build.add_argument("--out", help="output folder (default: the project's data/)")
    build.add_argument("--seed", type=_non_negative, default=defaults.seed,
                       help=f"random seed (default {defaults.seed})")
    build.add_argument("--n-train", type=_positive, default=defaults.n_train,
                       help=f"training rows/images/points per dataset (default {defaults.n_train}, "
                       "the chapter's)")
    build.add_argument("--n-heldout", type=_positive, default=defaults.n_heldout,
                       help=f"held-out rows/images/points per dataset (default {defaults.n_heldout})")
    build.set_defaults(func=_cmd_data_build)

    val = sub.add_parser(
        "validate", help="validate a file or folder; exit 0 when valid, 1 when not",
        description="KIND is fashion, pixels, land, categorical (schema inferred from the "
        "data), images (a folder of same-sized grayscale PNGs of any size), or the path of a "
        "schema YAML for a categorical CSV.")
    val.add_argument("kind", metavar="KIND")
    val.add_argument("path", metavar="PATH")
    val.set_defaults(func=_cmd_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
