"""The reports of one fixed scenario, end to end: JSON and CSV against golden files (tests/golden/), and the HTML
report opened in headless Chromium (Debian's package) with its charts drawn.

The scenario is deterministic but for what Kinesis assigns: sequence numbers become ``<shard>#<rank>`` (their rank
among the shard's records), times become ``<time>``, the per-second timeline becomes its totals. Regenerate the
golden files after an intended change with ``UPDATE_GOLDEN=1 pytest tests/integration/test_check_reports.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamwreck.checker.producer import Written, produce
from streamwreck.cli.main import main
from streamwreck.core.aws import wait_stream_active
from streamwreck.core.ledger import open_ledger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import LedgerSettings, load_settings
from streamwreck.local.processes import Service

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")
SEQUENCE = re.compile(r"\b\d{20,}\b")


@dataclass
class Scenario:
    stream: str
    app: str
    endpoint: str
    written: list[Written]
    reports: dict[str, Path]
    codes: dict[str, int]


@pytest.fixture(scope="module")
def scenario(
    kinesis_local: Service,
    moto: Service,
    memcached: Service,
    api_server: Service,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Scenario]:
    """Two shards; plain and aggregated records; lost, duplicate and in-flight ones; all three reports written."""
    folder = tmp_path_factory.mktemp("reports")
    stream = f"golden-{uuid.uuid4().hex[:8]}"
    with pytest.MonkeyPatch.context() as patch:
        # module scope comes before the autouse clean_env: set up the same environment here
        for name in list(os.environ):
            if name.startswith(("STREAMWRECK_", "AWS_")):
                patch.delenv(name)
        for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
            patch.setenv(name, value)
        patch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        patch.setenv("AWS_ENDPOINT_URL", moto.url)
        patch.setenv("AWS_ENDPOINT_URL_KINESIS", kinesis_local.url)
        kinesis = boto3.session.Session().client("kinesis")
        kinesis.create_stream(StreamName=stream, ShardCount=2)
        wait_stream_active(kinesis, stream)
        servers = f"127.0.0.1:{memcached.port}"
        with closing(open_ledger(load_settings(LedgerSettings, memcached_servers=servers))) as ledger:
            started = ledger.health().started_at
        assert started is not None
        while time.time() < started.timestamp() + 2:  # records must arrive after the ledger's start second
            time.sleep(0.05)
        plain = [(f"golden-{n:02d}", f"plain record {n}".encode()) for n in range(24)]
        packed = [(f"agg-{n}", f"aggregated record {n}".encode()) for n in range(8)]
        written = produce(kinesis, stream, 0, records=plain).records
        written += produce(kinesis, stream, 0, records=packed, aggregate=True, per_aggregate=3).records
        s0 = [w for w in written if w.shard_id == "shardId-000000000000"]
        s1 = [w for w in written if w.shard_id == "shardId-000000000001"]
        plain0, plain1 = (
            [w for w in s0 if w.partition_key.startswith("golden")],
            [w for w in s1 if w.partition_key.startswith("golden")],
        )
        lost_sub = next(w for w in s0 if w.sub_sequence_number == 1)
        # shard 0: all checkpointed; two records in a row and one aggregated sub-record lost; one processed twice
        # shard 1: checkpointed at its 5th record; one lost before it, everything after it not reached yet
        skipped = {plain0[3], plain0[4], lost_sub, plain1[1]}
        processed = [w for w in s0 if w not in skipped] + [w for w in s1[:5] if w not in skipped]
        with closing(open_ledger(load_settings(LedgerSettings, memcached_servers=servers))) as ledger:
            ledger.record(_ids(stream, processed), "event-1", int(time.time()))
            ledger.record(_ids(stream, [plain0[6]]), "event-2", int(time.time()))
        app = f"{stream}-app"
        dynamodb = boto3.session.Session().client("dynamodb")
        dynamodb.create_table(
            TableName=app,
            KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        for shard_id, checkpoint in (("shardId-000000000000", s0[-1]), ("shardId-000000000001", s1[4])):
            dynamodb.put_item(
                TableName=app,
                Item={
                    "leaseKey": {"S": shard_id},
                    "checkpoint": {"S": checkpoint.sequence_number},
                    "checkpointSubSequenceNumber": {"N": str(checkpoint.sub_sequence_number)},
                    "leaseOwner": {"S": "worker-1"},
                    "leaseCounter": {"N": "3"},
                },
            )
        reports, codes = {}, {}
        for fmt in ("json", "csv", "html"):
            reports[fmt] = folder / f"report.{fmt}"
            codes[fmt] = main(
                [
                    "check",
                    "--stream",
                    stream,
                    "--endpoint",
                    api_server.url,
                    "--kcl-app",
                    app,
                    "--grace",
                    "0",
                    "--settle",
                    "0",
                    "--quiet",
                    "--format",
                    fmt,
                    "--output",
                    str(reports[fmt]),
                ]
            )
    yield Scenario(stream, app, api_server.url, written, reports, codes)


def _ids(stream: str, records: list[Written]) -> list[RecordId]:
    return [RecordId(stream, w.shard_id, w.sequence_number, w.sub_sequence_number) for w in records]


def normalise(text: str, scenario: Scenario) -> str:
    """Replace what Kinesis and the clock decide with stable tokens."""
    ranks: dict[str, str] = {}
    for shard_id in sorted({w.shard_id for w in scenario.written}):
        numbers = sorted({int(w.sequence_number) for w in scenario.written if w.shard_id == shard_id})
        for rank, number in enumerate(numbers):
            ranks[str(number)] = f"<{shard_id[-2:]}#{rank}>"
    text = SEQUENCE.sub(lambda m: ranks.get(m.group(0), "<sequence>"), text)
    text = ISO_TIME.sub("<time>", text)
    text = text.replace(scenario.app, "<app>").replace(scenario.stream, "<stream>")
    return text.replace(scenario.endpoint, "<endpoint>")


def stable_json(scenario: Scenario) -> dict[str, Any]:
    document = json.loads(normalise(scenario.reports["json"].read_text(), scenario))
    document["duration_seconds"] = "<seconds>"
    document["timeline_bucket_seconds"] = "<seconds>"
    for shard in document["shards"]:
        points = shard.pop("timeline")
        shard["timeline_totals"] = [sum(p[i] for p in points) for i in (1, 2, 3)]
    return document


def compare(name: str, actual: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(actual)
    assert path.exists(), f"{path} is missing: run with UPDATE_GOLDEN=1 once and review it"
    assert actual == path.read_text(), f"{name} differs from the golden file (UPDATE_GOLDEN=1 rewrites it)"


def test_json_report_matches_the_golden_file(scenario: Scenario) -> None:
    assert scenario.codes["json"] == 1
    compare("check.json", json.dumps(stable_json(scenario), indent=2) + "\n")


def test_csv_report_matches_the_golden_file(scenario: Scenario) -> None:
    assert scenario.codes["csv"] == 1
    compare("check.csv", normalise(scenario.reports["csv"].read_text(), scenario))


# ---------------------------------------------------------------------------------------------------- HTML

PROBE = """
<script>
// test-only: what the browser laid out for each chart
const charts = [...document.querySelectorAll('svg.chart')].map(svg => ({
  shard: svg.dataset.shard,
  lines: [...svg.querySelectorAll('polyline')].map(line => {
    const box = line.getBBox();
    return {name: line.getAttribute('class'), width: box.width, height: box.height};
  }),
  marks: svg.querySelectorAll('circle.lost-mark').length,
}));
const pre = document.createElement('pre');
pre.id = 'probe';
pre.textContent = JSON.stringify(charts);
document.body.appendChild(pre);
</script>
"""
ONLY_FIRST_CHART = (
    "<style>body>*{display:none!important}body{margin:0}"
    "section.shard:first-of-type{display:block!important;margin:0}section.shard h3{display:none}</style>"
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def run_chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    binary = chromium()
    assert binary is not None
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # the page must need no network
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=90)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """A PNG's rows of RGBA/RGB pixels (8 bits, not interlaced: what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, idat, header = 8, b"", b""
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        offset += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and color in (2, 6) and header[12] == 0
    channels = 4 if color == 6 else 3
    raw = zlib.decompress(idat)
    stride = width * channels
    rows: list[bytes] = []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1 : start + 1 + stride])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up = previous[i]
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                corner = previous[i - channels] if i >= channels else 0
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        rows.append(bytes(line) if channels == 3 else bytes(b for j, b in enumerate(line) if j % 4 != 3))
        previous = line
    return width, height, rows


