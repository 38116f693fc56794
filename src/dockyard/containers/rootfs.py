"""A container's filesystem: an overlay of image layers, an init layer and its own upper dir.

``containers/<id>/`` holds ``upper`` and ``work`` (the container's writable
layer), ``merged`` (the mount point) and ``lower`` (the image layer list of the
last mount, for ``diff``). Docker's init layer (empty mount targets such as
/etc/hosts, so runc creates nothing in ``upper``) is the same for every
container, so one ``layers/l/init`` serves them all.

The kernel limits the overlay option string to one page, so image layers are
named by short symlinks ``layers/l/<12 hex>`` (as Docker's overlay2 does),
reached through ``/dev/fd/N`` of ``layers/l`` rather than a chdir;
the mount is a direct ``mount(2)`` via ctypes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.config import Paths
from dockyard.errors import DockyardError, NotFound

MNT_DETACH = 2
PAGE_LIMIT = 4096
SHORT_LINK_LEN = 12
_MAX_SYMLINKS = 40

# Docker's init layer (daemon/initlayer): created once per container.
_INIT_DIRS = ("dev", "dev/pts", "dev/shm", "proc", "sys", "etc")
_INIT_FILES = (".dockerenv", "etc/resolv.conf", "etc/hosts", "etc/hostname", "dev/console")
_INIT_LINKS = (("etc/mtab", "/proc/mounts"),)

_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
        libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = libc
    return _libc


def _errno() -> int:
    import ctypes

    return ctypes.get_errno()


def container_dir(paths: Paths, container_id: str) -> Path:
    return paths.container_dir(container_id)


def merged_dir(paths: Paths, container_id: str) -> Path:
    return paths.container_dir(container_id) / "merged"


def upper_dir(paths: Paths, container_id: str) -> Path:
    return paths.container_dir(container_id) / "upper"


def prepare(paths: Paths, container_id: str) -> Path:
    """Create the container's directories; returns the container dir."""
    base = paths.container_dir(container_id)
    base.mkdir(parents=True, exist_ok=True)
    for name in ("upper", "work", "merged"):
        (base / name).mkdir(exist_ok=True)
    return base


