"""The container's process: image config and ``ContainerSpec`` merged as Docker does.

Docker merges Entrypoint/Cmd/Env/WorkingDir/User of the image with the
``run`` flags and resolves the user through the *container's* /etc/passwd
and /etc/group. Those files are read inside the rootfs with every symlink
resolved relative to it, so an image cannot make us read host files.
"""

from __future__ import annotations

import os
import posixpath
import stat
from pathlib import Path
from typing import Any

from dockyard.containers.spec import ContainerSpec
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.records import field, record

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_MAX_SYMLINKS = 255
_MAX_ID = 2**31 - 1


@record
class ProcessSettings:
    """What runs in the container and as whom (``process`` of config.json)."""

    args: list[str]
    env: list[str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    user: str = ""  # as given ("" = root), for inspect and messages
    terminal: bool = False


@record
class _PasswdEntry:
    name: str
    uid: int
    gid: int
    home: str


@record
class _GroupEntry:
    name: str
    gid: int
    members: list[str]


def image_section(image_config: dict[str, Any]) -> dict[str, Any]:
    """The ``config`` object of an image config, accepting either the whole file or it."""
    inner = image_config.get("config")
    if isinstance(inner, dict):
        return inner
    if "config" in image_config or "rootfs" in image_config:
        return {}  # a whole image config without a config section
    return image_config


def resolve_process(
    spec: ContainerSpec,
    image_config: dict[str, Any],
    rootfs: Path,
    *,
    hostname: str | None = None,
) -> ProcessSettings:
    """Docker's merge of image config and spec into the container's process.

    ``hostname`` is the container's effective hostname for ``HOSTNAME``
    (default: ``spec.hostname``; ``spec.generate`` fills it in when empty).
    """
    image = image_section(image_config)
    args = merge_args(spec, image)
    cwd = _working_dir(spec, image)
    user = spec.user if spec.user else str(image.get("User") or "")
    uid, gid, groups, home = resolve_user(rootfs, user)
    env = merge_env(
        list(image.get("Env") or []),
        spec.env,
        hostname=hostname if hostname is not None else (spec.hostname or ""),
        tty=spec.tty,
    )
    if not any(e.startswith("HOME=") for e in env):
        env.append(f"HOME={home or '/'}")
    return ProcessSettings(
        args=args,
        env=env,
        cwd=cwd,
        uid=uid,
        gid=gid,
        additional_gids=groups,
        user=user,
        terminal=spec.tty,
    )


def merge_args(spec: ContainerSpec, image: dict[str, Any]) -> list[str]:
    """Entrypoint + Cmd; a given entrypoint (even ``""``) drops the image's Cmd."""
    if spec.entrypoint is not None:
        entrypoint = [a for a in spec.entrypoint] if spec.entrypoint != [""] else []
        cmd = list(spec.cmd or [])
    else:
        entrypoint = list(image.get("Entrypoint") or [])
        if entrypoint == [""]:
            entrypoint = []
        cmd = list(spec.cmd) if spec.cmd else list(image.get("Cmd") or [])
    args = entrypoint + cmd
    if not args:
        raise DockyardError("no command specified")
    return args


def expand_host_env(env: list[str], host: dict[str, str] | None = None) -> list[str]:
    """``-e NAME`` takes NAME's value from the caller's environment (kept bare if unset)."""
    host_env = os.environ if host is None else host
    out = []
    for entry in env:
        if "=" not in entry and entry in host_env:
            out.append(f"{entry}={host_env[entry]}")
        else:
            out.append(entry)
    return out


def replace_or_append(defaults: list[str], overrides: list[str]) -> list[str]:
    """Docker's ReplaceOrAppendEnvValues: override by key; a bare ``KEY`` unsets it."""
    result = list(defaults)
    index = {e.split("=", 1)[0]: i for i, e in enumerate(result)}
    removed: set[int] = set()
    for entry in overrides:
        key, sep, _ = entry.partition("=")
        if not sep:
            if key in index:
                removed.add(index[key])
            continue
        if key in index:
            i = index[key]
            result[i] = entry
            removed.discard(i)
        else:
            index[key] = len(result)
            result.append(entry)
    return [e for i, e in enumerate(result) if i not in removed]


def merge_env(image_env: list[str], spec_env: list[str], *, hostname: str, tty: bool) -> list[str]:
    """PATH, HOSTNAME, TERM defaults, then the image's Env, then the spec's."""
    base = [f"PATH={DEFAULT_PATH}", f"HOSTNAME={hostname}"]
    if tty:
        base.append("TERM=xterm")
    merged = replace_or_append(image_env, expand_host_env(spec_env))
    return replace_or_append(base, merged)


def _working_dir(spec: ContainerSpec, image: dict[str, Any]) -> str:
    if spec.working_dir:
        if not spec.working_dir.startswith("/"):
            raise InvalidArgument(
                f"the working directory '{spec.working_dir}' is invalid, "
                "it needs to be an absolute path"
            )
        return posixpath.normpath(spec.working_dir)
    image_dir = str(image.get("WorkingDir") or "")
    if image_dir:
        return posixpath.normpath(posixpath.join("/", image_dir))
    return "/"


# -- users and groups ---------------------------------------------------------


def resolve_user(rootfs: Path, user: str) -> tuple[int, int, list[int], str]:
    """``user[:group]`` -> (uid, gid, supplementary gids, home) from the rootfs files.

    Same rules as runc's/moby's GetExecUser: a numeric uid not in passwd is
    accepted with gid 0 and home "/"; supplementary groups only come from
    /etc/group membership when no group was given explicitly.
    """
    user_arg, _, group_arg = (user or "").partition(":")
    passwd = _parse_passwd(_read_in_root(rootfs, "/etc/passwd"))
    uid, gid, home, name = 0, 0, "/", ""
    if user_arg == "":
        user_arg = "0"
    num_uid = _as_id(user_arg)
    match = next(
        (p for p in passwd if (p.uid == num_uid if num_uid is not None else p.name == user_arg)),
        None,
    )
    if match is None and num_uid is None:
        raise DockyardError(f"unable to find user {user_arg}: no matching entries in passwd file")
    if match is not None:
        uid, gid, home, name = match.uid, match.gid, match.home or "/", match.name
    else:
        assert num_uid is not None
        uid = num_uid
    groups = _parse_group(_read_in_root(rootfs, "/etc/group"))
    extra: list[int] = []
    if group_arg:
        num_gid = _as_id(group_arg)
        found = next(
            (
                g
                for g in groups
                if (g.gid == num_gid if num_gid is not None else g.name == group_arg)
            ),
            None,
        )
        if found is not None:
            gid = found.gid
        elif num_gid is not None:
            gid = num_gid
        else:
            raise DockyardError(
                f"unable to find group {group_arg}: no matching entries in group file"
            )
    elif name:
        for g in groups:
            if name in g.members and g.gid not in extra:
                extra.append(g.gid)
    return uid, gid, extra, home


def _as_id(text: str) -> int | None:
    if not text.isdigit():
        return None
    value = int(text)
    if value > _MAX_ID:
        raise InvalidArgument(f"uid/gid {text} is out of range (at most {_MAX_ID})")
    return value


def _parse_passwd(text: str) -> list[_PasswdEntry]:
    entries = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 4 or not parts[2].isdigit() or not parts[3].isdigit():
            continue
        home = parts[5] if len(parts) > 5 else ""
        entries.append(_PasswdEntry(parts[0], int(parts[2]), int(parts[3]), home))
    return entries


def _parse_group(text: str) -> list[_GroupEntry]:
    entries = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 3 or not parts[2].isdigit():
            continue
        members = [m for m in (parts[3].split(",") if len(parts) > 3 else []) if m]
        entries.append(_GroupEntry(parts[0], int(parts[2]), members))
    return entries


def _read_in_root(rootfs: Path, path: str, limit: int = 4 * 1024 * 1024) -> str:
    """Read ``path`` as the container would see it; "" when absent or not a file."""
    from dockyard.fsutil import resolve_in_root

    try:
        host_path = resolve_in_root(rootfs, path)
        if not stat.S_ISREG(os.lstat(host_path).st_mode):
            return ""  # never open a device or FIFO an image put there
        fd = os.open(host_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except (OSError, InvalidArgument):
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(limit).decode("utf-8", "replace")
    finally:
        os.close(fd)
