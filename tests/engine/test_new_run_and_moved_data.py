"""Issue 16 items 2 and 8: what a resume and a new run may do to an output.

Item 2: ``--new-run`` with a typo (a dataset root that does not exist, a missing weights file, a
boundary that matches nothing) used to delete the old results first and then fail: now every
check runs first and a failing new run leaves the output byte for byte as it was; a new run
that passes discards everything of the old one, figures, report and aggregates included.

Item 8: a dataset is identified by its canonical image list (ids, labels, boxes, file sizes,
recorded per shard in the manifest), not by where it is mounted: a resume after only
``dataset.root`` changed resumes; a changed image list is refused, naming the shard and image.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from benchmark.cli.main import main
from benchmark.data.fixtures import imagenet_name, write_fixtures
from benchmark.results import OutputStore, committed_shards

from .jobs import TINY, sorted_rows, write_job

# TINY, cut to what these tests need: one method, one seed, one of each metric setting
SMALL = {
    **TINY,
    "name": "small",
    "randomization": {"seeds": [0], "max_boundaries": 1},
    "methods": [{"name": "gradient"}],
    "metrics": {"similarities": ["ssim"], "normalizations": ["second_moment"], "absolute": [False]},
    "occlusion": {"kernels": [8], "steps": 2},
}


def run(job: Path, out: Path, *overrides: str, new_run: bool = False) -> int:
    args = ["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]
    for item in overrides:
        args += ["--set", item]
    return main(args + (["--new-run"] if new_run else []))


def snapshot(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished TINY run, with the files `benchmark aggregate`, `plot` and `report` add."""
    folder = tmp_path_factory.mktemp("finished")
    job, out = write_job(folder, SMALL), folder / "out"
    assert run(job, out) == 0
    (out / "figures").mkdir()
    (out / "figures" / "paper-fig1_occlusion_k8_synthetic.png").write_bytes(b"\x89PNG old figure")
    (out / "report.html").write_text("<html>old report</html>")
    (out / "aggregates").mkdir()
    (out / "aggregates" / "rankings.parquet").write_bytes(b"old aggregate")
    return job, out


@pytest.mark.parametrize(
    "typo",
    [
        ["dataset.kind=imagenet", "dataset.root=/no/such/dir"],
        ["model.weights=/no/such/weights.pt"],
        ["randomization.boundary=no_such_layer"],
        ["occlusion.kernels=[0]"],
    ],
    ids=["missing-root", "missing-weights", "boundary-matches-nothing", "zero-tile"],
)
def test_a_new_run_that_fails_its_checks_loses_nothing(finished, tmp_path, capsys, typo) -> None:
    job, original = finished
    out = tmp_path / "out"
    shutil.copytree(original, out)
    before = snapshot(out)
    assert run(job, out, "randomization.seeds=[7]", *typo, new_run=True) == 2
    assert "error:" in capsys.readouterr().err
    assert snapshot(out) == before  # not one file gone or changed
    assert run(job, out) == 0 and "0 to run" in capsys.readouterr().err  # the old run is still whole


def test_a_new_run_that_passes_discards_everything_of_the_old_one(finished, tmp_path, capsys) -> None:
    job, original = finished
    out = tmp_path / "out"
    shutil.copytree(original, out)
    assert run(job, out, "randomization.seeds=[7]", new_run=True) == 0
    assert not (out / "figures").exists() and not (out / "report.html").exists()
    assert not (out / "aggregates").exists()
    assert set(sorted_rows(out, "randomization").seed) == {7}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["randomization"]["seeds"] == [7] and manifest["attempts"] == 1


# -- item 8 ------------------------------------------------------------------------------------
IMAGENET = ["dataset.kind=imagenet", "dataset.limit=4", "dataset.shard_size=2"]


@pytest.fixture(scope="module")
def imagenet_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fixtures")
    write_fixtures(root)
    return root / "imagenet_flat"


@pytest.fixture
def interrupted(imagenet_copy, tmp_path) -> tuple[Path, Path, Path, dict]:
    """A run over a copy of the flat ImageNet fixture whose shard 1 did not commit, and the
    tables of the whole run."""
    data = tmp_path / "mnt-a" / "imagenet"
    shutil.copytree(imagenet_copy, data)
    job, out = write_job(tmp_path, {**SMALL, "name": "moved"}), tmp_path / "out"
    assert run(job, out, *IMAGENET, f"dataset.root={data}") == 0
    whole = {table: sorted_rows(out, table) for table in ("randomization", "occlusion")}
    (out / "_commits" / "shard-1.json").unlink()  # as if the run was stopped before shard 1 committed
    return job, out, data, whole


