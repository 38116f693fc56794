"""Stream helpers for unpacking layers fast: gzip via zlib, tar without copies, tee in a thread.

Kept apart from ``layers`` (the safe unpacker itself) so that module stays about
what may be written where.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from dockyard.errors import InvalidArgument
from dockyard.images.tarwriter import CHUNK

if TYPE_CHECKING:
    from dockyard.images.layers import Readable


class GzipReader:
    """The members of a gzip stream in turn, through zlib directly.

    Cheaper than ``gzip.GzipFile`` (no extra buffering layers; zlib checks each
    member's CRC and length itself). Zero padding between or after members is
    skipped, as GzipFile and Go's reader do.
    """

    _SLICE = 256 * 1024  # input fed to zlib at once: bounds the unconsumed-tail copies

    def __init__(self, stream: Readable) -> None:
        import zlib

        self._zlib = zlib
        self._stream = stream
        self._z = zlib.decompressobj(31)
        self._input: bytes = b""
        self._in_pos = 0
        self._out: bytes = b""
        self._out_pos = 0
        self._done = False

    def _more_input(self) -> bool:
        data = self._stream.read(CHUNK)
        self._input, self._in_pos = data, 0
        return bool(data)

    def _inflate(self) -> bytes:
        """Some output, or b"" at the end of the last member."""
        while not self._done:
            z = self._z
            if z.eof:
                rest = z.unused_data + self._input[self._in_pos :]
                rest = rest.lstrip(b"\0")
                while not rest:
                    if not self._more_input():
                        self._done = True
                        return b""
                    rest = self._input.lstrip(b"\0")
                self._z = self._zlib.decompressobj(31)
                self._input, self._in_pos = rest, 0
                continue
            piece: bytes | memoryview
            if z.unconsumed_tail:
                piece = z.unconsumed_tail
            else:
                if self._in_pos >= len(self._input) and not self._more_input():
                    raise EOFError(
                        "Compressed file ended before the end-of-stream marker was reached"
                    )
                piece = memoryview(self._input)[self._in_pos : self._in_pos + self._SLICE]
                self._in_pos += len(piece)
            out = z.decompress(piece, CHUNK)
            if out:
                return out
        return b""

    def read(self, n: int = -1, /) -> bytes:
        if self._out_pos >= len(self._out):
            self._out, self._out_pos = self._inflate(), 0
            if not self._out:
                return b""
        start = self._out_pos
        if n is None or n < 0 or start + n >= len(self._out):
            self._out_pos = len(self._out)
            return self._out if start == 0 else self._out[start:]
        self._out_pos = start + n
        return self._out[start : self._out_pos]


class TarSource:
    """A forward-only file for tarfile's seeking reader (``r:``), over a stream.

    tarfile's stream mode (``r|``) copies data through a 10 KiB buffer several
    times; here headers are read as tarfile asks and file contents are handed
    out as views of the decompressed chunks (``pieces``). Seeking backwards is
    refused, so tarfile can never re-read what it has already seen.
    """

    def __init__(self, reader: Readable) -> None:
        self._reader = reader
        self._buf: bytes = b""
        self._pos = 0
        self._offset = 0  # stream offset of _buf[0]

    def tell(self) -> int:
        return self._offset + self._pos

    def _fill(self) -> bool:
        data = self._reader.read(CHUNK)
        self._offset += len(self._buf)
        self._buf, self._pos = data, 0
        return bool(data)

    def pieces(self, n: int) -> Iterator[memoryview]:
        """The next ``n`` bytes (fewer at the end of the stream), as views."""
        while n > 0:
            if self._pos >= len(self._buf) and not self._fill():
                return
            take = min(n, len(self._buf) - self._pos)
            yield memoryview(self._buf)[self._pos : self._pos + take]
            self._pos += take
            n -= take

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 62
        if self._pos + n <= len(self._buf):
            self._pos += n
            return self._buf[self._pos - n : self._pos]
        return b"".join(self.pieces(n))

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self.tell():
            raise InvalidArgument("invalid tar archive: it refers back to data already read")
        for _ in self.pieces(pos - self.tell()):
            pass
        return self.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True


class TeeThread:
    """Runs ``tee`` (typically storing the blob: a write and a sha256) in its own thread.

    Storing the archive then overlaps with decompressing and unpacking it (file
    writes, zlib and hashlib all release the GIL). Its first error is raised in
    the unpacking thread; nothing is left running once ``unpack`` returns.
    """

    def __init__(self, tee: Callable[[bytes], None]) -> None:
        import queue
        import threading

        self._tee = tee
        self._queue: queue.Queue[bytes | None] = queue.Queue(8)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="unpack-tee", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._tee(data)
                except BaseException as err:  # noqa: BLE001 - raised in the unpacking thread
                    self._error = err

    def __call__(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data if isinstance(data, bytes) else bytes(data))

    def stop(self) -> None:
        """Wait for the thread to hand everything queued to ``tee`` and end."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def finish(self) -> None:
        self.stop()
        if self._error is not None:
            raise self._error
