"""The check's report: one document (the JSON shape) built from the tally, rendered as a table, JSON, CSV or HTML.

The document (``--format json``)::

    {"stream", "verdict": "clean"|"gaps"|"unreliable", "exit_code",
     "counts": {"checked", "processed", "lost", "in_flight", "duplicate", "unknown"},
     "shards": [{"shard_id", "parent_shard_ids", "state", "ended", "checked", "processed", "lost", "in_flight",
                 "duplicate", "unknown", "checkpoint", "reads", "throttled", "iterator_renewals", ...}],
     "lost_ranges": [{"shard_id", "first", "last", "count", ...}],
     "records": [{"shard_id", "sequence_number", "sub_sequence_number", "status", "reason", "partition_key",
                  "approximate_arrival_timestamp", "count"}],
     "ledger": {"healthy", "evictions", "flushes", "started_at", "ttl_seconds"}, "options": {...}, ...}

``records`` lists every record that is not ``processed``. Pure: renderers return text.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from streamwreck.checker.aggregation import hash_key
from streamwreck.checker.reading import ReadStats, Shard
from streamwreck.checker.tally import Finding, Tally
from streamwreck.checker.verdict import STATUSES, Checkpoint, Place, Status, exit_code, lost_ranges, verdict

FORMATS = ("table", "json", "csv", "html")
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
COUNT_ORDER = ("processed", "lost", "in_flight", "duplicate", "unknown")
MAX_POINTS = 120  # timeline buckets per shard
HTML_MAX_RECORDS = 2000


def iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build(
    *,
    stream: str,
    shards: Sequence[Shard],
    stats: Mapping[str, ReadStats],
    tally: Tally,
    checkpoints: Mapping[str, Checkpoint] | None,
    options: Mapping[str, Any],
    started: float,
    finished: float,
    fail_on_duplicates: bool,
) -> dict[str, Any]:
    """The report document: everything every format shows."""
    totals = tally.totals()
    counts = {"checked": sum(totals.values()), **{status: totals.get(status, 0) for status in COUNT_ORDER}}
    result = verdict(totals)
    order = {shard.shard_id: index for index, shard in enumerate(shards)}
    by_id = {shard.shard_id: shard for shard in shards}
    findings = sorted(
        tally.findings.values(),
        key=lambda f: (order.get(f.record.shard_id, 0), int(f.record.sequence_number), f.record.sub_sequence_number),
    )
    lost_by_shard: dict[str, list[Place]] = {}
    for finding in findings:
        if finding.status is Status.LOST:
            lost_by_shard.setdefault(finding.record.shard_id, []).append(finding.place)
    timeline = _timeline(shards, tally, findings)
    return {
        "stream": stream,
        "verdict": result.value,
        "exit_code": exit_code(result, totals, fail_on_duplicates),
        "counts": counts,
        "shards": [_shard(shard, stats.get(shard.shard_id), tally, checkpoints, timeline) for shard in shards],
        "lost_ranges": [
            {
                "shard_id": r.shard_id,
                "first": {
                    "sequence_number": r.first.sequence_number,
                    "sub_sequence_number": r.first.sub_sequence_number,
                },
                "last": {"sequence_number": r.last.sequence_number, "sub_sequence_number": r.last.sub_sequence_number},
                "count": r.size,
                "first_arrival": iso(r.first.arrival),
                "last_arrival": iso(r.last.arrival),
            }
            for shard in shards
            for r in lost_ranges(shard.shard_id, lost_by_shard.get(shard.shard_id, []))
        ],
        "records": [_record(finding, by_id.get(finding.record.shard_id)) for finding in findings],
        "ledger": dict(tally.ledger or {}),
        "options": dict(options),
        "started_at": iso(started),
        "finished_at": iso(finished),
        "duration_seconds": round(finished - started, 3),
        "timeline_bucket_seconds": timeline["bucket"],
    }


def _shard(
    shard: Shard,
    stats: ReadStats | None,
    tally: Tally,
    checkpoints: Mapping[str, Checkpoint] | None,
    timeline: Mapping[str, Any],
) -> dict[str, Any]:
    counts: Mapping[str, int] = tally.counts.get(shard.shard_id, {})
    stats = stats or ReadStats()
    checkpoint = checkpoints.get(shard.shard_id) if checkpoints is not None else None
    return {
        "shard_id": shard.shard_id,
        "parent_shard_ids": list(shard.parent_ids),
        "state": "closed" if shard.closed else "open",
        "ended": stats.ended or "not_read",
        "checked": sum(counts.values()),
        **{status: counts.get(status, 0) for status in COUNT_ORDER},
        "kinesis_records": stats.kinesis_records,
        "first_sequence_number": stats.first_sequence_number,
        "last_sequence_number": stats.last_sequence_number,
        "checkpoint": checkpoint.describe() if checkpoint else None,
        "reads": stats.reads,
        "throttled": stats.throttled,
        "iterator_renewals": stats.renewals,
        "read_started_at": iso(stats.started_at),
        "read_finished_at": iso(stats.finished_at),
        "timeline": timeline["shards"].get(shard.shard_id, []),
    }


def _record(finding: Finding, shard: Shard | None) -> dict[str, Any]:
    record = finding.record
    reason = finding.reason
    if (
        finding.status is Status.LOST
        and shard is not None
        and not shard.owns(hash_key(record.partition_key, record.explicit_hash_key))
    ):
        reason = "not in the ledger; its hash key is outside the shard's range, so the KCL drops it"
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
        "status": finding.status.value,
        "reason": reason,
        "partition_key": record.partition_key,
        "approximate_arrival_timestamp": iso(record.arrival),
        "count": finding.count,
    }


def _timeline(shards: Sequence[Shard], tally: Tally, findings: Sequence[Finding]) -> dict[str, Any]:
    """Per shard, on one time axis: records written, processed (incl. duplicates) and lost per time bucket."""
    seconds = [second for shard in shards for second in tally.written.get(shard.shard_id, {})]
    if not seconds:
        return {"bucket": 1, "shards": {}}
    start, end = min(seconds), max(seconds)
    bucket = max(1, math.ceil((end - start + 1) / MAX_POINTS))
    size = (end - start) // bucket + 1
    lost: dict[str, list[int]] = {}
    for finding in findings:
        if finding.status is Status.LOST:
            series = lost.setdefault(finding.record.shard_id, [0] * size)
            series[(int(finding.record.arrival) - start) // bucket] += 1
    result: dict[str, list[list[Any]]] = {}
    for shard in shards:
        written, processed = [0] * size, [0] * size
        for second, count in tally.written.get(shard.shard_id, {}).items():
            written[(second - start) // bucket] += count
        for second, count in tally.processed.get(shard.shard_id, {}).items():
            processed[(second - start) // bucket] += count
        shard_lost = lost.get(shard.shard_id, [0] * size)
        result[shard.shard_id] = [
            [iso(start + i * bucket), written[i], processed[i], shard_lost[i]] for i in range(size)
        ]
    return {"bucket": bucket, "shards": result}


# ---------------------------------------------------------------------------------------------------- renderers


def render(document: Mapping[str, Any], fmt: str, width: int | None = None, color: bool = False) -> str:
    if fmt == "json":
        return render_json(document)
    if fmt == "csv":
        return render_csv(document)
    if fmt == "html":
        return render_html(document)
    return render_table(document, width=width, color=color)


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


def headline(document: Mapping[str, Any]) -> str:
    counts = document["counts"]
    parts = ", ".join(f"{counts[status.value]:,} {status.value}" for status in STATUSES)
    return (
        f"{document['stream']}: {document['verdict'].upper()} (exit {document['exit_code']}): "
        f"{counts['checked']:,} records checked: {parts}"
    )


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
            (f" (exit {document['exit_code']})  {_EXPLAIN.get(verdict_text, '')}", ""),
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
_EXPLAIN = {
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


# ---------------------------------------------------------------------------------------------------- HTML

_COLORS = {"written": "#1f77b4", "processed": "#2ca02c", "lost": "#d62728"}


def render_html(document: Mapping[str, Any]) -> str:
    """One self-contained page (inline CSS and SVG, no script, no network): summary, a chart per shard, tables."""
    e = html.escape
    counts = document["counts"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>streamwreck check: {e(document['stream'])}: {e(document['verdict'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Stream <code>{e(document['stream'])}</code>: "
        f'<span class="verdict {e(document["verdict"])}">{e(document["verdict"].upper())}</span></h1>',
        f"<p>{e(_EXPLAIN.get(document['verdict'], ''))}. Exit code {document['exit_code']}. "
        f"Checked from {e(str(document['started_at']))} to {e(str(document['finished_at']))}.</p>",
        '<table class="counts"><tr>'
        + "".join(f"<th>{e(k)}</th>" for k in counts)
        + "</tr><tr>"
        + "".join(f'<td class="{e(k)}">{v:,}</td>' for k, v in counts.items())
        + "</tr></table>",
        "<h2>Records over time, per shard</h2>",
        '<p class="legend">'
        + " ".join(
            f'<span><svg width="24" height="10"><line x1="0" y1="5" x2="24" y2="5" stroke="{color}" '
            f'stroke-width="3"/></svg> {name} (cumulative)</span>'
            for name, color in _COLORS.items()
        )
        + f" &nbsp; time buckets of {document.get('timeline_bucket_seconds', 1)} s</p>",
    ]
    bucket = int(document.get("timeline_bucket_seconds") or 1)
    for shard in document["shards"]:
        parents = ", ".join(shard["parent_shard_ids"]) or "none"
        parts.append(
            f'<section class="shard" id="{e(shard["shard_id"])}"><h3>{e(shard["shard_id"])} '
            f"<small>{e(shard['state'])}, parents: {e(parents)}, {shard['checked']:,} checked, "
            f"{shard['lost']:,} lost</small></h3>{_chart(shard, bucket)}</section>"
        )
    ranges = document["lost_ranges"]
    parts.append(f"<h2>Lost records ({counts['lost']:,}) in ranges</h2>")
    if ranges:
        parts.append(
            "<table><tr><th>Shard</th><th>First</th><th>Last</th><th>Records</th><th>Arrived</th></tr>"
            + "".join(
                f"<tr><td>{e(r['shard_id'])}</td><td>{e(r['first']['sequence_number'])}/"
                f"{r['first']['sub_sequence_number']}</td><td>{e(r['last']['sequence_number'])}/"
                f"{r['last']['sub_sequence_number']}</td><td>{r['count']:,}</td>"
                f"<td>{e(str(r['first_arrival']))}</td></tr>"
                for r in ranges
            )
            + "</table>"
        )
    else:
        parts.append("<p>None.</p>")
    parts.append("<h2>Shards</h2><table><tr>" + "".join(f"<th>{c}</th>" for c in _HTML_SHARD_COLUMNS) + "</tr>")
    for shard in document["shards"]:
        row = {**shard, "parent_shard_ids": ", ".join(shard["parent_shard_ids"]) or "-"}
        parts.append("<tr>" + "".join(f"<td>{e(str(row.get(c, '')))}</td>" for c in _HTML_SHARD_COLUMNS) + "</tr>")
    parts.append("</table>")
    records = document["records"]
    parts.append(f"<h2>Records not processed ({len(records):,})</h2>")
    if len(records) > HTML_MAX_RECORDS:
        parts.append(f"<p>The first {HTML_MAX_RECORDS:,}; the JSON or CSV report lists all.</p>")
    parts.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in CSV_COLUMNS) + "</tr>")
    for record in records[:HTML_MAX_RECORDS]:
        parts.append(
            f'<tr class="{e(record["status"])}">'
            + "".join(f"<td>{e(str(record.get(c, '')))}</td>" for c in CSV_COLUMNS)
            + "</tr>"
        )
    parts.append("</table>")
    ledger = document.get("ledger") or {}
    parts.append(
        "<h2>Ledger</h2><p>"
        + ", ".join(f"{e(str(k))}: <code>{e(str(v))}</code>" for k, v in ledger.items())
        + "</p></body></html>\n"
    )
    return "\n".join(parts)


_HTML_SHARD_COLUMNS = (
    "shard_id",
    "parent_shard_ids",
    "state",
    "ended",
    "checked",
    *(s.value for s in STATUSES),
    "checkpoint",
    "reads",
    "throttled",
    "iterator_renewals",
)

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
h1 .verdict.clean{color:#2ca02c}h1 .verdict.gaps{color:#d62728}h1 .verdict.unreliable{color:#b8860b}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;
font-size:13px}th{background:#f4f4f4}td.lost,tr.lost{color:#d62728}tr.unknown{color:#b8860b}
section.shard{display:inline-block;vertical-align:top;margin:0 1.5em 1.5em 0}h3 small{font-weight:normal;color:#666}
.legend span{margin-right:1.5em}svg text{font-size:11px;fill:#444}code{font-size:12px}h1 code{font-size:1em}
td{overflow-wrap:anywhere;max-width:36em}
"""

