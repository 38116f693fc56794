"""``-v``, ``--mount``, ``--tmpfs`` and ``--volumes-from`` values turned into Mounts.

The rules and messages are Docker's (CLI ``opts/mount.go`` and the daemon's
Linux mount parser), so a script that fails under Docker fails the same way
here, with exit 125. Extra facts a Mount carries live in ``Mount.options``;
the keys are listed in :mod:`dockyard.volumes`.
"""

from __future__ import annotations

import os
import posixpath
import re

from dockyard.containers.spec import Mount
from dockyard.errors import InvalidArgument

RW_MODES = {"rw", "ro"}
LABEL_MODES = {"z", "Z"}
PROPAGATIONS = {"private", "rprivate", "shared", "rshared", "slave", "rslave"}
CONSISTENCY_MODES = {"consistent", "cached", "delegated"}
COPY_MODES = {"nocopy"}
DEFAULT_PROPAGATION = "rprivate"

_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
# mount(8)-style flags accepted in tmpfs data, and the data keys tmpfs knows
# (moby/sys/mount MergeTmpfsOptions).
TMPFS_FLAGS = {
    "defaults", "ro", "rw", "suid", "nosuid", "dev", "nodev", "exec", "noexec", "sync", "async",
    "dirsync", "remount", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime", "bind",
    "rbind", "unbindable", "runbindable", "private", "rprivate", "shared", "rshared", "slave",
    "rslave", "relatime", "norelatime", "strictatime", "nostrictatime",
}  # fmt: skip
TMPFS_DATA = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"}
_SIZE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _spec_error(raw: str) -> InvalidArgument:
    return InvalidArgument(f"invalid volume specification: '{raw}'")


def _config_error(kind: str, why: str) -> InvalidArgument:
    return InvalidArgument(f'invalid mount config for type "{kind}": {why}')


def clean_path(path: str) -> str:
    """Go's ``path.Clean`` (posixpath.normpath keeps a leading ``//``)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def target_problem(target: str) -> str | None:
    """Why a container path cannot be a mount target, or None."""
    if clean_path(target) == "/":
        return "invalid specification: destination can't be '/'"
    if not target.startswith("/"):
        return f"invalid mount path: '{target}' mount path must be absolute"
    return None


def validate_volume_name(name: str) -> str:
    """The local driver's naming rule; the message is Docker's, prefixed ``create NAME:``."""
    if len(name) == 1:
        raise InvalidArgument(
            f"create {name}: volume name is too short, names should be at least two "
            "alphanumeric characters"
        )
    if not _VOLUME_NAME.match(name):
        raise InvalidArgument(
            f'create {name}: "{name}" includes invalid characters for a local volume name, '
            'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
            "directory, use absolute path"
        )
    return name


def ram_in_bytes(text: str) -> int:
    """go-units ``RAMInBytes``: ``64m``, ``1.5g``, ``100MiB``, ``4096`` (binary multiples)."""
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"invalid size: '{text}'")
    number = float(match.group(1)) if match.group(1).count(".") <= 1 else None
    if number is None:
        raise ValueError(f"invalid size: '{text}'")
    return int(number * _UNITS[(match.group(2) or "").lower()])


def valid_mode(mode: str) -> bool:
    """Docker's ``linuxValidMountMode``: comma-separated, at most one of each kind."""
    if mode == "":
        return True
    counts = {"rw": 0, "label": 0, "propagation": 0, "copy": 0, "consistency": 0}
    for opt in mode.split(","):
        if opt in RW_MODES:
            counts["rw"] += 1
        elif opt in LABEL_MODES:
            counts["label"] += 1
        elif opt in PROPAGATIONS:
            counts["propagation"] += 1
        elif opt in COPY_MODES:
            counts["copy"] += 1
        elif opt in CONSISTENCY_MODES:
            counts["consistency"] += 1
        else:
            return False
    return all(n <= 1 for n in counts.values())


# -- -v / --volume --------------------------------------------------------------


