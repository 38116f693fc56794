"""What volumes mean for one container: its mounts at start, its references, its removal.

At every start the container's mounts are resolved in Docker's order of
precedence (``--volumes-from``, then ``-v``/``--mount``/``--tmpfs``, then
anonymous ``-v /path`` and the image's ``VOLUME`` entries where nothing else
is mounted), volumes are created on first use, and an empty volume receives
a copy of the image's directory once per container and destination (Docker
copies when a container is created; we copy at its first start). The result
is remembered in ``container_mounts`` for ``inspect`` and ``--volumes-from``.
"""

from __future__ import annotations

import json
import os
import stat
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.containers.spec import ContainerSpec, Mount
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.volumes.copyup import copy_tree, is_empty_dir, secure_join
from dockyard.volumes.parse import (
    DEFAULT_PROPAGATION,
    TMPFS_FLAGS,
    clean_path,
    duplicate_error,
)

if TYPE_CHECKING:
    from dockyard.volumes.manager import Volume, VolumeManager

# Docker's defaults for every tmpfs mount (noexec unless "exec" is given)
TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev", DEFAULT_PROPAGATION]
_PROPAGATION_FLAGS = {"bind", "rbind", "unbindable", "runbindable", "private", "rprivate",
                      "shared", "rshared", "slave", "rslave"}  # fmt: skip
_FLAG_KEYS = {"ro": "rdonly", "rw": "rdonly", "suid": "nosuid", "nosuid": "nosuid",
              "dev": "nodev", "nodev": "nodev", "exec": "noexec", "noexec": "noexec",
              "sync": "sync", "async": "sync", "mand": "mand", "nomand": "mand",
              "atime": "noatime", "noatime": "noatime", "diratime": "nodiratime",
              "nodiratime": "nodiratime", "relatime": "relatime", "norelatime": "relatime",
              "strictatime": "strictatime", "nostrictatime": "strictatime",
              "dirsync": "dirsync", "remount": "remount"}  # fmt: skip


# -- who uses a volume -----------------------------------------------------------------


def volume_users(
    vm: VolumeManager, name: str | None = None, exclude: str | None = None
) -> dict[str, set[str]]:
    """Volume name -> IDs of existing containers that reference it.

    A container references a volume when it was started with it (``volume_refs``)
    or when its spec names it (a created container that never ran).
    """
    users: dict[str, set[str]] = defaultdict(set)
    if not vm.has_schema():
        return users
    sql = (
        "SELECT r.container_id, r.name FROM volume_refs r "
        "JOIN containers c ON c.id = r.container_id"
    )
    params: tuple[object, ...] = ()
    if name is not None:
        sql += " WHERE r.name = ?"
        params = (name,)
    for row in vm.db.query(sql, params):
        users[row[1]].add(row[0])
    sql = "SELECT id, spec FROM containers"
    if name is not None:
        sql += " WHERE instr(spec, ?) > 0"
    for row in vm.db.query(sql, params):
        try:
            mounts = json.loads(row[1]).get("mounts") or []
        except (ValueError, AttributeError):
            continue
        for mount in mounts:
            source = mount.get("source")
            if mount.get("type") == "volume" and source and (name is None or source == name):
                users[source].add(row[0])
    if exclude is not None:
        for ids in users.values():
            ids.discard(exclude)
    return {k: v for k, v in users.items() if v}


# -- planning -------------------------------------------------------------------------


def image_volume_targets(image_config: dict[str, Any]) -> list[str]:
    from dockyard.volumes.manager import _image_volumes

    return [clean_path("/" + t.lstrip("/")) for t in sorted(_image_volumes(image_config))]


def _image_targets(spec: ContainerSpec, image_config: dict[str, Any]) -> list[str]:
    if spec.image_volumes == "ignore":
        return []
    return image_volume_targets(image_config)


def _yields(mount: Mount) -> bool:
    """An anonymous ``-v /path`` (or image VOLUME) gives way to any other mount there."""
    return mount.type == "volume" and not mount.source and mount.options.get("origin") != "mount"


