"""``system df`` and ``system prune``: the whole store at once, printed as Docker does."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.system import Usage

DF_TABLE = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_HEADERS = {
    "Type": "TYPE",
    "TotalCount": "TOTAL",
    "Active": "ACTIVE",
    "Size": "SIZE",
    "Reclaimable": "RECLAIMABLE",
}


def configure(command: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if command == "system df":
        a("--format")
        a("-v", "--verbose", action="store_true")
    else:
        a("-a", "--all", action="store_true")
        a("-f", "--force", action="store_true")
        a("--volumes", action="store_true")
        a("--filter", action="append", default=[])


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    return _df(ctx, args) if command == "system df" else _prune(ctx, args)


def _df(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import format_output
    from dockyard.system import disk_usage

    if args.verbose:
        raise InvalidArgument("system df --verbose is not supported: use images, ps -s, volume ls")
    rows = [_usage_row(u) for u in disk_usage(ctx.containers)]
    print(format_output(rows, args.format, DF_TABLE, headers=DF_HEADERS), end="")
    return 0


def _usage_row(usage: Usage) -> dict[str, Any]:
    from dockyard.cli.formatting import human_size

    reclaimable = human_size(usage.reclaimable, 4)
    if usage.size > 0 and usage.kind != "Build Cache":
        reclaimable += f" ({usage.reclaimable * 100 // usage.size}%)"
    return {
        "Type": usage.kind,
        "TotalCount": str(usage.total),
        "Active": str(usage.active),
        "Size": human_size(usage.size, 4),
        "Reclaimable": reclaimable,
    }


def _prune(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import confirm, human_size
    from dockyard.system import prune

    filters: dict[str, list[str]] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep or key not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter '{item}'")
        filters.setdefault(key, []).append(value)
    if not args.force:
        removes = ["all stopped containers", "all networks not used by at least one container"]
        if args.volumes:
            removes.append("all anonymous volumes not used by at least one container")
        removes.append(
            "all images without at least one container associated to them"
            if args.all
            else "all dangling images"
        )
        removes.append("all build cache" if args.all else "unused build cache")
        warning = "WARNING! This will remove:\n" + "".join(f"  - {r}\n" for r in removes)
        if not confirm(warning):
            return 0
    report = prune(ctx.containers, all_images=args.all, volumes=args.volumes, filters=filters)
    sections = [
        ("Deleted Containers:", report.containers),
        ("Deleted Networks:", report.networks),
        ("Deleted Volumes:", report.volumes),
        ("Deleted Images:", [f"{kind.lower()}: {ref}" for kind, ref in report.images]),
        (
            "Deleted build cache objects:",
            [k.removeprefix("sha256:")[:25] for k in report.build_cache],
        ),
    ]
    for title, lines in sections:
        if lines:
            print(title + "\n" + "".join(f"{line}\n" for line in lines))
    print(f"Total reclaimed space: {human_size(report.reclaimed, 4)}")
    return 0
