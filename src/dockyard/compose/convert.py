"""A normalized Compose service turned into the engine's ContainerSpec.

Names and labels follow Compose: containers ``PROJECT-SERVICE-N`` (one-off
``PROJECT-SERVICE-run-<hex>``), networks and volumes ``PROJECT_KEY``, and
the ``com.docker.compose.*`` labels that ``compose ps``/``down`` and Docker
tools use to find a project's resources.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from dockyard.compose.model import COMPOSE_VERSION, Project, config_hash
from dockyard.containers.spec import (
    ContainerSpec,
    Healthcheck,
    LogConfig,
    Mount,
    PortBinding,
    Resources,
    Ulimit,
)
from dockyard.errors import InvalidArgument
from dockyard.records import field, record

L_PROJECT = "com.docker.compose.project"
L_SERVICE = "com.docker.compose.service"
L_NUMBER = "com.docker.compose.container-number"
L_ONEOFF = "com.docker.compose.oneoff"
L_HASH = "com.docker.compose.config-hash"
L_WORKING_DIR = "com.docker.compose.project.working_dir"
L_CONFIG_FILES = "com.docker.compose.project.config_files"
L_ENV_FILE = "com.docker.compose.project.environment_file"
L_DEPENDS_ON = "com.docker.compose.depends_on"
L_IMAGE = "com.docker.compose.image"
L_VERSION = "com.docker.compose.version"
L_NETWORK = "com.docker.compose.network"
L_VOLUME = "com.docker.compose.volume"
L_SLUG = "com.docker.compose.slug"
L_REPLACE = "com.docker.compose.replace"


@record
class ExtraNetwork:
    """A network to connect after create (the first one is the spec's network_mode)."""

    name: str
    aliases: list[str] = field(default_factory=list)
    ipv4_address: str | None = None


def _duration_ns(value: Any) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, int | float):
        return int(value * 1e9)
    from dockyard.cli.formatting import parse_duration

    try:
        return int(parse_duration(str(value)) * 1e9)
    except (ValueError, InvalidArgument):
        raise InvalidArgument(f"invalid duration: {value!r}") from None


def _size(value: Any) -> int:
    if value in (None, ""):
        return 0
    if isinstance(value, int | float):
        return int(value)
    from dockyard.volumes.parse import ram_in_bytes

    try:
        return ram_in_bytes(str(value))
    except ValueError:
        raise InvalidArgument(f"invalid size: {value!r}") from None


def depends_on_label(project: Project, service: str) -> str:
    deps = project.services[service].get("depends_on") or {}
    return ",".join(
        f"{name}:{d.get('condition', 'service_started')}:{str(d.get('restart', False)).lower()}"
        for name, d in deps.items()
    )


def project_labels(project: Project) -> dict[str, str]:
    labels = {
        L_PROJECT: project.name,
        L_WORKING_DIR: project.working_dir,
        L_CONFIG_FILES: ",".join(project.config_files),
        L_VERSION: COMPOSE_VERSION,
    }
    if project.env_files:
        labels[L_ENV_FILE] = ",".join(project.env_files)
    return labels


def service_networks(project: Project, service: str) -> list[tuple[str, dict[str, Any]]]:
    """(network key, settings) in Compose's order: priority first, then name."""
    nets = project.services[service].get("networks") or {}
    items = [(k, dict(v or {})) for k, v in nets.items()]
    items.sort(key=lambda kv: (-float(kv[1].get("priority") or 0), kv[0]))
    return items


