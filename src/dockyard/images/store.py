"""The image store: image records over the SQLite state store and the blob store.

An image is its config blob (the ID is the config's digest), an OCI manifest
blob, and its layers. Layers are unpacked once into ``layers/<diff_id hex>``
and shared by every image that has them. Everything a command registers is
written in one transaction at the end, after the files are in place, so a
failed or concurrent command never leaves a half-registered image.
"""

from __future__ import annotations

import builtins
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.config import Paths
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.images import reference as refmod
from dockyard.images.content import ContentStore
from dockyard.records import field, record

if TYPE_CHECKING:
    import sqlite3

    from dockyard.db import Database
    from dockyard.images.layers import Readable
    from dockyard.images.prune import PruneReport

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYER_MEDIA_TYPES = {"none": OCI_LAYER, "gzip": OCI_LAYER + "+gzip", "zstd": OCI_LAYER + "+zstd"}
ZERO_TIME = "0001-01-01T00:00:00Z"

_RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS image_records (
    image_id TEXT PRIMARY KEY,       -- kept while the image or a container uses it
    manifest_digest TEXT,
    layers TEXT NOT NULL,            -- diff IDs, bottom first, space-separated
    last_tag_time TEXT
)
"""

_IMAGE_SELECT = """
SELECT i.id, i.manifest_digest, i.created, i.size, i.parent,
  (SELECT group_concat(name, char(10)) FROM
     (SELECT name FROM tags WHERE image_id = i.id ORDER BY name)) AS tags,
  (SELECT group_concat(ref, char(10)) FROM
     (SELECT repository || '@' || digest AS ref FROM repo_digests
      WHERE image_id = i.id ORDER BY ref)) AS digests
