"""Pull/push progress shown as Docker's CLI shows it.

On a terminal each layer owns a line that is rewritten in place
("abc123def456: Downloading [=====>   ]  1.2MB/10MB"); elsewhere only the
status changes are printed, one per line ("abc123def456: Pull complete"),
exactly the lines Docker prints when its output is not a tty.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_size(size: float) -> str:
    """go-units HumanSize: decimal units, 4 significant digits (``1.235MB``)."""
    i = 0
    while size >= 1000 and i < len(_UNITS) - 1:
        size /= 1000.0
        i += 1
    return f"{size:.4g}{_UNITS[i]}"


def _duration(seconds: float) -> str:
    """A Go ``time.Duration`` rounded to seconds: ``1m5s``, ``3s``."""
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def render_bar(current: int, total: int, width: int = 200, start: float = 0.0) -> str:
    """Docker's JSONProgress.String: ``[===>   ]  1.2MB/10MB 3s``."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    percentage = min(int(current / total * 100) // 2, 50)
    box = ""
    if width > 110:
        box = "[" + "=" * percentage + ">" + " " * max(50 - percentage, 0) + "] "
    numbers = f"{human_size(current):>8}/{human_size(total)}"
    if current > total:
        numbers = f"{human_size(current):>8}"
    left = ""
    if width > 50 and current > 0 and start > 0 and percentage < 50:
        elapsed = time.time() - start
        left = " " + _duration(elapsed / current * (total - current))
    return box + numbers + left


class Progress:
    """Thread-safe progress output for one pull or push."""

    def __init__(self, out: TextIO | None = None, quiet: bool = False, tty: bool | None = None):
        self.out = out or sys.stdout
        self.quiet = quiet
        if tty is None:
            try:
                tty = self.out.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._start: dict[str, float] = {}

    def _width(self) -> int:
        try:
            return os.get_terminal_size(self.out.fileno()).columns
        except (OSError, AttributeError, ValueError):
            return 200

    def line(self, text: str) -> None:
        """A line without a layer ID; it ends the block of updatable layer lines."""
        if self.quiet:
            return
        with self._lock:
            self._ids.clear()
            self.out.write(text + "\n")
            self.out.flush()

    def status(self, ident: str, text: str) -> None:
        """A layer's new state ("Pulling fs layer", "Pull complete")."""
        self._show(ident, text, "")

    def bar(self, ident: str, action: str, current: int, total: int, final: bool = False) -> None:
        """Transfer progress; shown on terminals only, at most ten times a second per layer."""
        if self.quiet or not self.tty:
            return
        now = time.monotonic()
        if not final and now - self._last.get(ident, 0.0) < 0.1:
            return
        self._last[ident] = now
        start = self._start.setdefault(ident, time.time())
        self._show(ident, action, render_bar(current, total, self._width(), start))

    def _show(self, ident: str, text: str, bar: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if not self.tty:
                self.out.write(f"{ident}: {text}\n")
                self.out.flush()
                return
            line = self._ids.get(ident)
            if line is None:
                line = self._ids[ident] = len(self._ids)
                self.out.write("\n")
            diff = len(self._ids) - line
            up = f"\x1b[{diff}A" if diff else ""
            down = f"\x1b[{diff}B" if diff else ""
            rendered = f"{ident}: {text} {bar}" if bar else f"{ident}: {text}"
            self.out.write(f"{up}\x1b[2K\r{rendered}\r{down}")
            self.out.flush()