_W, _H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 520, 220, 56, 12, 10, 34


def _chart(shard: Mapping[str, Any], bucket: int) -> str:
    """Cumulative records written, processed and lost over time, as inline SVG: one point per bucket boundary."""
    points = shard.get("timeline") or []
    sid = html.escape(shard["shard_id"])
    if not points:
        return (
            f'<svg class="chart" data-shard="{sid}" width="{_W}" height="40"><text x="4" y="20">no records</text></svg>'
        )
    series: dict[str, list[int]] = {"written": [0], "processed": [0], "lost": [0]}
    for _, written, processed, lost in points:
        for name, value in (("written", written), ("processed", processed), ("lost", lost)):
            series[name].append(series[name][-1] + value)
    totals = {name: values[-1] for name, values in series.items()}
    top = max(1, totals["written"])
    n = len(points)  # buckets; n + 1 boundaries
    width, height = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def x(i: int) -> float:
        return _PAD_L + width * i / n

    def y(v: int) -> float:
        return _PAD_T + height - height * v / top

    out = [
        f'<svg class="chart" data-shard="{sid}" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" aria-label="records over time for {sid}">',
        f'<rect x="{_PAD_L}" y="{_PAD_T}" width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>',
    ]
    for fraction in (0, 0.5, 1):
        value = round(top * fraction)
        out.append(
            f'<text x="{_PAD_L - 6}" y="{y(value) + 4:.1f}" text-anchor="end">{value:,}</text>'
            f'<line x1="{_PAD_L}" x2="{_PAD_L + width}" y1="{y(value):.1f}" y2="{y(value):.1f}" stroke="#eee"/>'
        )
    first = datetime.fromisoformat(str(points[0][0]).replace("Z", "+00:00")).timestamp()
    for index, anchor in ((0, "start"), (n, "end")):
        label = (iso(first + index * bucket) or "")[11:19]
        out.append(f'<text x="{x(index):.1f}" y="{_H - 12}" text-anchor="{anchor}">{label} UTC</text>')
    for name in ("written", "processed", "lost"):
        coords = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(series[name]))
        out.append(
            f'<polyline class="{name}" data-total="{totals[name]}" points="{coords}" fill="none" '
            f'stroke="{_COLORS[name]}" stroke-width="{3 if name == "lost" else 2}"/>'
        )
    for i, (at, _, _, lost) in enumerate(points):
        if lost:
            out.append(
                f'<circle class="lost-mark" cx="{x(i + 1):.1f}" cy="{y(series["lost"][i + 1]):.1f}" r="4" '
                f'fill="{_COLORS["lost"]}"><title>{lost} lost in the {bucket} s from {html.escape(str(at))}</title>'
                "</circle>"
            )
    out.append("</svg>")
    return "".join(out)
