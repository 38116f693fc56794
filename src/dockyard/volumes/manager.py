"""Named and anonymous volumes: directories under ``Paths.volumes`` recorded in SQLite.

A volume is ``<root>/volumes/<name>/_data`` (Docker's layout), so its data
lives on the engine's own disk and is written at that disk's speed. Volumes
created with driver options (``-o type=tmpfs -o device=tmpfs -o o=size=100m``,
or ``-o type=none -o o=bind -o device=/host/dir``) are mounted over ``_data``
when a container first uses them and stay mounted until no container
referencing them is left (checked when a container is removed) or the volume
is removed.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import json
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dockyard import events
from dockyard.config import Paths
from dockyard.containers.spec import ContainerSpec, Mount
from dockyard.db import Database
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.ids import new_id
from dockyard.records import field, record
from dockyard.volumes.parse import validate_volume_name

ANONYMOUS_LABEL = "com.docker.volume.anonymous"
LOCAL_DRIVER = "local"
_VALID_OPTS = {"type", "o", "device", "size"}
_REQUIRED_OPTS = {"device": ("type",), "type": ("device",), "o": ("device", "type")}

SCHEMA = """
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    created TEXT NOT NULL,               -- RFC 3339, UTC, seconds
    labels TEXT NOT NULL DEFAULT '{}',   -- JSON object
    options TEXT NOT NULL DEFAULT '{}'   -- JSON object: driver options (-o)
);
CREATE TABLE IF NOT EXISTS volume_refs (
    container_id TEXT NOT NULL,
    destination TEXT NOT NULL,           -- where the volume is mounted in the container
    name TEXT NOT NULL,                  -- the volume
    anonymous INTEGER NOT NULL,          -- created for this container: `rm -v` removes it
    populated INTEGER NOT NULL DEFAULT 0,  -- image content copy-up done
    PRIMARY KEY (container_id, destination)
);
CREATE INDEX IF NOT EXISTS volume_refs_name ON volume_refs(name);
CREATE TABLE IF NOT EXISTS container_mounts (
    container_id TEXT PRIMARY KEY,
    mounts TEXT NOT NULL                 -- JSON: Docker's inspect "Mounts" as last started
);
"""


@record
class Volume:
    name: str
    driver: str
    created: str
    mountpoint: str
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels

    @property
    def needs_mount(self) -> bool:
        return bool(self.options.get("type") or self.options.get("device"))

    def inspect(self) -> dict[str, Any]:
        """Docker's ``volume inspect`` object (empty maps print as null, like Docker)."""
        return {
            "CreatedAt": self.created,
            "Driver": self.driver,
            "Labels": dict(sorted(self.labels.items())) or None,
            "Mountpoint": self.mountpoint,
            "Name": self.name,
            "Options": dict(sorted(self.options.items())) or None,
            "Scope": "local",
        }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _match_labels(labels: dict[str, str], wanted: list[str]) -> bool:
    """Docker's label filter: every ``key`` present, every ``key=value`` equal."""
    for item in wanted:
        key, has_value, value = item.partition("=")
        if key not in labels or (has_value and labels[key] != value):
            return False
    return True


def _name_matches(name: str, patterns: list[str]) -> bool:
    """Docker's ``name`` filter: an exact name or a regular expression found in it."""
    for pattern in patterns:
        if pattern == name:
            return True
        try:
            if re.search(pattern, name):
                return True
        except re.error:
            continue
    return False


def _bool_filter(key: str, value: str) -> bool:
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise InvalidArgument(f"Invalid filter '{key}=[{value}]'")


def validate_options(name: str, options: dict[str, str]) -> None:
    """The local driver's option rules, with Docker's messages."""
    for opt in options:
        if opt not in _VALID_OPTS:
            raise InvalidArgument(f'create {name}: invalid option: "{opt}"')
    if "size" in options:
        raise InvalidArgument(f"create {name}: quota size requested but no quota support")
    for opt, required in _REQUIRED_OPTS.items():
        if opt in options:
            for req in required:
                if req not in options:
                    raise InvalidArgument(f'create {name}: missing required option: "{req}"')


