"""Logs of a project's containers, prefixed and coloured per service like Compose.

``web-1  | line``: the container's name without the project prefix, padded to
the longest one. Entries come from the containers' json-file logs (the
monitor writes them), so nothing has to be attached while containers run;
following polls the files, and notices when a container's monitor is gone.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from dockyard.containers.logs import parse_entry, parse_rfc3339_ns, rotated_files
from dockyard.containers.state import monitor_is_alive
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.containers.manager import Container

# Compose's rainbow: cyan, yellow, green, magenta, blue, then their bright forms.
COLORS = ("36", "33", "32", "35", "34", "96", "93", "92", "95", "94")


def display_name(container: Container, project: str) -> str:
    return container.name.removeprefix(f"{project}-")


class Printer:
    """Writes prefixed lines from many threads without mixing them."""

    def __init__(
        self,
        out: IO[str] | None = None,
        *,
        color: bool | None = None,
        timestamps: bool = False,
        prefix: bool = True,
    ) -> None:
        self.out = out or sys.stdout
        if color is None:
            color = self.out.isatty() and not os.environ.get("NO_COLOR")
        self.color = color
        self.timestamps = timestamps
        self.prefix = prefix
        self.width = 0
        self.colors: dict[str, str] = {}
        self.lock = threading.Lock()

    def register(self, name: str, service: str) -> None:
        with self.lock:
            self.width = max(self.width, len(name))
            if service not in self.colors:
                self.colors[service] = COLORS[len(self.colors) % len(COLORS)]

    def _prefix(self, name: str, service: str) -> str:
        if not self.prefix:
            return ""
        text = f"{name.ljust(self.width)}  | "
        if self.color:
            return f"\x1b[{self.colors.get(service, COLORS[0])}m{text}\x1b[0m"
        return text

    def lines(self, name: str, service: str, entries: list[tuple[str, str]]) -> None:
        """(text, time) entries of one container; text keeps its newline."""
        if not entries:
            return
        with self.lock:
            head = self._prefix(name, service)
            parts = []
            for text, stamp in entries:
                if self.timestamps and stamp:
                    text = f"{stamp} {text}"
                if not text.endswith("\n"):
                    text += "\n"
                parts.append(head + text)
            try:
                self.out.write("".join(parts))
                self.out.flush()
            except BrokenPipeError:
                pass

    def note(self, text: str) -> None:
        with self.lock:
            self.out.write(text + "\n")
            self.out.flush()


def _read_lines(path: Path, start: int = 0) -> tuple[list[bytes], int]:
    """Complete lines of a file from ``start``; the offset after the last one."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return [], start
    end = data.rfind(b"\n")
    if end < 0:
        return [], start
    return data[:end].split(b"\n"), start + end + 1


def read_entries(
    log_path: Path, tail: int | None = None, since_ns: int | None = None
) -> tuple[list[tuple[int, str, str]], int]:
    """All (ns, text, stamp) entries of a container's log and its rotations; end offset."""
    entries: list[tuple[int, str, str]] = []
    end = 0
    for path in [*rotated_files(log_path), log_path]:
        lines, offset = _read_lines(path)
        if path == log_path:
            end = offset
        for raw in lines:
            entry = parse_entry(raw)
            if entry is None:
                continue
            text, _stream, stamp = entry
            try:
                ns = parse_rfc3339_ns(stamp)
            except ValueError:
                ns = 0
            if since_ns is not None and ns < since_ns:
                continue
            entries.append((ns, text, stamp))
    if tail is not None:
        entries = entries[-tail:] if tail > 0 else []
    return entries, end


def print_logs(
    containers: list[Container],
    ctx: Context,
    project: str,
    printer: Printer,
    *,
    tail: int | None = None,
    since_ns: int | None = None,
) -> dict[str, int]:
    """What the containers logged so far, in time order; returns each log's end offset."""
    merged: list[tuple[int, int, str, str, str, str]] = []
    offsets: dict[str, int] = {}
    for i, c in enumerate(containers):
        name = display_name(c, project)
        service = c.spec.labels.get("com.docker.compose.service", name)
        printer.register(name, service)
        entries, offsets[c.id] = read_entries(ctx.containers.log_path(c.id), tail, since_ns)
        merged.extend((ns, i, name, service, text, stamp) for ns, text, stamp in entries)
    merged.sort(key=lambda e: (e[0], e[1]))
    for _ns, _i, name, service, text, stamp in merged:
        printer.lines(name, service, [(text, stamp)])
    return offsets


