"""Processes dockyard starts and later ends by PID (monitors, DNS server, port proxies)."""

from __future__ import annotations

import os
import time


def pid_alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie (which init may be slow to reap)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def reap(pid: int) -> bool:
    """Collect ``pid``'s exit if it is our child and has ended; whether it was."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait for ``pid`` to end (reaping it if it is our child); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if reap(pid) or not pid_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
