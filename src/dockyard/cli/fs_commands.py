"""Commands over a container's filesystem: cp, diff, export."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, BinaryIO

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from pathlib import Path

    from dockyard.cli.context import Context
    from dockyard.containers.cp import FilesystemView
    from dockyard.containers.manager import Container


def configure(command: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if command == "cp":
        a("-a", "--archive", action="store_true")
        a("-L", "--follow-link", action="store_true")
        a("-q", "--quiet", action="store_true")
        a("source")
        a("destination")
    elif command == "diff":
        a("container")
    elif command == "export":
        a("-o", "--output")
        a("container")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    return {"cp": _cp, "diff": _diff, "export": _export}[command](ctx, args)


def _layers(ctx: Context, container: Container) -> list[Path]:
    return ctx.images.layer_dirs(ctx.images.get(container.image_id))


def _split(arg: str) -> tuple[str | None, str]:
    """``CONTAINER:PATH`` or a local path (absolute, ./relative, or without a colon)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


def _view(ctx: Context, container: Container) -> FilesystemView:
    """How cp reaches the container: its live mount tree, or its overlay plus binds."""
    from dockyard.containers.cp import FilesystemView, bind_mounts

    view = FilesystemView(ctx.paths, container.id, _layers(ctx, container))
    if container.running and container.state.pid:
        view.pid = container.state.pid
        return view
    config = ctx.paths.container_dir(container.id) / "config.json"
    if config.exists():
        view.binds = bind_mounts(json.loads(config.read_text()))
    return view


def _cp(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.containers import cp

    src_container, src_path = _split(args.source)
    dst_container, dst_path = _split(args.destination)
    if (src_container is None) == (dst_container is None):
        raise InvalidArgument(
            "must specify at least one container source"
            if src_container is None
            else "copying between containers is not supported"
        )
    if src_container is not None:
        container = ctx.containers.get(src_container)
        view = _view(ctx, container)
        if dst_path == "-":
            cp.copy_from(view, src_path, sys.stdout.buffer, follow_link=args.follow_link)
        else:
            cp.copy_to_host(view, src_path, dst_path, follow_link=args.follow_link)
            if not args.quiet and sys.stderr.isatty():
                print(f"Successfully copied to {dst_path}", file=sys.stderr)
        return 0
    assert dst_container is not None
    container = ctx.containers.get(dst_container)
    if container.spec.read_only and container.running:
        raise InvalidArgument("container rootfs is marked read-only")
    if src_path != "-" and not os.path.lexists(src_path):
        raise InvalidArgument(f"stat {src_path}: no such file or directory")
    source: str | BinaryIO = sys.stdin.buffer if src_path == "-" else src_path
    # a running container is paused while files go in (as Podman does), so that none
    # of its processes can swap a directory that was checked for a symlink
    pause = container.state.status == "running"
    if pause:
        ctx.containers.pause(container)
    try:
        cp.copy_to(
            _view(ctx, container),
            source,
            dst_path,
            archive=args.archive,
            follow_link=args.follow_link,
        )
    finally:
        if pause:
            ctx.containers.unpause(ctx.containers.get(container.id))
    return 0


def _diff(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.containers import rootfs

    container = ctx.containers.get(args.container)
    for kind, path in rootfs.changes(ctx.paths, container.id, _layers(ctx, container)):
        print(f"{kind} {path}")
    return 0


def _export(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.containers import rootfs

    container = ctx.containers.get(args.container)
    if args.output:
        tmp = f"{args.output}.tmp-{os.getpid()}"
        try:
            with open(tmp, "wb") as out:
                rootfs.export(ctx.paths, container.id, _layers(ctx, container), out)
            os.replace(tmp, args.output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return 0
    if sys.stdout.isatty():
        raise InvalidArgument(
            "cowardly refusing to save to a terminal. Use the -o flag or redirect"
        )
    rootfs.export(ctx.paths, container.id, _layers(ctx, container), sys.stdout.buffer)
    return 0
