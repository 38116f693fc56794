"""Services and resources in Compose's canonical form, with every reference checked.

Short syntaxes become long ones (ports, volumes, depends_on, networks,
secrets), relative paths become absolute against the project directory,
``env_file`` is read into ``environment``, strings that interpolation made of
numbers and booleans become numbers and booleans again. The short syntaxes
of ports and volumes are parsed by the engine's own ``-p``/``-v`` parsers, so
that a Compose file means exactly what the same flags would.
"""

from __future__ import annotations

import os
import shlex
from typing import Any

from dockyard.compose import interpolate
from dockyard.compose.merge import as_list, list_or_dict
from dockyard.compose.model import Project
from dockyard.errors import InvalidArgument

_BOOL_KEYS = ("init", "privileged", "read_only", "stdin_open", "tty", "oom_kill_disable")
_INT_KEYS = ("scale", "cpu_count", "cpu_percent", "mem_swappiness", "oom_score_adj")
_TRUE = {"true", "True", "TRUE", "yes", "1"}


def to_bool(value: Any) -> bool:
    return value in _TRUE if isinstance(value, str) else bool(value)


def env_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class _Context:
    def __init__(self, project: Project) -> None:
        self.project = project
        self.base = project.working_dir

    def path(self, value: str) -> str:
        value = os.path.expanduser(value)
        return os.path.normpath(os.path.join(self.base, value))

    def fail(self, service: str, message: str) -> InvalidArgument:
        return InvalidArgument(f'service "{service}" {message}: invalid compose project')


def normalize_project(
    model: dict[str, Any],
    *,
    name: str,
    working_dir: str,
    config_files: list[str],
    env_files: list[str],
    environ: dict[str, str],
    profiles: list[str],
) -> Project:
    services = model.get("services") or {}
    project = Project(
        name=name,
        working_dir=working_dir,
        config_files=config_files,
        env_files=env_files,
        environ=environ,
        profiles=profiles,
        services={},
    )
    ctx = _Context(project)
    project.networks = _networks(model.get("networks") or {}, name, ctx)
    project.volumes = _volumes(model.get("volumes") or {}, name)
    project.secrets = _files(model.get("secrets") or {}, name, ctx, environ)
    project.configs = _files(model.get("configs") or {}, name, ctx, environ)
    for svc_name, svc in services.items():
        project.services[svc_name] = _service(svc_name, dict(svc or {}), ctx)
        svc_profiles = project.services[svc_name].get("profiles") or []
        if svc_profiles and "*" not in profiles and not set(svc_profiles) & set(profiles):
            project.disabled.add(svc_name)
    used_default = any("default" in (s.get("networks") or {}) for s in project.services.values())
    if used_default and "default" not in project.networks:
        project.networks["default"] = {"name": f"{name}_default"}
    for svc_name in project.services:
        for dep, cond in project.dependencies(svc_name).items():
            if dep not in project.services and cond.get("required", True):
                raise ctx.fail(svc_name, f'depends on undefined service "{dep}"')
    project.order()  # raises on a cycle
    return project


def _networks(raw: dict[str, Any], project: str, ctx: _Context) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        net = dict(value or {})
        external = net.get("external")
        if isinstance(external, dict):  # legacy `external: {name: x}`
            net["name"] = external.get("name") or net.get("name") or key
            external = True
        net.pop("external", None)
        if to_bool(external):
            net["external"] = True
            net.setdefault("name", key)
        else:
            net.setdefault("name", f"{project}_{key}")
        if "labels" in net:
            net["labels"] = {k: env_text(v or "") for k, v in list_or_dict(net["labels"]).items()}
        for flag in ("internal", "attachable", "enable_ipv6", "enable_ipv4"):
            if flag in net:
                net[flag] = to_bool(net[flag])
        if "driver_opts" in net:
            net["driver_opts"] = {k: str(v) for k, v in net["driver_opts"].items()}
        out[key] = net
    return out


