"""The fixture datasets, written once per test session by the same code as ``benchmark fixtures``."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.data.fixtures import write_fixtures


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fixtures")
    write_fixtures(root)
    return root
