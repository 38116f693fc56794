"""Making layer tars: from an overlayfs upper dir (``docker commit``) or a whole tree.

Written the way Docker's archive package writes them: PAX headers, numeric owners,
whole-second mtimes, file-type bits in the mode field (Docker puts back what Go 1.9's
archive/tar dropped), whiteout files for overlay whiteouts, and exactly two zero
blocks at the end (so an empty layer has Docker's well-known empty diff ID). Headers
then match Docker's field for field, so the same files give the same diff ID.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.errors import DockyardError

if TYPE_CHECKING:
    import tarfile

CHUNK = 1024 * 1024
WHITEOUT_PREFIX = ".wh."
OPAQUE_MARKER = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."
EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
_BLOCK = 512


class TarWriter:
    """Writes a PAX tar stream the way Docker does (numeric owners, second mtimes).

    Ends with exactly two zero blocks (no record padding), like Go's archive/tar,
    so an empty layer has Docker's well-known empty diff ID.
    """

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self._links: dict[tuple[int, int], str] = {}
        self.count = 0

    def add_path(self, path: str, arcname: str, *, overlay: bool = False) -> None:
        """One entry for ``path`` (not followed if a symlink) named ``arcname``."""
        import tarfile

        st = os.lstat(path)
        mode = st.st_mode
        if overlay and stat.S_ISCHR(mode) and st.st_rdev == 0:
            head, _, base = arcname.rpartition("/")
            info = tarfile.TarInfo((head + "/" if head else "") + WHITEOUT_PREFIX + base)
            info.mtime = int(st.st_mtime)
            info.mode = 0o600
            info.uid, info.gid = st.st_uid, st.st_gid
            self._write(info)
            return
        info = tarfile.TarInfo(arcname)
        info.mode = stat.S_IMODE(mode) | stat.S_IFMT(mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = int(st.st_mtime)
        info.uname = info.gname = ""
        source: str | None = None
        if stat.S_ISDIR(mode):
            info.type = tarfile.DIRTYPE
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in self._links:
                info.type = tarfile.LNKTYPE
                info.linkname = self._links[key]
            else:
                if st.st_nlink > 1:
                    self._links[key] = arcname
                info.type = tarfile.REGTYPE
                info.size = st.st_size
                source = path
        elif stat.S_ISLNK(mode):
            info.type = tarfile.SYMTYPE
            info.linkname = os.readlink(path)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            info.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        elif stat.S_ISFIFO(mode):
            info.type = tarfile.FIFOTYPE
        else:
            return  # sockets are not archived
        if not stat.S_ISLNK(mode):
            info.pax_headers = _xattr_headers(path)
        self._write(info, source)
        if overlay and stat.S_ISDIR(mode):
            try:
                opaque = os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False)
            except OSError:
                opaque = b""
            if opaque == b"y":
                # as Docker writes it: the directory's permissions and owner, no mtime
                marker = tarfile.TarInfo(f"{arcname}/{OPAQUE_MARKER}")
                marker.mtime = 0
                marker.mode = stat.S_IMODE(mode) & 0o777
                marker.uid, marker.gid = st.st_uid, st.st_gid
                self._write(marker)

    def add_tree(
        self,
        root: str,
        prefix: str = "",
        *,
        overlay: bool = False,
        exclude: Collection[str] = (),
    ) -> None:
        """Every entry below ``root`` (not ``root`` itself), sorted, names under ``prefix``.

        ``exclude`` holds paths relative to ``root`` ("etc/hosts") to leave out.
        """
        try:
            entries = sorted(os.scandir(root), key=lambda e: e.name)
        except NotADirectoryError:
            return
        for entry in entries:
            rel = f"{prefix}/{entry.name}" if prefix else entry.name
            if rel in exclude:
                continue
            self.add_path(entry.path, rel, overlay=overlay)
            if entry.is_dir(follow_symlinks=False):
                self.add_tree(entry.path, rel, overlay=overlay, exclude=exclude)

    def _write(self, info: tarfile.TarInfo, source: str | None = None) -> None:
        import tarfile

        self.out.write(_go_header(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"), info))
        self.count += 1
        if source is None:
            return
        remaining = info.size
        with open(source, "rb") as f:
            while remaining > 0:
                chunk = f.read(min(CHUNK, remaining))
                if not chunk:
                    raise DockyardError(f"file {source} shrank while it was being archived")
                self.out.write(chunk)
                remaining -= len(chunk)
        if info.size % _BLOCK:
            self.out.write(b"\0" * (_BLOCK - info.size % _BLOCK))

    def close(self) -> None:
        self.out.write(b"\0" * (2 * _BLOCK))


def _go_header(buf: bytes, info: tarfile.TarInfo) -> bytes:
    """Rewrite the fields of the last header block that Python's tarfile writes
    differently from Go's: the mode keeps its file-type bits (tarfile masks them to
    0o7777) and device numbers are zeros, not NULs, for every type."""
    header = bytearray(buf[-_BLOCK:])
    header[100:108] = b"%07o\0" % info.mode
    for start in (329, 337):
        if header[start : start + 8] == b"\0" * 8:
            header[start : start + 8] = b"0000000\0"
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)
    return buf[:-_BLOCK] + bytes(header)


def _xattr_headers(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    headers: dict[str, str] = {}
    for name in names:
        if name.startswith(("trusted.overlay.", "security.selinux", "system.")):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        headers[XATTR_PAX_PREFIX + name] = value.decode("utf-8", "surrogateescape")
    return headers


def tar_tree(root: Path, out: BinaryIO, *, exclude: Collection[str] = ()) -> None:
    """A tar of the whole tree below ``root`` (``docker export``)."""
    writer = TarWriter(out)
    writer.add_tree(os.fspath(root), exclude=exclude)
    writer.close()


def tar_overlay_upper(upper: Path, out: BinaryIO, *, exclude: Collection[str] = ()) -> None:
    """An OCI layer tar from an overlayfs upper directory (``docker commit``)."""
    writer = TarWriter(out)
    writer.add_tree(os.fspath(upper), overlay=True, exclude=exclude)
    writer.close()
