"""``docker save`` / ``docker load`` archives.

``save`` writes what Docker 25+ writes: a docker-archive (``manifest.json``,
``repositories``) that is also an OCI image layout (``oci-layout``,
``index.json``, ``blobs/sha256``), with every file stored once under
``blobs``. ``load`` reads either kind, plain or compressed, and from older
Docker versions (``<id>.json`` configs, ``<v1 id>/layer.tar`` layers). It is
all or nothing: blobs and layers are verified while ingested, and the images
are registered and tagged in one transaction only once everything is in.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import tempfile
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.images import reference as refmod
from dockyard.records import field, record

if TYPE_CHECKING:
    import tarfile

    from dockyard.images.layers import Readable
    from dockyard.images.store import Image, ImageStore, LayerRecord

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
_MAX_JSON = 64 * 1024 * 1024
_BLOCK = 512


# -- save ---------------------------------------------------------------------------


@record
class _Saved:
    image: Image
    tags: list[refmod.Reference] = field(default_factory=list)


def _select(store: ImageStore, refs: list[str]) -> list[_Saved]:
    """Images to save with the tags to record, in order, merged per image."""
    chosen: dict[str, _Saved] = {}

    def add(image: Image, tag: refmod.Reference | None) -> None:
        entry = chosen.setdefault(image.id, _Saved(image))
        if tag is not None and tag not in entry.tags:
            entry.tags.append(tag)

    for ref in refs:
        parsed: refmod.Reference | None = None
        if not refmod.is_image_id(ref) and not ref.startswith("sha256:"):
            parsed = refmod.parse(ref)
        if parsed is not None and parsed.is_name_only:
            rows = store.db.query(
                "SELECT name, image_id FROM tags WHERE substr(name, 1, ?) = ? ORDER BY name",
                (len(parsed.name) + 1, parsed.name + ":"),
            )
            if rows:
                for row in rows:
                    add(store.get(row["image_id"]), refmod.parse(row["name"]))
                continue
        image = store.resolve(ref)
        tag: refmod.Reference | None = None
        if parsed is not None and not parsed.digest:
            candidate = parsed.with_default_tag()
            if store.db.query(
                "SELECT 1 FROM tags WHERE name = ? AND image_id = ?",
                (candidate.string(), image.id),
            ):
                tag = candidate
        add(image, tag)
    return list(chosen.values())


class _TarOut:
    """A tar stream written entry by entry (no seeking: stdout works)."""

    def __init__(self, out: BinaryIO, mtime: int) -> None:
        self.out = out
        self.mtime = mtime

    def _header(self, name: str, size: int, kind: bytes) -> None:
        import tarfile

        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = self.mtime
        info.type = kind
        info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
        self.out.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def directory(self, name: str) -> None:
        import tarfile

        self._header(name, 0, tarfile.DIRTYPE)

    def file(self, name: str, data: bytes) -> None:
        import tarfile

        self._header(name, len(data), tarfile.REGTYPE)
        self.out.write(data)
        self._pad(len(data))

    def stream(self, name: str, source: BinaryIO, size: int) -> None:
        import tarfile

        self._header(name, size, tarfile.REGTYPE)
        remaining = size
        while remaining > 0:
            chunk = source.read(min(1024 * 1024, remaining))
            if not chunk:
                raise DockyardError(f"blob for {name} is shorter than recorded")
            self.out.write(chunk)
            remaining -= len(chunk)
        self._pad(size)

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self.out.write(b"\0" * (_BLOCK - size % _BLOCK))

    def close(self) -> None:
        self.out.write(b"\0" * (2 * _BLOCK))


def save(store: ImageStore, refs: list[str], out: BinaryIO) -> None:
    """Write the images ``refs`` name as one archive to ``out``."""
    from dockyard.images.prune import rfc3339_ts
    from dockyard.images.store import json_bytes

    if not refs:
        raise InvalidArgument("save requires at least one image")
    selected = _select(store, refs)
    plans = []
    for entry in selected:
        records = store.layer_records(entry.image)
        manifest_digest = entry.image.manifest_digest
        if not manifest_digest or not store.content.has(manifest_digest):
            raise DockyardError(f"image {entry.image.short_id} has no stored manifest")
        plans.append((entry, records, manifest_digest))
    tar = _TarOut(out, int(rfc3339_ts(selected[0].image.created)))
    tar.directory("blobs/")
    tar.directory("blobs/sha256/")
    written: set[str] = set()

    def blob(digest: str) -> str:
        name = f"blobs/sha256/{digest.removeprefix('sha256:')}"
        if digest not in written:
            path = store.content.path(digest)
            try:
                with open(path, "rb") as f:
                    tar.stream(name, f, os.fstat(f.fileno()).st_size)
            except FileNotFoundError:
                raise DockyardError(f"blob {digest} is missing from the content store") from None
            written.add(digest)
        return name

    manifest_json: list[dict[str, Any]] = []
    index_entries: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    for entry, records, manifest_digest in plans:
        layer_paths = [blob(r.blob_digest) for r in records]
        config_path = blob(entry.image.id)
        blob(manifest_digest)
        manifest_json.append(
            {
                "Config": config_path,
                "RepoTags": [t.familiar() for t in entry.tags] or None,
                "Layers": layer_paths,
            }
        )
        descriptor = {
            "mediaType": OCI_MANIFEST,
            "digest": manifest_digest,
            "size": store.content.size(manifest_digest),
        }
        if not entry.tags:
            index_entries.append(descriptor)
        for tag in entry.tags:
            index_entries.append(
                {
                    **descriptor,
                    "annotations": {NAME_ANNOTATION: tag.string(), REF_ANNOTATION: tag.tag or ""},
                }
            )
            if records:
                top = records[-1].diff_id.removeprefix("sha256:")
                repositories.setdefault(tag.familiar_name(), {})[tag.tag or "latest"] = top
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index_entries}
    tar.file("index.json", json_bytes(index))
    tar.file("manifest.json", json_bytes(manifest_json))
    tar.file("oci-layout", json_bytes({"imageLayoutVersion": "1.0.0"}))
    if repositories:
        tar.file("repositories", json_bytes(repositories))
    tar.close()
    out.flush()


# -- load ---------------------------------------------------------------------------


class _Archive:
    """Random access to the members of a (spooled) tar archive by path."""

    def __init__(self, fileobj: BinaryIO) -> None:
        import tarfile

        self.file = fileobj
        try:
            self.tar = tarfile.open(fileobj=fileobj, mode="r:")
            members = self.tar.getmembers()
        except (tarfile.TarError, EOFError) as err:
            if "unexpected end" in str(err):
                raise InvalidArgument("invalid archive: truncated tar file") from None
            raise InvalidArgument(
                f"invalid archive: not a tar archive or a compressed one ({err})"
            ) from None
        fileobj.seek(self.tar.offset)
        end = fileobj.read(_BLOCK)
        if len(end) < _BLOCK or any(end):
            raise InvalidArgument("invalid archive: truncated or corrupt tar file")
        self.members: dict[str, tarfile.TarInfo] = {}
        for member in members:
            self.members[_norm(member.name)] = member

    def has(self, name: str) -> bool:
        return self._member(name, missing_ok=True) is not None

    def _member(self, name: str, missing_ok: bool = False) -> tarfile.TarInfo | None:
        path = _norm(name)
        for _ in range(16):
            member = self.members.get(path)
            if member is None:
                break
            if member.issym():
                path = _norm(posixpath.join(posixpath.dirname(path), member.linkname))
                continue
            if member.islnk():
                path = _norm(member.linkname)
                continue
            if member.isreg():
                return member
            break
        if missing_ok:
            return None
        raise InvalidArgument(f"invalid archive: {name} is missing")

    def open(self, name: str) -> BinaryIO:
        member = self._member(name)
        assert member is not None
        handle = self.tar.extractfile(member)
        assert handle is not None
        return handle  # type: ignore[return-value]

    def read(self, name: str) -> bytes:
        member = self._member(name)
        assert member is not None
        if member.size > _MAX_JSON:
            raise InvalidArgument(f"invalid archive: {name} is too large")
        with self.open(name) as f:
            data = f.read()
        if len(data) != member.size:
            raise InvalidArgument(f"invalid archive: {name} is truncated")
        return data

    def json(self, name: str) -> Any:
        try:
            return json.loads(self.read(name))
        except ValueError as err:
            raise InvalidArgument(f"invalid archive: {name} is not valid JSON: {err}") from None


def _norm(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


def _spool(store: ImageStore, fileobj: Readable) -> BinaryIO:
    """A seekable uncompressed copy of the input (the input itself when it is one)."""
    from dockyard.images.layers import decompress, detect_compression

    handle: Any = fileobj
    try:
        if stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            start = handle.tell()
            head = handle.read(6)
            handle.seek(start)
            if detect_compression(head) == "none":
                return handle
    except (OSError, ValueError, AttributeError):
        pass
    from dockyard.images.layers import _Reader

    reader = _Reader(fileobj, hashing=False)
    compression = detect_compression(reader.peek(6))
    store.paths.tmp.mkdir(parents=True, exist_ok=True)
    spool = tempfile.TemporaryFile(dir=store.paths.tmp)
    try:
        source = decompress(reader, compression)
        while chunk := source.read(1024 * 1024):
            spool.write(chunk)
    except Exception as err:
        spool.close()
        if isinstance(err, DockyardError) or (isinstance(err, OSError) and err.errno):
            raise
        raise InvalidArgument(f"invalid archive: corrupt {compression} data ({err})") from None
    spool.seek(0)
    return spool


@record
class _Pending:
    image_id: str
    config: dict[str, Any]
    raw_config: bytes
    layer_names: list[str]  # archive paths of the layer blobs, bottom first
    layer_digests: list[str | None]  # expected blob digests (OCI), or None
    names: list[str]  # normalized tags
    untagged_ok: bool = True


def _docker_entries(archive: _Archive) -> list[_Pending]:
    manifest = archive.json("manifest.json")
    if not isinstance(manifest, list):
        raise InvalidArgument("invalid archive: manifest.json is not a list")
    pending = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str):
            raise InvalidArgument("invalid archive: manifest.json entry without Config")
        raw = archive.read(entry["Config"])
        layers = entry.get("Layers") or []
        if not isinstance(layers, list) or not all(isinstance(p, str) for p in layers):
            raise InvalidArgument("invalid archive: manifest.json Layers must be a list of paths")
        names = [
            refmod.parse_tagged(tag).string()
            for tag in entry.get("RepoTags") or []
            if isinstance(tag, str)
        ]
        pending.append(_pending(raw, layers, [None] * len(layers), names))
    return pending


def _pending(
    raw: bytes, layers: list[str], digests: list[str | None], names: list[str]
) -> _Pending:
    try:
        config = json.loads(raw)
    except ValueError as err:
        raise InvalidArgument(f"invalid archive: image config is not valid JSON: {err}") from None
    if not isinstance(config, dict):
        raise InvalidArgument("invalid archive: image config is not an object")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    if len(diff_ids) != len(layers):
        raise InvalidArgument(
            f"invalid manifest, layers length mismatch: expected {len(diff_ids)}, got {len(layers)}"
        )
    image_id = "sha256:" + hashlib.sha256(raw).hexdigest()
    return _Pending(image_id, config, raw, layers, digests, names)


def _blob_path(digest: Any) -> str:
    if not isinstance(digest, str) or ":" not in digest:
        raise InvalidArgument(f"invalid archive: bad digest {digest!r}")
    algorithm, _, hex_part = digest.partition(":")
    if algorithm != "sha256" or len(hex_part) != 64:
        raise InvalidArgument(f"invalid archive: unsupported digest {digest}")
    return f"blobs/sha256/{hex_part}"


def _verified(archive: _Archive, digest: str) -> bytes:
    data = archive.read(_blob_path(digest))
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise InvalidArgument(f"invalid archive: blob {digest} does not match its digest")
    return data


def _oci_entries(archive: _Archive) -> list[_Pending]:
    from dockyard.images.store import host_platform

    index = archive.json("index.json")
    pending: list[_Pending] = []

    def visit(descriptor: dict[str, Any], name: str | None, depth: int) -> None:
        media = descriptor.get("mediaType", "")
        data = _verified(archive, descriptor.get("digest", ""))
        document = json.loads(data)
        media = media or document.get("mediaType", "")
        if media in (OCI_INDEX, DOCKER_LIST) or "manifests" in document:
            if depth > 4:
                raise InvalidArgument("invalid archive: image indexes nested too deep")
            arch, variant = host_platform()
            choices = [
                m
                for m in document.get("manifests") or []
                if (m.get("platform") or {}).get("architecture") in (None, arch)
                and (m.get("platform") or {}).get("os") in (None, "linux")
                and (m.get("annotations") or {}).get("vnd.docker.reference.type")
                != "attestation-manifest"
            ]
            if not choices:
                raise NotFound(f"no image for linux/{arch} in the archive")
            visit(choices[0], name, depth + 1)
            return
        config_desc = document.get("config") or {}
        raw = _verified(archive, config_desc.get("digest", ""))
        layer_descs = document.get("layers") or []
        for layer in layer_descs:
            if "foreign" in layer.get("mediaType", "") or "nondistributable" in layer.get(
                "mediaType", ""
            ):
                if not archive.has(_blob_path(layer.get("digest"))):
                    raise InvalidArgument("invalid archive: a foreign layer is not included")
        paths = [_blob_path(layer.get("digest")) for layer in layer_descs]
        digests: list[str | None] = [layer.get("digest") for layer in layer_descs]
        pending.append(_pending(raw, paths, digests, [name] if name else []))

    for descriptor in index.get("manifests") or []:
        annotations = descriptor.get("annotations") or {}
        name = _annotated_name(annotations)
        visit(descriptor, name, 0)
    return pending


def _annotated_name(annotations: dict[str, Any]) -> str | None:
    full = annotations.get(NAME_ANNOTATION)
    candidates = [full] if isinstance(full, str) and full else []
    ref_name = annotations.get(REF_ANNOTATION)
    if isinstance(ref_name, str) and ("/" in ref_name or ":" in ref_name):
        candidates.append(ref_name)
    for candidate in candidates:
        try:
            parsed = refmod.parse(candidate)
        except InvalidArgument:
            continue
        if not parsed.digest:
            return parsed.with_default_tag().string()
    return None


def load(store: ImageStore, fileobj: Readable) -> list[str]:
    """Load every image in the archive; returns Docker's "Loaded image..." lines."""
    from dockyard.images.remove import Registration, register

    spool = _spool(store, fileobj)
    ingested: list[LayerRecord] = []
    new_configs: list[str] = []
    try:
        archive = _Archive(spool)
        if archive.has("manifest.json"):
            pending = _docker_entries(archive)
        elif archive.has("index.json"):
            pending = _oci_entries(archive)
        else:
            raise InvalidArgument(
                "invalid archive: no manifest.json or index.json (not a docker save or OCI archive)"
            )
        registrations = []
        seen: dict[str, LayerRecord] = {}
        for item in pending:
            diff_ids = list((item.config.get("rootfs") or {}).get("diff_ids") or [])
            layers = []
            for i, (path, digest) in enumerate(
                zip(item.layer_names, item.layer_digests, strict=True)
            ):
                if diff_ids[i] in seen:
                    layers.append(seen[diff_ids[i]])
                    continue
                try:
                    with archive.open(path) as stream:
                        record = store.ingest_layer(
                            stream, expected_diff_id=diff_ids[i], expected_digest=digest
                        )
                except InvalidArgument as err:
                    raise InvalidArgument(f"layer {i} ({path}): {err}") from None
                ingested.append(record)
                layers.append(record)
                seen[record.diff_id] = record
            if not store.content.has(item.image_id):
                new_configs.append(item.image_id)
            _, size = store.content.put_bytes(item.raw_config, item.image_id)
            registrations.append(Registration(item.image_id, size, item.config, layers, item.names))
        moved = register(store, registrations)
    except BaseException:
        store.discard_layers(ingested)
        for digest in new_configs:
            if not store.db.query("SELECT 1 FROM images WHERE id = ?", (digest,)):
                store.content.delete(digest)
        raise
    finally:
        if spool is not fileobj:
            spool.close()
    messages = []
    for item in pending:
        for name in item.names:
            if name in moved:
                messages.append(
                    f"The image {refmod.familiar(name)} already exists, renaming the old one"
                    f" with ID {moved[name]} to empty string"
                )
            messages.append(f"Loaded image: {refmod.familiar(name)}")
        if not item.names:
            messages.append(f"Loaded image ID: {item.image_id}")
    return messages
