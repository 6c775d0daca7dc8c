"""The report document as text: a terminal table (Rich), JSON, or CSV of the records not processed. Pure."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from streamwreck.checker.verdict import STATUSES, Status

CSV_COLUMNS = (
    "shard_id",
    "sequence_number",
    "sub_sequence_number",
    "status",
    "reason",
    "partition_key",
    "approximate_arrival_timestamp",
    "count",
)


def render_json(document: Mapping[str, Any]) -> str:
    import json

    return json.dumps(document, indent=2) + "\n"


def render_csv(document: Mapping[str, Any]) -> str:
    """Every record that is not processed, one row each."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(document["records"])
    return out.getvalue()


_VERDICT_STYLE = {"clean": "bold green", "gaps": "bold red", "unreliable": "bold yellow"}


def render_table(document: Mapping[str, Any], width: int | None = None, color: bool = False) -> str:
    """The terminal summary: verdict, a table of shards, lost records collapsed into ranges, other findings."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = io.StringIO()
    console = Console(file=out, width=width or 240, force_terminal=color, no_color=not color, highlight=False)
    verdict_text = document["verdict"]
    console.print(
        Text.assemble(
            ("Stream ", ""),
            (document["stream"], "bold"),
            (": ", ""),
            (verdict_text.upper(), _VERDICT_STYLE.get(verdict_text, "")),
            (f" (exit {document['exit_code']})  {EXPLAIN.get(verdict_text, '')}", ""),
        )
    )
    counts = document["counts"]
    console.print(
        f"{counts['checked']:,} records checked: "
        + ", ".join(f"{counts[status.value]:,} {status.value}" for status in STATUSES)
    )

    shards = Table(title="Shards (in read order: parents before children)", title_justify="left")
    for column in ("Shard", "Parents", "State", "Ended", "Checked", "Processed", "Duplicate", "In flight"):
        shards.add_column(column, justify="right" if column in _NUMERIC else "left")
    for column in ("Unknown", "Lost"):
        shards.add_column(column, justify="right")
    shards.add_column("Checkpoint", overflow="fold")
    for shard in document["shards"]:
        shards.add_row(
            shard["shard_id"],
            ", ".join(shard["parent_shard_ids"]) or "-",
            shard["state"],
            shard["ended"],
            f"{shard['checked']:,}",
            f"{shard['processed']:,}",
            f"{shard['duplicate']:,}",
            f"{shard['in_flight']:,}",
            f"{shard['unknown']:,}",
            Text(f"{shard['lost']:,}", style="bold red" if shard["lost"] else ""),
            shard["checkpoint"] or "-",
        )
    console.print(shards)

    ranges = document["lost_ranges"]
    if ranges:
        table = Table(title=f"Lost records ({counts['lost']:,}, in {len(ranges):,} ranges)", title_justify="left")
        for column in ("Shard", "First (sequence/sub)", "Last (sequence/sub)", "Records", "Arrived"):
            table.add_column(column, justify="right" if column == "Records" else "left", overflow="fold")
        for r in ranges:
            arrived = r["first_arrival"] if r["count"] == 1 else f"{r['first_arrival']} .. {r['last_arrival']}"
            table.add_row(
                r["shard_id"],
                f"{r['first']['sequence_number']}/{r['first']['sub_sequence_number']}",
                f"{r['last']['sequence_number']}/{r['last']['sub_sequence_number']}" if r["count"] > 1 else "",
                f"{r['count']:,}",
                arrived,
            )
        console.print(table)

    others: dict[tuple[str, str], int] = {}
    for record in document["records"]:
        if record["status"] != Status.LOST:
            key = (record["status"], _general(record["reason"]))
            others[key] = others.get(key, 0) + 1
    if others:
        table = Table(title="Other records not simply processed", title_justify="left")
        table.add_column("Status")
        table.add_column("Why")
        table.add_column("Records", justify="right")
        for (status, reason), count in sorted(others.items()):
            table.add_row(status, reason, f"{count:,}")
        console.print(table)

    ledger = document.get("ledger") or {}
    if ledger:
        console.print(
            f"Ledger: {'healthy' if ledger.get('healthy') else 'NOT healthy'}, {ledger.get('evictions', 0):,} "
            f"evictions, {_flushes(ledger.get('flushes'))}, started {ledger.get('started_at')}, TTL "
            f"{ledger.get('ttl_seconds')} s"
        )
    return out.getvalue()


_NUMERIC = {"Checked", "Processed", "Duplicate", "In flight"}
EXPLAIN = {
    "clean": "every record is processed or still in flight",
    "gaps": "records were lost: see the ranges below",
    "unreliable": "the evidence cannot vouch for some records (unknown): no verdict on those",
}


def _flushes(count: Any) -> str:
    return "flushes not reported" if count is None else f"{count:,} flushes"


def _general(reason: str) -> str:
    """A reason without its per-record numbers, to group by."""
    if reason.startswith("arrived "):
        return "arrived within the grace period"
    if reason.startswith("processed "):
        return "processed more than once"
    return reason
