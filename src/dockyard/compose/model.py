"""The loaded Compose project: normalized services and resources, and their graph.

Services are kept in Compose's canonical form (what ``compose config`` prints):
long-syntax ports and volumes, mappings for environment/labels/depends_on/
networks, lists for command and entrypoint, absolute paths. The config hash
of a service is computed from this form, as Compose computes it from its own.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dockyard.errors import InvalidArgument, NotFound
from dockyard.records import field, record

COMPOSE_VERSION = "2.29.7"  # the Compose release whose behaviour we follow (labels)


@record
class Project:
    name: str
    working_dir: str
    config_files: list[str]
    env_files: list[str]
    environ: dict[str, str]
    profiles: list[str]
    services: dict[str, dict[str, Any]]  # every service, enabled or not
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    disabled: set[str] = field(default_factory=set)  # services whose profiles are inactive

    # -- services -------------------------------------------------------------------

    def enabled(self) -> list[str]:
        return [n for n in self.services if n not in self.disabled]

    def service(self, name: str) -> dict[str, Any]:
        if name not in self.services:
            raise NotFound(f"no such service: {name}")
        return self.services[name]

    def dependencies(self, name: str) -> dict[str, dict[str, Any]]:
        """The services ``name`` needs, with their condition (``depends_on`` and implicit)."""
        svc = self.services[name]
        deps: dict[str, dict[str, Any]] = dict(svc.get("depends_on") or {})
        mode = str(svc.get("network_mode") or "")
        if mode.startswith("service:"):
            deps.setdefault(mode[8:], {"condition": "service_started", "required": True})
        for ref in svc.get("volumes_from") or []:
            ref = str(ref)
            if not ref.startswith("container:"):
                deps.setdefault(
                    ref.split(":")[0], {"condition": "service_started", "required": True}
                )
        return deps

    def select(self, names: list[str] | None, *, with_deps: bool = True) -> list[str]:
        """The services a command acts on, in dependency order.

        Explicitly named services are used whatever their profiles; with
        ``with_deps`` their dependencies are added (and must be enabled).
        """
        if not names:
            wanted = self.enabled()
        else:
            for name in names:
                self.service(name)
            wanted = list(dict.fromkeys(names))
        if with_deps:
            todo = list(wanted)
            while todo:
                current = todo.pop()
                for dep, cond in self.dependencies(current).items():
                    if dep in wanted:
                        continue
                    if dep not in self.services:
                        if cond.get("required", True):
                            raise InvalidArgument(
                                f'service "{current}" depends on undefined service "{dep}"'
                            )
                        continue
                    if dep in self.disabled and not cond.get("required", True):
                        continue
                    if dep in self.disabled:
                        profiles = ", ".join(self.services[dep].get("profiles") or [])
                        raise InvalidArgument(
                            f'service "{current}" depends on service "{dep}", whose profiles '
                            f"({profiles}) are not active: use --profile"
                        )
                    wanted.append(dep)
                    todo.append(dep)
        order = self.order()
        return [n for n in order if n in wanted]

    def order(self) -> list[str]:
        """All services, each after its dependencies (stable: file order otherwise)."""
        done: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                cycle = path[path.index(name) :] + [name]
                raise InvalidArgument("dependency cycle detected: " + " -> ".join(cycle))
            state[name] = 1
            for dep in self.dependencies(name):
                if dep in self.services:
                    visit(dep, [*path, name])
            state[name] = 2
            done.append(name)

        for name in self.services:
            visit(name, [])
        return done

    def dependents(self, name: str) -> list[str]:
        """Services that (directly) depend on ``name``."""
        return [n for n in self.services if name in self.dependencies(n)]

    def image_name(self, service: str) -> str:
        """The image a service runs: its ``image``, or ``PROJECT-SERVICE`` when built."""
        svc = self.services[service]
        return str(svc.get("image") or f"{self.name}-{service}")

    def scale(self, service: str) -> int:
        svc = self.services[service]
        if svc.get("scale") is not None:
            return int(svc["scale"])
        replicas = (svc.get("deploy") or {}).get("replicas")
        return int(replicas) if replicas is not None else 1

    def container_name(self, service: str, number: int) -> str:
        svc = self.services[service]
        if svc.get("container_name"):
            return str(svc["container_name"])
        return f"{self.name}-{service}-{number}"

    # -- output -----------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """The resolved model as ``compose config`` prints it."""
        out: dict[str, Any] = {"name": self.name}
        out["services"] = {n: _sorted(self.services[n]) for n in sorted(self.enabled())}
        used_nets = {
            net for n in self.enabled() for net in (self.services[n].get("networks") or {})
        }
        nets = {k: _sorted(v) for k, v in sorted(self.networks.items()) if k in used_nets}
        if nets:
            out["networks"] = nets
        for key, items in (
            ("volumes", self.volumes),
            ("secrets", self.secrets),
            ("configs", self.configs),
        ):
            if items:
                out[key] = {k: _sorted(v) for k, v in sorted(items.items())}
        return out


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def config_hash(service: dict[str, Any]) -> str:
    """The hash Compose labels a container with; a change means "recreate".

    Like Compose, the build section, pull policy and the number of replicas
    do not count: scaling or rebuilding alone does not recreate.
    """
    data = {k: v for k, v in service.items() if k not in ("build", "pull_policy", "scale")}
    if isinstance(data.get("deploy"), dict):
        data["deploy"] = {k: v for k, v in data["deploy"].items() if k != "replicas"}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