def test_a_moved_dataset_resumes(interrupted, tmp_path, capsys) -> None:
    job, out, data, before = interrupted
    capsys.readouterr()
    moved = tmp_path / "mnt-b" / "imagenet"
    moved.parent.mkdir()
    shutil.move(data, moved)
    assert run(job, out, *IMAGENET, f"dataset.root={moved}") == 0
    err = capsys.readouterr().err
    assert "1 already committed, 1 to run" in err
    assert f"dataset.root moved: {data} -> {moved}" in err and "same 4 images" in err
    for table, frame in before.items():  # the resumed tables equal the uninterrupted run's
        after = sorted_rows(out, table)
        assert after.drop(columns=["curve", "logit_curve", "layers"], errors="ignore").equals(
            frame.drop(columns=["curve", "logit_curve", "layers"], errors="ignore"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["dataset"]["root"] == str(moved)
    assert manifest["dataset_fingerprint"]["images"] == 4
    assert all(len(shard["digest"]) == 16 for shard in manifest["shard_plan"]["shards"])


def jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("change", ["replaced", "removed"])
def test_a_changed_image_list_is_refused(interrupted, tmp_path, capsys, change) -> None:
    job, out, data, _ = interrupted
    changed = tmp_path / "mnt-c" / "imagenet"
    shutil.copytree(data, changed)
    victim = changed / "val" / f"{imagenet_name(2)}.JPEG"  # canonical position 1: shard 0, committed
    if change == "replaced":
        victim.write_bytes(jpeg((200, 10, 10)))
    else:
        victim.unlink()
    before = snapshot(out)
    capsys.readouterr()
    assert run(job, out, *IMAGENET, f"dataset.root={changed}") == 2
    err = capsys.readouterr().err
    assert "image list" in err and "shard 0" in err and imagenet_name(2) in err
    assert "--new-run" in err
    assert snapshot(out) == before
    assert sorted(committed_shards(OutputStore(str(out)))) == [0]


def test_the_hash_ignores_where_the_data_lives() -> None:
    from benchmark.config import spec_hash, validate_job

    spec = {**TINY, "dataset": {**TINY["dataset"], "kind": "imagenet", "root": "/a"}}
    moved = {**TINY, "dataset": {**TINY["dataset"], "kind": "imagenet", "root": "/b", "images_dir": "/b/val"}}
    other = {**TINY, "dataset": {**TINY["dataset"], "kind": "imagenet", "root": "/a", "split": "train"}}
    assert spec_hash(validate_job(spec)) == spec_hash(validate_job(moved)) != spec_hash(validate_job(other))


def test_an_output_of_an_earlier_version_resumes_in_place_but_not_moved() -> None:
    """Manifests written before this change hashed the dataset's location and recorded no image
    lists: they resume where they are (their commit markers still count) and refuse a move."""
    from benchmark.config import validate_job
    from benchmark.engine.manifest import ResumeRefused, check_resume, check_same_images, new_manifest
    from benchmark.results.reader import run_spec_hashes

    raw = {**SMALL, "dataset": {**SMALL["dataset"], "kind": "imagenet", "root": "/data/a"}}
    spec = validate_job(raw)
    legacy_plan = {"shard_size": 2, "images": 2, "shards": [{"shard": 0, "start": 0, "stop": 2, "first": "a", "last": "b"}]}
    previous = new_manifest(spec, shard_plan=legacy_plan)
    previous["spec_hash"] = "0123456789abcdef"  # what the old hash (root included) gave
    check_resume(previous, spec)
    resumed = new_manifest(spec, previous, shard_plan=legacy_plan)
    assert run_spec_hashes(resumed) == {resumed["spec_hash"], "0123456789abcdef"}
    assert check_same_images(previous, spec, legacy_plan) == []
    moved = validate_job({**raw, "dataset": {**raw["dataset"], "root": "/data/b"}})
    with pytest.raises(ResumeRefused, match="did not record its image list.*dataset.root moved: /data/a -> /data/b"):
        check_same_images(previous, moved, legacy_plan)
    with pytest.raises(ResumeRefused, match="randomization.seeds"):
        check_resume(previous, validate_job({**raw, "randomization": {"seeds": [3], "max_boundaries": 1}}))
