"""Helpers of the end-to-end tests: the whole embedded stack (``streamwreck local up`` in a temporary folder),
driven from outside with the CLI (``produce``, ``local wait``, ``check``) as a user would, and judged by an
independent read of the stream. One stack per module: starting one costs ~30-60 s, most of it the KCL daemon taking
its leases."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import STREAMWRECK, wait_until

from streamwreck.core.records import RecordId
from streamwreck.local import groups, processes, state

# Budgets, inside the e2e modules' per-test timeout (conftest.py: E2E_TIMEOUT, which covers the first test's fixture,
# i.e. this start-up, too): a slow start ends with `local up`'s own message and the logs' tails, never a bare timeout.
CONSUMER_TIMEOUT = 120  # local up --consumer-timeout: the KCL daemon's leases
UP_TIMEOUT = CONSUMER_TIMEOUT + 90  # the whole `local up`: emulators, resources, services, then both KCL apps' leases
WAIT_TIMEOUT = 150  # local wait: the consumer catching up


@dataclass
class LocalStack:
    dir: Path
    status: dict[str, Any]
    env: dict[str, str]  # the test's environment pointed at the stack's emulators (boto3 and the CLI)
    up_seconds: float

    @property
    def stream(self) -> str:
        return str(self.status["stream"])

    def run(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``streamwreck ARGV...`` against this stack; output captured (and shown if a test fails)."""
        result = subprocess.run(
            [STREAMWRECK, *argv], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        sys.stdout.write(f"$ streamwreck {' '.join(argv)}  -> {result.returncode}\n{result.stdout}")
        sys.stderr.write(result.stderr)
        return result

    def client(self, service: str) -> Any:
        import boto3

        endpoint = self.env["AWS_ENDPOINT_URL_KINESIS" if service == "kinesis" else "AWS_ENDPOINT_URL"]
        return boto3.client(service, endpoint_url=endpoint, region_name=self.env["AWS_DEFAULT_REGION"])

    def pids(self) -> list[int]:
        """Every live process of every part (process groups: the KCL daemon's children included)."""
        stack_state = state.load(self.dir)
        assert stack_state is not None
        return [process.pid for part in stack_state.parts for process in part.members()]


# The process exists and is not a zombie (an exited child of `local up` waits for init to reap it).
running = groups.alive
log_holders = groups.log_holders


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STREAMWRECK_"))}
    return {**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "PYTHONUNBUFFERED": "1"}


def start_stack(folder: Path, *args: str) -> Iterator[LocalStack]:
    """``local up`` in ``folder``; yields the stack; ``local down`` at the end, and checks nothing is left running."""
    began = time.monotonic()
    command = [STREAMWRECK, "local", "up", "--dir", str(folder), "--consumer-timeout", str(CONSUMER_TIMEOUT), *args]
    up = subprocess.Popen(command, env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = up.communicate(timeout=UP_TIMEOUT)
    except subprocess.TimeoutExpired:
        up.send_signal(signal.SIGINT)  # `local up` stops what it started
        out, err = up.communicate(timeout=60)
        err += f"\n(no answer within {UP_TIMEOUT}s: interrupted)"
    seconds = time.monotonic() - began
    if up.returncode != 0:
        subprocess.run([STREAMWRECK, "local", "down", "--dir", str(folder)], env=base_env(), check=False)
        logs = "\n".join(f"== {log}\n{processes.tail(log, 40)}" for log in (folder / "logs").glob("*.log"))
        pytest.fail(f"local up failed ({up.returncode}) after {seconds:.0f}s:\n{out}\n{err}\n{logs}")
    status = json.loads(
        subprocess.run(
            [STREAMWRECK, "local", "status", "--dir", str(folder), "--json"],
            env=base_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    stack_state = state.load(folder)
    assert stack_state is not None
    env = {**base_env(), **stack_state.aws_environment()}
    local = LocalStack(folder, status, env, seconds)
    print(f"local up took {seconds:.1f}s", file=sys.stderr)
    try:
        yield local
    finally:
        if state.load(folder) is not None:
            pids = local.pids()
            subprocess.run([STREAMWRECK, "local", "down", "--dir", str(folder)], env=base_env(), check=False)
            leftovers = [pid for pid in pids if running(pid)] + log_holders(folder)
            assert not leftovers, f"local down left processes running: {leftovers}"


def write_across_a_split(local: LocalStack, aggregated: int, plain: int) -> str:
    """Write ``aggregated`` user records KPL-aggregated, then ``plain`` records at 400/s, splitting shard 0 while
    the plain ones flow; returns the split shard's id."""
    kinesis = local.client("kinesis")
    parent = "shardId-000000000000"
    # The aggregates first: `produce --aggregate` groups user records by the shards open when it starts, so it must
    # not race the split (the KCL would rightly drop sub-records routed to the wrong child).
    packed = local.run("produce", "--stream", local.stream, "--count", str(aggregated), "--aggregate")
    assert packed.returncode == 0, packed.stderr
    # From here on, the parent's new records: the producer's (a cheap poll, not a read of the whole stream).
    arrivals = ShardArrivals(kinesis, local.stream, parent)
    producer = subprocess.Popen(
        [STREAMWRECK, "produce", "--stream", local.stream, "--count", str(plain), "--rate", "400"],
        env=local.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Split once the producer's records reach the parent: about 0.5 s into its 4 s or more (>= 1,500 at 400/s).
        wait_until(lambda: arrivals.count() >= 50, 60, "the producer's first records on the split shard", interval=0.2)
        assert producer.poll() is None, "the producer finished before the split: nothing flowed across it"
        shard = kinesis.describe_stream(StreamName=local.stream)["StreamDescription"]["Shards"][0]
        assert shard["ShardId"] == parent
        low, high = (int(shard["HashKeyRange"][key]) for key in ("StartingHashKey", "EndingHashKey"))
        kinesis.split_shard(StreamName=local.stream, ShardToSplit=parent, NewStartingHashKey=str((low + high) // 2))
        _, errors = producer.communicate(timeout=120)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate()
    assert producer.returncode == 0, errors
    return parent


class ShardArrivals:
    """Counts the records that reach one shard from now on (a LATEST iterator, followed)."""

    def __init__(self, kinesis: Any, stream: str, shard_id: str) -> None:
        self._kinesis = kinesis
        self._iterator: str | None = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard_id, ShardIteratorType="LATEST"
        )["ShardIterator"]
        self._count = 0

    def count(self) -> int:
        if self._iterator is not None:
            page = self._kinesis.get_records(ShardIterator=self._iterator, Limit=1000)
            self._count += len(page["Records"])
            self._iterator = page.get("NextShardIterator")
        return self._count


def check(local: LocalStack, tmp_path: Path, *options: str) -> tuple[int, dict[str, Any]]:
    report = tmp_path / f"report-{len(list(tmp_path.iterdir()))}.json"
    result = local.run(
        "check",
        "--stream",
        local.stream,
        "--endpoint",
        local.status["api_url"],
        "--kcl-app",
        local.status["kcl_application"],
        "--format",
        "json",
        "--output",
        str(report),
        "--quiet",
        *options,
    )
    assert result.returncode in (0, 1, 3), result.stderr
    return result.returncode, json.loads(report.read_text())


def statuses(report: dict[str, Any], stream: str) -> dict[RecordId, str]:
    """Every record the report lists (all but the simply processed ones) with its status."""
    return {
        RecordId(stream, r["shard_id"], r["sequence_number"], r["sub_sequence_number"]): r["status"]
        for r in report["records"]
    }
