"""The same pipeline with the demo rule off (--skip-every 0): nothing lost, verdict clean, and the watcher reports
nothing lost either. Then the stack's own commands: `status` reports every part (the watcher's metrics URL too),
`restart watch` brings the watcher back on its port, a second `up` refuses, `down` leaves no process behind and is
safe twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_stack import WAIT_TIMEOUT, LocalStack, check, log_holders, running, start_stack, write_across_a_split
from helpers import by_label, scrape, wait_until

from streamwreck.local import progress, state

STATUS_KEYS = {
    "aws_endpoint_url",
    "kinesis_endpoint_url",
    "api_url",
    "stream",
    "kcl_application",
    "memcached",
    "queue_url",
    "topic_arn",
    "logs",
    "watch_metrics_url",
    "lost_records_file",
}
PARTS = {"memcached", "moto", "kinesis-local", "processor", "recorder", "api", "watch"}


@pytest.fixture(scope="module")
def clean_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from start_stack(tmp_path_factory.mktemp("clean-stack"), "--shards", "4", "--skip-every", "0")


def test_with_the_demo_rule_off_nothing_is_lost_and_the_verdict_is_clean(
    clean_stack: LocalStack, tmp_path: Path
) -> None:
    write_across_a_split(clean_stack, aggregated=500, plain=1500)
    wait = clean_stack.run("local", "wait", "--dir", str(clean_stack.dir), "--timeout", str(WAIT_TIMEOUT))
    assert wait.returncode == 0, wait.stderr
    code, report = check(clean_stack, tmp_path, "--grace", "0")
    records = progress.read_stream(clean_stack.client("kinesis"), clean_stack.stream).records
    assert len(records) == 2000
    assert report["counts"]["checked"] == 2000
    assert report["counts"]["lost"] == report["counts"]["in_flight"] == report["counts"]["unknown"] == 0
    assert report["counts"]["processed"] + report["counts"]["duplicate"] == 2000
    assert report["verdict"] == "clean"
    assert code == 0
    # `local wait` waited for the watcher too (its checkpoints past every record): it has judged every record, none
    # is held and none is lost.
    figures = watched(clean_stack)
    assert figures["judged"] >= 2000 and figures["held"] == 0 and figures["lost"] == 0
    assert not (clean_stack.dir / "lost.jsonl").exists() or not (clean_stack.dir / "lost.jsonl").read_text()


def watched(local: LocalStack) -> dict[str, float]:
    """The watcher's judged, lost and held records (sums over its shards, from its /metrics)."""
    samples = scrape(local.status["watch_metrics_url"])
    statuses = by_label(samples, "streamwreck_watch_records_total", "status")
    held = by_label(samples, "streamwreck_watch_held_records", "shard_id")
    return {"judged": sum(statuses.values()), "lost": statuses.get("lost", 0.0), "held": sum(held.values())}


def test_status_reports_the_endpoints_and_every_part_alive(clean_stack: LocalStack) -> None:
    status = clean_stack.run("local", "status", "--dir", str(clean_stack.dir), "--json")
    assert status.returncode == 0
    document = json.loads(status.stdout)
    assert set(document) >= STATUS_KEYS
    assert set(document["parts"]) == PARTS
    assert all(part["alive"] for part in document["parts"].values())
    assert document["running"] is True
    assert document["watch_metrics_url"] == f"{document['parts']['watch']['url']}/metrics"
    assert document["lost_records_file"] == str(clean_stack.dir.resolve() / "lost.jsonl")
    text = clean_stack.run("local", "status", "--dir", str(clean_stack.dir))
    assert f"watch_metrics_url     {document['watch_metrics_url']}" in text.stdout
    # Every service's Prometheus metrics, each at the URL status gives (the first test's records counted).
    families = {
        "api": "streamwreck_api_records_checked_total",
        "recorder": "streamwreck_recorder_records_stored_total",
        "processor": "streamwreck_processor_records_total",
        "watch": "streamwreck_watch_records_total",
    }
    for name, family in families.items():
        url = document["parts"][name]["metrics_url"]
        assert sum(sample.value for sample in scrape(url) if sample.name == family) > 0, (name, url)
        assert f"metrics {url}" in text.stdout


def test_the_watcher_restarts_on_its_port_and_resumes_from_its_checkpoint(clean_stack: LocalStack) -> None:
    before = watched(clean_stack)
    restarted = clean_stack.run("local", "restart", "watch", "--dir", str(clean_stack.dir), timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    part = json.loads(restarted.stdout)
    assert f"{part['url']}/metrics" == clean_stack.status["watch_metrics_url"]  # the same port
    # A fresh process (its counters start from zero) that resumes from its checkpoint: it judges the new records, and
    # not the 2,000 before them again.
    produced = clean_stack.run("produce", "--stream", clean_stack.stream, "--count", "100")
    assert produced.returncode == 0, produced.stderr
    after = wait_until(
        lambda: (figures := watched(clean_stack))["judged"] >= 100 and figures["held"] == 0 and figures,
        150,
        "the restarted watcher to judge the new records",
        interval=1.0,
    )
    assert 100 <= after["judged"] < before["judged"] and after["lost"] == 0


def test_a_second_up_says_the_stack_is_up_and_starts_nothing(clean_stack: LocalStack) -> None:
    before = sorted(clean_stack.pids())
    again = clean_stack.run("local", "up", "--dir", str(clean_stack.dir), "--skip-every", "0")
    assert again.returncode == 1
    assert "already up" in again.stderr
    assert sorted(clean_stack.pids()) == before


def test_down_stops_every_process_of_the_stack_and_is_safe_twice(clean_stack: LocalStack) -> None:
    stack_state = state.load(clean_stack.dir)
    assert stack_state is not None
    pids = clean_stack.pids()
    processor = stack_state.part("processor")
    assert processor is not None
    # The processor's group: `streamwreck processor`, the JVM and one Python record processor per shard lease.
    assert len(processor.members()) >= 3
    down = clean_stack.run("local", "down", "--dir", str(clean_stack.dir))
    assert down.returncode == 0
    assert [pid for pid in pids if running(pid)] == []
    assert log_holders(clean_stack.dir) == []
    assert not (clean_stack.dir / "stack.json").exists()
    assert clean_stack.run("local", "down", "--dir", str(clean_stack.dir)).returncode == 0
    assert clean_stack.run("local", "status", "--dir", str(clean_stack.dir)).returncode == 1
