"""COPY and ADD into a step's root filesystem, with BuildKit's copy rules.

- A directory source copies its contents into DEST (created, with parents).
- A file goes to DEST, or into it when DEST ends in "/" or is a directory.
- Several sources need a DEST ending in "/".
- Context files become root-owned; files from another stage or image keep
  their owners; ``--chown`` (names looked up in the image's /etc/passwd and
  /etc/group) and ``--chmod`` override. Modification times are kept.
- Directories that exist keep their metadata; new ones get the source's.
- ADD of a local tar archive (plain, gzip, bzip2, xz) extracts it into DEST.

Every DEST path is resolved inside the root (symlinks followed, ``..``
stopping at the root), so nothing is written outside it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from dockyard.build import BuildError
from dockyard.build.context import Entry
from dockyard.records import field, record


@record
class CopyItem:
    """One source of a COPY/ADD, ready to place."""

    name: str  # base name used when placed into a directory
    entries: Iterator[Entry] | None = None  # the source (rel "") and what is below it
    content: bytes | None = None  # heredoc data (a regular file)
    content_path: str | None = None  # downloaded data (a regular file), copied
    mode: int = 0o644  # for content
    mtime_ns: int | None = None  # for content; None: now
    keep_owner: bool = False  # from another stage/image: keep uid/gid
    archive: str | None = None  # ADD: host path of a local tar to extract
    is_dir: bool = False


@record
class Owner:
    uid: int
    gid: int


@record
class _Copier:
    root: Path
    owner: Owner | None
    chmod: int | None
    links: dict[tuple[int, int], str] = field(default_factory=dict)
    dir_times: list[tuple[str, int, int]] = field(default_factory=list)

    def resolve(self, path: str) -> str:
        from dockyard.fsutil import resolve_in_root

        return os.fspath(resolve_in_root(self.root, path))

    def resolve_parent(self, path: str) -> str:
        """Host path of ``path`` with its parents resolved in the root, not its last part."""
        from dockyard.fsutil import resolve_in_root

        return os.fspath(resolve_in_root(self.root, path, follow_last=False))

    def mkdir_all(self, path: str) -> None:
        """``mkdir -p`` inside the root; new directories get 0755 (or --chmod), the owner."""
        parts = [p for p in path.split("/") if p]
        current = "/"
        for part in parts:
            current = current.rstrip("/") + "/" + part
            host = self.resolve(current)
            try:
                st = os.lstat(host)
            except FileNotFoundError:
                os.mkdir(host, 0o755)
                os.chmod(host, self.chmod if self.chmod is not None else 0o755)
                if self.owner is not None:
                    os.lchown(host, self.owner.uid, self.owner.gid)
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise BuildError(f"cannot copy to {path}: {current} is not a directory")

    def is_dir(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(os.stat(self.resolve(path)).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            return False

    def place(self, item: CopyItem, dest: str, dest_is_dir: bool) -> None:
        if item.archive is not None:
            self.mkdir_all(dest)
            self.extract(item.archive, dest)
            return
        if item.is_dir:
            self.mkdir_all(dest)
            assert item.entries is not None
            top = next(item.entries)
            self.copy_tree(item.entries, dest, item.keep_owner)
            host = self.resolve(dest)
            os.utime(host, ns=(top.st.st_atime_ns, top.st.st_mtime_ns))
            self.finish_dirs()
            return
        if dest_is_dir or dest.endswith("/") or self.is_dir(dest):
            self.mkdir_all(dest)
            target = dest.rstrip("/") + "/" + item.name
        else:
            self.mkdir_all(os.path.dirname(dest.rstrip("/")) or "/")
            target = dest.rstrip("/")
        if item.content is not None or item.content_path is not None:
            self.write_content(target, item)
            return
        assert item.entries is not None
        entry = next(item.entries)
        self.copy_entry(entry, target, item.keep_owner)

    def copy_tree(self, entries: Iterator[Entry], dest: str, keep_owner: bool) -> None:
        base = dest.rstrip("/")
        for entry in entries:
            self.copy_entry(entry, f"{base}/{entry.rel}", keep_owner)

    def _prepare_target(self, host: str, is_dir: bool, target: str = "") -> bool:
        """Make room for a new entry; True if a directory is already there (kept).

        A symlink to a directory inside the root counts as that directory when a
        directory is copied onto it (``/lib -> usr/lib`` in usrmerge images)."""
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            return False
        if is_dir and target and stat.S_ISLNK(st.st_mode) and self.is_dir(target):
            return True
        if stat.S_ISDIR(st.st_mode):
            if is_dir:
                return True
            raise BuildError(
                f"cannot replace directory {host.removeprefix(str(self.root))} with a file"
            )
        os.unlink(host)
        return False

    def copy_entry(self, entry: Entry, target: str, keep_owner: bool) -> None:
        st = entry.st
        mode = st.st_mode
        host = self.resolve_parent(target)
        parent = os.path.dirname(host)
        if not os.path.isdir(parent):
            self.mkdir_all(os.path.dirname(target))
            host = self.resolve_parent(target)
        existed = self._prepare_target(host, stat.S_ISDIR(mode), target)
        if stat.S_ISDIR(mode):
            if not existed:
                os.mkdir(host, 0o700)
                self.apply_meta(host, st, keep_owner)
            if not os.path.islink(host):
                self.dir_times.append((host, st.st_atime_ns, st.st_mtime_ns))
            return
        if stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            linked = self.links.get(key) if st.st_nlink > 1 else None
            if linked is not None:
                os.link(linked, host)
                return
            _copy_file(entry.path, host)
            if st.st_nlink > 1:
                self.links[key] = host
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(entry.path), host)
        elif stat.S_ISFIFO(mode):
            os.mkfifo(host, 0o600)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            try:
                os.mknod(host, stat.S_IFMT(mode) | 0o600, st.st_rdev)
            except PermissionError:
                return
        else:
            return  # sockets are not copied
        self.apply_meta(host, st, keep_owner)
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)

    def apply_meta(self, host: str, st: os.stat_result, keep_owner: bool) -> None:
        if self.owner is not None:
            uid, gid = self.owner.uid, self.owner.gid
        elif keep_owner:
            uid, gid = st.st_uid, st.st_gid
        else:
            uid, gid = 0, 0
        os.lchown(host, uid, gid)
        if not stat.S_ISLNK(st.st_mode):
            os.chmod(host, self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode))

    def write_content(self, target: str, item: CopyItem) -> None:
        host = self.resolve_parent(target)
        self._prepare_target(host, False)
        if item.content_path is not None:
            _copy_file(item.content_path, host)
        else:
            assert item.content is not None
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                view = memoryview(item.content)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        owner = self.owner or Owner(0, 0)
        os.lchown(host, owner.uid, owner.gid)
        os.chmod(host, self.chmod if self.chmod is not None else item.mode)
        if item.mtime_ns is not None:
            os.utime(host, ns=(item.mtime_ns, item.mtime_ns))

    def extract(self, archive: str, dest: str) -> None:
        from dockyard.images.layers import unpack

        host = self.resolve(dest)
        owner = (self.owner.uid, self.owner.gid) if self.owner else None
        with open(archive, "rb") as f:
            unpack(f, Path(host), whiteouts=False, owner=owner)

    def finish_dirs(self) -> None:
        """Directory times last, deepest first: filling them changed them."""
        for host, atime, mtime in reversed(self.dir_times):
            try:
                os.utime(host, ns=(atime, mtime))
            except OSError:
                continue
        self.dir_times.clear()


def _copy_file(src: str, dst: str) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(src, "rb") as fin:
        fd = os.open(dst, flags, 0o600)
        try:
            size = os.fstat(fin.fileno()).st_size
            offset = 0
            while offset < size:
                try:
                    n = os.copy_file_range(fin.fileno(), fd, size - offset)
                except OSError:
                    n = os.sendfile(fd, fin.fileno(), offset, size - offset)
                    if n == 0:
                        break
                    offset += n
                    continue
                if n == 0:
                    break
                offset += n
        finally:
            os.close(fd)


def copy_into(
    root: Path,
    items: list[CopyItem],
    dest: str,
    *,
    owner: Owner | None,
    chmod: int | None,
    keyword: str = "COPY",
) -> None:
    """Place ``items`` at container path ``dest`` (absolute, "/"-ended for a dir)."""
    if len(items) > 1 and not dest.endswith("/"):
        raise BuildError(
            f"When using {keyword} with more than one source file, "
            "the destination must be a directory and end with a /"
        )
    copier = _Copier(root, owner, chmod)
    for item in items:
        copier.place(item, dest, len(items) > 1)
    copier.finish_dirs()


def parse_chmod(text: str) -> int | None:
    if not text:
        return None
    try:
        value = int(text, 8)
    except ValueError:
        raise BuildError(
            f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
        ) from None
    if not 0 <= value <= 0o7777:
        raise BuildError(
            f"invalid chmod parameter: '{text}'. it should be octal string and between 0 and 07777"
        )
    return value


def resolve_chown(root: Path, spec: str) -> Owner | None:
    """``--chown=user[:group]``: names from the image's /etc/passwd and /etc/group;
    a user name alone takes its primary group, a uid alone the same gid (BuildKit)."""
    if not spec:
        return None
    user, sep, group = spec.partition(":")
    if ":" in group:
        raise BuildError(f"invalid chown string format: {spec}")
    uid = gid = 0
    if user.isdigit():
        uid = gid = int(user)
    else:
        entry = _lookup(root, "/etc/passwd", user)
        if entry is None:
            raise BuildError(
                f"unable to convert uid/gid chown string to host mapping: "
                f"can't find uid for user {user}: no such user: {user}"
            )
        uid, gid = int(entry[2]), int(entry[3])
    if sep and group:
        if group.isdigit():
            gid = int(group)
        else:
            found = _lookup(root, "/etc/group", group)
            if found is None:
                raise BuildError(
                    f"unable to convert uid/gid chown string to host mapping: "
                    f"can't find gid for group {group}: no such group: {group}"
                )
            gid = int(found[2])
    return Owner(uid, gid)


def _lookup(root: Path, path: str, name: str) -> list[str] | None:
    from dockyard.fsutil import resolve_in_root

    try:
        text = resolve_in_root(root, path).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            try:
                int(fields[2])
                if path.endswith("passwd"):
                    int(fields[3])
            except ValueError:
                continue
            return fields
    return None


def is_archive(path: str) -> bool:
    """ADD extracts a local file when it is a tar, plain or compressed."""
    from dockyard.images.layers import decompress, detect_compression

    try:
        with open(path, "rb") as f:
            head = f.read(6)
            compression = detect_compression(head)
            f.seek(0)
            reader = decompress(f, compression)
            block = b""
            while len(block) < 512:
                chunk = reader.read(512 - len(block))
                if not chunk:
                    break
                block += chunk
    except (OSError, EOFError, ValueError, BuildError):
        return False
    except Exception:
        return False
    return len(block) == 512 and block[257:262] == b"ustar"


def walk_host(path: str) -> Iterator[Entry]:
    """A source in another stage's or image's root: the path then its tree, sorted."""
    st = os.stat(path)
    yield Entry("", path, st)
    if stat.S_ISDIR(st.st_mode):
        yield from _walk(path, "")


def _walk(path: str, rel: str) -> Iterator[Entry]:
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        child = f"{rel}/{entry.name}" if rel else entry.name
        yield Entry(child, entry.path, entry.stat(follow_symlinks=False))
        if entry.is_dir(follow_symlinks=False):
            yield from _walk(entry.path, child)


def mkdir_all(root: Path, path: str, owner: Owner | None) -> None:
    """WORKDIR: create ``path`` and missing parents (0755, ``owner`` or root)."""
    _Copier(root, owner, None).mkdir_all(path)