@record
class _Stream:
    container_id: str
    name: str
    service: str
    log_path: Path
    run_dir: Path
    pos: int
    inode: int = 0
    pending: bytes = b""
    done: bool = False
    added: float = field(default_factory=time.time)
    seen_alive: bool = False


class Follower:
    """Follows many containers' logs in one thread until stopped or all have exited.

    ``on_exit(container_id, name, exit_code)`` runs (in the follower thread) for
    each container whose monitor is gone once its log is drained.
    """

    def __init__(
        self,
        ctx: Context,
        printer: Printer,
        on_exit: Callable[[str, str, int], None] | None = None,
        *,
        announce_exit: bool = True,
        interval: float = 0.1,
    ) -> None:
        from dockyard.compose.runner import Contexts

        self.contexts = Contexts(ctx)
        self.paths = ctx.paths
        self.printer = printer
        self.on_exit = on_exit
        self.announce_exit = announce_exit
        self.interval = interval
        self.streams: dict[str, _Stream] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._loop, name="compose-logs", daemon=True)

    def add(self, container: Container, project: str, offset: int | None = None) -> None:
        """Follow a container from ``offset`` (default: its log's current end)."""
        log_path = self.paths.container_dir(container.id) / f"{container.id}-json.log"
        if offset is None:
            try:
                offset = log_path.stat().st_size
            except OSError:
                offset = 0
        name = display_name(container, project)
        service = container.spec.labels.get("com.docker.compose.service", name)
        self.printer.register(name, service)
        with self.lock:
            current = self.streams.get(container.id)
            if current is not None and not current.done:
                return
            self.streams[container.id] = _Stream(
                container.id,
                name,
                service,
                log_path,
                self.paths.container_run_dir(container.id),
                offset,
                _inode(log_path),
            )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Print what is left and end the thread."""
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()

    def active(self) -> int:
        with self.lock:
            return sum(1 for s in self.streams.values() if not s.done)

    def _loop(self) -> None:
        with self.contexts.get() as ctx:
            while True:
                final = self.stopping.is_set()
                with self.lock:
                    streams = [s for s in self.streams.values() if not s.done]
                for stream in streams:
                    self._poll(ctx, stream, final)
                if final:
                    return
                time.sleep(self.interval)

    def _poll(self, ctx: Context, s: _Stream, final: bool) -> None:
        alive = monitor_is_alive(s.run_dir)  # before reading: a last read then sees all
        self._read(s)
        s.seen_alive = s.seen_alive or alive
        if alive and not final:
            return
        if not alive:
            code = _exit_code(ctx, s.container_id, None if s.seen_alive else s.added)
            if code is None:
                return  # not started yet (it was added just before its start)
            s.done = True
            if self.announce_exit:
                self.printer.note(f"{s.name} exited with code {code}")
            with self.changed:
                self.changed.notify_all()
            if self.on_exit is not None:
                self.on_exit(s.container_id, s.name, code)

    def _read(self, s: _Stream) -> None:
        inode = _inode(s.log_path)
        if inode and s.inode and inode != s.inode:  # rotated: finish the old file first
            rotated = s.log_path.with_name(s.log_path.name + ".1")
            lines, _ = _read_lines(rotated, s.pos)
            self._emit(s, lines)
            s.pos, s.inode = 0, inode
        elif inode and not s.inode:
            s.inode = inode
        try:
            size = s.log_path.stat().st_size
        except OSError:
            return
        if size < s.pos:
            s.pos = 0  # truncated
        if size == s.pos:
            return
        lines, s.pos = _read_lines(s.log_path, s.pos)
        self._emit(s, lines)

    def _emit(self, s: _Stream, lines: list[bytes]) -> None:
        entries = []
        for raw in lines:
            entry = parse_entry(raw)
            if entry is not None:
                entries.append((entry[0], entry[2]))
        self.printer.lines(s.name, s.service, entries)

    def wait_change(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except OSError:
        return 0


def _exit_code(ctx: Context, container_id: str, started_after: float | None) -> int | None:
    """The exit code of a container whose monitor is gone; None if it has not started."""
    from dockyard.errors import DockyardError

    try:
        c = ctx.containers.get(container_id)
    except DockyardError:
        return 0  # removed
    if c.state.status == "created":
        return None
    if started_after is not None:
        from dockyard.containers.state import parse_time

        try:
            if parse_time(c.state.started_at) < started_after:
                return None  # the state of an earlier run
        except (ValueError, TypeError):
            return None
    for _ in range(50):
        if not c.running:
            break
        time.sleep(0.02)
        try:
            c = ctx.containers.get(container_id)
        except DockyardError:
            return 0
    return int(c.state.exit_code)
