"""What many tests share: the command to start streamwreck with, and the one way to wait for a condition.

Tests wait on conditions, never on sleeps: :func:`wait_until` polls against a deadline and fails naming what it
waited for (it is the product's own loop, :func:`streamwreck.core.clock.wait_until`).
"""

from __future__ import annotations

from streamwreck.core.clock import wait_until
from streamwreck.core.commands import streamwreck_argv

STREAMWRECK = streamwreck_argv()[0]

__all__ = ["STREAMWRECK", "streamwreck_argv", "wait_until"]
