"""``build``, ``builder prune`` and ``bootstrap``: flags and output as Docker's CLI has them."""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    if command == "build":
        add("context")
        add("-t", "--tag", action="append", default=[])
        add("-f", "--file")
        add("--build-arg", action="append", default=[])
        add("--target", default="")
        add("--no-cache", action="store_true")
        add("--label", action="append", default=[])
        add("--network", default="default")
        add("--add-host", action="append", default=[])
        add("--progress", default="auto", choices=["auto", "plain", "tty", "quiet", "rawjson"])
        add("-q", "--quiet", action="store_true")
        add("--iidfile")
        add("--pull", action="store_true")
        add("--platform", default="")
        add("--rm", action="store_true", default=True)
        add("--force-rm", action="store_true")
    elif command == "builder prune":
        add("-a", "--all", action="store_true")
        add("-f", "--force", action="store_true")
        add("--filter", action="append", default=[])
        add("--keep-storage", default="")
    elif command == "bootstrap":
        add("image", nargs="?", default="debian:bookworm")
        add("--include", action="append", default=[])
        add("--mirror", default="")
        add("--variant", default="minbase")
        add("-q", "--quiet", action="store_true")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    if command == "build":
        return _build(ctx, args)
    if command == "builder prune":
        return _prune(ctx, args)
    return _bootstrap(ctx, args)


def _pairs(values: list[str], flag: str, *, from_env: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not key:
            raise InvalidArgument(f'invalid argument "{item}" for "{flag}" flag')
        if not eq:
            if not from_env:
                out[key] = ""
                continue
            if key not in os.environ:
                continue  # Docker: an unset variable leaves the ARG default in place
            value = os.environ[key]
        out[key] = value
    return out


def _build(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.build import BuildError
    from dockyard.build.context import load_context
    from dockyard.build.dispatch import BuildOptions
    from dockyard.build.executor import build
    from dockyard.build.progress import Progress
    from dockyard.network.options import parse_add_host, parse_network_mode

    if args.platform and args.platform.split(",")[0] not in _host_platforms():
        raise BuildError(f"building for platform {args.platform} is not supported on this host")
    opts = BuildOptions(
        tags=list(args.tag),
        build_args=_pairs(args.build_arg, "--build-arg", from_env=True),
        target=args.target,
        no_cache=args.no_cache,
        labels=_pairs(args.label, "--label", from_env=False),
        network=parse_network_mode(args.network),
        add_hosts=[parse_add_host(h) for h in args.add_host],
        pull=args.pull,
    )
    quiet = args.quiet or args.progress == "quiet"
    progress = Progress(sys.stderr, quiet=quiet)
    ctx.paths.ensure()
    stdin = sys.stdin.buffer if (args.context == "-" or args.file == "-") else None
    bctx = load_context(args.context, args.file, stdin=stdin, tmp_dir=ctx.paths.tmp)
    try:
        image = build(ctx, bctx, opts, progress)
    except DockyardError as err:
        if isinstance(err, BuildError):
            raise
        raise BuildError(str(err)) from None
    finally:
        bctx.close()
    if args.iidfile:
        with open(args.iidfile, "w") as f:
            f.write(image.id)
    if quiet:
        print(image.id)
    return 0


def _host_platforms() -> set[str]:
    from dockyard.images.store import host_platform

    arch, variant = host_platform()
    names = {f"linux/{arch}", arch}
    if variant:
        names.add(f"linux/{arch}/{variant}")
    return names


def _prune(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.build.cache import prune
    from dockyard.cli.formatting import confirm, human_size

    if not args.force and not confirm(
        "WARNING! This will remove all dangling build cache.", inline=True
    ):
        return 0
    keys, reclaimed = prune(ctx.db, ctx.images, ctx.paths)
    if keys:
        print("Deleted build cache objects:")
        for key in keys:
            print(key.removeprefix("sha256:")[:25])
        print()
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


def _bootstrap(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.build.bootstrap import bootstrap

    include = [p for item in args.include for p in item.split(",") if p]
    image = bootstrap(
        ctx,
        args.image,
        include=include,
        mirror=args.mirror or None,
        variant=args.variant,
        out=None if args.quiet else sys.stderr,
    )
    print(image.id)
    return 0