def count_near(rows: list[bytes], color: str, tolerance: int = 40) -> int:
    target = bytes.fromhex(color.lstrip("#"))
    hits = 0
    for row in rows:
        for x in range(0, len(row), 3):
            if all(abs(row[x + c] - target[c]) <= tolerance for c in range(3)):
                hits += 1
    return hits


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (make setup installs it)")
def test_html_report_opens_in_chromium_with_a_chart_per_shard(scenario: Scenario, tmp_path: Path) -> None:
    assert scenario.codes["html"] == 1
    page = scenario.reports["html"].read_text()
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))

    dom = run_chromium(["--dump-dom", probed.as_uri()], tmp_path / "profile-1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    probe = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert probe, dom.stdout[-2000:]
    charts = json.loads(probe.group(1).replace("&quot;", '"'))
    assert [c["shard"] for c in charts] == ["shardId-000000000000", "shardId-000000000001"]
    for chart in charts:
        assert [line["name"] for line in chart["lines"]] == ["written", "processed", "lost"]
        written = chart["lines"][0]
        assert written["width"] > 100 and written["height"] > 50  # laid out, rising over the chart
    assert [c["marks"] for c in charts] == [1, 1] or sum(c["marks"] for c in charts) >= 2

    framed = tmp_path / "first-chart.html"
    framed.write_text(page.replace("</head>", ONLY_FIRST_CHART + "</head>"))
    shot = tmp_path / "chart.png"
    result = run_chromium([f"--screenshot={shot}", "--window-size=540,240", framed.as_uri()], tmp_path / "profile-2")
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    width, height, rows = png_pixels(shot)
    assert (width, height) == (540, 240)
    drawn = {
        name: count_near(rows, color)
        for name, color in (("written", "#1f77b4"), ("processed", "#2ca02c"), ("lost", "#d62728"))
    }
    assert drawn["processed"] > 200 and drawn["written"] > 20 and drawn["lost"] > 100, drawn
