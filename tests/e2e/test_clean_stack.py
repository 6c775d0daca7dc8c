"""The same pipeline with the demo rule off (--skip-every 0): nothing lost, verdict clean. Then the stack's own
commands: a second `up` refuses, `status` reports every part, `down` leaves no process behind and is safe twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_stack import WAIT_TIMEOUT, LocalStack, check, log_holders, running, start_stack, write_across_a_split

from streamwreck.local import progress, state

STATUS_KEYS = {
    "aws_endpoint_url",
    "kinesis_endpoint_url",
    "api_url",
    "stream",
    "kcl_application",
    "memcached",
    "queue_url",
    "topic_arn",
    "logs",
}
PARTS = {"memcached", "moto", "kinesis-local", "processor", "recorder", "api"}


@pytest.fixture(scope="module")
def clean_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from start_stack(tmp_path_factory.mktemp("clean-stack"), "--shards", "4", "--skip-every", "0")


def test_with_the_demo_rule_off_nothing_is_lost_and_the_verdict_is_clean(
    clean_stack: LocalStack, tmp_path: Path
) -> None:
    write_across_a_split(clean_stack, aggregated=500, plain=1500)
    wait = clean_stack.run("local", "wait", "--dir", str(clean_stack.dir), "--timeout", str(WAIT_TIMEOUT))
    assert wait.returncode == 0, wait.stderr
    code, report = check(clean_stack, tmp_path, "--grace", "0")
    records = progress.read_stream(clean_stack.client("kinesis"), clean_stack.stream).records
    assert len(records) == 2000
    assert report["counts"]["checked"] == 2000
    assert report["counts"]["lost"] == report["counts"]["in_flight"] == report["counts"]["unknown"] == 0
    assert report["counts"]["processed"] + report["counts"]["duplicate"] == 2000
    assert report["verdict"] == "clean"
    assert code == 0


def test_status_reports_the_endpoints_and_every_part_alive(clean_stack: LocalStack) -> None:
    status = clean_stack.run("local", "status", "--dir", str(clean_stack.dir), "--json")
    assert status.returncode == 0
    document = json.loads(status.stdout)
    assert set(document) >= STATUS_KEYS
    assert set(document["parts"]) == PARTS
    assert all(part["alive"] for part in document["parts"].values())
    assert document["running"] is True


def test_a_second_up_says_the_stack_is_up_and_starts_nothing(clean_stack: LocalStack) -> None:
    before = sorted(clean_stack.pids())
    again = clean_stack.run("local", "up", "--dir", str(clean_stack.dir), "--skip-every", "0")
    assert again.returncode == 1
    assert "already up" in again.stderr
    assert sorted(clean_stack.pids()) == before


def test_down_stops_every_process_of_the_stack_and_is_safe_twice(clean_stack: LocalStack) -> None:
    stack_state = state.load(clean_stack.dir)
    assert stack_state is not None
    pids = clean_stack.pids()
    processor = stack_state.part("processor")
    assert processor is not None
    # The processor's group: `streamwreck processor`, the JVM and one Python record processor per shard lease.
    assert len(processor.members()) >= 3
    down = clean_stack.run("local", "down", "--dir", str(clean_stack.dir))
    assert down.returncode == 0
    assert [pid for pid in pids if running(pid)] == []
    assert log_holders(clean_stack.dir) == []
    assert not (clean_stack.dir / "stack.json").exists()
    assert clean_stack.run("local", "down", "--dir", str(clean_stack.dir)).returncode == 0
    assert clean_stack.run("local", "status", "--dir", str(clean_stack.dir)).returncode == 1
