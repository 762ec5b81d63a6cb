"""A lost machine, for the crash-recovery test and benchmark: SIGKILL a process and every
process below it.

Killing a ``prefect worker``'s process group is not enough: in Prefect 3.9.1 a process worker
starts each flow run's process (``python -m prefect.engine``) in a session of its own
(``prefect.runner._workspace_starter``: ``isolate_process_group``), so the runs outlive their
worker and finish (measured: alive, their heartbeat stays fresh and ``fetchflow recover``
leaves them alone). A machine that dies takes them
all: :func:`kill_machine` freezes the whole tree first (SIGSTOP, so nothing new starts), then
kills every process in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

__all__ = ["kill_machine", "process_tree"]


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def kill_machine(process: subprocess.Popen[bytes]) -> list[int]:
    """SIGKILL ``process`` (started with ``start_new_session``), its process group and every
    process below it; returns the pids killed."""
    frozen: set[int] = set()
    while True:
        tree = set(process_tree(process.pid))
        if tree <= frozen:
            break
        for pid in tree - frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        frozen |= tree
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in frozen:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(30)
    return sorted(frozen)
