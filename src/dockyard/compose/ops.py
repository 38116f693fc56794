"""Project operations on existing containers: down, stop, start, restart, kill, rm, pause.

Stopping goes in reverse dependency order (a service stops after the ones
that depend on it), starting in dependency order; independent services are
handled at once. Only containers labelled with the project are touched.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.compose import resources
from dockyard.compose.convert import L_DEPENDS_ON
from dockyard.compose.model import Project
from dockyard.compose.runner import Contexts, Progress, run_all, run_graph
from dockyard.errors import DockyardError, NotFound
from dockyard.records import record

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.containers.manager import Container


def _by_service(containers: list[Container]) -> dict[str, list[Container]]:
    grouped: dict[str, list[Container]] = {}
    for c in containers:
        grouped.setdefault(resources.service_of(c), []).append(c)
    return grouped


def in_reverse_order(
    ctx: Context,
    project: Project | None,
    containers: list[Container],
    action: Callable[[Context, Container], None],
) -> None:
    """``action`` on each container, dependents before their dependencies."""
    grouped = _by_service(containers)
    contexts = Contexts(ctx)

    def service_work(service: str) -> None:
        def one(c: Container) -> None:
            with contexts.get() as wctx:
                action(wctx, c)

        run_all(grouped[service], one)

    from_labels = label_dependencies(containers)

    def dependents(service: str) -> list[str]:
        if project is None or service not in project.services:
            return [s for s, deps in from_labels.items() if service in deps]
        return project.dependents(service)

    run_graph(list(grouped), dependents, service_work)


def label_dependencies(containers: list[Container]) -> dict[str, set[str]]:
    """Service -> services it needs, from the containers alone (no Compose file).

    The ``depends_on`` label, and ``network_mode: container:X`` of a project container.
    """
    service_by_name = {c.name: resources.service_of(c) for c in containers}
    deps: dict[str, set[str]] = {}
    for c in containers:
        mine = deps.setdefault(resources.service_of(c), set())
        for item in (c.spec.labels.get(L_DEPENDS_ON) or "").split(","):
            if item:
                mine.add(item.split(":")[0])
        mode = c.spec.network_mode
        if mode.startswith("container:") and mode[10:] in service_by_name:
            mine.add(service_by_name[mode[10:]])
    return deps


def in_order(
    ctx: Context,
    project: Project,
    containers: list[Container],
    action: Callable[[Context, Container], None],
) -> None:
    """``action`` on each container, dependencies first."""
    grouped = _by_service(containers)
    contexts = Contexts(ctx)

    def service_work(service: str) -> None:
        def one(c: Container) -> None:
            with contexts.get() as wctx:
                action(wctx, c)

        run_all(grouped[service], one)

    def deps(service: str) -> list[str]:
        if service not in project.services:
            return []
        return list(project.dependencies(service))

    run_graph(list(grouped), deps, service_work)


def stop_containers(
    ctx: Context,
    project: Project | None,
    containers: list[Container],
    progress: Progress,
    timeout: int | None = None,
) -> None:
    def stop(wctx: Context, c: Container) -> None:
        current = wctx.containers.get(c.id)
        if not current.running:
            return
        progress.event("Container", c.name, "Stopping")
        wctx.containers.stop(current, timeout)
        progress.event("Container", c.name, "Stopped")

    in_reverse_order(ctx, project, containers, stop)


def remove_containers(
    ctx: Context,
    project: Project | None,
    containers: list[Container],
    progress: Progress,
    *,
    timeout: int | None = None,
    volumes: bool = False,
) -> None:
    """Stop (in reverse dependency order) and remove; ``volumes``: anonymous ones too."""

    def remove(wctx: Context, c: Container) -> None:
        try:
            current = wctx.containers.get(c.id)
        except NotFound:
            return
        if current.running:
            progress.event("Container", c.name, "Stopping")
            wctx.containers.stop(current, timeout)
            progress.event("Container", c.name, "Stopped")
            current = wctx.containers.get(c.id)
        progress.event("Container", c.name, "Removing")
        wctx.containers.remove(current, force=True, volumes=volumes)
        progress.event("Container", c.name, "Removed")

    in_reverse_order(ctx, project, containers, remove)


@record
class DownOptions:
    volumes: bool = False
    rmi: str | None = None  # all | local
    remove_orphans: bool = False
    timeout: int | None = None
    services: list[str] | None = None


def down(
    ctx: Context,
    name: str,
    project: Project | None,
    opts: DownOptions,
    progress: Progress,
) -> None:
    """Remove the project's containers and networks (and volumes, images if asked)."""
    containers = resources.project_containers(ctx, name, oneoff=None)
    if opts.services:
        containers = [c for c in containers if resources.service_of(c) in opts.services]
    known = set(project.services) if project is not None else None
    orphans = [c for c in containers if known is not None and resources.service_of(c) not in known]
    if orphans and not opts.remove_orphans:
        containers = [c for c in containers if c not in orphans]
        progress.message(
            "WARN[0000] Found orphan containers (["
            + ", ".join(c.name for c in orphans)
            + "]) for this project. If you removed or renamed this service in your compose "
            "file, you can run this command with the --remove-orphans flag to clean it up."
        )
    images = {c.image_id: c.image for c in containers}
    remove_containers(
        ctx, project, containers, progress, timeout=opts.timeout, volumes=opts.volumes
    )
    if opts.services:
        return  # `down SERVICE` removes only those containers
    resources.remove_networks(ctx, name, project, progress)
    shutil.rmtree(ctx.paths.root / "compose" / name, ignore_errors=True)  # written configs
    if opts.volumes:
        resources.remove_volumes(ctx, name, project, progress)
    if opts.rmi:
        _remove_images(ctx, name, project, opts.rmi, images, progress)


