"""ContainerSpec + image config -> OCI runtime-spec ``config.json`` with Docker's defaults.

Everything a container gets without asking for it is Docker's: the same
namespaces, capability set, masked and read-only /proc and /sys paths,
mounts, device cgroup allowlist and seccomp policy, so programs behave as
under ``docker run``. Generation runs on every start: constant pieces are
built at import, nothing here starts a subprocess, and host state
(/proc/self/status, rlimits) is read only when a flag needs it.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import stat
from functools import lru_cache
from pathlib import Path
from typing import Any

from dockyard.containers.spec import ContainerSpec, Resources, Ulimit
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.runtime import seccomp
from dockyard.runtime.process import ProcessSettings
from dockyard.runtime.seccomp import (  # re-exported: security options live with seccomp
    SecurityOptions,
    host_has_apparmor,
    parse_security_opts,
)
from dockyard.runtime.seccomp import normalize_security_opts as normalize_security_opts

OCI_VERSION = "1.0.2"
INIT_PATH = "/sbin/docker-init"  # where Docker puts its init in the container
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init")
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
CPU_PERIOD = 100_000
MIN_MEMORY = 6 * 1024 * 1024
RLIM_INFINITY_OCI = 2**64 - 1

# Linux capability numbers (include/uapi/linux/capability.h).
CAPABILITIES: tuple[str, ...] = tuple(
    "CAP_" + name
    for name in (
        "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP"
        " LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK"
        " IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN"
        " SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE"
        " AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND"
        " AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE"
    ).split()
)
_CAP_NUMBER = {name: i for i, name in enumerate(CAPABILITIES)}
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

MASKED_PATHS: tuple[str, ...] = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
READONLY_PATHS: tuple[str, ...] = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

_NOSUID_NOEXEC_NODEV = ["nosuid", "noexec", "nodev"]
_DEFAULT_MOUNTS: tuple[dict[str, Any], ...] = (
    {"destination": "/proc", "type": "proc", "source": "proc", "options": _NOSUID_NOEXEC_NODEV},
    {
        "destination": "/dev",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    {
        "destination": "/dev/pts",
        "type": "devpts",
        "source": "devpts",
        "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    {
        "destination": "/sys",
        "type": "sysfs",
        "source": "sysfs",
        "options": ["ro", *_NOSUID_NOEXEC_NODEV],
    },
    {
        "destination": "/sys/fs/cgroup",
        "type": "cgroup",
        "source": "cgroup",
        "options": ["ro", *_NOSUID_NOEXEC_NODEV],
    },
    {
        "destination": "/dev/mqueue",
        "type": "mqueue",
        "source": "mqueue",
        "options": _NOSUID_NOEXEC_NODEV,
    },
)


def _dev(kind: str, major: int, minor: int, allow: bool = True) -> dict[str, Any]:
    return {"allow": allow, "type": kind, "major": major, "minor": minor, "access": "rwm"}


# Docker's device cgroup rules; runc appends its own defaults (mknod of any
# device, /dev/pts/*, /dev/ptmx, ...) after them.
_DEVICE_RULES: tuple[dict[str, Any], ...] = (
    {"allow": False, "access": "rwm"},
    _dev("c", 1, 5),  # /dev/zero
    _dev("c", 1, 3),  # /dev/null
    _dev("c", 1, 9),  # /dev/urandom
    _dev("c", 1, 8),  # /dev/random
    _dev("c", 5, 0),  # /dev/tty
    _dev("c", 5, 1),  # /dev/console
    _dev("c", 10, 229, allow=False),  # /dev/fuse
)

# Docker relaxes these in every private network namespace.
_NETNS_SYSCTLS = {
    "net.ipv4.ip_unprivileged_port_start": "0",
    "net.ipv4.ping_group_range": "0 2147483647",
}

_RLIMITS = {
    "cpu": "RLIMIT_CPU",
    "fsize": "RLIMIT_FSIZE",
    "data": "RLIMIT_DATA",
    "stack": "RLIMIT_STACK",
    "core": "RLIMIT_CORE",
    "rss": "RLIMIT_RSS",
    "nproc": "RLIMIT_NPROC",
    "nofile": "RLIMIT_NOFILE",
    "memlock": "RLIMIT_MEMLOCK",
    "as": "RLIMIT_AS",
    "locks": "RLIMIT_LOCKS",
    "sigpending": "RLIMIT_SIGPENDING",
    "msgqueue": "RLIMIT_MSGQUEUE",
    "nice": "RLIMIT_NICE",
    "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME",
}
_RLIMIT_NUMBER = {name: i for i, name in enumerate(_RLIMITS)}  # Linux order 0..15

_CGROUP_V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")


# -- capabilities -------------------------------------------------------------


def normalize_capability(name: str) -> str:
    """``net_admin``/``CAP_NET_ADMIN``/``ALL`` -> canonical name; InvalidArgument if unknown."""
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    if not upper.startswith("CAP_"):
        upper = "CAP_" + upper
    if upper not in _CAP_NUMBER:
        raise InvalidArgument(f'unknown capability: "{upper}"')
    return upper


def _status_mask(field_name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1], 16)
    return 0


def host_bounding_set() -> list[str]:
    """The capabilities dockyard itself may pass on (its own bounding set)."""
    mask = _status_mask("CapBnd")
    return [name for i, name in enumerate(CAPABILITIES) if mask >> i & 1]


def capabilities(cap_add: list[str], cap_drop: list[str], privileged: bool) -> list[str]:
    """Docker's TweakCapabilities, limited to what this host lets us grant."""
    adds = [normalize_capability(c) for c in cap_add]
    drops = [normalize_capability(c) for c in cap_drop]
    if privileged:
        return host_bounding_set()
    if not adds and not drops:
        return list(DEFAULT_CAPABILITIES)
    if "ALL" in adds:
        result = [c for c in host_bounding_set() if c not in drops]
    else:
        if "ALL" in drops:
            result = [c for c in adds if c != "ALL"]
        else:
            result = [c for c in DEFAULT_CAPABILITIES if c not in drops] + adds
        extra = [c for c in result if c not in DEFAULT_CAPABILITIES]
        if extra:
            available = set(host_bounding_set())
            missing = [c for c in extra if c not in available]
            if missing:
                raise InvalidArgument(
                    f"cannot add capability {missing[0]}: dockyard itself does not hold it "
                    "(it is not in this host's bounding set)"
                )
    return sorted(set(result), key=_CAP_NUMBER.__getitem__)


