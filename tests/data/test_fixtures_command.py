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
