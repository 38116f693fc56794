"""Registering and removing images, pruning, and collecting unused layers and blobs.

Database changes happen in one transaction each; directories leave the store
by a rename inside that transaction (so a concurrent command either sees the
layer registered or not at all) and are deleted after it commits. Removal
follows Docker's image_delete.go: which references go, which conflicts stop
it, and which can be forced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.images import reference as refmod
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.images.store import ImageStore, LayerRecord

_LIVE = ("running", "restarting", "paused")


@record
class _Doomed:
    """Files to delete once the transaction that unregistered them has committed."""

    dirs: list[str] = field(default_factory=list)
    blobs: list[str] = field(default_factory=list)
    reclaimed: int = 0

    def apply(self, store: ImageStore) -> None:
        for path in self.dirs:
            shutil.rmtree(path, ignore_errors=True)
        for digest in self.blobs:
            store.content.delete(digest)


def _retire_layer_dir(store: ImageStore, diff_id: str, doomed: _Doomed) -> None:
    hex_id = diff_id.removeprefix("sha256:")
    target = store.paths.layers / hex_id
    grave = store.paths.tmp / f"gc-{uuid.uuid4().hex}"
    try:
        os.rename(target, grave)
        doomed.dirs.append(str(grave))
    except FileNotFoundError:
        pass
    for short in (hex_id[:12], hex_id):
        link = store.paths.layers / "l" / short
        try:
            if os.readlink(link) == f"../{hex_id}":
                os.unlink(link)
        except OSError:
            pass


# -- registration ----------------------------------------------------------------


@record
class Registration:
    """One image to register: its config (blob already stored), layers and names."""

    image_id: str
    config_size: int
    config: dict[str, Any]
    layers: list[LayerRecord]
    names: list[str]  # normalized tags
    digests: list[tuple[str, str]] = field(default_factory=list)  # (repository, digest)
    parent: str | None = None


def register(store: ImageStore, items: list[Registration]) -> dict[str, str]:
    """Record images whose config blobs and layer directories are in place, in one
    transaction. Returns {tag: previous image ID} for tags that moved from another image.
    """
    from dockyard.images.store import (
        OCI_CONFIG,
        OCI_MANIFEST,
        LayerRecord,
        json_bytes,
        now_rfc3339,
    )

    store.ensure_records()
    doomed = _Doomed()
    moved: dict[str, str] = {}
    with store.db.transaction() as conn:
        for item in items:
            final: list[LayerRecord] = []
            for rec in item.layers:
                if not (store.paths.layers / rec.diff_id.removeprefix("sha256:")).is_dir():
                    raise DockyardError(
                        f"layer {rec.diff_id} was removed by a concurrent command; try again"
                    )
                row = conn.execute(
                    "SELECT * FROM layers WHERE diff_id = ?", (rec.diff_id,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO layers (diff_id, blob_digest, media_type, blob_size, size)"
                        " VALUES (?, ?, ?, ?, ?)",
                        (rec.diff_id, rec.blob_digest, rec.media_type, rec.blob_size, rec.size),
                    )
                    final.append(rec)
                    continue
                if row["blob_digest"] != rec.blob_digest and rec.new_blob:
                    doomed.blobs.append(rec.blob_digest)
                final.append(
                    LayerRecord(
                        rec.diff_id,
                        row["blob_digest"],
                        row["media_type"],
                        row["blob_size"],
                        row["size"],
                    )
                )
            manifest = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": OCI_CONFIG,
                    "digest": item.image_id,
                    "size": item.config_size,
                },
                "layers": [
                    {"mediaType": r.media_type, "digest": r.blob_digest, "size": r.blob_size}
                    for r in final
                ],
            }
            manifest_digest, _ = store.content.put_bytes(json_bytes(manifest))
            size = sum(r.size for r in final)
            tag_time = now_rfc3339() if item.names else None
            conn.execute(
                "INSERT INTO images (id, manifest_digest, created, size, parent, added)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET"
                " manifest_digest = excluded.manifest_digest, size = excluded.size,"
                " parent = coalesce(images.parent, excluded.parent)",
                (
                    item.image_id,
                    manifest_digest,
                    item.config.get("created"),
                    size,
                    item.parent,
                    time.time(),
                ),
            )
            conn.execute(
                "INSERT INTO image_records (image_id, manifest_digest, layers, last_tag_time)"
                " VALUES (?, ?, ?, ?) ON CONFLICT(image_id) DO UPDATE SET"
                " manifest_digest = excluded.manifest_digest, layers = excluded.layers,"
                " last_tag_time = coalesce(excluded.last_tag_time, image_records.last_tag_time)",
                (item.image_id, manifest_digest, " ".join(r.diff_id for r in final), tag_time),
            )
            for name in item.names:
                old = conn.execute("SELECT image_id FROM tags WHERE name = ?", (name,)).fetchone()
                if old is not None and old[0] != item.image_id:
                    moved[name] = old[0]
                conn.execute(
                    "INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)",
                    (name, item.image_id),
                )
            conn.executemany(
                "INSERT OR REPLACE INTO repo_digests (repository, digest, image_id)"
                " VALUES (?, ?, ?)",
                [(repo, digest, item.image_id) for repo, digest in item.digests],
            )
    doomed.apply(store)
    return moved


def discard_unregistered(store: ImageStore, records: list[LayerRecord]) -> None:
    """Remove directories and blobs a failed command added, unless registered since."""
    if not any(r.new_dir or r.new_blob for r in records):
        return
    doomed = _Doomed()
    with store.db.transaction() as conn:
        for rec in records:
            registered = conn.execute(
                "SELECT blob_digest FROM layers WHERE diff_id = ?", (rec.diff_id,)
            ).fetchone()
            if rec.new_dir and registered is None:
                _retire_layer_dir(store, rec.diff_id, doomed)
            if rec.new_blob and (registered is None or registered[0] != rec.blob_digest):
                doomed.blobs.append(rec.blob_digest)
    doomed.apply(store)


# -- references and conflicts -----------------------------------------------------


@record
class _Ref:
    kind: str  # "tag" | "digest"
    repository: str  # normalized name
    value: str  # normalized full reference

    @property
    def familiar(self) -> str:
        return refmod.familiar(self.value)


def _refs(conn: sqlite3.Connection, image_id: str) -> list[_Ref]:
    refs = []
    for (name,) in conn.execute(
        "SELECT name FROM tags WHERE image_id = ? ORDER BY name", (image_id,)
    ):
        refs.append(_Ref("tag", name.rpartition(":")[0], name))
    for repo, digest in conn.execute(
        "SELECT repository, digest FROM repo_digests WHERE image_id = ? ORDER BY repository, digest",
        (image_id,),
    ):
        refs.append(_Ref("digest", repo, f"{repo}@{digest}"))
    return refs


def _drop_ref(conn: sqlite3.Connection, ref: _Ref) -> None:
    if ref.kind == "tag":
        conn.execute("DELETE FROM tags WHERE name = ?", (ref.value,))
    else:
        conn.execute(
            "DELETE FROM repo_digests WHERE repository = ? AND digest = ?",
            (ref.repository, ref.value.rpartition("@")[2]),
        )


def _single_reference(refs: list[_Ref]) -> bool:
    """Docker's isSingleReference: at most one tag, and digests only of its repository."""
    if len(refs) <= 1:
        return len(refs) == 1
    single: _Ref | None = None
    canonical: set[str] = set()
    for ref in refs:
        if ref.kind == "digest":
            canonical.add(ref.repository)
        elif single is None:
            single = ref
        else:
            return False
    if single is None:
        single = refs[0]
    return len(canonical) == 1 and single.repository in canonical


