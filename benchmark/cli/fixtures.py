"""``benchmark fixtures DIR``: write tiny ImageNet / COCO / VOC datasets in their real formats, bad cases included."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "fixtures",
        help="write tiny datasets in the real ImageNet/COCO/VOC formats, some files deliberately corrupt",
        description="Writes imagenet/ (class folders), imagenet_flat/ (Kaggle CSV and plain labels), coco/, voc/ "
        "and malformed/ under DIR, and lists every file with what it is. The test suite and the smoke job use them.",
    )
    parser.add_argument("dir", help="folder to write into (created if needed; existing fixture files are overwritten)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    parser.add_argument(
        "--imagenet-val",
        type=int,
        metavar="N",
        help="instead: N ImageNet-size JPEGs (375-500 px, ILSVRC2012_val_* names, class folders) under DIR/imagenet_val, "
        "a stand-in for the validation set in throughput runs (jobs/imagenet_first1000.yaml)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.fixtures import write_fixtures

    root = Path(args.dir)
    if args.imagenet_val is not None:
        from ..data.fixtures import write_imagenet_val

        folder = write_imagenet_val(root, args.imagenet_val)
        print(f"wrote {args.imagenet_val} ImageNet-size images under {folder}: --set dataset.root={folder}")
        return 0
    files = write_fixtures(root)
    if not args.quiet:
        width = max(len(str(f.path.relative_to(root))) for f in files)
        for item in files:
            print(f"{str(item.path.relative_to(root)):<{width}}  {item.note}")
    written = sum(1 for f in files if f.path.exists())
    print(f"wrote {written} files under {root} ({len(files) - written} referenced but missing on purpose); see {root / 'README.txt'}")
    return 0
