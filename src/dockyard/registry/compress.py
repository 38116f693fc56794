"""Fast, deterministic gzip for pushing uncompressed layers.

Like pigz: the input is cut into blocks deflated in parallel threads (zlib
drops the GIL), each primed with the previous block's last 32 KiB, joined by
sync flushes into one ordinary single-member gzip stream. Blocks that do not
compress (a sample tells) are stored, so random data costs a copy. The output
depends only on the input, so the same layer always gets the same digest.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO

BLOCK = 1 << 20
WINDOW = 32 * 1024
SAMPLE = 32 * 1024
LEVEL = 1
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS unknown (as Go)


def _deflate(data: bytes, dictionary: bytes, last: bool) -> bytes:
    level = LEVEL
    sample = data[:SAMPLE]
    if len(sample) == SAMPLE and len(zlib.compress(sample, 1)) > SAMPLE * 0.97:
        level = 0
    if dictionary and level:
        obj = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, dictionary)
    else:
        obj = zlib.compressobj(level, zlib.DEFLATED, -15)
    return obj.compress(data) + obj.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def gzip_stream(
    source: BinaryIO,
    *,
    threads: int = 2,
    on_read: Callable[[int], None] | None = None,
) -> Iterator[bytes]:
    """Yield the gzip encoding of everything ``source`` reads, in order."""
    yield HEADER
    crc = 0
    total = 0
    with ThreadPoolExecutor(threads, thread_name_prefix="gzip") as pool:
        pending: deque[Future[bytes]] = deque()
        previous = b""
        block = source.read(BLOCK)
        while True:
            following = source.read(BLOCK) if block else b""
            last = not following
            crc = zlib.crc32(block, crc)
            total += len(block)
            if on_read is not None and block:
                on_read(len(block))
            pending.append(pool.submit(_deflate, block, previous[-WINDOW:], last))
            while len(pending) > threads * 2:
                yield pending.popleft().result()
            if last:
                break
            previous, block = block, following
        while pending:
            yield pending.popleft().result()
    yield struct.pack("<II", crc & 0xFFFFFFFF, total & 0xFFFFFFFF)