def _users(conn: sqlite3.Connection, image_id: str) -> list[tuple[str, bool]]:
    """(container ID, running) of every container using the image."""
    users = []
    for cid, state in conn.execute(
        "SELECT id, state FROM containers WHERE image_id = ? ORDER BY id", (image_id,)
    ):
        try:
            status = json.loads(state).get("status", "")
        except (ValueError, AttributeError):
            status = ""
        users.append((cid, status in _LIVE))
    return users


_CHILDREN, _RUNNING, _ACTIVE_REF, _STOPPED = 1, 2, 4, 8
_HARD = _CHILDREN | _RUNNING
_SOFT = _ACTIVE_REF | _STOPPED


@record
class _Conflict:
    image_id: str
    message: str
    hard: bool
    used: bool

    def error(self) -> Conflict:
        force = "cannot be forced" if self.hard else "must be forced"
        short = self.image_id.removeprefix("sha256:")[:12]
        return Conflict(f"conflict: unable to delete {short} ({force}) - {self.message}")


def _check(conn: sqlite3.Connection, image_id: str, mask: int) -> _Conflict | None:
    if (
        mask & _CHILDREN
        and conn.execute("SELECT 1 FROM images WHERE parent = ? LIMIT 1", (image_id,)).fetchone()
    ):
        return _Conflict(image_id, "image has dependent child images", True, False)
    users = _users(conn, image_id) if mask & (_RUNNING | _STOPPED) else []
    if mask & _RUNNING:
        for cid, running in users:
            if running:
                return _Conflict(
                    image_id, f"image is being used by running container {cid[:12]}", True, True
                )
    if mask & _ACTIVE_REF and _refs(conn, image_id):
        return _Conflict(image_id, "image is referenced in multiple repositories", False, False)
    if mask & _STOPPED:
        for cid, running in users:
            if not running:
                return _Conflict(
                    image_id, f"image is being used by stopped container {cid[:12]}", False, True
                )
    return None


