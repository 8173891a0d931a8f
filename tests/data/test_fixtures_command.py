"""``benchmark fixtures DIR``: what it writes, that pycocotools and the readers accept it, determinism."""

from __future__ import annotations

import contextlib
import hashlib
import io
from pathlib import Path

import pytest
from PIL import Image

from benchmark.cli.main import main
from benchmark.data.fixtures import write_fixtures


def digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_command_writes_and_lists_the_fixtures(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["fixtures", str(tmp_path / "fx")]) == 0
    out = capsys.readouterr().out
    root = tmp_path / "fx"
    for expected in ("coco/annotations/instances_val2017.json", "voc/VOC2012/ImageSets/Main/val.txt",
                     "imagenet_flat/LOC_val_solution.csv", "truncated JPEG (error row)", "CMYK JPEG",
                     "PNG file behind a JPEG name", "grayscale JPEG", "named by the annotations but missing",
                     "no annotations", "malformed/coco_bad_json"):
        assert expected in out
    listed = [line.split()[0] for line in out.splitlines()[:-1]]
    written = {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}  # the named pipe too
    assert written <= set(listed) and len(set(listed) - written) == 3  # the three missing-on-purpose images
    assert out.splitlines()[-1].startswith(f"wrote {len(written)} files under {root}")


def test_fixture_files_are_real_formats(fixture_root: Path) -> None:
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(fixture_root / "coco" / "annotations" / "instances_val2017.json"))
    assert len(coco.getCatIds()) == 80 and len(coco.getImgIds()) == 8
    assert coco.getAnnIds(imgIds=[802]) == []  # the image without annotations
    assert Image.open(fixture_root / "coco" / "val2017" / "000000000139.jpg").format == "JPEG"
    assert Image.open(fixture_root / "voc" / "VOC2012" / "JPEGImages" / "2008_000003.jpg").mode == "CMYK"
    sizes = {Image.open(p).size for p in (fixture_root / "voc" / "VOC2012" / "JPEGImages").glob("*.jpg") if "000009" not in p.name}
    assert all(40 <= s <= 80 for size in sizes for s in size)


def test_fixtures_are_deterministic(tmp_path: Path, fixture_root: Path) -> None:
    write_fixtures(tmp_path)
    assert {k: v for k, v in digests(tmp_path).items() if k != "README.txt"} == {
        k: v for k, v in digests(fixture_root).items() if k != "README.txt"
    }


def test_imagenet_size_stand_in_images_are_read_like_the_validation_set(tmp_path: Path, capsys) -> None:
    """``--imagenet-val N``: N JPEGs of ImageNet's sizes named and laid out like the validation set; the
    ImageNet reader takes them in name order with the class of their folder; the same files every time."""
    from benchmark.config import validate_job
    from benchmark.data import build_dataset, select_records
    from benchmark.data.imagenet import read_class_list

    assert main(["fixtures", str(tmp_path / "a"), "--imagenet-val", "5"]) == 0
    root = tmp_path / "a" / "imagenet_val"
    assert f"--set dataset.root={root}" in capsys.readouterr().out
    files = sorted(root.rglob("*.JPEG"))
    assert [f.name for f in files] == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 6)]
    wnids = read_class_list()
    assert [f.parent.name for f in files] == wnids[:5]
    assert {Image.open(f).size for f in files} <= {(500, 375), (375, 500), (500, 333), (500, 400)}
    spec = validate_job({"name": "iv", "model": {"name": "resnet50", "weights": "random"},
                         "dataset": {"kind": "imagenet", "root": str(root), "limit": 5},
                         "methods": [{"name": "gradient"}]})
    records = select_records(spec, build_dataset(spec))
    assert [r.label for r in records] == [0, 1, 2, 3, 4]
    assert main(["fixtures", str(tmp_path / "b"), "--imagenet-val", "5"]) == 0
    assert digests(root) == digests(tmp_path / "b" / "imagenet_val")
    with pytest.raises(ValueError, match="positive count"):
        main(["fixtures", str(tmp_path / "c"), "--imagenet-val", "0"])
