"""Docker's container ``Config``: the image's config with the spec's choices merged in.

This is what ``inspect`` shows under ``Config`` and what the runtime turns
into the container's process (Entrypoint, Cmd, Env, WorkingDir, User, ...).
"""

from __future__ import annotations

from typing import Any

from dockyard.containers.spec import ContainerSpec, Healthcheck
from dockyard.runtime.process import DEFAULT_PATH, expand_host_env, replace_or_append


def merge_healthcheck(
    image_check: dict[str, Any] | None, spec_check: Healthcheck | None
) -> dict[str, Any] | None:
    """Flags override the image's HEALTHCHECK field by field, as Docker merges them."""
    if spec_check is None:
        return dict(image_check) if image_check else None
    merged = dict(image_check or {})
    if spec_check.test:
        merged["Test"] = list(spec_check.test)
    for key, value in (
        ("Interval", spec_check.interval),
        ("Timeout", spec_check.timeout),
        ("StartPeriod", spec_check.start_period),
        ("Retries", spec_check.retries),
    ):
        if value:
            merged[key] = value
    return merged or None


def container_config(
    spec: ContainerSpec, image_config: dict[str, Any], hostname: str
) -> dict[str, Any]:
    """Docker's container Config for ``inspect`` (and the source of the process)."""
    image = image_config.get("config") or {}
    entrypoint = image.get("Entrypoint")
    cmd = image.get("Cmd")
    if spec.entrypoint is not None:
        entrypoint = spec.entrypoint or None
        cmd = None  # a new entrypoint drops the image's Cmd
    if spec.cmd is not None and spec.cmd:
        cmd = spec.cmd
    image_env = list(image.get("Env") or [])
    if not any(e.startswith("PATH=") for e in image_env):
        image_env.insert(0, f"PATH={DEFAULT_PATH}")
    labels = dict(image.get("Labels") or {})
    labels.update(spec.labels)
    exposed = dict(image.get("ExposedPorts") or {})
    for port in spec.ports:
        exposed.setdefault(f"{port.container_port}/{port.protocol}", {})
    for key in spec.expose:
        exposed.setdefault(key, {})
    volumes = dict(image.get("Volumes") or {})
    for mount in spec.mounts:
        if mount.type == "volume" and not mount.source:
            volumes.setdefault(mount.target, {})
    config: dict[str, Any] = {
        "Hostname": hostname,
        "Domainname": spec.domainname or "",
        "User": spec.user if spec.user is not None else image.get("User", ""),
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "ExposedPorts": exposed or None,
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StdinOnce": False,
        "Env": replace_or_append(image_env, expand_host_env(spec.env)),
        "Cmd": cmd,
        "Healthcheck": merge_healthcheck(image.get("Healthcheck"), spec.healthcheck),
        "Image": spec.image,
        "Volumes": volumes or None,
        "WorkingDir": spec.working_dir
        if spec.working_dir is not None
        else image.get("WorkingDir", ""),
        "Entrypoint": entrypoint,
        "OnBuild": image.get("OnBuild"),
        "Labels": labels,
    }
    stop_signal = spec.stop_signal or image.get("StopSignal")
    if stop_signal:
        config["StopSignal"] = stop_signal
    if spec.stop_timeout is not None:
        config["StopTimeout"] = spec.stop_timeout
    if config["ExposedPorts"] is None:
        del config["ExposedPorts"]
    if config["Healthcheck"] is None:
        del config["Healthcheck"]
    return config
