"""Validation of a Compose file against the Compose Specification's structure.

Our own description of the specification's model (not a copy of its JSON
schema): every known key with its type, so that an unknown key or a wrong
type is reported with its path (``services.web.ports[0]``) before anything
starts. ``x-`` extension keys are allowed wherever the specification allows
them. Values that interpolation turned into strings ("8080", "true", "0.5")
are accepted where a number or boolean is expected, as Compose casts them.
"""

from __future__ import annotations

import re
from typing import Any

from dockyard.errors import InvalidArgument


class SchemaError(InvalidArgument):
    def __init__(self, path: str, message: str, at: str | None = None) -> None:
        super().__init__(f"{path} {message}" if path else message)
        self.path = path
        self.detail = message
        self.at = at or path  # the value to point at in the file


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Type:
    name = "a value"

    def matches(self, value: Any) -> bool:
        """Whether the value has this type's shape (for choosing among alternatives)."""
        return True

    def check(self, value: Any, path: str) -> None:
        if not self.matches(value):
            raise SchemaError(path, f"must be {self.name}")


class Any_(Type):
    pass


class Str(Type):
    name = "a string"

    def __init__(self, pattern: str | None = None, enum: tuple[str, ...] = ()) -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.enum = enum

    def matches(self, value: Any) -> bool:
        return isinstance(value, str)

    def check(self, value: Any, path: str) -> None:
        super().check(value, path)
        if self.enum and value not in self.enum:
            raise SchemaError(path, "must be one of " + ", ".join(self.enum))
        if self.pattern and not self.pattern.fullmatch(value):
            raise SchemaError(path, f"does not match {self.pattern.pattern}")


def _is_num_text(value: Any, integer: bool) -> bool:
    if not isinstance(value, str):
        return False
    try:
        int(value) if integer else float(value)
    except ValueError:
        return False
    return True


