"""Process groups, through psutil: which processes a part of the stack has, whether it is alive, and stopping it.

Every process of the stack is launched in its own session, so it leads a process group that holds its children too
(the KCL daemon's record processors). A pid alone does not name a process for long: with its start time
(:func:`start_time`) it does, and a pid reused by another program is never taken for ours nor signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

from streamwreck.core.clock import wait_until
from streamwreck.core.errors import WaitTimeout

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of start times, as /proc/<pid>/stat counts them


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks since boot (as /proc/<pid>/stat has it: a clock change does not move
    it); None if there is no such process."""
    try:
        return _ticks(psutil.Process(pid))
    except psutil.Error:
        return None


def _ticks(process: psutil.Process) -> int:
    return round((process.create_time() - psutil.boot_time()) * CLOCK_TICKS)


def _ours(process: psutil.Process, started: int | None) -> bool:
    """Not a zombie, and (``started`` known) the process that started then."""
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or _ticks(process) == started
    except psutil.Error:
        return False


def alive(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, ``started`` given, is the process that started then."""
    try:
        return _ours(psutil.Process(pid), started)
    except psutil.Error:
        return False


def group_members(leader: int, started: int | None = None) -> list[psutil.Process]:
    """The live processes of the process group led by ``leader``: the process that started at ``started``, if given.

    Linux does not hand out a pid while a process group of that id has members, so a ``leader`` pid held by a
    process that started at another time means our group is gone and the id is another program's now (pids wrap
    around quickly on a busy machine); with the leader gone, what is left of its group is ours."""
    if started is not None:
        with contextlib.suppress(psutil.Error):
            if _ticks(psutil.Process(leader)) != started:
                return []
    members = []
    for pid in psutil.pids():
        try:
            if os.getpgid(pid) != leader:
                continue
            process = psutil.Process(pid)
        except (OSError, psutil.Error):
            continue
        if _ours(process, None):
            members.append(process)
    return members


def stop_group(leader: int, started: int | None, grace: float, *, leader_first: bool = True) -> bool:
    """Stop the process group led by ``leader``; True if anything was running.

    With ``leader_first`` SIGTERM goes to the leader alone, so that a part with children shuts them down in its
    order (the processor: the KCL daemon asks its record processors to finish); else to the whole group. Whatever is
    left after ``grace`` gets SIGTERM, and after one more second SIGKILL."""
    if not group_members(leader, started):
        return False
    steps = ((signal.SIGTERM, leader_first, grace), (signal.SIGTERM, False, 1.0), (signal.SIGKILL, False, 5.0))
    for sig, leader_only, wait in steps:
        for process in group_members(leader, started):
            if process.pid == leader or not leader_only:
                with contextlib.suppress(psutil.Error):  # psutil checks the pid was not reused meanwhile
                    process.send_signal(sig)
        with contextlib.suppress(WaitTimeout):
            return wait_until(lambda: not group_members(leader, started), wait, f"process group {leader} to exit")
    return True


def log_holders(folder: Path) -> list[int]:
    """Pids of the processes with a file under ``folder`` open (every part of a stack writes its log there)."""
    folder = folder.resolve()
    found = []
    for process in psutil.process_iter(["open_files"]):
        if any(Path(file.path).is_relative_to(folder) for file in process.info["open_files"] or ()):
            found.append(process.pid)
    return found