def parse_volume_flag(value: str) -> Mount:
    """``-v [SOURCE:]TARGET[:MODE]``: a bind (absolute source), named or anonymous volume.

    A relative source starting with ``.`` is made absolute (as the docker CLI
    does). A missing bind source is created as a directory when the container
    starts (option ``create-source``).
    """
    if value == "":
        raise InvalidArgument("invalid empty volume spec")
    arr = value.split(":", 3)
    if arr[0] == "":
        raise _spec_error(value)
    source, mode = "", ""
    if len(arr) == 1:
        target = arr[0]
    elif len(arr) == 2:
        if valid_mode(arr[1]):
            raise _spec_error(value)  # "/data:ro": a destination cannot carry a mode
        source, target = arr
    elif len(arr) == 3:
        source, target, mode = arr
    else:
        raise _spec_error(value)
    if not valid_mode(mode):
        raise InvalidArgument(f"invalid mode: {mode}")
    if source.startswith("."):
        source = os.path.abspath(source)
    modes = mode.split(",") if mode else []
    kind = "bind" if source.startswith("/") else "volume"
    options: dict[str, str] = {"origin": "volume", "mode": mode}

    def fail(why: str) -> InvalidArgument:
        return InvalidArgument(f"{_spec_error(value)}: {_config_error(kind, why)}")

    propagation = next((m for m in modes if m in PROPAGATIONS), "")
    if kind == "volume" and propagation:
        raise fail("field BindOptions must not be specified")
    if kind == "bind" and "nocopy" in modes:
        raise fail("field VolumeOptions must not be specified")
    if target == "":
        raise fail("field Target must not be empty")
    problem = target_problem(target)
    if problem:
        raise fail(problem)
    if kind == "bind":
        options["propagation"] = propagation or DEFAULT_PROPAGATION
        options["create-source"] = "true"
        source = clean_path(source)
    elif source:
        validate_volume_name(source)
    if "nocopy" in modes:
        options["nocopy"] = "true"
    return Mount(kind, clean_path(target), source, "ro" in modes, options)


# -- --mount --------------------------------------------------------------------


def _parse_bool(key: str, val: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if val in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if val in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"invalid value for {key}: {val}")


def parse_mount_flag(value: str) -> Mount:
    """``--mount type=bind|volume|tmpfs,source=..,target=..[,readonly][,...]`` (CSV fields)."""
    try:
        return _parse_mount(value)
    except ValueError as err:
        raise InvalidArgument(f'invalid argument "{value}" for "--mount" flag: {err}') from None


def _parse_mount(value: str) -> Mount:
    import csv

    rows = list(csv.reader([value])) if value else []
    if not rows or not rows[0]:
        raise ValueError("EOF")
    kind, source, target, read_only = "volume", "", "", False
    families: set[str] = set()  # which type-specific option groups were used
    options: dict[str, str] = {"origin": "mount"}
    for field in rows[0]:
        key, has_value, val = field.partition("=")
        key = key.lower()
        if not has_value:
            if key not in (
                "readonly",
                "ro",
                "volume-nocopy",
                "bind-nonrecursive",
                "bind-create-src",
            ):
                raise ValueError(f"invalid field '{field}' must be a key=value pair")
            val = "true"
        if key == "type":
            kind = val.lower()
        elif key in ("source", "src"):
            source = os.path.abspath(val) if val.startswith(".") else val
        elif key in ("target", "dst", "destination"):
            target = val
        elif key in ("readonly", "ro"):
            read_only = _parse_bool(key, val)
        elif key == "consistency":
            options["consistency"] = val.lower()
        elif key == "bind-propagation":
            families.add("bind")
            options["propagation"] = val.lower()
        elif key in ("bind-nonrecursive", "bind-create-src"):
            families.add("bind")
            if _parse_bool(key, val):
                options["nonrecursive" if key == "bind-nonrecursive" else "create-source"] = "true"
        elif key == "bind-recursive":
            families.add("bind")
            if val not in ("enabled", "disabled", "writable", "readonly"):
                raise ValueError(
                    f'invalid value for {key}: {val} (must be "enabled", "disabled", '
                    '"writable", or "readonly")'
                )
            if val == "disabled":
                options["nonrecursive"] = "true"
        elif key == "volume-nocopy":
            families.add("volume")
            if _parse_bool(key, val):
                options["nocopy"] = "true"
        elif key == "volume-subpath":
            families.add("volume")
            options["subpath"] = val
        elif key in ("volume-label", "volume-opt"):
            families.add("volume")
            name, _, setting = val.partition("=")
            if name:
                options[("label." if key == "volume-label" else "opt.") + name] = setting
        elif key == "volume-driver":
            families.add("volume")
            options["driver"] = val
        elif key == "tmpfs-size":
            families.add("tmpfs")
            try:
                options["tmpfs-size"] = str(ram_in_bytes(val))
            except ValueError:
                raise ValueError(f"invalid value for {key}: {val}") from None
        elif key == "tmpfs-mode":
            families.add("tmpfs")
            if not re.fullmatch(r"[0-7]+", val) or int(val, 8) > 0xFFFFFFFF:
                raise ValueError(f"invalid value for {key}: {val}")
            options["tmpfs-mode"] = format(int(val, 8), "o")
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if kind == "":
        raise ValueError("type is required")
    if target == "":
        raise ValueError("target is required")
    for family in sorted(families):
        if family != kind:
            raise ValueError(f"cannot mix '{family}-*' options with mount type '{kind}'")
    return _validate_mount(Mount(kind, target, source, read_only, options))


