"""The demo rule end to end: a consumer that skips every record whose sequence number divides by 5, and a checker that
must name exactly those records as lost, no more and no fewer, across KPL aggregation and a shard split; and the
stack's watcher (`streamwreck watch`, part of `local up`), which must report the same records, as they arrive."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_stack import WAIT_TIMEOUT, LocalStack, check, start_stack, statuses, write_across_a_split

from streamwreck.core.records import RecordId
from streamwreck.local import demo, progress, state
from streamwreck.processor.processor import skipped_by_demo_rule

SKIP_EVERY = 5


@pytest.fixture(scope="module")
def demo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from start_stack(tmp_path_factory.mktemp("demo-stack"), "--shards", "4", "--skip-every", str(SKIP_EVERY))


def test_the_checker_names_exactly_the_skipped_records_across_aggregation_and_a_split(
    demo_stack: LocalStack, tmp_path: Path
) -> None:
    kinesis = demo_stack.client("kinesis")
    parent = write_across_a_split(demo_stack, aggregated=1000, plain=2500)

    wait = demo_stack.run("local", "wait", "--dir", str(demo_stack.dir), "--timeout", str(WAIT_TIMEOUT))
    assert wait.returncode == 0, wait.stderr
    code, report = check(demo_stack, tmp_path, "--grace", "0")

    contents = progress.read_stream(kinesis, demo_stack.stream)
    records = contents.record_ids()
    children = [shard for shard, parents in contents.parents.items() if parent in parents]
    assert len(children) == 2 and all(any(r.shard_id == child for r in records) for child in children)
    assert any(r.shard_id == parent for r in records)  # records before and after the split
    assert len(records) == 3500
    skipped = {r for r in records if skipped_by_demo_rule(r.sequence_number, SKIP_EVERY)}
    assert any(r.sub_sequence_number > 0 for r in skipped)  # whole aggregates skipped, every sub-record lost
    listed = statuses(report, demo_stack.stream)
    lost = {r for r, status in listed.items() if status == "lost"}
    assert lost == skipped
    assert {status for status in listed.values()} <= {"lost", "duplicate"}
    assert report["counts"]["checked"] == len(records)
    assert report["counts"]["processed"] + report["counts"]["duplicate"] == len(records) - len(skipped)
    assert report["verdict"] == "gaps"
    assert code == 1
    # The watcher judged the same records as they came (`local wait` waited for it): the same lost, none else.
    reported = demo.lost_in_export(demo_stack.dir / "lost.jsonl", demo_stack.stream)
    assert reported == skipped

    # The demo's last steps (scripts/demo.sh): the HTML report rendered from the JSON one, and the demo's own verdict.
    (tmp_path / "demo.json").write_text(json.dumps(report))
    html = tmp_path / "demo.html"
    arguments = ["--report", str(tmp_path / "demo.json"), "--html", str(html), "--dir", str(demo_stack.dir)]
    demo_run = subprocess.run(
        [sys.executable, "-m", "streamwreck.local.demo", *arguments],
        env=demo_stack.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert demo_run.returncode == 0, demo_run.stdout + demo_run.stderr
    assert f"the checker named exactly those {len(skipped)} records as lost" in demo_run.stdout
    assert f"the watcher reported the same {len(skipped)} records as lost" in demo_run.stdout
    assert html.read_text().lstrip().lower().startswith("<!doctype html")


def test_records_the_consumer_has_not_reached_are_in_flight_not_lost(demo_stack: LocalStack, tmp_path: Path) -> None:
    stack_state = state.load(demo_stack.dir)
    assert stack_state is not None
    processor = stack_state.part("processor")
    assert processor is not None
    # Pause the consumer (the daemon and its record processors): the new records lie beyond its checkpoints.
    paused = [process.pid for process in processor.members()]
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    try:
        produced = demo_stack.run("produce", "--stream", demo_stack.stream, "--count", "200", "--format", "json")
        assert produced.returncode == 0, produced.stderr
        fresh = {
            RecordId(demo_stack.stream, r["shard_id"], r["sequence_number"], r["sub_sequence_number"])
            for r in json.loads(produced.stdout)["records"]
        }
        _, paused_report = check(demo_stack, tmp_path, "--grace", "0")  # only the checkpoints can tell
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    listed = statuses(paused_report, demo_stack.stream)
    assert {listed.get(record) for record in fresh} == {"in_flight"}
    beyond = {r["reason"] for r in paused_report["records"] if r["status"] == "in_flight"}
    assert beyond == {"beyond the consumer's checkpoint"}

    # Running again, and checked at once with the default grace: nothing just written is lost.
    again = demo_stack.run("produce", "--stream", demo_stack.stream, "--count", "200", "--format", "json")
    newest = {
        RecordId(demo_stack.stream, r["shard_id"], r["sequence_number"], r["sub_sequence_number"])
        for r in json.loads(again.stdout)["records"]
    }
    _, report = check(demo_stack, tmp_path)
    listed = statuses(report, demo_stack.stream)
    assert not {r for r in newest if listed.get(r) == "lost"}
    skipped = {r for r in newest if skipped_by_demo_rule(r.sequence_number, SKIP_EVERY)}
    assert skipped and {listed.get(r) for r in skipped} == {"in_flight"}