def _remove_images(
    ctx: Context,
    name: str,
    project: Project | None,
    mode: str,
    seen: dict[str, str],
    progress: Progress,
) -> None:
    refs: list[str] = []
    if project is not None:
        for service, svc in project.services.items():
            if mode == "local" and svc.get("image"):
                continue
            refs.append(project.image_name(service))
    else:
        refs = [ref for ref in seen.values() if mode == "all" or ref.startswith(f"{name}-")]
    for ref in dict.fromkeys(refs):
        try:
            ctx.images.resolve(ref)
        except NotFound:
            continue
        progress.event("Image", ref, "Removing")
        try:
            ctx.images.remove(ref)
        except DockyardError as err:
            progress.message(f"WARN[0000] {err}")
            continue
        progress.event("Image", ref, "Removed")


def start_containers(
    ctx: Context,
    project: Project,
    containers: list[Container],
    progress: Progress,
) -> None:
    """``compose start``: dependencies first, waiting for their conditions."""
    from dockyard.compose.up import Converger, UpOptions

    waiter = Converger(ctx, project, UpOptions(no_deps=True), progress)
    waiter.selected = sorted({resources.service_of(c) for c in containers})
    waited: set[str] = set()

    def start(wctx: Context, c: Container) -> None:
        service = resources.service_of(c)
        if service in project.services and service not in waited:
            waiter.wait_dependencies(wctx, service)
            waited.add(service)
        current = wctx.containers.get(c.id)
        if current.running:
            return
        progress.event("Container", c.name, "Starting")
        wctx.containers.start(current)
        progress.event("Container", c.name, "Started")

    in_order(ctx, project, containers, start)


def simple_action(
    ctx: Context,
    containers: list[Container],
    progress: Progress,
    verb: tuple[str, str],
    action: Callable[[Context, Container], None],
) -> None:
    """The same action on every container at once (kill, pause, unpause)."""
    contexts = Contexts(ctx)

    def one(c: Container) -> None:
        with contexts.get() as wctx:
            progress.event("Container", c.name, verb[0])
            action(wctx, wctx.containers.get(c.id))
            progress.event("Container", c.name, verb[1])

    run_all(containers, one)
