"""``pull``: manifests, platform choice, parallel verified layer downloads.

Layers stream straight from the registry into the image store (blob and
unpacked directory at once), three at a time like Docker. Every byte is
hashed as it arrives and a blob whose digest does not match is never
committed. The image is registered in one transaction at the very end, so an
interrupted pull leaves nothing half-registered and a second pull completes it.
"""

from __future__ import annotations

import hashlib
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.errors import DockyardError, NotFound
from dockyard.images.reference import Reference, parse
from dockyard.records import record
from dockyard.registry import metadata
from dockyard.registry.auth import RegistryError, Unauthorized
from dockyard.registry.client import CHUNK, RegistryClient
from dockyard.registry.manifest import (
    ACCEPT,
    Descriptor,
    Manifest,
    Platform,
    choose,
    compression_of,
    parse_manifest,
    parse_platform,
)
from dockyard.registry.progress import Progress

if TYPE_CHECKING:
    from dockyard.images.store import Image, ImageStore, LayerRecord

MAX_DOWNLOADS = 3
MAX_MANIFEST = 4 << 20


class Cancelled(Exception):
    """Another layer failed; this download stops early."""


def short(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def _not_found(err: RegistryError, ref: Reference) -> RegistryError:
    """Docker's wording for a missing repository, tag or permission (translatePullError)."""
    code = err.code
    if code in ("UNAUTHORIZED", "DENIED") or err.status in (401, 403):
        return RegistryError(
            f"pull access denied for {ref.familiar_name()}, repository does not exist or "
            f"may require 'docker login': {err}",
            "DENIED",
            err.status,
        )
    if code == "MANIFEST_UNKNOWN" or (err.status == 404 and not code):
        return RegistryError(f"manifest for {ref.familiar()} not found: {err}", code, 404)
    if code == "NAME_UNKNOWN":
        return RegistryError(f"repository {ref.familiar_name()} not found: {err}", code, 404)
    return err


def fetch_manifest(client: RegistryClient, ref: Reference, target: str) -> tuple[Manifest, str]:
    """GET a manifest by tag or digest; the digest is computed from the bytes and checked."""
    try:
        response = client.request(
            "GET", f"/v2/{ref.path}/manifests/{target}", headers={"Accept": ACCEPT}
        )
    except Unauthorized as err:
        if client.creds is not None:
            raise
        raise _not_found(err, ref) from err
    except RegistryError as err:
        raise _not_found(err, ref) from err
    raw = b""
    for chunk in response.iter_chunks():
        raw += chunk
        if len(raw) > MAX_MANIFEST:
            raise RegistryError(f"manifest for {ref.familiar()} is too large")
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if target.startswith("sha256:") and digest != target:
        raise RegistryError(f"manifest verification failed for digest {target}")
    return parse_manifest(raw, response.header("Content-Type")), digest


def fetch_manifest_for(ref: Reference) -> tuple[Manifest, str]:
    """The remote manifest (or index) a reference names (``manifest inspect``)."""
    client = RegistryClient(ref.domain)
    client.scopes.add(f"repository:{ref.path}:pull")
    try:
        return fetch_manifest(client, ref, ref.digest or ref.tag or "latest")
    finally:
        client.close()


class _BlobReader:
    """Reads a blob response, hashing and counting; mismatches surface at end of stream.

    The network reads and the sha256 run in a thread of their own, a few MiB ahead
    of the reader (which decompresses, unpacks and stores): hashlib and the socket
    release the GIL, so the two halves of a download overlap on two cores.
    """

    AHEAD = 8  # chunks buffered between the download thread and the reader
    RESUMES = 5  # broken connections a download survives, as Docker's retries

    def __init__(
        self,
        response: Any,
        desc: Descriptor,
        progress: Progress,
        cancel: threading.Event,
        reopen: Callable[[int], Any] | None = None,
    ) -> None:
        self._response = response
        self._reopen = reopen  # a new response from byte N on (Range), after a break
        self._buffer = b""
        self._pos = 0
        self.desc = desc
        self.hash = hashlib.sha256()
        self.count = 0
        self.eof = False
        self._progress = progress
        self._cancel = cancel
        self._stop = threading.Event()
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(self.AHEAD)
        self._id = short(desc.digest)
        self._thread = threading.Thread(target=self._download, name="pull-net", daemon=True)
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _download(self) -> None:
        """The download thread: read, count, hash, hand over; a connection that breaks
        before the end is picked up where it stopped (an HTTP Range request)."""
        resumes = 0
        try:
            while True:
                start = self.count
                try:
                    for chunk in self._response.iter_chunks():
                        if self._stop.is_set() or self._cancel.is_set():
                            return
                        if not self._take(chunk):
                            return
                    if self.count >= self.desc.size or self._reopen is None:
                        break
                    broken: BaseException = RegistryError(
                        f"unexpected EOF: layer {self.desc.digest} is {self.desc.size} bytes, "
                        f"got {self.count}"
                    )
                except OSError as err:
                    if self._reopen is None or self._stop.is_set() or self._cancel.is_set():
                        raise
                    broken = err
                resumes += 1
                if resumes > self.RESUMES or (resumes > 1 and self.count == start):
                    raise broken  # out of retries, or the last one brought nothing new
                delay = 0.5 * resumes
                self._progress.status(self._id, f"Retrying in {delay:g} seconds")
                time.sleep(delay)
                self._response.close()
                self._response = self._resumed(self._reopen)
            self._put(None)
        except BaseException as err:  # noqa: BLE001 - handed to the reader
            self._put(err)

    def _take(self, chunk: bytes) -> bool:
        self.count += len(chunk)
        if self.count > self.desc.size:
            raise RegistryError(f"layer {self.desc.digest} is larger than its manifest says")
        self.hash.update(chunk)
        self._progress.bar(self._id, "Downloading", self.count, self.desc.size)
        return self._put(chunk)

    def _resumed(self, reopen: Callable[[int], Any]) -> Any:
        """The rest of the blob: a 206 from our offset, or a 200 whose first bytes
        (already had) are skipped."""
        response = reopen(self.count)
        if response.status == 206:
            return response
        skip = self.count
        chunks = response.iter_chunks()

        class _Skipping:
            status = 200

            def iter_chunks(self) -> Iterator[bytes]:
                nonlocal skip
                for chunk in chunks:
                    if skip >= len(chunk):
                        skip -= len(chunk)
                        continue
                    yield chunk[skip:]
                    skip = 0

            def close(self) -> None:
                response.close()

            def abort(self) -> None:
                response.abort()

        return _Skipping()

    def _finish(self) -> None:
        self.eof = True
        self._thread.join()
        self._progress.bar(self._id, "Downloading", self.count, self.desc.size, final=True)
        if self.count != self.desc.size:
            raise RegistryError(
                f"unexpected EOF: layer {self.desc.digest} is {self.desc.size} bytes, "
                f"got {self.count}"
            )
        self._progress.status(self._id, "Verifying Checksum")
        if "sha256:" + self.hash.hexdigest() != self.desc.digest:
            raise RegistryError(
                f"filesystem layer verification failed for digest {self.desc.digest}"
            )
        self._progress.status(self._id, "Download complete")

    def _next(self) -> bytes:
        while True:
            if self._cancel.is_set():
                raise Cancelled()
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if isinstance(item, BaseException):
                self.eof = True
                raise item
            return item or b""

    def read(self, n: int = -1, /) -> bytes:
        if self._cancel.is_set():
            raise Cancelled()
        if self._pos >= len(self._buffer):
            if self.eof:
                return b""
            chunk = self._next()
            if not chunk:
                self._finish()
                return b""
            self._buffer, self._pos = chunk, 0
        start = self._pos
        if n is None or n < 0 or start + n >= len(self._buffer):
            self._pos = len(self._buffer)
            return self._buffer if start == 0 else self._buffer[start:]
        self._pos = start + n
        return self._buffer[start : self._pos]

    def drain(self) -> None:
        """Read what is left, so a corrupt blob is reported as a digest mismatch."""
        while not self.eof and not self._cancel.is_set():
            self._pos = len(self._buffer)
            self.read(CHUNK)

    def close(self) -> None:
        """Stop the download thread (unblocking it if it waits on the network)."""
        self._stop.set()
        if self._thread.is_alive():
            self._response.abort()
        self._thread.join()
        self._response.close()


class _Result(Protocol):
    def result(self) -> LayerRecord: ...


class _Inline:
    """A lone layer is downloaded in the calling thread: no pool to start (or import)."""

    def __init__(self, puller: Puller, job: _Job) -> None:
        self._puller = puller
        self._job = job

    def result(self) -> LayerRecord:
        return self._puller._download_layer(self._job)


@record
class _Job:
    index: int
    desc: Descriptor
    diff_id: str
    started: threading.Event


def _layer_present(store: ImageStore, diff_id: str) -> LayerRecord | None:
    from dockyard.images.store import LayerRecord

    rows = store.db.query("SELECT * FROM layers WHERE diff_id = ?", (diff_id,))
    if not rows or not (store.paths.layers / diff_id.removeprefix("sha256:")).is_dir():
        return None
    r = rows[0]
    return LayerRecord(diff_id, r["blob_digest"], r["media_type"], r["blob_size"], r["size"])


class Puller:
    """One pull: a client for the registry, the store, and the progress output."""

    def __init__(self, store: ImageStore, ref: Reference, progress: Progress) -> None:
        self.store = store
        self.ref = ref
        self.progress = progress
        self.client = RegistryClient(ref.domain)
        self.client.scopes.add(f"repository:{ref.path}:pull")
        self.cancel = threading.Event()

    def _download_layer(self, job: _Job) -> LayerRecord:
        job.started.set()
        desc = job.desc
        content = self.store.content
        if content.has(desc.digest):
            # left by an interrupted pull: unpack from the local copy
            with content.open(desc.digest) as f:
                record = self.store.ingest_layer(f, desc.media_type, expected_digest=desc.digest)
            self.progress.status(short(desc.digest), "Download complete")
            return record
        path = f"/v2/{self.ref.path}/blobs/{desc.digest}"
        response = self.client.request("GET", path, what="fetching layer")

        def reopen(offset: int) -> Any:
            return self.client.request(
                "GET",
                path,
                headers={"Range": f"bytes={offset}-"},
                expect=(200, 206),
                what="fetching layer",
            )

        reader = _BlobReader(response, desc, self.progress, self.cancel, reopen)
        try:
            return self.store.ingest_layer(
                reader, desc.media_type, expected_digest=desc.digest, digest_verified=True
            )
        except Cancelled:
            raise
        except (DockyardError, OSError, EOFError) as err:
            if not reader.eof:
                try:
                    reader.drain()  # a digest mismatch explains a broken archive best
                except RegistryError as mismatch:
                    raise mismatch from err
            if isinstance(err, DockyardError) and not isinstance(err, RegistryError):
                raise RegistryError(f"failed to register layer {desc.digest}: {err}") from err
            raise
        finally:
            reader.close()

    def _fetch_config(self, desc: Descriptor) -> bytes:
        content = self.store.content
        if content.has(desc.digest):
            return content.read(desc.digest)
        response = self.client.request(
            "GET", f"/v2/{self.ref.path}/blobs/{desc.digest}", what="fetching image config"
        )
        raw = response.read()
        if "sha256:" + hashlib.sha256(raw).hexdigest() != desc.digest:
            raise RegistryError(f"image config verification failed for digest {desc.digest}")
        return raw

    def run(self, platform: Platform) -> tuple[Image, str, bool]:
        """Pull ``ref``: (image, repository digest, whether anything new was stored)."""
        ref = self.ref
        target = ref.digest or ref.tag or "latest"
        manifest, top_digest = fetch_manifest(self.client, ref, target)
        self.progress.line(f"{target}: Pulling from {ref.path}")
        manifest_digest = top_digest
        if manifest.is_index:
            entry = choose(manifest, platform)
            manifest, manifest_digest = fetch_manifest(self.client, ref, entry.digest)
            if manifest.is_index:
                raise RegistryError("invalid manifest: an index entry is itself an index")
        config_raw = self._fetch_config(manifest.config)
        try:
            config = json.loads(config_raw)
            diff_ids = list(config["rootfs"]["diff_ids"])
        except (ValueError, KeyError, TypeError) as err:
            raise RegistryError(f"invalid image config {manifest.config.digest}: {err}") from err
        layers = manifest.layers
        if len(diff_ids) != len(layers):
            raise RegistryError(
                f"invalid image: {len(layers)} layers in the manifest, "
                f"{len(diff_ids)} in the config"
            )
        existing = self._existing_image(manifest.config.digest)
        tag = ref.with_default_tag().string() if ref.digest is None else None
        before = self._tag_target(tag)
        for desc in layers:
            compression_of(desc.media_type)  # refuse unknown layer types before any download
        if existing is not None:
            # Docker skips the layers of an image it has: nothing to show or fetch
            records = self.store.layer_records(self.store.get(existing))
        else:
            records = self._layers(layers, diff_ids)
        self.progress.line(f"Digest: {top_digest}")
        image = self.store.create_image(
            config,
            records,
            [tag] if tag else [],
            raw_config=config_raw,
            repo_digests=[f"{ref.name}@{top_digest}"],
        )
        self._keep_manifests(manifest, manifest_digest)
        self._remember(records)
        changed = existing is None or (tag is not None and before != image.id)
        return image, top_digest, changed

    def _existing_image(self, image_id: str) -> str | None:
        rows = self.store.db.query("SELECT id FROM images WHERE id = ?", (image_id,))
        return str(rows[0]["id"]) if rows else None

    def _tag_target(self, tag: str | None) -> str | None:
        if tag is None:
            return None
        rows = self.store.db.query("SELECT image_id FROM tags WHERE name = ?", (tag,))
        return str(rows[0]["image_id"]) if rows else None

    def _layers(self, layers: list[Descriptor], diff_ids: list[str]) -> list[LayerRecord]:
        """Every layer, present or downloaded, bottom first; on failure nothing is kept."""
        records: list[LayerRecord | None] = [None] * len(layers)
        jobs: list[_Job] = []
        for i, (desc, diff_id) in enumerate(zip(layers, diff_ids, strict=True)):
            present = _layer_present(self.store, diff_id)
            if present is not None:
                records[i] = present
                self.progress.status(short(desc.digest), "Already exists")
            else:
                jobs.append(_Job(i, desc, diff_id, threading.Event()))
        for job in jobs:
            self.progress.status(short(job.desc.digest), "Pulling fs layer")
        if not jobs:
            return [r for r in records if r is not None]
        new: list[LayerRecord] = []
        error: BaseException | None = None
        pool = None
        if len(jobs) > 1:
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(MAX_DOWNLOADS, thread_name_prefix="pull")
        try:
            futures: list[tuple[_Job, _Result]] = [
                (job, pool.submit(self._download_layer, job) if pool else _Inline(self, job))
                for job in jobs
            ]
            for job, _future in futures[MAX_DOWNLOADS:]:
                if not job.started.is_set():
                    self.progress.status(short(job.desc.digest), "Waiting")
            for job, future in futures:
                try:
                    record = future.result()
                except BaseException as err:  # noqa: BLE001 - first error wins, others cancel
                    if error is None or isinstance(error, Cancelled):
                        error = err
                    self.cancel.set()
                    continue
                new.append(record)
                if record.diff_id != job.diff_id and error is None:
                    error = RegistryError(
                        f"layer {job.desc.digest} has diff ID {record.diff_id}, "
                        f"the image config says {job.diff_id}"
                    )
                    self.cancel.set()
                records[job.index] = record
                if error is None:
                    self.progress.status(short(job.desc.digest), "Pull complete")
        finally:
            if pool is not None:
                pool.shutdown()
        if error is not None:
            self.store.discard_layers(new)
            raise error
        return [r for r in records if r is not None]

    def _keep_manifests(self, manifest: Manifest, digest: str) -> None:
        content = self.store.content
        if not content.has(digest):
            content.put_bytes(manifest.raw, digest)

    def _remember(self, records: list[LayerRecord]) -> None:
        for layer in records:
            metadata.remember(
                self.store.db,
                metadata.BlobInfo(
                    layer.diff_id,
                    layer.blob_digest,
                    layer.media_type,
                    layer.blob_size,
                    self.ref.domain,
                    self.ref.path,
                ),
            )


def pull(
    store: ImageStore,
    ref: Reference,
    *,
    platform: str | None = None,
    progress: Progress | None = None,
) -> Image:
    """``docker pull NAME[:TAG|@DIGEST]``; the image is tagged unless pulled by digest."""
    progress = progress or Progress(sys.stdout)
    want = parse_platform(platform)
    puller = Puller(store, ref, progress)
    try:
        image, _digest, changed = puller.run(want)
    finally:
        puller.client.close()
    status = "Downloaded newer image for" if changed else "Image is up to date for"
    progress.line(f"Status: {status} {ref.familiar()}")
    from dockyard import events

    events.emit(store.paths.root, "image", "pull", ref.familiar(), {"name": ref.familiar_name()})
    return image


def pull_all_tags(
    store: ImageStore,
    ref: Reference,
    *,
    platform: str | None = None,
    progress: Progress | None = None,
) -> list[Image]:
    """``docker pull -a``: every tag of the repository."""
    progress = progress or Progress(sys.stdout)
    client = RegistryClient(ref.domain)
    client.scopes.add(f"repository:{ref.path}:pull")
    try:
        tags = list_tags(client, ref)
    finally:
        client.close()
    want = parse_platform(platform)
    images, changed_any = [], False
    for tag in tags:
        puller = Puller(store, ref.with_tag(tag), progress)
        try:
            image, _digest, changed = puller.run(want)
        finally:
            puller.client.close()
        images.append(image)
        changed_any = changed_any or changed
    status = "Downloaded newer image for" if changed_any else "Image is up to date for"
    progress.line(f"Status: {status} {ref.familiar_name()}")
    return images


def list_tags(client: RegistryClient, ref: Reference) -> list[str]:
    """All tags of a repository, following ``Link`` pagination."""
    tags: list[str] = []
    path = f"/v2/{ref.path}/tags/list"
    for _ in range(1000):
        try:
            response = client.request("GET", path)
        except RegistryError as err:
            raise _not_found(err, ref) from err
        link = response.header("Link")
        tags.extend((response.json() or {}).get("tags") or [])
        if not link.startswith("<"):
            break
        path = link[1 : link.index(">")]
    return sorted(set(tags))


def ensure_image(
    ctx_or_store: Any,
    ref: str,
    *,
    quiet: bool = False,
    policy: str = "missing",
    platform: str | None = None,
) -> Image:
    """The local image ``ref`` names, pulled first if missing (``run``/``create``/``build``).

    Like Docker, progress goes to stderr after "Unable to find image 'X' locally".
    ``policy`` is ``--pull``: ``missing`` (default), ``always`` or ``never``.
    """
    store: ImageStore = getattr(ctx_or_store, "images", ctx_or_store)
    if policy not in ("missing", "always", "never"):
        raise DockyardError(
            f'invalid pull option: "{policy}": must be one of "always", "missing" or "never"'
        )
    if policy != "always":
        try:
            return store.resolve(ref)
        except NotFound:
            if policy == "never":
                raise
    from dockyard.images.reference import is_image_id

    if ref.startswith("sha256:") or is_image_id(ref):
        raise NotFound(f"No such image: {ref}")
    parsed = parse(ref).with_default_tag()
    progress = Progress(sys.stderr, quiet=quiet)
    if policy == "missing" and not quiet:
        print(f"Unable to find image '{parsed.familiar()}' locally", file=sys.stderr)
    try:
        return pull(store, parsed, platform=platform, progress=progress)
    except RegistryError as err:
        # run/create report a failed pull like any other engine error (exit 125)
        raise DockyardError(str(err)) from err
