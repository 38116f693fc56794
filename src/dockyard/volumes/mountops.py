"""mount(2)/umount2(2) for volumes created with driver options (``-o type=.. -o device=..``),
and the private mount namespaces that ``docker cp`` works in.

Docker's local driver calls the syscall with mount(8)-style options split into
flags and filesystem data; so do we, through libc, so that no mount helper
program is needed and options behave the same.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000
MNT_DETACH = 0x2
CLONE_NEWNS = 0x20000

# option -> (clear?, flag), as moby/sys/mount's table
_FLAGS: dict[str, tuple[bool, int]] = {
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "suid": (True, MS_NOSUID),
    "nosuid": (False, MS_NOSUID),
    "dev": (True, MS_NODEV),
    "nodev": (False, MS_NODEV),
    "exec": (True, MS_NOEXEC),
    "noexec": (False, MS_NOEXEC),
    "sync": (False, MS_SYNCHRONOUS),
    "async": (True, MS_SYNCHRONOUS),
    "dirsync": (False, MS_DIRSYNC),
    "mand": (False, MS_MANDLOCK),
    "nomand": (True, MS_MANDLOCK),
    "atime": (True, MS_NOATIME),
    "noatime": (False, MS_NOATIME),
    "diratime": (True, MS_NODIRATIME),
    "nodiratime": (False, MS_NODIRATIME),
    "bind": (False, MS_BIND),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "norelatime": (True, MS_RELATIME),
    "strictatime": (False, MS_STRICTATIME),
    "nostrictatime": (True, MS_STRICTATIME),
}
_PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}


@functools.cache
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]  # fmt: skip
    libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
    return libc


def parse_options(options: str) -> tuple[int, int, str]:
    """(flags, propagation flags, data) from a mount(8) option string."""
    flags = propagation = 0
    data: list[str] = []
    for opt in options.split(",") if options else []:
        if opt in _FLAGS:
            clear, flag = _FLAGS[opt]
            flags = flags & ~flag if clear else flags | flag
        elif opt in _PROPAGATION:
            propagation = _PROPAGATION[opt]
        elif opt and opt != "defaults":
            data.append(opt)
    return flags, propagation, ",".join(data)


def _call(source: str | None, target: str, fstype: str | None, flags: int, data: str) -> None:
    rc = _libc().mount(
        source.encode() if source is not None else None,
        target.encode(),
        fstype.encode() if fstype else None,
        flags,
        data.encode() if data else None,
    )
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source}:{target}, flags: {flags:#x}: {os.strerror(err)}")


def mount(device: str, target: str, fstype: str, options: str) -> None:
    """Mount like Docker's local driver: flags and data parsed from ``options``."""
    flags, propagation, data = parse_options(options)
    _call(device, target, fstype, flags & ~MS_RDONLY if flags & MS_BIND else flags, data)
    if flags & MS_BIND and flags & MS_RDONLY:  # a bind mount only becomes read-only on remount
        _call(None, target, None, flags | MS_REMOUNT, "")
    if propagation:
        _call(None, target, None, propagation, "")


def set_propagation(target: str, option: str) -> None:
    """Change the propagation of the mount at ``target`` (``rslave``, ``rprivate``...)."""
    _call(None, target, None, _PROPAGATION[option], "")


def unshare_mounts() -> None:
    """Give this process a mount namespace of its own, whose mounts go with it;
    mounts made in it no longer reach the host (``rslave`` on ``/``)."""
    if _libc().unshare(CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    set_propagation("/", "rslave")


def unmount(target: str) -> None:
    """Detach ``target``; not being mounted (any more) is fine."""
    if _libc().umount2(target.encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"unmount {target}: {os.strerror(err)}")


def is_mountpoint(path: str) -> bool:
    """Whether something is mounted exactly at ``path`` (per this mount namespace)."""
    wanted = os.path.realpath(path)
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            point = line.split(b" ", 5)[4].decode(errors="replace")
            if _unescape(point) == wanted:
                return True
    return False


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal ``\\NNN``."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit() and i + 3 < len(field):
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)
