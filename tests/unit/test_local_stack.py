"""The local stack's pure parts: the state file, the demo rule, checkpoints and catch-up progress, the env scrub."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from streamwreck.core.records import RecordId
from streamwreck.local import progress, resources, stack

S = "demo"


def state(tmp_path: Path) -> stack.StackState:
    return stack.StackState(
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
        parts=[stack.Part("memcached", 2**22 + 1, 123, str(tmp_path / "logs" / "memcached.log"), "127.0.0.1:11211")],
    )


def test_state_file_round_trips(tmp_path: Path) -> None:
    original = state(tmp_path)
    stack.save(original)
    assert stack.load(tmp_path) == original
    assert not (tmp_path / "stack.tmp").exists()


def test_missing_state_file_is_no_stack_and_a_broken_one_is_one_clear_error(tmp_path: Path) -> None:
    assert stack.load(tmp_path) is None
    (tmp_path / "stack.json").write_text("{not json")
    with pytest.raises(stack.StartError, match=r"stack\.json is not a stack state file"):
        stack.load(tmp_path)


def test_status_document_has_the_documented_keys_and_reports_dead_parts(tmp_path: Path) -> None:
    summary = state(tmp_path).summary()
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
    lines = stack.shell_exports(state(tmp_path)).splitlines()
    assert "export AWS_ENDPOINT_URL_KINESIS=http://127.0.0.1:4567" in lines
    assert "export AWS_ENDPOINT_URL=http://127.0.0.1:5000" in lines
    assert "export AWS_ACCESS_KEY_ID=streamwreck-local" in lines


def test_services_do_not_inherit_the_callers_aws_or_streamwreck_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("STREAMWRECK_API_KEY", "secret")
    argv = stack._clean_env_argv(["streamwreck", "api"], {"AWS_ACCESS_KEY_ID": "x"})
    assert argv[0] == "env" and argv[-2:] == ["streamwreck", "api"]
    assert argv[argv.index("AWS_PROFILE") - 1 : argv.index("AWS_PROFILE") + 1] == ["-u", "AWS_PROFILE"]
    assert "STREAMWRECK_API_KEY" in argv
    assert "AWS_ACCESS_KEY_ID" not in argv  # set by the stack itself


@pytest.mark.parametrize(
    ("sequence", "every", "skipped"),
    [
        ("49590338271490256608559692538361571095921575989136588895", 5, True),
        ("49590338271490256608559692538361571095921575989136588896", 5, False),
        ("10", 5, True),
        ("10", 0, False),
        ("0", 5, True),
    ],
)
def test_demo_rule(sequence: str, every: int, skipped: bool) -> None:
    assert progress.skipped_by_demo_rule(sequence, every) is skipped


def test_progress_counts_recorded_skipped_and_checkpointed() -> None:
    a, b = "shardId-000000000000", "shardId-000000000001"
    records = [RecordId(S, a, "10", 0), RecordId(S, a, "11", 0), RecordId(S, a, "12", 0), RecordId(S, b, "15", 0)]
    records += [RecordId(S, b, "16", 0), RecordId(S, b, "16", 1)]  # one aggregated record, two user records
    asked: list[RecordId] = []

    def behind_on_a(last: RecordId) -> bool:
        asked.append(last)
        return last.shard_id == b

    # 10 and 15 are skipped (and so missing); 12 and 16/1 not recorded yet; a's checkpoint is behind its last record.
    missing = {records[0], records[2], records[3], records[5]}
    now = progress.measure(records, missing, behind_on_a, skip_every=5)
    assert sorted(asked) == [records[2], records[5]]  # each shard's last record, sub-sequence numbers included
    assert now == progress.Progress(total=6, skipped=2, recorded=2, shards=2, checkpointed=1)
    assert not now.done
    assert now.line() == "consumer: 2/4 records in the ledger (2 skipped by the demo rule), 1/2 shards checkpointed"
    assert progress.measure(records, {records[0], records[3]}, lambda _: True, skip_every=5).done


def test_an_empty_stream_is_caught_up() -> None:
    assert progress.measure([], set(), lambda _: False, skip_every=5).done


def test_resource_names_and_policies() -> None:
    names = resources.names_for("orders")
    assert names.kcl_application == "orders-consumer"
    assert names.dead_letter_queue == "orders-processed-recorder-dlq"
    redrive = json.loads(resources.redrive_policy("arn:aws:sqs:us-east-1:1:dlq"))
    assert redrive == {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:1:dlq", "maxReceiveCount": "5"}
    policy = json.loads(resources.queue_policy("arn:q", "arn:t"))["Statement"][0]
    assert policy["Resource"] == "arn:q"
    assert policy["Condition"] == {"ArnEquals": {"aws:SourceArn": "arn:t"}}


def test_missing_prerequisites_name_what_to_install_one_line_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    monkeypatch.setattr(stack.Path, "exists", lambda self: False)
    monkeypatch.setattr(stack, "find_kcl_jars", lambda: None)
    monkeypatch.setattr(stack.processes, "find_kinesis_local", _raise_start_error)
    missing = stack.missing_prerequisites()
    assert [line.split(" is missing")[0].split(" are missing")[0] for line in missing] == [
        "memcached",
        "java",
        "node",
        "kinesis-local",
        "the KCL jars",
    ]
    assert all("\n" not in line and ("install" in line or "make setup" in line) for line in missing)


def _raise_start_error() -> None:
    raise stack.StartError("not there")


def test_down_says_an_up_is_in_progress_before_it_waits_for_the_folder(tmp_path: Path) -> None:
    stack.save(state(tmp_path))
    said: list[str] = []
    stopped: list[stack.StackState | None] = []
    with stack.locked(tmp_path, "up"):
        down = threading.Thread(target=lambda: stopped.append(stack.down(tmp_path, say=said.append)))
        down.start()
        deadline = time.monotonic() + 10
        while not said and time.monotonic() < deadline:
            time.sleep(0.01)
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
            TimeoutError("stream demo is still CREATING after 30s"),
            "TimeoutError: stream demo is still CREATING after 30s",
        ),
        (
            ClientError({"Error": {"Code": "ResourceInUseException", "Message": "in use"}}, "CreateStream"),
            "ResourceInUseException: in use",
        ),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), "EndpointConnectionError: Could not connect"),
    ],
)
def test_an_aws_failure_during_up_is_one_line_then_the_emulators_log_tail(
    tmp_path: Path, error: Exception, line: str
) -> None:
    log = tmp_path / "kinesis-local.log"
    log.write_text("starting\nlast words\n")
    stack_state = state(tmp_path)
    stack_state.parts = [stack.Part("kinesis-local", 1, None, str(log))]
    with (
        pytest.raises(stack.StartError) as caught,
        stack._aws_step(stack_state, "creating the stream", "kinesis-local"),
    ):
        raise error
    first, *rest = str(caught.value).splitlines()
    assert first.startswith(f"creating the stream failed: {line}")
    assert rest == [f"{log}:", "starting", "last words"]