def container_spec(
    project: Project,
    service: str,
    number: int,
    *,
    image_id: str,
    oneoff: bool = False,
    name: str | None = None,
    resolve_container: Any = None,
    state_dir: Path | None = None,
) -> tuple[ContainerSpec, list[ExtraNetwork]]:
    """The spec of container ``number`` of ``service``, and the networks to add.

    ``resolve_container(service)`` names the container that ``network_mode:
    service:X`` and ``volumes_from: X`` refer to; ``state_dir`` is where
    secrets and configs given as content or environment are written.
    """
    svc = project.services[service]
    image = project.image_name(service)
    labels = dict(svc.get("labels") or {})
    labels.update(project_labels(project))
    labels.update(
        {
            L_SERVICE: service,
            L_NUMBER: str(number),
            L_ONEOFF: "True" if oneoff else "False",
            L_HASH: config_hash(svc),
            L_DEPENDS_ON: depends_on_label(project, service),
            L_IMAGE: image_id,
        }
    )
    spec = ContainerSpec(
        image=image,
        name=name or project.container_name(service, number),
        entrypoint=list(svc["entrypoint"]) if "entrypoint" in svc else None,
        cmd=list(svc["command"]) if "command" in svc else None,
        env=[f"{k}={v}" for k, v in (svc.get("environment") or {}).items()],
        working_dir=svc.get("working_dir") or None,
        user=str(svc["user"]) if svc.get("user") is not None else None,
        hostname=svc.get("hostname") or None,
        domainname=svc.get("domainname") or None,
        labels=labels,
        tty=bool(svc.get("tty", False)),
        stdin_open=bool(svc.get("stdin_open", False)),
        stop_signal=svc.get("stop_signal") or None,
        read_only=bool(svc.get("read_only", False)),
        cap_add=list(svc.get("cap_add") or []),
        cap_drop=list(svc.get("cap_drop") or []),
        privileged=bool(svc.get("privileged", False)),
        init=bool(svc.get("init", False)),
        security_opt=list(svc.get("security_opt") or []),
    )
    if svc.get("restart"):
        from dockyard.cli.run_flags import parse_restart

        spec.restart_policy = parse_restart(str(svc["restart"]))
    if svc.get("stop_grace_period") is not None:
        spec.stop_timeout = math.ceil(_duration_ns(svc["stop_grace_period"]) / 1e9)
    spec.resources = _resources(svc)
    spec.ulimits = [
        Ulimit(k, int(v["soft"]), int(v["hard"])) for k, v in (svc.get("ulimits") or {}).items()
    ]
    spec.log_config = _logging(svc.get("logging") or {})
    spec.healthcheck = _healthcheck(svc.get("healthcheck"))
    extra = _network(project, service, svc, spec, oneoff, resolve_container)
    spec.ports = _ports(svc.get("ports") or [])
    from dockyard.network.options import parse_add_host, parse_expose

    spec.expose = [k for p in svc.get("expose") or [] for k in parse_expose(str(p))]
    spec.dns = list(svc.get("dns") or [])
    spec.dns_search = list(svc.get("dns_search") or [])
    spec.dns_options = list(svc.get("dns_opt") or [])
    spec.extra_hosts = [parse_add_host(h) for h in svc.get("extra_hosts") or []]
    spec.mounts = _mounts(project, service, svc, state_dir)
    for ref in svc.get("volumes_from") or []:
        ref = str(ref)
        if ref.startswith("container:"):
            spec.volumes_from.append(ref[len("container:") :])
        else:
            svc_name, sep, mode = ref.partition(":")
            target = resolve_container(svc_name) if resolve_container else svc_name
            spec.volumes_from.append(target + (f":{mode}" if sep else ""))
    return spec, extra