def _dangling(conn: sqlite3.Connection, image_id: str) -> bool:
    has_child = conn.execute(
        "SELECT 1 FROM images WHERE parent = ? LIMIT 1", (image_id,)
    ).fetchone()
    return not _refs(conn, image_id) and not has_child


# -- removal ----------------------------------------------------------------------


def _chain_ids(diff_ids: list[str]) -> list[str]:
    chain: list[str] = []
    for diff_id in diff_ids:
        if not chain:
            chain.append(diff_id)
        else:
            digest = hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest()
            chain.append(f"sha256:{digest}")
    return chain


def _referenced_layers(store: ImageStore, conn: sqlite3.Connection) -> set[str]:
    used: set[str] = set()
    for (layers,) in conn.execute("SELECT layers FROM image_records"):
        used.update(layers.split())
    # images registered without a record (by older code): read their configs
    for (image_id,) in conn.execute(
        "SELECT id FROM images WHERE id NOT IN (SELECT image_id FROM image_records)"
    ):
        try:
            config = json.loads(store.content.read(image_id))
            used.update((config.get("rootfs") or {}).get("diff_ids") or [])
        except (DockyardError, ValueError):
            continue
    return used


def _drop_image(
    store: ImageStore,
    conn: sqlite3.Connection,
    image_id: str,
    records: list[tuple[str, str]],
    doomed: _Doomed,
) -> None:
    """Delete the image's rows; its layers go too unless another image or a container uses them."""
    row = conn.execute(
        "SELECT manifest_digest, layers FROM image_records WHERE image_id = ?", (image_id,)
    ).fetchone()
    manifest = conn.execute(
        "SELECT manifest_digest FROM images WHERE id = ?", (image_id,)
    ).fetchone()
    conn.execute("DELETE FROM tags WHERE image_id = ?", (image_id,))
    conn.execute("DELETE FROM repo_digests WHERE image_id = ?", (image_id,))
    conn.execute("DELETE FROM images WHERE id = ?", (image_id,))
    records.append(("Deleted", image_id))
    if _users(conn, image_id):
        return  # kept for the container (Docker keeps its layers too)
    conn.execute("DELETE FROM image_records WHERE image_id = ?", (image_id,))
    doomed.blobs.append(image_id)
    if manifest and manifest[0]:
        doomed.blobs.append(manifest[0])
    if row is not None:
        diff_ids = row["layers"].split()
    else:
        try:
            config = json.loads(store.content.read(image_id))
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
        except (DockyardError, ValueError):
            diff_ids = []
    used = _referenced_layers(store, conn)
    chain = _chain_ids(diff_ids)
    for diff_id, chain_id in reversed(list(zip(diff_ids, chain, strict=True))):
        if diff_id in used:
            continue
        layer = conn.execute(
            "SELECT blob_digest, size FROM layers WHERE diff_id = ?", (diff_id,)
        ).fetchone()
        if layer is None:
            continue
        conn.execute("DELETE FROM layers WHERE diff_id = ?", (diff_id,))
        _retire_layer_dir(store, diff_id, doomed)
        doomed.blobs.append(layer["blob_digest"])
        doomed.reclaimed += layer["size"]
        used.add(diff_id)
        records.append(("Deleted", chain_id))


