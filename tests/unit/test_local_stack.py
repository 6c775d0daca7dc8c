"""The local stack's pure parts: the state file, checkpoints and catch-up progress, the env scrub, the lookups."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from helpers import wait_until

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.tally import key_of
from streamwreck.checker.verdict import Checkpoint, LeasePosition
from streamwreck.core.errors import ConfigError, StartError, WaitTimeout
from streamwreck.core.settings import LocalSettings
from streamwreck.local import parts, processes, progress, resources, stack, state
from streamwreck.local.state import Part, StackState

S = "demo"


def stack_state(tmp_path: Path) -> StackState:
    return StackState(
        dir=str(tmp_path),
        region="us-east-1",
        stream=S,
        kcl_application="demo-consumer",
        shards=4,
        skip_every=5,
        started_at="2026-11-27T16:00:00Z",
        aws_endpoint_url="http://127.0.0.1:5000",
        kinesis_endpoint_url="http://127.0.0.1:4567",
        api_url="http://127.0.0.1:8000",
        memcached="127.0.0.1:11211",
        queue_url="http://127.0.0.1:5000/123456789012/demo-processed-recorder",
        topic_arn="arn:aws:sns:us-east-1:123456789012:demo-processed",
        parts=[Part("memcached", 2**22 + 1, 123, str(tmp_path / "logs" / "memcached.log"), "127.0.0.1:11211")],
    )


def test_state_file_round_trips(tmp_path: Path) -> None:
    original = stack_state(tmp_path)
    state.save(original)
    assert state.load(tmp_path) == original
    assert not (tmp_path / "stack.tmp").exists()


def test_missing_state_file_is_no_stack_and_a_broken_one_is_one_clear_error(tmp_path: Path) -> None:
    assert state.load(tmp_path) is None
    (tmp_path / "stack.json").write_text("{not json")
    with pytest.raises(StartError, match=r"stack\.json is not a stack state file"):
        state.load(tmp_path)


def test_status_document_has_the_documented_keys_and_reports_dead_parts(tmp_path: Path) -> None:
    summary = stack_state(tmp_path).summary()
    for key in (
        "aws_endpoint_url",
        "kinesis_endpoint_url",
        "api_url",
        "stream",
        "kcl_application",
        "memcached",
        "queue_url",
        "topic_arn",
        "logs",
    ):
        assert summary[key], key
    assert summary["logs"] == str(tmp_path / "logs")
    assert summary["parts"]["memcached"]["alive"] is False  # no such pid
    assert summary["running"] is False
    json.dumps(summary)


def test_shell_exports_point_boto3_at_the_emulators_with_local_credentials(tmp_path: Path) -> None:
    lines = stack_state(tmp_path).shell_exports().splitlines()
    assert "export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:4567" in lines
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:5000" in lines
    assert "export AWS_ACCESS_KEY_ID=streamwreck-local" in lines


def test_services_do_not_inherit_the_callers_aws_or_streamwreck_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("STREAMWRECK_API_KEY", "secret")
    argv = parts.clean_env_argv(["streamwreck", "api"], {"AWS_ACCESS_KEY_ID": "x"})
    assert argv[0] == "env" and argv[-2:] == ["streamwreck", "api"]
    assert argv[argv.index("AWS_PROFILE") - 1 : argv.index("AWS_PROFILE") + 1] == ["-u", "AWS_PROFILE"]
    assert "STREAMWRECK_API_KEY" in argv
    assert "AWS_ACCESS_KEY_ID" not in argv  # set by the stack itself


def record(shard_id: str, sequence: str, sub: int = 0) -> UserRecord:
    return UserRecord(shard_id, sequence, sub, "key", None, 0.0, b"", 0)


def test_progress_counts_recorded_skipped_and_checkpointed() -> None:
    a, b = "shardId-000000000000", "shardId-000000000001"
    records = [record(a, "10"), record(a, "11"), record(a, "12"), record(b, "15")]
    records += [record(b, "16", 0), record(b, "16", 1)]  # one aggregated record, two user records
    asked: list[UserRecord] = []

    def behind_on_a(last: UserRecord) -> bool:
        asked.append(last)
        return last.shard_id == b

    # 10 and 15 are skipped (and so missing); 12 and 16/1 not recorded yet; a's checkpoint is behind its last record.
    missing = [key_of(records[i]) for i in (0, 2, 3, 5)]
    now = progress.measure(records, missing, behind_on_a, skip_every=5)
    assert sorted(asked) == [records[2], records[5]]  # each shard's last record, sub-sequence numbers included
    assert now == progress.Progress(total=6, skipped=2, recorded=2, shards=2, checkpointed=1)
    assert not now.done
    assert now.line() == "consumer: 2/4 records in the ledger (2 skipped by the demo rule), 1/2 shards checkpointed"
    assert progress.measure(records, [key_of(records[0]), key_of(records[3])], lambda _: True, skip_every=5).done


def test_an_empty_stream_is_caught_up() -> None:
    assert progress.measure([], [], lambda _: False, skip_every=5).done


@pytest.mark.parametrize(
    ("checkpoint", "caught_up"),
    [
        (Checkpoint(LeasePosition.SEQUENCE, "12", 0), True),
        (Checkpoint(LeasePosition.SEQUENCE, "12", 1), True),
        (Checkpoint(LeasePosition.SEQUENCE, "11", 5), False),
        (Checkpoint(LeasePosition.SHARD_END), True),
        (Checkpoint(LeasePosition.DONE), True),
        (Checkpoint(LeasePosition.TRIM_HORIZON), False),
        (Checkpoint(LeasePosition.AWAITING_LEASE), False),
    ],
)
def test_a_shard_is_checkpointed_once_its_checkpoint_reaches_its_last_record(
    checkpoint: Checkpoint, caught_up: bool
) -> None:
    last = record("shardId-000000000000", "12")
    assert progress.checkpointed({"shardId-000000000000": checkpoint}, last) is caught_up


def test_resource_names_and_policies() -> None:
    names = resources.names_for("orders")
    assert names.kcl_application == "orders-consumer"
    assert names.dead_letter_queue == "orders-processed-recorder-dlq"
    redrive = json.loads(resources.redrive_policy("arn:aws:sqs:us-east-1:1:dlq"))
    assert redrive == {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:dlq", "maxReceiveCount": "5"}
    policy = json.loads(resources.queue_policy("arn:q", "arn:t"))["Statement"][0]
    assert policy["Resource"] == "arn:q"
    assert policy["Condition"] == {"ArnEquals": {"aws:SourceArn": "arn:t"}}


def test_missing_prerequisites_name_what_to_install_one_line_each(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def missing(*_: object) -> None:
        raise ConfigError("the KCL jars are missing: run 'make kcl-jars' or set STREAMWRECK_KCL_JARS_DIR")

    monkeypatch.setattr(processes.shutil, "which", lambda name: None)  # no memcached, java or node on PATH
    monkeypatch.setattr(processes.Path, "exists", lambda self: False)
    monkeypatch.setattr(stack, "find_jars", missing)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    nowhere = tmp_path / "nowhere" / "main.js"
    lines = stack.missing_prerequisites(LocalSettings(kinesis_local=str(nowhere)))
    assert [line.split(":")[0] for line in lines] == [
        "memcached is missing",
        "Java is not installed",
        "node is missing",
        f"STREAMWRECK_KINESIS_LOCAL={nowhere}",
        "the KCL jars are missing",
    ]
    assert all(
        "\n" not in line and ("install" in line or "make " in line) for line in lines if nowhere.name not in line
    )


def test_down_says_an_up_is_in_progress_before_it_waits_for_the_folder(tmp_path: Path) -> None:
    state.save(stack_state(tmp_path))
    said: list[str] = []
    stopped: list[StackState | None] = []
    with state.locked(tmp_path, "up"):
        down = threading.Thread(target=lambda: stopped.append(stack.down(tmp_path, say=said.append)))
        down.start()
        wait_until(lambda: said, 10, "down to say it waits", interval=0.01)
        assert said == [
            f"an 'up' (pid {os.getpid()}) is in progress in {tmp_path.resolve()}: waiting for it to finish"
            " (Ctrl-C stops waiting)"
        ]
        assert down.is_alive() and not stopped  # it waits for the up
    down.join(timeout=10)
    assert stopped and stopped[0] is not None
    assert not (tmp_path / "stack.json").exists()


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            WaitTimeout("stream 'demo' is not ACTIVE after 30 s"),
            "stream 'demo' is not ACTIVE after 30 s",
        ),
        (
            ClientError({"Error": {"Code": "ResourceInUseException", "Message": "in use"}}, "CreateStream"),
            "ResourceInUseException while creating the stream: in use",
        ),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
            "cannot reach AWS while creating the stream: Could not connect",
        ),
    ],
)
def test_an_aws_failure_during_up_is_one_line_then_the_emulators_log_tail(
    tmp_path: Path, error: Exception, line: str
) -> None:
    log = tmp_path / "kinesis-local.log"
    log.write_text("starting\nlast words\n")
    stack_with_log = stack_state(tmp_path)
    stack_with_log.parts = [Part("kinesis-local", 1, None, str(log))]
    with (
        pytest.raises(StartError) as caught,
        stack._aws_step(stack_with_log, "creating the stream", "kinesis-local"),
    ):
        raise error
    first, *rest = str(caught.value).splitlines()
    assert first.startswith(line)
    assert rest == [f"{log}:", "starting", "last words"]


def test_the_services_get_the_stacks_own_settings_last_and_each_worker_its_own_id(tmp_path: Path) -> None:
    stacked = stack_state(tmp_path)
    stacked.service_env = {"STREAMWRECK_PUBLISH_ATTEMPTS": "1", "STREAMWRECK_WORKER_ID": "chosen"}
    env = parts.services_env(stacked, tmp_path / "jars")
    assert env["STREAMWRECK_PUBLISH_ATTEMPTS"] == "1"
    assert env["STREAMWRECK_WORKER_ID"] == "chosen"
    assert env["STREAMWRECK_MEMCACHED_SERVERS"] == "127.0.0.1:11211"
    assert [parts.is_processor(n) for n in ("processor", "processor-2", "processors", "recorder")] == [
        True,
        True,
        False,
        False,
    ]
    assert parts.worker_id("processor") == "local" and parts.worker_id("processor-3") == "local-3"
    state.save(stacked)
    assert state.load(tmp_path) == stacked  # the settings survive in stack.json, for restarts


def test_a_state_file_written_before_service_env_existed_still_loads(tmp_path: Path) -> None:
    document = json.loads(stack_state(tmp_path).to_json())
    del document["service_env"]
    (tmp_path / "stack.json").write_text(json.dumps(document))
    loaded = state.load(tmp_path)
    assert loaded is not None and loaded.service_env == {}


def test_the_emulators_that_keep_state_in_memory_cannot_be_restarted(tmp_path: Path) -> None:
    state.save(stack_state(tmp_path))
    for name in ("moto", "kinesis-local"):
        with pytest.raises(StartError, match="cannot be restarted: pause it"):
            parts.restart(tmp_path, name)
    with pytest.raises(StartError, match="has no part 'recorder'"):
        parts.kill(tmp_path, "recorder")


def test_the_watcher_audits_the_stacks_consumer_as_an_application_of_its_own(tmp_path: Path) -> None:
    stacked = stack_state(tmp_path)
    assert stacked.summary()["watch_metrics_url"] is None  # a stack started with --no-watch
    url = "http://127.0.0.1:9200"
    stacked.parts.append(Part("watch", 2**22 + 2, 124, str(tmp_path / "logs" / "watch.log"), url, f"{url}/metrics"))
    summary = stacked.summary()
    assert summary["parts"]["watch"]["metrics_url"] == summary["watch_metrics_url"]
    assert summary["parts"]["memcached"]["metrics_url"] is None
    assert summary["watch_metrics_url"] == "http://127.0.0.1:9200/metrics"
    assert summary["lost_records_file"] == str(tmp_path / "lost.jsonl")
    assert summary["watch_application"] == "streamwreck-watch-demo"

    argv = parts.watch_argv(stacked, 9200)
    options = dict(zip(argv[argv.index("--stream") :: 2], argv[argv.index("--stream") + 1 :: 2], strict=True))
    assert options == {
        "--stream": "demo",
        "--kcl-app": "demo-consumer",
        "--application": "streamwreck-watch-demo",
        "--endpoint": "http://127.0.0.1:8000",
        "--metrics-port": "9200",
        "--export": str(tmp_path / "lost.jsonl"),
    }
    stacked.service_env = {"STREAMWRECK_GRACE_SECONDS": "30"}
    env = parts.watch_env(stacked, tmp_path / "jars")
    assert "STREAMWRECK_APPLICATION_NAME" not in env  # the consumer's name is not the watcher's
    assert env["STREAMWRECK_METRICS_HOST"] == "127.0.0.1" and env["STREAMWRECK_LOCAL_PROFILE"] == "true"
    assert env["STREAMWRECK_GRACE_SECONDS"] == "30"
    assert env["AWS_ENDPOINT_URL_KINESIS"] == "http://127.0.0.1:4567"
