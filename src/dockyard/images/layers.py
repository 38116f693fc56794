"""Layer tarballs: safe unpacking into a directory (making them: ``tarwriter``).

Unpacking never resolves a path through a symlink: every parent directory is
opened with ``O_NOFOLLOW`` relative to its own parent (openat-style), so no
entry can reach outside the target, whatever the archive holds (``..``,
absolute names, symlinks planted by earlier entries, hard links to host
files). OCI whiteouts become overlayfs whiteouts, so an unpacked layer can be
used directly as an overlay lower directory. The diff ID (sha256 of the
uncompressed tar) is computed in the same pass.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.errors import DockyardError, InvalidArgument, UnsafePath
from dockyard.images.streams import GzipReader, TarSource, TeeThread
from dockyard.images.tarwriter import (  # noqa: F401 - re-exported for callers
    CHUNK,
    EMPTY_TAR_DIFF_ID,
    OPAQUE_MARKER,
    OPAQUE_XATTR,
    WHITEOUT_PREFIX,
    XATTR_PAX_PREFIX,
    TarWriter,
    tar_overlay_upper,
    tar_tree,
)
from dockyard.records import record

if TYPE_CHECKING:
    import tarfile

_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_BLOCK = 512
_TAIL = 1024 * 1024

_MAGIC = (
    (b"\x1f\x8b", "gzip"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
)


class Readable(Protocol):
    """Anything with ``read(n) -> bytes`` (files, pipes, decompressors)."""

    def read(self, n: int = -1, /) -> bytes: ...


def detect_compression(head: bytes) -> str:
    """``gzip``, ``zstd``, ``bzip2``, ``xz`` or ``none``, from the first bytes."""
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    return "none"


class _Reader:
    """A read-only stream that replays peeked bytes, hashes, tees, and keeps its tail."""

    def __init__(
        self,
        raw: Readable,
        tee: Callable[[bytes], None] | None = None,
        *,
        hashing: bool = True,
        keep_tail: bool = False,
    ) -> None:
        self.raw = raw
        self.tee = tee
        self.hash = hashlib.sha256() if hashing else None
        self.count = 0
        self._pending = b""
        # the last chunks read (at least _TAIL bytes), kept by reference: no copying
        self.tail: deque[bytes] | None = deque() if keep_tail else None
        self._tail_size = 0

    def peek(self, n: int) -> bytes:
        while len(self._pending) < n:
            more = self.raw.read(n - len(self._pending))
            if not more:
                break
            self._pending += more
        return self._pending[:n]

    def read(self, n: int = -1) -> bytes:
        if self._pending:
            data, self._pending = self._pending, b""
            if n is not None and 0 <= n < len(data):
                data, self._pending = data[:n], data[n:]
        else:
            data = self.raw.read(n if n is not None and n >= 0 else CHUNK)
        if data:
            if self.hash is not None:
                self.hash.update(data)
            self.count += len(data)
            if self.tee is not None:
                self.tee(data)
            if self.tail is not None:
                self.tail.append(data)
                self._tail_size += len(data)
                while self._tail_size - len(self.tail[0]) >= _TAIL:
                    self._tail_size -= len(self.tail.popleft())
        return data

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def ends_properly(self, offset: int) -> bool:
        """True if a zero block sits at ``offset`` (call after draining)."""
        assert self.tail is not None
        start = offset - (self.count - self._tail_size)
        block = b"".join(self.tail)[start : start + _BLOCK] if start >= 0 else b""
        return len(block) == _BLOCK and not any(block)

    @property
    def digest(self) -> str:
        assert self.hash is not None
        return f"sha256:{self.hash.hexdigest()}"


def decompress(stream: Any, compression: str) -> Readable:
    """A reader of the uncompressed bytes of ``stream``."""
    if compression == "none":
        return stream
    if compression == "gzip":
        return GzipReader(stream)
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise InvalidArgument(
                "zstd-compressed layer: install the 'zstandard' Python module to read it"
            ) from None
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    if compression == "bzip2":
        import bz2

        return bz2.BZ2File(stream)
    if compression == "xz":
        import lzma

        return lzma.LZMAFile(stream)
    raise InvalidArgument(f"unsupported compression {compression}")


@record
class UnpackResult:
    diff_id: str  # sha256 of the uncompressed tar
    size: int  # bytes of files and symlink targets, hard links once (Docker's DiffSize)
    compression: str  # compression of the bytes handed to ``tee`` ("none" when decompressed)


def unpack(
    stream: Readable,
    target: Path,
    *,
    tee: Callable[[bytes], None] | None = None,
    whiteouts: bool = True,
    same_owner: bool | None = None,
    owner: tuple[int, int] | None = None,
    no_replace_dir: bool = False,
) -> UnpackResult:
    """Unpack a (maybe compressed) layer tar into the existing directory ``target``.

    ``tee`` receives the stream as stored: the original bytes for plain, gzip and
    zstd tars, the decompressed tar for bzip2/xz (no OCI media type exists for those).
    With ``whiteouts`` OCI whiteout entries become overlayfs whiteouts. ``owner``
    forces every entry's (uid, gid); ``no_replace_dir`` refuses to replace a
    directory by a non-directory or the reverse (``docker cp``).
    """
    background = TeeThread(tee) if tee is not None else None
    try:
        return _unpack(
            stream,
            target,
            background,
            whiteouts=whiteouts,
            same_owner=same_owner,
            owner=owner,
            no_replace_dir=no_replace_dir,
        )
    finally:
        if background is not None:
            background.stop()


def _unpack(
    stream: Readable,
    target: Path,
    tee: TeeThread | None,
    *,
    whiteouts: bool,
    same_owner: bool | None,
    owner: tuple[int, int] | None,
    no_replace_dir: bool,
) -> UnpackResult:
    import tarfile

    raw = _Reader(stream, hashing=False)
    compression = detect_compression(raw.peek(6))
    stored = compression if compression in ("none", "gzip", "zstd") else "none"
    if tee is not None and stored != "none":
        raw.tee = tee
    plain = _Reader(decompress(raw, compression), tee if stored == "none" else None, keep_tail=True)
    if same_owner is None:
        same_owner = os.geteuid() == 0
    unpacker = _Unpacker(
        target,
        whiteouts=whiteouts,
        same_owner=same_owner,
        owner=owner,
        no_replace_dir=no_replace_dir,
    )
    try:
        try:
            source = TarSource(plain)
            with tarfile.open(fileobj=source, mode="r:") as tar:  # type: ignore[call-overload]
                for member in tar:
                    unpacker.add(tar, member)
                end = tar.offset
            plain.drain()
            raw.drain()
        except tarfile.ReadError as err:
            if str(err) != "empty file":
                raise InvalidArgument(f"invalid tar archive: {err}") from None
            end = -1  # an empty stream is an empty layer, as for Docker
            plain.drain()
            raw.drain()
        except Exception as err:
            if isinstance(err, DockyardError) or (isinstance(err, OSError) and err.errno):
                raise
            raise InvalidArgument(f"invalid or truncated layer archive: {err}") from None
        if end >= 0 and plain.count and not plain.ends_properly(end):
            raise InvalidArgument(
                "invalid tar archive: truncated or corrupt (no end-of-archive marker)"
            )
        unpacker.finish()
        if tee is not None:
            tee.finish()  # everything stored (or its error raised) before we report success
    finally:
        unpacker.close()
    return UnpackResult(plain.digest, unpacker.size, stored)


def _clean(name: str) -> list[str]:
    """The components of an archive path; ``..`` and absolute paths are refused."""
    if name.startswith("/"):
        raise UnsafePath(f"refusing to unpack {name!r}: absolute path in archive")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePath(f"refusing to unpack {name!r}: path escapes the target directory")
    return parts


class _Unpacker:
    """Writes tar entries below one directory, resolving parents without following links."""

    def __init__(
        self,
        target: Path,
        *,
        whiteouts: bool,
        same_owner: bool,
        owner: tuple[int, int] | None = None,
        no_replace_dir: bool = False,
    ) -> None:
        self.root_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.whiteouts = whiteouts
        self.same_owner = same_owner or owner is not None
        self.owner = owner
        self.no_replace_dir = no_replace_dir
        self.size = 0
        self.entries = 0
        self._dirs: dict[tuple[str, ...], int] = {(): self.root_fd}
        self._dir_times: list[tuple[tuple[str, ...], int, int]] = []

    # -- path resolution ----------------------------------------------------

    def _drop_cache(self) -> None:
        for key, fd in self._dirs.items():
            if key:
                os.close(fd)
        self._dirs = {(): self.root_fd}

    def dir_fd(self, parts: tuple[str, ...], create: bool = True) -> int:
        """An fd of the directory ``parts`` (created if missing), never via a symlink."""
        fd = self._dirs.get(parts)
        if fd is not None:
            return fd
        parent = self.dir_fd(parts[:-1], create)
        name = parts[-1]
        try:
            fd = os.open(name, _DIR_OPEN, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
            os.mkdir(name, 0o755, dir_fd=parent)
            fd = os.open(name, _DIR_OPEN, dir_fd=parent)
        except OSError as err:
            if err.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            where = "/".join(parts)
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePath(f"refusing to write through symlink {where!r}") from None
            raise InvalidArgument(f"cannot unpack below {where!r}: not a directory") from None
        if len(self._dirs) > 256:
            self._drop_cache()
        self._dirs[parts] = fd
        return fd

    def _ids(self, member: tarfile.TarInfo) -> tuple[int, int]:
        return self.owner if self.owner is not None else (member.uid, member.gid)

    def _remove(self, parent: int, name: str, new_is_dir: bool = False) -> None:
        """Remove whatever is at ``name`` (a directory recursively) to make room."""
        import shutil

        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if self.no_replace_dir and stat.S_ISDIR(st.st_mode) != new_is_dir:
            if new_is_dir:
                raise InvalidArgument(f"cannot overwrite non-directory {name!r} with directory")
            raise InvalidArgument(f"cannot overwrite directory {name!r} with non-directory")
        if stat.S_ISDIR(st.st_mode):
            self._drop_cache()
            shutil.rmtree(name, dir_fd=parent)
        else:
            os.unlink(name, dir_fd=parent)

    # -- entries ------------------------------------------------------------

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        self.entries += 1
        parts = _clean(member.name)
        if not parts:
            self._apply_root(member)
            return
        parent = self.dir_fd(tuple(parts[:-1]))
        name = parts[-1]
        if self.whiteouts and name.startswith(WHITEOUT_PREFIX):
            self._whiteout(parent, parts)
            return
        if member.isdir():
            self._add_dir(parent, tuple(parts), member)
        elif member.isreg():
            self._add_file(tar, parent, name, member)
        elif member.issym():
            self._add_symlink(parent, parts, member)
        elif member.islnk():
            self._add_hardlink(parent, name, member)
        elif member.ischr() or member.isblk() or member.isfifo():
            self._add_node(parent, name, member)
        # other types (GNU volume headers, ...) carry nothing to unpack

    def _whiteout(self, parent: int, parts: list[str]) -> None:
        name = parts[-1]
        if name == OPAQUE_MARKER:
            os.setxattr(parent, OPAQUE_XATTR, b"y")
            return
        if name.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
            return  # AUFS metadata (.wh..wh.plnk, ...), meaningless here
        hidden = name[len(WHITEOUT_PREFIX) :]
        if hidden in ("", ".", ".."):
            raise UnsafePath(f"refusing to unpack {'/'.join(parts)!r}: invalid whiteout")
        self._create(parent, hidden, lambda: os.mknod(hidden, stat.S_IFCHR, 0, dir_fd=parent))

    def _create(self, parent: int, name: str, make: Callable[[], object]) -> None:
        """Run ``make``; if something is in the way, remove it and retry once."""
        try:
            make()
        except FileExistsError:
            self._remove(parent, name)
            make()

    def _add_dir(self, parent: int, parts: tuple[str, ...], member: tarfile.TarInfo) -> None:
        name = parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=parent)
        except FileExistsError:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                self._remove(parent, name, new_is_dir=True)
                os.mkdir(name, 0o700, dir_fd=parent)
        fd = self.dir_fd(parts)
        self._set_attrs_fd(fd, member)
        self._dir_times.append((parts, *_times(member)))

    def _add_file(
        self, tar: tarfile.TarFile, parent: int, name: str, member: tarfile.TarInfo
    ) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, 0o600, dir_fd=parent)
        except FileExistsError:
            self._remove(parent, name)
            fd = os.open(name, flags, 0o600, dir_fd=parent)
        try:
            fileobj = tar.fileobj
            if not member.issparse() and isinstance(fileobj, TarSource):
                # straight from the decompressed chunks into the file
                fileobj.seek(member.offset_data)
                left = member.size
                for piece in fileobj.pieces(left):
                    _write_all(fd, piece)
                    left -= len(piece)
                if left:
                    raise InvalidArgument("invalid tar archive: unexpected end of data")
            else:
                source = tar.extractfile(member)
                if source is not None:
                    with source:
                        while chunk := source.read(CHUNK):
                            _write_all(fd, chunk)
            self._set_attrs_fd(fd, member)
            atime, mtime = _times(member)
            os.utime(fd, ns=(atime, mtime))
        finally:
            os.close(fd)
        self.size += member.size

    def _add_symlink(self, parent: int, parts: list[str], member: tarfile.TarInfo) -> None:
        target = member.linkname
        if not target.startswith("/"):
            depth = len(parts) - 1
            for piece in target.split("/"):
                if piece == "..":
                    depth -= 1
                    if depth < 0:
                        raise UnsafePath(
                            f"refusing to unpack symlink {member.name!r} -> {target!r}: "
                            "it points outside the target directory"
                        )
                elif piece not in ("", "."):
                    depth += 1
        name = parts[-1]
        self._create(parent, name, lambda: os.symlink(target, name, dir_fd=parent))
        self.size += len(os.fsencode(target))  # Docker's layer size counts link targets too
        if self.same_owner:
            os.chown(name, *self._ids(member), dir_fd=parent, follow_symlinks=False)
        os.utime(name, ns=_times(member), dir_fd=parent, follow_symlinks=False)

    def _add_hardlink(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        if member.linkname.startswith("/"):
            raise UnsafePath(
                f"refusing to unpack hard link {member.name!r} -> {member.linkname!r}: "
                "absolute link target"
            )
        source = _clean(member.linkname)
        if not source:
            raise UnsafePath(f"refusing to unpack hard link {member.name!r} to the root")
        try:
            source_parent = self.dir_fd(tuple(source[:-1]), create=False)
            st = os.stat(source[-1], dir_fd=source_parent, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidArgument(
                f"invalid hard link {member.name!r}: {member.linkname!r} is not in the archive"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            raise UnsafePath(f"refusing to hard link {member.name!r} to a directory")
        try:
            existing = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if (existing.st_dev, existing.st_ino) == (st.st_dev, st.st_ino):
                return
            self._remove(parent, name)
        except FileNotFoundError:
            pass
        os.link(
            source[-1], name, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False
        )

    def _add_node(self, parent: int, name: str, member: tarfile.TarInfo) -> None:
        kind = stat.S_IFIFO if member.isfifo() else stat.S_IFCHR if member.ischr() else stat.S_IFBLK
        device = os.makedev(member.devmajor, member.devminor) if not member.isfifo() else 0
        try:
            self._create(parent, name, lambda: os.mknod(name, kind | 0o600, device, dir_fd=parent))
        except PermissionError:
            return  # unprivileged: device nodes are skipped, as rootless Docker does
        if self.same_owner:
            os.chown(name, *self._ids(member), dir_fd=parent, follow_symlinks=False)
        os.chmod(name, member.mode & 0o7777, dir_fd=parent)  # just created: not a symlink
        self._set_xattrs(f"/proc/self/fd/{parent}/{name}", member)
        os.utime(name, ns=_times(member), dir_fd=parent, follow_symlinks=False)

    # -- metadata -----------------------------------------------------------

    def _apply_root(self, member: tarfile.TarInfo) -> None:
        if member.isdir():
            self._set_attrs_fd(self.root_fd, member)
            self._dir_times.append(((), *_times(member)))

    def _set_attrs_fd(self, fd: int, member: tarfile.TarInfo) -> None:
        if self.same_owner:
            os.fchown(fd, *self._ids(member))
        os.fchmod(fd, member.mode & 0o7777)
        self._set_xattrs(fd, member)

    def _set_xattrs(self, where: int | str, member: tarfile.TarInfo) -> None:
        if not member.pax_headers:
            return
        for key, value in member.pax_headers.items():
            if not key.startswith(XATTR_PAX_PREFIX):
                continue
            attr = key[len(XATTR_PAX_PREFIX) :]
            if attr.startswith("trusted.overlay."):
                continue  # never let an archive forge overlayfs metadata
            try:
                os.setxattr(where, attr, value.encode("utf-8", "surrogateescape"))
            except OSError as err:
                if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EOPNOTSUPP):
                    raise

    def finish(self) -> None:
        """Directory times last, deepest first: creating children changed them."""
        for parts, atime, mtime in reversed(self._dir_times):
            try:
                os.utime(self.dir_fd(parts, create=False), ns=(atime, mtime))
            except (FileNotFoundError, UnsafePath, InvalidArgument):
                continue

    def close(self) -> None:
        self._drop_cache()
        os.close(self.root_fd)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _times(member: tarfile.TarInfo) -> tuple[int, int]:
    mtime = int(float(member.pax_headers.get("mtime", member.mtime)) * 1e9)
    atime_text = member.pax_headers.get("atime")
    atime = int(float(atime_text) * 1e9) if atime_text else mtime
    return atime, mtime