def _validate_mount(mount: Mount) -> Mount:
    """The daemon-side checks of ``ParseMountSpec`` (bind sources must exist)."""
    kind, opts = mount.type, mount.options
    if kind not in ("bind", "volume", "tmpfs"):
        raise _config_error(kind, "mount type unknown")
    problem = target_problem(mount.target)
    if problem:
        raise _config_error(kind, problem)
    mount.target = clean_path(mount.target)
    if kind == "bind":
        if mount.source == "":
            raise _config_error(kind, "field Source must not be empty")
        propagation = opts.setdefault("propagation", DEFAULT_PROPAGATION)
        if propagation not in PROPAGATIONS:
            raise _config_error(kind, f"invalid propagation mode: {propagation}")
        if not mount.source.startswith("/"):
            raise _config_error(
                kind, f"invalid mount path: '{mount.source}' mount path must be absolute"
            )
        mount.source = clean_path(mount.source)
        if not os.path.lexists(mount.source) and opts.get("create-source") != "true":
            raise _config_error(kind, f"bind source path does not exist: {mount.source}")
    elif kind == "volume":
        subpath = opts.get("subpath")
        if subpath is not None:
            if not mount.source:
                raise _config_error(kind, "must not set Subpath when using anonymous volumes")
            if not _is_local(subpath):
                raise _config_error(kind, "subpath must be a relative path within the volume")
        if mount.source:
            validate_volume_name(mount.source)
    elif mount.source:
        raise _config_error(kind, "field Source must not be specified")
    return mount


def _is_local(path: str) -> bool:
    """Go's ``filepath.IsLocal``: relative, non-empty, never leaving its directory."""
    if path == "" or path.startswith("/"):
        return False
    cleaned = posixpath.normpath(path)
    return cleaned != ".." and not cleaned.startswith("../")


# -- --tmpfs --------------------------------------------------------------------


def check_tmpfs_data(data: str) -> None:
    """Reject what ``MergeTmpfsOptions`` would refuse when the container starts."""
    for option in data.split(",") if data else []:
        if option in TMPFS_FLAGS:
            continue
        key, has_value, val = option.partition("=")
        if not has_value or key not in TMPFS_DATA:
            raise InvalidArgument(f'invalid tmpfs option "{key}"')
        if key == "size" and not re.fullmatch(r"\d+[kKmMgGtTpPeE%]?", val):
            raise InvalidArgument(f'invalid tmpfs option "{option}": bad size')
        if key == "mode" and not re.fullmatch(r"[0-7]{1,4}", val):
            raise InvalidArgument(f'invalid tmpfs option "{option}": mode must be octal')


def parse_tmpfs_flag(value: str) -> Mount:
    """``--tmpfs PATH[:OPTIONS]``; OPTIONS are mount(8) tmpfs options (size, mode, exec, ...)."""
    target, _, data = value.partition(":")
    problem = target_problem(target)
    if problem:
        raise InvalidArgument(problem)
    check_tmpfs_data(data)
    return Mount("tmpfs", clean_path(target), "", False, {"origin": "tmpfs", "data": data})