def _delete_helper(
    store: ImageStore,
    conn: sqlite3.Connection,
    image_id: str,
    records: list[tuple[str, str]],
    doomed: _Doomed,
    *,
    force: bool,
    prune: bool,
    quiet: bool,
) -> None:
    conflict = _check(conn, image_id, _HARD | (0 if force else _SOFT))
    if conflict is not None:
        if quiet and (not _dangling(conn, image_id) or conflict.used):
            return
        raise conflict.error()
    parent_row = conn.execute("SELECT parent FROM images WHERE id = ?", (image_id,)).fetchone()
    for ref in _refs(conn, image_id):
        _drop_ref(conn, ref)
        records.append(("Untagged", ref.familiar))
    _drop_image(store, conn, image_id, records, doomed)
    parent = parent_row[0] if parent_row else None
    if prune and parent and conn.execute("SELECT 1 FROM images WHERE id = ?", (parent,)).fetchone():
        _delete_helper(store, conn, parent, records, doomed, force=False, prune=True, quiet=True)


def remove_counting(
    store: ImageStore, ref: str, *, force: bool, prune: bool
) -> tuple[list[tuple[str, str]], int]:
    store.ensure_records()
    records: list[tuple[str, str]] = []
    doomed = _Doomed()
    with store.db.transaction() as conn:
        try:
            image_id = store.resolve_id(ref)
        except NotFound:
            try:
                shown = refmod.parse(ref).with_default_tag().familiar()
            except InvalidArgument:
                shown = ref
            raise NotFound(f"No such image: {shown}") from None
        bare = image_id.removeprefix("sha256:")
        by_id = image_id.startswith(ref) or bare.startswith(ref)
        refs = _refs(conn, image_id)
        if not by_id:
            users = _users(conn, image_id)
            if not force and _single_reference(refs) and users:
                raise Conflict(
                    f'conflict: unable to remove repository reference "{ref}" (must force)'
                    f" - container {users[0][0][:12]} is using its referenced image {bare[:12]}"
                )
            parsed = refmod.parse(ref)
            if parsed.digest:
                target = _Ref("digest", parsed.name, f"{parsed.name}@{parsed.digest}")
            else:
                target = _Ref("tag", parsed.name, parsed.with_default_tag().string())
            _drop_ref(conn, target)
            records.append(("Untagged", target.familiar))
            refs = _refs(conn, image_id)
            if target.kind == "tag" and not any(
                r.kind == "tag" and r.repository == target.repository for r in refs
            ):
                for r in refs:
                    if r.kind == "digest" and r.repository == target.repository:
                        _drop_ref(conn, r)
                        records.append(("Untagged", r.familiar))
                refs = _refs(conn, image_id)
            if refs:
                return records, 0
            quiet = True
        else:
            if _single_reference(refs):
                mask = _HARD | (0 if force else _STOPPED)
                conflict = _check(conn, image_id, mask)
                if conflict is not None:
                    raise conflict.error()
                for r in refs:
                    _drop_ref(conn, r)
                    records.append(("Untagged", r.familiar))
            quiet = False
        _delete_helper(
            store, conn, image_id, records, doomed, force=force, prune=prune, quiet=quiet
        )
    doomed.apply(store)
    return records, doomed.reclaimed


def remove_image(
    store: ImageStore, ref: str, *, force: bool = False, prune: bool = True
) -> list[tuple[str, str]]:
    return remove_counting(store, ref, force=force, prune=prune)[0]


# -- garbage collection ------------------------------------------------------------------


def collect_garbage(store: ImageStore) -> int:
    """Drop records of deleted images no container uses, then unused layers and blobs."""
    store.ensure_records()
    doomed = _Doomed()
    with store.db.transaction() as conn:
        for row in conn.execute(
            "SELECT image_id, manifest_digest FROM image_records"
            " WHERE image_id NOT IN (SELECT id FROM images)"
            " AND image_id NOT IN (SELECT image_id FROM containers)"
        ).fetchall():
            conn.execute("DELETE FROM image_records WHERE image_id = ?", (row[0],))
            doomed.blobs.append(row[0])
            if row[1]:
                doomed.blobs.append(row[1])
        used = _referenced_layers(store, conn)
        for row in conn.execute("SELECT diff_id, blob_digest, size FROM layers").fetchall():
            if row["diff_id"] in used:
                continue
            conn.execute("DELETE FROM layers WHERE diff_id = ?", (row["diff_id"],))
            _retire_layer_dir(store, row["diff_id"], doomed)
            doomed.blobs.append(row["blob_digest"])
            doomed.reclaimed += row["size"]
    doomed.apply(store)
    return doomed.reclaimed
