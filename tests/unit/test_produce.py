"""`streamwreck produce` without a network: payloads, arguments, what it prints."""

from __future__ import annotations

import json

import pytest

from streamwreck.checker.producer import Produced, Written, payloads
from streamwreck.cli.main import build_parser, main
from streamwreck.cli.produce import render_json, render_text


def test_payloads_are_numbered_json_padded_to_size() -> None:
    records = payloads(3, "run1", 64)
    assert [key for key, _ in records] == ["run1-0", "run1-1", "run1-2"]
    for n, (_, data) in enumerate(records):
        assert len(data) == 64
        document = json.loads(data)
        assert document["n"] == n and document["run"] == "run1"
    assert len(payloads(1, "r", 4)[0][1]) > 4  # never truncated


def test_arguments() -> None:
    args = build_parser().parse_args(["produce", "--stream", "s", "--count", "5", "--aggregate", "--rate", "2.5"])
    assert (args.count, args.aggregate, args.rate, args.per_aggregate, args.shards) == (5, True, 2.5, 25, 1)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--count", "0"], "at least 1"),
        (["--count", "x"], "whole number"),
        (["--count", "1", "--rate", "0"], "above 0"),
        (["--count", "1", "--per-aggregate", "-1"], "at least 1"),
    ],
)
def test_bad_arguments_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["produce", "--stream", "s", *argv])
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_too_large_records_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "--stream", "s", "--count", "1", "--size", str(2 * 1024 * 1024)]) == 2
    assert (
        capsys.readouterr().err
        == "streamwreck produce: configuration error: --size: a Kinesis record holds at most 1 MiB\n"
    )


def test_what_it_prints() -> None:
    produced = Produced(
        stream="s",
        run="r",
        records=[
            Written("shardId-000000000001", "200", 0, "r-1", b""),
            Written("shardId-000000000000", "100", 0, "r-0", b""),
            Written("shardId-000000000000", "100", 1, "r-2", b""),
        ],
        kinesis_records=2,
        seconds=0.5,
    )
    text = render_text(produced)
    assert text.splitlines() == [
        "wrote 3 records in 2 Kinesis records to s (run r) in 0.5s (6 records/s)",
        "  shardId-000000000000: 2 records, sequence numbers 100 .. 100",
        "  shardId-000000000001: 1 records, sequence numbers 200 .. 200",
    ]
    document = json.loads(render_json(produced))
    assert document["count"] == 3 and document["kinesis_records"] == 2
    assert document["records"][2] == {
        "shard_id": "shardId-000000000000",
        "sequence_number": "100",
        "sub_sequence_number": 1,
        "partition_key": "r-2",
    }
