"""Compose commands that stay with their containers: ``up`` (attached), ``logs``,
``exec`` and ``run``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from dockyard.compose import resources
from dockyard.compose.convert import L_ONEOFF, L_SLUG, container_spec
from dockyard.compose.logs import Follower, Printer, print_logs
from dockyard.compose.model import Project
from dockyard.compose.runner import Progress
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.compose.up import Converger
    from dockyard.containers.manager import Container


# -- up without -d ------------------------------------------------------------------------


def attached_up(
    ctx: Context, project: Project, conv: Converger, ns: argparse.Namespace, progress: Progress
) -> int:
    """Start, print every service's output, stop everything on Ctrl-C (or on an exit).

    Exit code: the ``--exit-code-from`` service's, else with
    ``--abort-on-container-exit`` the first container's to exit, else 0.
    """
    printer = Printer(
        color=False if ns.no_color else None,
        timestamps=ns.timestamps,
        prefix=not ns.no_log_prefix,
    )
    exits: list[tuple[str, str, int]] = []
    event = threading.Event()

    def on_exit(container_id: str, name: str, code: int) -> None:
        exits.append((container_id, name, code))
        event.set()

    follower = Follower(ctx, printer, on_exit)
    attach = _attached_services(project, conv, ns)

    def before_start(c: Container) -> None:
        if resources.service_of(c) in attach:
            follower.add(c, project.name)

    conv.opts.before_start = before_start
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the project too
    try:
        return _attached_loop(ctx, project, conv, ns, progress, follower, exits, event, attach)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _attached_loop(
    ctx: Context,
    project: Project,
    conv: Converger,
    ns: argparse.Namespace,
    progress: Progress,
    follower: Follower,
    exits: list[tuple[str, str, int]],
    event: threading.Event,
    attach: set[str],
) -> int:
    follower.start()
    aborting = ns.abort_on_container_exit or ns.abort_on_container_failure
    try:
        conv.run()
        for service, ids in conv.containers.items():
            if service in attach:
                for cid in ids:
                    follower.add(ctx.containers.get(cid), project.name)
        first_exit: int | None = None
        while follower.active() > 0:
            event.wait(0.2)
            event.clear()
            if aborting and exits:
                failing = [e for e in exits if e[2] != 0]
                if ns.abort_on_container_failure and not failing:
                    continue
                first_exit = (failing or exits)[0][2]
                progress.message("Aborting on container exit...")
                _stop_all(ctx, project, conv, progress, ns.timeout)
                break
    except KeyboardInterrupt:
        progress.message("Gracefully stopping... (press Ctrl+C again to force)")
        try:
            _stop_all(ctx, project, conv, progress, ns.timeout)
        except KeyboardInterrupt:
            _kill_all(ctx, project, conv)
        follower.stop()
        return 130
    except BaseException:
        follower.stop()
        raise
    follower.stop()
    if ns.exit_code_from:
        found = resources.project_containers(ctx, project.name, services=[ns.exit_code_from])
        return int(found[0].state.exit_code) if found else 1
    return first_exit if first_exit is not None else 0


def _attached_services(project: Project, conv: Converger, ns: argparse.Namespace) -> set[str]:
    if ns.attach:
        chosen = set(ns.attach)
    elif ns.services and not ns.attach_dependencies:
        chosen = set(ns.services)
    else:
        chosen = set(conv.selected)
    return chosen - set(ns.no_attach)


def _stop_all(
    ctx: Context, project: Project, conv: Converger, progress: Progress, timeout: int | None
) -> None:
    from dockyard.compose import ops

    containers = resources.project_containers(ctx, project.name, services=conv.selected)
    ops.stop_containers(ctx, project, containers, progress, timeout)


def _kill_all(ctx: Context, project: Project, conv: Converger) -> None:
    for c in resources.project_containers(ctx, project.name, services=conv.selected):
        if c.running:
            try:
                ctx.containers.kill(c)
            except DockyardError:
                pass


# -- logs ---------------------------------------------------------------------------------


def _logs(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.commands import require, targets
    from dockyard.containers.logs import parse_time_filter

    project = require(g)
    containers = targets(ctx, project, list(ns.services))
    if ns.index is not None:
        containers = [c for c in containers if resources.number_of(c) == ns.index]
    if ns.tail in ("all", "-1", ""):
        tail = None
    elif ns.tail.isdigit():
        tail = int(ns.tail)
    else:
        raise InvalidArgument(f'invalid value for "tail": "{ns.tail}"')
    since = int(parse_time_filter(ns.since, time.time()) * 1e9) if ns.since else None
    printer = Printer(
        color=False if ns.no_color else None,
        timestamps=ns.timestamps,
        prefix=not ns.no_log_prefix,
    )
    offsets = print_logs(containers, ctx, project.name, printer, tail=tail, since_ns=since)
    if not ns.follow:
        return 0
    follower = Follower(ctx, printer, announce_exit=False)
    for c in containers:
        if c.running:
            follower.add(c, project.name, offsets.get(c.id))
    follower.start()
    try:
        while follower.active() > 0:
            follower.wait_change(0.5)
    except KeyboardInterrupt:
        pass
    follower.stop()
    return 0


# -- exec -----------------------------------------------------------------------------------


def pick_container(
    ctx: Context, project: Project, service: str, index: int, *, running: bool = True
) -> Container:
    project.service(service)
    found = resources.project_containers(ctx, project.name, services=[service])
    chosen = [c for c in found if resources.number_of(c) == index]
    if not chosen or (running and not chosen[0].running):
        if index != 1:
            raise DockyardError(f'service "{service}" is not running container #{index}')
        raise DockyardError(f'service "{service}" is not running')
    return chosen[0]


def run_cli_command(ctx: Context, command: str, argv: list[str]) -> int:
    """Another dockyard command with these arguments (exec, top, port), in this process."""
    import importlib

    from dockyard.cli.main import COMMAND_MODULES, ArgumentParser

    module = importlib.import_module(f"dockyard.cli.{COMMAND_MODULES[command]}")
    parser = ArgumentParser(prog=f"dockyard {command}", add_help=False)
    module.configure(command, parser)
    if hasattr(module, "preprocess"):
        argv = module.preprocess(command, parser, argv)
    return int(module.execute(command, ctx, parser.parse_args(argv)) or 0)


def _exec(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.commands import require

    project = require(g)
    container = pick_container(ctx, project, ns.service, ns.index)
    if not ns.command:
        raise InvalidArgument('"compose exec" requires a service and a command')
    argv = ["-i"]
    if not ns.no_tty and not ns.detach and sys.stdin.isatty():
        argv.append("-t")
    if ns.detach:
        argv.append("-d")
    for env in ns.env:
        argv += ["-e", env]
    if ns.workdir:
        argv += ["-w", ns.workdir]
    if ns.user:
        argv += ["-u", ns.user]
    if ns.privileged:
        argv.append("--privileged")
    return run_cli_command(ctx, "exec", [*argv, container.id, *ns.command])


# -- run --------------------------------------------------------------------------------------


def _run(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    import shlex

    from dockyard.compose.commands import require
    from dockyard.compose.images import ensure_images
    from dockyard.compose.up import Converger, UpOptions, connect_networks
    from dockyard.network.options import parse_publish
    from dockyard.volumes.parse import parse_volume_flag

    project = require(g)
    service = ns.service
    project.service(service)
    progress = Progress()
    deps = [d for d in project.select([service]) if d != service]
    if deps and not ns.no_deps:
        Converger(ctx, project, UpOptions(services=deps), progress).run()
    helper = Converger(ctx, project, UpOptions(services=[service], no_deps=True), progress)
    helper.selected = [service]
    image_ids = ensure_images(
        ctx, project, [service], build="always" if ns.build else "auto", quiet=ns.quiet_pull,
        progress=progress,
    )  # fmt: skip
    resources.ensure_networks(ctx, project, resources.used_networks(project, [service]), progress)
    resources.ensure_volumes(ctx, project, resources.used_volumes(project, [service]), progress)
    slug = os.urandom(32).hex()
    name = ns.name or f"{project.name}-{service}-run-{slug[:12]}"
    image = ctx.images.get(image_ids[service])
    spec, extra = container_spec(
        project, service, 1, image_id=image.id, oneoff=not ns.use_aliases, name=name,
        resolve_container=lambda s: helper.resolve_container(ctx, s),
        state_dir=ctx.paths.root / "compose",
    )  # fmt: skip
    spec.labels[L_ONEOFF] = "True"
    spec.labels[L_SLUG] = slug
    spec.labels.update(dict(label.partition("=")[::2] for label in ns.label))
    if ns.command:
        spec.cmd = list(ns.command)
    if ns.entrypoint is not None:
        spec.entrypoint = shlex.split(ns.entrypoint)
    spec.env += list(ns.env)
    if ns.workdir:
        spec.working_dir = ns.workdir
    if ns.user:
        spec.user = ns.user
    if not ns.service_ports:
        spec.ports = []
    spec.ports += [b for value in ns.publish for b in parse_publish(value)]
    for value in ns.volume:
        source, sep, rest = value.partition(":")
        if sep and source.startswith((".", "~")):
            source = os.path.normpath(os.path.join(project.working_dir, os.path.expanduser(source)))
        mount = parse_volume_flag(source + sep + rest if sep else value)
        spec.mounts = [m for m in spec.mounts if m.target != mount.target] + [mount]
    spec.restart_policy.name = "no"
    spec.auto_remove = bool(ns.rm) and ns.detach
    interactive = not ns.detach
    spec.stdin_open = interactive
    spec.tty = interactive and not ns.no_tty and sys.stdin.isatty()
    container = ctx.containers.create(spec, image)
    try:
        connect_networks(ctx, container, extra)
    except BaseException:
        ctx.containers.remove(ctx.containers.get(container.id), force=True)
        raise
    if ns.detach:
        ctx.containers.start(container)
        print(container.name)
        return 0
    return _run_attached(ctx, container, remove=ns.rm)


def _run_attached(ctx: Context, container: Container, *, remove: bool) -> int:
    from dockyard.runtime.monitor import attach_session

    manager = ctx.containers
    previous: dict[int, Any] = {}

    def forward(signum: int, _frame: object) -> None:
        try:
            manager.runc.kill(container.id, signum)
        except DockyardError:
            pass

    try:
        manager.start(container, attach=True)
        if not container.spec.tty:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[int(sig)] = signal.signal(sig, forward)
        try:
            code = attach_session(
                ctx.paths.container_run_dir(container.id),
                stdin=True,
                tty=container.spec.tty,
                start=True,
            )
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        manager.cleanup(manager.get(container.id, refresh=False))
        return int(code or 0)
    finally:
        if remove:
            try:
                manager.remove(manager.get(container.id), force=True, volumes=True)
            except DockyardError:
                pass


HANDLERS = {"logs": _logs, "exec": _exec, "run": _run}
