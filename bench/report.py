"""Write a benchmark's figures into docs/PERFORMANCE.md: each benchmark owns one section, replaced on every run.

A section is the command that produced it, when and where it ran, and its figures as a table; the ratios are what
to compare between runs (these machines are shared and noisy), the absolute figures say where the machine is.
"""

from __future__ import annotations

import os
import platform
import re
import time
from collections.abc import Sequence
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
HEAD = """# Performance

Measured by `make bench` (scripts in `bench/`), each figure beside a baseline measured in the same run on the same
machine: the ratios are what to compare between runs. Each section below is rewritten by its script.
"""


def write_section(name: str, command: str, title: str, rows: Sequence[tuple[str, str, str]], notes: str = "") -> None:
    """Replace (or add) the section ``name``: rows of (figure, value, goal or baseline)."""
    table = "\n".join(f"| {figure} | {value} | {goal} |" for figure, value, goal in rows)
    section = (
        f"<!-- bench:{name} -->\n## {title}\n\n`{command}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}\n\n| figure | measured | goal / baseline |\n"
        f"|---|---|---|\n{table}\n" + (f"\n{notes.strip()}\n" if notes.strip() else "") + f"<!-- /bench:{name} -->"
    )
    text = DOC.read_text() if DOC.exists() else HEAD
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)
    print(f"written: {DOC.relative_to(DOC.parent.parent)} ({name})")
