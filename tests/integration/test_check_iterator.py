"""An iterator that really expires, in the real service's error path.

Kinesis (and kinesis-local) reject a shard iterator older than 300 s with ExpiredIteratorException; waiting five
minutes in a test is not an option, so this test runs its own kinesis-local with a preloaded clock (NODE_OPTIONS
--require) that jumps 301 s ahead on SIGUSR2. A botocore hook fires the jump just before a chosen GetRecords call:
that call carries an iterator issued before the jump, kinesis-local's own age check rejects it, and the reader must
renew it after the last sequence number it read (AFTER_SEQUENCE_NUMBER): every record read once, none skipped.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamwreck.checker.check import Check
from streamwreck.checker.producer import produce
from streamwreck.checker.reading import ShardReader, list_shards
from streamwreck.core.aws import wait_stream_active
from streamwreck.core.ledger import open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local import processes
from streamwreck.local.processes import Service

CLOCK = """\
'use strict';
// Test preload for kinesis-local: SIGUSR2 moves its clock 301 s ahead; the new offset is written to a file.
const fs = require('fs');
let offset = 0;
const realNow = Date.now;
Date.now = () => realNow() + offset;
for (const perf of new Set([require('perf_hooks').performance, globalThis.performance].filter(Boolean))) {
  const origin = perf.timeOrigin;
  Object.defineProperty(perf, 'timeOrigin', { get: () => origin + offset, configurable: true });
}
process.on('SIGUSR2', () => {
  offset += 301000;
  fs.writeFileSync(process.env.KINESIS_CLOCK_MARK, String(offset));
});
"""


class Clock:
    def __init__(self, service: Service, mark: Path) -> None:
        self.service = service
        self.mark = mark
        self.jumps = 0

    def jump(self) -> None:
        """Move kinesis-local's clock ahead and wait until it has."""
        self.jumps += 1
        os.kill(self.service.pid, signal.SIGUSR2)
        deadline = time.monotonic() + 10
        while not (self.mark.exists() and self.mark.read_text() == str(301000 * self.jumps)):
            assert time.monotonic() < deadline, "kinesis-local's clock did not move"
            time.sleep(0.02)


@pytest.fixture(scope="module")
def clocked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clock]:
    folder = tmp_path_factory.mktemp("clocked-kinesis")
    preload = folder / "clock.cjs"
    preload.write_text(CLOCK)
    mark = folder / "offset"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NODE_OPTIONS", f"--require {preload}")
        patch.setenv("KINESIS_CLOCK_MARK", str(mark))
        service = processes.start_kinesis_local(folder)
    yield Clock(service, mark)
    service.stop()


def client(clock: Clock, expire_on_call: int) -> Any:
    """A Kinesis client on the clocked kinesis-local that jumps its clock before the n-th GetRecords call."""
    kinesis = boto3.session.Session().client("kinesis", endpoint_url=clock.service.url)
    calls = 0

    def before_get_records(**_: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == expire_on_call:
            clock.jump()

    kinesis.meta.events.register("before-call.kinesis.GetRecords", before_get_records)
    return kinesis


def make_stream(kinesis: Any, name: str, count: int) -> list[Any]:
    kinesis.create_stream(StreamName=name, ShardCount=1)
    wait_stream_active(kinesis, name)
    return produce(kinesis, name, count).records


def test_the_reader_resumes_after_the_last_record_when_its_iterator_expires(clocked: Clock, unique: str) -> None:
    kinesis = client(clocked, expire_on_call=3)
    written = make_stream(kinesis, unique, 35)
    shard = list_shards(kinesis, unique)[0]
    reader = ShardReader(kinesis, unique, shard, limit=10, until=time.time() + 7200)

    read = [record for page in reader.pages() for record in page]

    assert reader.stats.renewals == 1  # the third call met the expiry; the reader renewed and went on
    assert [r.sequence_number for r in read] == [w.sequence_number for w in written]  # each once, in order
    assert [r.ordinal for r in read] == list(range(35))
    assert reader.stats.ended == "caught_up"


def test_a_whole_check_survives_an_expired_iterator(
    clocked: Clock, memcached: Service, api_server: Service, unique: str
) -> None:
    kinesis = client(clocked, expire_on_call=2)  # after the first page: the caught-up read meets the expiry
    written = make_stream(kinesis, unique, 20)
    with closing(open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{memcached.port}"))) as ledger:
        ledger.record(
            [RecordId(unique, w.shard_id, w.sequence_number, 0) for w in written], uuid.uuid4().hex, int(time.time())
        )

    check = Check(stream=unique, endpoint=api_server.url, grace=0, until=time.time() + 7200, kinesis=kinesis)
    document = check.run()

    assert document["verdict"] == "clean" and document["exit_code"] == 0
    assert document["counts"]["checked"] == 20 and document["counts"]["processed"] == 20
    assert document["shards"][0]["iterator_renewals"] == 1
