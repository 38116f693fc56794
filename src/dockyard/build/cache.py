"""The layer cache: step key -> the image that step produced.

A key is a digest of the parent image ID, the step's history text, the
resulting image config and, for COPY/ADD, a checksum of the copied files'
names, modes and contents (and the source image for ``--from``). A hit is
used only while its image is still in the store.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.config import Paths
    from dockyard.db import Database
    from dockyard.images.store import Image, ImageStore


def step_key(parent: str, created_by: str, config: dict[str, Any], extra: str = "") -> str:
    material = json.dumps([parent, created_by, config, extra], sort_keys=True)
    return "sha256:" + hashlib.sha256(material.encode()).hexdigest()


class BuildCache:
    def __init__(self, db: Database, images: ImageStore) -> None:
        self.db = db
        self.images = images

    def lookup(self, key: str) -> Image | None:
        from dockyard.errors import DockyardError

        rows = self.db.query("SELECT image_id FROM build_cache WHERE key = ?", (key,))
        if not rows:
            return None
        try:
            image = self.images.get(str(rows[0]["image_id"]))
            for layer_dir in self.images.layer_dirs(image):
                if not layer_dir.is_dir():
                    raise DockyardError("layer missing")
            return image
        except DockyardError:
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM build_cache WHERE key = ?", (key,))
            return None

    def store(self, key: str, image_id: str) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO build_cache (key, image_id, added) VALUES (?, ?, ?)",
                (key, image_id, time.time()),
            )

    def entries(self) -> list[tuple[str, str]]:
        return [
            (str(r["key"]), str(r["image_id"]))
            for r in self.db.query("SELECT key, image_id FROM build_cache ORDER BY added")
        ]

    def clear(self) -> int:
        with self.db.transaction() as conn:
            return int(conn.execute("DELETE FROM build_cache").rowcount)

    def only_cached(self) -> list[str]:
        """The cached images nothing else keeps: untagged, no children, no container."""
        from dockyard.errors import DockyardError

        out = []
        for _key, image_id in self.entries():
            try:
                image = self.images.get(image_id)
            except DockyardError:  # gone already: nothing to count
                continue
            if image.tags or image.repo_digests or self.images.children(image_id):
                continue
            if self.db.query("SELECT 1 FROM containers WHERE image_id = ? LIMIT 1", (image_id,)):
                continue
            out.append(image_id)
        return out


def prune(db: Database, images: ImageStore, paths: Paths) -> tuple[list[str], int]:
    """``builder prune``: forget every cache entry and remove the images only the cache
    kept, the checksum cache and RUN --mount=type=cache dirs; (keys, bytes freed)."""
    from dockyard.build.context import ChecksumCache
    from dockyard.build.runmounts import prune_cache_mounts
    from dockyard.build.steps import cleanup_stale_rootfs
    from dockyard.errors import DockyardError

    cache = BuildCache(db, images)
    entries = cache.entries()
    removable = cache.only_cached()
    cache.clear()
    ChecksumCache(db).clear()
    cleanup_stale_rootfs(paths)
    deleted = False
    for image_id in reversed(removable):
        try:
            images.remove(image_id, force=False, prune=True)
            deleted = True
        except DockyardError:
            continue
    reclaimed = images.gc() if deleted else 0
    reclaimed += prune_cache_mounts(paths.root)
    return [key for key, _ in entries], reclaimed