# -- mounts, devices, resources, rlimits -----------------------------------------


def _mounts(
    spec: ContainerSpec, sec: SecurityOptions, extra: list[dict[str, Any]], cgroupns: bool
) -> list[dict[str, Any]]:
    """Docker's default mounts minus those a caller mount replaces, then the caller's."""
    shm_size = spec.resources.shm_size or DEFAULT_SHM_SIZE
    defaults = [*_DEFAULT_MOUNTS]
    defaults.append(
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": [*_NOSUID_NOEXEC_NODEV, "mode=1777", f"size={shm_size}"],
        }
    )
    targets = {m.get("destination", "").rstrip("/") or "/" for m in extra}
    over_dev = "/dev" in targets
    out = []
    for mount in defaults:
        dest = mount["destination"]
        if dest in targets or (over_dev and dest.startswith("/dev/")):
            continue
        options = list(mount["options"])
        if "ro" in options and (
            (dest == "/sys" and spec.privileged)
            or (dest == "/sys/fs/cgroup" and cgroupns and (spec.privileged or sec.writable_cgroups))
        ):
            options.remove("ro")
        out.append({**mount, "options": options})
    ordered = sorted(
        extra, key=lambda m: len([p for p in m.get("destination", "").split("/") if p])
    )
    out.extend({**m, "options": list(m.get("options", []))} for m in ordered)
    return out


def _host_devices() -> list[dict[str, Any]]:
    """Every device node under /dev (for --privileged), skipping what runc skips."""
    skip_dirs = {"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"}
    found: list[dict[str, Any]] = []
    stack = ["/dev"]
    while stack:
        directory = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode):
                if entry.name not in skip_dirs:
                    stack.append(entry.path)
                continue
            if entry.path == "/dev/console":
                continue
            if stat.S_ISCHR(st.st_mode):
                kind = "c"
            elif stat.S_ISBLK(st.st_mode):
                kind = "b"
            else:
                continue
            found.append(
                {
                    "path": entry.path,
                    "type": kind,
                    "major": os.major(st.st_rdev),
                    "minor": os.minor(st.st_rdev),
                    "fileMode": stat.S_IMODE(st.st_mode),
                    "uid": st.st_uid,
                    "gid": st.st_gid,
                }
            )
    return sorted(found, key=lambda d: d["path"])


