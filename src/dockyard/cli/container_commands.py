"""Container lifecycle commands: create, run, start, ps, stop, kill, rm, inspect, ..."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.containers.manager import Container


def configure(command: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if command in ("create", "run"):
        from dockyard.cli.run_flags import add_container_flags

        if command == "run":
            a("-d", "--detach", action="store_true")
            a("-a", "--attach", action="append", default=[])
            a("--sig-proxy", default="true")
            a("--detach-keys")
        add_container_flags(p)
    elif command == "start":
        a("-a", "--attach", action="store_true")
        a("-i", "--interactive", action="store_true")
        a("--detach-keys")
        a("containers", nargs="+")
    elif command == "ps":
        a("-a", "--all", action="store_true")
        a("-q", "--quiet", action="store_true")
        a("-n", "--last", type=int, default=-1)
        a("-l", "--latest", action="store_true")
        a("-s", "--size", action="store_true")
        a("-f", "--filter", action="append", default=[])
        a("--format")
        a("--no-trunc", action="store_true")
    elif command in ("stop", "restart"):
        a("-t", "--time", "--timeout", type=int, dest="time")
        a("-s", "--signal")
        a("containers", nargs="+")
    elif command == "kill":
        a("-s", "--signal", default="KILL")
        a("containers", nargs="+")
    elif command == "rm":
        a("-f", "--force", action="store_true")
        a("-v", "--volumes", action="store_true")
        a("-l", "--link", action="store_true")
        a("containers", nargs="+")
    elif command == "inspect":
        a("-f", "--format")
        a("-s", "--size", action="store_true")
        a("--type", choices=["container", "image", "network", "volume"])
        a("names", nargs="+")
    elif command in ("wait", "pause", "unpause"):
        a("containers", nargs="+")
    elif command == "rename":
        a("container")
        a("new_name")
    elif command == "container prune":
        a("-f", "--force", action="store_true")
        a("--filter", action="append", default=[])
    elif command == "container cleanup":
        a("container")


def preprocess(command: str, parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    if command in ("create", "run"):
        from dockyard.cli.run_flags import split_at_image

        return split_at_image(parser, args)
    return args


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    handler = _HANDLERS[command]
    return handler(ctx, args)


# -- create / run / start ------------------------------------------------------


def _image_for(ctx: Context, ref: str, pull: str, quiet: bool) -> Any:
    """The local image, pulled first when missing (or always, with --pull always)."""
    if pull != "always":
        try:
            return ctx.images.resolve(ref)
        except NotFound:
            if pull == "never":
                raise
    from dockyard.registry.pull import ensure_image

    return ensure_image(ctx, ref, quiet=quiet, policy=pull)


def _create(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.run_flags import to_spec

    spec = to_spec(args)
    image = _image_for(ctx, spec.image, args.pull, args.quiet)
    container = ctx.containers.create(spec, image)
    print(container.id)
    return 0


def _run(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.run_flags import to_spec

    spec = to_spec(args)
    image = _image_for(ctx, spec.image, args.pull, args.quiet)
    manager = ctx.containers
    container = manager.create(spec, image)
    if args.detach:
        try:
            manager.start(container)
        except DockyardError:
            if spec.auto_remove:
                manager.remove(manager.get(container.id, refresh=False), force=True)
            raise
        print(container.id)
        return 0
    return _run_attached(
        ctx,
        container,
        stdin=spec.stdin_open,
        remove_on_error=spec.auto_remove,
        sig_proxy=args.sig_proxy != "false" and not spec.tty,
    )


def _run_attached(
    ctx: Context, container: Container, *, stdin: bool, remove_on_error: bool, sig_proxy: bool
) -> int:
    from dockyard.runtime.monitor import attach_session

    manager = ctx.containers
    try:
        manager.start(container, attach=True)
    except DockyardError:
        if remove_on_error:
            manager.remove(manager.get(container.id, refresh=False), force=True)
        raise
    run_dir = ctx.paths.container_run_dir(container.id)
    previous: dict[signal.Signals, Any] = {}
    if sig_proxy:

        def forward(signum: int, _frame: object) -> None:
            try:
                manager.runc.kill(container.id, signum)
            except DockyardError:
                pass

        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            previous[signum] = signal.signal(signum, forward)
    try:
        code = attach_session(run_dir, stdin=stdin, tty=container.spec.tty, start=True)
    except DockyardError:
        manager.cleanup(manager.get(container.id, refresh=False))
        if remove_on_error:
            _remove_if_present(ctx, container.id)
        raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if code is None:  # detached with the detach keys: the container goes on
        return 0
    manager.cleanup(manager.get(container.id, refresh=False))
    return int(code)


def _remove_if_present(ctx: Context, container_id: str) -> None:
    try:
        ctx.containers.remove(ctx.containers.get(container_id, refresh=False), force=True)
    except NotFound:
        pass


def _start(ctx: Context, args: argparse.Namespace) -> int:
    if args.attach and len(args.containers) > 1:
        raise InvalidArgument("you cannot start and attach multiple containers at once")
    failed = False
    for ref in args.containers:
        try:
            container = ctx.containers.get(ref)
            if args.attach or args.interactive:
                if container.running:
                    from dockyard.runtime.monitor import attach_session

                    code = attach_session(
                        ctx.paths.container_run_dir(container.id),
                        stdin=args.interactive,
                        tty=container.spec.tty,
                        start=False,
                    )
                    return int(code or 0)
                return _run_attached(
                    ctx,
                    container,
                    stdin=args.interactive,
                    remove_on_error=False,
                    sig_proxy=not container.spec.tty,
                )
            ctx.containers.start(container)
            print(ref)
        except DockyardError as err:
            if len(args.containers) == 1:
                raise
            print(f"Error response from daemon: {err}", file=sys.stderr)
            failed = True
    if failed:
        raise DockyardError("failed to start containers: " + ", ".join(args.containers))
    return 0


# -- ps ------------------------------------------------------------------------

PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "CreatedAt": "CREATED AT",
    "RunningFor": "CREATED",
    "Status": "STATUS",
    "Ports": "PORTS",
    "Names": "NAMES",
    "Size": "SIZE",
    "State": "STATE",
    "Labels": "LABELS",
    "Mounts": "MOUNTS",
    "Networks": "NETWORKS",
    "LocalVolumes": "LOCAL VOLUMES",
}


def ps_row(
    ctx: Context, container: Container, *, trunc: bool, size: bool, now: float
) -> dict[str, Any]:
    from dockyard.cli.formatting import human_size, time_ago
    from dockyard.containers.state import parse_time
    from dockyard.containers.view import command_line, ellipsis, status_text

    command = " ".join(command_line(container))
    if trunc:
        command = ellipsis(command, 20)
    image = container.image
    if image.startswith("sha256:") and trunc:
        image = image[7:19]
    created = parse_time(container.created)
    row: dict[str, Any] = {
        "ID": container.short_id if trunc else container.id,
        "Image": image,
        "Command": f'"{command}"',
        "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S +0000 UTC", time.gmtime(created)),
        "RunningFor": time_ago(created),
        "Ports": _ports_text(ctx, container),
        "State": container.state.status,
        "Status": status_text(container, now),
        "Names": container.name,
        "Labels": ",".join(
            f"{k}={v}" for k, v in sorted((container.config.get("Labels") or {}).items())
        ),
        "Mounts": ",".join(m.source or m.target for m in container.spec.mounts),
        "Networks": container.spec.network_mode
        if container.spec.network_mode not in ("none",)
        else "none",
        "LocalVolumes": str(sum(1 for m in container.spec.mounts if m.type == "volume")),
        "Size": "",
    }
    row["Label"] = _LabelLookup(container.config.get("Labels") or {})
    if size:
        from dockyard.fsutil import tree_size

        rw = tree_size(ctx.paths.container_dir(container.id) / "upper")
        virtual = rw
        try:
            virtual += ctx.images.get(container.image_id).size
        except DockyardError:
            pass
        row["Size"] = f"{human_size(rw)} (virtual {human_size(virtual)})"
    return row


class _LabelLookup:
    """Lets ``{{.Label "key"}}`` work in ps templates."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels

    def __call__(self, key: str) -> str:
        return self.labels.get(key, "")


