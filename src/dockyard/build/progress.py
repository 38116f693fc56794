"""Build progress as BuildKit's ``--progress plain`` prints it.

Each vertex (a step, or internal work such as loading the context) gets a
number when it starts: ``#5 [2/4] RUN make``, then its output as
``#5 0.312 <line>`` (seconds since the step started), then ``#5 DONE 0.4s``,
``#5 CACHED`` or ``#5 ERROR: ...``. Lines of concurrent stages interleave but
stay attributable by their number. ``quiet`` prints nothing, but keeps each
step's output so a failure can still show it.
"""

from __future__ import annotations

import threading
import time
from typing import TextIO

_KEEP = 64 * 1024  # output kept per step in quiet mode


class Progress:
    def __init__(self, out: TextIO, *, quiet: bool = False) -> None:
        self.out = out
        self.quiet = quiet
        self.lock = threading.Lock()
        self.counter = 0

    def write(self, text: str) -> None:
        if self.quiet:
            return
        with self.lock:
            self.out.write(text)
            self.out.flush()

    def vertex(self, name: str) -> Vertex:
        with self.lock:
            self.counter += 1
            number = self.counter
        vertex = Vertex(self, number, name)
        self.write(f"#{number} {name}\n")
        return vertex

    def warn(self, text: str) -> None:
        if not self.quiet:
            self.write(f"{text}\n")


class Vertex:
    def __init__(self, progress: Progress, number: int, name: str) -> None:
        self.progress = progress
        self.number = number
        self.name = name
        self.started = time.monotonic()
        self.partial: dict[int, bytes] = {}
        self.kept = bytearray()
        self.finished = False

    def info(self, text: str) -> None:
        self.progress.write(f"#{self.number} {text}\n")

    def output(self, stream: int, data: bytes) -> None:
        """Container output: printed line by line with the time since the start."""
        if self.progress.quiet:
            self.kept += data
            if len(self.kept) > _KEEP:
                del self.kept[: len(self.kept) - _KEEP]
            return
        buffered = self.partial.get(stream, b"") + data
        *lines, rest = buffered.split(b"\n")
        self.partial[stream] = rest
        if lines:
            stamp = f"{time.monotonic() - self.started:.3f}"
            text = "".join(
                f"#{self.number} {stamp} {line.decode(errors='replace').rstrip(chr(13))}\n"
                for line in lines
            )
            self.progress.write(text)

    def _flush_partial(self) -> None:
        for stream, rest in list(self.partial.items()):
            if rest:
                self.partial[stream] = b""
                self.output(stream, b"\n")
                self.partial[stream] = b""
            else:
                self.partial.pop(stream, None)

    def done(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._flush_partial()
        self.progress.write(f"#{self.number} DONE {time.monotonic() - self.started:.1f}s\n\n")

    def cached(self) -> None:
        self.finished = True
        self.progress.write(f"#{self.number} CACHED\n\n")

    def error(self, message: str) -> None:
        if self.finished:
            return
        self.finished = True
        self._flush_partial()
        if self.progress.quiet and self.kept:
            # -q: the failing step's output still goes to the user
            with self.progress.lock:
                self.progress.out.write(self.kept.decode(errors="replace"))
                if not self.kept.endswith(b"\n"):
                    self.progress.out.write("\n")
                self.progress.out.flush()
        self.progress.write(f"#{self.number} ERROR: {message}\n\n")