# -- --volumes-from ---------------------------------------------------------------


def parse_volumes_from(value: str) -> tuple[str, str]:
    """``CONTAINER[:ro|rw]`` -> (container, mode); mode is "rw" when not given."""
    if value == "":
        raise InvalidArgument("volumes-from specification cannot be an empty string")
    ref, _, mode = value.partition(":")
    if mode == "":
        return ref, "rw"
    modes = mode.split(",")
    if not valid_mode(mode) or any(m in PROPAGATIONS or m in COPY_MODES for m in modes):
        raise InvalidArgument(f"invalid mode: {mode}")
    return ref, mode


# -- all storage flags of one container -------------------------------------------


def duplicate_error(target: str) -> InvalidArgument:
    return InvalidArgument(f"Duplicate mount point: {target}")


def parse_storage_flags(volumes: list[str], mounts: list[str], tmpfs: list[str]) -> list[Mount]:
    """Every ``-v``, ``--mount`` and ``--tmpfs`` of a container, checked together.

    Docker's precedence: two mounts at one destination are an error ("Duplicate
    mount point"), except that an anonymous ``-v /path`` yields to anything
    else there, repeated identical ``-v`` values count once and a later
    ``--tmpfs`` for a path replaces an earlier one.
    """
    taken: dict[str, Mount] = {}
    anonymous: dict[str, Mount] = {}
    seen_raw: set[str] = set()
    for raw in volumes:
        mount = parse_volume_flag(raw)
        if raw in seen_raw:
            continue
        seen_raw.add(raw)
        if not mount.source and mount.type == "volume":
            anonymous.setdefault(mount.target, mount)
            continue
        if mount.target in taken:
            raise duplicate_error(mount.target)
        taken[mount.target] = mount
    for raw in mounts:
        mount = parse_mount_flag(raw)
        if mount.target in taken:
            raise duplicate_error(mount.target)
        taken[mount.target] = mount
    flagged: dict[str, Mount] = {}
    for raw in tmpfs:
        mount = parse_tmpfs_flag(raw)
        if mount.target in taken:
            raise duplicate_error(mount.target)
        flagged[mount.target] = mount
    result = [*taken.values(), *flagged.values()]
    result += [m for t, m in anonymous.items() if t not in taken and t not in flagged]
    return result


def host_config_fields(mounts: list[Mount]) -> dict[str, object]:
    """Docker's inspect ``HostConfig.Binds``, ``.Tmpfs`` and ``.Mounts`` for these mounts."""
    binds: list[str] = []
    tmpfs: dict[str, str] = {}
    api: list[dict[str, object]] = []
    for m in mounts:
        origin = m.options.get("origin")
        if origin == "volume" and m.source:
            mode = m.options.get("mode", "")
            binds.append(f"{m.source}:{m.target}" + (f":{mode}" if mode else ""))
        elif origin == "tmpfs":
            tmpfs[m.target] = m.options.get("data", "")
        elif origin == "mount":
            item: dict[str, object] = {"Type": m.type, "Source": m.source, "Target": m.target}
            if m.read_only:
                item["ReadOnly"] = True
            if m.type == "bind" and m.options.get("propagation") not in (None, DEFAULT_PROPAGATION):
                item["BindOptions"] = {"Propagation": m.options["propagation"]}
            elif m.type == "volume" and m.options.get("nocopy") == "true":
                item["VolumeOptions"] = {"NoCopy": True}
            elif m.type == "tmpfs" and (m.options.get("tmpfs-size") or m.options.get("tmpfs-mode")):
                tmpfs_opts: dict[str, int] = {}
                if m.options.get("tmpfs-size"):
                    tmpfs_opts["SizeBytes"] = int(m.options["tmpfs-size"])
                if m.options.get("tmpfs-mode"):
                    tmpfs_opts["Mode"] = int(m.options["tmpfs-mode"], 8)
                item["TmpfsOptions"] = tmpfs_opts
            if not m.source:
                del item["Source"]
            api.append(item)
    return {"Binds": binds or None, "Tmpfs": tmpfs or None, "Mounts": api or None}
