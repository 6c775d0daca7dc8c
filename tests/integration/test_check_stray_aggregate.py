"""Say why: a record lost because the KCL dropped its whole KPL aggregate (one of its user records hashes outside the
shard it was read from) is reported with exactly that reason; records of well-formed aggregates that were not
processed are simply "not in the ledger". kinesis-local, a real memcached and a real ``streamwreck api``."""

from __future__ import annotations

import time
from collections.abc import Iterator

import boto3
import pytest

from streamwreck.checker.aggregation import aggregate, hash_key
from streamwreck.checker.check import Check
from streamwreck.checker.producer import produce
from streamwreck.checker.reading import list_shards
from streamwreck.checker.verdict import STRAY_AGGREGATE
from streamwreck.core.aws import wait_stream_active
from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local.processes import Service


@pytest.fixture
def ledger(memcached: Service) -> Iterator[Ledger]:
    the_ledger = open_ledger(load_settings(LedgerSettings, memcached_servers=f"127.0.0.1:{memcached.port}"))
    started = the_ledger.health().started_at
    assert started is not None
    while time.time() < started.timestamp() + 2:
        time.sleep(0.05)
    yield the_ledger
    the_ledger.close()


def test_a_record_of_an_aggregate_the_kcl_drops_says_why(
    aws_env: dict[str, str], ledger: Ledger, api_server: Service, unique: str
) -> None:
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=unique, ShardCount=2)
    wait_stream_active(kinesis, unique)
    # Well-formed aggregates (packed per shard, as the KPL does): half of their records were processed.
    good = produce(kinesis, unique, 40, aggregate=True, per_aggregate=10).records
    ledger.record([RecordId(unique, r.shard_id, r.sequence_number, r.sub_sequence_number) for r in good[::2]], "e", 0)
    # One aggregate whose user records hash to both shards: put by its first key, the rest stray.
    shards = list_shards(kinesis, unique)
    keys = [f"{unique}-{n}" for n in range(50)]
    mixed = [k for k in keys if shards[0].owns(hash_key(k))][:2] + [k for k in keys if shards[1].owns(hash_key(k))][:2]
    packed = next(aggregate([(key, b"payload") for key in mixed], max_user_records=10))
    put = kinesis.put_record(StreamName=unique, Data=packed.data, PartitionKey=packed.partition_key)
    assert put["ShardId"] == shards[0].shard_id

    check = Check(stream=unique, endpoint=api_server.url, grace=0, settle=0, kinesis=kinesis)
    document = check.run()
    reasons = {
        (r["shard_id"], r["sequence_number"], r["sub_sequence_number"]): r["reason"] for r in document["records"]
    }
    kept = {(put["ShardId"], put["SequenceNumber"], sub) for sub in (0, 1)}  # hash into the shard
    strays = {(put["ShardId"], put["SequenceNumber"], sub) for sub in (2, 3)}  # hash outside it
    unprocessed = {(r.shard_id, r.sequence_number, r.sub_sequence_number) for r in good[1::2]}
    assert set(reasons) == kept | strays | unprocessed
    assert {reasons[key] for key in kept} == {STRAY_AGGREGATE}
    # the report names the stray user records themselves as the ones outside the shard's range
    assert {reasons[key] for key in strays} == {
        "not in the ledger; its hash key is outside the shard's range, so the KCL drops it"
    }
    assert {reasons[key] for key in unprocessed} == {"not in the ledger"}
    assert document["verdict"] == "gaps"
