"""How containers look to users: Docker's ``inspect`` JSON and ``ps`` rows."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from dockyard.containers.state import ZERO_TIME, parse_time

if TYPE_CHECKING:
    from dockyard.config import Paths
    from dockyard.containers.manager import Container


def has_healthcheck(container: Container) -> bool:
    """An image or flag healthcheck that is not disabled (``NONE``)."""
    test = (container.config.get("Healthcheck") or {}).get("Test") or ["NONE"]
    return bool(test[0] != "NONE")


def command_line(container: Container) -> list[str]:
    """Entrypoint + Cmd as the container runs them."""
    config = container.config
    if container.spec.init:
        return [
            "/sbin/docker-init",
            "--",
            *(config.get("Entrypoint") or []),
            *(config.get("Cmd") or []),
        ]
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def _host_config(container: Container) -> dict[str, Any]:
    from dockyard.runtime.spec import MASKED_PATHS, READONLY_PATHS

    spec = container.spec
    res = spec.resources
    ports: dict[str, list[dict[str, str]]] = {}
    for port in spec.ports:
        ports.setdefault(f"{port.container_port}/{port.protocol}", []).append(
            {"HostIp": port.host_ip, "HostPort": str(port.host_port) if port.host_port else ""}
        )
    return {
        "ContainerIDFile": "",
        "LogConfig": {
            "Type": spec.log_config.type,
            "Config": {
                "max-size": str(spec.log_config.max_size),
                "max-file": str(spec.log_config.max_file),
            },
        },
        "NetworkMode": spec.network_mode,
        "PortBindings": ports,
        "RestartPolicy": {
            "Name": spec.restart_policy.name,
            "MaximumRetryCount": spec.restart_policy.max_retries,
        },
        "AutoRemove": spec.auto_remove,
        "VolumeDriver": "",
        "VolumesFrom": spec.volumes_from or None,
        "CapAdd": spec.cap_add or None,
        "CapDrop": spec.cap_drop or None,
        "Dns": spec.dns,
        "DnsOptions": spec.dns_options,
        "DnsSearch": spec.dns_search,
        "ExtraHosts": spec.extra_hosts or None,
        "IpcMode": "private",
        "PidMode": "",
        "Privileged": spec.privileged,
        "PublishAllPorts": spec.publish_all,
        "ReadonlyRootfs": spec.read_only,
        "SecurityOpt": spec.security_opt or None,
        "UTSMode": "",
        "ShmSize": res.shm_size or 67108864,
        "Runtime": "runc",
        "Memory": res.memory,
        "MemorySwap": res.memory_swap,
        "NanoCpus": res.nano_cpus,
        "CpuShares": res.cpu_shares,
        "PidsLimit": res.pids_limit or None,
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in spec.ulimits] or None,
        "Init": spec.init or None,
        "MaskedPaths": None if spec.privileged else list(MASKED_PATHS),
        "ReadonlyPaths": None if spec.privileged else list(READONLY_PATHS),
    }


def inspect(
    container: Container,
    paths: Paths,
    image_layers: list[str] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Docker's ``docker container inspect`` object for one container."""
    state = container.state
    args = command_line(container)
    cdir = paths.container_dir(container.id)
    status = state.status if state.status != "removing" else "removing"
    state_json: dict[str, Any] = {
        "Status": status,
        "Running": state.status in ("running", "paused", "restarting"),
        "Paused": state.status == "paused",
        "Restarting": state.status == "restarting",
        "OOMKilled": state.oom_killed,
        "Dead": state.status == "dead",
        "Pid": state.pid if state.status in ("running", "paused") else 0,
        "ExitCode": state.exit_code,
        "Error": state.error,
        "StartedAt": state.started_at,
        "FinishedAt": state.finished_at,
    }
    if has_healthcheck(container):
        state_json["Health"] = state.health or {"Status": "starting", "FailingStreak": 0, "Log": []}
    result: dict[str, Any] = {
        "Id": container.id,
        "Created": container.created,
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": state_json,
        "Image": container.image_id,
        "ResolvConfPath": str(cdir / "resolv.conf"),
        "HostnamePath": str(cdir / "hostname"),
        "HostsPath": str(cdir / "hosts"),
        "LogPath": str(cdir / f"{container.id}-json.log"),
        "Name": "/" + container.name,
        "RestartCount": state.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": _host_config(container),
        "GraphDriver": {
            "Data": {
                "LowerDir": ":".join(image_layers or []) or None,
                "MergedDir": str(cdir / "merged"),
                "UpperDir": str(cdir / "upper"),
                "WorkDir": str(cdir / "work"),
            },
            "Name": "overlay2",
        },
        "Mounts": [],
        "Config": container.config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": "",
            "Ports": {},
            "HairpinMode": False,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "MacAddress": "",
            "Networks": {},
        },
    }
    if extra:
        result.update(extra)
    from dockyard.volumes.parse import host_config_fields

    result["HostConfig"].update(host_config_fields(container.spec.mounts))
    return result


def status_text(container: Container, now: float | None = None) -> str:
    """The STATUS column of ``docker ps``."""
    from dockyard.cli.formatting import human_duration

    now = time.time() if now is None else now
    state = container.state
    if state.status in ("running", "paused"):
        text = "Up " + human_duration(now - parse_time(state.started_at))
        if state.status == "paused":
            return text + " (Paused)"
        health = (state.health or {}).get("Status")
        if has_healthcheck(container):
            health = health or "starting"
            text += " (health: starting)" if health == "starting" else f" ({health})"
        return text
    if state.status == "restarting":
        return (
            f"Restarting ({state.exit_code}) "
            + human_duration(now - parse_time(state.finished_at))
            + " ago"
        )
    if state.status == "removing":
        return "Removal In Progress"
    if state.status == "dead":
        return "Dead"
    if state.status == "exited" and state.finished_at != ZERO_TIME:
        return (
            f"Exited ({state.exit_code}) "
            + human_duration(now - parse_time(state.finished_at))
            + " ago"
        )
    if state.status == "exited":
        return f"Exited ({state.exit_code})"
    return "Created"


def ellipsis(text: str, width: int) -> str:
    """Docker's stringutils.Ellipsis: cut to width with a trailing '…'."""
    if len(text) <= width:
        return text
    return text[: width - 1] + "…"
