"""Images made here rather than received: ``docker import`` and ``docker commit``.

Both follow what Docker writes into the image config: import records
"Imported from -" as comment and history; commit appends a history entry
(author, the container's command, the message) and, when the container
changed nothing, no layer at all (``empty_layer``), as Docker does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.errors import InvalidArgument
from dockyard.images import reference as refmod

if TYPE_CHECKING:
    from dockyard.images.layers import Readable
    from dockyard.images.store import Image, ImageStore

# container config fields Docker leaves out of the JSON when unset (omitempty)
_OMIT_EMPTY = (
    "ExposedPorts",
    "Healthcheck",
    "ArgsEscaped",
    "MacAddress",
    "StopSignal",
    "StopTimeout",
    "Shell",
    "NetworkDisabled",
)


def import_image(
    store: ImageStore,
    fileobj: Readable,
    changes: list[str],
    message: str,
    reference: str | None,
    *,
    source: str = "-",
    platform: tuple[str, str] | None = None,
) -> Image:
    from dockyard.images.changes import apply_changes
    from dockyard.images.store import host_platform, now_rfc3339

    tags: list[str] = []
    if reference:
        parsed = refmod.parse(reference)
        if parsed.digest:
            raise InvalidArgument("cannot import digest reference")
        tags.append(parsed.with_default_tag().string())
    image_config = apply_changes({}, changes)  # errors before reading the tarball
    layer = store.ingest_layer(fileobj)
    try:
        created = now_rfc3339()
        comment = message or f"Imported from {source}"
        arch, variant = platform or host_platform()
        config: dict[str, Any] = {
            "architecture": arch,
            "comment": comment,
            "config": image_config,
            "created": created,
            "history": [{"created": created, "comment": comment}],
            "os": "linux",
        }
        if variant:
            config["variant"] = variant
        return store.create_image(config, [layer], tags)
    except BaseException:
        store.discard_layers([layer])
        raise


def commit_image(
    store: ImageStore,
    container_id: str,
    layer: BinaryIO | None,
    base: Image | None,
    changes: list[str],
    author: str,
    message: str,
    tags: list[str],
    *,
    container_config: dict[str, Any] | None,
    exclude: list[str],
) -> Image:
    from dockyard.containers import rootfs
    from dockyard.images.changes import apply_changes
    from dockyard.images.layers import EMPTY_TAR_DIFF_ID
    from dockyard.images.store import host_platform, now_rfc3339

    names = [refmod.parse_tagged(t) for t in tags]
    if any(n.digest for n in names):
        raise InvalidArgument("refusing to create a tag with a digest reference")
    if container_config is None:
        container_config = base.container_config if base else {}
    omitted = {k: v for k, v in container_config.items() if not (k in _OMIT_EMPTY and not v)}
    new_config = apply_changes(omitted, changes)
    own_layer = layer is None
    stream = rootfs.commit_layer(store.paths, container_id, exclude) if own_layer else layer
    assert stream is not None
    try:
        record = store.ingest_layer(stream)
    finally:
        if own_layer:
            stream.close()
    empty = record.diff_id == EMPTY_TAR_DIFF_ID
    try:
        base_layers = store.layer_records(base) if base else []
        created = now_rfc3339()
        base_config = base.config if base else {}
        arch, variant = host_platform()
        config: dict[str, Any] = {"architecture": base_config.get("architecture") or arch}
        if author:
            config["author"] = author
        config["config"] = new_config
        config["container"] = container_id
        config["created"] = created
        entry: dict[str, Any] = {"created": created}
        if author:
            entry["author"] = author
        cmd = container_config.get("Cmd") or []
        if cmd:
            entry["created_by"] = " ".join(cmd)
        if message:
            entry["comment"] = message
        if empty:
            entry["empty_layer"] = True
        config["history"] = [*(base_config.get("history") or []), entry]
        config["os"] = base_config.get("os") or "linux"
        if base_config.get("variant") or (not base and variant):
            config["variant"] = base_config.get("variant") or variant
        layers = base_layers if empty else [*base_layers, record]
        image = store.create_image(
            config, layers, [n.string() for n in names], parent=base.id if base else None
        )
    except BaseException:
        store.discard_layers([record])
        raise
    if empty:
        store.discard_layers([record])  # the empty layer is not kept, as in Docker
    return image
