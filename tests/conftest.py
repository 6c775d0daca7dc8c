"""Fixtures shared by every test layer.

- Every test starts with no STREAMWRECK_* or AWS_* variables but dummy credentials and a region (autouse).
- Integration fixtures start real servers once per session, on free 127.0.0.1 ports: memcached (Debian package),
  moto in server mode (SNS, SQS, DynamoDB), kinesis-local (npm). ``aws_env`` points boto3 at them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamwreck.local import processes
from streamwreck.local.processes import Service

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("STREAMWRECK_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def memcached(server_logs: Path) -> Iterator[Service]:
    service = processes.start_memcached(server_logs)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def moto(server_logs: Path) -> Iterator[Service]:
    service = processes.start_moto(server_logs)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def kinesis_local(server_logs: Path) -> Iterator[Service]:
    service = processes.start_kinesis_local(server_logs, region=REGION)
    yield service
    service.stop()


@pytest.fixture
def moto_env(moto: Service, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """boto3 clients made in the test (or its subprocesses) reach moto for every service."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto.url)
    return {"AWS_ENDPOINT_URL": moto.url}


@pytest.fixture
def aws_env(moto_env: dict[str, str], kinesis_local: Service, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Like moto_env, with Kinesis on kinesis-local."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", kinesis_local.url)
    return {**moto_env, "AWS_ENDPOINT_URL_KINESIS": kinesis_local.url}


@pytest.fixture
def unique() -> str:
    """A name no other test uses: resources in the session-wide emulators never collide."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def api_server(memcached: Service, server_logs: Path) -> Iterator[Service]:
    """``streamwreck api`` as a real process on a free port, on the session's memcached."""
    service = processes.start_api(server_logs, memcached.port)
    yield service
    service.stop()
