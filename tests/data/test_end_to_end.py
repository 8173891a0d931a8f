"""A job over each fixture format runs end to end; bad images are error rows; malformed files stop it before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.config import load_job
from benchmark.data import build_dataset
from benchmark.results import OutputStore, read_table

from ._helpers import run_args, tiny_job

CASES = {
    # name: (dataset overrides relative to the fixture root, unreadable image ids)
    "imagenet-folders": ({"kind": "imagenet", "root": "imagenet"}, {"ILSVRC2012_val_00000005", "ILSVRC2012_val_00000007"}),
    "imagenet-kaggle": (
        {"kind": "imagenet", "root": "imagenet_flat"},
        {"ILSVRC2012_val_00000005", "ILSVRC2012_val_00000007", "ILSVRC2012_val_00000009"},
    ),
    "imagenet-plain": (
        {"kind": "imagenet", "root": "imagenet_flat", "labels_file": "val_labels.txt"},
        {"ILSVRC2012_val_00000005", "ILSVRC2012_val_00000007", "ILSVRC2012_val_00000009"},
    ),
    "coco": ({"kind": "coco", "root": "coco"}, {"776", "785"}),
    "voc": ({"kind": "voc", "root": "voc"}, {"2008_000009", "2008_000015"}),
}


def dataset_overrides(fixture_root: Path, dataset: dict) -> dict[str, object]:
    return {f"dataset__{k}": (fixture_root / v if k == "root" else v) for k, v in dataset.items()}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_job_over_fixture_format(case: str, fixture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    dataset, unreadable = CASES[case]
    job, out = tiny_job(tmp_path), tmp_path / "out"
    overrides = dataset_overrides(fixture_root, dataset)
    assert main(run_args(job, out, **overrides)) == 0, capsys.readouterr().err
    summary = capsys.readouterr().out  # the run succeeds and says which images it left out, and why
    assert f"{len(unreadable)} images could not be read" in summary and all(i in summary for i in unreadable)
    assert "corrupt or truncated" in summary or "not a readable image" in summary or "missing" in summary

    spec = load_job(job, [f"{k.replace('__', '.')}={v}" for k, v in overrides.items()])
    order = [r.image_id for r in build_dataset(spec).index()]
    store = OutputStore(str(out))
    errors = read_table(store, "errors").to_pylist()
    assert {e["image_id"] for e in errors} == unreadable and all(e["where"] == "load" for e in errors)
    assert all(e["source"] in e["reason"] for e in errors)
    evaluated = set(read_table(store, "occlusion").column("image_id").to_pylist())
    assert evaluated == set(order) - unreadable
    shards = read_table(store, "shards").to_pylist()
    assert sum(s["images"] for s in shards) == len(order) - len(unreadable)

    # the manifest's shard plan: contiguous ranges of the canonical order, 4 images each
    plan = json.loads((out / "manifest.json").read_text())["shard_plan"]
    assert [(s["start"], s["stop"]) for s in plan["shards"]] == [(i, min(i + 4, len(order))) for i in range(0, len(order), 4)]
    assert [(s["first"], s["last"]) for s in plan["shards"]] == [(order[s["start"]], order[s["stop"] - 1]) for s in plan["shards"]]
    # each error row sits in the shard that holds the image
    for error in errors:
        assert plan["shards"][error["shard"]]["start"] <= order.index(error["image_id"]) < plan["shards"][error["shard"]]["stop"]


@pytest.mark.slow
def test_an_offset_selects_later_shards_with_the_same_ids(fixture_root: Path, tmp_path: Path) -> None:
    """Shard ids belong to the canonical order: images 4.. are shard 1 whatever the selection."""
    job = tiny_job(tmp_path)
    overrides = dataset_overrides(fixture_root, {"kind": "coco", "root": "coco", "offset": 4})
    assert main(run_args(job, tmp_path / "out", **overrides)) == 0
    plan = json.loads((tmp_path / "out" / "manifest.json").read_text())["shard_plan"]
    assert [(s["shard"], s["start"], s["first"]) for s in plan["shards"]] == [(1, 4, "776")]


@pytest.mark.parametrize(
    ("case", "kind", "fragment"),
    [
        ("coco_bad_json", "coco", "instances_val2017.json:12:"),  # the comma is missing at the end of line 11
        ("coco_unknown_category", "coco", "instances_val2017.json: annotations[1].category_id"),
        ("voc_unknown_class", "voc", "2008_000003.xml: object 2"),
        ("imagenet_bad_csv", "imagenet", "LOC_val_solution.csv:3:"),
    ],
)
def test_malformed_files_stop_the_run_before_any_work(
    case: str, kind: str, fragment: str, fixture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    code = main(run_args(tiny_job(tmp_path), out, dataset__kind=kind, dataset__root=fixture_root / "malformed" / case))
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and fragment in err and "Traceback" not in err
    assert not (out / "manifest.json").exists() and not any(out.rglob("*.parquet"))
