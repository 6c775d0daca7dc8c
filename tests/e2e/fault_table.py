"""The fault tests' figures (tests/e2e/test_faults.py): one row per fault, printed as each fault is judged and written
as a markdown table into docs/FAULTS.md when the module ends. The table always has every fault, in the same order;
a fault that did not finish in this run says so in its row."""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streamwreck.core.clock import iso

FAULTS_DOC = Path(__file__).resolve().parents[2] / "docs" / "FAULTS.md"

# Fault key -> what was done, in the table's order.
FAULTS = {
    "recorder": "recorder SIGKILLed mid-run, restarted",
    "daemon": "KCL daemon + record processors SIGKILLed mid-run, restarted",
    "memcached": "memcached restarted mid-run (comes back empty)",
    "two-workers": "two KCL workers share 4 shards; one SIGKILLed, the other takes over",
    "api": "reconcile API SIGKILLed during a check, restarted",
    "moto": "moto (SNS, SQS, DynamoDB) SIGSTOPped past the publish retries, SIGCONTed",
}

HEADER = """\
# Faults survived, with numbers

Written by `tests/e2e/test_faults.py` (marker `e2e`; `make test` runs it) at the end of its run; do not edit by hand.
Each fault is made on one local stack (`streamwreck local up --shards 4 --skip-every 5`) while records flow through
the demo rule, and then `streamwreck check --kcl-app ... --grace 0 --format json` must name exactly the records the
demo rule skipped as lost.

- **falsely lost**: records the checker called `lost` that the consumer processed (goal 0).
- **lost missed**: records the demo rule skipped that the checker called `processed` or `duplicate` (goal 0).
- **unknown**: records the ledger could not vouch for (only after memcached forgot them).
- **duplicates**: records of the fault's run processed in two distinct events (a replay; allowed).
- **recovery**: seconds from the fault's end (the restart, the SIGCONT; the SIGKILL for the two workers) until the
  consumer had caught up (every record it processed in the ledger, every shard's checkpoint past its last record);
  for the API, until it answered again (its /readyz).
- **checked**: records in the stream at the check (the stream grows fault after fault).

The stack runs with `STREAMWRECK_PUBLISH_ATTEMPTS=1` (an SNS outage ends the record processor with status 75 after
about 30 s instead of about 4 minutes) and `STREAMWRECK_RECORDER_VISIBILITY_TIMEOUT=20` (an SQS message a killed
recorder had received is delivered again after 20 s instead of 60 s): both bound the test's time, neither changes
what is judged.
"""

NOTES = """
What the faults show (beyond the table):

- **Recorder killed.** A message it had received but not deleted comes back after the visibility timeout; an event
  stored twice counts once (by its event id): no duplicate, nothing lost; the recovery time is about that timeout.
- **KCL daemon killed.** The record processors die with their unpublished buffers; the restarted worker (same worker
  id) resumes its own leases from their checkpoints, which never pass an unpublished record: the buffer is processed
  again, and only what was published but not yet checkpointed can come twice.
- **memcached restarted.** The bucket ledger begins again at its first write after the restart (the recorder's,
  after its back-off): every record that arrived before then is `unknown` (those the new ledger holds are
  `processed`), never `lost`; a check up to the restart is `unreliable` (exit 3). Records that arrive after it are
  exact again.
- **Two workers, the leader killed.** KCL 3 assigns leases from its leader only, and the leader's lock (the DynamoDB
  lock client's, in the coordinator state table) lasts 2 minutes (`DynamoDBLockBasedLeaderDecider`, not a
  property): the killed leader's shards wait about 2.5 minutes for the other worker. (A worker that is not the
  leader is not killed here.) With worker metrics off (emulators), KCL 3 balances on lease throughput: a second
  worker gets leases only while records flow (15-75 s here).
- **API killed during a check.** The checker retries the connection (about 2 s), then exits 2 with one line on
  stderr and nothing on stdout: no verdict from missing answers.
- **moto unreachable.** Each record processor gives up after its publish attempts and exits 75; the daemon stops; no
  shard's checkpoint passes its first unpublished record (the test reads the lease table before the restart); the
  restarted worker processes them again. Duplicates: a publish whose answer timed out was still carried out by moto
  once it went on, and its records came again from the checkpoint.
"""

COLUMNS = (
    "fault",
    "checked",
    "falsely lost",
    "lost missed",
    "unknown",
    "duplicates",
    "recovery (s)",
    "verdict",
    "note",
)


@dataclass
class Figures:
    fault: str
    checked: int
    falsely_lost: int
    missed: int
    unknown: int
    duplicates: int
    recovery_seconds: float
    verdict: str
    note: str = ""

    def cells(self) -> list[str]:
        return [
            FAULTS[self.fault],
            str(self.checked),
            str(self.falsely_lost),
            str(self.missed),
            str(self.unknown),
            str(self.duplicates),
            f"{self.recovery_seconds:.1f}",
            self.verdict,
            self.note,
        ]

    def line(self) -> str:
        return "FAULT " + " | ".join(f"{name}: {cell}" for name, cell in zip(COLUMNS, self.cells(), strict=True))


def render(figures: dict[str, Figures], seconds: float) -> str:
    rows = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for key, label in FAULTS.items():
        found = figures.get(key)
        cells = found.cells() if found else [label, *["-"] * (len(COLUMNS) - 2), "not measured in this run"]
        rows.append("| " + " | ".join(cells) + " |")
    machine = f"{platform.system()} {platform.machine()}, Python {sys.version_info.major}.{sys.version_info.minor}"
    footer = f"{NOTES}\nRun at {iso(time.time(), 'seconds')} on {machine}; the module took {seconds:.0f} s.\n"
    return HEADER + "\n" + "\n".join(rows) + "\n" + footer


def write(figures: dict[str, Figures], seconds: float, path: Path = FAULTS_DOC) -> None:
    text = render(figures, seconds)
    path.write_text(text)
    print("\n" + text, file=sys.stderr)