def _ports_text(ctx: Context, container: Container) -> str:
    if not container.running:
        return ""
    from dockyard.network import ports_text

    return ports_text(ctx, container)


def _matches(
    container: Container, filters: list[tuple[str, str]], ctx: Context, ordered: list[Container]
) -> bool:
    from dockyard.containers.state import parse_time

    for key, value in filters:
        if key == "id" and not container.id.startswith(value):
            return False
        if key == "name" and value.removeprefix("/") not in container.name:
            return False
        if key == "status" and container.state.status != value:
            return False
        if key == "exited" and not (
            container.state.status == "exited" and str(container.state.exit_code) == value
        ):
            return False
        if key == "label":
            k, sep, v = value.partition("=")
            labels = container.config.get("Labels") or {}
            if k not in labels or (sep and labels[k] != v):
                return False
        if key == "ancestor":
            try:
                image = ctx.images.resolve(value)
            except DockyardError:
                return False
            if container.image_id != image.id:
                return False
        if key in ("before", "since"):
            try:
                other = ctx.containers.get(value, refresh=False)
            except DockyardError:
                return False
            mine, theirs = parse_time(container.created), parse_time(other.created)
            if key == "before" and not mine < theirs:
                return False
            if key == "since" and not mine > theirs:
                return False
        if key == "health":
            status = (
                (container.state.health or {}).get("Status", "none")
                if container.running
                else "none"
            )
            if status != value:
                return False
    return True


