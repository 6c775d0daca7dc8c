"""What many tests share: the command to start streamwreck with, and the one way to wait for a condition.

Tests wait on conditions, never on sleeps: :func:`wait_until` polls against a deadline and fails naming what it
waited for (it is the product's own loop, :func:`streamwreck.core.clock.wait_until`).
"""

from __future__ import annotations

from typing import Any

from streamwreck.core.clock import wait_until
from streamwreck.core.commands import streamwreck_argv

STREAMWRECK = streamwreck_argv()[0]

__all__ = ["STREAMWRECK", "by_label", "scrape", "streamwreck_argv", "wait_until"]


def scrape(url: str) -> list[Any]:
    """Every sample a Prometheus ``/metrics`` URL serves (prometheus_client's ``Sample``: name, labels, value)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url, timeout=10).text
    return [sample for family in text_string_to_metric_families(text) for sample in family.samples]


def by_label(samples: list[Any], name: str, label: str) -> dict[str, float]:
    """The samples named ``name`` summed per value of ``label``."""
    sums: dict[str, float] = {}
    for sample in samples:
        if sample.name == name:
            key = sample.labels.get(label, "")
            sums[key] = sums.get(key, 0.0) + sample.value
    return sums
