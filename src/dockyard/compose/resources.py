"""A project's containers, networks and volumes, found by their Compose labels.

Everything ``down`` removes is found through ``com.docker.compose.project``;
resources of another project, or that Compose did not create, are never
touched.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dockyard.compose.convert import (
    L_NETWORK,
    L_NUMBER,
    L_ONEOFF,
    L_PROJECT,
    L_SERVICE,
    L_VERSION,
    L_VOLUME,
)
from dockyard.compose.model import COMPOSE_VERSION, Project
from dockyard.compose.runner import Progress
from dockyard.errors import DockyardError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.containers.manager import Container
    from dockyard.network.manager import NetworkManager
    from dockyard.volumes.manager import VolumeManager


def number_of(container: Container) -> int:
    try:
        return int(container.spec.labels.get(L_NUMBER, "0"))
    except ValueError:
        return 0


def service_of(container: Container) -> str:
    return container.spec.labels.get(L_SERVICE, "")


def is_oneoff(container: Container) -> bool:
    return container.spec.labels.get(L_ONEOFF) == "True"


def project_containers(
    ctx: Context,
    project: str,
    *,
    services: list[str] | None = None,
    oneoff: bool | None = False,
) -> list[Container]:
    """The project's containers (``oneoff`` None: both kinds), by service then number."""
    needle = json.dumps({L_PROJECT: project})[1:-1]  # '"com.docker.compose.project": "p"'
    rows = ctx.db.query("SELECT id FROM containers WHERE instr(spec, ?) > 0", (needle,))
    found = []
    for row in rows:
        try:
            container = ctx.containers.get(row["id"])
        except NotFound:
            continue  # removed meanwhile
        labels = container.spec.labels
        if labels.get(L_PROJECT) != project:
            continue
        if oneoff is not None and is_oneoff(container) != oneoff:
            continue
        if services is not None and labels.get(L_SERVICE) not in services:
            continue
        found.append(container)
    found.sort(key=lambda c: (service_of(c), is_oneoff(c), number_of(c), c.created))
    return found


def all_projects(ctx: Context) -> dict[str, list[Container]]:
    """Every project that has containers in the store (for ``compose ls``)."""
    needle = f'"{L_PROJECT}": '
    rows = ctx.db.query("SELECT id FROM containers WHERE instr(spec, ?) > 0", (needle,))
    projects: dict[str, list[Container]] = {}
    for row in rows:
        try:
            container = ctx.containers.get(row["id"])
        except NotFound:
            continue
        name = container.spec.labels.get(L_PROJECT)
        if name:
            projects.setdefault(name, []).append(container)
    return projects


def network_manager(ctx: Context) -> NetworkManager:
    from dockyard.network.manager import NetworkManager

    return NetworkManager(ctx.paths, ctx.db)


def volume_manager(ctx: Context) -> VolumeManager:
    from dockyard.volumes.manager import VolumeManager

    return VolumeManager(ctx.paths, ctx.db)


def used_networks(project: Project, services: list[str]) -> list[str]:
    keys: list[str] = []
    for name in services:
        for key in project.services[name].get("networks") or {}:
            if key not in keys:
                keys.append(key)
    return keys


def used_volumes(project: Project, services: list[str]) -> list[str]:
    keys: list[str] = []
    for name in services:
        for vol in project.services[name].get("volumes") or []:
            source = vol.get("source")
            if vol.get("type") == "volume" and source and source not in keys:
                keys.append(source)
    return keys


