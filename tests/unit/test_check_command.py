"""The command line of `streamwreck check`: arguments, help, usage errors as one line with exit 2."""

from __future__ import annotations

import argparse

import pytest

from streamwreck.checker.check import settle_until
from streamwreck.cli.arguments import when as parse_when
from streamwreck.cli.main import build_parser, main


def test_times_iso_or_ago() -> None:
    assert parse_when("2026-11-27T16:00:00Z") == parse_when("2026-11-27T16:00:00+00:00") == 1795795200.0
    assert parse_when("2026-11-27T16:00:00") == 1795795200.0  # UTC unless it says otherwise
    assert parse_when("2026-11-27T17:00:00+01:00") == 1795795200.0
    assert parse_when("90s", now=1000.0) == 910.0
    assert parse_when("2h", now=10_000.0) == 2800.0
    assert parse_when("1d", now=100_000.0) == 13_600.0
    with pytest.raises(argparse.ArgumentTypeError, match="ISO 8601"):
        parse_when("yesterday")


def test_defaults() -> None:
    args = build_parser().parse_args(["check", "--stream", "s"])
    assert (args.grace, args.settle, args.batch_size, args.concurrency, args.format) == (60.0, 5.0, 2500, 8, "table")
    assert build_parser().parse_args(["check", "--stream", "s", "--settle", "0"]).settle == 0.0
    assert args.shard == [] and args.kcl_app is None and not args.fail_on_duplicates and not args.quiet
    args = build_parser().parse_args(["check", "--stream", "s", "--shard", "a", "--shard", "b"])
    assert args.shard == ["a", "b"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-size", "0"], "between 1 and 10000"),
        (["--batch-size", "20000"], "between 1 and 10000"),
        (["--concurrency", "x"], "whole number"),
        (["--grace", "-1"], "not be negative"),
        (["--settle", "-1"], "not be negative"),
        (["--settle", "soon"], "expected seconds"),
        (["--since", "soon"], "ISO 8601"),
        (["--format", "pdf"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["check", "--stream", "s", *argv])
    assert caught.value.code == 2
    assert message in capsys.readouterr().err


def test_usage_errors_found_by_run_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check"]) == 2
    assert (
        capsys.readouterr().err
        == "streamwreck check: configuration error: --stream is required (or set STREAMWRECK_STREAM_NAME)\n"
    )
    assert main(["check", "--stream", "s", "--since", "1h", "--until", "2h"]) == 2
    assert "--until must be after --since" in capsys.readouterr().err
    assert main(["check", "--stream", "s", "--endpoint", "localhost:8000"]) == 2
    assert "http:// or https://" in capsys.readouterr().err


def test_help_teaches(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    text = capsys.readouterr().out
    for words in ("in_flight", "unknown", "exit code", "--kcl-app", "--redrive-to", "STREAMWRECK_API_URL", "examples"):
        assert words in text
    for words in ("--settle SECONDS", "second look", "LATEST", "flushed", "no lease for any"):
        assert words in text, words


def test_settle_until_waits_for_the_moment_in_short_steps_and_not_at_all_once_it_passed() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    settle_until(102.5, clock=lambda: now[0], sleep=sleep)
    assert slept == [1.0, 1.0, 0.5] and now[0] == 102.5
    slept.clear()
    settle_until(90.0, clock=lambda: now[0], sleep=sleep)
    assert slept == []
