"""Whole output tables stay bit-identical to the golden outputs of ``tests/experiments/golden``.

The golden tables were written by the code before the one-state-walk redesign (every experiment
walking the model states on its own); what later changes added on purpose is taken out first
(``without_later_additions``). Every cell is compared exactly (floats by their bits), rows
in a canonical order, for jobs that together enable every experiment, mode and target policy.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from .golden import JOBS, TABLES, load_platform, platform, row_keys, run_job, without_later_additions

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


@pytest.mark.parametrize("job", JOBS, ids=[job.stem for job in JOBS])
def test_tables_equal_the_golden_outputs(job, tmp_path) -> None:
    made_on, here = load_platform(), platform()
    if made_on != here:
        pytest.skip(f"golden tables were made on {made_on}, this is {here}: float kernels differ")
    tables = {name: without_later_additions(name, table) for name, table in run_job(job, tmp_path / "out").items()}
    expected = {path.stem: pq.read_table(path) for path in sorted((TABLES / job.stem).glob("*.parquet"))}
    assert sorted(tables) == sorted(expected)
    for name, table in tables.items():
        golden = expected[name]
        assert table.schema.equals(golden.schema), f"{job.stem}/{name}: schema changed"
        assert table.num_rows == golden.num_rows, f"{job.stem}/{name}: {table.num_rows} rows, golden {golden.num_rows}"
        new, old = row_keys(table), row_keys(golden)
        if new != old:
            differing = [i for i, (a, b) in enumerate(zip(new, old)) if a != b]
            columns = [c for k, c in enumerate(table.column_names) if new[differing[0]][k] != old[differing[0]][k]]
            pytest.fail(f"{job.stem}/{name}: {len(differing)} of {len(new)} rows differ; first at row "
                        f"{differing[0]} in columns {columns}")
