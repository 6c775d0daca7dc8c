"""The report document as one self-contained HTML page: verdict, a table of shards, an SVG chart per shard of
records written, processed and lost over time, and the records not processed. Pure."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from streamwreck.checker.render_text import CSV_COLUMNS, EXPLAIN
from streamwreck.checker.verdict import STATUSES
from streamwreck.core.clock import iso, parse_iso

HTML_MAX_RECORDS = 2000

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
        f"<p>{e(EXPLAIN.get(document['verdict'], ''))}. Exit code {document['exit_code']}. "
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
    first = parse_iso(str(points[0][0])).timestamp()
    for index, anchor in ((0, "start"), (n, "end")):
        label = iso(first + index * bucket)[11:19]
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