@lru_cache(maxsize=1)
def host_supports_swap_limit() -> bool:
    """Whether the memory cgroup can limit swap (v1 memsw files / v2 memory.swap.max)."""
    if not _CGROUP_V2:
        return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
    try:
        with open("/proc/self/cgroup") as f:
            own = next((ln.split(":", 2)[2].strip() for ln in f if ln.startswith("0::")), "/")
    except OSError:
        own = "/"
    for group in (own, "/system.slice", "/user.slice", "/init.scope"):
        if group != "/" and os.path.exists(f"/sys/fs/cgroup{group}/memory.swap.max"):
            return True
    return False


def linux_resources(res: Resources, privileged: bool) -> dict[str, Any]:
    """The ``linux.resources`` of the OCI config (also what ``runc update`` takes)."""
    out: dict[str, Any] = {}
    if privileged:
        out["devices"] = [{"allow": True, "access": "rwm"}]
    else:
        out["devices"] = [dict(rule) for rule in _DEVICE_RULES]
    memory: dict[str, Any] = {}
    if res.memory < 0:
        raise InvalidArgument("invalid memory limit: it must not be negative")
    if 0 < res.memory < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if res.memory:
        memory["limit"] = res.memory
    if res.memory_swap > 0 and not res.memory:
        raise InvalidArgument(
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        )
    if res.memory_swap > 0 and res.memory_swap < res.memory:
        raise InvalidArgument(
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        )
    if res.memory and res.memory_swap != 0:
        if host_supports_swap_limit():
            memory["swap"] = -1 if res.memory_swap < 0 else res.memory_swap
        else:
            import sys

            print(
                "WARNING: Your kernel does not support swap limit capabilities or the cgroup "
                "is not mounted. Memory limited without swap.",
                file=sys.stderr,
            )
    elif res.memory and host_supports_swap_limit():
        memory["swap"] = 2 * res.memory  # Docker's default: as much swap as memory
    if memory:
        out["memory"] = memory
    cpu: dict[str, Any] = {}
    if res.nano_cpus:
        ncpu = os.cpu_count() or 1
        if res.nano_cpus < 0 or res.nano_cpus > ncpu * 10**9:
            raise InvalidArgument(
                f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available"
            )
        cpu["quota"] = max(1000, res.nano_cpus * CPU_PERIOD // 10**9)
        cpu["period"] = CPU_PERIOD
    if res.cpu_shares:
        if res.cpu_shares < 0:
            raise InvalidArgument(f"invalid CPU shares: {res.cpu_shares}")
        cpu["shares"] = res.cpu_shares
    if cpu:
        out["cpu"] = cpu
    if res.pids_limit > 0:
        out["pids"] = {"limit": res.pids_limit}
    return out


def _has_cap(cap: str) -> bool:
    return bool(_status_mask("CapEff") >> _CAP_NUMBER[cap] & 1)


def rlimits(ulimits: list[Ulimit]) -> list[dict[str, Any]]:
    """OCI rlimits; refuses limits this host cannot grant before the runtime fails on them."""
    out: dict[str, dict[str, Any]] = {}
    for ulimit in ulimits:
        name = ulimit.name.lower().removeprefix("rlimit_")
        if name not in _RLIMITS:
            raise InvalidArgument(f"invalid ulimit type: {ulimit.name}")
        soft = RLIM_INFINITY_OCI if ulimit.soft < 0 else ulimit.soft
        hard = RLIM_INFINITY_OCI if ulimit.hard < 0 else ulimit.hard
        if soft > hard:
            raise InvalidArgument(
                f"ulimit soft limit must be less than or equal to hard limit: {ulimit.soft} > {ulimit.hard}"
            )
        _, host_hard = resource.getrlimit(_RLIMIT_NUMBER[name])
        host = RLIM_INFINITY_OCI if host_hard == resource.RLIM_INFINITY else host_hard
        if hard > host and not _has_cap("CAP_SYS_RESOURCE"):
            shown = "unlimited" if hard == RLIM_INFINITY_OCI else str(hard)
            raise InvalidArgument(
                f"ulimit {name}: hard limit {shown} exceeds this host's hard limit of {host}, "
                "and dockyard lacks CAP_SYS_RESOURCE to raise it; use a value <= "
                f"{host} (e.g. --ulimit {name}={min(soft, host)}:{host})"
            )
        out[name] = {"type": _RLIMITS[name], "hard": hard, "soft": soft}
    return list(out.values())


def find_init_binary() -> str:
    """The static init for ``--init`` (Debian's tini-static, as Docker's docker-init)."""
    for path in INIT_BINARIES:
        if os.access(path, os.X_OK):
            return path
    raise DockyardError(
        "--init needs a static init binary, none found at "
        f"{', '.join(INIT_BINARIES)}: install it with `apt-get install tini`"
    )


def _oom_score_adj() -> int:
    """Docker's 0, unless we run with a higher score we may not lower."""
    try:
        with open("/proc/self/oom_score_adj") as f:
            current = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    return max(current, 0)


def _propagation(mounts: list[dict[str, Any]]) -> str | None:
    options = {o for m in mounts for o in m.get("options", [])}
    if options & {"shared", "rshared"}:
        return "shared"
    if options & {"slave", "rslave"}:
        return "rslave"
    return None


# -- the config ---------------------------------------------------------------


def generate(
    spec: ContainerSpec,
    image_config: dict[str, Any],
    *,
    container_id: str,
    rootfs: Path,
    process: ProcessSettings,
    hostname: str,
    extra_mounts: list[dict[str, Any]] | None = None,
    netns_path: str | None = None,
    cgroups_path: str | None = None,
    init_binary: str | None = None,
) -> dict[str, Any]:
    """The OCI config.json for this container (ociVersion 1.0.2)."""
    del image_config  # merged into ``process`` by resolve_process
    extra = list(extra_mounts or [])
    sec = parse_security_opts(spec.security_opt)
    caps = capabilities(spec.cap_add, spec.cap_drop, spec.privileged)

    args = list(process.args)
    if spec.init:
        init = init_binary or find_init_binary()
        extra.append(
            {"destination": INIT_PATH, "type": "bind", "source": init, "options": ["bind", "ro"]}
        )
        args = [INIT_PATH, "--", *args]
    env = [f"HOSTNAME={hostname}" if e == "HOSTNAME=" else e for e in process.env]

    user: dict[str, Any] = {"uid": process.uid, "gid": process.gid}
    if process.additional_gids:
        user["additionalGids"] = list(process.additional_gids)
    # Like Docker: a non-root user starts without effective/permitted capabilities.
    cap_set: dict[str, list[str]] = {"bounding": caps}
    if process.uid == 0:
        cap_set.update(effective=list(caps), permitted=list(caps))
    cap_set.update(inheritable=[], ambient=[])
    proc: dict[str, Any] = {
        "terminal": process.terminal,
        "user": user,
        "args": args,
        "env": env,
        "cwd": process.cwd or "/",
        "capabilities": cap_set,
        "noNewPrivileges": sec.no_new_privileges,
        "oomScoreAdj": _oom_score_adj(),
    }
    limits = rlimits(spec.ulimits)
    if limits:
        proc["rlimits"] = limits
    if (
        sec.apparmor
        and sec.apparmor != "unconfined"
        and host_has_apparmor()
        and not spec.privileged
    ):
        proc["apparmorProfile"] = sec.apparmor

    host_net = spec.network_mode == "host"
    namespaces: list[dict[str, Any]] = [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
    ]
    if not host_net:
        namespaces.append(
            {"type": "network", "path": netns_path} if netns_path else {"type": "network"}
        )
    if _CGROUP_V2:
        namespaces.append({"type": "cgroup"})

    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "resources": linux_resources(spec.resources, spec.privileged),
        "cgroupsPath": cgroups_path or f"/dockyard/{container_id}",
    }
    if not host_net:
        linux["sysctl"] = dict(_NETNS_SYSCTLS)
    if not spec.privileged and not sec.systempaths_unconfined:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    if spec.privileged:
        linux["devices"] = _host_devices()
    profile = seccomp.seccomp_section(sec.seccomp, caps, privileged=spec.privileged)
    if profile is not None:
        linux["seccomp"] = profile

    mounts = _mounts(spec, sec, extra, _CGROUP_V2)
    propagation = _propagation(extra)
    if propagation:
        linux["rootfsPropagation"] = propagation

    config: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": proc,
        "root": {"path": os.fspath(rootfs), "readonly": bool(spec.read_only)},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if spec.domainname:
        config["domainname"] = spec.domainname
    if spec.annotations:
        config["annotations"] = dict(spec.annotations)
    return config


def write_bundle(bundle_dir: Path, config: dict[str, Any]) -> None:
    """Write ``config.json`` atomically (mode 0600: the env may hold secrets)."""
    bundle_dir.mkdir(parents=True, exist_ok=True)
    tmp = bundle_dir / f".config.{os.getpid()}.json"
    try:
        os.unlink(tmp)  # left by a killed command that had this PID
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(config))  # dumps, not dump: only dumps uses the C encoder
        os.replace(tmp, bundle_dir / "config.json")
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError as err:
            if err.errno != errno.ENOENT:
                raise
        raise
