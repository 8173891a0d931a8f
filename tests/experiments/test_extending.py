"""The worked example of docs/extending.md, run as it stands there: one module registers a new
experiment with its spec section and table, and a job enabling the section writes that table."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli.main import main
from benchmark.config import SpecError, spec_hash, validate_job
from benchmark.experiments import EXPERIMENTS, unregister_experiment
from benchmark.results import OutputStore, read_table
from benchmark.results.maps import decode_map
from benchmark.results.schema import forget_table

from ..engine.jobs import TINY, write_job

DOC = Path(__file__).parents[2] / "docs" / "extending.md"
JOB = {
    **TINY,
    "dataset": {**TINY["dataset"], "synthetic_images": 3, "shard_size": 2},
    "randomization": {"seeds": [0, 1], "max_boundaries": 1},
    "methods": [{"name": "gradient"}, {"name": "noise"}],
    "occlusion": {"enabled": False},
    "runtime": {**TINY["runtime"], "save_maps": 3},
}


@pytest.fixture
def example(tmp_path):
    """The documented module, written to a file and imported (which registers the experiment)."""
    code = re.search(r"<!-- example: concentration.py -->\n```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    path = tmp_path / "concentration_example.py"
    path.write_text(code)
    spec = importlib.util.spec_from_file_location("concentration_example", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    unregister_experiment("concentration")
    forget_table("concentration")
    sys.modules.pop(spec.name, None)


def test_the_section_is_validated_from_the_registry(example) -> None:
    assert EXPERIMENTS["concentration"] is example.Concentration
    spec = validate_job({**JOB, "concentration": {"enabled": True, "fraction": 0.25}})
    assert spec.section("concentration").fraction == 0.25
    assert validate_job(JOB).section("concentration").enabled is False  # absent: the defaults, off
    assert spec_hash(validate_job(JOB)) != spec_hash(spec)
    with pytest.raises(SpecError, match="concentration.fractoin: unknown key; allowed keys: enabled, fraction"):
        validate_job({**JOB, "concentration": {"fractoin": 0.2}})
    with pytest.raises(SpecError, match="concentration.fraction: Input should be less than or equal to 1"):
        validate_job({**JOB, "concentration": {"fraction": 2}})


def test_a_registered_experiment_writes_its_table(example, tmp_path) -> None:
    job = write_job(tmp_path, {**JOB, "concentration": {"enabled": True, "fraction": 0.25}})
    out = tmp_path / "out"
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    store = OutputStore(str(out))
    rows = read_table(store, "concentration").to_pandas()
    # every image x method x state (trained + 2 seeds x 2 stages), shard stamped by the writer
    assert len(rows) == 3 * 2 * 5 and sorted(set(rows.shard)) == [0, 1]
    assert (rows.model == "resnet34").all() and rows[rows.stage == 0].seed.isna().all()
    assert rows.value.between(0.25, 1.0).all()  # the top quarter holds at least a quarter of the mass
    # the same share computed from the saved maps (the maps the experiment shared with the others)
    maps = read_table(store, "maps").to_pandas()
    maps = maps[maps.kind == "map"]
    for row in rows.itertuples():
        seed = maps.seed.isna() if np.isnan(row.seed) else maps.seed == row.seed
        saved = maps[(maps.image_id == row.image_id) & (maps.method == row.method) & (maps.stage == row.stage) & seed]
        (array,) = [np.abs(decode_map(v, s, c)).ravel() for v, s, c in zip(saved["values"], saved["shape"], saved.scale)]
        top = np.sort(array)[::-1][: round(0.25 * array.size)]
        assert row.value == pytest.approx(top.sum() / array.sum(), abs=2e-3)
    # a job without the section writes no such table
    plain = write_job(tmp_path, JOB, name="plain.yaml")
    assert main(["run", str(plain), "--executor", "inline", "--out", str(tmp_path / "plain"), "--no-progress"]) == 0
    assert read_table(OutputStore(str(tmp_path / "plain")), "concentration").num_rows == 0
