"""Faults end to end (issue 13): each made on one local stack while records flow through the demo rule, and then the
checker must name exactly the records the demo rule skipped as lost: no processed record lost, no skipped one
missed; duplicates allowed where a fault replays. The faults run in sequence on one 4-shard stream that grows fault
after fault (one stack start, ~40 s, for the module); memcached's restart comes after the faults whose records it
would make `unknown`, and the faults after it judge exactly the records that arrived after it. Each fault's figures
are printed (``-s``) and written to docs/FAULTS.md when the module ends (fault_table.py)."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from e2e_stack import LocalStack, check, start_stack, statuses
from fault_table import Figures, write
from helpers import STREAMWRECK, wait_until

from streamwreck.checker.leases import lease_shard, read_leases
from streamwreck.checker.tally import key_of
from streamwreck.core.clock import iso, parse_iso
from streamwreck.core.records import RecordId
from streamwreck.local import parts, processes, progress, stack, state
from streamwreck.processor.processor import skipped_by_demo_rule

SKIP_EVERY = 5
# Both bound the test's time (docs/FAULTS.md says so): an SNS outage ends the record processor after one publish
# attempt (2 botocore tries of 15 s) instead of eight; a message a killed recorder had received comes back after 20 s.
SERVICE_ENV = ("STREAMWRECK_PUBLISH_ATTEMPTS=1", "STREAMWRECK_RECORDER_VISIBILITY_TIMEOUT=20")
RUN_RECORDS = 1000  # per fault, at RATE records/s: the fault lands while they flow
RATE = 100
CATCH_UP = 150  # seconds for the consumer to catch up after a fault's end
SHARE = 150  # seconds for a second worker to get leases (15-75 s measured)
# KCL 3 assigns leases from its leader only, and the leader's lock (the DynamoDB lock client's, in the coordinator
# state table) lasts 2 minutes (DynamoDBLockBasedLeaderDecider, not configurable): a killed leader's shards wait that
# long for a new leader.
TAKEOVER = 240
SLACK = 1.0  # seconds: arrival timestamps against our clock


@dataclass
class Facts:
    """What the module's faults leave behind for the next ones."""

    figures: dict[str, Figures] = field(default_factory=dict)
    forgotten_before: float | None = None  # memcached restarted: records that arrived before may be `unknown`


@pytest.fixture(scope="module")
def facts() -> Iterator[Facts]:
    began = time.monotonic()
    found = Facts()
    yield found
    write(found.figures, time.monotonic() - began)


@pytest.fixture(scope="module")
def fault_stack(tmp_path_factory: pytest.TempPathFactory, facts: Facts) -> Iterator[LocalStack]:
    options = [arg for setting in SERVICE_ENV for arg in ("--service-env", setting)]
    folder = tmp_path_factory.mktemp("fault-stack")
    # No watcher: its JVM would share the two cores with the faults' timings (test_demo_rule.py runs it).
    yield from start_stack(folder, "--shards", "4", "--skip-every", str(SKIP_EVERY), "--no-watch", *options)


# --- helpers ----------------------------------------------------------------------------------------------------


@dataclass
class Run:
    producer: subprocess.Popen[str]
    records: set[RecordId] = field(default_factory=set)


