"""The content-addressable blob store: ``blobs/sha256/<hex>``.

Blobs are written to a temporary file on the same filesystem and renamed into
place once their digest is known (and verified, when one is expected), so a
reader never sees a partial blob and a failed write leaves nothing behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from dockyard.config import Paths
from dockyard.errors import DockyardError, InvalidArgument

CHUNK = 1024 * 1024
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


class DigestMismatch(DockyardError):
    """Content did not match the digest it was announced with."""


def check_digest(digest: str) -> str:
    """``digest`` if it is a well-formed sha256 digest, else InvalidArgument."""
    if not _DIGEST_RE.match(digest):
        raise InvalidArgument(f"invalid digest {digest!r}: expected sha256:<64 hex digits>")
    return digest


class ContentStore:
    """Blobs by digest under ``Paths.blobs``."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.root = paths.blobs / "sha256"

    def path(self, digest: str) -> Path:
        return self.root / check_digest(digest)[7:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            from dockyard.errors import NotFound

            raise NotFound(f"blob {digest} not found in the content store") from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def put(self, stream: BinaryIO, expected_digest: str | None = None) -> tuple[str, int]:
        """Store everything ``stream`` yields; returns (digest, size)."""
        writer = self.writer()
        try:
            while chunk := stream.read(CHUNK):
                writer.write(chunk)
            return writer.commit(expected_digest)
        finally:
            writer.abort()

    def put_bytes(self, data: bytes, expected_digest: str | None = None) -> tuple[str, int]:
        writer = self.writer()
        try:
            writer.write(data)
            return writer.commit(expected_digest)
        finally:
            writer.abort()

    def writer(self, verified_digest: str | None = None) -> BlobWriter:
        """An incremental writer, for callers that tee a stream into the store.

        ``verified_digest``: the stream checks its own digest by the time it ends (a
        registry download hashes as it arrives), so the writer does not hash it again.
        """
        return BlobWriter(self, verified_digest)

    def delete(self, digest: str) -> bool:
        try:
            self.path(digest).unlink()
            return True
        except FileNotFoundError:
            return False

    def iter(self) -> Iterator[str]:
        """Every stored digest."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return
        for name in names:
            if len(name) == 64:
                yield f"sha256:{name}"


class BlobWriter:
    """Hashes while writing to a temp file; ``commit`` renames it into the store."""

    def __init__(self, store: ContentStore, verified_digest: str | None = None) -> None:
        self.store = store
        self._verified = verified_digest
        import hashlib
        import tempfile

        store.paths.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="blob-", dir=store.paths.tmp)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")
        self._name = name
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> None:
        assert self._file is not None, "blob writer already closed"
        self._file.write(data)
        if self._verified is None:
            self._hash.update(data)
        self.size += len(data)

    @property
    def digest(self) -> str:
        return self._verified or f"sha256:{self._hash.hexdigest()}"

    def commit(self, expected_digest: str | None = None) -> tuple[str, int]:
        """Verify and move into place; an existing blob with that digest is kept."""
        assert self._file is not None, "blob writer already closed"
        digest = self.digest
        self._file.close()
        self._file = None
        if expected_digest is not None and expected_digest != digest:
            os.unlink(self._name)
            raise DigestMismatch(
                f"content digest mismatch: expected {expected_digest}, got {digest}"
            )
        target = self.store.path(digest)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self._name, target)
        return digest, self.size

    def abort(self) -> None:
        """Drop the temp file (a no-op after commit)."""
        if self._file is not None:
            self._file.close()
            self._file = None
            try:
                os.unlink(self._name)
            except FileNotFoundError:
                pass