_PS_FILTERS = {
    "id",
    "name",
    "status",
    "exited",
    "label",
    "ancestor",
    "before",
    "since",
    "health",
    "network",
    "volume",
    "publish",
    "expose",
    "is-task",
}
_STATUSES = {"created", "restarting", "running", "removing", "paused", "exited", "dead"}


def parse_filters(values: list[str], allowed: set[str]) -> list[tuple[str, str]]:
    out = []
    for value in values:
        key, sep, val = value.partition("=")
        if not sep:
            raise InvalidArgument("bad format of filter (expected name=value)")
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.append((key, val))
    return out


def _ps(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import format_output

    filters = parse_filters(args.filter, _PS_FILTERS)
    for key, value in filters:
        if key == "status" and value not in _STATUSES:
            raise InvalidArgument(f"invalid filter 'status={value}'")
    containers = ctx.containers.list()
    show_all = (
        args.all
        or args.last > 0
        or args.latest
        or any(k in ("status", "exited") for k, _ in filters)
    )
    if not show_all:
        containers = [c for c in containers if c.running]
    containers = [c for c in containers if _matches(c, filters, ctx, containers)]
    if args.latest:
        containers = containers[:1]
    elif args.last > 0:
        containers = containers[: args.last]
    if args.quiet:
        for c in containers:
            print(c.id if args.no_trunc else c.short_id)
        return 0
    now = time.time()
    rows = [ps_row(ctx, c, trunc=not args.no_trunc, size=args.size, now=now) for c in containers]
    default = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    if args.size:
        default += "\t{{.Size}}"
    sys.stdout.write(format_output(rows, args.format, default, headers=PS_HEADERS))
    return 0


# -- stop / kill / restart / rm / wait / pause ------------------------------------


def for_each_container(ctx: Context, refs: list[str], action: Any, echo: bool = True) -> int:
    """Apply an action to each container; Docker prints each name and one error per failure."""
    errors = []
    for ref in refs:
        try:
            action(ctx.containers.get(ref))
            if echo:
                print(ref)
        except DockyardError as err:
            errors.append(str(err))
    if errors:
        for message in errors[:-1]:
            print(f"Error response from daemon: {message}", file=sys.stderr)
        raise DockyardError(errors[-1], exit_code=1)
    return 0


def _stop(ctx: Context, args: argparse.Namespace) -> int:
    if args.signal:
        from dockyard.runtime.runc import parse_signal

        parse_signal(args.signal)
    return for_each_container(
        ctx, args.containers, lambda c: ctx.containers.stop(c, args.time, args.signal)
    )


def _restart(ctx: Context, args: argparse.Namespace) -> int:
    return for_each_container(ctx, args.containers, lambda c: ctx.containers.restart(c, args.time))


def _kill(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.runtime.runc import parse_signal

    parse_signal(args.signal)
    return for_each_container(ctx, args.containers, lambda c: ctx.containers.kill(c, args.signal))


def _rm(ctx: Context, args: argparse.Namespace) -> int:
    return for_each_container(
        ctx,
        args.containers,
        lambda c: ctx.containers.remove(c, force=args.force, volumes=args.volumes),
    )


def _pause(ctx: Context, args: argparse.Namespace) -> int:
    return for_each_container(ctx, args.containers, ctx.containers.pause)


def _unpause(ctx: Context, args: argparse.Namespace) -> int:
    return for_each_container(ctx, args.containers, ctx.containers.unpause)


def _wait(ctx: Context, args: argparse.Namespace) -> int:
    def wait_one(container: Container) -> None:
        manager = ctx.containers
        delay = 0.01
        while True:
            try:
                current = manager.get(container.id)
            except NotFound:
                print(container.state.exit_code)
                return
            if not current.running:
                print(current.state.exit_code)
                return
            manager.wait_exit(current, 1.0)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    return for_each_container(ctx, args.containers, wait_one, echo=False)


def _rename(ctx: Context, args: argparse.Namespace) -> int:
    ctx.containers.rename(ctx.containers.get(args.container), args.new_name)
    return 0


def _prune(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import confirm, human_size

    warning = "WARNING! This will remove all stopped containers."
    if not args.force and sys.stdin.isatty() and not confirm(warning):
        return 0
    removed, reclaimed = ctx.containers.prune()
    if removed:
        print("Deleted Containers:")
        for cid in removed:
            print(cid)
        print()
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


def _cleanup(ctx: Context, args: argparse.Namespace) -> int:
    try:
        container = ctx.containers.get(args.container, refresh=False)
    except NotFound:
        return 0
    ctx.containers.cleanup(container, blocking=False)
    return 0


# -- inspect -------------------------------------------------------------------


def container_inspect(ctx: Context, container: Container, size: bool = False) -> dict[str, Any]:
    from dockyard.containers.view import inspect

    layer_dirs: list[str] = []
    try:
        image = ctx.images.get(container.image_id)
        layer_dirs = [str(p) for p in reversed(ctx.images.layer_dirs(image))]
    except DockyardError:
        pass
    extra: dict[str, Any] = {}
    hooks = getattr(ctx.containers, "inspect_extras", None)
    if hooks is not None:
        extra = hooks(container)
    data = inspect(container, ctx.paths, layer_dirs, extra)
    if size:
        from dockyard.fsutil import tree_size

        data["SizeRw"] = tree_size(ctx.paths.container_dir(container.id) / "upper")
        data["SizeRootFs"] = data["SizeRw"]
    return data


def _inspect(ctx: Context, args: argparse.Namespace) -> int:
    results: list[Any] = []
    missing: list[str] = []
    for name in args.names:
        found: Any = None
        if args.type in (None, "container"):
            try:
                found = container_inspect(ctx, ctx.containers.get(name), args.size)
            except NotFound:
                found = None
        if found is None and args.type in (None, "image"):
            from dockyard.cli.image_commands import image_inspect_data

            try:
                found = image_inspect_data(ctx, ctx.images.resolve(name))
            except (NotFound, InvalidArgument):
                found = None
        if found is None and args.type in (None, "network", "volume"):
            found = _inspect_other(ctx, name, args.type)
        if found is None:
            missing.append(name)
        else:
            results.append(found)
    if results or not args.format:
        from dockyard.cli.formatting import print_inspect

        print_inspect(results, args.format)
    if missing:
        raise DockyardError(f"No such object: {missing[-1]}", exit_code=1)
    return 0


def _inspect_other(ctx: Context, name: str, kind: str | None) -> Any:
    """Networks, then volumes, as ``docker inspect`` looks them up."""
    if kind in (None, "network"):
        try:
            return ctx.containers.networks.inspect(name)
        except NotFound:
            pass
    if kind in (None, "volume"):
        try:
            return ctx.containers.volumes.inspect(name)
        except NotFound:
            pass
    return None


_HANDLERS = {
    "create": _create,
    "run": _run,
    "start": _start,
    "ps": _ps,
    "stop": _stop,
    "restart": _restart,
    "kill": _kill,
    "rm": _rm,
    "inspect": _inspect,
    "wait": _wait,
    "rename": _rename,
    "pause": _pause,
    "unpause": _unpause,
    "container prune": _prune,
    "container cleanup": _cleanup,
}
