"""The Compose Specification's merge rules (``-f a.yaml -f b.yaml`` and ``extends``).

Mappings merge recursively; sequences are appended to; ``command``,
``entrypoint`` and ``healthcheck.test`` are replaced; ``ports``, ``volumes``,
``secrets`` and ``configs`` are unique by their key (a later entry with the
same key replaces the earlier one); list-or-mapping attributes
(``environment``, ``labels``, ...) merge as mappings. ``!reset`` removes a
value, ``!override`` replaces it whole.
"""

from __future__ import annotations

import copy
from typing import Any

from dockyard.compose.yamlfile import Override, Reset

REPLACED = {"command", "entrypoint", "image", "container_name", "network_mode"}
AS_MAPPING = {"environment", "labels", "annotations", "sysctls"}
UNIQUE_STRINGS = {
    "cap_add", "cap_drop", "dns", "dns_opt", "dns_search", "expose", "external_links",
    "links", "volumes_from", "devices", "profiles", "security_opt", "group_add", "tmpfs",
    "env_file", "extra_hosts", "label_file", "device_cgroup_rules",
}  # fmt: skip


def list_or_dict(value: Any) -> dict[str, Any]:
    """``["A=1", "B"]`` or ``{A: 1}`` as a mapping (a bare name maps to None)."""
    if isinstance(value, dict):
        return dict(value)
    out: dict[str, Any] = {}
    for item in value or []:
        key, sep, val = str(item).partition("=")
        out[key] = val if sep else None
    return out


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _port_key(item: Any) -> Any:
    if isinstance(item, dict):
        return (
            str(item.get("host_ip", "")),
            str(item.get("target")),
            str(item.get("published", "")),
            str(item.get("protocol", "tcp")),
        )
    text = str(item)
    spec, _, proto = text.partition("/")
    parts = spec.rsplit(":", 2)
    while len(parts) < 3:
        parts.insert(0, "")
    return (parts[0].strip("[]"), parts[2], parts[1], proto or "tcp")


def volume_target(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("target", ""))
    parts = str(item).split(":")
    if len(parts) == 1:
        return parts[0]
    return parts[1]


def _file_ref_key(item: Any) -> str:
    if isinstance(item, dict):
        return str(item.get("target") or item.get("source"))
    return str(item)


_UNIQUE_KEYS = {
    "ports": _port_key,
    "volumes": volume_target,
    "secrets": _file_ref_key,
    "configs": _file_ref_key,
}


def _merge_unique(base: list[Any], over: list[Any], key: Any) -> list[Any]:
    result = list(base)
    for item in over:
        k = key(item)
        for i, existing in enumerate(result):
            if key(existing) == k:
                result[i] = item
                break
        else:
            result.append(item)
    return result


def _normalize_for_merge(key: str, value: Any) -> Any:
    """Short forms turned into the form that merges (a list of names into a mapping)."""
    if key in AS_MAPPING:
        return list_or_dict(value)
    if key == "depends_on" and isinstance(value, list):
        return {name: {"condition": "service_started"} for name in value}
    if key == "networks" and isinstance(value, list):
        return {name: None for name in value}
    if key == "build" and isinstance(value, str):
        return {"context": value}
    if key == "extends" and isinstance(value, str):
        return {"service": value}
    if key in UNIQUE_STRINGS:
        return as_list(value)
    return value


def _unique_append(base: list[Any], over: list[Any]) -> list[Any]:
    result = list(base)
    for item in over:
        if item not in result:
            result.append(item)
    return result


def deep_merge(base: Any, over: Any) -> Any:
    """Mappings recursively, sequences appended, anything else replaced."""
    if isinstance(over, Override):
        return strip_markers(over.value)
    if isinstance(base, dict) and isinstance(over, dict):
        result = dict(base)
        for key, value in over.items():
            if isinstance(value, Reset):
                result.pop(key, None)
            elif key in result:
                result[key] = deep_merge(result[key], value)
            else:
                result[key] = strip_markers(value)
        return result
    if isinstance(base, list) and isinstance(over, list):
        return base + [strip_markers(v) for v in over]
    return strip_markers(over)


def merge_service(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """One service of a later file (or an extending service) merged over an earlier one."""
    result = {k: _normalize_for_merge(k, v) for k, v in base.items()}
    for key, value in over.items():
        if isinstance(value, Reset):
            result.pop(key, None)
            continue
        if isinstance(value, Override):
            result[key] = strip_markers(value.value)
            continue
        value = _normalize_for_merge(key, strip_markers(value))
        if key not in result or result[key] is None or key in REPLACED:
            result[key] = value
        elif key in _UNIQUE_KEYS and isinstance(value, list):
            result[key] = _merge_unique(as_list(result[key]), value, _UNIQUE_KEYS[key])
        elif key in UNIQUE_STRINGS:
            result[key] = _unique_append(as_list(result[key]), as_list(value))
        elif key == "healthcheck" and isinstance(value, dict):
            merged = deep_merge(result[key], {k: v for k, v in value.items() if k != "test"})
            if "test" in value:
                merged["test"] = value["test"]
            result[key] = merged
        elif key == "build" and isinstance(value, dict):
            build = dict(result[key])
            for k, v in value.items():
                if k in ("args", "labels") and isinstance(build.get(k), dict | list):
                    build[k] = {**list_or_dict(build[k]), **list_or_dict(v)}
                else:
                    build[k] = deep_merge(build.get(k), v) if k in build else v
            result[key] = build
        else:
            result[key] = deep_merge(result[key], value)
    return result


def merge_documents(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """A later Compose file merged over the model so far."""
    result = dict(base)
    for key, value in over.items():
        if isinstance(value, Reset):
            result.pop(key, None)
        elif key == "services" and isinstance(value, dict):
            services = dict(result.get("services") or {})
            for name, svc in value.items():
                if isinstance(svc, Reset):
                    services.pop(name, None)
                elif isinstance(svc, Override):
                    services[name] = strip_markers(svc.value)
                elif name in services and isinstance(services[name], dict):
                    services[name] = merge_service(services[name], svc or {})
                else:
                    services[name] = strip_markers(svc) or {}
            result["services"] = services
        elif key in result and result[key] is not None:
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = strip_markers(value)
    return result


def strip_markers(value: Any) -> Any:
    """The value without merge markers (a single file: ``!override`` is the value itself)."""
    if isinstance(value, Override):
        return strip_markers(value.value)
    if isinstance(value, dict):
        return {k: strip_markers(v) for k, v in value.items() if not isinstance(v, Reset)}
    if isinstance(value, list):
        return [strip_markers(v) for v in value if not isinstance(v, Reset)]
    if isinstance(value, Reset):
        return None
    return value


def copy_tree(value: Any) -> Any:
    return copy.deepcopy(value)
