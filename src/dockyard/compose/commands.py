"""The ``compose`` subcommands: flags (parsed in ``dockyard.cli.compose_commands``) to
project operations."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from dockyard.compose import resources
from dockyard.compose.model import COMPOSE_VERSION, Project, config_hash
from dockyard.compose.runner import Progress
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context


def dispatch(sub: str, ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    handler = _HANDLERS.get(sub)
    if handler is None:
        from dockyard.compose import interactive, listing

        handler = {**interactive.HANDLERS, **listing.HANDLERS}[sub]
    return int(handler(ctx, g, ns) or 0)


def load(g: argparse.Namespace, *, required: bool = True) -> Project | None:
    from dockyard.cli.compose_commands import load as load_project

    return load_project(g, required=required)


def require(g: argparse.Namespace) -> Project:
    project = load(g)
    assert project is not None
    return project


def project_name(g: argparse.Namespace, project: Project | None) -> str:
    if project is not None:
        return project.name
    return str(g.project_name)


def parse_scale(values: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or not count.isdigit():
            raise InvalidArgument(f"invalid --scale value {value!r}: use SERVICE=NUMBER")
        out[name] = int(count)
    return out


def targets(
    ctx: Context, project: Project, services: list[str], *, oneoff: bool | None = False
) -> list[Any]:
    """The containers a command acts on: of the named services, else of the enabled ones."""
    for name in services:
        project.service(name)
    return resources.project_containers(
        ctx, project.name, services=services or project.enabled(), oneoff=oneoff
    )


# -- up / create ---------------------------------------------------------------------


def _up_options(ns: argparse.Namespace, *, start: bool) -> Any:
    from dockyard.compose.up import UpOptions

    if ns.build and ns.no_build:
        raise InvalidArgument("--build and --no-build are incompatible")
    if ns.force_recreate and ns.no_recreate:
        raise InvalidArgument("--force-recreate and --no-recreate are incompatible")
    return UpOptions(
        services=list(ns.services) or None,
        no_deps=bool(getattr(ns, "no_deps", False)),
        recreate="force" if ns.force_recreate else "never" if ns.no_recreate else "diverged",
        start=start,
        build="always" if ns.build else "never" if ns.no_build else "auto",
        pull=ns.pull,
        scale=parse_scale(ns.scale),
        remove_orphans=ns.remove_orphans,
        timeout=getattr(ns, "timeout", None),
        quiet_pull=ns.quiet_pull,
        wait_timeout=getattr(ns, "wait_timeout", None),
        renew_anon_volumes=ns.renew_anon_volumes,
    )


def _up(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.up import Converger

    project = require(g)
    if ns.exit_code_from:
        project.service(ns.exit_code_from)
        ns.abort_on_container_exit = True
    if ns.wait:
        ns.detach = True
    if ns.detach and (ns.abort_on_container_exit or ns.abort_on_container_failure):
        raise InvalidArgument("--abort-on-container-exit and --detach are incompatible")
    opts = _up_options(ns, start=not ns.no_start)
    progress = Progress()
    conv = Converger(ctx, project, opts, progress)
    conv.plan()
    if ns.detach or ns.no_start:
        conv.run()
        if ns.wait:
            return _wait_all(ctx, project, conv, ns.wait_timeout, progress)
        return 0
    from dockyard.compose.interactive import attached_up

    return attached_up(ctx, project, conv, ns, progress)


def _wait_all(
    ctx: Context, project: Project, conv: Any, timeout: int | None, progress: Progress
) -> int:
    from dockyard.compose.up import wait_running

    for service in conv.selected:
        for c in resources.project_containers(ctx, project.name, services=[service]):
            progress.event("Container", c.name, "Waiting")
            try:
                wait_running(ctx, c, timeout)
            except DockyardError as err:
                progress.message(f"container {c.name} is not ready: {err}")
                return 1
            progress.event("Container", c.name, "Healthy")
    return 0


def _create(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.up import Converger

    project = require(g)
    Converger(ctx, project, _up_options(ns, start=False), Progress()).run()
    return 0


# -- down / stop / start / restart / kill / rm / pause ----------------------------------


def _down(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = load(g, required=False)
    name = project_name(g, project)
    ops.down(
        ctx,
        name,
        project,
        ops.DownOptions(
            volumes=ns.volumes,
            rmi=ns.rmi,
            remove_orphans=ns.remove_orphans,
            timeout=ns.timeout,
            services=list(ns.services) or None,
        ),
        Progress(),
    )
    return 0


def _stop(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = require(g)
    containers = targets(ctx, project, ns.services)
    ops.stop_containers(ctx, project, containers, Progress(), ns.timeout)
    return 0


def _start(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = require(g)
    containers = targets(ctx, project, ns.services)
    if not containers:
        raise DockyardError("service has no container to start: run `compose up` first")
    ops.start_containers(ctx, project, containers, Progress())
    return 0


def _restart(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = require(g)
    services = list(ns.services)
    if services and not ns.no_deps:
        services = list(
            dict.fromkeys(services + [d for s in services for d in project.dependents(s)])
        )
    containers = targets(ctx, project, services)
    progress = Progress()
    ops.stop_containers(ctx, project, containers, progress, ns.timeout)
    progress_start = Progress()
    ops.start_containers(ctx, project, containers, progress_start)
    return 0


def _kill(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = require(g)
    running = [c for c in targets(ctx, project, ns.services) if c.running]
    if not running:
        raise DockyardError("no container to kill")
    ops.simple_action(
        ctx, running, Progress(), ("Killing", "Killed"),
        lambda wctx, c: wctx.containers.kill(c, ns.signal),
    )  # fmt: skip
    return 0


def _pause(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = require(g)
    running = [c for c in targets(ctx, project, ns.services) if c.state.status == "running"]
    ops.simple_action(
        ctx, running, Progress(), ("Pausing", "Paused"), lambda w, c: w.containers.pause(c)
    )
    return 0


def _unpause(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = require(g)
    paused = [c for c in targets(ctx, project, ns.services) if c.state.status == "paused"]
    ops.simple_action(
        ctx, paused, Progress(), ("Unpausing", "Unpaused"), lambda w, c: w.containers.unpause(c)
    )
    return 0


def _rm(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose import ops

    project = require(g)
    containers = targets(ctx, project, ns.services, oneoff=None)
    progress = Progress()
    if ns.stop:
        ops.stop_containers(ctx, project, [c for c in containers if c.running], progress)
        containers = targets(ctx, project, ns.services, oneoff=None)
    stopped = [c for c in containers if not c.running]
    if not stopped:
        print("No stopped containers", file=sys.stderr)
        return 0
    if not ns.force and sys.stdin.isatty():
        names = ", ".join(c.name for c in stopped)
        answer = input(f"Going to remove {names}\n? Are you sure? (y/N) ")
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    ops.remove_containers(ctx, project, stopped, progress, volumes=ns.volumes)
    return 0


# -- build / pull / push ----------------------------------------------------------------


def _build(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.images import build_service

    project = require(g)
    services = project.select(list(ns.services) or None, with_deps=ns.with_dependencies)
    extra = dict(arg.partition("=")[::2] for arg in ns.build_arg)
    progress = Progress(quiet=ns.quiet)
    for name in services:
        if "build" not in project.services[name]:
            continue
        build_service(
            ctx, project, name, progress=progress, no_cache=ns.no_cache, pull=ns.pull,
            quiet=ns.quiet, extra_args=extra,
        )  # fmt: skip
    return 0


def _pull(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.images import pull_image

    project = require(g)
    services = project.select(list(ns.services) or None, with_deps=ns.include_deps)
    progress = Progress()
    failed = False
    for name in services:
        svc = project.services[name]
        if not svc.get("image"):
            continue  # built, not pulled
        if svc.get("pull_policy") in ("never", "build"):
            continue
        try:
            pull_image(ctx, name, str(svc["image"]), "always", ns.quiet, progress)
        except DockyardError as err:
            if not ns.ignore_pull_failures:
                raise
            progress.message(f"WARN[0000] {name}: {err}")
            failed = True
    return 0 if not failed else 0


def _push(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.images.reference import parse
    from dockyard.registry.progress import Progress as PushProgress
    from dockyard.registry.push import push

    project = require(g)
    services = project.select(list(ns.services) or None, with_deps=False)
    progress = Progress()
    for name in services:
        svc = project.services[name]
        if not svc.get("image"):
            continue  # Compose pushes only services with an image name
        ref = str(svc["image"])
        progress.event("Image", ref, "Pushing")
        try:
            push(ctx.images, parse(ref), progress=PushProgress(sys.stderr, quiet=True))
        except DockyardError as err:
            if not ns.ignore_push_failures:
                raise
            progress.message(f"WARN[0000] {name}: {err}")
            continue
        progress.event("Image", ref, "Pushed")
    return 0


# -- config / version -------------------------------------------------------------------


def _config(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.yamlfile import dump_yaml

    project = require(g)
    if ns.quiet:
        return 0
    if ns.services:
        for name in ns.services:
            project.service(name)
    out: str
    if ns.hash:
        names = project.enabled() if ns.hash == "*" else ns.hash.split(",")
        out = "".join(f"{n} {config_hash(project.service(n))}\n" for n in names)
    elif ns.list_services:
        out = "".join(f"{n}\n" for n in sorted(project.enabled()))
    elif ns.volumes:
        out = "".join(f"{k}\n" for k in project.volumes)
    elif ns.networks:
        out = "".join(f"{k}\n" for k in project.networks)
    elif ns.profiles:
        names = sorted({p for s in project.services.values() for p in s.get("profiles") or []})
        out = "".join(f"{p}\n" for p in names)
    elif ns.images:
        out = "".join(f"{project.image_name(n)}\n" for n in project.enabled())
    else:
        model = project.to_config()
        if ns.services:
            model["services"] = {k: v for k, v in model["services"].items() if k in ns.services}
        out = json.dumps(model, indent=2) + "\n" if ns.format == "json" else dump_yaml(model)
    if ns.output:
        with open(ns.output, "w", encoding="utf-8") as f:
            f.write(out)
    else:
        sys.stdout.write(out)
    return 0


def _version(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    if ns.short:
        print(COMPOSE_VERSION)
    elif ns.format == "json":
        print(json.dumps({"version": f"v{COMPOSE_VERSION}"}))
    else:
        print(f"dockyard Compose version v{COMPOSE_VERSION}")
    return 0


_HANDLERS = {
    "up": _up,
    "create": _create,
    "down": _down,
    "stop": _stop,
    "start": _start,
    "restart": _restart,
    "kill": _kill,
    "pause": _pause,
    "unpause": _unpause,
    "rm": _rm,
    "build": _build,
    "pull": _pull,
    "push": _push,
    "config": _config,
    "version": _version,
}
