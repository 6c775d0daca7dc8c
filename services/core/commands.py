"""How one streamwreck process starts another: the ``streamwreck`` console script beside this Python."""

from __future__ import annotations

import sys
from pathlib import Path


def streamwreck_argv(*arguments: str) -> list[str]:
    """``[.../bin/streamwreck, *arguments]``, or ``python -m streamwreck.cli.main`` where the script is missing."""
    script = Path(sys.executable).with_name("streamwreck")
    if script.exists():
        return [str(script), *arguments]
    return [sys.executable, "-m", "streamwreck.cli.main", *arguments]