def plan_mounts(
    spec_mounts: list[Mount], volumes_from_mounts: list[Mount], image_targets: list[str]
) -> list[Mount]:
    """The container's mounts, one per destination, in Docker's order of precedence."""
    final: dict[str, Mount] = {m.target: m for m in volumes_from_mounts}
    explicit: set[str] = set()
    for mount in spec_mounts:
        if _yields(mount):
            continue
        if mount.target in explicit:
            raise duplicate_error(mount.target)
        explicit.add(mount.target)
        final[mount.target] = mount
    for mount in spec_mounts:
        if _yields(mount):
            final.setdefault(mount.target, mount)
    for target in image_targets:
        final.setdefault(target, Mount("volume", target, "", False, {"origin": "image"}))
    return list(final.values())


# -- start ----------------------------------------------------------------------------


def prepare_mounts(
    vm: VolumeManager,
    container_id: str,
    spec: ContainerSpec,
    image_config: dict[str, Any],
    rootfs: Path,
    volumes_from_mounts: list[Mount],
) -> list[dict[str, Any]]:
    """Create/populate what the container's mounts need; return its OCI mounts.

    Call after the rootfs is mounted and before the runtime starts. Raises a
    DockyardError (exit 125) with Docker's message when a mount cannot be made.
    """
    plan = plan_mounts(spec.mounts, volumes_from_mounts, _image_targets(spec, image_config))
    for mount in plan:
        if mount.type == "volume" and not mount.source:
            path = secure_join(rootfs, mount.target)
            if path.exists() and not path.is_dir():
                raise DockyardError(f"cannot mount volume over existing file, file exists {path}")
    resolved = _resolve_volumes(vm, container_id, plan)
    oci: list[dict[str, Any]] = []
    shown: list[dict[str, Any]] = []
    populated: list[str] = []
    for mount in plan:
        if mount.type == "volume":
            volume, done = resolved[mount.target]
            source = _ready_volume(vm, volume, mount, rootfs, done)
            if not done:
                populated.append(mount.target)
            oci.append(_bind(mount.target, str(source), mount.read_only, DEFAULT_PROPAGATION,
                             nonrecursive=False))  # fmt: skip
            shown.append(_shown_volume(mount, volume, source))
        elif mount.type == "bind":
            _ready_bind_source(mount)
            propagation = mount.options.get("propagation") or DEFAULT_PROPAGATION
            _check_propagation(mount.source, propagation)
            oci.append(_bind(mount.target, mount.source, mount.read_only, propagation,
                             nonrecursive=mount.options.get("nonrecursive") == "true"))  # fmt: skip
            shown.append(_shown_bind(mount, propagation))
        elif mount.type == "tmpfs":
            oci.append(tmpfs_mount(mount))
            if mount.options.get("origin") != "tmpfs":  # --tmpfs is HostConfig.Tmpfs only
                shown.append(_shown(mount, "tmpfs", "", "", ""))
        else:
            raise InvalidArgument(
                f'invalid mount config for type "{mount.type}": mount type unknown'
            )
    with vm.db.transaction() as conn:
        for target in populated:
            conn.execute(
                "UPDATE volume_refs SET populated = 1 WHERE container_id = ? AND destination = ?",
                (container_id, target),
            )
        conn.execute(
            "INSERT OR REPLACE INTO container_mounts (container_id, mounts) VALUES (?, ?)",
            (container_id, json.dumps(shown)),
        )
    return sorted(oci, key=lambda m: len([p for p in m["destination"].split("/") if p]))


def _resolve_volumes(
    vm: VolumeManager, container_id: str, plan: list[Mount]
) -> dict[str, tuple[Volume, bool]]:
    """Destination -> (volume, copy-up already done); creates volumes and references."""
    from dockyard.volumes.manager import ANONYMOUS_LABEL

    vm.ensure_schema()
    resolved: dict[str, tuple[Volume, bool]] = {}
    with vm.db.transaction() as conn:
        refs = {
            row["destination"]: row
            for row in conn.execute(
                "SELECT * FROM volume_refs WHERE container_id = ?", (container_id,)
            )
        }
        for mount in plan:
            if mount.type != "volume":
                continue
            ref = refs.get(mount.target)
            anonymous = not mount.source
            labels = {k[6:]: v for k, v in mount.options.items() if k.startswith("label.")}
            opts = {k[4:]: v for k, v in mount.options.items() if k.startswith("opt.")}
            driver = mount.options.get("driver") or "local"
            name: str | None = mount.source
            if anonymous:
                # Restarts keep their anonymous volume; a new one only the first time.
                name = ref["name"] if ref is not None and ref["anonymous"] else None
                labels[ANONYMOUS_LABEL] = ""
            volume, _ = vm.insert(conn, name, driver, labels, opts)
            done = ref is not None and ref["name"] == volume.name and bool(ref["populated"])
            conn.execute(
                "INSERT OR REPLACE INTO volume_refs "
                "(container_id, destination, name, anonymous, populated) VALUES (?, ?, ?, ?, ?)",
                (container_id, mount.target, volume.name, int(anonymous), int(done)),
            )
            resolved[mount.target] = (volume, done)
    return resolved