FROM images i
"""


@record
class LayerRecord:
    """A layer as stored: its diff ID, the blob it came as, its unpacked size."""

    diff_id: str
    blob_digest: str
    media_type: str
    blob_size: int
    size: int
    new_blob: bool = False  # this ingest added the blob (removed if never registered)
    new_dir: bool = False  # this ingest unpacked the directory


@record
class Image:
    id: str  # "sha256:<hex>", the config digest
    tags: list[str]  # normalized: "docker.io/library/busybox:latest"
    repo_digests: list[str]  # normalized: "docker.io/library/busybox@sha256:..."
    created: str
    size: int
    config: dict[str, Any]
    manifest_digest: str | None
    layers: list[str]  # diff IDs, bottom first
    parent: str | None = None

    @property
    def short_id(self) -> str:
        return self.id.removeprefix("sha256:")[:12]

    @property
    def repo_tags(self) -> list[str]:
        """Tags in the familiar form ``docker images`` shows: ``busybox:latest``."""
        return [refmod.familiar(t) for t in self.tags]

    @property
    def familiar_digests(self) -> list[str]:
        return [refmod.familiar(d) for d in self.repo_digests]

    @property
    def container_config(self) -> dict[str, Any]:
        """The ``config`` section: Env, Cmd, Entrypoint, ..."""
        value = self.config.get("config")
        return value if isinstance(value, dict) else {}


@record
class HistoryEntry:
    id: str  # an image ID or "<missing>"
    created: str  # RFC 3339
    created_by: str
    size: int
    comment: str
    tags: list[str] = field(default_factory=list)
    empty_layer: bool = False


def now_rfc3339() -> str:
    """UTC now as Go's RFC3339Nano (trailing zeros of the fraction trimmed)."""
    import time

    ns = time.time_ns()
    secs, frac = divmod(ns, 1_000_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    fraction = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def host_platform() -> tuple[str, str]:
    """(architecture, variant) in OCI terms for this machine."""
    import platform

    machine = platform.machine()
    mapping = {
        "x86_64": ("amd64", ""),
        "amd64": ("amd64", ""),
        "aarch64": ("arm64", ""),
        "arm64": ("arm64", ""),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i386": ("386", ""),
        "i686": ("386", ""),
    }
    return mapping.get(machine, (machine, ""))


def json_bytes(value: Any) -> bytes:
    """Compact JSON, as Go's encoding/json writes it (HTML characters escaped)."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.encode()


class ImageStore:
    def __init__(self, paths: Paths, db: Database) -> None:
        self.paths = paths
        self.db = db
        self.content = ContentStore(paths)
        self._records_ready = False

    # -- records --------------------------------------------------------------

    def ensure_records(self) -> None:
        """Create this module's own table on first use (the shared schema lacks it)."""
        if self._records_ready:
            return
        found = self.db.query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'image_records'"
        )
        if not found:
            with self.db.transaction() as conn:
                conn.execute(_RECORDS_SCHEMA)
        self._records_ready = True

    def _image_from_row(self, row: sqlite3.Row) -> Image:
        image_id = row["id"]
        try:
            config = json.loads(self.content.read(image_id))
        except (NotFound, ValueError):
            raise DockyardError(
                f"image {image_id} is damaged: its config blob is missing or unreadable"
            ) from None
        rootfs = config.get("rootfs") or {}
        return Image(
            id=image_id,
            tags=row["tags"].split("\n") if row["tags"] else [],
            repo_digests=row["digests"].split("\n") if row["digests"] else [],
            created=row["created"] or config.get("created") or ZERO_TIME,
            size=row["size"] or 0,
            config=config,
            manifest_digest=row["manifest_digest"],
            layers=list(rootfs.get("diff_ids") or []),
            parent=row["parent"] or None,
        )

    def _load(self, image_id: str) -> Image | None:
        rows = self.db.query(_IMAGE_SELECT + " WHERE i.id = ?", (image_id,))
        return self._image_from_row(rows[0]) if rows else None

    def get(self, image_id: str) -> Image:
        """An image by full ID; also one removed with ``rmi -f`` while a container uses it."""
        image = self._load(image_id)
        if image is not None:
            return image
        self.ensure_records()
        rows = self.db.query(
            "SELECT manifest_digest FROM image_records WHERE image_id = ?", (image_id,)
        )
        if rows and self.content.has(image_id):
            config = json.loads(self.content.read(image_id))
            diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
            return Image(
                image_id,
                [],
                [],
                config.get("created") or ZERO_TIME,
                self._layers_size(diff_ids),
                config,
                rows[0]["manifest_digest"],
                diff_ids,
            )
        raise NotFound(f"No such image: {image_id}")

    def resolve(self, ref: str) -> Image:
        """An image by ``name[:tag]``, ``name@digest``, full ID or unique ID prefix."""
        image_id = self.resolve_id(ref)
        image = self._load(image_id)
        if image is None:
            raise NotFound(f"No such image: {ref}")
        return image

    def resolve_id(self, ref: str) -> str:
        """The image ID ``ref`` names (see :meth:`resolve`), without loading the image."""
        if not ref:
            raise NotFound("No such image: ")
        bare = ref.removeprefix("sha256:")
        is_hex = bool(bare) and all(c in "0123456789abcdef" for c in bare)
        if ref.startswith("sha256:") or (is_hex and len(bare) == 64):
            if not is_hex:
                raise NotFound(f"No such image: {ref}")
            found = self._by_prefix(bare)
            if found:
                return found
            raise NotFound(f"No such image: {ref}")
        parsed = refmod.parse(ref)
        if parsed.digest:
            rows = self.db.query(
                "SELECT image_id FROM repo_digests WHERE repository = ? AND digest = ?",
                (parsed.name, parsed.digest),
            )
        else:
            rows = self.db.query(
                "SELECT image_id FROM tags WHERE name = ?",
                (parsed.with_default_tag().string(),),
            )
        if rows:
            return str(rows[0]["image_id"])
        if is_hex:
            found = self._by_prefix(bare)
            if found:
                return found
        raise NotFound(f"No such image: {ref}")

    def _by_prefix(self, hex_prefix: str) -> str | None:
        prefix = f"sha256:{hex_prefix}"
        rows = self.db.query(
            "SELECT id FROM images WHERE substr(id, 1, ?) = ? LIMIT 2", (len(prefix), prefix)
        )
        return str(rows[0]["id"]) if len(rows) == 1 else None

    def list(self) -> builtins.list[Image]:
        """Every image, newest first."""
        from dockyard.images.prune import rfc3339_ts

        rows = self.db.query(_IMAGE_SELECT + " ORDER BY i.added DESC")
        images = []
        for row in rows:
            try:
                images.append(self._image_from_row(row))
            except DockyardError:
                continue
        images.sort(key=lambda image: rfc3339_ts(image.created), reverse=True)
        return images

    def layer_dirs(self, image: Image) -> builtins.list[Path]:
        """The unpacked layer directories, bottom first."""
        return [self.paths.layers / d.removeprefix("sha256:") for d in image.layers]

    def layer_records(self, image: Image) -> builtins.list[LayerRecord]:
        """The stored blob of each of the image's layers, bottom first."""
        rows = {
            r["diff_id"]: r
            for r in self.db.query(
                f"SELECT * FROM layers WHERE diff_id IN ({','.join('?' * len(image.layers))})",
                tuple(image.layers),
            )
        }
        records = []
        for diff_id in image.layers:
            row = rows.get(diff_id)
            if row is None:
                raise DockyardError(
                    f"image {image.short_id} is damaged: layer {diff_id} is missing"
                )
            records.append(
                LayerRecord(
                    diff_id, row["blob_digest"], row["media_type"], row["blob_size"], row["size"]
                )
            )
        return records

    def _layers_size(self, diff_ids: builtins.list[str]) -> int:
        if not diff_ids:
            return 0
        rows = self.db.query(
            f"SELECT diff_id, size FROM layers WHERE diff_id IN ({','.join('?' * len(diff_ids))})",
            tuple(diff_ids),
        )
        sizes = {r["diff_id"]: r["size"] for r in rows}
        return sum(sizes.get(d, 0) for d in diff_ids)

    def last_tag_time(self, image_id: str) -> str:
        self.ensure_records()
        rows = self.db.query(
            "SELECT last_tag_time FROM image_records WHERE image_id = ?", (image_id,)
        )
        return (rows[0]["last_tag_time"] if rows else None) or ZERO_TIME

    def children(self, image_id: str) -> builtins.list[str]:
        return [
            r["id"] for r in self.db.query("SELECT id FROM images WHERE parent = ?", (image_id,))
        ]

    # -- layers ---------------------------------------------------------------

    def _registered_layer(self, diff_id: str) -> LayerRecord | None:
        rows = self.db.query("SELECT * FROM layers WHERE diff_id = ?", (diff_id,))
        if not rows or not (self.paths.layers / diff_id.removeprefix("sha256:")).is_dir():
            return None
        r = rows[0]
        return LayerRecord(diff_id, r["blob_digest"], r["media_type"], r["blob_size"], r["size"])

    def ingest_layer(
        self,
        fileobj: Readable,
        media_type: str | None = None,
        *,
        expected_diff_id: str | None = None,
        expected_digest: str | None = None,
        digest_verified: bool = False,
    ) -> LayerRecord:
        """Store a layer blob and unpack it once into ``layers/<diff_id hex>``.

        With ``expected_diff_id`` of a layer already stored, the stream is not read.
        ``digest_verified``: ``fileobj`` itself raises at its end unless its bytes have
        ``expected_digest`` (a registry download), so they are not hashed twice.
        The layer is registered (and so kept) only by :meth:`create_image`; a caller
        that fails before that should call :meth:`discard_layers`.
        """
        import shutil
        import tempfile

        from dockyard.images.layers import unpack

        if expected_diff_id:
            existing = self._registered_layer(expected_diff_id)
            if existing is not None:
                return existing
        self.paths.ensure()
        writer = self.content.writer(expected_digest if digest_verified else None)
        tmpdir = Path(tempfile.mkdtemp(prefix="layer-", dir=self.paths.tmp))
        try:
            os.chmod(tmpdir, 0o755)
            result = unpack(fileobj, tmpdir, tee=writer.write)
            if digest_verified and fileobj.read(1):  # unpack reads to the end, where it checks
                raise DockyardError("layer stream was not read to its end")
            if expected_diff_id and result.diff_id != expected_diff_id:
                raise InvalidArgument(
                    f"invalid diffID for layer: expected {expected_diff_id!r}, "
                    f"got {result.diff_id!r}"
                )
            new_blob = not self.content.has(writer.digest)
            blob_digest, blob_size = writer.commit(expected_digest)
            target = self.paths.layers / result.diff_id.removeprefix("sha256:")
            new_dir = False
            if not target.is_dir():
                try:
                    os.rename(tmpdir, target)
                    new_dir = True
                except OSError:
                    pass  # another command unpacked the same layer first: use theirs
        finally:
            writer.abort()
            if tmpdir.exists():
                shutil.rmtree(tmpdir, ignore_errors=True)
        media = LAYER_MEDIA_TYPES[result.compression]
        if media_type and _compression_of(media_type) == result.compression:
            media = media_type  # e.g. a Docker media type a registry used
        return LayerRecord(
            result.diff_id, blob_digest, media, blob_size, result.size, new_blob, new_dir
        )

    def discard_layers(self, records: builtins.list[LayerRecord]) -> None:
        """Remove what a failed command ingested, unless something registered it since."""
        from dockyard.images.remove import discard_unregistered

        discard_unregistered(self, records)

    # -- registration ---------------------------------------------------------

    def create_image(
        self,
        config: dict[str, Any],
        layers: builtins.list[LayerRecord],
        tags: builtins.list[str],
        parent: str | None = None,
        *,
        raw_config: bytes | None = None,
        repo_digests: builtins.list[str] | None = None,
    ) -> Image:
        """Register an image from its config and ingested layers, tagging it.

        ``raw_config`` keeps a config's exact bytes (so its ID is preserved); otherwise
        ``config`` is serialized with its ``rootfs`` set from ``layers``. Tags may be
        in any form ``refmod.parse`` accepts; a tag on another image moves here.
        """
        diff_ids = [layer.diff_id for layer in layers]
        if raw_config is None:
            config = dict(config)
            config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
            raw_config = json_bytes(config)
        else:
            config = json.loads(raw_config)
            declared = (config.get("rootfs") or {}).get("diff_ids") or []
            if list(declared) != diff_ids:
                raise InvalidArgument("image config does not match its layers (rootfs.diff_ids)")
        names = [refmod.parse_tagged(t).string() for t in tags]
        digests = []
        for item in repo_digests or []:
            parsed = refmod.parse(item)
            if not parsed.digest:
                raise InvalidArgument(f"not a digest reference: {item}")
            digests.append((parsed.name, parsed.digest))
        image_id, config_size = self.content.put_bytes(raw_config)
        from dockyard.images.remove import Registration, register

        register(
            self,
            [Registration(image_id, config_size, config, layers, names, digests, parent)],
        )
        return self.get(image_id)

    def tag(self, ref: str, new_name: str) -> None:
        """``docker tag``: point ``new_name`` (default tag ``latest``) at ``ref``'s image."""
        image_id = self.resolve_id(ref)
        parsed = refmod.parse(new_name)
        if parsed.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
        name = parsed.with_default_tag().string()
        self.ensure_records()
        with self.db.transaction() as conn:
            if not conn.execute("SELECT 1 FROM images WHERE id = ?", (image_id,)).fetchone():
                raise NotFound(f"No such image: {ref}")
            conn.execute(
                "INSERT OR REPLACE INTO tags (name, image_id) VALUES (?, ?)", (name, image_id)
            )
            conn.execute(
                "UPDATE image_records SET last_tag_time = ? WHERE image_id = ?",
                (now_rfc3339(), image_id),
            )
        self._event("tag", image_id, refmod.familiar(name))

    # -- import / commit ------------------------------------------------------

    def import_tar(
        self,
        fileobj: Readable,
        changes: builtins.list[str] | None = None,
        message: str = "",
        reference: str | None = None,
        *,
        source: str = "-",
        platform: tuple[str, str] | None = None,
    ) -> Image:
        """``docker import``: the tarball (maybe compressed) becomes a one-layer image.

        ``source`` is what the history comment names ("Imported from -") without ``message``.
        """
        from dockyard.images.create import import_image

        image = import_image(
            self, fileobj, changes or [], message, reference, source=source, platform=platform
        )
        self._event("import", image.id, reference or image.id)
        return image

    def commit(
        self,
        container_id: str,
        layer: BinaryIO | None = None,
        base: Image | None = None,
        changes: builtins.list[str] | None = None,
        author: str = "",
        message: str = "",
        tags: builtins.list[str] | None = None,
        *,
        container_config: dict[str, Any] | None = None,
        exclude: builtins.list[str] | None = None,
    ) -> Image:
        """``docker commit``: the container's upper dir (or ``layer``) on its base image.

        ``container_config`` is the container's Docker config (Cmd, Env, ... as run);
        it defaults to the base image's. ``--change`` lines apply on top. ``exclude``
        lists container paths left out of the layer.
        """
        from dockyard.images.create import commit_image

        return commit_image(
            self,
            container_id,
            layer,
            base,
            changes or [],
            author,
            message,
            tags or [],
            container_config=container_config,
            exclude=exclude or [],
        )

    # -- history --------------------------------------------------------------

    def history(self, ref: str) -> builtins.list[HistoryEntry]:
        """``docker history``: newest first; IDs along the parent chain, else <missing>."""
        image = self.resolve(ref)
        sizes = {r["diff_id"]: r["size"] for r in self.db.query("SELECT diff_id, size FROM layers")}
        entries: builtins.list[HistoryEntry] = []
        layer_index = 0
        for item in image.config.get("history") or []:
            size = 0
            empty = bool(item.get("empty_layer"))
            if not empty and layer_index < len(image.layers):
                size = sizes.get(image.layers[layer_index], 0)
                layer_index += 1
            entries.append(
                HistoryEntry(
                    "<missing>",
                    item.get("created") or ZERO_TIME,
                    item.get("created_by") or "",
                    size,
                    item.get("comment") or "",
                    empty_layer=empty,
                )
            )
        entries.reverse()
        current: Image | None = image
        for entry in entries:
            if current is None:
                break
            entry.id = current.id
            entry.tags = current.repo_tags
            current = self._load(current.parent) if current.parent else None
        return entries

    # -- removal, pruning, archives ---------------------------------------------

    def remove(
        self, ref: str, force: bool = False, prune: bool = True
    ) -> builtins.list[tuple[str, str]]:
        """``docker rmi``: ("Untagged", "busybox:latest") / ("Deleted", "sha256:...") records."""
        from dockyard.images.remove import remove_image

        records = remove_image(self, ref, force=force, prune=prune)
        for kind, value in records:
            self._event("untag" if kind == "Untagged" else "delete", value, value)
        return records

    def prune(
        self, all: bool = False, filters: dict[str, builtins.list[str]] | None = None
    ) -> tuple[builtins.list[tuple[str, str]], int]:
        """``docker image prune``: (records, bytes reclaimed)."""
        from dockyard.images.prune import prune_images

        report: PruneReport = prune_images(self, all=all, filters=filters or {})
        return report.records, report.reclaimed

    def gc(self) -> int:
        """Remove layers and blobs that no image or container uses; returns bytes freed."""
        from dockyard.images.remove import collect_garbage

        return collect_garbage(self)

    def save(self, refs: builtins.list[str], out: BinaryIO) -> None:
        """``docker save``: a docker-archive that is also an OCI image layout."""
        from dockyard.images.archive import save

        save(self, refs, out)
        for ref in refs:
            self._event("save", ref, ref)

    def load(self, fileobj: Readable) -> builtins.list[str]:
        """``docker load``: "Loaded image: ..." messages; all or nothing."""
        from dockyard.images.archive import load

        messages = load(self, fileobj)
        for message in messages:
            name = message.split(": ", 1)[-1]
            self._event("load", name, name)
        return messages

    def _event(self, action: str, actor: str, name: str) -> None:
        from dockyard import events

        events.emit(self.paths.root, "image", action, actor, {"name": name})


def _compression_of(media_type: str) -> str:
    if media_type.endswith(("+gzip", ".gzip")):
        return "gzip"
    if media_type.endswith(("+zstd", ".zstd")):
        return "zstd"
    return "none"
