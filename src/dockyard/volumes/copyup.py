"""Docker's volume copy-up: an empty volume starts as a copy of the image's directory.

The copy keeps what a program in the image expects of its files: owner,
group, mode (including setuid/sticky bits), symlinks as symlinks, hard links
as links, device nodes, extended attributes and times. The volume's root
directory takes the owner and mode of the image directory, so a
``VOLUME /var/lib/app`` owned by ``app`` stays writable for ``app``.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections import deque
from pathlib import Path

from dockyard.errors import UnsafePath

_MAX_SYMLINKS = 255


def secure_join(root: Path, unsafe: str) -> Path:
    """``root/unsafe`` with symlinks resolved as if ``root`` were ``/`` (never outside it).

    Missing components are kept as they are; ``..`` never climbs above ``root``.
    """
    parts = deque(unsafe.split("/"))
    current = ""  # resolved path relative to root
    followed = 0
    while parts:
        part = parts.popleft()
        if part in ("", "."):
            continue
        if part == "..":
            current = posixpath.dirname(current)
            continue
        candidate = posixpath.join(current, part) if current else part
        try:
            info = os.lstat(root / candidate)
        except (FileNotFoundError, NotADirectoryError):
            current = candidate
            continue
        if stat.S_ISLNK(info.st_mode):
            followed += 1
            if followed > _MAX_SYMLINKS:
                raise UnsafePath(f"too many symbolic links in {unsafe}")
            link = os.readlink(root / candidate)
            if link.startswith("/"):
                current = ""
            parts.extendleft(reversed(link.split("/")))
            continue
        current = candidate
    return root / current if current else root


def is_empty_dir(path: Path) -> bool:
    with os.scandir(path) as it:
        return next(it, None) is None


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError as err:
        if err.errno in (errno.ENOTSUP, errno.ENODATA):
            return
        raise
    for name in names:
        try:
            value = os.getxattr(src, name, follow_symlinks=False)
            os.setxattr(dst, name, value, follow_symlinks=False)
        except OSError as err:
            # Like containerd's CopyDir with ignoreUnsupportedXAttrs: skip what
            # the volume's filesystem cannot hold (e.g. security.selinux).
            if err.errno not in (errno.ENOTSUP, errno.EPERM, errno.EACCES, errno.ENODATA):
                raise


def _copy_metadata(src: str, dst: str, info: os.stat_result) -> None:
    """Owner, then mode (chown clears setuid), xattrs, then times."""
    is_link = stat.S_ISLNK(info.st_mode)
    os.lchown(dst, info.st_uid, info.st_gid)
    if not is_link:
        os.chmod(dst, stat.S_IMODE(info.st_mode))
    _copy_xattrs(src, dst)
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the contents of directory ``src`` into existing directory ``dst``.

    ``dst`` itself gets ``src``'s owner, mode, xattrs and times. Nothing is
    followed: symlinks are recreated as they are, so a link pointing at
    ``/etc`` in the image points at ``/etc`` in the container, not on the host.
    """
    links: dict[tuple[int, int], str] = {}
    # (source dir, destination dir, its stat) -- metadata is applied after the
    # contents, so that the directory's mtime and a read-only mode stick.
    pending: list[tuple[str, str, os.stat_result]] = []
    stack = [(os.fspath(src), os.fspath(dst))]
    while stack:
        sdir, ddir = stack.pop()
        pending.append((sdir, ddir, os.lstat(sdir)))
        with os.scandir(sdir) as entries:
            for entry in entries:
                spath, dpath = entry.path, os.path.join(ddir, entry.name)
                info = entry.stat(follow_symlinks=False)
                mode = info.st_mode
                if stat.S_ISDIR(mode):
                    os.mkdir(dpath, 0o700)
                    stack.append((spath, dpath))
                    continue
                key = (info.st_dev, info.st_ino)
                if info.st_nlink > 1 and not stat.S_ISDIR(mode) and key in links:
                    os.link(links[key], dpath, follow_symlinks=False)
                    continue
                if stat.S_ISLNK(mode):
                    os.symlink(os.readlink(spath), dpath)
                elif stat.S_ISREG(mode):
                    import shutil

                    shutil.copyfile(spath, dpath, follow_symlinks=False)
                else:  # fifo, socket, character or block device
                    os.mknod(dpath, mode, info.st_rdev)
                _copy_metadata(spath, dpath, info)
                if info.st_nlink > 1:
                    links[key] = dpath
    for sdir, ddir, info in reversed(pending):
        _copy_metadata(sdir, ddir, info)