def _ready_volume(
    vm: VolumeManager, volume: Volume, mount: Mount, rootfs: Path, populated: bool
) -> Path:
    """Directory, driver mount and copy-up of one volume; returns the host path to bind."""
    vm.materialize(volume)
    data = vm.data_dir(volume.name)
    with vm.locked(volume.name):
        if volume.needs_mount:
            activate(volume, data)
        origin = mount.options.get("origin")
        wants_copy = mount.options.get("nocopy") != "true" and origin != "volumes-from"
        if not populated and wants_copy:
            image_dir = secure_join(rootfs, mount.target)
            try:
                info = os.stat(image_dir)
            except (FileNotFoundError, NotADirectoryError):
                info = None
            if info is not None and stat.S_ISDIR(info.st_mode) and is_empty_dir(data):
                try:
                    copy_tree(image_dir, data)
                except OSError as err:
                    raise DockyardError(
                        f"failed to populate volume {volume.name} from {mount.target}: {err}"
                    ) from None
    subpath = mount.options.get("subpath")
    if subpath:
        source = secure_join(data, subpath)
        if not source.exists():
            raise DockyardError(
                f'invalid mount config for type "volume": subpath "{subpath}" does not exist '
                f"in volume {volume.name}"
            )
        return source
    return data


def activate(volume: Volume, data: Path) -> None:
    """Mount a volume that has driver options over its ``_data``, unless it already is."""
    from dockyard.volumes import mountops

    if mountops.is_mountpoint(str(data)):
        return
    opts = volume.options
    try:
        mountops.mount(opts.get("device", ""), str(data), opts.get("type", ""), opts.get("o", ""))
    except OSError as err:
        raise DockyardError(
            f"error while mounting volume '{data}': failed to mount local volume: {err.strerror}"
        ) from None


def _ready_bind_source(mount: Mount) -> None:
    if os.path.lexists(mount.source):
        return
    if mount.options.get("create-source") != "true":
        raise InvalidArgument(
            f'invalid mount config for type "bind": bind source path does not exist: {mount.source}'
        )
    try:
        os.makedirs(mount.source, mode=0o755, exist_ok=True)
    except OSError as err:
        raise DockyardError(
            f"error while creating mount source path '{mount.source}': {err}"
        ) from None


def _check_propagation(source: str, propagation: str) -> None:
    """Docker's rule: shared mounts need a shared source, slave ones shared or slave."""
    if propagation not in ("shared", "rshared", "slave", "rslave"):
        return
    point, optional = _source_mount(source)
    shared = any(o.startswith("shared:") for o in optional)
    slave = any(o.startswith("master:") for o in optional)
    if propagation in ("shared", "rshared") and not shared:
        raise DockyardError(f"path {source} is mounted on {point} but it is not a shared mount")
    if not shared and not slave:
        raise DockyardError(
            f"path {source} is mounted on {point} but it is not a shared or slave mount"
        )


def _source_mount(source: str) -> tuple[str, list[str]]:
    """The mount point holding ``source`` and its optional mountinfo fields."""
    from dockyard.volumes import mountops

    real = os.path.realpath(source)
    best, best_optional = "/", []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = mountops._unescape(fields[4])
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, best_optional = point, fields[6 : fields.index("-")]
    return best, best_optional


def _bind(
    target: str, source: str, read_only: bool, propagation: str, *, nonrecursive: bool
) -> dict[str, Any]:
    options = ["bind" if nonrecursive else "rbind"]
    if read_only:
        options.append("ro")
    options.append(propagation)
    return {"destination": target, "type": "bind", "source": source, "options": options}


