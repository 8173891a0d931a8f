"""Fixtures of the engine tests that several modules share."""

from __future__ import annotations

import pandas as pd
import pytest

from .jobs import write_job
from .ray_support import RAY_JOB, CountingMotoServer, comparable


@pytest.fixture(scope="session")
def ray_reference(tmp_path_factory) -> dict[str, pd.DataFrame]:
    """The tables of an uninterrupted inline run of RAY_JOB: what every Ray run must reproduce."""
    from benchmark.cli.main import main

    folder = tmp_path_factory.mktemp("reference")
    assert main(["run", str(write_job(folder, RAY_JOB)), "--executor", "inline", "--out", str(folder / "out"),
                 "--no-progress"]) == 0
    return comparable(folder / "out")


@pytest.fixture(scope="session")
def aws_credentials():
    """Dummy credentials, in this process and in every Ray node the tests start after it (a real
    cluster's nodes have their own: instance profile, IRSA, environment)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                            ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def s3_server(aws_credentials) -> "CountingMotoServer":
    """A real S3-compatible server (moto's server mode) on 127.0.0.1 that logs every request."""
    server = CountingMotoServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(s3_server) -> str:
    """``host:port`` of the S3-compatible server."""
    host, port = s3_server.get_host_and_port()
    return f"{host}:{port}"

