"""version and info."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.cli.context import Context


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command == "system reset":
        p.add_argument("-f", "--force", action="store_true")
        return
    p.add_argument("-f", "--format")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    if command == "system reset":
        return _reset(ctx, args)
    from dockyard import __version__
    from dockyard.config import find_runtime

    runtime = find_runtime(ctx.runtime_name)
    runtime_version = subprocess.run(
        [runtime, "--version"], capture_output=True, text=True
    ).stdout.split("\n")[0]
    if command == "version":
        data = {
            "Client": {"Version": __version__, "Os": "linux", "Arch": platform.machine()},
            "Server": {
                "Version": __version__,
                "Runtime": runtime,
                "RuntimeVersion": runtime_version,
            },
        }
        if args.format:
            from dockyard.cli.gotemplate import render

            print(render(args.format, data))
        else:
            print(f"Client:\n Version:\t{__version__}\n OS/Arch:\tlinux/{platform.machine()}\n")
            print(f"Engine:\n Version:\t{__version__}\n Runtime:\t{runtime} ({runtime_version})")
        return 0
    containers = ctx.containers.list()
    info = {
        "Containers": len(containers),
        "ContainersRunning": sum(1 for c in containers if c.state.status == "running"),
        "ContainersPaused": sum(1 for c in containers if c.state.status == "paused"),
        "ContainersStopped": sum(1 for c in containers if not c.running),
        "Images": len(ctx.images.list()),
        "Driver": "overlay2",
        "DockerRootDir": str(ctx.paths.root),
        "DefaultRuntime": runtime,
        "CgroupDriver": "cgroupfs",
        "KernelVersion": platform.release(),
        "OperatingSystem": "linux",
        "ServerVersion": __version__,
    }
    if args.format:
        from dockyard.cli.gotemplate import render

        print(render(args.format, info))
    else:
        print(json.dumps(info, indent=1))
    return 0


def _reset(ctx: Context, args: argparse.Namespace) -> int:
    """Podman's ``system reset``: every container, image, volume and network goes."""
    import sys

    from dockyard.reset import reset

    if not args.force:
        if not sys.stdin.isatty():
            raise DockyardError("refusing to reset without --force when not on a terminal")
        answer = input(
            f"WARNING! This will remove all containers, images, volumes and networks in "
            f"{ctx.paths.root}.\nAre you sure you want to continue? [y/N] "
        )
        if answer.strip().lower() not in ("y", "yes"):
            return 0
    ctx.close()
    reset(ctx.paths)
    return 0
