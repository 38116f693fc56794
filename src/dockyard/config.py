"""Where dockyard keeps its state: a persistent root and a runtime root.

Both default to Docker-like system paths and are overridable (``--root`` /
``DOCKYARD_ROOT``, ``--runroot`` / ``DOCKYARD_RUNROOT``) so that tests never
touch a user's real store.
"""

from __future__ import annotations

import os
from pathlib import Path

from dockyard.records import record

DEFAULT_ROOT = "/var/lib/dockyard"
DEFAULT_RUNROOT = "/run/dockyard"


@record(frozen=True)
class Paths:
    """Every directory the subsystems use, derived from the two roots."""

    root: Path
    runroot: Path

    @property
    def db(self) -> Path:
        return self.root / "state.db"

    @property
    def blobs(self) -> Path:
        """Content store: ``blobs/sha256/<hex>``."""
        return self.root / "blobs"

    @property
    def layers(self) -> Path:
        """Unpacked layers, one directory per diff ID, shared between images."""
        return self.root / "layers"

    @property
    def containers(self) -> Path:
        """Per-container persistent files: upper/work/merged dirs, config.json, logs."""
        return self.root / "containers"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def tmp(self) -> Path:
        """Scratch space on the same filesystem as the store, for atomic renames."""
        return self.root / "tmp"

    @property
    def runtime_state(self) -> Path:
        """The OCI runtime's own state directory (runc ``--root``)."""
        return self.runroot / "runc"

    @property
    def container_run(self) -> Path:
        """Per-container runtime files written by the monitor (state, attach socket)."""
        return self.runroot / "containers"

    @property
    def locks(self) -> Path:
        return self.runroot / "locks"

    def container_dir(self, container_id: str) -> Path:
        return self.containers / container_id

    def container_run_dir(self, container_id: str) -> Path:
        return self.container_run / container_id

    def ensure(self) -> None:
        """Create the directory skeleton (cheap when it already exists)."""
        for path in (self.blobs / "sha256", self.layers, self.containers, self.volumes, self.tmp):
            path.mkdir(parents=True, exist_ok=True)
        for path in (self.runtime_state, self.container_run, self.locks):
            path.mkdir(parents=True, exist_ok=True)


def default_paths(root: str | None = None, runroot: str | None = None) -> Paths:
    """Paths from explicit values, else the environment, else the defaults."""
    root = root or os.environ.get("DOCKYARD_ROOT") or DEFAULT_ROOT
    runroot = runroot or os.environ.get("DOCKYARD_RUNROOT") or DEFAULT_RUNROOT
    return Paths(Path(root).absolute(), Path(runroot).absolute())


def find_runtime(name: str | None = None) -> str:
    """The OCI runtime binary: ``--runtime``/``DOCKYARD_RUNTIME``, else runc, else crun."""
    from dockyard.errors import DockyardError
    from dockyard.fsutil import which

    wanted = name or os.environ.get("DOCKYARD_RUNTIME")
    candidates = [wanted] if wanted else ["runc", "crun"]
    for candidate in candidates:
        path = which(candidate) if not os.path.isabs(candidate) else candidate
        if path and os.access(path, os.X_OK):
            return path
    raise DockyardError(
        f"OCI runtime {' or '.join(candidates)!s} not found: install runc (apt-get install runc)"
    )
