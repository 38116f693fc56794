"""``compose up``/``create``/``start``: converge the project's containers onto its model.

Per service, in dependency order with independent services at once: create
the missing replicas, recreate those whose config hash or image changed (or
whose dependency was recreated), remove extra replicas, then -- once every
dependency's condition holds (started, healthy, completed successfully) --
start what is not running. A failed dependency stops the services that
need it, with one clear message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dockyard.compose import resources
from dockyard.compose.convert import L_HASH, ExtraNetwork, container_spec
from dockyard.compose.images import ensure_images
from dockyard.compose.model import Project, config_hash
from dockyard.compose.runner import Contexts, Progress, run_all, run_graph
from dockyard.errors import DockyardError, InvalidArgument
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.containers.manager import Container


@record
class UpOptions:
    services: list[str] | None = None
    no_deps: bool = False
    recreate: str = "diverged"  # diverged | force | never
    renew_anon_volumes: bool = False  # -V: recreated containers get fresh anonymous volumes
    start: bool = True
    build: str = "auto"  # auto | always | never
    pull: str | None = None  # --pull: always | missing | never (else each pull_policy)
    scale: dict[str, int] = field(default_factory=dict)
    remove_orphans: bool = False
    timeout: int | None = None  # stop timeout when recreating
    quiet_pull: bool = False
    wait_timeout: float | None = None  # for service_healthy / completed conditions
    before_start: Callable[[Container], None] | None = None  # e.g. remember log offsets


class Converger:
    def __init__(self, ctx: Context, project: Project, opts: UpOptions, progress: Progress) -> None:
        self.ctx = ctx
        self.project = project
        self.opts = opts
        self.progress = progress
        self.contexts = Contexts(ctx)
        self.selected: list[str] = []
        self.image_ids: dict[str, str] = {}
        self.recreated: set[str] = set()
        self.containers: dict[str, list[str]] = {}  # service -> container IDs

    # -- the whole project --------------------------------------------------------------

    def plan(self) -> list[str]:
        """Check the selection and its settings; nothing is changed yet."""
        project, opts = self.project, self.opts
        self.selected = project.select(opts.services, with_deps=not opts.no_deps)
        for name, count in opts.scale.items():
            project.service(name)
            if count < 0:
                raise InvalidArgument(f"invalid scale for {name}: {count}")
        for name in self.selected:
            if project.services[name].get("container_name") and self.scale(name) > 1:
                raise InvalidArgument(
                    f'service "{name}" uses the custom container name '
                    f'"{project.services[name]["container_name"]}": remove it to scale the service'
                )
        return self.selected

    def scale(self, name: str) -> int:
        return self.opts.scale.get(name, self.project.scale(name))

    def run(self) -> dict[str, list[str]]:
        ctx, project = self.ctx, self.project
        if not self.selected:
            self.plan()
        self.image_ids = ensure_images(
            ctx,
            project,
            self.selected,
            build=self.opts.build,
            pull=self.opts.pull,
            quiet=self.opts.quiet_pull,
            progress=self.progress,
        )
        resources.ensure_networks(
            ctx, project, resources.used_networks(project, self.selected), self.progress
        )
        resources.ensure_volumes(
            ctx, project, resources.used_volumes(project, self.selected), self.progress
        )
        self._orphans()
        run_graph(
            self.selected,
            lambda n: self.project.dependencies(n).keys(),
            self._service,
        )
        return self.containers

    def _orphans(self) -> None:
        known = set(self.project.services)
        orphans = [
            c
            for c in resources.project_containers(self.ctx, self.project.name)
            if resources.service_of(c) not in known
        ]
        if not orphans:
            return
        if self.opts.remove_orphans:
            for c in orphans:
                self.progress.event("Container", c.name, "Removing")
                self.ctx.containers.remove(c, force=True)
                self.progress.event("Container", c.name, "Removed")
            return
        names = ", ".join(c.name for c in orphans)
        self.progress.message(
            f"WARN[0000] Found orphan containers ([{names}]) for this project. If you removed "
            "or renamed this service in your compose file, you can run this command with the "
            "--remove-orphans flag to clean it up."
        )

    # -- one service ------------------------------------------------------------------

    def _service(self, name: str) -> None:
        with self.contexts.get() as wctx:
            containers = self._converge(wctx, name)
            self.containers[name] = [c.id for c in containers]
            if not self.opts.start:
                return
            self.wait_dependencies(wctx, name)
        run_all(containers, self._start)

    def _converge(self, wctx: Context, name: str) -> list[Container]:
        svc = self.project.services[name]
        want = self.scale(name)
        expected = config_hash(svc)
        image_id = self.image_ids[name]
        deps_recreated = any(d in self.recreated for d in self.project.dependencies(name))
        existing = resources.project_containers(wctx, self.project.name, services=[name])
        keep, extra = existing[:want], existing[want:]  # the highest numbers go
        for c in extra:
            self.progress.event("Container", c.name, "Stopping")
            wctx.containers.stop(c, self.opts.timeout)
            self.progress.event("Container", c.name, "Removing")
            wctx.containers.remove(wctx.containers.get(c.id), force=True)
            self.progress.event("Container", c.name, "Removed")
        result: list[Container] = []
        stale: list[Container] = []
        for c in keep:
            diverged = c.spec.labels.get(L_HASH) != expected or c.image_id != image_id
            if self.opts.recreate == "force" or (
                self.opts.recreate != "never" and (diverged or deps_recreated)
            ):
                stale.append(c)
            else:
                result.append(c)
        if stale:
            self.recreated.add(name)
        recreated: list[Container] = []

        def recreate(c: Container) -> None:
            with self.contexts.get() as tctx:
                recreated.append(self._recreate(tctx, name, c))

        run_all(stale, recreate)
        result.extend(recreated)
        used = {resources.number_of(c) for c in result}
        numbers: list[int] = []
        n = 1
        while len(result) + len(numbers) < want:
            if n not in used:
                numbers.append(n)
            n += 1
        created: list[Container] = []

        def create(number: int) -> None:
            with self.contexts.get() as tctx:
                created.append(self._create(tctx, name, number))

        run_all(numbers, create)
        result.extend(created)
        result.sort(key=resources.number_of)
        return result

    def resolve_container(self, wctx: Context, service: str) -> str:
        """The container ``service:X``/``volumes_from: X`` mean: X's first replica."""
        found = resources.project_containers(wctx, self.project.name, services=[service])
        return found[0].name if found else self.project.container_name(service, 1)

    def _create(self, wctx: Context, name: str, number: int) -> Container:
        image = wctx.images.get(self.image_ids[name])
        spec, extra = container_spec(
            self.project,
            name,
            number,
            image_id=image.id,
            resolve_container=lambda s: self.resolve_container(wctx, s),
            state_dir=wctx.paths.root / "compose",
        )
        self.progress.event("Container", str(spec.name), "Creating")
        container = wctx.containers.create(spec, image)
        try:
            connect_networks(wctx, container, extra)
        except BaseException:
            wctx.containers.remove(wctx.containers.get(container.id), force=True)
            raise
        self.progress.event("Container", container.name, "Created")
        return container

    def _recreate(self, wctx: Context, name: str, old: Container) -> Container:
        self.progress.event("Container", old.name, "Recreate")
        manager = wctx.containers
        manager.stop(old, self.opts.timeout)
        aside = f"{old.id[:12]}_{old.name}"
        manager.rename(old, aside)
        new: Container | None = None
        try:
            new = self._create(wctx, name, resources.number_of(old))
            if not self.opts.renew_anon_volumes:  # Compose keeps them: a database's data
                image = wctx.images.get(new.image_id)
                manager.volumes.inherit_anonymous(old.id, new.id, new.spec, image.config)
        except BaseException:
            if new is not None:
                manager.remove(manager.get(new.id), force=True)
            manager.rename(manager.get(old.id), old.name)
            raise
        manager.remove(manager.get(old.id), force=True)
        self.progress.event("Container", new.name, "Recreated")
        return new

    def _start(self, container: Container) -> None:
        with self.contexts.get() as wctx:
            current = wctx.containers.get(container.id)
            if current.running:
                self.progress.event("Container", current.name, "Running")
                return
            if self.opts.before_start is not None:
                self.opts.before_start(current)
            self.progress.event("Container", current.name, "Starting")
            wctx.containers.start(current)
            self.progress.event("Container", current.name, "Started")

    # -- dependency conditions ----------------------------------------------------------

    def wait_dependencies(self, wctx: Context, name: str) -> None:
        """Block until every dependency's condition holds; raise when one never will."""
        for dep, cond in self.project.dependencies(name).items():
            condition = str(cond.get("condition") or "service_started")
            if dep not in self.project.services or condition == "service_started":
                continue
            if self.opts.no_deps and dep not in self.selected:
                continue
            for c in resources.project_containers(wctx, self.project.name, services=[dep]):
                self.progress.event("Container", c.name, "Waiting")
                if condition == "service_healthy":
                    wait_healthy(wctx, c, self.opts.wait_timeout)
                    self.progress.event("Container", c.name, "Healthy")
                else:
                    wait_completed(wctx, c, dep, self.opts.wait_timeout)
                    self.progress.event("Container", c.name, "Exited")


