"""Time, one way: ISO 8601 in UTC for everything we write, one parser for what we read, and one deadline-polling loop.

Every timestamp streamwreck writes (events, reports, logs, state files) is :func:`iso` — UTC, a ``Z`` suffix,
milliseconds unless told otherwise — so that two documents compare as text. :func:`wait_until` is the one loop that
polls a condition against a monotonic deadline; callers name what they wait for, so a timeout says it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TypeVar

from streamwreck.core.errors import WaitTimeout

T = TypeVar("T")

Precision = Literal["seconds", "milliseconds"]


def iso(moment: datetime | float, precision: Precision = "milliseconds") -> str:
    """``2026-12-01T09:30:00.123Z`` for an aware datetime or Unix seconds (naive datetimes are taken as UTC)."""
    if not isinstance(moment, datetime):
        moment = datetime.fromtimestamp(moment, UTC)
    elif moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec=precision).replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """An ISO 8601 instant (``Z`` or an offset; naive is UTC) as an aware datetime; ValueError if it is not one."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    what: str,
    interval: float = 0.05,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``condition`` until it returns something truthy and return that; raise
    :class:`~streamwreck.core.errors.WaitTimeout` naming ``what`` once ``timeout`` seconds have passed. The
    condition is always called at least once, and once more at the deadline, so a slow machine that overshoots an
    interval still gets its last look."""
    deadline = clock() + timeout
    while True:
        result = condition()
        if result:
            return result
        remaining = deadline - clock()
        if remaining <= 0:
            raise WaitTimeout(f"{what}: not after {timeout:g} s")
        sleep(min(interval, remaining))