def _volumes(raw: dict[str, Any], project: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        vol = dict(value or {})
        external = vol.pop("external", None)
        if isinstance(external, dict):
            vol["name"] = external.get("name") or vol.get("name") or key
            external = True
        if to_bool(external):
            vol["external"] = True
            vol.setdefault("name", key)
        else:
            vol.setdefault("name", f"{project}_{key}")
        if "labels" in vol:
            vol["labels"] = {k: env_text(v or "") for k, v in list_or_dict(vol["labels"]).items()}
        if "driver_opts" in vol:
            vol["driver_opts"] = {k: str(v) for k, v in vol["driver_opts"].items()}
        out[key] = vol
    return out


def _files(
    raw: dict[str, Any], project: str, ctx: _Context, environ: dict[str, str]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, value in raw.items():
        item = dict(value or {})
        if to_bool(item.get("external")):
            raise InvalidArgument(f"external secret or config {key!r} is not supported here")
        if item.get("file"):
            item["file"] = ctx.path(str(item["file"]))
        elif "environment" in item:
            if item["environment"] not in environ:
                raise InvalidArgument(
                    f"environment variable {item['environment']!r} of {key!r} is not set"
                )
        elif "content" not in item:
            raise InvalidArgument(f"{key!r} needs one of file, environment or content")
        item.setdefault("name", f"{project}_{key}")
        out[key] = item
    return out


def _service(name: str, svc: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    project = ctx.project
    svc.pop("extends", None)
    for key in _BOOL_KEYS:
        if key in svc:
            svc[key] = to_bool(svc[key])
    for key in _INT_KEYS:
        if key in svc:
            svc[key] = int(svc[key])
    if not svc.get("image") and not svc.get("build"):
        raise ctx.fail(name, "has neither an image nor a build context specified")
    if "build" in svc:
        svc["build"] = _build(svc["build"], ctx)
    for key in ("command", "entrypoint"):
        if key in svc:
            value = svc[key]
            if value is None:
                del svc[key]
            elif isinstance(value, str):
                try:
                    svc[key] = shlex.split(value)
                except ValueError as err:
                    raise ctx.fail(name, f"has an invalid {key}: {err}") from None
            else:
                svc[key] = [str(v) for v in value]
    svc_env = _environment(name, svc, ctx)
    if svc_env or "environment" in svc:
        svc["environment"] = svc_env
    for key in ("labels", "annotations", "sysctls"):
        if key in svc:
            svc[key] = {
                k: env_text("" if v is None else v) for k, v in list_or_dict(svc[key]).items()
            }
    if "ports" in svc:
        svc["ports"] = _ports(name, svc["ports"], ctx)
    if "expose" in svc:
        svc["expose"] = [str(p) for p in svc["expose"]]
    if "volumes" in svc:
        svc["volumes"] = _service_volumes(name, svc["volumes"], ctx)
    for key in ("tmpfs", "dns", "dns_search"):
        if key in svc:
            svc[key] = [str(v) for v in as_list(svc[key])]
    if "extra_hosts" in svc:
        svc["extra_hosts"] = _extra_hosts(name, svc["extra_hosts"], ctx)
    if "depends_on" in svc:
        svc["depends_on"] = _depends_on(svc["depends_on"])
    _service_networks(name, svc, ctx)
    if "healthcheck" in svc:
        svc["healthcheck"] = _healthcheck(svc["healthcheck"])
    if "ulimits" in svc:
        svc["ulimits"] = {
            k: {"soft": int(v), "hard": int(v)}
            if not isinstance(v, dict)
            else {"soft": int(v["soft"]), "hard": int(v["hard"])}
            for k, v in svc["ulimits"].items()
        }
    for key, defined in (("secrets", project.secrets), ("configs", project.configs)):
        if key in svc:
            svc[key] = _file_refs(name, key, svc[key], defined, ctx)
    if "restart" in svc:
        restart = str(svc["restart"])
        if restart.partition(":")[0] not in ("no", "always", "on-failure", "unless-stopped"):
            raise ctx.fail(name, f"has an invalid restart policy {restart!r}")
    if isinstance(svc.get("deploy"), dict) and "replicas" in svc["deploy"]:
        svc["deploy"] = {**svc["deploy"], "replicas": int(svc["deploy"]["replicas"])}
    return svc


def _build(value: Any, ctx: _Context) -> dict[str, Any]:
    build = {"context": value} if isinstance(value, str) else dict(value)
    context = str(build.get("context") or ".")
    if "://" not in context and not context.startswith("git@"):
        context = ctx.path(context)
    build["context"] = context
    if "dockerfile_inline" not in build:
        build.setdefault("dockerfile", "Dockerfile")
    if "args" in build:
        args = {}
        for k, v in list_or_dict(build["args"]).items():
            if v is None:
                v = ctx.project.environ.get(k)
            if v is not None:
                args[k] = env_text(v)
        build["args"] = args
    if "labels" in build:
        build["labels"] = {k: env_text(v or "") for k, v in list_or_dict(build["labels"]).items()}
    return build


def _environment(name: str, svc: dict[str, Any], ctx: _Context) -> dict[str, str]:
    environ = ctx.project.environ
    values: dict[str, str] = {}
    for entry in as_list(svc.pop("env_file", None)):
        path, required = (
            (entry, True)
            if isinstance(entry, str)
            else (entry["path"], to_bool(entry.get("required", True)))
        )
        full = ctx.path(str(path))
        if not os.path.isfile(full) and not required:
            continue
        if not os.path.exists(full):
            raise InvalidArgument(
                f'service "{name}": env file {full} not found: stat {full}: '
                "no such file or directory"
            )
        loaded = interpolate.read_env_file(full, lambda k: environ.get(k), what="env file")
        for key, value in loaded.items():
            value = environ.get(key) if value is None else value
            if value is not None:
                values[key] = value
    for key, value in list_or_dict(svc.get("environment") or {}).items():
        if value is None:
            value = environ.get(key)
            if value is None:
                values.pop(key, None)
                continue
        values[key] = env_text(value)
    return values


def _ports(name: str, ports: list[Any], ctx: _Context) -> list[dict[str, Any]]:
    from dockyard.network.options import parse_publish

    out: list[dict[str, Any]] = []
    for i, port in enumerate(ports):
        where = f"services.{name}.ports[{i}]"
        if isinstance(port, dict):
            entry: dict[str, Any] = {"mode": str(port.get("mode") or "ingress")}
            if port.get("host_ip"):
                entry["host_ip"] = str(port["host_ip"])
            entry["target"] = int(port["target"])
            if port.get("published") not in (None, ""):
                entry["published"] = str(port["published"])
            entry["protocol"] = str(port.get("protocol") or "tcp")
            for key in ("name", "app_protocol"):
                if port.get(key):
                    entry[key] = str(port[key])
            text = (f"{entry.get('host_ip', '')}:" if entry.get("host_ip") else "") + (
                f"{entry['published']}:" if "published" in entry else ""
            )
            _check(parse_publish, f"{text}{entry['target']}/{entry['protocol']}", where)
            out.append(entry)
            continue
        for binding in _check(parse_publish, str(port), where):
            entry = {"mode": "ingress"}
            if binding.host_ip:
                entry["host_ip"] = binding.host_ip
            entry["target"] = binding.container_port
            if binding.host_port:
                entry["published"] = str(binding.host_port)
            entry["protocol"] = binding.protocol
            out.append(entry)
    return out


def _check(parser: Any, value: str, where: str) -> Any:
    try:
        return parser(value)
    except InvalidArgument as err:
        raise InvalidArgument(f"{where}: {err}") from None


def _service_volumes(name: str, volumes: list[Any], ctx: _Context) -> list[dict[str, Any]]:
    from dockyard.volumes.parse import parse_volume_flag

    out: list[dict[str, Any]] = []
    for i, item in enumerate(volumes):
        where = f"services.{name}.volumes[{i}]"
        if isinstance(item, dict):
            vol = dict(item)
            target = str(vol.get("target") or "")
            if not target.startswith("/"):
                raise InvalidArgument(f"{where}: target must be an absolute path: {target!r}")
            if vol["type"] == "bind":
                if not vol.get("source"):
                    raise InvalidArgument(f"{where}: a bind mount needs a source")
                vol["source"] = ctx.path(str(vol["source"]))
            if "read_only" in vol:
                vol["read_only"] = to_bool(vol["read_only"])
            if vol["type"] == "volume" and vol.get("source"):
                _check_volume_ref(name, str(vol["source"]), ctx)
            out.append(vol)
            continue
        text = str(item)
        parts = text.split(":")
        if len(parts) >= 2 and parts[0].startswith((".", "~")):
            parts[0] = ctx.path(parts[0])
        mount = _check(parse_volume_flag, ":".join(parts), where)
        entry: dict[str, Any] = {"type": mount.type}
        if mount.source:
            entry["source"] = mount.source
        entry["target"] = mount.target
        if mount.read_only:
            entry["read_only"] = True
        if mount.type == "bind":
            bind: dict[str, Any] = {"create_host_path": True}
            prop = mount.options.get("propagation")
            if prop and prop != "rprivate":
                bind["propagation"] = prop
            entry["bind"] = bind
        elif mount.source:
            _check_volume_ref(name, mount.source, ctx)
            if mount.options.get("nocopy") == "true":
                entry["volume"] = {"nocopy": True}
        out.append(entry)
    return out


def _check_volume_ref(service: str, source: str, ctx: _Context) -> None:
    if source not in ctx.project.volumes:
        raise ctx.fail(service, f"refers to undefined volume {source}")


def _extra_hosts(name: str, value: Any, ctx: _Context) -> list[str]:
    from dockyard.network.options import parse_add_host

    items: list[str] = []
    if isinstance(value, dict):
        for host, ips in value.items():
            items.extend(f"{host}={ip}" for ip in as_list(ips))
    else:
        items = [str(v) for v in value]
    return [
        _check(parse_add_host, v, f"services.{name}.extra_hosts[{i}]") for i, v in enumerate(items)
    ]


def _depends_on(value: Any) -> dict[str, dict[str, Any]]:
    if isinstance(value, list):
        return {
            n: {"condition": "service_started", "required": True, "restart": False} for n in value
        }
    return {
        n: {
            "condition": str(d.get("condition") or "service_started"),
            "required": to_bool(d.get("required", True)),
            "restart": to_bool(d.get("restart", False)),
        }
        for n, d in value.items()
    }


def _service_networks(name: str, svc: dict[str, Any], ctx: _Context) -> None:
    mode = svc.get("network_mode")
    if mode:
        if svc.get("networks"):
            raise ctx.fail(name, "declares network_mode and networks: use only one of them")
        svc["network_mode"] = str(mode)  # service:NAME is checked with depends_on
        return
    raw = svc.get("networks")
    nets: dict[str, Any] = (
        {"default": None}
        if raw is None
        else {n: None for n in raw}
        if isinstance(raw, list)
        else dict(raw)
    )
    for net, conf in nets.items():
        if net != "default" and net not in ctx.project.networks:
            raise ctx.fail(name, f"refers to undefined network {net}")
        if conf:
            conf = dict(conf)
            if "aliases" in conf:
                conf["aliases"] = [str(a) for a in conf["aliases"]]
            nets[net] = conf
    svc["networks"] = nets


def _healthcheck(value: dict[str, Any]) -> dict[str, Any]:
    check = dict(value)
    if to_bool(check.pop("disable", False)):
        return {"test": ["NONE"]}
    test = check.get("test")
    if isinstance(test, str):
        check["test"] = ["CMD-SHELL", test]
    elif isinstance(test, list):
        check["test"] = [str(t) for t in test]
    if "retries" in check:
        check["retries"] = int(float(check["retries"]))
    for key in ("interval", "timeout", "start_period", "start_interval"):
        if isinstance(check.get(key), int):
            check[key] = f"{check[key]}s"
    return check


def _file_refs(
    name: str, kind: str, refs: list[Any], defined: dict[str, Any], ctx: _Context
) -> list[dict[str, Any]]:
    out = []
    for ref in refs:
        entry = {"source": ref} if isinstance(ref, str) else dict(ref)
        source = str(entry["source"])
        if source not in defined:
            raise ctx.fail(name, f"refers to undefined {kind[:-1]} {source}")
        target = entry.get("target") or (
            f"/run/secrets/{source}" if kind == "secrets" else f"/{source}"
        )
        if kind == "secrets" and not str(target).startswith("/"):
            target = f"/run/secrets/{target}"
        entry["target"] = str(target)
        out.append(entry)
    return out
