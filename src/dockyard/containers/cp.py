"""``docker cp``: copying between the host and a container's filesystem as its
processes see it, volumes, bind mounts and tmpfs included.

A running container is reached through ``/proc/PID/root``, its own mount tree.
A stopped one gets its overlay mounted and its bind mounts and volumes bound
on top in a private mount namespace of a child process, so that nothing stays
mounted whatever happens to the command. Paths inside are resolved by
``resolve_in_root`` (symlinks never lead out); the caller pauses a running
container while copying into it, so that it cannot swap a checked path for a
link.
"""

from __future__ import annotations

import os
import pickle
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar

from dockyard.config import Paths
from dockyard.containers import rootfs
from dockyard.errors import DockyardError, InvalidArgument, NotFound, UnsafePath
from dockyard.fsutil import resolve_in_root
from dockyard.records import field, record
from dockyard.volumes import mountops

T = TypeVar("T")

# mounts of these kinds hold nothing that docker cp copies
_VIRTUAL_TYPES = {"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "tmpfs"}


@record
class FilesystemView:
    """How to reach one container's filesystem."""

    paths: Paths
    container_id: str
    lower_dirs: list[Path]
    pid: int = 0  # the running container's init process, or 0
    binds: list[tuple[str, str]] = field(default_factory=list)  # (host source, container path)


def bind_mounts(config: dict[str, Any]) -> list[tuple[str, str]]:
    """The bind mounts (volumes included) of a container's OCI config, outermost first."""
    binds = []
    for mount in config.get("mounts", []):
        options = mount.get("options", [])
        if mount.get("type") in _VIRTUAL_TYPES:
            continue
        if mount.get("type") == "bind" or "bind" in options or "rbind" in options:
            binds.append((mount["source"], mount["destination"]))
    return sorted(binds, key=lambda b: b[1].rstrip("/").count("/"))


def within(view: FilesystemView, fn: Callable[[Path], T]) -> T:
    """Call ``fn`` with the root of the container's filesystem as its processes see it."""
    if view.pid > 0 and os.path.isdir(f"/proc/{view.pid}/root"):
        return fn(Path(f"/proc/{view.pid}/root"))
    if not view.binds:
        with rootfs.mounted(view.paths, view.container_id, view.lower_dirs) as root:
            return fn(root)
    return _in_child_namespace(lambda: _with_binds(view, fn))


def _with_binds(view: FilesystemView, fn: Callable[[Path], T]) -> T:
    with rootfs.mounted(view.paths, view.container_id, view.lower_dirs) as root:
        for source, destination in view.binds:
            target = resolve_in_root(root, destination)
            if not os.path.exists(source) or not os.path.exists(target):
                continue
            if os.path.isdir(source) != os.path.isdir(target):
                continue
            mountops.mount(source, os.fspath(target), "", "rbind")
        return fn(root)


def _in_child_namespace(fn: Callable[[], T]) -> T:
    """Run ``fn`` in a forked child with a mount namespace of its own, whose mounts
    vanish with it; its result or exception comes back through a pipe."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        status = 0
        try:
            mountops.unshare_mounts()
            outcome: tuple[bool, Any] = (True, fn())
        except BaseException as err:  # noqa: BLE001 - every failure goes back to the parent
            outcome = (False, err if isinstance(err, DockyardError) else DockyardError(str(err)))
            status = 1
        try:
            sys.stdout.flush()
            data = pickle.dumps(outcome)
        except Exception as err:  # noqa: BLE001
            data = pickle.dumps((False, DockyardError(str(err))))
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(data)
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        raise DockyardError("copying failed: the helper process died")
    ok, value = pickle.loads(data)
    if not ok:
        raise value
    return value


@record
class PathStat:
    """What ``docker cp`` learns about a source before copying (Docker's PathStat)."""

    name: str
    size: int
    mode: int  # st_mode
    mtime: float
    link_target: str

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


def _contents_only(path: str) -> bool:
    return path.endswith("/.") or path == "."


def stat_path(root: Path, path: str) -> tuple[Path, PathStat]:
    """Resolve and stat a container path (the last component is not followed)."""
    resolved = resolve_in_root(root, path, follow_last=False)
    try:
        st = os.lstat(resolved)
    except (FileNotFoundError, NotADirectoryError):
        raise NotFound(f"Could not find the file {path} in container") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = "/" + os.path.relpath(resolve_in_root(root, path), root).lstrip("./")
    name = os.path.basename(path.rstrip("/")) or "/"
    return resolved, PathStat(name, st.st_size, st.st_mode, st.st_mtime, link)


def copy_from(
    view: FilesystemView,
    src_path: str,
    out_tar: BinaryIO,
    *,
    follow_link: bool = False,
) -> PathStat:
    """Write a tar of container ``src_path`` to ``out_tar``; entries start at its basename.

    A path ending in ``/.`` archives the directory's contents (entries start with ``.``).
    """
    from dockyard.images.layers import TarWriter

    def copy(root: Path) -> PathStat:
        resolved, info = stat_path(root, src_path)
        if follow_link and info.link_target:
            resolved, info = stat_path(root, info.link_target)
            info.name = os.path.basename(src_path.rstrip("/"))
        writer = TarWriter(out_tar)
        top = "." if _contents_only(src_path) or info.name == "/" else info.name
        writer.add_path(os.fspath(resolved), top)
        if info.is_dir:
            writer.add_tree(os.fspath(resolved), "" if top == "." else top)
        writer.close()
        out_tar.flush()
        return info

    return within(view, copy)


def copy_to(
    view: FilesystemView,
    src: str | os.PathLike[str] | IO[bytes],
    dest_path: str,
    *,
    archive: bool = False,
    follow_link: bool = False,
) -> None:
    """``docker cp SRC CONTAINER:DEST``: a host path, or a tar stream extracted into DEST.

    Entries are owned by root unless ``archive`` (``-a``) keeps the source's owners.
    """

    def copy(root: Path) -> None:
        if not isinstance(src, (str, os.PathLike)):
            dest = resolve_in_root(root, dest_path)
            if not dest.is_dir():
                raise InvalidArgument(f"extraction point is not a directory: {dest_path}")
            from dockyard.images.layers import unpack

            unpack(src, dest, whiteouts=False, no_replace_dir=True)
            return
        copy_tree(
            os.fspath(src),
            root,
            dest_path,
            resolve=lambda p, follow: resolve_in_root(root, p, follow),
            owner=None if archive else (0, 0),
            follow_link=follow_link,
        )

    within(view, copy)


def copy_to_host(
    view: FilesystemView,
    src_path: str,
    host_dest: str,
    *,
    follow_link: bool = False,
) -> None:
    """``docker cp CONTAINER:SRC DEST`` onto the host, with Docker's placement rules."""

    def copy(root: Path) -> None:
        resolved, info = stat_path(root, src_path)
        if follow_link and info.link_target:
            resolved, _ = stat_path(root, info.link_target)
        source = os.fspath(resolved) + ("/." if _contents_only(src_path) else "")
        copy_tree(
            source,
            Path("/"),
            os.path.abspath(host_dest) + ("/" if host_dest.endswith("/") else ""),
            resolve=lambda p, follow: Path(os.path.realpath(p)),
            owner=None,
            follow_link=False,
            name=info.name,
        )

    within(view, copy)


def copy_tree(
    src: str,
    dest_root: Path,
    dest_path: str,
    *,
    resolve: Any,
    owner: tuple[int, int] | None,
    follow_link: bool,
    name: str | None = None,
) -> None:
    """Copy host path ``src`` to ``dest_path`` (resolved by ``resolve``) per ``docker cp``.

    - file -> missing DEST: created as DEST; DEST ending in "/" must exist
    - file -> existing file: overwritten; -> existing dir: copied into it
    - dir -> missing DEST: created with the dir's contents
    - dir -> existing dir: copied into it, or only its contents if SRC ends in "/."
    - dir -> existing file: error
    """
    import tempfile

    from dockyard.images.layers import TarWriter, unpack

    contents = _contents_only(src)
    src_real = os.path.realpath(src) if follow_link else src.rstrip("/") or "/"
    if contents:
        src_real = src_real[:-2] if src_real.endswith("/.") else src_real
    try:
        src_st = os.lstat(src_real)
    except FileNotFoundError:
        raise NotFound(f"no such file or directory: {src}") from None
    src_is_dir = stat.S_ISDIR(src_st.st_mode)
    base = name or os.path.basename(src_real.rstrip("/")) or "."
    dest = resolve(dest_path, True)
    dest_exists = os.path.lexists(dest)
    if dest_exists and os.path.isdir(dest):
        target_dir, top = dest, (None if (src_is_dir and contents) else base)
    elif dest_exists:
        if src_is_dir:
            raise InvalidArgument(f"cannot copy a directory to a file: {dest_path}")
        target_dir, top = dest.parent, dest.name
    else:
        if dest_path.endswith("/") and not src_is_dir:
            raise NotFound(f"no such directory: {dest_path}")
        if not dest.parent.is_dir():
            raise NotFound(f"no such directory: {os.path.dirname(dest_path.rstrip('/'))}")
        target_dir, top = dest.parent, dest.name
    _check_below(dest_root, target_dir)
    with tempfile.SpooledTemporaryFile(max_size=16 * 1024 * 1024) as spool:
        writer = TarWriter(spool)  # type: ignore[arg-type]
        if top is None:
            writer.add_tree(src_real, "")
        else:
            writer.add_path(src_real, top)
            if src_is_dir:
                writer.add_tree(src_real, top)
        writer.close()
        spool.seek(0)
        unpack(spool, target_dir, whiteouts=False, owner=owner, no_replace_dir=True)


def _check_below(root: Path, path: Path) -> None:
    """Recheck that a resolved target lies below the root, as the host sees it.

    Through ``/proc/PID/root`` the host's realpath means nothing (the link reads
    "/"); there the resolution inside the root, done while paused, is the check.
    """
    if root == Path("/") or (root.parts[:2] == ("/", "proc") and root.name == "root"):
        return
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if real != real_root and not real.startswith(real_root + "/"):
        raise UnsafePath(f"refusing to copy outside the container: {path}")
