"""The normalized container spec, like Podman's specgen.

``run``/``create`` flags, Compose services and Engine API requests all turn
into a ``ContainerSpec``; it is the only thing that becomes an OCI
config.json (see ``dockyard.runtime.spec``). It records what the user asked
for; image defaults (Entrypoint, Cmd, Env, ...) are merged in when the
runtime spec is generated, exactly as Docker does.
"""

from __future__ import annotations

from typing import Any

from dockyard import records
from dockyard.records import field, record


@record
class RestartPolicy:
    name: str = "no"  # no | always | unless-stopped | on-failure
    max_retries: int = 0


@record
class Healthcheck:
    """Docker's HEALTHCHECK: test is ["CMD", ...], ["CMD-SHELL", "..."] or ["NONE"]."""

    test: list[str] = field(default_factory=list)
    interval: int = 0  # nanoseconds; 0 means Docker's default (30s)
    timeout: int = 0  # nanoseconds; 0 means 30s
    retries: int = 0  # 0 means 3
    start_period: int = 0  # nanoseconds


@record
class Ulimit:
    name: str  # "nofile", "nproc", ... (without RLIMIT_)
    soft: int
    hard: int


@record
class Mount:
    """A bind mount, named/anonymous volume or tmpfs, as ``--mount`` describes it."""

    type: str  # bind | volume | tmpfs
    target: str
    source: str = ""  # host path (bind) or volume name (volume); "" for anonymous
    read_only: bool = False
    options: dict[str, str] = field(default_factory=dict)  # propagation, tmpfs size/mode, nocopy


@record
class PortBinding:
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0  # 0: choose a free port
    host_port_end: int = 0  # with a range of host ports for one container port


@record
class Resources:
    memory: int = 0  # bytes, 0 = unlimited
    memory_swap: int = 0  # bytes, -1 = unlimited swap, 0 = unset
    nano_cpus: int = 0  # --cpus x 1e9
    cpu_shares: int = 0
    pids_limit: int = 0  # 0 = unlimited
    shm_size: int = 0  # bytes, 0 = Docker's default 64 MiB


@record
class LogConfig:
    type: str = "json-file"
    max_size: int = 10 * 1024 * 1024  # bounded by default (Docker: unbounded)
    max_file: int = 3


@record
class ContainerSpec:
    """What a container should be; everything optional falls back to the image."""

    image: str  # as the user named it
    name: str | None = None
    entrypoint: list[str] | None = None  # None: image's; []: cleared (--entrypoint "")
    cmd: list[str] | None = None  # None: image's
    env: list[str] = field(default_factory=list)  # "K=V", merged over the image's
    working_dir: str | None = None
    user: str | None = None
    hostname: str | None = None
    domainname: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    tty: bool = False
    stdin_open: bool = False  # -i
    auto_remove: bool = False  # --rm
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    stop_signal: str | None = None
    stop_timeout: int | None = None  # seconds
    read_only: bool = False
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    privileged: bool = False
    init: bool = False
    security_opt: list[str] = field(default_factory=list)
    resources: Resources = field(default_factory=Resources)
    ulimits: list[Ulimit] = field(default_factory=list)
    log_config: LogConfig = field(default_factory=LogConfig)
    healthcheck: Healthcheck | None = None  # None: image's; test ["NONE"] disables
    # Networking and storage (filled in by the network and volume subsystems)
    network_mode: str = "bridge"  # bridge | host | none | container:ID | NAME
    network_aliases: list[str] = field(default_factory=list)
    ip_address: str | None = None
    ports: list[PortBinding] = field(default_factory=list)
    publish_all: bool = False
    expose: list[str] = field(default_factory=list)  # "80/tcp" keys from --expose
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)  # "name:ip"
    mounts: list[Mount] = field(default_factory=list)
    volumes_from: list[str] = field(default_factory=list)
    # the image's VOLUMEs: "anonymous" volumes, as Docker; "ignore" (Podman's
    # --image-volume ignore) for build steps, whose writes there stay in the layer
    image_volumes: str = "anonymous"
    annotations: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return records.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContainerSpec:
        data = dict(data)
        nested = {
            "restart_policy": RestartPolicy,
            "resources": Resources,
            "log_config": LogConfig,
        }
        for key, kind in nested.items():
            if isinstance(data.get(key), dict):
                data[key] = kind(**data[key])
        if isinstance(data.get("healthcheck"), dict):
            data["healthcheck"] = Healthcheck(**data["healthcheck"])
        data["ulimits"] = [Ulimit(**u) for u in data.get("ulimits", [])]
        data["mounts"] = [Mount(**m) for m in data.get("mounts", [])]
        data["ports"] = [PortBinding(**p) for p in data.get("ports", [])]
        known = {f.name for f in records.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})