def init_layer(paths: Paths) -> Path:
    """Docker's init layer, made once per store and shared by every container: the
    same empty mount targets for all, so runc never creates them in an upper dir."""
    init = paths.layers / "l" / "init"
    if init.is_dir():
        return init
    init.parent.mkdir(parents=True, exist_ok=True)
    # unique per call: threads of one command (compose) may build it at the same time
    tmp = init.with_name(f"init.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    tmp.mkdir()
    for d in _INIT_DIRS:
        (tmp / d).mkdir(0o755, exist_ok=True)
    for f in _INIT_FILES:
        os.close(os.open(tmp / f, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o755))
    for link, target in _INIT_LINKS:
        try:
            os.symlink(target, tmp / link)
        except FileExistsError:
            pass
    try:
        os.rename(tmp, init)
    except OSError:  # another command made it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return init


def short_link(paths: Paths, layer_dir: Path) -> str | None:
    """The name of a layer dir's short link in ``layers/l`` (created on first use)."""
    if layer_dir.parent != paths.layers:
        return None
    name = layer_dir.name
    target = f"../{name}"
    links = paths.layers / "l"
    for short in (name[:SHORT_LINK_LEN], name):
        for _ in range(2):
            try:
                os.symlink(target, links / short)
                return short
            except FileExistsError:
                if os.readlink(links / short) == target:
                    return short
                break  # a prefix shared with another layer: use the full name
            except FileNotFoundError:
                links.mkdir(exist_ok=True)
    return None


def is_mounted(paths: Paths, container_id: str) -> bool:
    base = paths.container_dir(container_id)
    try:
        return os.stat(base / "merged").st_dev != os.stat(base).st_dev
    except FileNotFoundError:
        return False


def mount(paths: Paths, container_id: str, lower_dirs: list[Path]) -> Path:
    """Mount the container's overlay (``lower_dirs`` bottom first); returns ``merged``.

    Mounting an already mounted container is a no-op.
    """
    base = paths.container_dir(container_id)
    merged = base / "merged"
    if is_mounted(paths, container_id):
        return merged
    if not merged.is_dir():
        prepare(paths, container_id)
    init_layer(paths)
    # Every path goes through an fd (/dev/fd/N/...): short enough for Docker's 125
    # layers in one page, and no chdir (other threads may rely on the cwd).
    (paths.layers / "l").mkdir(parents=True, exist_ok=True)
    layers_fd = os.open(paths.layers / "l", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        here = f"/dev/fd/{base_fd}/"
        links = f"/dev/fd/{layers_fd}/"
        lowers: list[str] = []
        for layer in reversed(lower_dirs):
            layer = Path(layer)
            short = short_link(paths, layer)
            lowers.append(links + short if short else os.fspath(layer.absolute()))
        if not lower_dirs:
            (paths.layers / "l" / "empty").mkdir(exist_ok=True)
            lowers.append(links + "empty")
        _write_if_changed(base / "lower", "".join(f"{os.fspath(p)}\n" for p in lower_dirs))
        lowerdir = ":".join([links + "init", *lowers])
        options = f"lowerdir={lowerdir},upperdir={here}upper,workdir={here}work"
        extra = ",index=off,redirect_dir=off,metacopy=off"
        if len(options) + len(extra) >= PAGE_LIMIT:
            raise DockyardError(
                f"image has too many layers ({len(lower_dirs)}) for one overlay mount"
            )
        err = _mount_overlay(merged, options + extra)
        if err == errno.EINVAL:  # an older kernel without these options
            err = _mount_overlay(merged, options)
    finally:
        os.close(layers_fd)
        os.close(base_fd)
    if err:
        raise DockyardError(f"mounting the container filesystem failed: {os.strerror(err)}")
    return merged


def _mount_overlay(target: Path, options: str) -> int:
    rc = _lib().mount(b"overlay", os.fsencode(target), b"overlay", 0, options.encode())
    return _errno() if rc != 0 else 0


def _write_if_changed(path: Path, text: str) -> None:
    try:
        if path.read_text() == text:
            return
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


def unmount(paths: Paths, container_id: str) -> None:
    """Detach the overlay; not being mounted is fine."""
    merged = paths.container_dir(container_id) / "merged"
    rc = _lib().umount2(os.fsencode(merged), MNT_DETACH)
    if rc != 0:
        err = _errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise DockyardError(f"unmounting {merged} failed: {os.strerror(err)}")


def remove(paths: Paths, container_id: str) -> None:
    """Unmount and delete everything the container's filesystem used."""
    import shutil

    base = paths.container_dir(container_id)
    unmount(paths, container_id)
    if is_mounted(paths, container_id):  # never delete through a live mount into the layers
        raise DockyardError(f"container filesystem {base / 'merged'} is still mounted")
    if base.exists():
        shutil.rmtree(base)


def lower_dirs_of(paths: Paths, container_id: str) -> list[Path]:
    """The image layers of the container's last mount (bottom first)."""
    try:
        text = (paths.container_dir(container_id) / "lower").read_text()
    except FileNotFoundError:
        return []
    return [Path(line) for line in text.splitlines() if line]


# -- docker diff / commit / export -------------------------------------------------


def _exists_below(layers: list[Path], rel: str) -> os.stat_result | None:
    """The stat of ``rel`` in the topmost layer that has it (whiteouts hide it)."""
    for layer in layers:
        try:
            st = os.lstat(os.path.join(layer, rel))
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
            return None
        return st
    return None


def changes(
    paths: Paths,
    container_id: str,
    lower_dirs: list[Path] | None = None,
    exclude: Collection[str] = (),
) -> list[tuple[str, str]]:
    """``docker diff``: ("A"|"C"|"D", "/path") from the upper dir, sorted by path."""
    base = paths.container_dir(container_id)
    upper = os.fspath(base / "upper")
    if lower_dirs is None:
        lower_dirs = lower_dirs_of(paths, container_id)
    layers = [init_layer(paths), *reversed(lower_dirs)]
    result: dict[str, str] = {}
    changed_dirs: set[str] = set()

    def walk(rel: str) -> None:
        try:
            entries = sorted(os.scandir(os.path.join(upper, rel)), key=lambda e: e.name)
        except (NotADirectoryError, FileNotFoundError):
            return
        for entry in entries:
            child = f"{rel}/{entry.name}" if rel else entry.name
            path = "/" + child
            if path in exclude:
                continue
            st = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            below = _exists_below(layers, child)
            kind = ""
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                kind = "D"
            elif is_dir and below is not None and _is_opaque(entry.path):
                kind = "D"
            elif below is None:
                kind = "A"
            elif (
                is_dir
                and stat.S_ISDIR(below.st_mode)
                and st.st_size == below.st_size
                and st.st_mode == below.st_mode
                and st.st_mtime_ns == below.st_mtime_ns
            ):
                kind = ""
            else:
                kind = "C"
            if kind:
                result[path] = kind
                if is_dir:
                    changed_dirs.add(path)
                if kind in ("A", "D"):
                    parent = os.path.dirname(path)
                    if parent != "/" and parent not in changed_dirs:
                        result.setdefault(parent, "C")
                        changed_dirs.add(parent)
            if is_dir:
                walk(child)

    walk("")
    return sorted(((kind, path) for path, kind in result.items()), key=lambda c: c[1])


def _is_opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def commit_layer(paths: Paths, container_id: str, exclude: Collection[str] = ()) -> BinaryIO:
    """The container's changes as an OCI layer tar (a temp file, positioned at 0).

    ``exclude`` lists container paths ("/etc/hosts") left out of the layer.
    """
    import tempfile

    from dockyard.images.layers import tar_overlay_upper

    paths.tmp.mkdir(parents=True, exist_ok=True)
    out = tempfile.TemporaryFile(dir=paths.tmp)
    try:
        tar_overlay_upper(
            paths.container_dir(container_id) / "upper",
            out,
            exclude={p.strip("/") for p in exclude},
        )
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return out


@contextmanager
def mounted(paths: Paths, container_id: str, lower_dirs: list[Path]) -> Iterator[Path]:
    """The container's merged root, mounted for the duration if it was not already."""
    if is_mounted(paths, container_id):
        yield paths.container_dir(container_id) / "merged"
        return
    if not paths.container_dir(container_id).is_dir():
        raise NotFound(f"No such container: {container_id}")
    merged = mount(paths, container_id, lower_dirs)
    try:
        yield merged
    finally:
        unmount(paths, container_id)


def export(paths: Paths, container_id: str, lower_dirs: list[Path], out: BinaryIO) -> None:
    """``docker export``: a tar of the container's whole filesystem."""
    from dockyard.images.layers import tar_tree

    with mounted(paths, container_id, lower_dirs) as root:
        tar_tree(root, out)
