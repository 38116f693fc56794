"""Reading Docker json-file logs as the monitor writes them (``docker logs``).

Each line of FILE (and of its rotated predecessors FILE.1 ... FILE.N, FILE.N
oldest) is ``{"log": "...", "stream": "stdout|stderr", "time": RFC3339Nano}``.
A "log" without a trailing newline is a partial line; it is printed as is.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

from dockyard.errors import InvalidArgument

Target = int | IO[bytes]  # an fd or a binary stream
_BLOCK = 65536


def rotated_files(log_path: Path) -> list[Path]:
    """FILE.N ... FILE.1 that exist, oldest first (FILE itself not included)."""
    found = []
    n = 1
    while True:
        p = log_path.with_name(f"{log_path.name}.{n}")
        if not p.exists():
            break
        found.append(p)
        n += 1
    return found[::-1]


# ---- time values ----------------------------------------------------------------

_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[Tt](\d\d)(?::(\d\d)(?::(\d\d)(?:\.(\d+))?)?)?)?"
    r"([Zz]|[+-]\d\d:\d\d)?"
)
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


_seconds_cache: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM:SS" -> unix seconds


def parse_rfc3339_ns(value: str) -> int:
    """An RFC3339 time ("2026-11-28T03:08:37.123456789Z") as unix nanoseconds."""
    if len(value) >= 20 and value[-1] == "Z" and value[10] == "T":  # fast path: our own logs
        head = value[:19]
        secs = _seconds_cache.get(head)
        if secs is None:
            if len(_seconds_cache) > 4096:
                _seconds_cache.clear()
            fields = (value[0:4], value[5:7], value[8:10], value[11:13], value[14:16], value[17:19])
            secs = _seconds_cache[head] = calendar.timegm((*map(int, fields), 0, 0, 0))
        frac = value[20:-1] if value[19] == "." else ""
        return secs * 1_000_000_000 + int((frac + "000000000")[:9])
    m = _RFC3339.fullmatch(value)
    if not m or m.group(8) is None:
        raise ValueError(f"not an RFC3339 time: {value!r}")
    return _time_from_match(m, local=False)


def _time_from_match(m: re.Match[str], *, local: bool) -> int:
    y, mo, d, h, mi, s, frac, zone = m.groups()
    fields = (int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0), 0, 0, -1)
    if not (1 <= fields[1] <= 12 and 1 <= fields[2] <= 31 and fields[3] < 24 and fields[4] < 60):
        raise ValueError(f"time out of range: {m.group(0)!r}")
    if local:
        secs = int(time.mktime(fields))
    else:
        secs = calendar.timegm(fields)
        if zone and zone not in "Zz":
            offset = int(zone[1:3]) * 3600 + int(zone[4:6]) * 60
            secs -= offset if zone[0] == "+" else -offset
    return secs * 1_000_000_000 + int(((frac or "") + "000000000")[:9])


def parse_time_filter(value: str, now: float | None = None) -> float:
    """Docker's --since/--until value as a unix timestamp (seconds).

    Accepts RFC3339 dates/times (local time without a zone, like Docker),
    unix timestamps ("1700000000", "1700000000.5") and Go durations
    ("10m", "1h30m", "1.5s") counted back from now.
    """
    value = value.strip()
    now = time.time() if now is None else now
    if value != "0" and value:
        total, pos = 0.0, 0
        sign = -1.0 if value.startswith("-") else 1.0
        body = value.lstrip("+-")
        for dm in _DURATION.finditer(body):
            if dm.start() != pos:
                break
            total += float(dm.group(1)) * _UNITS[dm.group(2)]
            pos = dm.end()
        else:
            if pos == len(body) and pos:
                return now - sign * total
    try:
        m = _RFC3339.fullmatch(value)
        if m and "-" in value:
            ns = _time_from_match(m, local=m.group(8) is None)
            return ns // 1_000_000_000 + (ns % 1_000_000_000) / 1e9
        return float(value)
    except (ValueError, OverflowError):
        raise InvalidArgument(f"failed to parse value as time or duration: {value!r}") from None


def _fixed_timestamp(value: str) -> str:
    """The entry time as ``docker logs -t`` prints it: 9 fraction digits, UTC."""
    if len(value) >= 20 and value[-1] == "Z" and value[10] == "T":
        frac = value[20:-1] if value[19] == "." else ""
        return f"{value[:19]}.{(frac + '000000000')[:9]}Z "
    ns = parse_rfc3339_ns(value)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000))
    return f"{base}.{ns % 1_000_000_000:09d}Z "


# ---- output -------------------------------------------------------------------------


class _Output:
    """Batches consecutive entries of one stream; keeps stdout/stderr order."""

    def __init__(self, stdout: Target, stderr: Target) -> None:
        self.targets = {"stdout": stdout, "stderr": stderr}
        self.stream = "stdout"
        self.parts: list[str] = []
        self.size = 0

    def add(self, stream: str, text: str) -> None:
        if stream != self.stream or self.size >= _BLOCK:
            self.flush()
            self.stream = stream
        self.parts.append(text)
        self.size += len(text)

    def flush(self) -> None:
        if not self.parts:
            return
        target = self.targets.get(self.stream, self.targets["stdout"])
        data = "".join(self.parts).encode("utf-8", "replace")
        self.parts, self.size = [], 0
        if isinstance(target, int):
            view = memoryview(data)
            while view:
                view = view[os.write(target, view) :]
        else:
            target.write(data)
            target.flush()


_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]  # the C string scanner


def parse_entry(raw: bytes) -> tuple[str, str, str] | None:
    """(log, stream, time) of one json-file line; None if torn or not an entry."""
    line = raw.decode("utf-8", "replace")
    try:
        if line.startswith('{"log":"'):  # the monitor's (and Docker's) layout: fast path
            text, end = _scanstring(line, 8)
            if line.startswith('","stream":"', end - 1) and line.startswith('","time":"', end + 17):
                if line.endswith('"}'):
                    return text, line[end + 11 : end + 17], line[end + 27 : -2]
        entry = json.loads(line)
        return entry["log"], entry.get("stream", "stdout"), entry.get("time", "")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


class _Filter:
    """since/until/timestamps applied to raw lines; .done once past until."""

    def __init__(
        self, out: _Output, since: float | None, until: float | None, timestamps: bool
    ) -> None:
        self.out = out
        self.since = None if since is None else int(since * 1e9)
        self.until = None if until is None else int(until * 1e9)
        self.timestamps = timestamps
        self.done = False

    def emit(self, lines: Iterable[bytes]) -> None:
        since, until, add = self.since, self.until, self.out.add
        for raw in lines:
            if self.done:
                return
            entry = parse_entry(raw)
            if entry is None:
                continue  # a torn or foreign line
            text, stream, stamp = entry
            if since is not None or until is not None:
                try:
                    ns = parse_rfc3339_ns(stamp)
                except ValueError:
                    continue
                if since is not None and ns < since:
                    continue
                if until is not None and ns > until:
                    self.done = True
                    return
            if self.timestamps:
                try:
                    text = _fixed_timestamp(stamp) + text
                except ValueError:
                    pass
            add(stream, text)


def _lines(f: IO[bytes], start: int, end: int) -> Iterator[bytes]:
    """Complete lines of f between two offsets (end is just after a newline)."""
    f.seek(start)
    left = end - start
    rest = b""
    while left > 0:
        block = f.read(min(_BLOCK, left))
        if not block:
            break
        left -= len(block)
        parts = (rest + block).split(b"\n")
        rest = parts.pop()
        yield from parts


def _last_lines(f: IO[bytes], end: int, n: int) -> list[bytes]:
    """The last n complete lines of f before offset end (reading backwards)."""
    if n <= 0 or end <= 0:
        return []
    pos, data = end, b""
    while pos > 0 and data.count(b"\n") <= n:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        data = f.read(step) + data
    lines = data[: len(data) - 1].split(b"\n") if data.endswith(b"\n") else data.split(b"\n")
    if pos > 0:
        lines = lines[1:]  # may be cut
    return lines[-n:]


def _complete_end(f: IO[bytes]) -> int:
    """Offset just after the last newline (a line being written is not yet complete)."""
    size = f.seek(0, os.SEEK_END)
    pos = size
    while pos > 0:
        step = min(4096, pos)
        f.seek(pos - step)
        block = f.read(step)
        i = block.rfind(b"\n")
        if i >= 0:
            return pos - step + i + 1
        pos -= step
    return 0


def read_logs(
    log_path: Path,
    *,
    follow: bool = False,
    tail: int | None = None,
    since: float | None = None,
    until: float | None = None,
    timestamps: bool = False,
    stdout: Target = 1,
    stderr: Target = 2,
    still_running: Callable[[], bool] = lambda: False,
    poll_interval: float = 0.1,
) -> None:
    """Print a container's log like ``docker logs``.

    Entries come from the rotated files oldest first, then FILE; ``tail``
    keeps the last N entries (before since/until filtering, as Docker does);
    ``since``/``until`` are unix timestamps. With ``follow`` FILE is polled
    (surviving rotation and truncation) until ``still_running()`` is false
    and everything written has been printed.
    """
    log_path = Path(log_path)
    out = _Output(stdout, stderr)
    filt = _Filter(out, since, until, timestamps)
    try:
        cur: IO[bytes] | None = open(log_path, "rb")
    except FileNotFoundError:
        cur = None
    try:
        end = _complete_end(cur) if cur else 0
        old = rotated_files(log_path)
        if tail is None:
            for path in old:
                with open(path, "rb") as f:
                    filt.emit(_lines(f, 0, _complete_end(f)))
            if cur:
                filt.emit(_lines(cur, 0, end))
        else:
            chunks = [_last_lines(cur, end, tail)] if cur else []
            need = tail - len(chunks[0]) if chunks else tail
            for path in reversed(old):
                if need <= 0:
                    break
                with open(path, "rb") as f:
                    chunk = _last_lines(f, _complete_end(f), need)
                chunks.append(chunk)
                need -= len(chunk)
            for chunk in reversed(chunks):
                filt.emit(chunk)
        out.flush()
        if follow and not filt.done:
            _follow(log_path, cur, end, filt, still_running, until, poll_interval)
    finally:
        if cur:
            cur.close()
        out.flush()


def _follow(
    log_path: Path,
    cur: IO[bytes] | None,
    pos: int,
    filt: _Filter,
    still_running: Callable[[], bool],
    until: float | None,
    poll_interval: float,
) -> None:
    """Print what is appended to FILE until the container is gone and FILE is drained."""
    pending = b""
    try:
        while not filt.done:
            running = still_running()  # before reading: then a final read sees everything
            data = b""
            if cur:
                cur.seek(pos)
                data = cur.read()
            if data:
                pos += len(data)
                parts = (pending + data).split(b"\n")
                pending = parts.pop()
                filt.emit(parts)
                filt.out.flush()
                continue
            try:
                st = os.stat(log_path)
            except FileNotFoundError:
                st = None
            if st and cur is None:
                cur, pos, pending = open(log_path, "rb"), 0, b""
                continue
            if st and cur and (st.st_ino != os.fstat(cur.fileno()).st_ino or st.st_size < pos):
                # rotated (renamed away) or truncated: drain the old file, then the new one
                cur.seek(pos)
                filt.emit((pending + cur.read()).split(b"\n")[:-1])
                cur.close()
                cur, pos, pending = open(log_path, "rb"), 0, b""
                continue
            if not running or (until is not None and time.time() > until):
                return
            time.sleep(poll_interval)
    finally:
        if cur:
            cur.close()
