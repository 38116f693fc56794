"""Filesystem helpers shared by the subsystems that look inside container roots."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from dockyard.errors import InvalidArgument

_MAX_SYMLINKS = 255


def resolve_in_root(root: Path, path: str, follow_last: bool = True) -> Path:
    """The host path of container ``path``, every symlink resolved inside ``root``.

    ``..`` stops at the root and absolute link targets restart from it, so the
    result is always below ``root``.
    """
    pending = [p for p in path.split("/") if p]
    pending.reverse()
    parts: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        candidate = os.path.join(root, *parts, part)
        try:
            st = os.lstat(candidate)
        except (FileNotFoundError, NotADirectoryError):
            parts.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (pending or follow_last):
            links += 1
            if links > _MAX_SYMLINKS:
                raise InvalidArgument(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                parts = []
            new = [p for p in target.split("/") if p]
            new.reverse()
            pending.extend(new)
            continue
        parts.append(part)
    return Path(root, *parts)


def tree_size(path: Path | str) -> int:
    """Bytes of the regular files (and link targets) below ``path``, not following links."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def which(name: str) -> str | None:
    """The executable ``name`` on PATH, as ``shutil.which`` (which costs an import)."""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return None
