"""The processor's metrics merged across its record processors as the launcher serves them (prometheus_client's
multiprocess mode, :mod:`streamwreck.core.multiprocess_metrics`): an exited process' counters keep counting, its
gauges are dropped. Two processes are stood in for by two process ids in this one (prometheus_client's own seam for
the process identity): no process is started, no socket opened."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streamwreck.core.multiprocess_metrics import MULTIPROC_VARIABLE, Merged
from streamwreck.processor import metrics as m
from streamwreck.processor.metrics import ShardMetrics

SHARD = "shardId-000000000000"


@pytest.fixture
def as_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], None]]:
    """Switch the process id the metrics created from then on write their file under."""
    from prometheus_client import values

    pid = {"value": 0}
    monkeypatch.setenv(MULTIPROC_VARIABLE, str(tmp_path))
    value_class = values.MultiProcessValue(lambda: pid["value"])
    monkeypatch.setattr(values, "ValueClass", value_class)

    def switch(to: int) -> None:
        pid["value"] = to

    yield switch
    value_class.close_all_files()


def samples(merged: Merged) -> dict[tuple[str, str], float]:
    return {
        (sample.name, sample.labels.get("outcome", "")): sample.value
        for metric in merged.collect()
        for sample in metric.samples
        if sample.labels.get("shard_id") == SHARD
    }


def test_a_moved_lease_counts_both_processes_records_and_only_the_live_ones_lag(
    as_process: Callable[[int], None], tmp_path: Path
) -> None:
    as_process(101)  # the shard's first record processor
    first = ShardMetrics("orders")
    first.start(SHARD)
    first.handled(processed=3, skipped=1, failed=0)
    first.checkpoint_lag(5.0)
    as_process(102)  # the lease moved: another record processor for the same shard
    second = ShardMetrics("orders")
    second.start(SHARD)
    second.handled(processed=2, skipped=0, failed=0)
    second.checkpointed()
    second.checkpoint_lag(0.0)
    second.behind_latest(1500)

    alive = {101, 102}
    merged = Merged(tmp_path, alive=lambda pid: pid in alive)
    figures = samples(merged)
    assert figures[(f"{m.RECORDS}_total", "processed")] == 5
    assert figures[(f"{m.CHECKPOINT_LAG}", "")] == 5.0  # both alive: the larger

    alive.discard(101)  # the first one exits
    figures = samples(merged)
    assert figures[(f"{m.RECORDS}_total", "processed")] == 5  # its counts stay in the totals
    assert figures[(f"{m.RECORDS}_total", "skipped")] == 1
    assert figures[(f"{m.CHECKPOINTS}_total", "")] == 1
    assert figures[(m.CHECKPOINT_LAG, "")] == 0.0  # its lag is gone with it
    assert not list(tmp_path.glob("gauge_live*_101.db"))
    text = merged.exposition().decode()
    assert f'{m.CHECKPOINT_LAG}{{shard_id="{SHARD}",stream="orders"}} 0.0' in text
    assert f"# HELP {m.BEHIND_LATEST} The KCL's millisBehindLatest" in text
    assert f'{m.BEHIND_LATEST}{{shard_id="{SHARD}",stream="orders"}} 1.5' in text
