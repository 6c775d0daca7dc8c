"""The `streamwreck` command's own behaviour: errors are one line with the documented exit codes."""

from __future__ import annotations

import argparse
import json
import logging

import pytest

from streamwreck.cli import main as cli_main
from streamwreck.core.errors import ConfigError


def _run_with(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> int:
    def run(args: argparse.Namespace) -> int:
        raise error

    original = cli_main.build_parser

    def build_parser() -> argparse.ArgumentParser:
        parser = original()
        parser.set_defaults(run=run)
        for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
            for sub in action.choices.values():  # type: ignore[union-attr]
                sub.set_defaults(run=run)
        return parser

    monkeypatch.setattr(cli_main, "build_parser", build_parser)
    return cli_main.main(["api"])


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (ConfigError("STREAMWRECK_X is not set"), 2, "streamwreck api: configuration error: STREAMWRECK_X"),
        (ValueError("boom"), 2, "streamwreck api: internal error (a bug): ValueError: boom"),
        (KeyboardInterrupt(), 130, ""),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: BaseException, code: int, line: str
) -> None:
    assert _run_with(monkeypatch, error) == code
    err = capsys.readouterr().err
    assert err.startswith(line)
    assert "Traceback" not in err and err.count("\n") <= 1


def test_unknown_arguments_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main.main(["api", "--nope"])
    assert info.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def test_an_internal_error_logs_its_traceback_at_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setenv("STREAMWRECK_LOG_LEVEL", "DEBUG")
    try:
        assert _run_with(monkeypatch, ValueError("boom")) == 2
    finally:
        root.handlers[:], root.level = handlers, level
    first, logged = capsys.readouterr().err.splitlines()
    assert first.startswith("streamwreck api: internal error (a bug): ValueError: boom")
    entry = json.loads(logged)
    assert entry["event"] == "internal_error" and entry["level"] == "debug"
    assert "Traceback" in entry["exc"] and entry["exc"].rstrip().endswith("ValueError: boom")