def _resources(svc: dict[str, Any]) -> Resources:
    limits = ((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}
    res = Resources()
    res.memory = _size(svc.get("mem_limit") or limits.get("memory"))
    swap = svc.get("memswap_limit")
    if swap is not None:
        res.memory_swap = -1 if str(swap) == "-1" else _size(swap)
    cpus = svc.get("cpus") or limits.get("cpus")
    if cpus:
        try:
            res.nano_cpus = int(float(cpus) * 1e9)
        except ValueError:
            raise InvalidArgument(f"invalid cpus value: {cpus!r}") from None
    if svc.get("cpu_shares"):
        res.cpu_shares = int(svc["cpu_shares"])
    pids = svc.get("pids_limit") or limits.get("pids")
    if pids:
        res.pids_limit = int(pids)
    res.shm_size = _size(svc.get("shm_size"))
    return res


def _logging(logging: dict[str, Any]) -> LogConfig:
    log = LogConfig()
    driver = str(logging.get("driver") or "json-file")
    if driver not in ("json-file", "local", "none"):
        raise InvalidArgument(f'logging driver "{driver}" is not supported')
    log.type = driver
    options = logging.get("options") or {}
    if options.get("max-size"):
        log.max_size = _size(options["max-size"])
    if options.get("max-file"):
        log.max_file = max(1, int(options["max-file"]))
    return log


def _healthcheck(check: dict[str, Any] | None) -> Healthcheck | None:
    if not check:
        return None
    return Healthcheck(
        test=list(check.get("test") or []),
        interval=_duration_ns(check.get("interval")),
        timeout=_duration_ns(check.get("timeout")),
        retries=int(check.get("retries") or 0),
        start_period=_duration_ns(check.get("start_period")),
    )


def _network(
    project: Project,
    service: str,
    svc: dict[str, Any],
    spec: ContainerSpec,
    oneoff: bool,
    resolve_container: Any,
) -> list[ExtraNetwork]:
    mode = svc.get("network_mode")
    if mode:
        mode = str(mode)
        if mode.startswith("service:"):
            other = mode[len("service:") :]
            mode = "container:" + (resolve_container(other) if resolve_container else other)
        spec.network_mode = mode
        return []
    nets = service_networks(project, service)
    if not nets:
        spec.network_mode = "none"
        return []
    result: list[ExtraNetwork] = []
    for key, conf in nets:
        aliases = ([] if oneoff else [service]) + list(conf.get("aliases") or [])
        result.append(
            ExtraNetwork(
                project.networks[key]["name"] if key in project.networks else key,
                list(dict.fromkeys(aliases)),
                conf.get("ipv4_address"),
            )
        )
    first = result[0]
    spec.network_mode = first.name
    spec.network_aliases = first.aliases
    spec.ip_address = first.ipv4_address
    return result[1:]


def _ports(ports: list[dict[str, Any]]) -> list[PortBinding]:
    out = []
    for p in ports:
        published = str(p.get("published") or "")
        if "-" in published:
            first, _, last = published.partition("-")
            if first != last:
                raise InvalidArgument(
                    f"published port range {published} for one container port is not supported"
                )
            published = first
        out.append(
            PortBinding(
                container_port=int(p["target"]),
                protocol=str(p.get("protocol") or "tcp"),
                host_ip=str(p.get("host_ip") or ""),
                host_port=int(published) if published else 0,
            )
        )
    return out


def _mounts(
    project: Project, service: str, svc: dict[str, Any], state_dir: Path | None
) -> list[Mount]:
    from dockyard.volumes.parse import parse_tmpfs_flag

    mounts: list[Mount] = []
    for vol in svc.get("volumes") or []:
        kind = vol["type"]
        target = vol["target"]
        ro = bool(vol.get("read_only", False))
        opts: dict[str, str] = {"origin": "mount"}
        if kind == "bind":
            bind = vol.get("bind") or {}
            opts["propagation"] = str(bind.get("propagation") or "rprivate")
            if bind.get("create_host_path"):
                opts["create-source"] = "true"
            mounts.append(Mount("bind", target, vol["source"], ro, opts))
        elif kind == "volume":
            source = vol.get("source") or ""
            if source:
                source = project.volumes[source]["name"]
            settings = vol.get("volume") or {}
            if settings.get("nocopy"):
                opts["nocopy"] = "true"
            if settings.get("subpath"):
                opts["subpath"] = str(settings["subpath"])
            mounts.append(Mount("volume", target, source, ro, opts))
        elif kind == "tmpfs":
            settings = vol.get("tmpfs") or {}
            if settings.get("size"):
                opts["tmpfs-size"] = str(_size(settings["size"]))
            if settings.get("mode"):
                opts["tmpfs-mode"] = format(int(settings["mode"]), "o")
            mounts.append(Mount("tmpfs", target, "", ro, opts))
        else:
            raise InvalidArgument(f'service "{service}": volume type {kind!r} is not supported')
    for value in svc.get("tmpfs") or []:
        mounts.append(parse_tmpfs_flag(str(value)))
    for kind, defined in (("secrets", project.secrets), ("configs", project.configs)):
        for ref in svc.get(kind) or []:
            item = defined[ref["source"]]
            source = item.get("file") or _write_file_object(
                project, kind, ref["source"], item, state_dir
            )
            mounts.append(
                Mount(
                    "bind",
                    ref["target"],
                    source,
                    True,
                    {"origin": "mount", "propagation": "rprivate"},
                )
            )
    return mounts


def _write_file_object(
    project: Project, kind: str, key: str, item: dict[str, Any], state_dir: Path | None
) -> str:
    """A secret or config given as ``content`` or ``environment``, written to a file."""
    if state_dir is None:
        raise InvalidArgument(f"{kind[:-1]} {key!r} needs a file")
    text = item["content"] if "content" in item else project.environ.get(item["environment"], "")
    directory = state_dir / project.name / kind
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / key
    tmp = path.with_name(f".{key}.tmp")
    tmp.write_text(str(text))
    os.chmod(tmp, 0o444 if kind == "configs" else 0o400)
    os.replace(tmp, path)
    return str(path)
