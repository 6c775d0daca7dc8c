"""streamwreck.core.heartbeat, which the compose health checks of the recorder and the processor run: no Docker,
no servers. (Here beside the compose test that exercises it in containers; it belongs with tests/unit.)"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamwreck.core import heartbeat


@pytest.fixture(autouse=True)
def unconfigured() -> Iterator[None]:
    heartbeat.configure(None)
    yield
    heartbeat.configure(None)


def test_touch_does_nothing_until_a_file_is_configured(tmp_path: Path) -> None:
    heartbeat.touch()
    heartbeat.configure("")
    heartbeat.touch()
    assert list(tmp_path.iterdir()) == []


def test_touch_creates_the_file_and_its_folder_then_renews_it(tmp_path: Path) -> None:
    beat = tmp_path / "run" / "heartbeat"
    heartbeat.configure(beat)
    heartbeat.touch()
    assert heartbeat.is_fresh(beat, max_age=5)
    os.utime(beat, (time.time() - 300, time.time() - 300))
    assert not heartbeat.is_fresh(beat, max_age=120)
    heartbeat.touch()
    assert heartbeat.is_fresh(beat, max_age=5)


def test_a_heartbeat_that_cannot_be_written_never_stops_the_work(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    heartbeat.touch(blocker / "heartbeat")  # its folder is a file: nothing raised, nothing written
    assert not (blocker / "heartbeat").exists()


def test_the_check_exits_0_when_fresh_and_1_when_stale_or_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    beat = tmp_path / "heartbeat"
    assert heartbeat.main([str(beat)]) == 1
    assert "does not exist" in capsys.readouterr().err
    heartbeat.touch(beat)
    assert heartbeat.main([str(beat), "--max-age", "60"]) == 0
    os.utime(beat, (time.time() - 200, time.time() - 200))
    assert heartbeat.main([str(beat), "--max-age", "120"]) == 1
    assert "stuck" in capsys.readouterr().err
