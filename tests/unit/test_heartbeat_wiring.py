"""The workers' loops touch their heartbeat file (what the recorder's and the processor's health checks read)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamwreck.core import heartbeat
from streamwreck.core.bucket_ledger import InMemoryLedger
from streamwreck.core.settings import ProcessorSettings, RecorderSettings, load_settings
from streamwreck.recorder.worker import Recorder


@pytest.fixture
def beat(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "beat" / "heartbeat"
    heartbeat.configure(path)
    yield path
    heartbeat.configure(None)


class OneEmptyPoll:
    """An SQS that answers one empty receive, then stops the recorder."""

    def __init__(self, recorder: list[Recorder]) -> None:
        self.recorder = recorder

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        self.recorder[0].stop.set()
        return {"Messages": []}


def test_the_recorder_loop_touches_its_heartbeat(beat: Path) -> None:
    holder: list[Recorder] = []
    recorder = Recorder(OneEmptyPoll(holder), "https://sqs.test/q", InMemoryLedger(), wait_seconds=0)
    holder.append(recorder)
    assert not beat.exists()
    recorder.run()
    assert heartbeat.age(beat) is not None and heartbeat.age(beat) < 60  # type: ignore[operator]


def test_the_heartbeat_file_is_a_setting_of_both_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWRECK_HEARTBEAT_FILE", "/tmp/streamwreck/heartbeat")
    recorder = load_settings(RecorderSettings, queue_url="https://sqs.test/q")
    processor = load_settings(ProcessorSettings, stream_name="s", application_name="a", topic_arn="arn:t")
    assert recorder.heartbeat_file == processor.heartbeat_file == "/tmp/streamwreck/heartbeat"
