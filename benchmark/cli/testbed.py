"""``benchmark testbed``: train (once per machine) and print the trained-network test bed's weights file."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "testbed",
        help="train (once per machine, cached) the tiny-resnet on scikit-learn's digits and print its weights file",
        description="The trained-network test bed of jobs/digits.yaml (model.weights: testbed): a small ResNet "
        "trained deterministically on the digits' training split (about 10 CPU-seconds). Cached by the hash of "
        "its code, data and recipe in $BENCHMARK_CACHE/testbed (default ~/.cache/benchmark/testbed); prints "
        "the state-dict file, which model.weights also accepts as a path (e.g. on a cluster's shared storage).",
    )
    parser.add_argument("--retrain", action="store_true", help="train again even if this machine has it cached")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ..testbed import testbed

    bed = testbed(retrain=args.retrain, log=lambda line: print(line, file=sys.stderr))
    info = bed.info
    print(
        f"validation accuracy {info['val_accuracy']:.4f} (train {info['train_accuracy']:.4f}), trained in "
        f"{info['train_seconds']:.1f} s with torch {info['torch']}, key {info['key']}",
        file=sys.stderr,
    )
    print(bed.path)
    return 0