def tmpfs_data(mount: Mount) -> list[str]:
    """The mount options a tmpfs Mount asks for (``--tmpfs`` data or ``--mount`` fields)."""
    if mount.options.get("origin") == "tmpfs":
        data = mount.options.get("data", "")
        return data.split(",") if data else []
    out = ["ro"] if mount.read_only else []
    if mount.options.get("tmpfs-mode"):
        out.append(f"mode={mount.options['tmpfs-mode']}")
    size = int(mount.options.get("tmpfs-size") or 0)
    if size:
        for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % unit == 0:
                out.append(f"size={size // unit}{suffix}")
                break
        else:
            out.append(f"size={size}")
    return out


def merge_tmpfs_options(options: list[str]) -> list[str]:
    """moby's MergeTmpfsOptions: the last of each flag kind or data key wins."""
    seen: set[str] = set()
    merged: list[str] = []
    for option in reversed(options):
        if option == "defaults" or not option:
            continue
        if option in TMPFS_FLAGS:
            key = "propagation" if option in _PROPAGATION_FLAGS else _FLAG_KEYS[option]
        else:
            key = "=" + option.partition("=")[0]
        if key not in seen:
            seen.add(key)
            merged.insert(0, option)
    return merged


def tmpfs_mount(mount: Mount) -> dict[str, Any]:
    """OCI tmpfs mount with Docker's defaults: noexec, nosuid, nodev (mode/size: kernel's)."""
    options = merge_tmpfs_options([*TMPFS_DEFAULTS, *tmpfs_data(mount)])
    return {"destination": mount.target, "type": "tmpfs", "source": "tmpfs", "options": options}


# -- inspect ----------------------------------------------------------------------------


def _shown(mount: Mount, kind: str, source: str, mode: str, propagation: str) -> dict[str, Any]:
    return {
        "Type": kind,
        "Source": source,
        "Destination": mount.target,
        "Mode": mode,
        "RW": not mount.read_only,
        "Propagation": propagation,
    }


def _volume_mode(mount: Mount) -> str:
    """Docker shows "z" for a named local volume without a mode; "" for anonymous ones."""
    origin = mount.options.get("origin")
    if origin in ("image", "volumes-from"):
        return ""
    mode = mount.options.get("mode", "")
    if not mount.source and origin == "volume":
        return mode
    return mode or "z"


def _shown_volume(mount: Mount, volume: Volume, source: Path) -> dict[str, Any]:
    shown = _shown(mount, "volume", str(source), _volume_mode(mount), "")
    shown = {"Type": "volume", "Name": volume.name, **shown, "Driver": volume.driver}
    return {k: shown[k] for k in ("Type", "Name", "Source", "Destination", "Driver", "Mode",
                                  "RW", "Propagation")}  # fmt: skip


def _shown_bind(mount: Mount, propagation: str) -> dict[str, Any]:
    return _shown(mount, "bind", mount.source, mount.options.get("mode", ""), propagation)


def recorded_mounts(vm: VolumeManager, container_id: str) -> list[dict[str, Any]] | None:
    if not vm.has_schema():
        return None
    rows = vm.db.query(
        "SELECT mounts FROM container_mounts WHERE container_id = ?", (container_id,)
    )
    return json.loads(rows[0][0]) if rows else None


def mounts_for_inspect(
    vm: VolumeManager, container_id: str, spec: ContainerSpec
) -> list[dict[str, Any]]:
    """Docker's inspect ``Mounts``: as last started, else as the spec will make them."""
    recorded = recorded_mounts(vm, container_id)
    if recorded is not None:
        return recorded
    shown = []
    for mount in spec.mounts:
        if mount.type == "bind":
            propagation = mount.options.get("propagation") or DEFAULT_PROPAGATION
            shown.append(_shown_bind(mount, propagation))
        elif mount.type == "volume" and mount.source:
            volume = vm.find(mount.source)
            driver = volume.driver if volume else mount.options.get("driver") or "local"
            item = _shown(mount, "volume", str(vm.data_dir(mount.source)), _volume_mode(mount), "")
            shown.append({"Type": "volume", "Name": mount.source, **item, "Driver": driver})
        elif mount.type == "tmpfs" and mount.options.get("origin") != "tmpfs":
            shown.append(_shown(mount, "tmpfs", "", "", ""))
    if vm.has_schema():  # anonymous volumes made early for a --volumes-from user
        anonymous = {m.target: m for m in spec.mounts if m.type == "volume" and not m.source}
        rows = vm.db.query(
            "SELECT destination, name FROM volume_refs WHERE container_id = ? AND anonymous = 1",
            (container_id,),
        )
        for target, name in rows:
            mount = anonymous.get(target) or Mount("volume", target, "", False, {"origin": "image"})
            item = _shown(mount, "volume", str(vm.data_dir(name)), "", "")
            shown.append({"Type": "volume", "Name": name, **item, "Driver": "local"})
    return shown


