"""The demo's own verdict on the checker's verdict: are the records it names as lost exactly the ones the demo rule
skipped? Run by ``scripts/demo.sh`` after ``streamwreck check --format json``:

    python -m streamwreck.local.demo --report report.json --html report.html    # the HTML report, from the JSON one
    python -m streamwreck.local.demo --report report.json --dir .streamwreck/demo

With ``--dir`` it reads the stream itself (every user record, aggregates unpacked), applies the rule (sequence number
divisible by the stack's --skip-every) and compares with the ``lost`` records of the checker's JSON report. Exit 0 if
they match exactly, 1 if not (naming the differences). In a stack with a watcher it compares the watcher's report
(``<dir>/lost.jsonl``; run ``streamwreck local wait`` first) with the rule as well. ``--html`` renders the checker's
HTML report from its JSON report (the same document), so that the demo runs the checker once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from streamwreck.core.records import RecordId


def records_in_report(report: Mapping[str, Any], stream: str, status: str) -> set[RecordId]:
    """The records of one status in a ``streamwreck check --format json`` report (it lists every record that was
    not simply processed, with its status)."""
    return {
        RecordId(stream, r["shard_id"], r["sequence_number"], int(r.get("sub_sequence_number", 0)))
        for r in report.get("records", [])
        if r.get("status") == status
    }


def describe(record: RecordId) -> str:
    return f"{record.shard_id} {record.sequence_number}/{record.sub_sequence_number}"


def compare(expected: Iterable[RecordId], reported: Iterable[RecordId]) -> tuple[set[RecordId], set[RecordId]]:
    """(skipped but not reported lost, reported lost but not skipped)."""
    expected, reported = set(expected), set(reported)
    return expected - reported, reported - expected


def write_html(report: Mapping[str, Any], path: Path) -> None:
    """The checker's HTML report of the document its JSON report holds."""
    from streamwreck.checker.report import render

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(report, "html"), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamwreck.local.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", type=Path, required=True, help="the checker's JSON report")
    parser.add_argument("--dir", type=Path, help="the stack's folder: compare the lost records with the demo rule")
    parser.add_argument("--html", type=Path, metavar="FILE", help="write the checker's HTML report here")
    args = parser.parse_args(argv)
    if args.dir is None and args.html is None:
        parser.error("give --dir (compare with the demo rule), --html (write the HTML report), or both")
    report = json.loads(args.report.read_text())
    if args.html is not None:
        write_html(report, args.html)
        print(f"HTML report: {args.html}")
    return 0 if args.dir is None else judge(report, args.dir)


def judge(report: Mapping[str, Any], directory: Path) -> int:
    from streamwreck.local.progress import read_stream
    from streamwreck.local.state import status
    from streamwreck.processor.processor import skipped_by_demo_rule

    state = status(directory)
    records = read_stream(state.client("kinesis"), state.stream).record_ids()
    skipped = {r for r in records if skipped_by_demo_rule(r.sequence_number, state.skip_every)}
    missed, extra = compare(skipped, records_in_report(report, state.stream, "lost"))
    rule = f"sequence number divisible by {state.skip_every}" if state.skip_every else "none skipped"
    print(f"demo rule ({rule}): the processor skipped {len(skipped)} of the {len(records)} records in the stream")
    counts = report.get("counts", {})
    others = {name: counts.get(name, 0) for name in ("in_flight", "unknown", "duplicate")}
    for record in sorted(skipped, key=RecordId.sort_key)[:5]:
        print(f"  e.g. {describe(record)}")
    if not missed and not extra and not others["in_flight"] and not others["unknown"]:
        print(f"the checker named exactly those {len(skipped)} records as lost, and no other record")
        if others["duplicate"]:
            print(f"(and {others['duplicate']} records processed more than once: at-least-once delivery)")
        return 0 if state.watch_url is None else judge_watcher(state.lost_file, state.stream, skipped)
    for record in sorted(missed, key=RecordId.sort_key)[:10]:
        print(f"  skipped but not reported lost: {describe(record)}")
    for record in sorted(extra, key=RecordId.sort_key)[:10]:
        print(f"  reported lost but processed: {describe(record)}")
    print(
        f"MISMATCH: {len(missed)} skipped records not reported lost, {len(extra)} reported lost that were processed,"
        f" {others['in_flight']} in flight, {others['unknown']} unknown"
    )
    return 1


def lost_in_export(path: Path, stream: str) -> set[RecordId]:
    """The records of a ``streamwreck watch --export`` file (a record reported twice, after a restart, counts once)."""
    if not path.exists():
        return set()
    found = set()
    for line in path.read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            found.add(RecordId(stream, entry["shard_id"], entry["sequence_number"], entry["sub_sequence_number"]))
    return found


def judge_watcher(path: Path, stream: str, skipped: set[RecordId]) -> int:
    """0 if the watcher reported exactly the skipped records as lost, else 1 (naming the differences)."""
    missed, extra = compare(skipped, lost_in_export(path, stream))
    if not missed and not extra:
        print(f"the watcher reported the same {len(skipped)} records as lost ({path})")
        return 0
    for record in sorted(missed, key=RecordId.sort_key)[:10]:
        print(f"  skipped but not reported by the watcher: {describe(record)}")
    for record in sorted(extra, key=RecordId.sort_key)[:10]:
        print(f"  reported lost by the watcher but processed: {describe(record)}")
    print(f"WATCHER MISMATCH: {len(missed)} skipped records not reported, {len(extra)} reported that were processed")
    return 1


if __name__ == "__main__":
    sys.exit(main())