class Int(Type):
    name = "an integer"

    def matches(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        return isinstance(value, int) or _is_num_text(value, True)


class Num(Type):
    name = "a number"

    def matches(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        return isinstance(value, int | float) or _is_num_text(value, False)


_BOOL_TEXT = {"true", "false", "True", "False", "TRUE", "FALSE", "yes", "no", "1", "0"}


class Bool(Type):
    name = "a boolean"

    def matches(self, value: Any) -> bool:
        return isinstance(value, bool) or (isinstance(value, str) and value in _BOOL_TEXT)


class Null(Type):
    name = "null"

    def matches(self, value: Any) -> bool:
        return value is None


class Scalar(Type):
    """A string, number or boolean (environment values, label values, ports)."""

    name = "a string, number or boolean"

    def matches(self, value: Any) -> bool:
        return isinstance(value, str | int | float | bool)


class List(Type):
    name = "a list"

    def __init__(self, item: Type, unique: bool = False) -> None:
        self.item = item
        self.unique = unique

    def matches(self, value: Any) -> bool:
        return isinstance(value, list)

    def check(self, value: Any, path: str) -> None:
        super().check(value, path)
        seen: list[Any] = []
        for i, item in enumerate(value):
            self.item.check(item, f"{path}[{i}]")
            if self.unique:
                if item in seen:
                    raise SchemaError(f"{path}[{i}]", f"duplicates an earlier item: {item!r}")
                seen.append(item)


class Obj(Type):
    """A mapping with known keys; ``x-`` keys allowed unless ``extensions`` is False."""

    name = "a mapping"

    def __init__(
        self,
        props: dict[str, Type],
        required: tuple[str, ...] = (),
        extensions: bool = True,
        additional: Type | None = None,
    ) -> None:
        self.props = props
        self.required = required
        self.extensions = extensions
        self.additional = additional

    def matches(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, path: str) -> None:
        super().check(value, path)
        for key, item in value.items():
            if not isinstance(key, str):
                raise SchemaError(path, f"has a non-string key: {key!r}")
            kind = self.props.get(key)
            if kind is None:
                if self.extensions and key.startswith("x-"):
                    continue
                if self.additional is not None:
                    self.additional.check(item, _join(path, key))
                    continue
                raise SchemaError(
                    path, f"additional property {key!r} is not allowed", _join(path, key)
                )
            kind.check(item, _join(path, key))
        for key in self.required:
            if key not in value:
                raise SchemaError(path, f"must have the property {key!r}")


class Map(Type):
    """A mapping from names (matching ``key_pattern``) to values of one type."""

    name = "a mapping"

    def __init__(self, value: Type, key_pattern: str | None = None, what: str = "name") -> None:
        self.value = value
        self.key_pattern = re.compile(key_pattern) if key_pattern else None
        self.what = what

    def matches(self, value: Any) -> bool:
        return isinstance(value, dict)

    def check(self, value: Any, path: str) -> None:
        super().check(value, path)
        for key, item in value.items():
            if not isinstance(key, str):
                raise SchemaError(path, f"has a non-string key: {key!r}")
            if (
                self.key_pattern
                and not key.startswith("x-")
                and not self.key_pattern.fullmatch(key)
            ):
                raise SchemaError(_join(path, key), f"is not a valid {self.what}")
            self.value.check(item, _join(path, key))


class OneOf(Type):
    def __init__(self, *choices: Type) -> None:
        self.choices = choices
        self.name = _either([c.name for c in choices])

    def matches(self, value: Any) -> bool:
        return any(c.matches(value) for c in self.choices)

    def check(self, value: Any, path: str) -> None:
        shaped = [c for c in self.choices if c.matches(value)]
        if not shaped:
            raise SchemaError(path, f"must be {self.name}")
        error: SchemaError | None = None
        for choice in shaped:
            try:
                choice.check(value, path)
                return
            except SchemaError as err:
                error = error or err
        assert error is not None
        raise error


def _either(names: list[str]) -> str:
    unique = list(dict.fromkeys(names))
    if len(unique) == 1:
        return unique[0]
    return ", ".join(unique[:-1]) + " or " + unique[-1]


def nullable(kind: Type) -> Type:
    return OneOf(kind, Null())


# -- the Compose Specification's model ----------------------------------------------------

ANY = Any_()
STR = Str()
INT = Int()
NUM = Num()
BOOL = Bool()
SCALAR = Scalar()
STR_OR_NUM = OneOf(Str(), Num())
DURATION = OneOf(Str(pattern=r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+|\d+"), Int())
STR_LIST = List(STR)
STR_OR_LIST = OneOf(STR, STR_LIST)
LIST_OR_DICT = OneOf(Map(nullable(SCALAR)), List(STR))
SERVICE_NAME = r"[a-zA-Z0-9._-]+"
RESOURCE_NAME = r"[a-zA-Z0-9._-]+"
OPTIONAL_STR = nullable(STR)

_BUILD = OneOf(
    STR,
    Obj(
        {
            "context": STR,
            "dockerfile": STR,
            "dockerfile_inline": STR,
            "entitlements": STR_LIST,
            "args": LIST_OR_DICT,
            "ssh": LIST_OR_DICT,
            "labels": LIST_OR_DICT,
            "cache_from": STR_LIST,
            "cache_to": STR_LIST,
            "no_cache": BOOL,
            "additional_contexts": LIST_OR_DICT,
            "network": STR,
            "pull": BOOL,
            "target": STR,
            "shm_size": STR_OR_NUM,
            "extra_hosts": LIST_OR_DICT,
            "isolation": STR,
            "privileged": BOOL,
            "secrets": List(
                OneOf(
                    STR,
                    Obj({"source": STR, "target": STR, "uid": STR, "gid": STR, "mode": STR_OR_NUM}),
                )
            ),
            "tags": STR_LIST,
            "ulimits": ANY,
            "platforms": STR_LIST,
        }
    ),
)

_HEALTHCHECK = Obj(
    {
        "disable": BOOL,
        "interval": DURATION,
        "retries": NUM,
        "test": STR_OR_LIST,
        "timeout": DURATION,
        "start_period": DURATION,
        "start_interval": DURATION,
    }
)

_RESOURCE_LIMITS = Obj(
    {
        "cpus": STR_OR_NUM,
        "memory": STR_OR_NUM,
        "pids": INT,
        "devices": ANY,
        "generic_resources": ANY,
    }
)

_DEPLOY = nullable(
    Obj(
        {
            "mode": STR,
            "endpoint_mode": STR,
            "replicas": INT,
            "labels": LIST_OR_DICT,
            "rollback_config": ANY,
            "update_config": ANY,
            "resources": Obj({"limits": _RESOURCE_LIMITS, "reservations": _RESOURCE_LIMITS}),
            "restart_policy": Obj(
                {"condition": STR, "delay": DURATION, "max_attempts": INT, "window": DURATION}
            ),
            "placement": ANY,
        }
    )
)

_PORT_LONG = Obj(
    {
        "name": STR,
        "mode": STR,
        "host_ip": STR,
        "target": INT,
        "published": STR_OR_NUM,
        "protocol": STR,
        "app_protocol": STR,
    },
    required=("target",),
)

_VOLUME_LONG = Obj(
    {
        "type": Str(enum=("bind", "volume", "tmpfs", "cluster", "npipe", "image")),
        "source": STR,
        "target": STR,
        "read_only": BOOL,
        "consistency": STR,
        "bind": Obj(
            {"propagation": STR, "create_host_path": BOOL, "recursive": STR, "selinux": STR}
        ),
        "volume": Obj({"nocopy": BOOL, "subpath": STR}),
        "tmpfs": Obj({"size": STR_OR_NUM, "mode": NUM}),
        "image": Obj({"subpath": STR}),
    },
    required=("type",),
)

_FILE_REF = OneOf(
    STR,
    Obj({"source": STR, "target": STR, "uid": STR, "gid": STR, "mode": STR_OR_NUM}),
)

_DEPENDS_ON = OneOf(
    List(Str(pattern=SERVICE_NAME), unique=True),
    Map(
        Obj(
            {
                "condition": Str(
                    enum=(
                        "service_started",
                        "service_healthy",
                        "service_completed_successfully",
                    )
                ),
                "restart": BOOL,
                "required": BOOL,
            },
            required=("condition",),
        ),
        SERVICE_NAME,
        "service name",
    ),
)

_SERVICE_NETWORKS = OneOf(
    List(STR, unique=True),
    Map(
        nullable(
            Obj(
                {
                    "aliases": STR_LIST,
                    "ipv4_address": STR,
                    "ipv6_address": STR,
                    "link_local_ips": STR_LIST,
                    "mac_address": STR,
                    "driver_opts": Map(STR_OR_NUM),
                    "priority": NUM,
                    "gw_priority": NUM,
                }
            )
        ),
        RESOURCE_NAME,
        "network name",
    ),
)

_ULIMITS = Map(OneOf(INT, Obj({"soft": INT, "hard": INT}, required=("soft", "hard"))))

_ENV_FILE = OneOf(
    STR, List(OneOf(STR, Obj({"path": STR, "required": BOOL, "format": STR}, required=("path",))))
)

_EXTENDS = OneOf(STR, Obj({"service": STR, "file": STR}, required=("service",)))

_LOGGING = Obj({"driver": STR, "options": Map(nullable(STR_OR_NUM))})

SERVICE = Obj(
    {
        "annotations": LIST_OR_DICT,
        "attach": BOOL,
        "blkio_config": ANY,
        "build": _BUILD,
        "cap_add": List(STR, unique=True),
        "cap_drop": List(STR, unique=True),
        "cgroup": Str(enum=("host", "private")),
        "cgroup_parent": STR,
        "command": nullable(STR_OR_LIST),
        "configs": List(_FILE_REF),
        "container_name": Str(pattern=r"[a-zA-Z0-9][a-zA-Z0-9_.-]+"),
        "cpu_count": INT,
        "cpu_percent": INT,
        "cpu_shares": STR_OR_NUM,
        "cpu_quota": STR_OR_NUM,
        "cpu_period": STR_OR_NUM,
        "cpu_rt_period": STR_OR_NUM,
        "cpu_rt_runtime": STR_OR_NUM,
        "cpus": STR_OR_NUM,
        "cpuset": STR,
        "credential_spec": ANY,
        "depends_on": _DEPENDS_ON,
        "deploy": _DEPLOY,
        "develop": ANY,
        "device_cgroup_rules": STR_LIST,
        "devices": List(OneOf(STR, Obj({"source": STR, "target": STR, "permissions": STR}))),
        "dns": STR_OR_LIST,
        "dns_opt": STR_LIST,
        "dns_search": STR_OR_LIST,
        "domainname": STR,
        "entrypoint": nullable(STR_OR_LIST),
        "env_file": _ENV_FILE,
        "label_file": STR_OR_LIST,
        "environment": LIST_OR_DICT,
        "expose": List(STR_OR_NUM),
        "extends": _EXTENDS,
        "external_links": STR_LIST,
        "extra_hosts": OneOf(List(STR), Map(OneOf(STR, STR_LIST))),
        "gpus": ANY,
        "group_add": List(STR_OR_NUM),
        "healthcheck": _HEALTHCHECK,
        "hostname": STR,
        "image": STR,
        "init": BOOL,
        "ipc": STR,
        "isolation": STR,
        "labels": LIST_OR_DICT,
        "links": STR_LIST,
        "logging": _LOGGING,
        "mac_address": STR,
        "mem_limit": STR_OR_NUM,
        "mem_reservation": STR_OR_NUM,
        "mem_swappiness": INT,
        "memswap_limit": STR_OR_NUM,
        "network_mode": STR,
        "networks": _SERVICE_NETWORKS,
        "oom_kill_disable": BOOL,
        "oom_score_adj": INT,
        "pid": nullable(STR),
        "pids_limit": STR_OR_NUM,
        "platform": STR,
        "ports": List(OneOf(Num(), Str(), _PORT_LONG)),
        "post_start": ANY,
        "pre_stop": ANY,
        "privileged": BOOL,
        "profiles": List(Str(pattern=r"[a-zA-Z0-9][a-zA-Z0-9_.-]*"), unique=True),
        "pull_policy": Str(enum=("always", "never", "if_not_present", "build", "missing")),
        "read_only": BOOL,
        "restart": STR,
        "runtime": STR,
        "scale": INT,
        "security_opt": STR_LIST,
        "shm_size": STR_OR_NUM,
        "secrets": List(_FILE_REF),
        "sysctls": LIST_OR_DICT,
        "stdin_open": BOOL,
        "stop_grace_period": DURATION,
        "stop_signal": STR,
        "storage_opt": ANY,
        "tmpfs": STR_OR_LIST,
        "tty": BOOL,
        "ulimits": _ULIMITS,
        "user": STR,
        "uts": STR,
        "userns_mode": STR,
        "volumes": List(OneOf(STR, _VOLUME_LONG)),
        "volumes_from": List(STR, unique=True),
        "working_dir": STR,
    }
)

_IPAM = Obj(
    {
        "driver": STR,
        "config": List(
            Obj({"subnet": STR, "ip_range": STR, "gateway": STR, "aux_addresses": Map(STR)})
        ),
        "options": Map(STR),
    }
)

_EXTERNAL = OneOf(BOOL, Obj({"name": STR}))

NETWORK = nullable(
    Obj(
        {
            "name": STR,
            "driver": STR,
            "driver_opts": Map(STR_OR_NUM),
            "ipam": _IPAM,
            "external": _EXTERNAL,
            "internal": BOOL,
            "enable_ipv4": BOOL,
            "enable_ipv6": BOOL,
            "attachable": BOOL,
            "labels": LIST_OR_DICT,
        }
    )
)

VOLUME = nullable(
    Obj(
        {
            "name": STR,
            "driver": STR,
            "driver_opts": Map(STR_OR_NUM),
            "external": _EXTERNAL,
            "labels": LIST_OR_DICT,
        }
    )
)

_FILE_OBJECT = Obj(
    {
        "name": STR,
        "content": STR,
        "environment": STR,
        "file": STR,
        "external": _EXTERNAL,
        "labels": LIST_OR_DICT,
        "driver": STR,
        "driver_opts": Map(STR_OR_NUM),
        "template_driver": STR,
    }
)

_INCLUDE = List(
    OneOf(
        STR,
        Obj(
            {"path": STR_OR_LIST, "project_directory": STR, "env_file": STR_OR_LIST},
            required=("path",),
        ),
    )
)

COMPOSE_FILE = Obj(
    {
        "version": STR,
        "name": Str(pattern=r"[a-z0-9][a-z0-9_-]*"),
        "include": _INCLUDE,
        "services": nullable(Map(nullable(SERVICE), SERVICE_NAME, "service name")),
        "networks": nullable(Map(NETWORK, RESOURCE_NAME, "network name")),
        "volumes": nullable(Map(VOLUME, RESOURCE_NAME, "volume name")),
        "secrets": nullable(Map(_FILE_OBJECT, RESOURCE_NAME, "secret name")),
        "configs": nullable(Map(_FILE_OBJECT, RESOURCE_NAME, "config name")),
    }
)


def validate(document: Any) -> None:
    """Raise SchemaError (with the path) when the document breaks the specification."""
    COMPOSE_FILE.check(document, "")
