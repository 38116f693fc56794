"""Commands that talk to a container's processes: logs, attach, exec, top, stats."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.errors import CommandNotExecutable, Conflict, DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context


def configure(command: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if command == "logs":
        a("-f", "--follow", action="store_true")
        a("-n", "--tail", default="all")
        a("--since")
        a("--until")
        a("-t", "--timestamps", action="store_true")
        a("--details", action="store_true")
        a("container")
    elif command == "attach":
        a("--no-stdin", action="store_true")
        a("--sig-proxy", default="true")
        a("--detach-keys")
        a("container")
    elif command == "exec":
        a("-i", "--interactive", action="store_true")
        a("-t", "--tty", action="store_true")
        a("-d", "--detach", action="store_true")
        a("-e", "--env", action="append", default=[])
        a("--env-file", action="append", default=[])
        a("-w", "--workdir")
        a("-u", "--user")
        a("--privileged", action="store_true")
        a("--detach-keys")
        a("container")
        a("command", nargs=argparse.REMAINDER)
    elif command == "top":
        a("container")
        a("ps_args", nargs=argparse.REMAINDER)
    elif command == "stats":
        a("-a", "--all", action="store_true")
        a("--no-stream", action="store_true")
        a("--no-trunc", action="store_true")
        a("--format")
        a("containers", nargs="*")


def preprocess(command: str, parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    if command in ("exec", "top"):
        from dockyard.cli.run_flags import split_at_image

        return split_at_image(parser, args)
    return args


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    return int(_HANDLERS[command](ctx, args))


def _logs(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.containers.logs import parse_time_filter, read_logs

    container = ctx.containers.get(args.container)
    if args.tail in ("all", "-1", ""):
        tail = None
    elif args.tail.isdigit():
        tail = int(args.tail)
    else:
        raise InvalidArgument(f'invalid value for "tail": "{args.tail}"')
    now = time.time()
    since = parse_time_filter(args.since, now) if args.since else None
    until = parse_time_filter(args.until, now) if args.until else None
    manager = ctx.containers

    def still_running() -> bool:
        try:
            return manager.get(container.id).running
        except DockyardError:
            return False

    read_logs(
        manager.log_path(container.id),
        follow=args.follow and container.running,
        tail=tail,
        since=since,
        until=until,
        timestamps=args.timestamps,
        still_running=still_running,
    )
    return 0


def _attach(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.runtime.monitor import attach_session

    container = ctx.containers.get(args.container)
    if not container.running:
        raise Conflict("You cannot attach to a stopped container, start it first")
    if container.state.status == "paused":
        raise Conflict("You cannot attach to a paused container, unpause it first")
    code = attach_session(
        ctx.paths.container_run_dir(container.id),
        stdin=not args.no_stdin and container.spec.stdin_open,
        tty=container.spec.tty,
        start=False,
        **({"detach_keys": args.detach_keys} if args.detach_keys else {}),
    )
    return int(code or 0)


def _exec(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.run_flags import _parse_env_file
    from dockyard.runtime.process import expand_host_env, replace_or_append, resolve_process

    container = ctx.containers.get(args.container)
    if container.state.status == "paused":
        raise Conflict(f"Container {container.id} is paused, unpause the container before exec")
    if not container.running:
        raise Conflict(f"Container {container.id} is not running")
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise InvalidArgument("exec requires at least 2 arguments\nSee 'dockyard exec --help'.")
    env_overrides: list[str] = []
    for path in args.env_file:
        env_overrides.extend(_parse_env_file(path))
    env_overrides.extend(args.env)
    spec = container.spec
    # Resolve user and working dir as `run` does, inside this container's root.
    from dockyard.records import replace

    exec_spec = replace(
        spec,
        entrypoint=[],
        cmd=command,
        user=args.user if args.user is not None else spec.user,
        working_dir=args.workdir if args.workdir is not None else spec.working_dir,
        env=[],
    )
    image_config = {"config": dict(container.config, Env=container.config.get("Env") or [])}
    process = resolve_process(
        exec_spec,
        image_config,
        ctx.paths.container_dir(container.id) / "merged",
        hostname=container.config.get("Hostname") or container.id[:12],
    )
    env = replace_or_append(process.env, expand_host_env(env_overrides))
    argv = ctx.containers.runc.exec_argv(
        container.id,
        command,
        tty=args.tty,
        env=env,
        cwd=process.cwd,
        user=f"{process.uid}:{process.gid}",
        additional_gids=process.additional_gids,
        detach=args.detach,
    )
    stdin = None if args.interactive else subprocess.DEVNULL
    proc = subprocess.run(argv, stdin=stdin, stderr=subprocess.PIPE if not args.tty else None)
    code = proc.returncode
    err = proc.stderr.decode(errors="replace") if proc.stderr else ""
    if code == 255 and ("exec failed" in err or "unable to start container process" in err):
        from dockyard.runtime.runc import clean_error

        raise CommandNotExecutable(f"OCI runtime exec failed: {clean_error(err)}")
    if err:
        sys.stderr.write(err)
    return code


def _top(ctx: Context, args: argparse.Namespace) -> int:
    container = ctx.containers.get(args.container)
    if not container.running:
        raise Conflict(f"Container {container.id} is not running")
    pids = set(ctx.containers.runc.ps(container.id))
    ps_args = [a for a in args.ps_args if a != "--"] or ["-ef"]
    out = subprocess.run(["ps", *ps_args], capture_output=True, text=True)
    if out.returncode != 0:
        raise DockyardError(f"Error running top: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    if "PID" not in header:
        raise DockyardError("Couldn't find PID field in ps output")
    pid_index = header.index("PID")
    from dockyard.cli.formatting import tabwriter

    rows = [header]
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        if (
            len(fields) > pid_index
            and fields[pid_index].isdigit()
            and int(fields[pid_index]) in pids
        ):
            rows.append(fields)
    sys.stdout.write(tabwriter(rows))
    return 0


def _cgroup_file(controller: str, container_id: str, name: str) -> str | None:
    for base in (
        f"/sys/fs/cgroup/{controller}/dockyard/{container_id}",
        f"/sys/fs/cgroup/dockyard/{container_id}",
    ):
        path = os.path.join(base, name)
        if os.path.exists(path):
            return path
    return None


def _read_int(path: str | None) -> int:
    if not path:
        return 0
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def _stats_row(ctx: Context, container: Any, trunc: bool) -> dict[str, Any]:
    from dockyard.cli.formatting import bytes_size, human_size

    cid = container.id
    cpu1 = _read_int(_cgroup_file("cpuacct", cid, "cpuacct.usage"))
    t1 = time.monotonic()
    time.sleep(0.1)
    cpu2 = _read_int(_cgroup_file("cpuacct", cid, "cpuacct.usage"))
    t2 = time.monotonic()
    cpu_percent = (cpu2 - cpu1) / ((t2 - t1) * 1e9) * 100.0 if cpu2 >= cpu1 else 0.0
    usage = _read_int(_cgroup_file("memory", cid, "memory.usage_in_bytes"))
    stat_path = _cgroup_file("memory", cid, "memory.stat")
    if stat_path:
        with open(stat_path) as f:
            for line in f:
                key, _, value = line.partition(" ")
                if key == "total_inactive_file":
                    usage = max(0, usage - int(value))
    limit = _read_int(_cgroup_file("memory", cid, "memory.limit_in_bytes"))
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if not limit or limit > total:
        limit = total
    pids = _read_int(_cgroup_file("pids", cid, "pids.current"))
    blk_read = blk_write = 0
    blk = _cgroup_file("blkio", cid, "blkio.throttle.io_service_bytes")
    if blk:
        with open(blk) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and parts[1] == "Read":
                    blk_read += int(parts[2])
                elif len(parts) == 3 and parts[1] == "Write":
                    blk_write += int(parts[2])
    net_rx = net_tx = 0
    pid = container.state.pid
    if pid:
        try:
            with open(f"/proc/{pid}/net/dev") as f:
                for line in f.readlines()[2:]:
                    name, _, data = line.partition(":")
                    if name.strip() == "lo":
                        continue
                    fields = data.split()
                    net_rx += int(fields[0])
                    net_tx += int(fields[8])
        except OSError:
            pass
    return {
        "Container": container.short_id if trunc else cid,
        "ID": container.short_id if trunc else cid,
        "Name": container.name,
        "CPUPerc": f"{cpu_percent:.2f}%",
        "MemUsage": f"{bytes_size(usage)} / {bytes_size(limit)}",
        "MemPerc": f"{(usage / limit * 100.0) if limit else 0.0:.2f}%",
        "NetIO": f"{human_size(net_rx)} / {human_size(net_tx)}",
        "BlockIO": f"{human_size(blk_read)} / {human_size(blk_write)}",
        "PIDs": str(pids),
    }


STATS_HEADERS = {
    "Container": "CONTAINER",
    "ID": "CONTAINER ID",
    "Name": "NAME",
    "CPUPerc": "CPU %",
    "MemUsage": "MEM USAGE / LIMIT",
    "MemPerc": "MEM %",
    "NetIO": "NET I/O",
    "BlockIO": "BLOCK I/O",
    "PIDs": "PIDS",
}


def _stats(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import format_output

    if args.containers:
        containers = [ctx.containers.get(ref) for ref in args.containers]
    else:
        containers = [c for c in ctx.containers.list() if args.all or c.running]
    default = (
        "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
        "\t{{.BlockIO}}\t{{.PIDs}}"
    )
    while True:
        rows = []
        for c in containers:
            if c.running:
                rows.append(_stats_row(ctx, c, not args.no_trunc))
            else:
                rows.append(
                    {
                        "Container": c.short_id,
                        "ID": c.short_id,
                        "Name": c.name,
                        "CPUPerc": "0.00%",
                        "MemUsage": "0B / 0B",
                        "MemPerc": "0.00%",
                        "NetIO": "0B / 0B",
                        "BlockIO": "0B / 0B",
                        "PIDs": "0",
                    }
                )
        if not args.no_stream:
            sys.stdout.write("\033[2J\033[H")
        sys.stdout.write(format_output(rows, args.format, default, headers=STATS_HEADERS))
        sys.stdout.flush()
        if args.no_stream:
            return 0
        time.sleep(1)
        containers = [ctx.containers.get(c.id) for c in containers]


_HANDLERS = {"logs": _logs, "attach": _attach, "exec": _exec, "top": _top, "stats": _stats}