class VolumeManager:
    """Volumes and which containers use them. Creating one costs nothing: no DB access."""

    def __init__(self, paths: Paths, db: Database) -> None:
        self.paths = paths
        self.db = db
        self._schema_ready = False

    # -- storage ------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create this module's tables on first use (idempotent, once per process)."""
        if self._schema_ready:
            return
        if not self.has_schema():
            with self.db.transaction() as conn:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
        self._schema_ready = True

    def has_schema(self) -> bool:
        if self._schema_ready:
            return True
        rows = self.db.query(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN "
            "('volumes', 'volume_refs', 'container_mounts')"
        )
        self._schema_ready = rows[0][0] == 3
        return self._schema_ready

    def volume_dir(self, name: str) -> Path:
        return self.paths.volumes / name

    def data_dir(self, name: str) -> Path:
        return self.paths.volumes / name / "_data"

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """An exclusive lock on one volume (copy-up, mount, unmount), across processes."""
        self.paths.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.locks / f"volume-{name}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _from_row(self, row: sqlite3.Row) -> Volume:
        return Volume(
            name=row["name"],
            driver=row["driver"],
            created=row["created"],
            mountpoint=str(self.data_dir(row["name"])),
            labels=json.loads(row["labels"]),
            options=json.loads(row["options"]),
        )

    def insert(
        self,
        conn: sqlite3.Connection,
        name: str | None,
        driver: str = LOCAL_DRIVER,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> tuple[Volume, bool]:
        """Record a volume inside the caller's transaction: (volume, created now)."""
        labels = dict(labels or {})
        options = dict(options or {})
        if name is None:
            name = new_id()
            labels.setdefault(ANONYMOUS_LABEL, "")
        else:
            validate_volume_name(name)
        driver = driver or LOCAL_DRIVER
        row = conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        if row is not None:
            if row["driver"] != driver:
                raise Conflict(f"create {name}: volume name must be unique")
            return self._from_row(row), False
        if driver != LOCAL_DRIVER:
            raise DockyardError(
                f'create {name}: error looking up volume plugin {driver}: plugin "{driver}" '
                "not found"
            )
        validate_options(name, options)
        conn.execute(
            "INSERT INTO volumes (name, driver, created, labels, options) VALUES (?, ?, ?, ?, ?)",
            (name, driver, _now(), json.dumps(labels), json.dumps(options)),
        )
        row = conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
        return self._from_row(row), True

    def materialize(self, volume: Volume) -> None:
        """Make sure the volume's directory exists (cheap when it does)."""
        data = self.data_dir(volume.name)
        if not data.is_dir():
            self.volume_dir(volume.name).mkdir(mode=0o701, parents=True, exist_ok=True)
            data.mkdir(mode=0o755, exist_ok=True)

    # -- the volume commands ----------------------------------------------------------

    def create(
        self,
        name: str | None = None,
        *,
        driver: str = LOCAL_DRIVER,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
    ) -> Volume:
        """``volume create``: a new volume, or the existing one of that name (as Docker)."""
        self.ensure_schema()
        with self.db.transaction() as conn:
            volume, new = self.insert(conn, name, driver, labels, options)
        self.materialize(volume)
        if new:
            events.emit(self.paths.root, "volume", "create", volume.name, {"driver": driver})
        return volume

    def get(self, name: str) -> Volume:
        volume = self.find(name)
        if volume is None:
            raise NotFound(f"get {name}: no such volume")
        return volume

    def find(self, name: str) -> Volume | None:
        if not self.has_schema():
            return None
        rows = self.db.query("SELECT * FROM volumes WHERE name = ?", (name,))
        return self._from_row(rows[0]) if rows else None

    def inspect(self, name: str) -> dict[str, Any]:
        volume = self.find(name)
        if volume is None:
            raise NotFound(f"get {name}: no such volume")
        return volume.inspect()

    def list(self, filters: dict[str, list[str]] | None = None) -> builtins.list[Volume]:
        """``volume ls``: filters dangling, name, label, driver (Docker's semantics)."""
        filters = filters or {}
        for key in filters:
            if key not in ("dangling", "name", "label", "driver"):
                raise InvalidArgument(f"Invalid filter '{key}'")
        dangling = [_bool_filter("dangling", v) for v in filters.get("dangling", [])]
        if not self.has_schema():
            return []
        volumes = [self._from_row(r) for r in self.db.query("SELECT * FROM volumes")]
        used = self.users() if dangling else {}
        out = []
        for volume in volumes:
            if "name" in filters and not _name_matches(volume.name, filters["name"]):
                continue
            if "driver" in filters and volume.driver not in filters["driver"]:
                continue
            if "label" in filters and not _match_labels(volume.labels, filters["label"]):
                continue
            if dangling and (volume.name not in used) != dangling[-1]:
                continue
            out.append(volume)
        return sorted(out, key=lambda v: v.name)

    def users(self, exclude: str | None = None) -> dict[str, set[str]]:
        """Volume name -> IDs of the containers (running or not) that reference it."""
        from dockyard.volumes import attach

        return attach.volume_users(self, exclude=exclude)

    def in_use(self, name: str) -> builtins.list[str]:
        """IDs of the containers that reference volume ``name`` (running or not)."""
        from dockyard.volumes import attach

        return sorted(attach.volume_users(self, name=name).get(name, set()))

    def remove(self, name: str, *, force: bool = False) -> None:
        """``volume rm``: refuses a volume any container uses, even with ``force``.

        ``force`` only makes a missing volume not an error (as Docker's ``-f``).
        """
        if not self.has_schema():
            if force:
                return
            raise NotFound(f"get {name}: no such volume")
        with self.locked(name):
            with self.db.transaction() as conn:
                row = conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()
                if row is None:
                    if force:
                        return
                    raise NotFound(f"get {name}: no such volume")
                users = self.in_use(name)
                if users:
                    raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
                trash = self._detach(name)
                conn.execute("DELETE FROM volumes WHERE name = ?", (name,))
        events.emit(self.paths.root, "volume", "destroy", name, {"driver": row["driver"]})
        if trash is not None:
            import shutil

            shutil.rmtree(trash, ignore_errors=True)

    def _detach(self, name: str) -> Path | None:
        """Unmount the volume and move its directory aside for deletion."""
        from dockyard.volumes import mountops

        data = self.data_dir(name)
        if mountops.is_mountpoint(str(data)):
            try:
                mountops.unmount(str(data))
            except OSError as err:
                raise DockyardError(f"remove {name}: {err}") from None
        source = self.volume_dir(name)
        if not source.exists():
            return None
        self.paths.tmp.mkdir(parents=True, exist_ok=True)
        trash = self.paths.tmp / f"removed-volume-{name}-{os.urandom(4).hex()}"
        source.rename(trash)
        return trash

    def prune(
        self, *, all: bool = False, filters: dict[str, builtins.list[str]] | None = None
    ) -> tuple[builtins.list[str], int]:
        """``volume prune``: unused local volumes without driver options -> (names, bytes).

        Like Docker 23+, only anonymous volumes unless ``all``.
        """
        filters = dict(filters or {})
        for key in filters:
            if key not in ("label", "label!", "all"):
                raise InvalidArgument(f"Invalid filter '{key}'")
        for value in filters.pop("all", []):
            all = all or _bool_filter("all", value)
        if not self.has_schema():
            return [], 0
        used = self.users()
        removed: builtins.list[str] = []
        reclaimed = 0
        for volume in self.list():
            if volume.name in used or volume.driver != LOCAL_DRIVER or volume.options:
                continue
            if not all and not volume.anonymous:
                continue
            if "label" in filters and not _match_labels(volume.labels, filters["label"]):
                continue
            if any(_match_labels(volume.labels, [x]) for x in filters.get("label!", [])):
                continue
            size = dir_size(self.data_dir(volume.name))
            try:
                self.remove(volume.name, force=True)
            except DockyardError:
                continue
            removed.append(volume.name)
            reclaimed += size
        return removed, reclaimed

    # -- containers (see dockyard.volumes.attach) -------------------------------------

    def prepare_mounts(
        self,
        container_id: str,
        spec: ContainerSpec,
        image_config: dict[str, Any],
        rootfs: Path,
        volumes_from_mounts: builtins.list[Mount],
    ) -> builtins.list[dict[str, Any]]:
        """OCI mounts for a starting container; see :func:`attach.prepare_mounts`."""
        if not spec.mounts and not volumes_from_mounts and not _image_volumes(image_config):
            return []
        from dockyard.volumes import attach

        return attach.prepare_mounts(
            self, container_id, spec, image_config, rootfs, volumes_from_mounts
        )

    def release(self, container_id: str, remove_anonymous: bool) -> None:
        """Forget a removed container's volumes; ``rm -v`` also removes its anonymous ones."""
        from dockyard.volumes import attach

        attach.release(self, container_id, remove_anonymous)

    def mounts_for_inspect(
        self, container_id: str, spec: ContainerSpec
    ) -> builtins.list[dict[str, Any]]:
        """Docker's container inspect ``Mounts``."""
        from dockyard.volumes import attach

        return attach.mounts_for_inspect(self, container_id, spec)

    def inherit_anonymous(
        self, old_id: str, new_id: str, spec: ContainerSpec, image_config: dict[str, Any]
    ) -> builtins.list[str]:
        """A recreated container keeps its predecessor's anonymous volumes; see
        :func:`attach.inherit_anonymous`."""
        from dockyard.volumes import attach

        return attach.inherit_anonymous(self, old_id, new_id, spec, image_config)

    def volumes_from_mounts(
        self, container_id: str, spec: ContainerSpec, mode: str = "rw"
    ) -> builtins.list[Mount]:
        """The mounts ``--volumes-from`` copies from container ``container_id``."""
        from dockyard.volumes import attach

        return attach.volumes_from_mounts(self, container_id, spec, mode)


def _image_volumes(image_config: dict[str, Any]) -> dict[str, Any]:
    """``config.Volumes`` of an image config (whole config or its ``config`` section)."""
    inner = image_config.get("config")
    section = inner if isinstance(inner, dict) else image_config
    volumes = section.get("Volumes") if isinstance(section, dict) else None
    return volumes if isinstance(volumes, dict) else {}


def dir_size(path: Path) -> int:
    """Bytes of the files under ``path`` (hard links once), as Docker's prune reports."""
    total = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            try:
                info = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode) or (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total