@contextlib.contextmanager
def flowing(local: LocalStack, count: int = RUN_RECORDS) -> Iterator[Run]:
    """Produce ``count`` records at RATE/s in the background; enters once records flow end to end (the recorder
    stored a batch since), leaves once the producer is done (its records in ``Run.records``)."""
    stored = processes.log_marker(local.dir / "logs" / "recorder.log", "batch_recorded")
    argv = [STREAMWRECK, "produce", "--stream", local.stream, "--count", str(count), "--rate", str(RATE)]
    producer = subprocess.Popen(
        [*argv, "--format", "json"], env=local.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    run = Run(producer)
    try:
        wait_until(lambda: stored() or producer.poll() is not None, 60, "records flowing end to end", interval=0.2)
        assert producer.poll() is None, "the producer finished before the fault: nothing flowed across it"
        yield run
        out, err = producer.communicate(timeout=120)
        assert producer.returncode == 0, err
        run.records = {
            RecordId(local.stream, r["shard_id"], r["sequence_number"], r["sub_sequence_number"])
            for r in json.loads(out)["records"]
        }
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate()


def restart(local: LocalStack, part: str) -> None:
    """``streamwreck local restart PART``, as a user (or an orchestrator) would."""
    result = local.run("local", "restart", "--dir", str(local.dir), part, timeout=120)
    assert result.returncode == 0, result.stderr


def caught_up(local: LocalStack, facts: Facts, since: float | None = None) -> None:
    """Until the consumer has caught up; only records that arrived since the ledger (re)began need be in it."""
    stack_state = state.load(local.dir)
    assert stack_state is not None
    since = since if since is not None else facts.forgotten_before
    failure = progress.catch_up(stack_state, CATCH_UP, since=since)
    assert failure is None, failure


def owners(local: LocalStack) -> dict[str, str | None]:
    stack_state = state.load(local.dir)
    assert stack_state is not None
    return stack.lease_owners(stack_state.client("dynamodb"), stack_state)


def kcl_leader(local: LocalStack) -> str | None:
    """The worker the KCL's logs last named its leader."""
    found: list[tuple[str, str]] = []
    for log in (local.dir / "logs").glob("processor*.log"):
        for line in log.read_text(errors="replace").splitlines():
            match = re.search(r"Worker : (\S+) is (?:the current|new) leader", line)
            if match:
                found.append((line[:23], match.group(1)))
    return max(found)[1] if found else None


def judge(
    local: LocalStack,
    tmp_path: Path,
    facts: Facts,
    fault: str,
    run: Run,
    recovery: float,
    note: str = "",
) -> tuple[int, dict[str, Any], dict[RecordId, str], set[RecordId]]:
    """Check the stream and record the fault's figures. Records that arrived before a memcached restart may be
    `unknown` (and only those); every other record is exact: lost if and only if the demo rule skipped it."""
    code, report = check(local, tmp_path, "--grace", "0")
    contents = progress.read_stream(local.client("kinesis"), local.stream)
    arrivals = {RecordId(local.stream, *key_of(r)): r for r in contents.records}
    skipped = {r for r in arrivals if skipped_by_demo_rule(r.sequence_number, SKIP_EVERY)}
    listed = statuses(report, local.stream)
    cutoff = facts.forgotten_before
    forgotten = {r for r, read in arrivals.items() if cutoff is not None and read.arrival < cutoff + SLACK}
    lost = {r for r, status in listed.items() if status == "lost"}
    unknown = {r for r, status in listed.items() if status == "unknown"}
    figures = Figures(
        fault=fault,
        checked=len(arrivals),
        falsely_lost=len(lost - skipped),
        missed=len({r for r in skipped if listed.get(r) not in ("lost", "unknown")}),
        unknown=len(unknown - (forgotten if fault != "memcached" else set())),
        duplicates=sum(1 for r in run.records if listed.get(r) == "duplicate"),
        recovery_seconds=recovery,
        verdict=report["verdict"],
        note=note,
    )
    facts.figures[fault] = figures
    print(figures.line())
    assert figures.falsely_lost == 0, sorted(lost - skipped)[:20]
    assert figures.missed == 0
    assert report["counts"]["checked"] == len(arrivals)
    assert run.records <= set(arrivals)
    exact = set(arrivals) - forgotten
    assert {r for r in lost if r in exact} == skipped & exact  # exact where the ledger can vouch
    assert not unknown - forgotten, sorted(unknown - forgotten)[:20]
    assert {listed.get(r) for r in exact} <= {"lost", "duplicate", None}  # None: simply processed
    assert report["verdict"] == "gaps" and code == 1
    return code, report, listed, skipped


# --- the faults, in the order they run ------------------------------------------------------------------------


def test_recorder_sigkilled_mid_run_and_restarted(fault_stack: LocalStack, tmp_path: Path, facts: Facts) -> None:
    with flowing(fault_stack) as run:
        parts.kill(fault_stack.dir, "recorder")  # messages it had received stay in SQS, invisible for a while
    began = time.monotonic()  # the backlog of the whole run waits in SQS
    restart(fault_stack, "recorder")
    caught_up(fault_stack, facts)
    recovery = time.monotonic() - began
    judge(fault_stack, tmp_path, facts, "recorder", run, recovery)


def test_kcl_daemon_and_record_processors_sigkilled_mid_run_and_restarted(
    fault_stack: LocalStack, tmp_path: Path, facts: Facts
) -> None:
    with flowing(fault_stack) as run:
        killed = parts.kill(fault_stack.dir, "processor")  # the launcher, the JVM and a record processor per shard
        assert len(killed) >= 3
        began = time.monotonic()
        restart(fault_stack, "processor")  # same worker id: it resumes its own leases from their checkpoints
    caught_up(fault_stack, facts)
    recovery = time.monotonic() - began
    _, _, listed, skipped = judge(fault_stack, tmp_path, facts, "daemon", run, recovery)
    assert {listed.get(r) for r in run.records - skipped} <= {"duplicate", None}  # replayed: never lost


def test_memcached_restarted_mid_run(fault_stack: LocalStack, tmp_path: Path, facts: Facts) -> None:
    with flowing(fault_stack) as run:
        killed_at = time.time()
        parts.kill(fault_stack.dir, "memcached")
        began = time.monotonic()
        restart(fault_stack, "memcached")
        restarted_at = time.time()
    caught_up(fault_stack, facts, since=restarted_at + SLACK)  # what arrived before is gone from the ledger
    recovery = time.monotonic() - began
    contents = progress.read_stream(fault_stack.client("kinesis"), fault_stack.stream)
    before = {
        RecordId(fault_stack.stream, r.shard_id, r.sequence_number, r.sub_sequence_number)
        for r in contents.records
        if r.arrival < killed_at - SLACK
    }
    assert before & run.records, "no record of the run arrived before memcached was killed"

    # Up to the restart: every record is `unknown` (the ledger forgot them), the skipped ones too, unless the new
    # ledger holds it (processed before the kill, stored after the restart: the recorder kept its message); none
    # `lost`. The earlier faults' records, stored long before, are all `unknown`.
    code, report = check(fault_stack, tmp_path, "--grace", "0", "--until", iso(killed_at - SLACK))
    until = statuses(report, fault_stack.stream)
    assert report["counts"]["lost"] == 0
    assert {until.get(r) for r in before} <= {"unknown", "duplicate", None}  # None: processed
    assert {until.get(r) for r in before - run.records} <= {"unknown"}
    assert report["verdict"] == "unreliable" and code == 3

    # Once the ledger is back (it begins at the first write after the restart, the recorder's: records that arrived
    # before that are `unknown`), new records are exact again.
    more = fault_stack.run("produce", "--stream", fault_stack.stream, "--count", "200")
    assert more.returncode == 0, more.stderr
    caught_up(fault_stack, facts, since=restarted_at + SLACK)
    _, report = check(fault_stack, tmp_path, "--grace", "0")
    facts.forgotten_before = parse_iso(report["ledger"]["started_at"]).timestamp()
    began_after = facts.forgotten_before - restarted_at
    note = f"ledger began {began_after:.0f} s after the restart; unreliable up to it (exit {code})"
    judge(fault_stack, tmp_path, facts, "memcached", run, recovery, note=note)
    assert facts.figures["memcached"].unknown >= len(before - run.records)


def test_two_workers_share_the_leases_and_one_takes_over_from_the_other_sigkilled(
    fault_stack: LocalStack, tmp_path: Path, facts: Facts
) -> None:
    added = fault_stack.run("local", "worker", "--dir", str(fault_stack.dir), timeout=60)
    assert added.returncode == 0, added.stderr
    shared_from = time.monotonic()

    def shared() -> bool:
        held = owners(fault_stack)
        return len(held) == 4 and {"local", "local-2"} <= set(held.values())

    # KCL 3 (worker metrics off, as against emulators) balances leases on their throughput: records must flow.
    rate = RATE // 2
    argv = [STREAMWRECK, "produce", "--stream", fault_stack.stream, "--count", str(rate * SHARE), "--rate", str(rate)]
    warming = subprocess.Popen(argv, env=fault_stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(shared, SHARE, "the two workers to share the 4 leases", interval=1.0)
    finally:
        warming.kill()
        warming.wait()
    shared_after = time.monotonic() - shared_from
    print(f"leases shared after {shared_after:.0f}s: {owners(fault_stack)}")
    leader = kcl_leader(fault_stack)
    with flowing(fault_stack) as run:
        parts.kill(fault_stack.dir, "processor")  # worker `local`, the first: the KCL's leader, as a rule
        began = time.monotonic()
        wait_until(lambda: set(owners(fault_stack).values()) == {"local-2"}, TAKEOVER, "local-2 to take over")
        takeover = time.monotonic() - began
    caught_up(fault_stack, facts)
    recovery = time.monotonic() - began
    note = f"shared after {shared_after:.0f} s; killed `local` (leader: {leader}); taken over after {takeover:.0f} s"
    judge(fault_stack, tmp_path, facts, "two-workers", run, recovery, note=note)


def test_the_api_killed_during_a_check_ends_it_with_one_line_and_no_verdict(
    fault_stack: LocalStack, tmp_path: Path, facts: Facts
) -> None:
    stack_state = state.load(fault_stack.dir)
    assert stack_state is not None
    port = int(stack_state.api_url.rsplit(":", 1)[1])
    parts.pause(fault_stack.dir, "api")  # accepts the checker's connection, never answers: the check is under way
    argv = ["check", "--stream", fault_stack.stream, "--endpoint", stack_state.api_url]
    argv += ["--kcl-app", stack_state.kcl_application, "--grace", "0", "--format", "json", "--quiet"]
    checker = subprocess.Popen(
        [STREAMWRECK, *argv], env=fault_stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:

        def asking() -> bool:
            assert checker.poll() is None, checker.communicate()
            connections = psutil.Process(checker.pid).net_connections(kind="tcp")
            return any(c.raddr and c.raddr.port == port and c.status == "ESTABLISHED" for c in connections)

        wait_until(asking, 60, "the checker to ask the API", interval=0.1)
        parts.kill(fault_stack.dir, "api")
        killed = time.monotonic()
        out, err = checker.communicate(timeout=120)
        gave_up = time.monotonic() - killed
    finally:
        if checker.poll() is None:
            checker.kill()
            checker.communicate()
    print(f"checker: exit {checker.returncode} after {gave_up:.1f}s; stdout {out!r}; stderr {err!r}")
    assert checker.returncode == 2
    assert out == ""  # no report: never a verdict built on missing answers
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert gave_up < 30

    began = time.monotonic()
    restart(fault_stack, "api")
    recovery = time.monotonic() - began  # judge's check is the API's first full answer
    note = f"checker exited 2 after {gave_up:.1f} s, one line on stderr, nothing on stdout"
    judge(fault_stack, tmp_path, facts, "api", Run(checker), recovery, note=note)


def test_moto_unreachable_past_the_publish_retries(fault_stack: LocalStack, tmp_path: Path, facts: Facts) -> None:
    workers = [p.name for p in state.status(fault_stack.dir).parts if parts.is_processor(p.name) and p.alive()]
    assert workers
    logs = [fault_stack.dir / "logs" / f"{name}.log" for name in workers]
    offsets = {log: log.stat().st_size for log in logs}
    with flowing(fault_stack) as run:
        paused = time.monotonic()
        parts.pause(fault_stack.dir, "moto")
        try:
            # The record processors give up publishing and exit 75; the daemon stops with them.
            def stopped() -> bool:
                live = state.status(fault_stack.dir).parts
                return not any(part.alive() for part in live if part.name in workers)

            wait_until(stopped, 120, "the processor to exit on the SNS outage", interval=0.5)
        finally:
            parts.resume(fault_stack.dir, "moto")
        outage = time.monotonic() - paused
        # Nothing checkpointed past an unpublished record: each shard's checkpoint is before the first record its
        # record processor could not publish.
        unpublished = first_unpublished(logs, offsets)
        assert unpublished, "no record processor said it exited on the outage"
        positions = checkpoints_now(fault_stack)
        for shard, first in unpublished.items():  # TRIM_HORIZON (no checkpoint yet) is before anything
            checkpoint = positions[shard]
            assert not checkpoint.isdigit() or int(checkpoint) < first, (shard, checkpoint, first)
        began = time.monotonic()
        for name in workers:
            restart(fault_stack, name)
    caught_up(fault_stack, facts)
    recovery = time.monotonic() - began
    exits = sum(log.read_text(errors="replace").count("Child process exited with value: 75") for log in logs)
    note = f"outage {outage:.0f} s; {exits} record processors exited 75, {len(unpublished)} shards' checkpoints before"
    judge(fault_stack, tmp_path, facts, "moto", run, recovery, note=note + " their first unpublished record")
    assert exits >= 1


def first_unpublished(logs: list[Path], offsets: dict[Path, int]) -> dict[str, int]:
    """{shard: the first sequence number it could not publish} from the record processors' exit lines since."""
    found: dict[str, int] = {}
    for log in logs:
        with open(log, "rb") as lines:
            lines.seek(offsets[log])
            for line in lines:
                if b'"publish_failed_exiting"' in line:
                    event = json.loads(line)
                    sequence = int(event["first"][0])
                    found[event["shard_id"]] = min(sequence, found.get(event["shard_id"], sequence))
    return found


def checkpoints_now(local: LocalStack) -> dict[str, str]:
    """{shard: its checkpoint} from the lease table."""
    stack_state = state.load(local.dir)
    assert stack_state is not None
    found = {}
    for item in read_leases(stack_state.client("dynamodb"), stack_state.kcl_application):
        shard = lease_shard(item["leaseKey"]["S"], local.stream)
        if shard is not None:
            found[shard] = item.get("checkpoint", {}).get("S", "")
    return found