def ensure_networks(ctx: Context, project: Project, keys: list[str], progress: Progress) -> None:
    """Create the project's networks that do not exist yet (external ones must exist)."""
    if not keys:
        return
    mgr = network_manager(ctx)
    existing = {n.name: n for n in mgr.list()}
    for key in keys:
        net = project.networks[key]
        name = net["name"]
        found = existing.get(name)
        if net.get("external"):
            if found is None:
                raise NotFound(f"network {name} declared as external, but could not be found")
            continue
        if found is not None:
            owner = found.labels.get(L_PROJECT)
            if owner is not None and owner != project.name:
                raise InvalidArgument(
                    f'network {name} was found but has incorrect label {L_PROJECT} set to "{owner}"'
                )
            if owner is None:
                progress.message(
                    f"WARN[0000] a network with name {name} exists but was not created by "
                    "compose.\nSet `external: true` to use an existing network"
                )
            continue
        driver = str(net.get("driver") or "bridge")
        if driver != "bridge":
            raise InvalidArgument(f'network {key}: driver "{driver}" is not supported (use bridge)')
        ipam_config = ((net.get("ipam") or {}).get("config") or [{}])[0]
        labels = dict(net.get("labels") or {})
        labels.update({L_PROJECT: project.name, L_NETWORK: key, L_VERSION: COMPOSE_VERSION})
        progress.event("Network", name, "Creating")
        mgr.create(
            name,
            driver="bridge",
            subnet=ipam_config.get("subnet"),
            gateway=ipam_config.get("gateway"),
            ip_range=ipam_config.get("ip_range"),
            internal=bool(net.get("internal", False)),
            attachable=bool(net.get("attachable", False)),
            labels=labels,
            options=dict(net.get("driver_opts") or {}),
        )
        progress.event("Network", name, "Created")


def ensure_volumes(ctx: Context, project: Project, keys: list[str], progress: Progress) -> None:
    """Create the project's named volumes that do not exist yet (external ones must exist)."""
    if not keys:
        return
    vm = volume_manager(ctx)
    for key in keys:
        vol = project.volumes[key]
        name = vol["name"]
        found = vm.find(name)
        if vol.get("external"):
            if found is None:
                raise NotFound(f'external volume "{name}" not found')
            continue
        if found is not None:
            owner = found.labels.get(L_PROJECT)
            if owner != project.name:
                progress.message(
                    f'WARN[0000] volume "{name}" already exists but was not created by Docker '
                    f"Compose. Use `external: true` to use an existing volume"
                )
            continue
        labels = dict(vol.get("labels") or {})
        labels.update({L_PROJECT: project.name, L_VOLUME: key, L_VERSION: COMPOSE_VERSION})
        progress.event("Volume", name, "Creating")
        vm.create(
            name,
            driver=str(vol.get("driver") or "local"),
            labels=labels,
            options=dict(vol.get("driver_opts") or {}),
        )
        progress.event("Volume", name, "Created")


def remove_networks(
    ctx: Context, project_name: str, project: Project | None, progress: Progress
) -> None:
    """The project's networks: those it declares and those labelled with its name."""
    mgr = network_manager(ctx)
    declared = set()
    if project is not None:
        declared = {n["name"] for n in project.networks.values() if not n.get("external")}
    for net in mgr.list():
        if net.builtin:
            continue
        owner = net.labels.get(L_PROJECT)
        if owner != project_name and not (net.name in declared and owner is None):
            continue
        if owner is None:
            continue  # declared but not created by compose: leave it alone
        progress.event("Network", net.name, "Removing")
        try:
            mgr.remove(net.id)
        except DockyardError as err:
            progress.message(f"WARN[0000] {err}")
            continue
        progress.event("Network", net.name, "Removed")


def remove_volumes(
    ctx: Context, project_name: str, project: Project | None, progress: Progress
) -> None:
    """The project's named volumes (``down -v``), never external or foreign ones."""
    vm = volume_manager(ctx)
    for vol in vm.list():
        if vol.labels.get(L_PROJECT) != project_name:
            continue
        if project is not None:
            declared = project.volumes.get(vol.labels.get(L_VOLUME, ""))
            if declared is not None and declared.get("external"):
                continue
        progress.event("Volume", vol.name, "Removing")
        try:
            vm.remove(vol.name)
        except DockyardError as err:
            progress.message(f"WARN[0000] {err}")
            continue
        progress.event("Volume", vol.name, "Removed")


def labels_of(container: Container) -> dict[str, Any]:
    return dict(container.spec.labels)
