"""The watcher's record processor driven as the daemon drives it (fakes for the API, the consumer's lease and the
checkpointer): it checkpoints only behind judged records, blocks while its hold is full until the consumer moves,
judges everything before checkpointing a shard's end, and keeps what it could not report. Also the launcher's plan
and the command's options."""

from __future__ import annotations

import json
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.reconciling import Answer
from streamwreck.checker.verdict import Checkpoint, LeasePosition, LedgerView
from streamwreck.core.errors import ApiError, ConfigError
from streamwreck.core.settings import WatcherSettings, load_settings
from streamwreck.watcher.launcher import MULTIPROC_VARIABLE, plan_watch
from streamwreck.watcher.record_processor import WatchRecordProcessor
from streamwreck.watcher.shard import Outcome

SHARD = "shardId-000000000000"
T0 = 1_800_000_000.0
LEDGER = LedgerView(healthy=True, evictions=0, started_at=T0 - 3600, ttl_seconds=86_400, flushes=0)


class AtOnce(Executor):
    """An executor that answers at submit: the record processor then judges within the call, as the tests expect."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class FakeApi:
    """The ledger holds every record except ``missing`` (sequence numbers)."""

    def __init__(self, clock: Clock, missing: set[str]) -> None:
        self.clock = clock
        self.missing = missing
        self.calls = 0
        self.down = False

    def reconcile(self, stream: str, records: list[UserRecord]) -> Answer:
        self.calls += 1
        if self.down:
            raise ApiError("the reconcile API is unreachable")
        unprocessed = frozenset(
            (r.shard_id, r.sequence_number, r.sub_sequence_number) for r in records if r.sequence_number in self.missing
        )
        return Answer(unprocessed, {}, {}, self.clock(), LEDGER)


class FakeConsumer:
    def __init__(self, clock: Clock, position: int | None) -> None:
        self.clock = clock
        self.position = position
        self.moves: dict[float, int] = {}  # at this time or later, the consumer is at this position

    def checkpoint(self, shard_id: str) -> Checkpoint:
        for moment, position in sorted(self.moves.items()):
            if self.clock() >= moment:
                self.position = position
        if self.position is None:
            return Checkpoint(LeasePosition.TRIM_HORIZON)
        return Checkpoint(LeasePosition.SEQUENCE, str(self.position), 0)


class FakeReporter:
    def __init__(self) -> None:
        self.lost: list[Outcome] = []
        self.fail = False

    def report(self, lost: list[Outcome]) -> None:
        if self.fail and lost:
            raise ConfigError("cannot append to the export file")
        self.lost.extend(lost)


class Checkpointer:
    def __init__(self) -> None:
        self.positions: list[tuple[str | None, int | None]] = []

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        self.positions.append((sequence_number, sub_sequence_number))


def settings(**overrides: Any) -> WatcherSettings:
    values: dict[str, Any] = {
        "stream_name": "orders",
        "kcl_app": "orders-consumer",
        "grace_seconds": 60,
        "settle_seconds": 2,
        "lease_refresh_seconds": 1,
        "checkpoint_seconds": 0,
        "max_held": 1000,
        **overrides,
    }
    return load_settings(WatcherSettings, **values)


def raw(n: int, arrival: float = T0) -> Any:
    return SimpleNamespace(
        sequence_number=str(n),
        sub_sequence_number=None,
        partition_key=f"k{n}",
        binary_data=b"x",
        timestamp_millis=int(arrival * 1000),
    )


def make(
    clock: Clock, api: FakeApi, consumer: FakeConsumer, reporter: FakeReporter, **options: Any
) -> WatchRecordProcessor:
    exits: list[int] = []
    processor = WatchRecordProcessor(
        settings(**options),
        api,
        consumer,
        reporter,
        clock=clock,
        sleep=clock.sleep,
        exit=exits.append,
        executor=AtOnce(),
    )
    processor.initialize(SimpleNamespace(shard_id=SHARD, sequence_number="TRIM_HORIZON", sub_sequence_number=0))
    return processor


def batch(records: list[Any], checkpointer: Checkpointer) -> Any:
    return SimpleNamespace(records=records, checkpointer=checkpointer, millis_behind_latest=0)


def test_records_are_judged_once_the_consumer_passed_them_and_the_checkpoint_follows_the_judged() -> None:
    clock = Clock()
    api, consumer, reporter, checkpointer = (
        FakeApi(clock, {"103"}),
        FakeConsumer(clock, 104),
        FakeReporter(),
        Checkpointer(),
    )
    processor = make(clock, api, consumer, reporter)
    processor.process_records(batch([raw(n) for n in range(101, 107)], checkpointer))
    assert reporter.lost == [] and checkpointer.positions == []  # the lease was read just now: not settled yet
    clock.now += 3
    processor.process_records(batch([], checkpointer))
    assert [o.record.sequence_number for o in reporter.lost] == ["103"]
    assert checkpointer.positions == [("104", 0)]  # 105 and 106 are beyond the consumer's checkpoint: held
    assert processor.watch is not None and len(processor.watch.held) == 2


def test_a_full_hold_blocks_until_the_consumer_moves() -> None:
    clock = Clock()
    api, consumer, reporter, checkpointer = (
        FakeApi(clock, set()),
        FakeConsumer(clock, 100),
        FakeReporter(),
        Checkpointer(),
    )
    consumer.moves[T0 + 20] = 200
    processor = make(clock, api, consumer, reporter, max_held=5)
    processor.process_records(batch([raw(n, arrival=T0) for n in range(101, 111)], checkpointer))
    # process_records returned only once the consumer had moved (T0 + 20) and the hold had room
    assert clock.now >= T0 + 22
    assert processor.watch is not None and len(processor.watch.held) < 5
    assert checkpointer.positions[-1] == ("110", 0)


def test_the_shard_end_is_checkpointed_only_after_every_held_record_is_judged() -> None:
    clock = Clock()
    api, consumer, reporter, checkpointer = (
        FakeApi(clock, {"102"}),
        FakeConsumer(clock, 100),
        FakeReporter(),
        Checkpointer(),
    )
    consumer.moves[T0 + 10] = 105
    processor = make(clock, api, consumer, reporter)
    processor.process_records(batch([raw(n) for n in range(101, 106)], checkpointer))
    processor.shard_ended(SimpleNamespace(checkpointer=checkpointer))
    assert [o.record.sequence_number for o in reporter.lost] == ["102"]
    assert checkpointer.positions[-1] == (None, None)  # the shard's end, after all were judged


def test_failures_keep_the_records_held_and_the_checkpoint_where_it_was() -> None:
    clock = Clock()
    api, consumer, reporter, checkpointer = (
        FakeApi(clock, {"101"}),
        FakeConsumer(clock, 110),
        FakeReporter(),
        Checkpointer(),
    )
    processor = make(clock, api, consumer, reporter)
    processor.process_records(batch([raw(101), raw(102)], checkpointer))
    clock.now += 3
    reporter.fail = True  # the lost record cannot be reported: it must not leave the hold
    processor.process_records(batch([], checkpointer))
    api.down = True
    clock.now += 3
    processor.process_records(batch([], checkpointer))
    assert checkpointer.positions == [] and processor.watch is not None and len(processor.watch.held) == 2
    reporter.fail, api.down = False, False
    clock.now += 3
    processor.process_records(batch([], checkpointer))
    assert [o.record.sequence_number for o in reporter.lost] == ["101"]
    assert checkpointer.positions == [("102", 0)]


def test_after_a_lost_lease_nothing_is_checkpointed() -> None:
    clock = Clock()
    api, consumer, reporter, checkpointer = (
        FakeApi(clock, set()),
        FakeConsumer(clock, 110),
        FakeReporter(),
        Checkpointer(),
    )
    processor = make(clock, api, consumer, reporter)
    processor.process_records(batch([raw(101)], checkpointer))
    processor.lease_lost(SimpleNamespace())
    clock.now += 3
    processor.process_records(batch([], checkpointer))
    assert checkpointer.positions == []


def test_the_plan_runs_the_watchers_record_processor_under_its_own_application(tmp_path: Any) -> None:
    plan = plan_watch(
        settings(local_profile=True, export_file="/tmp/lost.jsonl"), {"AWS_DEFAULT_REGION": "eu-west-1"}, {}, tmp_path
    )
    assert plan.properties["executableName"].endswith("-m streamwreck.watcher.record_processor")
    assert plan.properties["applicationName"] == "streamwreck-watch-orders"
    assert plan.properties["regionName"] == "eu-west-1"
    assert plan.env[MULTIPROC_VARIABLE] == str(tmp_path)
    assert plan.env["STREAMWRECK_KCL_APP"] == "orders-consumer"
    assert plan.env["STREAMWRECK_EXPORT_FILE"] == "/tmp/lost.jsonl"
    assert plan.env["STREAMWRECK_WORKER_ID"] == plan.properties["workerId"]
    # what each record processor loads from that environment is what the launcher was given
    child = WatcherSettings(
        **{k.removeprefix("STREAMWRECK_").lower(): v for k, v in plan.env.items() if k.startswith("STREAMWRECK_")}
    )
    assert child.grace_seconds == 60 and child.local_profile and child.metrics_dir == str(tmp_path)


def test_the_watcher_cannot_share_the_consumers_application(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="its own KCL application"):
        plan_watch(settings(application_name="orders-consumer"), {"AWS_DEFAULT_REGION": "eu-west-1"}, {}, tmp_path)


def test_the_command_prints_the_daemons_properties(capsys: pytest.CaptureFixture[str]) -> None:
    from streamwreck.cli.main import main

    code = main(["watch", "--stream", "orders", "--kcl-app", "orders-consumer", "--print-properties", "--grace", "5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "applicationName = streamwreck-watch-orders" in out and "streamwreck.watcher.record_processor" in out


def test_the_command_needs_the_stream_and_the_consumer(capsys: pytest.CaptureFixture[str]) -> None:
    from streamwreck.cli.main import main

    assert main(["watch", "--stream", "orders", "--print-properties"]) == 2
    assert "STREAMWRECK_KCL_APP is required" in capsys.readouterr().err


def test_the_settings_pass_through_json_for_the_record(tmp_path: Any) -> None:
    # the environment the record processors get is plain strings (the daemon passes it on)
    plan = plan_watch(settings(), {"AWS_DEFAULT_REGION": "eu-west-1"}, {}, tmp_path)
    assert all(isinstance(value, str) for value in plan.env.values())
    json.dumps(plan.env)


def test_the_answer_comes_on_a_thread_and_is_judged_on_a_later_call() -> None:
    clock = Clock()
    api, consumer, reporter, checkpointer = (
        FakeApi(clock, {"102"}),
        FakeConsumer(clock, 110),
        FakeReporter(),
        Checkpointer(),
    )
    processor = WatchRecordProcessor(
        settings(),
        api,
        consumer,
        reporter,
        clock=clock,
        sleep=clock.sleep,
        exit=[].append,
        executor=ThreadPoolExecutor(1),
    )
    processor.initialize(SimpleNamespace(shard_id=SHARD, sequence_number="TRIM_HORIZON", sub_sequence_number=0))
    processor.process_records(batch([raw(101), raw(102), raw(103)], checkpointer))
    clock.now += 3
    for _ in range(50):  # each call judges the answer that came since the last
        processor.process_records(batch([], checkpointer))
        if reporter.lost and checkpointer.positions:
            break
        processor._wait()
    assert [o.record.sequence_number for o in reporter.lost] == ["102"]
    assert checkpointer.positions == [("103", 0)]
