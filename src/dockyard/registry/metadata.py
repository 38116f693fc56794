"""What we know about layers in registries, so pushes skip work.

For each layer (diff ID) we remember the compressed blobs made or pulled for
it, and in which registry repositories they were seen. A second push then
needs no recompression (HEAD checks only), and a layer that lives in another
repository of the same registry can be mounted instead of uploaded, like
Docker's v2 metadata service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.records import record

if TYPE_CHECKING:
    from dockyard.db import Database

_SCHEMA = """
CREATE TABLE IF NOT EXISTS registry_blobs (
    diff_id TEXT NOT NULL,           -- digest of the uncompressed layer tar
    digest TEXT NOT NULL,            -- digest of a compressed blob of it
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    registry TEXT NOT NULL,          -- "" when only known as a compression result
    repository TEXT NOT NULL,        -- path in that registry, "" as above
    PRIMARY KEY (diff_id, digest, registry, repository)
)
"""

_READY = "_registry_blobs_ready"  # set on a Database once its table is known to exist


@record(frozen=True)
class BlobInfo:
    diff_id: str
    digest: str
    media_type: str
    size: int
    registry: str = ""
    repository: str = ""


def _ensure(db: Database) -> None:
    # a flag on the object, not a set of id()s: a new Database may reuse a closed one's id
    if getattr(db, _READY, False):
        return
    exists = db.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='registry_blobs'")
    if not exists:
        with db.transaction() as conn:
            conn.execute(_SCHEMA)
    setattr(db, _READY, True)


def remember(db: Database, info: BlobInfo) -> None:
    """Record a compressed blob of a layer, optionally as present in registry/repository."""
    _ensure(db)
    with db.transaction() as conn:
        for registry, repository in {("", ""), (info.registry, info.repository)}:
            conn.execute(
                "INSERT OR REPLACE INTO registry_blobs VALUES (?, ?, ?, ?, ?, ?)",
                (info.diff_id, info.digest, info.media_type, info.size, registry, repository),
            )


def known_blobs(db: Database, diff_id: str) -> list[BlobInfo]:
    """Every compressed blob known for a layer, with where it was seen (if anywhere)."""
    _ensure(db)
    rows = db.query(
        "SELECT diff_id, digest, media_type, size, registry, repository FROM registry_blobs "
        "WHERE diff_id = ?",
        (diff_id,),
    )
    return [BlobInfo(*tuple(row)) for row in rows]


def forget(db: Database, digest: str, registry: str, repository: str) -> None:
    """Drop a stale "seen in" record (the registry no longer has the blob there)."""
    _ensure(db)
    with db.transaction() as conn:
        conn.execute(
            "DELETE FROM registry_blobs WHERE digest = ? AND registry = ? AND repository = ?",
            (digest, registry, repository),
        )
