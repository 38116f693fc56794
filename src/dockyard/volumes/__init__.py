"""Volumes: named, anonymous, bind and tmpfs mounts of containers, as Docker has them.

Contract for the container engine
---------------------------------
Flag parsing (``run``/``create``; every error is an InvalidArgument, exit 125,
with Docker's message)::

    parse_storage_flags(volumes: list[str], mounts: list[str], tmpfs: list[str]) -> list[Mount]
        all -v/--mount/--tmpfs values of one container, duplicates checked
        ("Duplicate mount point: /data"): use this for ContainerSpec.mounts
    parse_volume_flag(value: str) -> Mount      # -v SRC:DST[:MODE] | -v DST
    parse_mount_flag(value: str) -> Mount       # --mount type=...,src=...,dst=...
    parse_tmpfs_flag(value: str) -> Mount       # --tmpfs DST[:OPTS]
    parse_volumes_from(value: str) -> (container_ref, mode)   # validate at create
    host_config_fields(mounts) -> {"Binds", "Tmpfs", "Mounts"}  # inspect HostConfig parts

``VolumeManager(paths, db)`` (construction touches nothing)::

    create(name=None, *, driver="local", labels=None, options=None) -> Volume
    get(name) -> Volume (NotFound) / find(name) -> Volume | None
    list(filters: dict[str, list[str]] | None) -> list[Volume]
    remove(name, *, force=False)      # Conflict "remove X: volume is in use - [ids]"
    prune(*, all=False, filters=None) -> (names, bytes reclaimed)
    inspect(name) -> dict             # Docker's volume inspect object
    in_use(name) -> list[str]         # IDs of containers (running or not) using it

    prepare_mounts(container_id, spec, image_config, rootfs, volumes_from_mounts)
        -> list[dict]   OCI mounts; call at every START after the rootfs is
        mounted, before runc. Creates named volumes on first use, anonymous ones
        (for ``-v /path`` and the image's VOLUMEs) once per container and reuses
        them on restart, copies image content into an empty volume on the
        container's first start (not with nocopy / --volumes-from), creates
        missing ``-v`` bind sources, mounts driver-option volumes. Returns
        immediately, without touching the database, when the container has no
        mounts, no volumes-from and the image no VOLUME.
    volumes_from_mounts(source_id, source_spec, mode) -> list[Mount]
        for each ``--volumes-from REF[:MODE]`` (mode from parse_volumes_from):
        the source container's volume and bind mounts; concatenate them and
        pass them as ``volumes_from_mounts``.
    release(container_id, remove_anonymous)   # at container removal (rm -v: True)
    mounts_for_inspect(container_id, spec) -> list[dict]   # inspect "Mounts"

OCI mounts returned: volumes and binds ``{"type": "bind", "source": host path,
"options": ["rbind" | "bind", "ro"?, propagation]}``; tmpfs ``{"type": "tmpfs",
"source": "tmpfs", "options": ["noexec", "nosuid", "nodev", "rprivate", ...]}``
(Docker's defaults; ``exec``, ``size=``, ``mode=`` from the user override).
runc creates missing destinations inside the rootfs itself, resolving symlinks
within it.

``Mount.options`` keys: ``origin`` (volume | mount | tmpfs | volumes-from |
image: which flag made it), ``mode`` (the ``-v`` mode text, shown by inspect),
``propagation``, ``nonrecursive``, ``create-source`` (bind source is created
when missing), ``nocopy``, ``subpath``, ``driver``, ``opt.<key>`` /
``label.<key>`` (``--mount volume-opt/volume-label``: for a volume made on
first use), ``tmpfs-size`` (bytes), ``tmpfs-mode`` (octal), ``data`` (the
``--tmpfs`` options text).

Volumes with driver options (``volume create -o type=tmpfs -o device=tmpfs
-o o=size=100m``, ``-o type=none -o o=bind -o device=/dir``) are mounted over
their ``_data`` directory when a container first uses them and unmounted when
the last container referencing them is removed, or by ``volume rm``.

State lives in this package's own tables (created on first use): ``volumes``,
``volume_refs`` (container -> volume per destination) and ``container_mounts``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.volumes.parse import (
    host_config_fields,
    parse_mount_flag,
    parse_storage_flags,
    parse_tmpfs_flag,
    parse_volume_flag,
    parse_volumes_from,
)

if TYPE_CHECKING:
    from dockyard.volumes.manager import Volume, VolumeManager


def __getattr__(name: str) -> Any:
    """``Volume`` and ``VolumeManager`` are imported on first use only."""
    if name in ("Volume", "VolumeManager"):
        from dockyard.volumes import manager

        return getattr(manager, name)
    raise AttributeError(name)


__all__ = [
    "Volume",
    "VolumeManager",
    "host_config_fields",
    "parse_mount_flag",
    "parse_storage_flags",
    "parse_tmpfs_flag",
    "parse_volume_flag",
    "parse_volumes_from",
]
