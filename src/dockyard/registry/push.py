"""``push``: blobs the registry lacks, then the manifest.

Layers go up in parallel. Before uploading, a HEAD tells whether the registry
already has a blob, and a blob known to live in another repository of the
same registry is mounted instead (``POST ?mount=&from=``). Uncompressed
layers are gzip-compressed on the fly into a streamed (chunked PATCH) upload
and the resulting digest is remembered per diff ID, so an unchanged image is
pushed again with HEAD requests only, or with a single manifest HEAD.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard import events
from dockyard.errors import DockyardError, NotFound
from dockyard.images.reference import Reference
from dockyard.records import record
from dockyard.registry import metadata
from dockyard.registry.auth import RegistryError, Unauthorized
from dockyard.registry.client import RegistryClient
from dockyard.registry.manifest import (
    DOCKER_LAYER,
    OCI_LAYER_ZSTD,
    Descriptor,
    build_manifest,
    sniff_compression,
)
from dockyard.registry.progress import Progress

if TYPE_CHECKING:
    from concurrent.futures import Future

    from dockyard.db import Database
    from dockyard.images.store import Image, ImageStore, LayerRecord

MAX_UPLOADS = 5


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


class _ProgressFile:
    """A file wrapper that reports how much of it was read."""

    def __init__(self, f: BinaryIO, report: Any) -> None:
        self._f = f
        self._report = report
        self.done = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.done += len(data)
        self._report(self.done)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        self.done = pos
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()


@record
class _Layer:
    record: LayerRecord
    ident: str
    compression: str  # of the stored blob: "", "gzip" or "zstd"
    desc: Descriptor | None  # the blob to push, when known without compressing
    sources: list[str]  # other repositories of this registry known to have desc


def _new_sha256(data: bytes) -> Any:
    """A sha256 of small data: the builtin one unless OpenSSL's is loaded already.

    Importing ``hashlib`` loads OpenSSL's bindings, a start-up cost an unchanged push
    (which hashes only a manifest) does not need to pay.
    """
    if len(data) < 65536 and "hashlib" not in sys.modules:
        try:
            from _sha256 import sha256

            return sha256(data)
        except ImportError:
            pass
    import hashlib

    return hashlib.sha256(data)


def _gzip_stream(source: BinaryIO, **kwargs: Any) -> Iterator[bytes]:
    """compress.gzip_stream, imported only when a layer is actually compressed."""
    from dockyard.registry.compress import gzip_stream

    return gzip_stream(source, **kwargs)


def set_repo_digest(db: Database, repository: str, digest: str, image_id: str) -> None:
    """Record ``repository@digest`` for an image (``images --digests``, RepoDigests)."""
    with db.transaction() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO repo_digests (repository, digest, image_id) VALUES (?, ?, ?)",
            (repository, digest, image_id),
        )


class Pusher:
    """Pushes images of one repository."""

    def __init__(self, store: ImageStore, repo: Reference, progress: Progress) -> None:
        self.store = store
        self.repo = repo
        self.progress = progress
        self.client = RegistryClient(repo.domain)
        self.client.scopes.add(f"repository:{repo.path}:pull,push")
        self.lock = threading.Lock()
        self.learned: list[metadata.BlobInfo] = []

    # --- blob descriptors --------------------------------------------------

    def _plan(self, record: LayerRecord) -> _Layer:
        content = self.store.content
        compression = ""
        if record.media_type.endswith(("gzip", "+zstd")):
            compression = "zstd" if record.media_type.endswith("zstd") else "gzip"
        elif content.has(record.blob_digest):
            with content.open(record.blob_digest) as f:
                compression = sniff_compression(f.read(4))
        ident = short(record.diff_id)
        known = metadata.known_blobs(self.store.db, record.diff_id)
        desc: Descriptor | None = None
        if compression == "gzip":
            desc = Descriptor(DOCKER_LAYER, record.blob_digest, record.blob_size)
        elif compression == "zstd":
            desc = Descriptor(OCI_LAYER_ZSTD, record.blob_digest, record.blob_size)
        else:
            for blob in known:
                if blob.media_type == DOCKER_LAYER:
                    desc = Descriptor(DOCKER_LAYER, blob.digest, blob.size)
                    break
        sources = sorted(
            {
                b.repository
                for b in known
                if desc is not None
                and b.digest == desc.digest
                and b.registry == self.repo.domain
                and b.repository
                and b.repository != self.repo.path
            }
        )
        return _Layer(record, ident, compression, desc, sources)

    # --- uploads -----------------------------------------------------------

    def _exists(self, digest: str) -> bool:
        response = self.client.request(
            "HEAD", f"/v2/{self.repo.path}/blobs/{digest}", allow=(404,), what="checking blob"
        )
        response.close()
        return response.status == 200

    def _start_upload(self, digest: str | None, sources: list[str]) -> tuple[str, str]:
        """("mounted", from) when a mount worked, else ("upload", location)."""
        base = f"/v2/{self.repo.path}/blobs/uploads/"
        if digest and sources:
            source = sources[0]
            response = self.client.request(
                "POST",
                f"{base}?mount={digest}&from={source}",
                headers={"Content-Length": "0"},
                expect=(201, 202),
                what="mounting blob",
            )
            response.close()
            if response.status == 201:
                return "mounted", source
            return "upload", response.header("Location")
        response = self.client.request(
            "POST", base, headers={"Content-Length": "0"}, expect=(202,), what="starting upload"
        )
        response.close()
        return "upload", response.header("Location")

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return location + ("&" if "?" in location else "?") + f"digest={digest}"

    def _put_file(self, location: str, f: BinaryIO, desc: Descriptor, ident: str) -> None:
        def report(done: int) -> None:
            self.progress.bar(ident, "Pushing", done, desc.size)

        body = _ProgressFile(f, report)
        response = self.client.request(
            "PUT",
            self._with_digest(location, desc.digest),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(desc.size)},
            body=body,  # type: ignore[arg-type]
            expect=(201, 204),
            what="uploading blob",
        )
        response.close()

    def _stream_gzip(self, location: str, layer: _Layer) -> Descriptor:
        """Compress while uploading (chunked PATCH), then commit with the digest."""
        record = layer.record
        import hashlib

        digest = hashlib.sha256()
        size = 0
        done = 0

        def on_read(n: int) -> None:
            nonlocal done
            done += n
            self.progress.bar(layer.ident, "Pushing", done, record.blob_size)

        def body() -> Iterator[bytes]:
            nonlocal size
            with self.store.content.open(record.blob_digest) as f:
                for chunk in _gzip_stream(f, on_read=on_read):
                    digest.update(chunk)
                    size += len(chunk)
                    yield chunk

        try:
            response = self.client.request(
                "PATCH",
                location,
                headers={"Content-Type": "application/octet-stream"},
                body=body(),
                expect=(202, 204),
                what="uploading blob",
            )
        except Unauthorized:
            raise
        except RegistryError:
            # no streamed (chunked) uploads here: compress to a file, upload it whole
            self._abandon(location)
            return self._spooled_gzip(layer)
        response.close()
        location = response.header("Location") or location
        desc = Descriptor(DOCKER_LAYER, "sha256:" + digest.hexdigest(), size)
        response = self.client.request(
            "PUT",
            self._with_digest(location, desc.digest),
            headers={"Content-Length": "0"},
            body=b"",
            expect=(201, 204),
            what="uploading blob",
        )
        response.close()
        return desc

    def _abandon(self, location: str) -> None:
        try:
            self.client.request("DELETE", location, expect=(204, 202, 200), allow=(404,)).close()
        except RegistryError:
            pass

    def _spooled_gzip(self, layer: _Layer) -> Descriptor:
        """Monolithic fallback: gzip into a temporary file, then POST + PUT it."""
        import hashlib
        import tempfile

        record = layer.record
        self.store.paths.tmp.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self.store.paths.tmp) as spool:
            digest = hashlib.sha256()
            with self.store.content.open(record.blob_digest) as f:
                for chunk in _gzip_stream(f):
                    digest.update(chunk)
                    spool.write(chunk)
            desc = Descriptor(DOCKER_LAYER, "sha256:" + digest.hexdigest(), spool.tell())
            spool.seek(0)
            if not self._exists(desc.digest):
                _kind, location = self._start_upload(None, [])
                self._put_file(location, spool, desc, layer.ident)
        return desc

    def _push_layer(self, layer: _Layer) -> Descriptor:
        ident, desc, record = layer.ident, layer.desc, layer.record
        if desc is not None and self._exists(desc.digest):
            self.progress.status(ident, "Layer already exists")
            self._learn(record.diff_id, desc)
            return desc
        kind, where = self._start_upload(desc.digest if desc else None, layer.sources)
        if kind == "mounted":
            assert desc is not None
            self.progress.status(ident, f"Mounted from {where}")
            self._learn(record.diff_id, desc)
            return desc
        if desc is not None and layer.compression:  # the stored blob is what we push
            with self.store.content.open(record.blob_digest) as f:
                self._put_file(where, f, desc, ident)
        else:  # stored uncompressed: compress again (deterministic, so same digest)
            desc = self._stream_gzip(where, layer)
        self.progress.status(ident, "Pushed")
        self._learn(record.diff_id, desc)
        return desc

    def _learn(self, diff_id: str, desc: Descriptor) -> None:
        with self.lock:
            self.learned.append(
                metadata.BlobInfo(
                    diff_id,
                    desc.digest,
                    desc.media_type,
                    desc.size,
                    self.repo.domain,
                    self.repo.path,
                )
            )

    def _push_config(self, image: Image) -> Descriptor:
        raw = self.store.content.read(image.id)
        desc = Descriptor("application/vnd.docker.container.image.v1+json", image.id, len(raw))
        if self._exists(image.id):
            return desc
        _kind, location = self._start_upload(None, [])
        response = self.client.request(
            "PUT",
            self._with_digest(location, image.id),
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(raw))},
            body=raw,
            expect=(201, 204),
            what="uploading image config",
        )
        response.close()
        return desc

    # --- one tag -----------------------------------------------------------

    def push_tag(self, image: Image, tag: str) -> tuple[str, int]:
        """Push one tag of the repository: (manifest digest, manifest size)."""
        plans = [self._plan(r) for r in self.store.layer_records(image)]
        config_desc = Descriptor(
            "application/vnd.docker.container.image.v1+json",
            image.id,
            self.store.content.size(image.id),
        )
        if all(p.desc is not None for p in plans):
            manifest = build_manifest(config_desc, [p.desc for p in plans if p.desc])
            digest = "sha256:" + _new_sha256(manifest).hexdigest()
            if self._remote_manifest_digest(tag) == digest:
                for plan in reversed(plans):
                    self.progress.status(plan.ident, "Layer already exists")
                return self._finish(image, tag, manifest, digest, upload=False)
        descs = self._push_layers(plans)
        self._push_config(image)
        manifest = build_manifest(config_desc, descs)
        digest = "sha256:" + _new_sha256(manifest).hexdigest()
        return self._finish(image, tag, manifest, digest, upload=True)

    def _remote_manifest_digest(self, tag: str) -> str | None:
        from dockyard.registry.manifest import ACCEPT

        response = self.client.request(
            "HEAD",
            f"/v2/{self.repo.path}/manifests/{tag}",
            headers={"Accept": ACCEPT},
            allow=(404,),
            what="checking manifest",
        )
        response.close()
        return response.header("Docker-Content-Digest") if response.status == 200 else None

    def _push_layers(self, plans: list[_Layer]) -> list[Descriptor]:
        ordered = list(reversed(plans))  # Docker lists the top layer first
        seen: set[str] = set()
        for plan in ordered:
            if plan.ident not in seen:
                self.progress.status(plan.ident, "Preparing")
                seen.add(plan.ident)
        # a mount needs pull access to the source repository: ask for it up front
        self.client.add_scopes(f"repository:{p.sources[0]}:pull" for p in plans if p.sources)
        results: dict[str, Descriptor] = {}
        error: BaseException | None = None
        unique = {p.record.diff_id: p for p in plans}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(MAX_UPLOADS, thread_name_prefix="push") as pool:
            futures: list[tuple[_Layer, Future[Descriptor]]] = []
            for plan in reversed(list(unique.values())):
                futures.append((plan, pool.submit(self._push_layer, plan)))
            for plan, _ in futures[MAX_UPLOADS:]:
                self.progress.status(plan.ident, "Waiting")
            for plan, future in futures:
                try:
                    results[plan.record.diff_id] = future.result()
                except BaseException as err:  # noqa: BLE001 - report the first failure
                    error = error or err
        self._save_learned()
        if error is not None:
            raise error
        return [results[p.record.diff_id] for p in plans]

    def _save_learned(self) -> None:
        with self.lock:
            learned, self.learned = self.learned, []
        for info in learned:
            metadata.remember(self.store.db, info)

    def _finish(
        self, image: Image, tag: str, manifest: bytes, digest: str, *, upload: bool
    ) -> tuple[str, int]:
        if upload:
            from dockyard.registry.manifest import parse_manifest

            media_type = parse_manifest(manifest).media_type
            response = self.client.request(
                "PUT",
                f"/v2/{self.repo.path}/manifests/{tag}",
                headers={"Content-Type": media_type},
                body=manifest,
                expect=(201, 200),
                what="uploading manifest",
            )
            response.close()
        if not self.store.content.has(digest):
            self.store.content.put_bytes(manifest, digest)
        set_repo_digest(self.store.db, self.repo.name, digest, image.id)
        self.progress.line(f"{tag}: digest: {digest} size: {len(manifest)}")
        return digest, len(manifest)


def _local_tags(store: ImageStore, repo: Reference) -> list[tuple[str, str]]:
    """(tag, image_id) for every local tag of a repository."""
    prefix = repo.name + ":"
    rows = store.db.query(
        "SELECT name, image_id FROM tags WHERE substr(name, 1, ?) = ? ORDER BY name",
        (len(prefix), prefix),
    )
    return [(str(r["name"])[len(prefix) :], str(r["image_id"])) for r in rows]


def push(
    store: ImageStore,
    ref: Reference,
    *,
    all_tags: bool = False,
    progress: Progress | None = None,
) -> list[tuple[str, str]]:
    """``docker push``: returns (reference, manifest digest) for each tag pushed."""
    progress = progress or Progress(sys.stdout)
    repo = ref.name_only()
    if all_tags:
        tags = _local_tags(store, repo)
        if not tags:
            raise RegistryError(f"An image does not exist locally with the tag: {repo.familiar()}")
    else:
        tag = ref.tag or "latest"
        try:
            image_id = store.resolve_id(ref.with_tag(tag).string())
        except NotFound:
            raise RegistryError(
                f"An image does not exist locally with the tag: {ref.familiar_name()}"
            ) from None
        tags = [(tag, image_id)]
    progress.line(f"The push refers to repository [{repo.name}]")
    pusher = Pusher(store, repo, progress)
    results = []
    try:
        for tag, image_id in tags:
            image = store.get(image_id)
            digest, _size = pusher.push_tag(image, tag)
            results.append((repo.with_tag(tag).string(), digest))
            tagged = repo.with_tag(tag)
            events.emit(
                store.paths.root, "image", "push", tagged.familiar(), {"name": repo.familiar()}
            )
    except DockyardError:
        raise
    finally:
        pusher.client.close()
    return results