def volumes_from_mounts(
    vm: VolumeManager, container_id: str, spec: ContainerSpec, mode: str
) -> list[Mount]:
    """The source container's volume and bind mounts, for ``--volumes-from ID[:mode]``.

    A source that never started gets its anonymous volumes now, so that both
    containers share them (Docker creates them when the source is created).
    """
    writable = "ro" not in mode.split(",")
    recorded = recorded_mounts(vm, container_id)
    if recorded is None:
        _resolve_volumes(vm, container_id, plan_mounts(spec.mounts, [], []))
        recorded = mounts_for_inspect(vm, container_id, spec)
    out = []
    for item in recorded:
        options = {"origin": "volumes-from", "nocopy": "true"}
        read_only = not (item.get("RW", True) and writable)
        if item["Type"] == "volume":
            out.append(Mount("volume", item["Destination"], item["Name"], read_only, options))
        elif item["Type"] == "bind":
            options["propagation"] = item.get("Propagation") or DEFAULT_PROPAGATION
            out.append(Mount("bind", item["Destination"], item["Source"], read_only, options))
    return out


# -- removal ------------------------------------------------------------------------------


def inherit_anonymous(
    vm: VolumeManager, old_id: str, new_id: str, spec: ContainerSpec, image_config: dict[str, Any]
) -> list[str]:
    """Hand ``old_id``'s anonymous volumes to ``new_id`` where the new container has an
    anonymous mount (its own ``-v /path`` or an image VOLUME) at the same destination,
    as Compose does when it recreates a container: a database's data survives a config
    change. They stay anonymous (``rm -v`` removes them with the new container).
    Returns the destinations taken over."""
    if not vm.has_schema():
        return []
    plan = plan_mounts(spec.mounts, [], _image_targets(spec, image_config))
    wanted = {m.target for m in plan if m.type == "volume" and not m.source}
    taken: list[str] = []
    with vm.db.transaction() as conn:
        rows = conn.execute(
            "SELECT destination, name, populated FROM volume_refs "
            "WHERE container_id = ? AND anonymous = 1",
            (old_id,),
        ).fetchall()
        for destination, name, populated in rows:
            if destination not in wanted:
                continue
            conn.execute(
                "INSERT OR REPLACE INTO volume_refs "
                "(container_id, destination, name, anonymous, populated) VALUES (?, ?, ?, 1, ?)",
                (new_id, destination, name, populated),
            )
            taken.append(destination)
    return taken


def release(vm: VolumeManager, container_id: str, remove_anonymous: bool) -> None:
    """Drop the container's references; unmount driver-option volumes nobody else uses.

    With ``remove_anonymous`` (``rm -v``, ``run --rm``) the container's anonymous
    volumes are removed too, unless another container still uses them.
    """
    if not vm.has_schema():
        return
    with vm.db.transaction() as conn:
        refs = conn.execute(
            "SELECT name, anonymous FROM volume_refs WHERE container_id = ?", (container_id,)
        ).fetchall()
        conn.execute("DELETE FROM volume_refs WHERE container_id = ?", (container_id,))
        conn.execute("DELETE FROM container_mounts WHERE container_id = ?", (container_id,))
    if not refs:
        return
    users = vm.users(exclude=container_id)
    for name, anonymous in {(r[0], bool(r[1])) for r in refs}:
        if name in users:
            continue
        if remove_anonymous and anonymous:
            try:
                vm.remove(name, force=True)
            except DockyardError:
                pass  # picked up again by a later container, or by prune
            continue
        volume = vm.find(name)
        if volume is not None and volume.needs_mount:
            with vm.locked(name):
                if not volume_users(vm, name, exclude=container_id):
                    from dockyard.volumes import mountops

                    try:
                        mountops.unmount(str(vm.data_dir(name)))
                    except OSError:
                        pass
