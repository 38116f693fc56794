"""The small C programs dockyard runs (the container monitor, the IPv6 port proxy),
compiled on first use into a file named after a hash of their source, so that an
updated source gets a new binary and concurrent builders produce the same file."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

from dockyard.errors import RuntimeFailure

_built: dict[Path, str] = {}


def _cache_dirs(source: Path) -> list[Path]:
    """Where to look for / build a binary: next to the source, else a cache dir."""
    dirs = [source.parent]
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        dirs.append(Path(xdg) / "dockyard")
    if os.geteuid() == 0:
        dirs.append(Path("/var/cache/dockyard"))
    dirs.append(Path.home() / ".cache" / "dockyard")
    return dirs


def binary(source: Path, prefix: str, what: str) -> str:
    """Path of the program compiled from ``source``, building it if needed (atomically)."""
    if source in _built:
        return _built[source]
    try:
        name = f"{prefix}-{zlib.crc32(source.read_bytes()):08x}"
    except OSError as e:
        raise RuntimeFailure(f"{what} source missing: {e}") from None
    dirs = _cache_dirs(source)
    for d in dirs:
        if os.access(d / name, os.X_OK):
            _built[source] = str(d / name)
            return _built[source]
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            _built[source] = _build(source, d / name, what)
            return _built[source]
    raise RuntimeFailure(f"no writable directory to build the {what} in: {dirs}")


def _build(source: Path, target: Path, what: str) -> str:
    import subprocess

    tmp = target.with_name(f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.tmp")
    cc = os.environ.get("CC", "cc")
    try:
        proc = subprocess.run(
            [cc, "-O2", "-Wall", "-o", str(tmp), str(source)], capture_output=True, text=True
        )
    except FileNotFoundError:
        raise RuntimeFailure(
            f"cannot build the {what}: C compiler {cc!r} not found (apt-get install gcc)"
        ) from None
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeFailure(f"cannot build the {what}: {proc.stderr.strip()}")
    os.rename(tmp, target)  # atomic: concurrent builders produce the same file
    return str(target)
