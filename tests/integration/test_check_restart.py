"""memcached restarted or flushed after the records were recorded: the ledger is empty, and the checker must say
`unknown` (verdict unreliable, exit 3), never `lost`. Its own memcached and API (the session's are shared and must
not be restarted or flushed). Records written after a restart are judged by the new ledger again."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from streamwreck.checker.producer import Written, produce
from streamwreck.cli.main import main
from streamwreck.core.aws import wait_stream_active
from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local import processes
from streamwreck.local.processes import Service


@dataclass
class OwnStack:
    api: Service
    memcached: Service
    logs: Path

    def restart_memcached(self) -> None:
        port = self.memcached.port
        self.memcached.stop()
        self.memcached = processes.start_memcached(self.logs, port=port)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[OwnStack]:
    node = processes.start_memcached(tmp_path)
    try:
        api = processes.start_api(tmp_path, node.port)
    except BaseException:
        node.stop()
        raise
    own = OwnStack(api, node, tmp_path)
    yield own
    own.api.stop()
    own.memcached.stop()


def ledger_on(node: Service) -> Ledger:
    return open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{node.port}"))


def wait_past_start(node: Service) -> None:
    """Until a record written now arrives more than a second after the node's (whole-second) start."""
    with closing(ledger_on(node)) as ledger:
        started = ledger.health().started_at
    assert started is not None
    while time.time() < started.timestamp() + 2:
        time.sleep(0.05)


def record(node: Service, stream: str, records: Iterable[Written]) -> None:
    """One processed event for ``records``, stored in the node's ledger."""
    ids = [RecordId(stream, r.shard_id, r.sequence_number, r.sub_sequence_number) for r in records]
    with closing(ledger_on(node)) as ledger:
        ledger.record(ids, uuid.uuid4().hex, int(time.time()))


def check(api: Service, stream: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"{uuid.uuid4().hex[:6]}.json"
    code = main(
        [
            "check",
            "--stream",
            stream,
            "--endpoint",
            api.url,
            "--grace",
            "0",
            "--settle",
            "0",
            "--format",
            "json",
            "-o",
            str(report),
        ]
    )
    capsys.readouterr()
    return code, json.loads(report.read_text())


def test_memcached_restarted_after_recording_is_unreliable_not_lost(
    aws_env: dict[str, str],
    stack: OwnStack,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = stack.api
    wait_past_start(stack.memcached)
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=unique, ShardCount=2)
    wait_stream_active(kinesis, unique)
    written = produce(kinesis, unique, 40).records
    record(stack.memcached, unique, written[2:])

    code, document = check(api, unique, tmp_path, capsys)
    assert code == 1 and document["counts"]["lost"] == 2  # the ledger was intact: two records were really lost

    # Restart memcached on the same port, more than a second after the last record arrived.
    last_arrival = max(
        r["ApproximateArrivalTimestamp"].timestamp()
        for shard in ("shardId-000000000000", "shardId-000000000001")
        for r in kinesis.get_records(
            ShardIterator=kinesis.get_shard_iterator(
                StreamName=unique, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
        )["Records"]
    )
    while time.time() < last_arrival + 1.5:
        time.sleep(0.05)
    stack.restart_memcached()
    deadline = time.monotonic() + 20
    while httpx.get(f"{api.url}/readyz").status_code != 200:  # the API's pool reconnects
        assert time.monotonic() < deadline, "the API did not reconnect to memcached"
        time.sleep(0.1)

    code, document = check(api, unique, tmp_path, capsys)
    assert code == 3 and document["verdict"] == "unreliable"
    assert document["counts"]["unknown"] == 40 and document["counts"]["lost"] == 0
    assert {r["reason"] for r in document["records"]} == {"the ledger restarted after the record arrived"}

    # What arrives after the restart is judged by the new ledger: sound evidence again.
    wait_past_start(stack.memcached)
    fresh = produce(kinesis, unique, 6).records
    record(stack.memcached, unique, fresh[:4])
    code, document = check(api, unique, tmp_path, capsys)
    assert code == 1 and document["verdict"] == "gaps"
    lost = {(r["shard_id"], r["sequence_number"]) for r in document["records"] if r["status"] == "lost"}
    assert lost == {(r.shard_id, r.sequence_number) for r in fresh[4:]}
    assert document["counts"] == {
        "checked": 46,
        "processed": 4,
        "lost": 2,
        "in_flight": 0,
        "duplicate": 0,
        "unknown": 40,
    }


def test_memcached_flushed_after_recording_is_unreliable_not_lost(
    aws_env: dict[str, str],
    stack: OwnStack,
    unique: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pymemcache.client.base import Client

    wait_past_start(stack.memcached)
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=unique, ShardCount=1)
    wait_stream_active(kinesis, unique)
    written = produce(kinesis, unique, 50).records
    record(stack.memcached, unique, written)
    code, document = check(stack.api, unique, tmp_path, capsys)
    assert code == 0 and document["counts"]["processed"] == 50 and document["ledger"]["flushes"] == 0

    client = Client(("127.0.0.1", stack.memcached.port))
    try:
        # every entry gone; memcached keeps running, so its start time says nothing. noreply=False waits for the
        # OK, so the check's stats cannot come before the flush.
        assert client.flush_all(noreply=False)
    finally:
        client.close()

    code, document = check(stack.api, unique, tmp_path, capsys)
    assert code == 3 and document["verdict"] == "unreliable"
    assert document["counts"]["unknown"] == 50 and document["counts"]["lost"] == 0
    assert document["ledger"]["flushes"] == 1
    assert {r["reason"] for r in document["records"]} == {"the ledger was flushed (1 flush_all since it started)"}