def connect_networks(wctx: Context, container: Container, extra: list[ExtraNetwork]) -> None:
    if not extra:
        return
    mgr = resources.network_manager(wctx)
    for net in extra:
        mgr.connect(
            net.name,
            container.id,
            name=container.name,
            spec=container.spec,
            aliases=net.aliases,
            ip=net.ipv4_address,
        )


def _has_healthcheck(c: Container) -> bool:
    test = (c.config.get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def wait_healthy(wctx: Context, container: Container, timeout: float | None = None) -> None:
    if not _has_healthcheck(container):
        raise DockyardError(f"container {container.name} has no healthcheck configured")
    deadline = _deadline(timeout)
    delay = 0.05
    while True:
        c = wctx.containers.get(container.id)
        status = (c.state.health or {}).get("Status")
        if status == "healthy":
            return
        if status == "unhealthy":
            raise DockyardError(f"dependency failed to start: container {c.name} is unhealthy")
        if not c.running and c.state.status != "created":
            raise DockyardError(
                f"dependency failed to start: container {c.name} exited ({c.state.exit_code})"
            )
        if deadline is not None and time.monotonic() > deadline:
            raise DockyardError(f"container {c.name} did not become healthy in time")
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def wait_completed(
    wctx: Context, container: Container, service: str, timeout: float | None = None
) -> None:
    deadline = _deadline(timeout)
    delay = 0.05
    while True:
        c = wctx.containers.get(container.id)
        if not c.running and c.state.status not in ("created", "restarting"):
            if c.state.exit_code == 0:
                return
            raise DockyardError(
                f'service "{service}" didn\'t complete successfully: exit {c.state.exit_code}'
            )
        if deadline is not None and time.monotonic() > deadline:
            raise DockyardError(f'service "{service}" did not complete in time')
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


def wait_running(wctx: Context, container: Container, timeout: float | None = None) -> None:
    """``up --wait``: running, and healthy when it has a healthcheck."""
    if _has_healthcheck(container):
        wait_healthy(wctx, container, timeout)
        return
    c = wctx.containers.get(container.id)
    if not c.running and c.state.exit_code != 0:
        raise DockyardError(f"container {c.name} exited ({c.state.exit_code})")
