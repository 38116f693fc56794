"""The shared state store: one SQLite database under the root directory.

Every dockyard command is a short process; many may run at once. SQLite in
WAL mode with a busy timeout serializes writers (``BEGIN IMMEDIATE``) while
readers never block, so parallel ``run``/``rm``/``ps`` cannot corrupt the
store or lose a record. Schema changes bump ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,             -- config digest, "sha256:<hex>"
    manifest_digest TEXT,            -- digest of the OCI manifest we keep for it
    created TEXT,                    -- the config's "created" (RFC 3339)
    size INTEGER NOT NULL DEFAULT 0, -- sum of unpacked layer sizes
    parent TEXT,                     -- image this one was committed/built from
    added REAL NOT NULL              -- unix time it entered this store
);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,           -- normalized "docker.io/library/busybox:latest"
    image_id TEXT NOT NULL REFERENCES images(id)
);
CREATE INDEX IF NOT EXISTS tags_image ON tags(image_id);
CREATE TABLE IF NOT EXISTS repo_digests (
    repository TEXT NOT NULL,        -- normalized "docker.io/library/busybox"
    digest TEXT NOT NULL,            -- manifest digest in that repository
    image_id TEXT NOT NULL REFERENCES images(id),
    PRIMARY KEY (repository, digest)
);
CREATE TABLE IF NOT EXISTS layers (
    diff_id TEXT PRIMARY KEY,        -- digest of the uncompressed tar
    blob_digest TEXT NOT NULL,       -- digest of the blob as stored (maybe compressed)
    media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    size INTEGER NOT NULL            -- bytes of unpacked content
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,
    image TEXT NOT NULL,             -- the image as the user named it
    created TEXT NOT NULL,           -- RFC 3339 with nanoseconds
    spec TEXT NOT NULL,              -- ContainerSpec as JSON
    config TEXT NOT NULL,            -- Docker's container Config (image merged), JSON
    state TEXT NOT NULL              -- ContainerState as JSON (see containers.state)
);
CREATE INDEX IF NOT EXISTS containers_image ON containers(image_id);
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,
    image_id TEXT NOT NULL,
    added REAL NOT NULL
);
"""


class Database:
    """A connection to the state store with explicit write transactions."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            self._migrate()
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")

    def _migrate(self) -> None:
        # Switching to WAL takes an exclusive lock without waiting on the busy timeout:
        # commands creating the same new store at once retry it.
        for attempt in range(500):
            try:
                self.conn.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or attempt == 499:
                    raise
                time.sleep(0.01)
        with self.transaction():
            if self.conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front, so concurrent writers queue, not deadlock."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        self.conn.close()
