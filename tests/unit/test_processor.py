"""The processor's pure logic: the demo rule, loading a module:function, a batch's outcome, when to flush."""

from __future__ import annotations

import pytest

from streamwreck.core.errors import ConfigError, LedgerUnavailableError
from streamwreck.processor.processor import (
    BatchResult,
    Record,
    ShardProgress,
    choose_function,
    demo_rule,
    load_function,
    run_batch,
    summarize_failures,
)

SHARD = "shardId-000000000000"


def _record(seq: int | str, sub: int = 0, data: bytes = b"x") -> Record:
    return Record(SHARD, str(seq), sub, "pk", data)


def test_demo_rule_skips_sequence_numbers_divisible_by_n() -> None:
    rule = demo_rule(5)
    assert [rule(_record(n)) for n in (10, 11, 15, 16)] == [False, True, False, True]
    big = 49680619111392165786717179687748980698212731240268693510
    assert rule(_record(big)) is False and rule(_record(big + 1)) is True


def test_demo_rule_zero_processes_everything() -> None:
    rule = demo_rule(0)
    assert all(rule(_record(n)) for n in range(20))


def test_demo_rule_rejects_negative() -> None:
    with pytest.raises(ConfigError):
        demo_rule(-1)


def test_load_function_resolves_nested_attributes() -> None:
    function = load_function("os:path.basename")
    assert function("/a/b") == "b"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_colon", "must look like"),
        (":f", "must look like"),
        ("m:", "must look like"),
        ("streamwreck_no_such_module:f", "cannot import module"),
        ("os:no_such_function", "has no attribute"),
        ("math:pi", "is not callable"),
    ],
)
def test_load_function_names_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_function(spec)


def test_choose_function_prefers_the_users_function() -> None:
    assert choose_function("os:path.basename", 5) is load_function("os:path.basename")
    assert choose_function(None, 5)(_record(10)) is False


def test_a_skipped_record_does_not_drop_the_rest_of_the_batch() -> None:
    records = [_record(n) for n in (11, 15, 12, 20, 13)]
    result = run_batch(records, demo_rule(5))
    assert result.processed == [("11", 0), ("12", 0), ("13", 0)]
    assert result.skipped == [("15", 0), ("20", 0)]
    assert result.last == ("13", 0)


def test_a_failing_record_is_reported_as_failed_and_the_rest_go_on() -> None:
    def function(record: Record) -> None:
        if record.data == b"bad":
            raise ValueError("cannot parse")

    records = [_record(1), _record(2, data=b"bad"), _record(3)]
    result = run_batch(records, function)
    assert result.processed == [("1", 0), ("3", 0)]  # None means processed
    assert result.failed == [(("2", 0), "ValueError: cannot parse")]
    assert result.last == ("3", 0)
    assert summarize_failures(result.failed) == [
        {"sequence_number": "2", "sub_sequence_number": 0, "error": "ValueError: cannot parse"}
    ]


def test_a_transient_error_halts_the_batch_at_that_record() -> None:
    def function(record: Record) -> bool:
        if record.sequence_number == "3":
            raise LedgerUnavailableError("downstream is down")
        return True

    result = run_batch([_record(1), _record(2), _record(3), _record(4)], function)
    assert result.processed == [("1", 0), ("2", 0)]
    assert result.last == ("2", 0)  # the checkpoint may not pass record 3
    assert result.halted is not None and result.halted[0] == ("3", 0)


def test_sub_sequence_numbers_are_kept() -> None:
    records = [_record(7, sub) for sub in range(3)]
    assert run_batch(records, demo_rule(0)).processed == [("7", 0), ("7", 1), ("7", 2)]


def test_progress_flushes_when_enough_records_are_pending() -> None:
    progress = ShardProgress(flush_records=3, flush_seconds=60)
    progress.add(run_batch([_record(1), _record(2)], demo_rule(0)), now=0)
    assert not progress.due(now=1)
    progress.add(run_batch([_record(3)], demo_rule(0)), now=1)
    assert progress.due(now=1)
    flush = progress.take()
    assert flush.records == [("1", 0), ("2", 0), ("3", 0)]
    assert flush.checkpoint == ("3", 0)
    assert progress.pending == 0 and not progress.unflushed and not progress.due(now=100)


def test_progress_flushes_smaller_batches_once_the_shard_is_read_to_its_tip() -> None:
    progress = ShardProgress(flush_records=1000, flush_seconds=60, tip_flush_records=3)
    progress.add(run_batch([_record(1), _record(2)], demo_rule(0)), now=0)
    assert not progress.due(now=0, at_tip=True)  # too few to be worth a request yet
    progress.add(run_batch([_record(3)], demo_rule(0)), now=0)
    assert not progress.due(now=0, at_tip=False)  # still reading a backlog: more is coming at once
    assert progress.due(now=0, at_tip=True)


def test_progress_flushes_when_the_oldest_record_has_waited() -> None:
    progress = ShardProgress(flush_records=1000, flush_seconds=2)
    progress.add(run_batch([_record(1)], demo_rule(0)), now=10)
    progress.add(run_batch([_record(2)], demo_rule(0)), now=11.5)
    assert not progress.due(now=11.9)
    assert progress.due(now=12)


def test_progress_checkpoints_past_trailing_skipped_records() -> None:
    progress = ShardProgress(flush_records=1000, flush_seconds=0)
    progress.add(run_batch([_record(11), _record(15), _record(20)], demo_rule(5)), now=0)
    flush = progress.take()
    assert flush.records == [("11", 0)]
    assert flush.checkpoint == ("20", 0)
    assert (flush.skipped, flush.failed) == (2, 0)


def test_progress_with_only_skipped_records_still_moves_the_checkpoint() -> None:
    progress = ShardProgress(flush_records=1000, flush_seconds=0)
    progress.add(run_batch([_record(15)], demo_rule(5)), now=0)
    assert progress.due(now=0)
    flush = progress.take()
    assert (flush.records, flush.checkpoint) == ([], ("15", 0))


def test_progress_ignores_empty_batches() -> None:
    progress = ShardProgress(flush_records=1, flush_seconds=0)
    progress.add(BatchResult(), now=0)
    assert not progress.due(now=100)
    assert progress.take().checkpoint is None


def test_progress_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        ShardProgress(flush_records=0)
    with pytest.raises(ValueError):
        ShardProgress(tip_flush_records=0)


def test_a_record_processor_whose_daemon_exited_stops_retrying_its_publish(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamwreck.processor import record_processor

    parents = iter([100, 100, 1])  # the daemon's pid at the start, after the first sleep; re-parented after the second
    monkeypatch.setattr(record_processor.os, "getppid", lambda: next(parents))
    exits: list[int] = []

    def exit_now(code: int) -> None:
        exits.append(code)
        raise SystemExit(code)

    monkeypatch.setattr(record_processor, "hard_exit", exit_now)
    slept: list[float] = []
    sleep = record_processor.unless_orphaned(slept.append)
    sleep(1.0)
    assert exits == []  # the daemon still runs: the publisher tries again
    with pytest.raises(SystemExit):
        sleep(2.0)
    assert slept == [1.0, 2.0] and exits == [record_processor.EXIT_UNPUBLISHED]
