"""A container's run state: what the store recorded, refreshed from its monitor.

The monitor (``dockyard.runtime.monitor``) owns the truth while it lives: it
writes ``state`` and ``health.json`` in the container's run directory. The
database keeps the last state a command persisted. ``refresh`` merges the two
so that ``ps`` and ``inspect`` never show running what is not (a monitor that
died, a machine that restarted).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard import records
from dockyard.procs import pid_alive
from dockyard.records import field, record

ZERO_TIME = "0001-01-01T00:00:00Z"
LIVE_STATUSES = ("running", "restarting", "paused")


def now_rfc3339() -> str:
    """UTC now with nanosecond digits, as Docker prints times."""
    return format_ns(time.time_ns())


def format_ns(ns: int) -> str:
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{frac:09d}Z"


def parse_time(text: str) -> float:
    """Seconds since the epoch from an RFC 3339 time with up to nanosecond digits."""
    if not text or text.startswith("0001-"):
        return 0.0
    base, _, rest = text.partition(".")
    frac = ""
    if rest:
        digits = ""
        for ch in rest:
            if not ch.isdigit():
                break
            digits += ch
        frac = digits
    base = base.rstrip("Z")
    # by hand: datetime.strptime loads the _strptime, calendar and locale modules
    year, month, day = int(base[0:4]), int(base[5:7]), int(base[8:10])
    hour, minute, second = int(base[11:13]), int(base[14:16]), int(base[17:19])
    moment = datetime(year, month, day, hour, minute, second, tzinfo=UTC)
    return moment.timestamp() + (float(f"0.{frac}") if frac else 0.0)


@record
class ContainerState:
    status: str = "created"  # created running paused restarting removing exited dead
    pid: int = 0
    exit_code: int = 0
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    oom_killed: bool = False
    error: str = ""
    monitor_pid: int = 0
    health: dict[str, Any] | None = field(default=None)

    @property
    def running(self) -> bool:
        return self.status in LIVE_STATUSES

    def to_dict(self) -> dict[str, Any]:
        return records.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerState:
        known = {f.name for f in records.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_monitor_state(run_dir: Path) -> dict[str, str] | None:
    """The monitor's ``key=value`` state file, or None when there is none."""
    try:
        text = (run_dir / "state").read_text()
    except OSError:
        return None
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key] = value
    return values


def monitor_is_alive(run_dir: Path) -> bool:
    """True while the container's monitor process runs (robust to PID reuse)."""
    try:
        pid = int((run_dir / "monitor.pid").read_text())
    except (OSError, ValueError):
        return False
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False
    return b"dockyard-monitor" in cmdline or b"dockyard" in cmdline


def merge_monitor_state(state: ContainerState, values: dict[str, str]) -> ContainerState:
    """Copy what the monitor wrote over the recorded state."""
    merged = records.replace(state)
    merged.status = values.get("status", merged.status) or merged.status
    for key in ("pid", "exit_code", "restart_count", "monitor_pid"):
        if values.get(key, "").lstrip("-").isdigit():
            setattr(merged, key, int(values[key]))
    for key in ("started_at", "finished_at", "error"):
        if values.get(key):
            setattr(merged, key, values[key])
    merged.oom_killed = values.get("oom_killed") == "1"
    if merged.status == "failed":
        merged.status = "exited"
    return merged
