"""``update``: change a container's resource limits and restart policy, as Docker's CLI."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context


def configure(command: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    a("--restart")
    a("-m", "--memory")
    a("--memory-swap")
    a("--cpus")
    a("-c", "--cpu-shares", type=int)
    a("--pids-limit", type=int)
    a("containers", nargs="+")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.container_commands import for_each_container
    from dockyard.cli.run_flags import parse_cpus, parse_restart, parse_size_flag
    from dockyard.containers.update import update_container

    resources: dict[str, int] = {}
    if args.memory is not None:
        resources["memory"] = parse_size_flag(args.memory)
    if args.memory_swap is not None:
        swap = args.memory_swap
        resources["memory_swap"] = -1 if swap == "-1" else parse_size_flag(swap)
    if args.cpus is not None:
        resources["nano_cpus"] = parse_cpus(args.cpus)
    if args.cpu_shares is not None:
        resources["cpu_shares"] = args.cpu_shares
    if args.pids_limit is not None:
        resources["pids_limit"] = args.pids_limit
    restart = parse_restart(args.restart) if args.restart is not None else None
    if not resources and restart is None:
        raise InvalidArgument("you must provide one or more flags when using this command")
    return for_each_container(
        ctx,
        args.containers,
        lambda c: update_container(ctx.containers, c, resources=resources, restart=restart),
    )
